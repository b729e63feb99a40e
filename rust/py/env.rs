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
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("sse4.2", std::arch::is_x86_feature_detected!("sse4.2")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("f16c", std::arch::is_x86_feature_detected!("f16c")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            (
                "avx512vnni",
                std::arch::is_x86_feature_detected!("avx512vnni"),
            ),
            (
                "avx512bf16",
                std::arch::is_x86_feature_detected!("avx512bf16"),
            ),
        ] {
            if on {
                out.push(name.to_string());
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            out.push("neon".to_string());
        }
    }
    out
}
