//! Per-feature input quantisers, calibrated on a set of rows.
//!
//! Affine: `q = clip(rint((x − lo) / scale), 0, 2^n − 1)` (ties to even, as numpy's `rint`), with `lo`
//! and `lo + scale·(2^n − 1)` the calibration minimum and maximum. Quantile: `q = #{e ∈ edges[j] : e ≤ x}`,
//! the edges being `2^n − 1` quantiles of the calibration data (deduplicated): skewed features (counts,
//! lengths) keep resolution where the data is. Values outside the calibrated range are clipped to it and
//! counted ([`Quantized::clipped`]) so that callers can warn or refuse.

use serde::{Deserialize, Serialize};

use crate::QuantError;

/// Widest input quantiser.
pub const MAX_INPUT_BITS: u32 = 16;

/// How input levels are placed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantizerKind {
    /// Affine: `2^n` evenly spaced levels between the calibration minimum and maximum.
    Uniform,
    /// Quantiles of the calibration data.
    #[default]
    Quantile,
}

/// Per-feature quantiser (see the module doc). Plain data: its JSON is what the client keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputQuantizer {
    pub n_bits: u32,
    pub lo: Vec<f64>,
    pub scale: Vec<f64>,
    /// Per feature, increasing edges (at most `2^n − 1`); absent for affine quantisers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<Vec<Vec<f64>>>,
}

/// Quantised rows, and how many values were clipped to the calibrated range.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    /// Row-major, `rows × features`.
    pub values: Vec<i64>,
    /// Values below the calibrated minimum or above the maximum (affine quantisers).
    pub clipped: usize,
    /// Rows with at least one clipped value.
    pub clipped_rows: usize,
    /// Features with at least one clipped value, in increasing order.
    pub clipped_features: Vec<usize>,
}

impl InputQuantizer {
    /// Affine quantisers from calibration rows (`rows[i]` has one value per feature): each feature's
    /// range is the calibration's minimum and maximum; a constant feature gets scale 1.
    pub fn calibrate(rows: &[Vec<f64>], n_features: usize, n_bits: u32) -> Result<InputQuantizer, QuantError> {
        if !(1..=MAX_INPUT_BITS).contains(&n_bits) {
            return Err(QuantError::Options(format!(
                "inputs need 1 to {MAX_INPUT_BITS} bits, got {n_bits}"
            )));
        }
        if rows.is_empty() {
            return Err(QuantError::Calibration("the calibration set is empty".into()));
        }
        let mut lo = vec![f64::INFINITY; n_features];
        let mut hi = vec![f64::NEG_INFINITY; n_features];
        for (i, r) in rows.iter().enumerate() {
            if r.len() != n_features {
                return Err(QuantError::Calibration(format!(
                    "calibration row {i} has {} features, the model {n_features}",
                    r.len()
                )));
            }
            for (j, &v) in r.iter().enumerate() {
                if !v.is_finite() {
                    return Err(QuantError::Calibration(format!(
                        "calibration row {i} feature {j} is {v}: missing or infinite values are not supported"
                    )));
                }
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
            }
        }
        let levels = ((1u64 << n_bits) - 1) as f64;
        let scale = lo
            .iter()
            .zip(&hi)
            .map(|(l, h)| if h > l { (h - l) / levels } else { 1.0 })
            .collect();
        Ok(InputQuantizer {
            n_bits,
            lo,
            scale,
            edges: None,
        })
    }

    /// Quantile quantisers from calibration rows.
    pub fn calibrate_quantiles(
        rows: &[Vec<f64>],
        n_features: usize,
        n_bits: u32,
    ) -> Result<InputQuantizer, QuantError> {
        let mut q = InputQuantizer::calibrate(rows, n_features, n_bits)?;
        let levels = (1usize << n_bits) - 1;
        let n = rows.len();
        let mut edges = Vec::with_capacity(n_features);
        for j in 0..n_features {
            let mut col: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            col.sort_by(f64::total_cmp);
            let mut e: Vec<f64> = Vec::with_capacity(levels);
            for k in 1..=levels {
                let v = col[(k * n / (levels + 1)).min(n - 1)];
                if v > col[0] && e.last().is_none_or(|&last| v > last) {
                    e.push(v);
                }
            }
            edges.push(e);
        }
        q.edges = Some(edges);
        Ok(q)
    }

    /// Calibrates quantisers of the given kind.
    pub fn calibrate_kind(
        rows: &[Vec<f64>],
        n_features: usize,
        n_bits: u32,
        kind: QuantizerKind,
    ) -> Result<InputQuantizer, QuantError> {
        match kind {
            QuantizerKind::Uniform => InputQuantizer::calibrate(rows, n_features, n_bits),
            QuantizerKind::Quantile => InputQuantizer::calibrate_quantiles(rows, n_features, n_bits),
        }
    }

    pub fn n_features(&self) -> usize {
        self.lo.len()
    }

    /// The largest level, `2^n − 1`.
    pub fn levels(&self) -> u32 {
        (1u32 << self.n_bits) - 1
    }

    /// Checks the quantiser's own invariants (a file may hold anything).
    pub fn validate(&self) -> Result<(), QuantError> {
        let bad = |m: String| Err(QuantError::Options(m));
        if !(1..=MAX_INPUT_BITS).contains(&self.n_bits) {
            return bad(format!("input quantiser of {} bits", self.n_bits));
        }
        if self.scale.len() != self.lo.len() {
            return bad("input quantiser: lo and scale differ in length".into());
        }
        if self.lo.iter().chain(&self.scale).any(|v| !v.is_finite()) || self.scale.iter().any(|&s| s <= 0.0) {
            return bad("input quantiser: non-finite bounds or non-positive scales".into());
        }
        if let Some(e) = &self.edges {
            if e.len() != self.lo.len()
                || e.iter()
                    .any(|f| f.len() > self.levels() as usize || f.windows(2).any(|w| w[0] >= w[1]))
            {
                return bad("input quantiser: edges must be increasing, at most 2^n − 1 per feature".into());
            }
        }
        Ok(())
    }

    /// Quantises one row.
    pub fn quantize_row(&self, x: &[f64]) -> Vec<i64> {
        let max = self.levels() as f64;
        x.iter()
            .enumerate()
            .map(|(j, &v)| match &self.edges {
                Some(e) => e[j].partition_point(|&edge| edge <= v) as i64,
                None => ((v - self.lo[j]) / self.scale[j]).round_ties_even().clamp(0.0, max) as i64,
            })
            .collect()
    }

    /// Quantises row-major `rows × n_features` values, counting what was clipped. NaN and infinities
    /// are refused.
    pub fn quantize(&self, values: &[f64]) -> Result<Quantized, QuantError> {
        let d = self.n_features();
        if d == 0 || !values.len().is_multiple_of(d) {
            return Err(QuantError::Calibration(format!(
                "{} values do not form rows of {d} features",
                values.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(QuantError::Calibration(format!(
                "row {} feature {} is {}: missing or infinite values are not supported",
                i / d,
                i % d,
                values[i]
            )));
        }
        let max = self.levels() as f64;
        let mut out = Vec::with_capacity(values.len());
        let (mut clipped, mut clipped_rows) = (0usize, 0usize);
        let mut features = vec![false; d];
        for row in values.chunks(d) {
            let mut row_clipped = false;
            for (j, &v) in row.iter().enumerate() {
                out.push(match &self.edges {
                    Some(e) => e[j].partition_point(|&edge| edge <= v) as i64,
                    None => {
                        let q = ((v - self.lo[j]) / self.scale[j]).round_ties_even();
                        if !(0.0..=max).contains(&q) {
                            clipped += 1;
                            row_clipped = true;
                            features[j] = true;
                        }
                        q.clamp(0.0, max) as i64
                    }
                });
            }
            clipped_rows += usize::from(row_clipped);
        }
        Ok(Quantized {
            values: out,
            clipped,
            clipped_rows,
            clipped_features: (0..d).filter(|&j| features[j]).collect(),
        })
    }

    /// Grid points of feature `j`: `0 ..= grid_max(j)`.
    pub fn grid_max(&self, j: usize) -> u32 {
        match &self.edges {
            Some(e) => e[j].len() as u32,
            None => self.levels(),
        }
    }

    /// The float value grid point `q` of feature `j` stands for (quantile kind: the lower edge of the
    /// bin, the calibration minimum for bin 0).
    pub fn level_value(&self, j: usize, q: u32) -> f64 {
        match &self.edges {
            Some(e) if q > 0 => e[j][q as usize - 1],
            Some(_) => self.lo[j],
            None => self.lo[j] + self.scale[j] * q as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_levels_span_the_calibration_range_and_clip_outside() {
        let rows = vec![vec![0.0, 5.0], vec![3.0, 5.0], vec![1.5, 5.0]];
        let q = InputQuantizer::calibrate(&rows, 2, 2).unwrap();
        assert_eq!(
            q.scale,
            vec![1.0, 1.0],
            "3 levels over [0, 3]; a constant feature gets scale 1"
        );
        let r = q.quantize(&[0.0, 5.0, 3.0, 5.0, 1.5, 5.0, -1.0, 9.0]).unwrap();
        // 1.5 rounds to even: 2
        assert_eq!(r.values, vec![0, 0, 3, 0, 2, 0, 0, 3]);
        assert_eq!(
            (r.clipped, r.clipped_rows, r.clipped_features.clone()),
            (2, 1, vec![0, 1])
        );
        assert_eq!(q.quantize_row(&[1.5, 5.0]), vec![2, 0]);
        assert!(q.quantize(&[f64::NAN, 0.0]).is_err());
        assert!(q.quantize(&[1.0]).is_err());
    }

    #[test]
    fn quantile_edges_follow_the_data() {
        let rows: Vec<Vec<f64>> = (0..100).map(|i| vec![(i * i) as f64]).collect();
        let q = InputQuantizer::calibrate_quantiles(&rows, 1, 2).unwrap();
        let e = &q.edges.as_ref().unwrap()[0];
        assert_eq!(e, &vec![625.0, 2500.0, 5625.0]);
        assert_eq!(q.quantize_row(&[624.0]), vec![0]);
        assert_eq!(q.quantize_row(&[625.0]), vec![1]);
        assert_eq!(q.quantize_row(&[1e9]), vec![3]);
        q.validate().unwrap();
    }

    #[test]
    fn bad_options_and_calibration_are_errors() {
        assert!(InputQuantizer::calibrate(&[vec![1.0]], 1, 0).is_err());
        assert!(InputQuantizer::calibrate(&[vec![1.0]], 1, 17).is_err());
        assert!(InputQuantizer::calibrate(&[], 1, 4).is_err());
        assert!(InputQuantizer::calibrate(&[vec![1.0, 2.0]], 1, 4).is_err());
        assert!(InputQuantizer::calibrate(&[vec![f64::INFINITY]], 1, 4).is_err());
        let mut q = InputQuantizer::calibrate(&[vec![1.0], vec![2.0]], 1, 4).unwrap();
        q.scale[0] = 0.0;
        assert!(q.validate().is_err());
    }
}
