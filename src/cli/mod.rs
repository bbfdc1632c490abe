//! Command-line front ends: the `strata` subcommands and LXC's tool names.
//!
//! Every front end parses its arguments with clap, then runs against the
//! engine. Errors are printed as one line, `TOOL: NAME: message`, the way
//! LXC's tools print them, and give exit status 1 (usage errors too).

pub mod clone;
pub mod copy;
pub mod create;
pub mod destroy;
pub mod export;
pub mod import;
pub mod info;
pub mod links;
pub mod ls;
pub mod progress;
pub mod receive;
pub mod resize;
pub mod send;
pub mod snapshot;
pub mod snapshot_auto;
pub mod snapshot_prune;
mod spread;
pub mod strata;
pub mod tree;

use crate::common::print_error;
use crate::names;
use std::ffi::OsString;

/// Entry point: `argv0` is the basename the binary was invoked as.
pub fn main(argv0: &str, args: Vec<OsString>) -> i32 {
    // Copies (clone, snapshot, restore, create from a dir) show a bar on a terminal.
    strata_core::copy::show_progress_on_terminal(true);
    let rest: Vec<OsString> = args.iter().skip(1).cloned().collect();
    match argv0 {
        "lxc-create" => create::main(argv0, args),
        "lxc-destroy" => destroy::main(argv0, args),
        "lxc-copy" => copy::main(argv0, args),
        "lxc-clone" => clone::main(argv0, args),
        "lxc-snapshot" => snapshot::main(argv0, args),
        "lxc-ls" => ls::main(argv0, args),
        t if names::RUNTIME_TOOLS.contains(&t) || names::STATE_TOOLS.contains(&t) => runtime(t, rest),
        _ => strata::main(args),
    }
}

/// Hand over to the runtime front end.
pub fn runtime(tool: &str, args: Vec<OsString>) -> i32 {
    match crate::run::dispatch(tool, args) {
        Ok(code) => code,
        Err(e) => {
            print_error(tool, None, &e);
            1
        }
    }
}
