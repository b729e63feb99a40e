//! The crate's own rayon pool, sized by `TRUENEG_NUM_THREADS` (default: all cores).
//!
//! A process that forks (torch `DataLoader` workers) must not use a pool created
//! by its parent: the Python package calls [`set_serial`] in the child, after
//! which every parallel kernel runs on the calling thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;

static SERIAL: AtomicBool = AtomicBool::new(false);

static POOL: LazyLock<rayon::ThreadPool> = LazyLock::new(|| {
    let n = std::env::var("TRUENEG_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("trueneg-{i}"))
        .build()
        .expect("failed to build the trueneg thread pool")
});

/// Run every later kernel on the calling thread (used after `fork`).
pub fn set_serial(serial: bool) {
    SERIAL.store(serial, Ordering::SeqCst);
}

pub fn is_serial() -> bool {
    SERIAL.load(Ordering::SeqCst)
}

/// Number of threads the kernels use (1 when serial).
pub fn num_threads() -> usize {
    if is_serial() {
        1
    } else {
        POOL.current_num_threads()
    }
}

/// Run `f` inside the pool; in serial mode a one-thread scope is used instead so
/// `par_iter` calls inside `f` stay on this thread.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if is_serial() {
        // A single-thread pool built on demand: cheap next to any real kernel.
        match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
            Ok(pool) => pool.install(f),
            Err(_) => f(),
        }
    } else {
        POOL.install(f)
    }
}
