//! Bookkeeping of the judge stage: packing negatives into calls, token counting for estimates.

pub mod batches;
pub mod fix;
pub mod pack;
pub mod tokens;
