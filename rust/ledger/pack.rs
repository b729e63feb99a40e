//! Packing each example's negatives into LLM calls of at most `max_per_call` documents.
//!
//! The negatives of an example are split into the fewest calls of near-equal size, in their order
//! (RLHN sends up to 25 per call); each call is `(example, start, end)` over the example's list.

use crate::error::{CoreError, CoreResult};

/// One planned call: negatives `start..end` of example `example`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub example: u64,
    pub start: u32,
    pub end: u32,
}

/// Plan calls for examples with `counts[i]` negatives each. Examples without negatives get none.
pub fn plan_calls(counts: &[u32], max_per_call: u32) -> CoreResult<Vec<Call>> {
    if max_per_call == 0 {
        return Err(CoreError::InvalidParam(
            "max_per_call must be at least 1".into(),
        ));
    }
    let mut out = Vec::with_capacity(counts.len());
    for (i, &n) in counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let calls = n.div_ceil(max_per_call);
        let base = n / calls;
        let extra = n % calls;
        let mut start = 0;
        for c in 0..calls {
            let size = base + u32::from(c < extra);
            out.push(Call {
                example: i as u64,
                start,
                end: start + size,
            });
            start += size;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_evenly_in_order() {
        let calls = plan_calls(&[25, 0, 26, 98], 25).unwrap();
        let spans: Vec<(u64, u32, u32)> =
            calls.iter().map(|c| (c.example, c.start, c.end)).collect();
        assert_eq!(
            spans,
            vec![
                (0, 0, 25),
                (2, 0, 13),
                (2, 13, 26),
                (3, 0, 25),
                (3, 25, 50),
                (3, 50, 74),
                (3, 74, 98)
            ]
        );
        assert!(plan_calls(&[1], 0).is_err());
    }
}
