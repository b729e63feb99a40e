//! Exact and near-duplicate detection: normalisation, shingling, `MinHash`, LSH banding,
//! union-find clusters with the lowest id as the deterministic survivor.

pub mod exact;
pub mod lsh;
pub mod minhash;
pub mod normalize;
pub mod shingle;
pub mod unionfind;

pub use exact::normalized_hashes;
pub use lsh::{lsh_clusters, LshParams, LshResult, Verify};
pub use minhash::{minhash_signatures, MinHasher};
pub use normalize::Normalize;
pub use shingle::{Shingler, Unit};
