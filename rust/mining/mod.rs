//! Negative selection over search candidates, positive-aware, and the ECI score of a
//! negative set.

pub mod eci;
pub mod select;

pub use eci::{effective_contrastive_information, EciInput, EciTerms};
pub use select::{select_negatives, Sampling, SelectParams, Selected};
