//! trueneg core: the pure-Rust kernels behind the `trueneg` Python package.
//!
//! Nothing in this crate outside `py/` knows about Python: every module here
//! is tested with `cargo test --no-default-features`.

pub mod cpu;
pub mod dedup;
pub mod error;
pub mod formats;
pub mod intern;
pub mod ledger;
pub mod mining;
pub mod pool;
pub mod search;
pub mod text;

#[cfg(feature = "python")]
mod py;

pub use error::CoreError;
