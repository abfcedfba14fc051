//! Per-channel weight quantisation: each output channel (the last axis) gets its own scale.
//!
//! * **Symmetric**: `w ≈ s·q`, `|q| ≤ 2^(n−1) − 1`, `s = max|w| / (2^(n−1) − 1)`.
//! * **Affine**: `w ≈ s·q` with `q` in a range of `2^n` consecutive integers that contains 0, `s` the
//!   channel's span `max(w, 0) − min(w, 0)` over `2^n − 1`. Zero stays exact; a channel whose weights
//!   have one sign (common: a regression's coefficients) gets twice the symmetric resolution.

use serde::{Deserialize, Serialize};

use crate::QuantError;

/// Widest weight quantiser.
pub const MAX_WEIGHT_BITS: u32 = 16;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightMode {
    Symmetric,
    #[default]
    Affine,
}

/// Quantised weights: `values` row-major (`rows × channels`), one scale per channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub rows: usize,
    pub channels: usize,
    pub values: Vec<i64>,
    pub scales: Vec<f64>,
}

impl Weights {
    pub fn get(&self, row: usize, channel: usize) -> i64 {
        self.values[row * self.channels + channel]
    }
}

/// Quantises `w` (row-major, `rows × channels`) to `n_bits` per channel.
pub fn quantize_weights(
    w: &[f64],
    rows: usize,
    channels: usize,
    n_bits: u32,
    mode: WeightMode,
) -> Result<Weights, QuantError> {
    if !(2..=MAX_WEIGHT_BITS).contains(&n_bits) {
        return Err(QuantError::Options(format!(
            "weights need 2 to {MAX_WEIGHT_BITS} bits, got {n_bits}"
        )));
    }
    if rows.checked_mul(channels) != Some(w.len()) {
        return Err(QuantError::Options(format!(
            "{} weights do not form a {rows} × {channels} matrix",
            w.len()
        )));
    }
    if let Some(v) = w.iter().find(|v| !v.is_finite()) {
        return Err(QuantError::Options(format!("a weight is {v}: weights must be finite")));
    }
    let mut scales = Vec::with_capacity(channels);
    let mut values = vec![0i64; w.len()];
    for c in 0..channels {
        let col = (0..rows).map(|r| w[r * channels + c]);
        let (lo, hi) = col.fold((0f64, 0f64), |(l, h), v| (l.min(v), h.max(v)));
        let (scale, qmin, qmax) = match mode {
            WeightMode::Symmetric => {
                let top = ((1i64 << (n_bits - 1)) - 1) as f64;
                let m = lo.abs().max(hi);
                (if m > 0.0 { m / top } else { 1.0 }, -(top as i64), top as i64)
            }
            WeightMode::Affine => {
                let levels = ((1i64 << n_bits) - 1) as f64;
                let s = if hi > lo { (hi - lo) / levels } else { 1.0 };
                // 2^n consecutive integers from round(lo / s) (≤ 0): they contain 0 and round(hi / s)
                // up to one rounding step
                let qmin = (lo / s).round() as i64;
                (s, qmin, qmin + levels as i64)
            }
        };
        for r in 0..rows {
            let i = r * channels + c;
            values[i] = ((w[i] / scale).round_ties_even() as i64).clamp(qmin, qmax);
        }
        scales.push(scale);
    }
    Ok(Weights {
        rows,
        channels,
        values,
        scales,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_signed_channels_get_every_level() {
        let w = [0.0, 3.1, 1.0, 15.5];
        let a = quantize_weights(&w, 4, 1, 4, WeightMode::Affine).unwrap();
        assert_eq!(a.values, vec![0, 3, 1, 15]);
        let s = quantize_weights(&w, 4, 1, 4, WeightMode::Symmetric).unwrap();
        assert_eq!(s.values, vec![0, 1, 0, 7]);
        assert!(a.scales[0] < s.scales[0]);
    }

    #[test]
    fn bad_shapes_and_values_are_errors() {
        assert!(quantize_weights(&[1.0, 2.0, 3.0], 2, 2, 4, WeightMode::Affine).is_err());
        assert!(quantize_weights(&[f64::NAN], 1, 1, 4, WeightMode::Affine).is_err());
        assert!(quantize_weights(&[1.0], 1, 1, 1, WeightMode::Affine).is_err());
    }

    proptest! {
        /// Every channel's integers span at most 2^n values and contain 0's representation; the
        /// error of each weight is at most one step.
        #[test]
        fn affine_weights_fit_n_bits(w in proptest::collection::vec(-50.0f64..50.0, 12), bits in 2u32..9) {
            let q = quantize_weights(&w, 4, 3, bits, WeightMode::Affine).unwrap();
            for c in 0..3 {
                let col: Vec<i64> = (0..4).map(|r| q.get(r, c)).collect();
                let (lo, hi) = (col.iter().min().unwrap().min(&0), col.iter().max().unwrap().max(&0));
                prop_assert!(hi - lo < 1i64 << bits, "{col:?}");
                for r in 0..4 {
                    prop_assert!((w[r * 3 + c] - q.scales[c] * q.get(r, c) as f64).abs() <= q.scales[c] * 1.0 + 1e-9);
                }
            }
        }
    }
}
