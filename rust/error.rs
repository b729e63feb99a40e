//! Errors of the core. The binding layer maps each variant to a Python exception.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoreError {
    /// Arrays whose shapes do not agree (e.g. offsets of the wrong length).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A parameter out of its valid range.
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
}

pub type CoreResult<T> = Result<T, CoreError>;
