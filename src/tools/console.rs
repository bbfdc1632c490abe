//! `lxc-console -n NAME [-t N] [-e ^C]`: the caller's terminal on a running
//! container's console (`-t 0`) or one of its ttys (the first free one by
//! default, as LXC picks), until `<escape> q`.

use crate::common::{self, Common};
use anyhow::{anyhow, bail};
use strata_core::ContainerRef;

#[derive(clap::Parser, Debug)]
#[command(
    about = "Attach to the console or a tty of a running container",
    version,
    disable_help_flag = true
)]
pub struct Args {
    /// NAME of the container
    #[arg(short = 'n', long = "name")]
    name: Option<String>,
    /// Console tty number: 0 the console, N ttyN (default: the first free tty)
    #[arg(short = 't', long = "tty", value_name = "NUMBER", allow_negative_numbers = true)]
    tty: Option<i64>,
    /// Prefix for escape command: ^LETTER or LETTER (default ^a)
    #[arg(short = 'e', long = "escape", value_name = "PREFIX")]
    escape: Option<String>,
    /// Give this help list
    #[arg(short = 'h', long = "help", visible_short_alias = '?', action = clap::ArgAction::Help)]
    help: Option<bool>,
    #[command(flatten)]
    common: Common,
}

/// `^a`, `a`, `^A`: the control character of that letter, as LXC reads `-e`.
fn escape_char(s: &str) -> anyhow::Result<u8> {
    let l = s.strip_prefix('^').unwrap_or(s);
    match l.as_bytes() {
        [c] if c.is_ascii_alphabetic() => Ok(c.to_ascii_lowercase() - b'a' + 1),
        _ => Err(anyhow!("invalid escape character {s:?}: ^LETTER or LETTER")),
    }
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let Some(name) = &a.name else {
        bail!("missing container name, use --name option");
    };
    let escape = match &a.escape {
        Some(e) => escape_char(e)?,
        None => 1,
    };
    let lxcpath = common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    common::check_exists_or_running(&lxcpath, name)?;
    let r = ContainerRef::new(&lxcpath, name);
    let o = strata_runtime::ConsoleOpts {
        tty: a.tty.unwrap_or(-1),
        escape,
        quiet: a.common.quiet,
    };
    strata_runtime::console(&r, &o)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_lxc_reads_them() {
        assert_eq!(escape_char("^a").unwrap(), 1);
        assert_eq!(escape_char("b").unwrap(), 2);
        assert_eq!(escape_char("^Z").unwrap(), 26);
        for bad in ["", "^", "ab", "^1", "^^"] {
            assert!(escape_char(bad).is_err(), "{bad}");
        }
        use clap::CommandFactory;
        let u = crate::common::lxc_usage("lxc-console", &Args::command());
        assert!(
            u.contains("[-t|--tty=TTY]") && u.contains("[--usage]") && u.contains("[-P|--lxcpath=LXCPATH]"),
            "{u}"
        );
    }
}
