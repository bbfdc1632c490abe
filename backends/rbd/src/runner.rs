//! External tools are run through the shared runner in core (argv only, a
//! trait so that unit tests can record argv and return canned output).
pub use strata_core::runner::*;
