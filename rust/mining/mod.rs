//! Negative selection over search candidates, positive-aware.

pub mod select;

pub use select::{select_negatives, Sampling, SelectParams, Selected};
