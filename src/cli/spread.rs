//! A map over many independent items shared with helper threads, for the
//! listings: reading a container is a few small system calls and a parse,
//! independent of every other, so on an idle machine a listing of many
//! containers takes about its CPU time divided by the CPUs.
//!
//! The calling thread never waits for a helper that has not started: items
//! are taken in small batches from one counter by whoever is running, and
//! the caller waits only for the batches a helper took and is still on.
//! On a busy machine a helper may get no CPU before the caller is done;
//! it then finds nothing left and ends (helpers are not joined). Threads
//! each doing a fixed share, joined at the end, made a listing slower at a
//! load of 12 on 2 CPUs: the caller waited for each to be scheduled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Below this many items per thread, a thread's start costs more than it saves.
const PER_THREAD: usize = 64;
/// Items taken at once from the counter.
const BATCH: usize = 16;

struct Shared<T, R, F> {
    items: Vec<T>,
    f: F,
    next: AtomicUsize,
    slots: Vec<Mutex<Option<R>>>,
    /// Items not yet done, and the signal that it reached 0.
    left: Mutex<usize>,
    done: Condvar,
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
        std::thread::available_parallelism().map_or(1, |n| n.get().min(most)) - 1
    } else {
        0
    };
    if helpers == 0 {
        return items.iter().map(f).collect();
    }
    let n = items.len();
    let sh = Arc::new(Shared {
        items,
        f,
        next: AtomicUsize::new(0),
        slots: (0..n).map(|_| Mutex::new(None)).collect(),
        left: Mutex::new(n),
        done: Condvar::new(),
    });
    for _ in 0..helpers {
        let s = Arc::clone(&sh);
        // Not started (out of threads): this thread does it all.
        let _ = std::thread::Builder::new().spawn(move || work(&s, true));
    }
    work(&sh, false);
    {
        let mut left = sh.left.lock().unwrap_or_else(|e| e.into_inner());
        while *left > 0 {
            left = sh.done.wait(left).unwrap_or_else(|e| e.into_inner());
        }
    }
    (0..n)
        .map(|i| {
            let r = sh.slots[i].lock().unwrap_or_else(|e| e.into_inner()).take();
            // Empty where a helper panicked: done again here, where a
            // panic is reported as any other.
            r.unwrap_or_else(|| (sh.f)(&sh.items[i]))
        })
        .collect()
}

fn work<T, R, F: Fn(&T) -> R>(s: &Shared<T, R, F>, helper: bool) {
    let n = s.items.len();
    loop {
        let start = s.next.fetch_add(BATCH, Ordering::Relaxed);
        if start >= n {
            return;
        }
        let end = (start + BATCH).min(n);
        for i in start..end {
            let r = if helper {
                // Caught, so that the batch still counts as done: the
                // caller would otherwise wait for it forever.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (s.f)(&s.items[i]))).ok()
            } else {
                Some((s.f)(&s.items[i]))
            };
            *s.slots[i].lock().unwrap_or_else(|e| e.into_inner()) = r;
        }
        let mut left = s.left.lock().unwrap_or_else(|e| e.into_inner());
        *left -= end - start;
        if *left == 0 {
            s.done.notify_all();
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
        let out = map(items, move |x| {
            if std::thread::current().id() == me {
                std::thread::sleep(std::time::Duration::from_micros(500));
            } else if x % 2 == 0 {
                p.fetch_add(1, Ordering::Relaxed);
                panic!("a helper's panic, expected by this test");
            }
            x + 1
        });
        assert_eq!(out, (1..601).collect::<Vec<_>>());
        if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
            assert!(panics.load(Ordering::Relaxed) > 0, "no helper ran");
        }
    }
}
