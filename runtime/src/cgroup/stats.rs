//! `lxc-info` usage figures from the container's cgroups, read as LXC's
//! tools/lxc_info.c reads them, and printed in its format.

use super::read_file;
use std::path::{Path, PathBuf};

/// Usage; `None` where this host has no such figure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// CPU time in nanoseconds: v1 `cpuacct.usage`, v2 `cpu.stat` usage_usec.
    pub cpu_ns: Option<u64>,
    /// Bytes read and written: v1 the Total of `blkio.throttle.io_service_bytes`,
    /// v2 the sum of rbytes and wbytes in `io.stat` (LXC prints no v2 figure).
    pub blkio_bytes: Option<u64>,
    /// v1 `memory.usage_in_bytes`; v2 anon + file of `memory.stat` (as LXC).
    pub memory_bytes: Option<u64>,
    /// v1 `memory.kmem.usage_in_bytes`; v2 kernel_stack + pagetables + sock + slab.
    pub kmem_bytes: Option<u64>,
}

fn num(dir: &Path, f: &str) -> Option<u64> {
    read_file(dir, f)?.trim().parse().ok()
}

/// `key value` lines.
fn keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        Some((it.next()?, it.next()?.parse().ok()?))
    })
}

/// The figures of the cgroups in a recorded list (the container cgroups
/// are its leaves; v1 files win over v2 ones, as in lxc-info).
pub fn stats(paths: &[PathBuf]) -> Stats {
    let leaves: Vec<&PathBuf> = paths
        .iter()
        .filter(|p| !paths.iter().any(|q| q != *p && q.starts_with(p)))
        .collect();
    let mut s = Stats::default();
    for d in &leaves {
        s.cpu_ns = s.cpu_ns.or_else(|| num(d, "cpuacct.usage"));
        if s.blkio_bytes.is_none() {
            s.blkio_bytes = read_file(d, "blkio.throttle.io_service_bytes").and_then(|t| {
                t.lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("Total ").and_then(|v| v.trim().parse().ok()))
            });
        }
        if s.memory_bytes.is_none() {
            // lxc-info wants both v1 files.
            if let (Some(m), Some(k)) = (num(d, "memory.usage_in_bytes"), num(d, "memory.kmem.usage_in_bytes")) {
                s.memory_bytes = Some(m);
                s.kmem_bytes = Some(k);
            }
        }
    }
    for d in &leaves {
        if s.cpu_ns.is_none() {
            s.cpu_ns = read_file(d, "cpu.stat")
                .and_then(|t| keyed(&t).find(|(k, _)| *k == "usage_usec").map(|(_, v)| v * 1000));
        }
        if s.blkio_bytes.is_none() {
            s.blkio_bytes = read_file(d, "io.stat").map(|t| {
                t.lines()
                    .flat_map(|l| l.split_whitespace().skip(1))
                    .filter_map(|kv| kv.split_once('='))
                    .filter(|(k, _)| *k == "rbytes" || *k == "wbytes")
                    .filter_map(|(_, v)| v.parse::<u64>().ok())
                    .sum()
            });
        }
        if s.memory_bytes.is_none() {
            if let Some(t) = read_file(d, "memory.stat") {
                let sum = |keys: &[&str]| keyed(&t).filter(|(k, _)| keys.contains(k)).map(|(_, v)| v).sum::<u64>();
                s.memory_bytes = Some(sum(&["anon", "file"]));
                s.kmem_bytes = Some(sum(&["kernel_stack", "pagetables", "sock", "slab"]));
            }
        }
    }
    s
}

/// lxc-info's size_humanize: `512 bytes`, `1.21 MiB`, ... (its rounding).
pub fn humanize_size(val: u64) -> String {
    if val > 1 << 30 {
        format!("{}.{:02} GiB", val >> 30, ((val & ((1 << 30) - 1)) as u32) / 10737419)
    } else if val > 1 << 20 {
        let x = val + 5243;
        format!("{}.{:02} MiB", x >> 20, ((x & ((1 << 20) - 1)) * 100) >> 20)
    } else if val > 1 << 10 {
        let x = val + 5;
        format!("{}.{:02} KiB", x >> 10, ((x & ((1 << 10) - 1)) * 100) >> 10)
    } else {
        format!("{val} bytes")
    }
}

/// The stats lines of `lxc-info` (`-H`: raw numbers).
pub fn format_stats(s: &Stats, humanize: bool) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<15} {v}\n"));
    let size = |v: u64| if humanize { humanize_size(v) } else { v.to_string() };
    if let Some(ns) = s.cpu_ns {
        let v = if humanize {
            format!("{:.2} seconds", ns as f32 / 1_000_000_000.0)
        } else {
            ns.to_string()
        };
        line(&mut out, "CPU use:", v);
    }
    if let Some(b) = s.blkio_bytes {
        line(&mut out, "BlkIO use:", size(b));
    }
    if let (Some(m), Some(k)) = (s.memory_bytes, s.kmem_bytes) {
        line(&mut out, "Memory use:", size(m));
        line(&mut out, "KMem use:", size(k));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_stats_format() {
        assert_eq!(humanize_size(0), "0 bytes");
        assert_eq!(humanize_size(1024), "1024 bytes");
        assert_eq!(humanize_size(1269760), "1.21 MiB");
        assert_eq!(humanize_size(1536), "1.50 KiB");
        assert_eq!(humanize_size(3 << 30), "3.00 GiB");
        let s = Stats {
            cpu_ns: Some(52_000_000),
            blkio_bytes: Some(0),
            memory_bytes: Some(1269760),
            kmem_bytes: Some(0),
        };
        assert_eq!(
            format_stats(&s, true),
            "CPU use:        0.05 seconds\nBlkIO use:      0 bytes\nMemory use:     1.21 MiB\nKMem use:       0 bytes\n"
        );
        assert!(format_stats(&s, false).starts_with("CPU use:        52000000\n"));
        assert_eq!(format_stats(&Stats::default(), true), "");
    }

    #[test]
    fn cgroup_stats_files() {
        let t = tempfile::tempdir().unwrap();
        let v1 = t.path().join("v1");
        let v2 = t.path().join("v2");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(
            v1.join("blkio.throttle.io_service_bytes"),
            "8:0 Read 4096\n8:0 Total 8192\nTotal 8192\n",
        )
        .unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "1000\n").unwrap();
        std::fs::write(v1.join("memory.kmem.usage_in_bytes"), "10\n").unwrap();
        std::fs::write(v2.join("cpu.stat"), "usage_usec 52000\nuser_usec 1\n").unwrap();
        std::fs::write(
            v2.join("io.stat"),
            "8:0 rbytes=100 wbytes=20 rios=1\n8:16 rbytes=1 wbytes=0\n",
        )
        .unwrap();
        std::fs::write(v2.join("memory.stat"), "anon 5\nfile 6\nslab 7\nsock 1\n").unwrap();
        let s = stats(&[v1.clone(), v2.clone()]);
        assert_eq!(s.cpu_ns, Some(52_000_000));
        assert_eq!(s.blkio_bytes, Some(8192));
        assert_eq!((s.memory_bytes, s.kmem_bytes), (Some(1000), Some(10)));
        let s = stats(&[v2]);
        assert_eq!(s.blkio_bytes, Some(121));
        assert_eq!((s.memory_bytes, s.kmem_bytes), (Some(11), Some(8)));
    }
}
