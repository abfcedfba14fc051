//! Integer networks given as integers: the fully connected networks that `fhec.sklearn`'s
//! `NeuralNetClassifier` / `NeuralNetRegressor` train with their FHE semantics in the loop
//! (docs/nn.md). The trainer hands over exactly what the program computes — integer weights, the
//! rounding of every accumulator and its lookup tables — so this module only checks the description,
//! derives the integer ranges (worst case over every input the program accepts) and writes the IR;
//! nothing is re-quantised, and the trainer's integer forward pass equals the clear interpreter.
//!
//! Semantics, per sample (`q` the client's quantised features, `0 ..= 2^n − 1`):
//!
//! ```text
//! h₀ = q − input_offset
//! acc_l[o] = Σ_j weights_l[o][j] · h_{l−1}[j]
//! k_l[o]   = floor((acc_l[o] + 2^(lsbs−1)) / 2^lsbs)      (acc_l[o] itself when lsbs = 0)
//! h_l[o]   = tables_l[o][k_l[o] − table_lo]                (layers with a lookup)
//! output   = acc of the last layer (or its lookup), dequantised by the client: scale·v + offset
//! ```

use fhec_ir::attr::Attribute;
use fhec_ir::types::{width_for, MAX_ENCRYPTED_WIDTH};
use fhec_ir::{ElemType, FunctionBuilder, Module, OpKind, Type, ValueId};
use fhec_quant::{ClientSpec, Dequant, Encoding, InputQuantizer, Post};
use serde::{Deserialize, Serialize};

use crate::ptq::{dense, table_key, LayerReport, QuantizedNetwork, TableSet};
use crate::OnnxError;

/// Largest description read (JSON bytes): bounds what parsing allocates (a few bytes of text per
/// integer, eight per stored integer) before the shapes are checked.
pub const MAX_MLP_JSON_BYTES: usize = 1 << 28;
/// Most layers a description may have.
pub const MAX_MLP_LAYERS: usize = 64;
/// Most inputs or outputs of one layer.
pub const MAX_MLP_WIDTH: usize = 1 << 16;
/// Most weights of one layer.
pub const MAX_MLP_WEIGHTS: usize = 1 << 24;
/// Largest integer weight (in magnitude).
pub const MAX_MLP_WEIGHT: i64 = 1 << 16;
/// Most table entries of one layer, laid out over its lookups' input type.
pub const MAX_MLP_TABLE_ENTRIES: usize = 1 << 26;
/// Widest lookup input (bits after rounding).
pub const MAX_MLP_LOOKUP_BITS: u32 = 16;

/// A fully connected integer network (see the module's semantics).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntegerMlp {
    /// The client's per-feature affine quantisers (`edges` must be absent).
    pub input: InputQuantizer,
    /// Subtracted from the client's integers before the first layer (centres them).
    #[serde(default)]
    pub input_offset: i64,
    pub layers: Vec<IntegerLayer>,
    /// The client's dequantisation of the returned integers, one scale and offset per output.
    pub output: Dequant,
    /// What the client applies after dequantising (`softmax` for classifiers).
    #[serde(default)]
    pub post: Post,
    /// A classifier's labels, one per output (numbers or strings): the client's predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<serde_json::Value>>,
}

/// One dense layer: `weights[o][j]`, then (every layer but usually the last) a rounding and a table
/// lookup per output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntegerLayer {
    pub weights: Vec<Vec<i64>>,
    #[serde(default)]
    pub lookup: Option<Lookup>,
}

/// Rounding of the accumulator by `lsbs` bits, then `tables[o][k − table_lo]` for output `o`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lookup {
    pub lsbs: u32,
    pub table_lo: i64,
    pub tables: Vec<Vec<i64>>,
}

fn bad(what: impl Into<String>) -> OnnxError {
    OnnxError::Format(format!("integer network: {}", what.into()))
}

fn ir_err(what: &str) -> impl Fn(fhec_ir::Diagnostic) -> OnnxError + '_ {
    move |e| bad(format!("{what}: {}", e.message))
}

fn elem(lo: i64, hi: i64) -> Result<ElemType, OnnxError> {
    let signed = lo < 0;
    let w = width_for(lo as i128, hi as i128, signed);
    if w > MAX_ENCRYPTED_WIDTH {
        return Err(bad(format!(
            "values in {lo} ..= {hi} need {w} bits (at most {MAX_ENCRYPTED_WIDTH})"
        )));
    }
    Ok(if signed { ElemType::ESInt(w) } else { ElemType::EInt(w) })
}

impl IntegerMlp {
    /// Reads a description (JSON), bounded and checked like every outside file.
    pub fn from_json(text: &str) -> Result<IntegerMlp, OnnxError> {
        if text.len() > MAX_MLP_JSON_BYTES {
            return Err(bad(format!("description larger than {MAX_MLP_JSON_BYTES} bytes")));
        }
        let m: IntegerMlp = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// Checks shapes, bounds and the quantisers (no panic on any description).
    pub fn check(&self) -> Result<(), OnnxError> {
        if self.input.edges.is_some() {
            return Err(bad("the input quantisers must be affine (no edges)"));
        }
        self.input.validate().map_err(|e| bad(e.to_string()))?;
        if !(1..=16).contains(&self.input.n_bits) {
            return Err(bad(format!("input bits {} (1 to 16)", self.input.n_bits)));
        }
        if self.input_offset.abs() > 1 << 16 {
            return Err(bad(format!("input offset {}", self.input_offset)));
        }
        if self.layers.is_empty() || self.layers.len() > MAX_MLP_LAYERS {
            return Err(bad(format!("{} layers (1 to {MAX_MLP_LAYERS})", self.layers.len())));
        }
        let mut width = self.input.n_features();
        for (i, l) in self.layers.iter().enumerate() {
            let outs = l.weights.len();
            if outs == 0 || outs > MAX_MLP_WIDTH || width == 0 || width > MAX_MLP_WIDTH {
                return Err(bad(format!("layer {i}: {outs} outputs over {width} inputs")));
            }
            if outs.saturating_mul(width) > MAX_MLP_WEIGHTS {
                return Err(bad(format!("layer {i}: more than {MAX_MLP_WEIGHTS} weights")));
            }
            if let Some(r) = l.weights.iter().position(|row| row.len() != width) {
                return Err(bad(format!(
                    "layer {i}: weight row {r} has {} entries, expected {width}",
                    l.weights[r].len()
                )));
            }
            if l.weights.iter().flatten().any(|w| w.abs() > MAX_MLP_WEIGHT) {
                return Err(bad(format!(
                    "layer {i}: a weight exceeds {MAX_MLP_WEIGHT} in magnitude"
                )));
            }
            if let Some(t) = &l.lookup {
                if t.tables.len() != outs {
                    return Err(bad(format!("layer {i}: {} tables for {outs} outputs", t.tables.len())));
                }
                let k = t.tables[0].len();
                if k == 0 || k > 1 << MAX_MLP_LOOKUP_BITS || t.tables.iter().any(|r| r.len() != k) {
                    return Err(bad(format!(
                        "layer {i}: tables must have one length, 1 to 2^{MAX_MLP_LOOKUP_BITS}"
                    )));
                }
                if t.tables.iter().flatten().any(|v| v.abs() > 1 << 16) {
                    return Err(bad(format!("layer {i}: a table value exceeds 2^16 in magnitude")));
                }
                if t.lsbs > 40 || t.table_lo.abs() > 1 << 40 {
                    return Err(bad(format!("layer {i}: lsbs {} or table_lo {}", t.lsbs, t.table_lo)));
                }
            }
            width = outs;
        }
        if self.output.scale.len() != width || self.output.offset.len() != width {
            return Err(bad(format!(
                "{} output scales and {} offsets for {width} outputs",
                self.output.scale.len(),
                self.output.offset.len()
            )));
        }
        if self
            .output
            .scale
            .iter()
            .chain(&self.output.offset)
            .any(|v| !v.is_finite())
        {
            return Err(bad("output scales and offsets must be finite"));
        }
        Ok(())
    }

    /// The program and its client spec. Every accumulator's and every lookup input's range is the
    /// worst case over the accepted inputs; a table that does not cover its rounded accumulator's
    /// range is an error.
    pub fn build(&self) -> Result<QuantizedNetwork, OnnxError> {
        self.check()?;
        let features = self.input.n_features();
        let max_q = (1i64 << self.input.n_bits) - 1;
        let mut b = FunctionBuilder::new("main");
        let x = b.arg_with_range(
            "x",
            Type::new(ElemType::EInt(self.input.n_bits), vec![1, features]),
            0,
            max_q,
        );
        let (mut v, mut lo, mut hi): (ValueId, i64, i64) = (x, 0, max_q);
        if self.input_offset != 0 {
            let c = b
                .op_with_type(
                    OpKind::Constant,
                    &[],
                    &[("value", Attribute::Dense(dense(vec![self.input_offset], &[1])?))],
                    None,
                )
                .map_err(ir_err("input offset"))?;
            v = b.op(OpKind::Sub, &[x, c], &[]).map_err(ir_err("input offset"))?;
            (lo, hi) = (-self.input_offset, max_q - self.input_offset);
        }
        let mut layers = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let what = format!("dense layer {i}");
            let (n, k) = (l.weights.len(), l.weights[0].len());
            // the accumulator's worst case, per output and over the tensor
            let mut ranges = Vec::with_capacity(n);
            for row in &l.weights {
                let (mut a, mut z) = (0i64, 0i64);
                for &w in row {
                    a += (w * lo).min(w * hi);
                    z += (w * lo).max(w * hi);
                }
                ranges.push((a, z));
            }
            let amin = ranges.iter().map(|r| r.0).min().unwrap_or(0);
            let amax = ranges.iter().map(|r| r.1).max().unwrap_or(0);
            let mut acc_elem = elem(amin.min(-1), amax)?; // signed: weights and inputs are
            if let Some(t) = &l.lookup {
                // the trainer sizes the rounding from its own (possibly wider) input ranges; a
                // narrower accumulator (a dead neuron upstream) is declared wide enough to drop them
                if t.lsbs > 0 && t.lsbs >= acc_elem.width() && t.lsbs < MAX_ENCRYPTED_WIDTH {
                    acc_elem = ElemType::ESInt(t.lsbs + 1);
                }
            }
            let mut wt = vec![0i64; k * n];
            for (o, row) in l.weights.iter().enumerate() {
                for (j, &w) in row.iter().enumerate() {
                    wt[j * n + o] = w;
                }
            }
            let wd = dense(wt, &[k, n])?;
            let wty = wd.ty.clone();
            let wv = b
                .op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(wd))], Some(wty))
                .map_err(ir_err(&what))?;
            let acc = b
                .op_with_type(OpKind::Matmul, &[v, wv], &[], Some(Type::new(acc_elem, vec![1, n])))
                .map_err(ir_err(&what))?;
            layers.push(LayerReport {
                node: what.clone(),
                kind: "accumulator".into(),
                elements: n,
                range: (amin, amax),
                bits: acc_elem.width(),
                rounded_lsbs: 0,
                tables: 0,
            });
            (v, lo, hi) = (acc, amin, amax);
            let Some(t) = &l.lookup else { continue };
            let (mut input, mut klo, mut khi) = (acc, amin, amax);
            let mut kranges = ranges.clone();
            if t.lsbs > 0 {
                if t.lsbs >= acc_elem.width() {
                    return Err(bad(format!(
                        "{what}: rounding drops {} bits of a {}-bit accumulator",
                        t.lsbs,
                        acc_elem.width()
                    )));
                }
                let half = 1i64 << (t.lsbs - 1);
                let r = |a: i64| (a + half) >> t.lsbs;
                (klo, khi) = (r(amin), r(amax));
                kranges = ranges.iter().map(|&(a, z)| (r(a), r(z))).collect();
                let ty = Type::new(elem(klo.min(-1), khi)?, vec![1, n]);
                input = b
                    .op_with_type(
                        OpKind::Round,
                        &[acc],
                        &[("lsbs", Attribute::Int(t.lsbs as i64))],
                        Some(ty),
                    )
                    .map_err(ir_err(&what))?;
            }
            let ity = b.ty(input).clone();
            let kw = ity.width();
            if kw > MAX_MLP_LOOKUP_BITS {
                return Err(bad(format!(
                    "{what}: lookups over {kw}-bit values (at most {MAX_MLP_LOOKUP_BITS}): round more bits"
                )));
            }
            let entries = t.tables[0].len() as i64;
            if klo < t.table_lo || khi > t.table_lo + entries - 1 {
                return Err(bad(format!(
                    "{what}: the tables cover {} ..= {}, the rounded accumulator takes {klo} ..= {khi}",
                    t.table_lo,
                    t.table_lo + entries - 1
                )));
            }
            let size = 1usize << kw;
            if n.saturating_mul(size) > MAX_MLP_TABLE_ENTRIES {
                return Err(bad(format!(
                    "{what}: {n} tables of {size} entries (at most {MAX_MLP_TABLE_ENTRIES} in all): round more bits"
                )));
            }
            let signed = ity.is_signed();
            let mut set = TableSet::default();
            let (mut vmin, mut vmax) = (i64::MAX, i64::MIN);
            for (o, row) in t.tables.iter().enumerate() {
                let full: Vec<i64> = (0..size)
                    .map(|idx| {
                        let e = table_key(idx, size, signed) - t.table_lo;
                        if (0..entries).contains(&e) {
                            row[e as usize]
                        } else {
                            0
                        }
                    })
                    .collect();
                let (a, z) = kranges[o];
                for k in a..=z {
                    let val = row[(k - t.table_lo) as usize];
                    vmin = vmin.min(val);
                    vmax = vmax.max(val);
                }
                set.push(full);
            }
            let count = set.count();
            let TableSet { tables, map, .. } = set;
            let y = b
                .op(
                    OpKind::MappedLut,
                    &[input],
                    &[
                        ("map", Attribute::Dense(dense(map, &[1, n])?)),
                        ("tables", Attribute::Dense(dense(tables, &[count, size])?)),
                    ],
                )
                .map_err(ir_err(&what))?;
            layers.push(LayerReport {
                node: what,
                kind: "lookup".into(),
                elements: n,
                range: (klo, khi),
                bits: kw,
                rounded_lsbs: t.lsbs,
                tables: count,
            });
            (v, lo, hi) = (y, vmin, vmax);
        }
        let outputs = self.output.scale.len();
        let mut spec = ClientSpec::model(self.input.clone(), Encoding::Plain, self.output.clone(), self.post);
        spec.classes = self.classes.clone();
        let mut module = Module::new();
        module.functions.push(b.ret(&[v]));
        let _ = (lo, hi);
        Ok(QuantizedNetwork {
            module,
            spec,
            tail: None,
            input_shape: vec![features],
            output_shape: vec![outputs],
            layers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhec_ir::Tensor;
    use ndarray::{ArrayD, IxDyn};

    fn net() -> IntegerMlp {
        IntegerMlp {
            input: InputQuantizer {
                n_bits: 3,
                lo: vec![0.0, -1.0],
                scale: vec![0.5, 0.25],
                edges: None,
            },
            input_offset: 4,
            layers: vec![
                IntegerLayer {
                    weights: vec![vec![3, -1], vec![0, 2], vec![-2, -2]],
                    lookup: Some(Lookup {
                        lsbs: 2,
                        table_lo: -4,
                        tables: vec![
                            vec![-4, -3, -2, -1, 0, 1, 2, 3, 3],
                            vec![0, 0, 0, 0, 1, 2, 3, 3, 3],
                            vec![3, 2, 1, 0, -1, -2, -3, -4, -4],
                        ],
                    }),
                },
                IntegerLayer {
                    weights: vec![vec![1, 2, -3], vec![-1, 0, 1]],
                    lookup: None,
                },
            ],
            output: Dequant {
                scale: vec![0.1, 0.2],
                offset: vec![1.0, -1.0],
            },
            post: Post::Softmax,
            classes: None,
        }
    }

    /// The module's semantics (the doc comment), written out.
    fn forward(m: &IntegerMlp, q: &[i64]) -> Vec<i64> {
        let mut h: Vec<i64> = q.iter().map(|v| v - m.input_offset).collect();
        for l in &m.layers {
            let acc: Vec<i64> = l
                .weights
                .iter()
                .map(|r| r.iter().zip(&h).map(|(w, x)| w * x).sum())
                .collect();
            h = match &l.lookup {
                None => acc,
                Some(t) => acc
                    .iter()
                    .enumerate()
                    .map(|(o, &a)| {
                        let k = if t.lsbs == 0 {
                            a
                        } else {
                            (a + (1 << (t.lsbs - 1))) >> t.lsbs
                        };
                        t.tables[o][(k - t.table_lo) as usize]
                    })
                    .collect(),
            };
        }
        h
    }

    #[test]
    fn the_interpreter_computes_the_stated_semantics_on_every_input() {
        let m = net();
        let q = m.build().unwrap();
        let verified = fhec_ir::verify(&q.module).unwrap();
        for a in 0..8 {
            for c in 0..8 {
                let x: Tensor = ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![a, c]).unwrap();
                let out = fhec_ir::eval(&verified, &[x]).unwrap();
                let got: Vec<i64> = out[0].iter().copied().collect();
                assert_eq!(got, forward(&m, &[a, c]), "input {a}, {c}");
            }
        }
        assert_eq!(q.layers.len(), 3);
        assert_eq!(q.layers[1].rounded_lsbs, 2);
    }

    #[test]
    fn a_constant_layer_upstream_keeps_a_valid_rounding() {
        // every hidden output is 0: the next accumulator is 0 whatever the input, narrower than the
        // rounding the trainer chose from its own ranges
        let mut m = net();
        m.layers[0].lookup.as_mut().unwrap().tables = vec![vec![0; 9]; 3];
        m.layers[1].lookup = Some(Lookup {
            lsbs: 3,
            table_lo: -2,
            tables: vec![vec![5, 6, 7, 8, 9]; 2],
        });
        let q = m.build().unwrap();
        let verified = fhec_ir::verify(&q.module).unwrap();
        let x: Tensor = ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![7, 0]).unwrap();
        let out = fhec_ir::eval(&verified, &[x]).unwrap();
        assert_eq!(out[0].iter().copied().collect::<Vec<_>>(), vec![7, 7]);
        assert_eq!(forward(&m, &[7, 0]), vec![7, 7]);
    }

    #[test]
    fn descriptions_that_do_not_fit_are_errors() {
        let mut m = net();
        m.layers[0].lookup.as_mut().unwrap().table_lo = -3;
        assert!(m.build().unwrap_err().to_string().contains("tables cover"));
        let mut m = net();
        m.layers[1].weights[0].pop();
        assert!(m.build().unwrap_err().to_string().contains("weight row 0"));
        let mut m = net();
        m.output.scale.pop();
        assert!(m.build().unwrap_err().to_string().contains("output scales"));
        let mut m = net();
        m.layers.clear();
        assert!(m.build().is_err());
        assert!(IntegerMlp::from_json("{\"input\": 3}").is_err());
        let text = serde_json::to_string(&net()).unwrap();
        assert_eq!(IntegerMlp::from_json(&text).unwrap(), net());
        // the fuzz target's seed is this network
        let seed = include_str!("../../../fuzz/fixtures/integer_mlp.json");
        assert_eq!(IntegerMlp::from_json(seed).unwrap(), net());
    }
}
