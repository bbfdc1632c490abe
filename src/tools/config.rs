//! `lxc-config -l` and `lxc-config ITEM`: the system-wide settings
//! (lxc.conf's values, else LXC's defaults), with LXC's arguments: an
//! item is matched by prefix, the first of the list that starts with the
//! argument; `-h`/`--help` (or an abbreviation of them, or no argument)
//! prints the usage; an unset item prints `ITEM is not set.`.

use std::ffi::OsString;
use strata_core::lxc_conf;

/// Whether `arg` is a (possibly empty) prefix of `word`, as LXC compares.
fn abbrev(arg: &str, word: &str) -> bool {
    word.starts_with(arg)
}

pub fn run(argv: Vec<OsString>) -> anyhow::Result<i32> {
    let _span = tracing::info_span!("lxc-config").entered();
    // The usage names the program as it was called (the path too), as LXC's does.
    let me = std::env::args_os()
        .next()
        .or_else(|| argv.first().cloned())
        .map_or("lxc-config".into(), |a| a.to_string_lossy().into_owned());
    let tool = me.as_str();
    let Some(arg) = argv.get(1) else {
        usage(tool);
        return Ok(0);
    };
    let Some(arg) = arg.to_str() else {
        anyhow::bail!("Unknown configuration item: {}", arg.to_string_lossy());
    };
    if abbrev(arg, "-h") || abbrev(arg, "--help") {
        usage(tool);
        return Ok(0);
    }
    if abbrev(arg, "-l") {
        for i in lxc_conf::ITEMS {
            println!("{i}");
        }
        return Ok(0);
    }
    let Some(item) = lxc_conf::ITEMS.iter().find(|i| abbrev(arg, i)) else {
        anyhow::bail!("Unknown configuration item: {arg}");
    };
    match lxc_conf::get(item)? {
        Some(v) => println!("{v}"),
        None => println!("{arg} is not set."),
    }
    Ok(0)
}

fn usage(tool: &str) {
    println!("Usage: {tool} -l: list all available configuration items");
    println!("       {tool} item: print configuration item");
}
