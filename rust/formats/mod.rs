//! Fast parsers of external training-data formats into columnar buffers.

pub mod bge;

/// A growable Arrow-layout string column (int64 offsets + UTF-8 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrBuf {
    pub offsets: Vec<i64>,
    pub data: Vec<u8>,
}

impl Default for StrBuf {
    fn default() -> Self {
        Self {
            offsets: vec![0],
            data: Vec::new(),
        }
    }
}

impl StrBuf {
    pub fn push(&mut self, s: &str) {
        self.data.extend_from_slice(s.as_bytes());
        self.offsets.push(self.data.len() as i64);
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every row from `n` on.
    pub fn truncate(&mut self, n: usize) {
        self.offsets.truncate(n + 1);
        self.data.truncate(self.offsets[n] as usize);
    }

    pub fn append(&mut self, other: &StrBuf) {
        let base = self.data.len() as i64;
        self.data.extend_from_slice(&other.data);
        self.offsets
            .extend(other.offsets[1..].iter().map(|o| o + base));
    }

    pub fn get(&self, i: usize) -> &str {
        let (a, b) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        std::str::from_utf8(&self.data[a..b]).unwrap_or("")
    }
}
