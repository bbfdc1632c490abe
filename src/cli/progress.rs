//! Progress of a stream (send, receive, export, import) on stderr: a bar
//! (bytes, entries, rate, ETA when the size is known) when stderr is a
//! terminal, or with `--json` one JSON object per line for scripts, at
//! most five a second and a last one with `"done": true`.

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_core::stream::{InputPos, ProgressFn, Totals};

/// How often a JSON line is written.
const EVERY: Duration = Duration::from_millis(200);

struct State {
    op: &'static str,
    json: bool,
    bar: Option<ProgressBar>,
    started: Instant,
    last: Mutex<Option<Instant>>,
    entries: AtomicU64,
    bytes: AtomicU64,
    total: Mutex<Option<Totals>>,
    /// An import's archive file, for the ETA where the trees' totals are unknown.
    input: Option<InputPos>,
}

/// A stream's progress, shared with the engine through [`Progress::hook`].
#[derive(Clone)]
pub struct Progress(Arc<State>);

impl Progress {
    /// `None` when nothing is to be shown (`-q`, or no `--json` and stderr not a terminal).
    pub fn new(op: &'static str, json: bool, quiet: bool) -> Option<Progress> {
        Self::reading(op, json, quiet, None)
    }

    /// [`Progress::new`] for an import that reads the archive file counted by `input`.
    pub fn reading(op: &'static str, json: bool, quiet: bool, input: Option<InputPos>) -> Option<Progress> {
        let tty = std::io::stderr().is_terminal();
        if !json && (quiet || !tty) {
            return None;
        }
        let bar = (!json).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            match &input {
                Some(i) if i.size > 0 => {
                    b.set_length(i.size);
                    b.set_style(archive_style());
                }
                _ => b.set_style(spinner_style()),
            }
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Some(Progress(Arc::new(State {
            op,
            json,
            bar,
            started: Instant::now(),
            last: Mutex::new(None),
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            total: Mutex::new(None),
            input,
        })))
    }

    pub fn hook(&self) -> ProgressFn {
        let s = self.0.clone();
        Arc::new(move |entries, bytes, total| update(&s, entries, bytes, total))
    }

    /// The last line (JSON) or the bar cleared and a summary (terminal).
    pub fn finish(&self, ok: bool) {
        let s = &self.0;
        let (entries, bytes) = (s.entries.load(Relaxed), s.bytes.load(Relaxed));
        let secs = s.started.elapsed().as_secs_f64();
        if s.json {
            if ok {
                let total = *s.total.lock().unwrap_or_else(|p| p.into_inner());
                line(s, entries, bytes, total, true);
            }
            return;
        }
        if let Some(b) = &s.bar {
            b.finish_and_clear();
        }
        if ok {
            eprintln!(
                "{} {entries} entries, {} in {secs:.2}s ({}/s)",
                match s.op {
                    "send" => "sent",
                    "receive" => "received",
                    "export" => "exported",
                    _ => "imported",
                },
                HumanBytes(bytes),
                HumanBytes((bytes as f64 / secs.max(0.001)) as u64)
            );
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {bytes} {msg} {binary_bytes_per_sec} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// Through an archive file: the bar, rate and ETA go by its bytes read.
fn archive_style() -> ProgressStyle {
    ProgressStyle::with_template("[{wide_bar}] {percent:>3}% {msg} ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "[{wide_bar}] {percent:>3}% {bytes}/{total_bytes} {msg} {binary_bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn update(s: &State, entries: u64, bytes: u64, total: Option<Totals>) {
    s.entries.store(entries, Relaxed);
    s.bytes.store(bytes, Relaxed);
    {
        let mut t = s.total.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_none() && total.is_some() {
            *t = total;
            if let (Some(b), Some(tt)) = (&s.bar, total) {
                b.set_length(tt.bytes);
                b.set_style(bar_style());
            }
        }
    }
    if let Some(b) = &s.bar {
        match (&s.input, total) {
            (Some(i), None) if i.size > 0 => {
                b.set_position(i.read.load(Relaxed).min(i.size));
                let rate = bytes as f64 / s.started.elapsed().as_secs_f64().max(0.001);
                b.set_message(format!(
                    "{entries} entries, {} ({}/s)",
                    HumanBytes(bytes),
                    HumanBytes(rate as u64)
                ));
            }
            _ => {
                b.set_position(bytes);
                match total {
                    Some(t) => b.set_message(format!("{entries}/{} entries", t.entries)),
                    None => b.set_message(format!("{entries} entries")),
                }
            }
        }
        return;
    }
    let now = Instant::now();
    {
        let mut last = s.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|l| now.duration_since(l) < EVERY) {
            return;
        }
        *last = Some(now);
    }
    line(s, entries, bytes, total, false);
}

/// One JSON progress line on stderr.
fn line(s: &State, entries: u64, bytes: u64, total: Option<Totals>, done: bool) {
    let secs = s.started.elapsed().as_secs_f64();
    let rate = bytes as f64 / secs.max(0.001);
    let mut v = serde_json::json!({
        "op": s.op,
        "entries": entries,
        "bytes": bytes,
        "elapsed": (secs * 1000.0).round() / 1000.0,
        "rate": rate.round() as u64,
        "done": done,
    });
    if let Some(t) = total {
        v["total_entries"] = t.entries.into();
        v["total_bytes"] = t.bytes.into();
        if !done && rate > 0.0 && t.bytes >= bytes {
            v["eta"] = ((((t.bytes - bytes) as f64 / rate) * 10.0).round() / 10.0).into();
        }
    } else if let Some(i) = s.input.as_ref().filter(|i| i.size > 0) {
        // No totals: the archive file's bytes read against its size.
        let read = i.read.load(Relaxed).min(i.size);
        v["archive_bytes"] = read.into();
        v["archive_size"] = i.size.into();
        if !done && read > 0 {
            let eta = secs * (i.size - read) as f64 / read as f64;
            v["eta"] = ((eta * 10.0).round() / 10.0).into();
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{v}");
}
