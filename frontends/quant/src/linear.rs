//! Quantised linear models: `y = X·W + b` with `X` (rows × d) floats, `W` (d × C), `b` (C).
//!
//! Each feature `j` is quantised affinely to `n_in` unsigned bits, `x_j ≈ lo_j + s_j·q_j` with
//! `q_j ∈ [0, 2^n_in − 1]`, so the model becomes
//!
//! ```text
//! y_c = Σ_j W_jc·(lo_j + s_j·q_j) + b_c = Σ_j (W_jc·s_j)·q_j + (b_c + Σ_j W_jc·lo_j)
//! ```
//!
//! and the feature scales fold into the weights. The folded weights of each output are quantised to
//! `n_w` bits per channel ([`WeightMode::Affine`]: `2^n_w` levels that include 0 — a channel whose
//! weights have one sign keeps every level), `W_jc·s_j ≈ σ_c·w_jc`. The encrypted program computes the
//! integer accumulator `acc_c = Σ_j q_j·w_jc` (no bootstrap); the client dequantises,
//! `y_c = σ_c·acc_c + β_c`. Every execution mode shares the quantisation and the dequantisation, so equal
//! accumulators give equal predictions, bit for bit.

use fhec_ir::attr::{Attribute, Dense};
use fhec_ir::types::{clear_type_for, MAX_ENCRYPTED_WIDTH};
use fhec_ir::{ElemType, FunctionBuilder, Module, OpKind, Tensor, Type};
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::input::InputQuantizer;
use crate::weights::{quantize_weights, WeightMode};
use crate::QuantError;

/// A quantised linear model (plain data; its JSON is the estimators' saved state).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizedLinear {
    pub inputs: InputQuantizer,
    pub weight_bits: u32,
    /// Integer weights, `d` rows of `C`.
    pub weights: Vec<Vec<i64>>,
    /// Per output: the weight scale `σ_c`.
    pub w_scale: Vec<f64>,
    /// Per output: the folded bias `β_c`.
    pub bias: Vec<f64>,
}

impl QuantizedLinear {
    /// Quantises `W` (row-major `d × C`) and `b` (`C`), with affine input quantisers calibrated on
    /// `calibration` (row-major `rows × d`).
    pub fn build(
        w: &[f64],
        d: usize,
        c: usize,
        b: &[f64],
        calibration: &[f64],
        input_bits: u32,
        weight_bits: u32,
    ) -> Result<QuantizedLinear, QuantError> {
        if d == 0 || c == 0 || d.checked_mul(c) != Some(w.len()) || b.len() != c {
            return Err(QuantError::Options(format!(
                "weights of {} values and {} biases do not form a {d} × {c} linear model",
                w.len(),
                b.len()
            )));
        }
        if !calibration.len().is_multiple_of(d) {
            return Err(QuantError::Calibration(format!(
                "{} calibration values do not form rows of {d} features",
                calibration.len()
            )));
        }
        let rows: Vec<Vec<f64>> = calibration.chunks(d).map(<[f64]>::to_vec).collect();
        let inputs = InputQuantizer::calibrate(&rows, d, input_bits)?;
        let folded: Vec<f64> = (0..d * c).map(|i| w[i] * inputs.scale[i / c]).collect();
        let bias: Vec<f64> = (0..c)
            .map(|k| b[k] + (0..d).map(|j| inputs.lo[j] * w[j * c + k]).sum::<f64>())
            .collect();
        if bias.iter().any(|v| !v.is_finite()) {
            return Err(QuantError::Options(
                "the model's weights or biases are not finite".into(),
            ));
        }
        let q = quantize_weights(&folded, d, c, weight_bits, WeightMode::Affine)?;
        let weights = (0..d).map(|j| q.values[j * c..(j + 1) * c].to_vec()).collect();
        let m = QuantizedLinear {
            inputs,
            weight_bits,
            weights,
            w_scale: q.scales,
            bias,
        };
        Ok(m)
    }

    /// A saved model (its JSON), checked.
    pub fn from_json(text: &str) -> Result<QuantizedLinear, QuantError> {
        let q: QuantizedLinear = serde_json::from_str(text)
            .map_err(|e| QuantError::Options(format!("not a quantised linear model: {e}")))?;
        q.validate()?;
        Ok(q)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }

    pub fn n_features(&self) -> usize {
        self.weights.len()
    }

    pub fn n_outputs(&self) -> usize {
        self.w_scale.len()
    }

    /// Bits of the signed accumulator over every input the quantisers can produce.
    pub fn accumulator_bits(&self) -> u32 {
        let max_q = self.inputs.levels() as i128;
        let mut m: i128 = 0;
        for k in 0..self.n_outputs() {
            let pos: i128 = self.weights.iter().map(|r| r[k].max(0) as i128).sum();
            let neg: i128 = self.weights.iter().map(|r| r[k].min(0) as i128).sum();
            m = m.max(pos * max_q).max(-neg * max_q);
        }
        (128 - m.leading_zeros()) + 1
    }

    /// Refuses accumulators wider than the compiler supports, saying what to lower.
    pub fn check_width(&self) -> Result<(), QuantError> {
        let bits = self.accumulator_bits();
        if bits > MAX_ENCRYPTED_WIDTH {
            return Err(QuantError::Unsupported(format!(
                "the encrypted accumulator needs {bits} bits ({} features × {}-bit inputs × {}-bit weights); at most \
                 {MAX_ENCRYPTED_WIDTH} are supported: lower n_bits",
                self.n_features(),
                self.inputs.n_bits,
                self.weight_bits
            )));
        }
        Ok(())
    }

    /// Checks the model's own invariants (a saved file may hold anything).
    pub fn validate(&self) -> Result<(), QuantError> {
        self.inputs.validate()?;
        if self.inputs.edges.is_some() {
            return Err(QuantError::Options("a linear model's inputs are affine".into()));
        }
        let (d, c) = (self.n_features(), self.n_outputs());
        let top = 1i64 << self.weight_bits.clamp(2, 16);
        if d == 0
            || c == 0
            || self.inputs.n_features() != d
            || self.bias.len() != c
            || self
                .weights
                .iter()
                .any(|r| r.len() != c || r.iter().any(|v| v.abs() >= top))
            || self.w_scale.iter().chain(&self.bias).any(|v| !v.is_finite())
        {
            return Err(QuantError::Options("not a consistent quantised linear model".into()));
        }
        self.check_width()
    }

    /// The integer accumulators of quantised rows (row-major `rows × d` → `rows × C`), in the clear:
    /// what the encrypted program computes. Rows must hold levels `0 ..= 2^n_in − 1`, as the program
    /// accepts (then no accumulator overflows: [`QuantizedLinear::check_width`]).
    pub fn accumulate(&self, q: &[i64]) -> Result<Vec<i64>, QuantError> {
        let (d, c) = (self.n_features(), self.n_outputs());
        let max = i64::from(self.inputs.levels());
        if !q.len().is_multiple_of(d) {
            return Err(QuantError::Calibration(format!(
                "{} levels do not form rows of {d} features",
                q.len()
            )));
        }
        if let Some(i) = q.iter().position(|v| !(0..=max).contains(v)) {
            return Err(QuantError::Calibration(format!(
                "row {} feature {} is level {}, outside 0 ..= {max}",
                i / d,
                i % d,
                q[i]
            )));
        }
        Ok(q.chunks(d)
            .flat_map(|row| (0..c).map(move |k| row.iter().zip(&self.weights).map(|(x, w)| x * w[k]).sum::<i64>()))
            .collect())
    }

    /// Decision values from accumulators (row-major `rows × C`).
    pub fn dequantize(&self, acc: &[i64]) -> Vec<f64> {
        let c = self.n_outputs();
        acc.iter()
            .enumerate()
            .map(|(i, &a)| a as f64 * self.w_scale[i % c] + self.bias[i % c])
            .collect()
    }

    /// The client half: float features in, decision values out (`post` turns them into predictions).
    pub fn client_spec(&self, post: crate::spec::Post) -> crate::spec::ClientSpec {
        crate::spec::ClientSpec::model(
            self.inputs.clone(),
            crate::spec::Encoding::Plain,
            crate::spec::Dequant::new(self.w_scale.clone(), self.bias.clone()),
            post,
        )
    }

    /// The encrypted program: `@main(%x: 1 × d, range [0, 2^n_in − 1]) = %x @ W`, one accumulator per
    /// output, without a lookup.
    pub fn module(&self) -> Result<Module, QuantError> {
        self.validate()?;
        let (d, c) = (self.n_features(), self.n_outputs());
        let mut b = FunctionBuilder::new("main");
        let max_q = self.inputs.levels();
        let x = b.arg_with_range(
            "x",
            Type::new(ElemType::EInt(self.inputs.n_bits), vec![1, d]),
            0,
            max_q as i64,
        );
        let w: Tensor = ArrayD::from_shape_vec(IxDyn(&[d, c]), self.weights.concat()).expect("d × c");
        let ty = clear_type_for(&w);
        let dense = Dense::new(ty.clone(), w).map_err(QuantError::Options)?;
        let err = |e: fhec_ir::Diagnostic| QuantError::Unsupported(e.message);
        let wv = b
            .op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(dense))], Some(ty))
            .map_err(err)?;
        let acc = b.op(OpKind::Matmul, &[x, wv], &[]).map_err(err)?;
        let mut m = Module::new();
        m.functions.push(b.ret(&[acc]));
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> QuantizedLinear {
        // 2 features, 2 outputs
        let w = [1.0, -2.0, 0.5, 3.0];
        let calib = [0.0, -1.0, 2.0, 1.0, 1.0, 0.0];
        QuantizedLinear::build(&w, 2, 2, &[0.25, -1.0], &calib, 4, 5).unwrap()
    }

    #[test]
    fn accumulators_dequantise_close_to_the_float_model() {
        let m = model();
        let x = [1.0, 0.5, 2.0, -1.0];
        let q = m.inputs.quantize(&x).unwrap();
        let y = m.dequantize(&m.accumulate(&q.values).unwrap());
        assert!(m.accumulate(&[16, 0]).is_err() && m.accumulate(&[-1, 0]).is_err() && m.accumulate(&[1]).is_err());
        let exact = [
            1.0 * 1.0 + 0.5 * 0.5 + 0.25,
            -2.0 + 1.5 - 1.0,
            2.0 - 0.5 + 0.25,
            -4.0 - 3.0 - 1.0,
        ];
        for (a, b) in y.iter().zip(exact) {
            assert!((a - b).abs() < 0.2, "{y:?} vs {exact:?}");
        }
        assert!(m.accumulator_bits() <= 11);
        m.validate().unwrap();
    }

    #[test]
    fn the_module_computes_the_accumulator() {
        let m = model();
        let module = m.module().unwrap();
        let v = fhec_ir::verify(&module).unwrap();
        for q in [[0i64, 0], [15, 0], [0, 15], [15, 15], [7, 3]] {
            let x = ArrayD::from_shape_vec(IxDyn(&[1, 2]), q.to_vec()).unwrap();
            let out = fhec_ir::interp::eval(&v, &[x]).unwrap();
            assert_eq!(out[0].iter().copied().collect::<Vec<_>>(), m.accumulate(&q).unwrap());
        }
    }

    #[test]
    fn json_round_trip_and_hostile_state() {
        let m = model();
        let text = serde_json::to_string(&m).unwrap();
        let back: QuantizedLinear = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        let mut bad = m.clone();
        bad.weights[0].pop();
        assert!(bad.validate().is_err());
        let mut wide = m;
        wide.weights[0][0] = 1 << 20;
        assert!(wide.validate().is_err());
    }

    proptest::proptest! {
        /// A saved linear model is outside data: corrupted JSON is refused or, when it still parses and
        /// validates, quantises, accumulates and dequantises without panicking.
        #[test]
        fn corrupted_models_never_panic(
            cut in 0usize..300,
            pos in 0usize..300,
            byte in 0u8..128,
            xs in proptest::collection::vec(-1e6f64..1e6, 0..8),
            qs in proptest::collection::vec(-5i64..40, 0..8),
        ) {
            let mut bytes = model().to_json().into_bytes();
            let p = pos % bytes.len();
            bytes[p] = byte;
            bytes.truncate(bytes.len() - cut % bytes.len());
            let Ok(t) = String::from_utf8(bytes) else { return Ok(()) };
            if let Ok(m) = QuantizedLinear::from_json(&t) {
                let _ = m.inputs.quantize(&xs);
                if let Ok(acc) = m.accumulate(&qs) {
                    let _ = m.dequantize(&acc);
                }
                let _ = m.module();
            }
        }
    }
}
