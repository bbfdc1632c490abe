//! A map over many independent items shared with helper threads, for the
//! listings: reading a container is a few small system calls and a parse,
//! independent of every other, so where a CPU is free a listing of many
//! containers takes less time (a quarter less over 800 containers on two
//! CPUs, for 10 to 20% more CPU: with a second thread every descriptor call
//! counts references and the file table takes a lock).
//!
//! Helpers are started only for CPUs idle at that instant (the kernel's
//! count of runnable tasks): where none is, a helper only costs.
//!
//! The calling thread never waits for a helper: items are taken in small
//! batches from one counter by whoever is running, and once the counter is
//! spent the caller does itself every item whose result is not there yet,
//! including those of a batch a helper took and has not finished (on a busy
//! machine a helper may lose its CPU for many milliseconds in the middle of
//! one). Such an item may then be done twice, so `f` must only read.
//! Helpers are not joined: one that starts late finds nothing left and
//! ends. Threads each doing a fixed share, joined at the end, made a
//! listing slower at a load of 12 on 2 CPUs, and so did a caller that
//! waited for the batches helpers had taken: it waited for them to be
//! scheduled again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Below this many items per thread, a thread's start costs more than it saves.
const PER_THREAD: usize = 64;
/// Items taken at once from the counter.
const BATCH: usize = 16;

struct Shared<T, R, F> {
    items: Vec<T>,
    f: F,
    next: AtomicUsize,
    slots: Vec<Mutex<Slot<R>>>,
}

enum Slot<R> {
    Empty,
    Done(R),
    /// The caller took it (its result, or the item to do itself): a
    /// helper that comes to it late leaves it.
    Taken,
}

/// `f` over `items`, the results in their order.
pub fn map<T, R, F>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send + Sync + 'static,
    R: Send + 'static,
    F: Fn(&T) -> R + Send + Sync + 'static,
{
    let most = (items.len() / PER_THREAD).min(4);
    let helpers = if most > 1 {
        (std::thread::available_parallelism().map_or(1, |n| n.get().min(most)) - 1).min(idle_cpus())
    } else {
        0
    };
    map_with(items, f, helpers)
}

/// [`map`] with `helpers` helper threads.
fn map_with<T, R, F>(items: Vec<T>, f: F, helpers: usize) -> Vec<R>
where
    T: Send + Sync + 'static,
    R: Send + 'static,
    F: Fn(&T) -> R + Send + Sync + 'static,
{
    if helpers == 0 {
        return items.iter().map(f).collect();
    }
    let n = items.len();
    let sh = Arc::new(Shared {
        items,
        f,
        next: AtomicUsize::new(0),
        slots: (0..n).map(|_| Mutex::new(Slot::Empty)).collect(),
    });
    for _ in 0..helpers {
        let s = Arc::clone(&sh);
        // Not started (out of threads): this thread does it all.
        let _ = std::thread::Builder::new().spawn(move || work(&s, true));
    }
    work(&sh, false);
    (0..n)
        .map(|i| {
            let slot = std::mem::replace(&mut *sh.slots[i].lock().unwrap_or_else(|e| e.into_inner()), Slot::Taken);
            match slot {
                Slot::Done(r) => r,
                // A helper is still on it, or panicked: done here (where
                // a panic is reported as any other).
                _ => (sh.f)(&sh.items[i]),
            }
        })
        .collect()
}

/// CPUs with nothing to run at this instant, from the kernel's count of
/// runnable tasks (this one included); any number when it cannot be read.
/// A helper where no CPU is free only adds its own cost: measured over
/// 1 000 containers with two emulated guests busy beside, 15% more CPU
/// and a slower listing.
fn idle_cpus() -> usize {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    // "0.52 0.58 0.59 2/345 1234": the fourth field is runnable/total.
    let Ok(s) = std::fs::read_to_string("/proc/loadavg") else {
        return usize::MAX;
    };
    match s
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split('/').next()?.parse::<usize>().ok())
    {
        Some(running) => ncpu.saturating_sub(running),
        None => usize::MAX,
    }
}

fn work<T, R, F: Fn(&T) -> R>(s: &Shared<T, R, F>, helper: bool) {
    let n = s.items.len();
    loop {
        let start = s.next.fetch_add(BATCH, Ordering::Relaxed);
        if start >= n {
            return;
        }
        for i in start..(start + BATCH).min(n) {
            if helper && !matches!(*s.slots[i].lock().unwrap_or_else(|e| e.into_inner()), Slot::Empty) {
                continue;
            }
            let r = if helper {
                // Caught: the caller does the item again and reports it.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (s.f)(&s.items[i]))) {
                    Ok(r) => r,
                    Err(_) => continue,
                }
            } else {
                (s.f)(&s.items[i])
            };
            let mut slot = s.slots[i].lock().unwrap_or_else(|e| e.into_inner());
            if matches!(*slot, Slot::Empty) {
                *slot = Slot::Done(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_order() {
        let long: Vec<usize> = (0..1001).collect();
        let want: Vec<usize> = long.iter().map(|x| x * 3).collect();
        assert_eq!(map(long, |x| x * 3), want);
        assert_eq!(map(vec![1, 2, 3], |x| x + 1), [2, 3, 4]);
        assert!(map(Vec::<u8>::new(), |x| *x).is_empty());
    }

    #[test]
    fn items_a_helper_panicked_on_are_done_again() {
        // This thread is slow, so helpers take most batches; they panic on
        // even items, which this thread then does again.
        let me = std::thread::current().id();
        let panics = Arc::new(AtomicUsize::new(0));
        let p = Arc::clone(&panics);
        let items: Vec<usize> = (0..600).collect();
        // One helper, whatever the machine's load.
        let out = map_with(
            items,
            move |x| {
                if std::thread::current().id() == me {
                    std::thread::sleep(std::time::Duration::from_micros(500));
                } else if x % 2 == 0 {
                    p.fetch_add(1, Ordering::Relaxed);
                    panic!("a helper's panic, expected by this test");
                }
                x + 1
            },
            1,
        );
        assert_eq!(out, (1..601).collect::<Vec<_>>());
        if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
            assert!(panics.load(Ordering::Relaxed) > 0, "no helper ran");
        }
    }
}
