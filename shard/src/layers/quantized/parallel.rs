//! A parallel loop led by the calling thread: it starts working at once, rayon workers join
//! when they get CPU time, and the caller never waits for a worker that has not started.
//!
//! `par_iter` from outside the pool (the engine's step runs on a blocking thread) parks the
//! caller until the pool has run everything, paying two thread wake-ups per matmul; at
//! 7 matmuls a layer those wake-ups cost more than the small matmuls themselves.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The loop state shared with helper jobs that may start after the loop has finished.
struct Shared {
    /// Next unclaimed chunk; values `>= total` mean nothing is left.
    next: AtomicUsize,
    /// Chunks finished (or abandoned by a panic on the calling thread).
    done: AtomicUsize,
    total: usize,
    /// The loop body, valid until `done` reaches the number of claimed chunks.
    work: *const (dyn Fn(usize) + Sync),
}

// SAFETY: `work` points to a `Sync` closure; it is only called for a chunk claimed while the
// calling thread is still inside `for_each_chunk`, which outlives every claimed chunk.
unsafe impl Send for Shared {}
// SAFETY: as above; all other fields are atomics or immutable.
unsafe impl Sync for Shared {}

impl Shared {
    /// Claims and runs chunks until none are left.
    fn drain(&self) {
        loop {
            let c = self.next.fetch_add(1, Ordering::AcqRel);
            if c >= self.total {
                return;
            }
            let _done = CountOnDrop(&self.done);
            // SAFETY: `c < total` was claimed here, so the caller is still waiting for it
            // (see `WaitOnDrop`) and the closure is alive.
            unsafe { (*self.work)(c) };
        }
    }
}

/// Counts a chunk as done even if its body unwinds.
struct CountOnDrop<'a>(&'a AtomicUsize);

impl Drop for CountOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// Stops further claims and waits for every claimed chunk, on return and on unwind.
struct WaitOnDrop<'a>(&'a Shared);

impl Drop for WaitOnDrop<'_> {
    fn drop(&mut self) {
        let claimed = self
            .0
            .next
            .swap(usize::MAX / 2, Ordering::AcqRel)
            .min(self.0.total);
        let mut spins = 0u32;
        while self.0.done.load(Ordering::Acquire) < claimed {
            // A helper holds at most one chunk (about a microsecond); yield only if it seems
            // to have been descheduled.
            spins += 1;
            if spins < 1 << 10 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Runs `work(c)` for every `c < total`, on this thread and up to `helpers` rayon workers.
pub(super) fn for_each_chunk(total: usize, helpers: usize, work: &(dyn Fn(usize) + Sync)) {
    let helpers = helpers.min(total.saturating_sub(1));
    if helpers == 0 {
        (0..total).for_each(work);
        return;
    }
    let work: *const (dyn Fn(usize) + Sync + '_) = work;
    // SAFETY: only the lifetime bound changes; `WaitOnDrop` below keeps this frame (and so
    // the closure) alive until every chunk that dereferences it has finished.
    let work: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(work) };
    let shared = Arc::new(Shared {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        total,
        work,
    });
    let _wait = WaitOnDrop(&shared);
    for _ in 0..helpers {
        let shared = Arc::clone(&shared);
        rayon::spawn(move || shared.drain());
    }
    shared.drain();
}

#[cfg(test)]
mod tests {
    use super::for_each_chunk;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_chunk_exactly_once() {
        for (total, helpers) in [(0, 3), (1, 3), (7, 0), (1000, 1), (1000, 7)] {
            let hits: Vec<AtomicUsize> = (0..total).map(|_| AtomicUsize::new(0)).collect();
            for_each_chunk(total, helpers, &|c| {
                hits[c].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "{total} chunks, {helpers} helpers"
            );
        }
    }

    #[test]
    fn waits_for_chunks_held_by_helpers_when_the_caller_panics() {
        let caller = std::thread::current().id();
        let panicked = AtomicUsize::new(0);
        let finished = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for_each_chunk(64, 2, &|_| {
                // Only the calling thread panics: a panic in a rayon job aborts the process.
                if std::thread::current().id() == caller
                    && panicked.fetch_add(1, Ordering::Relaxed) == 0
                {
                    panic!("first chunk on the calling thread");
                }
                std::thread::sleep(std::time::Duration::from_micros(50));
                finished.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(r.is_err());
        // Every claimed chunk has finished by now: a later write would be a use after return.
        let seen = finished.load(Ordering::Relaxed);
        assert!(seen < 64);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(seen, finished.load(Ordering::Relaxed));
    }
}
