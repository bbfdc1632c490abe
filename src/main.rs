//! `strata`: one binary for the `strata` subcommands and LXC's tool names
//! (dispatched on the name it is invoked as).

mod cli;
mod common;
mod convert;
mod du;
mod freezer;
mod message;
mod names;
mod run;
mod tools;
mod wiring;

use std::ffi::OsString;
use std::path::Path;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "strata".into());
    let code = cli::main(&argv0, args);
    // Its in-flight entry goes with a command that leaves nothing behind.
    strata_core::inflight::finish();
    std::process::exit(code);
}
