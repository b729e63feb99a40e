//! Bindings: the thread pool and the CPU features, for `trueneg env`.
// pyo3 hands arguments over by value; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value, clippy::elidable_lifetime_names)]

use pyo3::prelude::*;

use crate::pool;

/// Run every later kernel on the calling thread (set in forked children).
#[pyfunction]
pub(super) fn set_serial(serial: bool) {
    pool::set_serial(serial);
}

/// Number of threads the kernels use.
#[pyfunction]
pub(super) fn num_threads() -> usize {
    pool::num_threads()
}

/// CPU features the build and the machine offer, for `trueneg env`.
#[pyfunction]
pub(super) fn cpu_features() -> Vec<String> {
    crate::cpu::features()
        .into_iter()
        .map(str::to_string)
        .collect()
}
