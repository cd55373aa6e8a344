//! A small fixed pool of worker threads for products that last tens of microseconds.
//!
//! Contract: [`Pool::map`] runs `f(i)` for every `i in 0..n` exactly once, spread over the
//! calling thread (thread 0) and the workers (threads 1 and up), and returns the results in item
//! order. Item `i` belongs to thread `i mod threads`: each thread runs its own items first, so
//! that repeated jobs find their data in the same core's caches, then takes the items another
//! thread has not started (a thread that starts late leaves its share to the others). Each
//! thread's items are handed out by its own counter, so no item is taken twice; it returns only once every item has finished. A panic in an item
//! is raised again on the calling thread. Workers spin on the job counter for [`SPIN`] after each
//! job (a product is often followed by the next layer's within microseconds, and waking a
//! sleeping thread costs tens of microseconds) and then sleep until the next job.
//!
//! Invariant: a job's closure is reachable by workers only between the publication of its epoch
//! and the moment the last worker reports it finished; [`Pool::map`] does not return before that
//! moment, so the closure it borrows outlives every use.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps: longer than most products take, so that a
/// worker stays awake across the products of a network run and between runs served back to
/// back (waking a sleeping thread costs tens of microseconds, as much as a product), and short
/// enough that an idle process gives its cores back within milliseconds.
const SPIN: Duration = Duration::from_millis(2);

/// Spins of a waiting thread before it yields its core between checks.
const YIELD_AFTER: u32 = 2000;

/// The job of one epoch: runs item `i`.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Written by the calling thread before an epoch is published, read by workers after.
    job: UnsafeCell<Option<Job>>,
    /// Incremented once per job (and once to stop).
    epoch: AtomicU64,
    /// Per thread, how many of its items (`t`, `t + threads`, …) have been taken; and the item
    /// count of the current job.
    next: Vec<AtomicUsize>,
    items: AtomicUsize,
    /// Workers still inside the current job.
    busy: AtomicUsize,
    /// A worker's item panicked during the current job.
    panicked: AtomicBool,
    stop: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the thread inside `Pool::map` while no worker is in a job
// (every worker has reported the previous epoch finished) and read by workers only after they
// observe the new epoch (release/acquire on `epoch`); the closure it points to is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// Worker threads plus the calling thread.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Pool {
    /// A pool running jobs on `threads` threads: the caller's and `threads - 1` workers.
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(None),
            epoch: AtomicU64::new(0),
            next: (0..threads.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            items: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut pool = Pool {
            shared,
            workers: Vec::new(),
        };
        for i in 1..threads.max(1) {
            let shared = Arc::clone(&pool.shared);
            let handle = std::thread::Builder::new()
                .name(format!("sprig-cpu-{i}"))
                .spawn(move || worker(&shared, i))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Threads a job runs on (the caller's included).
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// `f(i)` for `i in 0..n`, in item order.
    pub fn map<T: Send>(&self, n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
        let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let run = |i: usize| {
            let v = f(i);
            *slots[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(v);
        };
        if self.workers.is_empty() || n <= 1 {
            (0..n).for_each(run);
        } else {
            self.run(n, &run);
        }
        slots
            .into_iter()
            .map(|s| {
                s.into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
                    .expect("every item ran")
            })
            .collect()
    }

    /// Runs `job(i)` for `i in 0..n` on every thread; returns when all items have finished.
    fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        // SAFETY: no worker is inside a job (the previous `run` waited for `busy == 0`), so none
        // reads `job` now. The lifetime is erased only for the duration of this call: workers
        // drop their use of the pointer before decrementing `busy`, awaited below.
        unsafe {
            let erased: &'static (dyn Fn(usize) + Sync) = std::mem::transmute(job);
            *s.job.get() = Some(erased as Job);
        }
        for next in &s.next {
            next.store(0, Ordering::Relaxed);
        }
        s.items.store(n, Ordering::Relaxed);
        s.busy.store(self.workers.len(), Ordering::Relaxed);
        s.panicked.store(false, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(PoisonError::into_inner);
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| take_items(s, 0, job)));
        // A worker still busy may share this thread's core with other work: after a short
        // spin, give the core up between checks.
        let mut spins = 0u32;
        while s.busy.load(Ordering::Acquire) > 0 {
            spins = spins.saturating_add(1);
            if spins > YIELD_AFTER {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        // SAFETY: every worker has left the job (busy == 0): nobody reads `job` any more.
        unsafe { *s.job.get() = None };
        if let Err(payload) = mine {
            std::panic::resume_unwind(payload);
        }
        assert!(
            !s.panicked.load(Ordering::Acquire),
            "a worker thread panicked"
        );
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        {
            let _guard = s.lock.lock().unwrap_or_else(PoisonError::into_inner);
            s.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Runs items of the current job until none is left: thread `me`'s own first, then the others'.
fn take_items(s: &Shared, me: usize, job: &(dyn Fn(usize) + Sync)) {
    let n = s.items.load(Ordering::Relaxed);
    let threads = s.next.len();
    for owner in (0..threads).map(|k| (me + k) % threads) {
        loop {
            let i = owner + s.next[owner].fetch_add(1, Ordering::Relaxed) * threads;
            if i >= n {
                break;
            }
            job(i);
        }
    }
}

fn worker(s: &Shared, me: usize) {
    let mut seen = 0u64;
    loop {
        // Spin for a while, then sleep, until a new epoch is published.
        let start = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let e = s.epoch.load(Ordering::Acquire);
            if e != seen {
                break e;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > SPIN {
                let mut guard = s.lock.lock().unwrap_or_else(PoisonError::into_inner);
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                while s.epoch.load(Ordering::SeqCst) == seen {
                    guard = s.wake.wait(guard).unwrap_or_else(PoisonError::into_inner);
                }
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(guard);
                break s.epoch.load(Ordering::Acquire);
            }
            std::hint::spin_loop();
        };
        seen = epoch;
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: the epoch was published after `job` was set (acquire above), and `run` keeps
        // the closure alive until this worker decrements `busy`.
        let job = unsafe { (*s.job.get()).map(|j| &*j) };
        if let Some(job) = job
            && catch_unwind(AssertUnwindSafe(|| take_items(s, me, job))).is_err()
        {
            s.panicked.store(true, Ordering::Release);
        }
        s.busy.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::Pool;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_runs_once_in_order() {
        let pool = Pool::new(3).expect("threads");
        for n in [0, 1, 2, 7, 100] {
            let calls = AtomicUsize::new(0);
            let out = pool.map(n, |i| {
                calls.fetch_add(1, Ordering::Relaxed);
                i * i
            });
            assert_eq!(out, (0..n).map(|i| i * i).collect::<Vec<_>>());
            assert_eq!(calls.load(Ordering::Relaxed), n);
        }
    }

    #[test]
    fn jobs_after_the_workers_slept_still_run() {
        let pool = Pool::new(2).expect("threads");
        assert_eq!(pool.map(4, |i| i + 1), [1, 2, 3, 4]);
        std::thread::sleep(super::SPIN * 5);
        assert_eq!(pool.map(4, |i| i * 2), [0, 2, 4, 6]);
    }

    #[test]
    fn a_panicking_item_panics_the_caller() {
        let pool = Pool::new(2).expect("threads");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.map(8, |i| assert!(i != 5, "item 5"))
        }));
        assert!(result.is_err());
        // The pool still works afterwards.
        assert_eq!(pool.map(3, |i| i), [0, 1, 2]);
    }
}
