//! Exact inner-product search: blocked GEMM with a fused per-row top-k.

pub mod quant;
pub mod topk;

pub use topk::{topk_inner_product, topk_rows, Method, Rows, TopK};
