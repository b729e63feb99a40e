//! Interning: map 128-bit content keys to dense `u32` ids in first-seen order.
//!
//! The interner is fed chunk after chunk while a file streams in, so ids are
//! stable however the input is chunked.

use rustc_hash::FxHashMap;

use crate::error::{CoreError, CoreResult};

/// Result of interning one chunk of keys.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Interned {
    /// Dense id of each key.
    pub ids: Vec<u32>,
    /// `true` where the key was seen for the first time (in this chunk or ever).
    pub is_new: Vec<bool>,
    /// `true` where the key was known but its attached value differs from the first one seen.
    pub conflict: Vec<bool>,
}

#[derive(Debug, Default)]
pub struct Interner {
    map: FxHashMap<u128, u32>,
    /// The value attached to each id when it was first seen (for conflict checks).
    values: Vec<u128>,
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Intern `keys`; `values` (same length, or empty) are remembered on first sight
    /// and compared on every later sight.
    pub fn intern(&mut self, keys: &[u128], values: &[u128]) -> CoreResult<Interned> {
        if !values.is_empty() && values.len() != keys.len() {
            return Err(CoreError::Shape(format!(
                "{} keys but {} values",
                keys.len(),
                values.len()
            )));
        }
        let mut out = Interned {
            ids: Vec::with_capacity(keys.len()),
            is_new: Vec::with_capacity(keys.len()),
            conflict: Vec::with_capacity(keys.len()),
        };
        self.map.reserve(keys.len() / 2);
        for (i, &k) in keys.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(k);
            let next = u32::try_from(self.values.len())
                .map_err(|_| CoreError::InvalidParam("more than 2^32 distinct keys".into()))?;
            match self.map.entry(k) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    let id = *e.get();
                    out.ids.push(id);
                    out.is_new.push(false);
                    out.conflict.push(self.values[id as usize] != v);
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(next);
                    self.values.push(v);
                    out.ids.push(next);
                    out.is_new.push(true);
                    out.conflict.push(false);
                }
            }
        }
        Ok(out)
    }

    /// Id of each key, or -1 when unknown.
    pub fn lookup(&self, keys: &[u128]) -> Vec<i64> {
        keys.iter()
            .map(|k| self.map.get(k).map_or(-1, |&id| i64::from(id)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_first_seen_ids_across_chunks() {
        let mut it = Interner::new();
        let a = it.intern(&[10, 20, 10], &[]).unwrap();
        assert_eq!(a.ids, vec![0, 1, 0]);
        assert_eq!(a.is_new, vec![true, true, false]);
        let b = it.intern(&[30, 20], &[]).unwrap();
        assert_eq!(b.ids, vec![2, 1]);
        assert_eq!(b.is_new, vec![true, false]);
        assert_eq!(it.len(), 3);
        assert_eq!(it.lookup(&[20, 99]), vec![1, -1]);
    }

    #[test]
    fn conflicting_values_are_flagged() {
        let mut it = Interner::new();
        it.intern(&[1], &[100]).unwrap();
        let r = it.intern(&[1, 1], &[100, 101]).unwrap();
        assert_eq!(r.conflict, vec![false, true]);
        assert!(it.intern(&[1, 2], &[1]).is_err());
    }
}
