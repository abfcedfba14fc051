//! The client half of a compiled model, as plain data: how the user's float features become the
//! integers the program takes, and how the integers it returns become predictions. A client needs
//! this and its keys, not the model (`docs/architecture.md`).
//!
//! * [`InputSpec`]: per program input, the integers as given, or features quantised by an
//!   [`InputQuantizer`] and encoded (plain levels, or the trees' thermometer bits).
//! * [`Dequant`]: per output column, `y = scale · v + offset` on the decrypted integers.
//! * [`Post`]: what turns dequantised values into predictions (identity, exp, sigmoid, softmax,
//!   one-vs-rest, class fractions, or decision values only) and the class labels.

use serde::{Deserialize, Serialize};

use crate::input::InputQuantizer;
use crate::QuantError;

/// Version of the spec's layout; readers refuse newer ones with a clear message. Version 2 adds
/// [`Dequant::parts`]; a spec without parts is written as version 1, which older readers take.
pub const SPEC_VERSION: u32 = 2;

/// Most partial sums an output may be decrypted as ([`Dequant::parts`]): a bound on what a spec read
/// from a file can ask of the client.
pub const MAX_OUTPUT_PARTS: u32 = 64;

/// Widest quantiser a thermometer encoding takes: `2^n − 1` integers per feature (the trees' limit),
/// so a spec read from a file cannot make `encode` allocate more than 1023 values per feature.
pub const MAX_THERMOMETER_BITS: u32 = 10;

/// How features are encoded after quantisation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The levels themselves, one integer per feature.
    #[default]
    Plain,
    /// For feature `j` and level `k = 1 .. 2^n − 1`, bit `j·(2^n − 1) + k − 1` is `[q_j ≥ k]`.
    Thermometer,
}

/// What one program input takes from the user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputSpec {
    /// Integers, given as they are (the tracing DSL's inputs).
    Integers,
    /// A row of float features, quantised and encoded.
    Features {
        quantizer: InputQuantizer,
        #[serde(default)]
        encoding: Encoding,
    },
}

/// Dequantisation of one output: `y[c] = scale[c] · v[c] + offset[c]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dequant {
    pub scale: Vec<f64>,
    pub offset: Vec<f64>,
    /// The program returns each value as this many partial sums, `parts` blocks of the values one
    /// after the other, which the client adds before dequantising (`v[c] = Σ_j out[j·C + c]`): a
    /// wide output accumulator split so that each part needs fewer bits of precision (docs/onnx.md,
    /// "Output parts"). 1: the values themselves.
    #[serde(default = "one_part", skip_serializing_if = "is_one_part")]
    pub parts: u32,
}

fn one_part() -> u32 {
    1
}

fn is_one_part(p: &u32) -> bool {
    *p == 1
}

impl Dequant {
    /// `y = scale · v + offset` per value, the values returned whole.
    pub fn new(scale: Vec<f64>, offset: Vec<f64>) -> Dequant {
        Dequant {
            scale,
            offset,
            parts: 1,
        }
    }
}

/// From dequantised values to predictions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Post {
    /// The values are the prediction (regressions; integer programs).
    #[default]
    Identity,
    /// `exp` of the values (log-link GLMs).
    Exp,
    /// One decision value of a binary classifier: probabilities `[1 − σ(d), σ(d)]`, class `d > 0`.
    Sigmoid,
    /// One value per class: softmax probabilities, class by argmax.
    Softmax,
    /// One-vs-rest: `σ(d_c)` per class, normalised; class by argmax.
    OneVsRest,
    /// Class fractions (forests): one column is the class-1 probability, several are clipped at 0 and
    /// normalised.
    Proba,
    /// Decision values without probabilities (linear SVMs): class by sign or argmax.
    Decision,
    /// scikit-learn's `modified_huber` probabilities: `(clip(d, −1, 1) + 1) / 2`, normalised over
    /// classes when there are several.
    ModifiedHuber,
}

/// The client half of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientSpec {
    pub version: u32,
    /// One per program input, in order.
    pub inputs: Vec<InputSpec>,
    /// Per program output (absent: the integers are the values).
    #[serde(default)]
    pub outputs: Vec<Option<Dequant>>,
    #[serde(default)]
    pub post: Post,
    /// Class labels of a classifier (as JSON values: numbers or strings), in column order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<serde_json::Value>>,
}

impl ClientSpec {
    /// Integers in, integers out: the spec of a program written by hand or traced.
    pub fn integers(n_inputs: usize, n_outputs: usize) -> ClientSpec {
        ClientSpec {
            version: 1,
            inputs: vec![InputSpec::Integers; n_inputs],
            outputs: vec![None; n_outputs],
            post: Post::Identity,
            classes: None,
        }
    }

    /// A model with one input of float features and one output.
    pub fn model(quantizer: InputQuantizer, encoding: Encoding, dequant: Dequant, post: Post) -> ClientSpec {
        ClientSpec {
            // the oldest layout that holds it, for older readers
            version: if dequant.parts > 1 { SPEC_VERSION } else { 1 },
            inputs: vec![InputSpec::Features { quantizer, encoding }],
            outputs: vec![Some(dequant)],
            post,
            classes: None,
        }
    }

    pub fn with_classes(mut self, classes: Vec<serde_json::Value>) -> ClientSpec {
        self.classes = Some(classes);
        self
    }

    pub fn from_json(text: &str) -> Result<ClientSpec, QuantError> {
        let s: ClientSpec =
            serde_json::from_str(text).map_err(|e| QuantError::Options(format!("not a client spec: {e}")))?;
        s.validate()?;
        Ok(s)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }

    /// Checks the spec's own invariants (a file may hold anything).
    pub fn validate(&self) -> Result<(), QuantError> {
        let bad = |m: String| Err(QuantError::Options(m));
        if self.version == 0 || self.version > SPEC_VERSION {
            return bad(format!(
                "client spec version {}, this fhec reads up to {SPEC_VERSION}",
                self.version
            ));
        }
        for i in &self.inputs {
            if let InputSpec::Features { quantizer, encoding } = i {
                quantizer.validate()?;
                if *encoding == Encoding::Thermometer && quantizer.n_bits > MAX_THERMOMETER_BITS {
                    return bad(format!(
                        "client spec: a thermometer encoding of {} bits (at most {MAX_THERMOMETER_BITS})",
                        quantizer.n_bits
                    ));
                }
            }
        }
        for d in self.outputs.iter().flatten() {
            if !(1..=MAX_OUTPUT_PARTS).contains(&d.parts) {
                return bad(format!(
                    "client spec: an output in {} parts (1 to {MAX_OUTPUT_PARTS})",
                    d.parts
                ));
            }
            if d.parts > 1 && self.version < 2 {
                return bad("client spec: output parts in a version 1 spec".into());
            }
            if d.scale.is_empty()
                || d.scale.len() != d.offset.len()
                || d.scale.iter().chain(&d.offset).any(|v| !v.is_finite())
            {
                return bad("client spec: an output's scales and offsets differ in length or are not finite".into());
            }
        }
        Ok(())
    }

    /// The integers of input `i` for rows of float features (row-major `rows × features`): quantised,
    /// then encoded; one row per sample (row-major `rows × width`). Returns the width and the number of
    /// values clipped to the calibrated range.
    pub fn encode(&self, i: usize, features: &[f64]) -> Result<(usize, Vec<i64>, usize), QuantError> {
        let Some(spec) = self.inputs.get(i) else {
            return Err(QuantError::Options(format!("the program has no input {i}")));
        };
        match spec {
            InputSpec::Integers => Err(QuantError::Options(format!(
                "input {i} takes integers, not float features"
            ))),
            InputSpec::Features { quantizer, encoding } => {
                let q = quantizer.quantize(features)?;
                let d = quantizer.n_features();
                Ok(match encoding {
                    Encoding::Plain => (d, q.values, q.clipped),
                    Encoding::Thermometer => {
                        let l = quantizer.levels() as usize;
                        let bits = q
                            .values
                            .iter()
                            .flat_map(|&v| (1..=l).map(move |k| i64::from(v >= k as i64)))
                            .collect();
                        (d * l, bits, q.clipped)
                    }
                })
            }
        }
    }

    /// Output `o`'s values from the program's integers (row-major, `width` per row): each value's
    /// partial sums added when the output is in parts ([`Dequant::parts`]), else the integers as
    /// they are. Returns the values and their count per row.
    pub fn output_values(&self, o: usize, ints: &[i64], width: usize) -> Result<(Vec<i64>, usize), QuantError> {
        let parts = self
            .outputs
            .get(o)
            .and_then(Option::as_ref)
            .map_or(1, |d| d.parts.max(1)) as usize;
        if parts == 1 {
            return Ok((ints.to_vec(), width));
        }
        if width == 0 || !width.is_multiple_of(parts) || !ints.len().is_multiple_of(width) {
            return Err(QuantError::Options(format!(
                "output {o}: {width} integers per row do not hold {parts} parts of equal size"
            )));
        }
        let c = width / parts;
        let values = ints
            .chunks(width)
            .flat_map(|row| (0..c).map(move |k| (0..parts).fold(0i64, |s, j| s.wrapping_add(row[j * c + k]))))
            .collect();
        Ok((values, c))
    }

    /// Dequantised values of output `o` (row-major `rows × C` integers → floats). For an output in parts
    /// these are the values the parts add up to: [`ClientSpec::output_values`] first.
    pub fn dequantize(&self, o: usize, values: &[i64]) -> Vec<f64> {
        match self.outputs.get(o).and_then(Option::as_ref) {
            Some(d) if !d.scale.is_empty() && d.scale.len() == d.offset.len() => {
                let c = d.scale.len().max(1);
                values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| d.scale[i % c] * v as f64 + d.offset[i % c])
                    .collect()
            }
            // no dequantisation (or an invalid one, which `validate` refuses): the integers
            _ => values.iter().map(|&v| v as f64).collect(),
        }
    }

    /// The post-processed values of dequantised rows (`rows × C`), see [`post_process`].
    pub fn post_process(&self, values: &[f64], c: usize) -> Vec<f64> {
        post_process(self.post, values, c)
    }

    /// The predicted class index of each dequantised row, see [`class_index`].
    pub fn class_index(&self, values: &[f64], c: usize) -> Vec<usize> {
        class_index(self.post, values, c)
    }
}

/// Post-processed values of dequantised rows (row-major `rows × C`): predictions for regressions,
/// class probabilities for classifiers with probabilities (`rows × classes`; one decision column gives
/// two), the values themselves for decision-only models. The formulas are scikit-learn's.
pub fn post_process(post: Post, values: &[f64], c: usize) -> Vec<f64> {
    let sig = |d: f64| 1.0 / (1.0 + (-d).exp());
    let huber = |d: f64| (d.clamp(-1.0, 1.0) + 1.0) / 2.0;
    let c = c.max(1);
    // per row: scores normalised to sum 1 (uniform when they sum to 0)
    let normalised = |f: &dyn Fn(f64) -> f64| -> Vec<f64> {
        values
            .chunks(c)
            .flat_map(|row| {
                let p: Vec<f64> = row.iter().map(|&d| f(d)).collect();
                let s: f64 = p.iter().sum();
                p.into_iter().map(move |v| if s > 0.0 { v / s } else { 1.0 / c as f64 })
            })
            .collect()
    };
    let two_columns = |f: &dyn Fn(f64) -> f64| -> Vec<f64> {
        values
            .iter()
            .flat_map(|&d| {
                let p = f(d);
                [1.0 - p, p]
            })
            .collect()
    };
    match post {
        Post::Identity | Post::Decision => values.to_vec(),
        Post::Exp => values.iter().map(|v| v.exp()).collect(),
        Post::Sigmoid => two_columns(&sig),
        Post::Softmax => values
            .chunks(c)
            .flat_map(|row| {
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(move |v| v / s)
            })
            .collect(),
        Post::OneVsRest if c == 1 => two_columns(&sig),
        Post::OneVsRest => normalised(&sig),
        Post::ModifiedHuber if c == 1 => two_columns(&huber),
        Post::ModifiedHuber => normalised(&huber),
        Post::Proba if c == 1 => two_columns(&|p: f64| p.clamp(0.0, 1.0)),
        Post::Proba => normalised(&|v: f64| v.max(0.0)),
    }
}

/// The predicted class index of each dequantised row (`rows × C`), for classifiers: the sign of one
/// decision column (`p > 0.5` for one class-1 probability), else the argmax (of the probabilities for
/// class fractions).
pub fn class_index(post: Post, values: &[f64], c: usize) -> Vec<usize> {
    let c = c.max(1);
    let argmax = |row: &[f64]| {
        row.iter()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
            )
            .0
    };
    match post {
        Post::Proba if c == 1 => values.iter().map(|&p| usize::from(p.clamp(0.0, 1.0) > 0.5)).collect(),
        _ if c == 1 => values.iter().map(|&d| usize::from(d > 0.0)).collect(),
        Post::Proba => post_process(post, values, c).chunks(c).map(argmax).collect(),
        _ => values.chunks(c).map(argmax).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(post: Post) -> ClientSpec {
        let q = InputQuantizer::calibrate(&[vec![0.0, 0.0], vec![3.0, 6.0]], 2, 2).unwrap();
        ClientSpec::model(q, Encoding::Plain, Dequant::new(vec![0.5, 2.0], vec![1.0, -1.0]), post)
    }

    #[test]
    fn encode_quantises_and_encodes() {
        let s = spec(Post::Identity);
        assert_eq!(s.encode(0, &[1.0, 6.0, 9.0, -2.0]).unwrap(), (2, vec![1, 3, 3, 0], 2));
        let mut t = s.clone();
        t.inputs[0] = match t.inputs[0].clone() {
            InputSpec::Features { quantizer, .. } => InputSpec::Features {
                quantizer,
                encoding: Encoding::Thermometer,
            },
            other => other,
        };
        // levels 1 and 3 of 3: [1,0,0] and [1,1,1]
        assert_eq!(t.encode(0, &[1.0, 6.0]).unwrap(), (6, vec![1, 0, 0, 1, 1, 1], 0));
        assert!(s.encode(1, &[0.0, 0.0]).is_err());
        assert!(ClientSpec::integers(1, 1).encode(0, &[0.0]).is_err());
    }

    #[test]
    fn dequantise_and_post_process() {
        let s = spec(Post::Softmax);
        let v = s.dequantize(0, &[2, 1, 0, 1]);
        assert_eq!(v, vec![2.0, 1.0, 1.0, 1.0]);
        let p = s.post_process(&v, 2);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-12 && p[0] > p[1] && (p[2] - 0.5).abs() < 1e-12);
        assert_eq!(s.class_index(&v, 2), vec![0, 0]);
        let b = spec(Post::Sigmoid);
        assert_eq!(b.class_index(&[-0.5, 0.5], 1), vec![0, 1]);
        assert_eq!(b.post_process(&[0.0], 1), vec![0.5, 0.5]);
        assert_eq!(spec(Post::Exp).post_process(&[0.0], 1), vec![1.0]);
        assert_eq!(
            post_process(Post::ModifiedHuber, &[-2.0, 0.5], 1),
            vec![1.0, 0.0, 0.25, 0.75]
        );
        // several classes: normalised; all zero: uniform
        assert_eq!(
            post_process(Post::ModifiedHuber, &[1.0, 0.0, -1.0, -1.0], 2),
            vec![2.0 / 3.0, 1.0 / 3.0, 0.5, 0.5]
        );
        assert_eq!(
            post_process(Post::Proba, &[0.2, -0.1, 0.0, 0.0], 2),
            vec![1.0, 0.0, 0.5, 0.5]
        );
        assert_eq!(class_index(Post::Proba, &[0.7, 0.2], 1), vec![1, 0]);
    }

    #[test]
    fn json_round_trip_and_version() {
        let s = spec(Post::OneVsRest).with_classes(vec![serde_json::json!("a"), serde_json::json!("b")]);
        assert_eq!(ClientSpec::from_json(&s.to_json()).unwrap(), s);
        let mut newer = s.clone();
        newer.version = SPEC_VERSION + 1;
        assert!(ClientSpec::from_json(&newer.to_json())
            .unwrap_err()
            .to_string()
            .contains("reads up to"));
        assert!(ClientSpec::from_json("{}").is_err());
    }

    proptest::proptest! {
        /// A client file is outside data: corrupted specs are refused or, when they still parse and
        /// validate, encode and decode any input without panicking.
        #[test]
        fn corrupted_specs_never_panic(
            cut in 0usize..400,
            pos in 0usize..400,
            byte in 0u8..128,
            xs in proptest::collection::vec(-1e6f64..1e6, 0..12),
            ints in proptest::collection::vec(-1000i64..1000, 0..12),
        ) {
            let text = spec(Post::Softmax).to_json();
            let mut bytes = text.into_bytes();
            let p = pos % bytes.len();
            bytes[p] = byte;
            bytes.truncate(bytes.len() - cut % bytes.len());
            let Ok(t) = String::from_utf8(bytes) else { return Ok(()) };
            if let Ok(s) = ClientSpec::from_json(&t) {
                let _ = s.encode(0, &xs);
                let _ = s.output_values(0, &ints, 4);
                let v = s.dequantize(0, &ints);
                let _ = s.post_process(&v, 2);
                let _ = s.class_index(&v, 2);
            }
        }
    }

    #[test]
    fn outputs_in_parts_are_added_before_dequantising() {
        let mut s = spec(Post::Identity);
        assert_eq!(s.version, 1, "without parts: the layout older readers take");
        assert_eq!(s.output_values(0, &[1, 2, 3, 4], 2).unwrap(), (vec![1, 2, 3, 4], 2));
        s.outputs[0].as_mut().unwrap().parts = 3;
        s.version = SPEC_VERSION;
        // two rows of three parts of two values: [1, 2 | 10, 20 | -5, 7] and [0, 0 | 0, 1 | 1, 0]
        let ints = [1, 2, 10, 20, -5, 7, 0, 0, 0, 1, 1, 0];
        assert_eq!(s.output_values(0, &ints, 6).unwrap(), (vec![6, 29, 1, 1], 2));
        assert!(s.output_values(0, &ints, 4).is_err(), "4 per row is not 3 parts");
        assert!(s.output_values(0, &ints[..5], 6).is_err(), "a partial row");
        let back = ClientSpec::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        // parts are bounded, and need the layout that knows them
        let mut t = s.clone();
        t.outputs[0].as_mut().unwrap().parts = MAX_OUTPUT_PARTS + 1;
        assert!(ClientSpec::from_json(&t.to_json())
            .unwrap_err()
            .to_string()
            .contains("parts"));
        t.outputs[0].as_mut().unwrap().parts = 0;
        assert!(ClientSpec::from_json(&t.to_json()).is_err());
        let mut old = s.clone();
        old.version = 1;
        assert!(ClientSpec::from_json(&old.to_json())
            .unwrap_err()
            .to_string()
            .contains("version 1"));
    }

    #[test]
    fn wide_thermometers_are_refused() {
        let q = InputQuantizer::calibrate(&[vec![0.0], vec![1.0]], 1, 12).unwrap();
        let d = Dequant::new(vec![1.0], vec![0.0]);
        let s = ClientSpec::model(q, Encoding::Thermometer, d, Post::Identity);
        assert!(ClientSpec::from_json(&s.to_json())
            .unwrap_err()
            .to_string()
            .contains("thermometer"));
    }

    #[test]
    fn empty_dequantisation_is_refused() {
        let mut s = spec(Post::Identity);
        s.outputs[0] = Some(Dequant::new(vec![], vec![]));
        assert!(ClientSpec::from_json(&s.to_json()).is_err());
        assert_eq!(s.dequantize(0, &[3]), vec![3.0]);
    }
}
