//! `lxc-top [-d DELAY] [-s n|c|b|m|s|k] [-r] [-b]`: the running
//! containers' usage from their cgroups, in LXC's table (refreshed every
//! DELAY seconds on a terminal; `q` quits, a sort letter sorts, again
//! reverses, `r` reverses) or, with `-b`, LXC's CSV lines for a file.
//!
//! The figures are read as LXC's lxc-top reads them, each file from the
//! container's v1 hierarchy first, then its cgroup2 directory: CPU
//! `cpuacct.usage`/`cpuacct.stat` (v2: `cpu.stat`), block I/O
//! `blkio.throttle.io_service_bytes`/`io_serviced` (v2: `io.stat`), memory
//! `memory.usage_in_bytes`, `memory.memsw.usage_in_bytes`,
//! `memory.kmem.usage_in_bytes` (v2: `memory.current`,
//! `memory.swap.current`, and the kernel's share of `memory.stat`, which
//! LXC shows as 0). Unlike LXC 5's, `-b` needs no terminal on stdin, and
//! prints every container rather than a screenful.

use crate::common::{self, Common};
use anyhow::bail;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use strata_core::Store;
use strata_runtime::state_view;

#[derive(clap::Parser, Debug)]
#[command(about = "Monitor the usage of the active containers", version)]
pub struct Args {
    /// Delay in seconds between refreshes (default: 3; 300 with --batch)
    #[arg(short = 'd', long = "delay", value_name = "DELAY")]
    delay: Option<u32>,
    /// Output designed to capture to a file (CSV, one line per container)
    #[arg(short = 'b', long = "batch")]
    batch: bool,
    /// Sort by n (name), c (CPU use), b (block I/O use), m (memory use),
    /// s (memory + swap use) or k (kernel memory use)
    #[arg(short = 's', long = "sort", value_name = "SORTBY", default_value = "n")]
    sort: String,
    /// Sort in reverse order
    #[arg(short = 'r', long = "reverse")]
    reverse: bool,
    #[command(flatten)]
    common: Common,
}

/// User-space ticks per second of `cpuacct.stat`, as LXC's lxc-top assumes.
const USER_HZ: u64 = 100;

#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu_ns: u64,
    /// In USER_HZ ticks.
    cpu_sys: u64,
    cpu_user: u64,
    io_total: u64,
    io_read: u64,
    io_write: u64,
    iops: u64,
    mem: u64,
    memsw: u64,
    kmem: u64,
}

impl Usage {
    fn add(&mut self, o: &Usage) {
        self.cpu_ns += o.cpu_ns;
        self.cpu_sys += o.cpu_sys;
        self.cpu_user += o.cpu_user;
        self.io_total += o.io_total;
        self.io_read += o.io_read;
        self.io_write += o.io_write;
        self.iops += o.iops;
        self.mem += o.mem;
        self.memsw += o.memsw;
        self.kmem += o.kmem;
    }
}

/// `key value` pairs of a flat-keyed cgroup file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// The figures of a container whose recorded cgroups are `paths`.
fn usage(paths: &[PathBuf]) -> Usage {
    let read = |f: &str| state_view::cgroup_file(paths, f).and_then(|p| std::fs::read_to_string(p).ok());
    let num = |f: &str| read(f).and_then(|t| t.trim().parse::<u64>().ok());
    let mut u = Usage::default();
    if let Some(ns) = num("cpuacct.usage") {
        u.cpu_ns = ns;
        let st = read("cpuacct.stat").unwrap_or_default();
        u.cpu_user = keyed(&st, "user").unwrap_or(0);
        u.cpu_sys = keyed(&st, "system").unwrap_or(0);
    } else if let Some(st) = read("cpu.stat") {
        let us = |k: &str| keyed(&st, k).unwrap_or(0);
        u.cpu_ns = us("usage_usec") * 1000;
        u.cpu_user = us("user_usec") * USER_HZ / 1_000_000;
        u.cpu_sys = us("system_usec") * USER_HZ / 1_000_000;
    }
    // v1: `MAJ:MIN Read N` ... and a last `Total N` line.
    let blk = |t: &str| {
        let (mut r, mut w, mut total) = (0u64, 0u64, 0u64);
        for l in t.lines() {
            let c: Vec<&str> = l.split_whitespace().collect();
            match c.as_slice() {
                [_, "Read", n] => r += n.parse::<u64>().unwrap_or(0),
                [_, "Write", n] => w += n.parse::<u64>().unwrap_or(0),
                ["Total", n] => total = n.parse().unwrap_or(0),
                _ => {}
            }
        }
        (r, w, total)
    };
    if let Some(t) = read("blkio.throttle.io_service_bytes") {
        (u.io_read, u.io_write, u.io_total) = blk(&t);
        u.iops = read("blkio.throttle.io_serviced").map_or(0, |t| blk(&t).2);
    } else if let Some(t) = read("io.stat") {
        let field = |k: &str| -> u64 {
            t.lines()
                .flat_map(|l| l.split_whitespace().skip(1))
                .filter_map(|kv| kv.split_once('='))
                .filter(|(key, _)| *key == k)
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum()
        };
        u.io_read = field("rbytes");
        u.io_write = field("wbytes");
        u.io_total = u.io_read + u.io_write;
        u.iops = field("rios") + field("wios");
    }
    match num("memory.usage_in_bytes").filter(|m| *m > 0) {
        Some(m) => {
            u.mem = m;
            u.memsw = num("memory.memsw.usage_in_bytes").unwrap_or(0);
            u.kmem = num("memory.kmem.usage_in_bytes").unwrap_or(0);
        }
        None => {
            u.mem = num("memory.current").unwrap_or(0);
            u.memsw = num("memory.swap.current").unwrap_or(0);
            u.kmem = read("memory.stat").map_or(0, |t| {
                ["kernel_stack", "pagetables", "sock", "slab"]
                    .iter()
                    .filter_map(|k| keyed(&t, k))
                    .sum()
            });
        }
    }
    u
}

/// LXC's lxc-top size form: its `%3u.00   ` for small values.
fn humanize(v: u64) -> String {
    if v > 1 << 10 {
        strata_runtime::cgroup::humanize_size(v)
    } else {
        format!("{v:>3}.00   ")
    }
}

/// The running containers of `lxcpath` and their usage.
fn collect(lxcpath: &std::path::Path) -> anyhow::Result<Vec<(String, Usage)>> {
    let store = Store::new(lxcpath);
    let mut v = Vec::new();
    if !lxcpath.is_dir() {
        return Ok(v);
    }
    for name in store.list()? {
        let (_, rec) = state_view::state(&store.r(&name));
        if let Some(rec) = rec {
            v.push((name, usage(&rec.cgroups)));
        }
    }
    Ok(v)
}

fn sort(rows: &mut [(String, Usage)], by: char, reverse: bool) {
    let key = |u: &Usage| match by {
        'c' => u.cpu_ns,
        'b' => u.io_total,
        'm' => u.mem,
        's' => u.memsw,
        'k' => u.kmem,
        _ => 0,
    };
    rows.sort_by(|a, b| {
        let o = if by == 'n' {
            a.0.cmp(&b.0)
        } else {
            // Largest first, as LXC; ties by name.
            key(&b.1).cmp(&key(&a.1)).then_with(|| a.0.cmp(&b.0))
        };
        if reverse {
            o.reverse()
        } else {
            o
        }
    });
}

const BATCH_HEADER: &str = "time_ms,container,cpu_nanos,cpu_sys_userhz,cpu_user_userhz,blkio_bytes,blkio_iops,mem_used_bytes,memsw_used_bytes,kernel_mem_used_bytes\n";

fn batch_line(now_ms: u128, name: &str, u: &Usage) -> String {
    format!(
        "{now_ms},{name},{},{},{},{},{},{},{},{}\n",
        u.cpu_ns, u.cpu_sys, u.cpu_user, u.io_total, u.iops, u.mem, u.memsw, u.kmem
    )
}

/// One screen: LXC's header, a line per container (as many as fit), and
/// the total (without a newline, as LXC leaves it).
fn screen(rows: &[(String, Usage)], room: usize) -> String {
    let mut total = Usage::default();
    for (_, u) in rows {
        total.add(u);
    }
    let (sw, km) = (total.memsw > 0, total.kmem > 0);
    let mut s = String::from("\x1b[H\x1b[J\x1b[7m\x1b[1m");
    s.push_str(&format!(
        "{:<18} {:>12} {:>12} {:>12} {:>36} {:>10}",
        "Container", "CPU", "CPU", "CPU", "BlkIO", "Mem"
    ));
    if sw {
        s.push_str(&format!(" {:>10}", "MemSw"));
    }
    if km {
        s.push_str(&format!(" {:>10}", "KMem"));
    }
    s.push('\n');
    s.push_str(&format!(
        "{:<18} {:>12} {:>12} {:>12} {:>36} {:>10}",
        "Name", "Used", "Sys", "User", "Total(Read/Write)", "Used"
    ));
    if sw {
        s.push_str(&format!(" {:>10}", "Used"));
    }
    if km {
        s.push_str(&format!(" {:>10}", "Used"));
    }
    s.push_str("\n\x1b[0m");
    let line = |name: &str, u: &Usage| {
        let mut l = format!(
            "{:<18.18} {:>12.2} {:>12.2} {:>12.2} {:>36} {:>10}",
            name,
            u.cpu_ns as f32 / 1_000_000_000.0,
            u.cpu_sys as f32 / USER_HZ as f32,
            u.cpu_user as f32 / USER_HZ as f32,
            format!(
                "{}({}/{})",
                humanize(u.io_total),
                humanize(u.io_read),
                humanize(u.io_write)
            ),
            humanize(u.mem)
        );
        if sw {
            l.push_str(&format!(" {:>10}", humanize(u.memsw)));
        }
        if km {
            l.push_str(&format!(" {:>10}", humanize(u.kmem)));
        }
        l
    };
    let shown = rows.len().min(room);
    for (name, u) in &rows[..shown] {
        s.push_str(&line(name, u));
        s.push('\n');
    }
    s.push_str(&line(&format!("TOTAL {shown} of {}", rows.len()), &total));
    s
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Catch SIGINT/SIGQUIT (and SIGTERM) without SA_RESTART, so that a wait
/// returns and the terminal is put back before exiting.
fn catch_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
    for s in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(s, &act) }?;
    }
    Ok(())
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Sleep up to `d`, waking early on a signal.
fn pause(d: Duration) {
    let end = std::time::Instant::now() + d;
    while !STOP.load(Ordering::SeqCst) {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    common::init_logging(a.common.logpriority.as_deref(), a.common.logfile.as_deref())?;
    let mut by = match a.sort.as_str() {
        s @ ("n" | "c" | "b" | "m" | "s" | "k") => s.chars().next().unwrap_or('n'),
        s => bail!("invalid sort key {s:?}: one of n, c, b, m, s, k"),
    };
    let lxcpath = common::resolve_lxcpath(a.common.lxcpath.as_deref())?;
    let _span = tracing::info_span!("lxc-top", lxcpath = %lxcpath.display()).entered();
    catch_signals()?;
    let mut reverse = a.reverse;
    if a.batch {
        let delay = Duration::from_secs(a.delay.unwrap_or(300).into());
        let mut out = std::io::stdout().lock();
        out.write_all(BATCH_HEADER.as_bytes())?;
        out.flush()?;
        while !STOP.load(Ordering::SeqCst) {
            let mut rows = collect(&lxcpath)?;
            sort(&mut rows, by, reverse);
            let t = now_ms();
            let text: String = rows.iter().map(|(n, u)| batch_line(t, n, u)).collect();
            // A reader that went away ends the run.
            if out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_err() {
                break;
            }
            pause(delay);
        }
        return Ok(0);
    }
    let delay = Duration::from_secs(a.delay.unwrap_or(3).into());
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("stdin is not a terminal (use --batch to capture to a file)");
    }
    let term = RawTerm::new()?;
    let room = (term.rows().max(4) - 3) as usize;
    let mut out = std::io::stdout().lock();
    loop {
        let mut rows = collect(&lxcpath)?;
        sort(&mut rows, by, reverse);
        out.write_all(screen(&rows, room).as_bytes())?;
        out.flush()?;
        match term.key(delay) {
            Key::Quit => break,
            Key::Char('r') => reverse = !reverse,
            Key::Char(c) if "ncbmsk".contains(c) => {
                reverse = if c == by { !reverse } else { false };
                by = c;
            }
            Key::Char(_) | Key::Timeout => {}
        }
    }
    drop(term);
    Ok(0)
}

enum Key {
    Quit,
    Char(char),
    Timeout,
}

/// The terminal on stdin without echo and line buffering, put back on drop.
struct RawTerm {
    saved: nix::sys::termios::Termios,
}

impl RawTerm {
    fn new() -> anyhow::Result<RawTerm> {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg, SpecialCharacterIndices as I};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)?;
        let mut t = saved.clone();
        t.local_flags.remove(LocalFlags::ECHO | LocalFlags::ICANON);
        t.control_chars[I::VMIN as usize] = 1;
        t.control_chars[I::VTIME as usize] = 0;
        tcsetattr(&stdin, SetArg::TCSAFLUSH, &t)?;
        Ok(RawTerm { saved })
    }

    fn rows(&self) -> u16 {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ fills the winsize we pass, which outlives the call.
        let r = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
        if r == 0 && ws.ws_row > 0 {
            ws.ws_row
        } else {
            25
        }
    }

    /// A key pressed within `d`; end of input or a signal quits.
    fn key(&self, d: Duration) -> Key {
        let mut fd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = d.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one pollfd, alive for the call.
        let r = unsafe { libc::poll(&mut fd, 1, ms) };
        match r {
            0 => Key::Timeout,
            r if r > 0 => {
                let mut b = [0u8; 1];
                match nix::unistd::read(0, &mut b) {
                    Ok(1) if b[0] == b'q' => Key::Quit,
                    Ok(1) => Key::Char(b[0] as char),
                    _ => Key::Quit,
                }
            }
            _ if STOP.load(Ordering::SeqCst) => Key::Quit,
            _ => Key::Timeout,
        }
    }
}

impl Drop for RawTerm {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSAFLUSH, &self.saved);
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_sort_as_lxc() {
        let u = |cpu: u64, mem: u64| Usage {
            cpu_ns: cpu,
            mem,
            ..Default::default()
        };
        let mut rows = vec![
            ("b".to_string(), u(5, 10)),
            ("a".into(), u(9, 1)),
            ("c".into(), u(1, 99)),
        ];
        sort(&mut rows, 'n', false);
        assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<String>(), "abc");
        sort(&mut rows, 'c', false);
        assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<String>(), "abc");
        sort(&mut rows, 'm', false);
        assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<String>(), "cba");
        sort(&mut rows, 'm', true);
        assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<String>(), "abc");
        assert_eq!(humanize(0), "  0.00   ");
        assert_eq!(humanize(1269760), "1.21 MiB");
        let s = screen(&rows, 2);
        assert!(
            s.contains("Container                   CPU          CPU          CPU"),
            "{s}"
        );
        assert!(s.ends_with(&format!(
            "{:<18} {:>12} {:>12} {:>12} {:>36} {:>10}",
            "TOTAL 2 of 3", "0.00", "0.00", "0.00", "  0.00   (  0.00   /  0.00   )", "110.00   "
        )));
        assert!(!s.contains("KMem"));
    }
}
