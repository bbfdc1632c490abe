//! A copy's progress on a terminal: the tree is measured first (entries,
//! and bytes of regular files, hardlinks once), then a bar over the bytes
//! shows the entries, percentage, rate and ETA; a one-line summary follows
//! at the end. Nothing is drawn when stderr is not a terminal.

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// Set by a front end: every copy shows its progress when stderr is a terminal.
static ON_TERMINAL: AtomicBool = AtomicBool::new(false);

/// Show the progress of every copy of this process on stderr, when it is a terminal.
pub fn show_progress_on_terminal(on: bool) {
    ON_TERMINAL.store(on, Relaxed);
}

/// Whether a copy asked for (or allowed) a bar draws one.
pub(super) fn wanted(asked: bool) -> bool {
    (asked || ON_TERMINAL.load(Relaxed)) && std::io::stderr().is_terminal()
}

/// What is to be copied: entries below the top and bytes of regular files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub entries: u64,
    pub bytes: u64,
}

/// Count what [`super::copy_tree`] will copy (symlinks not followed, other
/// mounts not entered); what cannot be read is left out of the totals.
pub(super) fn measure(root: &Path) -> Totals {
    let mut t = Totals::default();
    let mut links = HashSet::new();
    if let Ok(fd) = super::open_dir_at(libc::AT_FDCWD, root.as_os_str().as_bytes()) {
        if let Ok(st) = nix::sys::stat::fstat(fd.as_raw_fd()) {
            walk(&fd, st.st_dev, &mut t, &mut links);
        }
    }
    t
}

fn walk(fd: &OwnedFd, dev: u64, t: &mut Totals, links: &mut HashSet<(u64, u64)>) {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{fstatat, SFlag};
    // An unreadable directory counts what was read of it (an estimate for a bar).
    let mut names = Vec::new();
    let _ = super::read_dir(fd.as_raw_fd(), &mut names);
    for name in names {
        let Ok(st) = fstatat(Some(fd.as_raw_fd()), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        t.entries += 1;
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if fmt == SFlag::S_IFREG && (st.st_nlink <= 1 || links.insert((st.st_dev, st.st_ino))) {
            t.bytes += st.st_size.max(0) as u64;
        } else if fmt == SFlag::S_IFDIR && st.st_dev == dev {
            if let Ok(sub) = super::open_dir_at(fd.as_raw_fd(), name.as_bytes()) {
                walk(&sub, dev, t, links);
            }
        }
    }
}

/// The bar of one copy.
pub(super) struct Progress {
    bar: ProgressBar,
    entries: Arc<AtomicU64>,
    started: Instant,
}

impl Progress {
    /// Measure `src` and draw the bar at 0%.
    pub(super) fn start(src: &Path) -> Progress {
        let totals = measure(src);
        let entries = Arc::new(AtomicU64::new(0));
        let shown = entries.clone();
        let style = ProgressStyle::with_template(
            "[{wide_bar}] {percent:>3}% {bytes}/{total_bytes} {entries} entries {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("entries", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/{}", shown.load(Relaxed), totals.entries);
        })
        .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(totals.bytes), ProgressDrawTarget::stderr()).with_style(style);
        // Drawn now, at 0% (a tick does nothing once the steady ticker runs).
        bar.tick();
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress {
            bar,
            entries,
            started: Instant::now(),
        }
    }

    /// One entry copied, with `bytes` of file data.
    pub(super) fn tick(&self, bytes: u64) {
        self.entries.fetch_add(1, Relaxed);
        if bytes > 0 {
            self.bar.inc(bytes);
        }
    }

    /// Clear the bar; after a complete copy, one line saying what it did.
    pub(super) fn finish(&self, done: bool) {
        self.bar.finish_and_clear();
        if !done {
            return;
        }
        let took = self.started.elapsed();
        let bytes = self.bar.position();
        let rate = bytes as f64 / took.as_secs_f64().max(0.001);
        eprintln!(
            "copied {} entries, {} in {} ({}/s)",
            self.entries.load(Relaxed),
            HumanBytes(bytes),
            if took.as_secs() == 0 {
                format!("{:.2}s", took.as_secs_f64())
            } else {
                HumanDuration(took).to_string()
            },
            HumanBytes(rate as u64)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_entries_and_bytes_hardlinks_once() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir(r.join("a")).unwrap();
        std::fs::write(r.join("a/f"), vec![1u8; 1000]).unwrap();
        std::fs::hard_link(r.join("a/f"), r.join("g")).unwrap();
        std::fs::write(r.join("h"), b"xyz").unwrap();
        std::os::unix::fs::symlink("/nonexistent-target-big", r.join("l")).unwrap();
        assert_eq!(
            measure(r),
            Totals {
                entries: 5,
                bytes: 1003
            }
        );
    }
}
