//! Requantisation tables: a univariate function from one quantised domain to another as the table of
//! one lookup (`fhe.lut`), the way activations and rescaling between layers run encrypted.

use serde::{Deserialize, Serialize};

use crate::QuantError;

/// An affine quantised domain: integer `q` stands for `scale · (q − zero_point)`; `q` is an `n_bits`
/// integer, signed (two's complement) or unsigned.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    pub scale: f64,
    pub zero_point: i64,
    pub n_bits: u32,
    pub signed: bool,
}

impl Affine {
    /// The integers of the domain.
    pub fn range(&self) -> (i64, i64) {
        if self.signed {
            (-(1i64 << (self.n_bits - 1)), (1i64 << (self.n_bits - 1)) - 1)
        } else {
            (0, (1i64 << self.n_bits) - 1)
        }
    }

    pub fn dequantize(&self, q: i64) -> f64 {
        self.scale * (q - self.zero_point) as f64
    }

    /// The nearest integer of the domain (ties to even), clipped to it.
    pub fn quantize(&self, x: f64) -> i64 {
        let (lo, hi) = self.range();
        let q = (x / self.scale).round_ties_even() + self.zero_point as f64;
        if q.is_nan() {
            return self.zero_point.clamp(lo, hi);
        }
        (q.clamp(lo as f64, hi as f64)) as i64
    }

    fn check(&self) -> Result<(), QuantError> {
        if !((1..=16).contains(&self.n_bits) && self.scale.is_finite() && self.scale > 0.0) {
            return Err(QuantError::Options(format!(
                "a quantised domain needs 1 to 16 bits and a positive scale, got {self:?}"
            )));
        }
        Ok(())
    }
}

/// The table of `y = f(x)` from domain `input` to domain `output`, indexed as `fhe.lut` indexes its
/// input: entry `k` is for the input integer `k` (unsigned) or its two's-complement value (signed).
pub fn requant_table(input: &Affine, output: &Affine, f: impl Fn(f64) -> f64) -> Result<Vec<i64>, QuantError> {
    input.check()?;
    output.check()?;
    let size = 1usize << input.n_bits;
    Ok((0..size)
        .map(|k| {
            let v = if input.signed && k >= size / 2 {
                k as i64 - size as i64
            } else {
                k as i64
            };
            output.quantize(f(input.dequantize(v)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_between_domains() {
        let input = Affine {
            scale: 0.5,
            zero_point: 0,
            n_bits: 3,
            signed: true,
        };
        let output = Affine {
            scale: 0.25,
            zero_point: 0,
            n_bits: 3,
            signed: false,
        };
        let t = requant_table(&input, &output, |x| x.max(0.0)).unwrap();
        // inputs 0 1 2 3 -4 -3 -2 -1 → 0, 0.5, 1, 1.5 (clipped to 7 · 0.25), 0, …
        assert_eq!(t, vec![0, 2, 4, 6, 0, 0, 0, 0]);
        let bad = Affine { scale: 0.0, ..input };
        assert!(requant_table(&bad, &output, |x| x).is_err());
    }
}
