//! Integer networks given as integers: the networks that `fhec.sklearn`'s NeuralNet estimators and
//! `fhec.torch`'s QAT layers train with their FHE semantics in the loop (docs/nn.md). The trainer
//! hands over exactly what the program computes — integer weights, the rounding of every
//! accumulator and its lookup tables — so this module only checks the description, derives the
//! integer ranges (worst case over every input the program accepts) and writes the IR; nothing is
//! re-quantised, and the trainer's integer forward pass equals the clear interpreter.
//!
//! Semantics, per sample (`q` the client's quantised features, `0 ..= 2^n − 1`, read as
//! `input_shape` — `[C, H, W]` for convolutions — in row-major order):
//!
//! ```text
//! h₀ = q − input_offset
//! dense:      acc_l[o]       = Σ_j weights_l[o][j] · h_{l−1}[j]          (h read flat, C·H·W order)
//! conv2d:     acc_l[f, y, x] = Σ_{c,i,j} weights_l[f][(c·KH + i)·KW + j]
//!                                        · h_{l−1}[c, y·SH + i − PH, x·SW + j − PW]   (0 outside)
//! sum_pool2d: acc_l[c, y, x] = Σ_{i,j} h_{l−1}[c, y·SH + i, x·SW + j]
//! residual:   acc_l[e]      += coefficients_l[t] · h_from[e]          (a skip connection: `from` = 0
//!                                                    the input h₀, i ≥ 1 layer i−1's output; same
//!                                                    shape as acc_l; t as for the tables below)
//! k_l   = floor((acc_l + 2^(lsbs−1)) / 2^lsbs)      (acc_l itself when lsbs = 0)
//! h_l   = tables_l[t][k_l − table_lo]               (layers with a lookup; t the output neuron of
//!                                                    a dense layer, the channel of the others)
//! output = h of the last layer, dequantised by the client: scale·v + offset (per output)
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
/// Most inputs or outputs of one layer (elements of its tensor).
pub const MAX_MLP_WIDTH: usize = 1 << 16;
/// Most weights of one layer.
pub const MAX_MLP_WEIGHTS: usize = 1 << 24;
/// Largest integer weight (in magnitude).
pub const MAX_MLP_WEIGHT: i64 = 1 << 16;
/// Most table entries of one layer, laid out over its lookups' input type.
pub const MAX_MLP_TABLE_ENTRIES: usize = 1 << 26;
/// Widest lookup input (bits after rounding).
pub const MAX_MLP_LOOKUP_BITS: u32 = 16;
/// Largest kernel side, stride or padding of a convolution or pooling.
pub const MAX_WINDOW: usize = 64;

/// An integer network (see the module's semantics).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntegerNetwork {
    /// The client's per-feature affine quantisers (`edges` must be absent).
    pub input: InputQuantizer,
    /// How the features are laid out: `[C, H, W]` for a network with convolutions or pooling;
    /// absent: a vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<Vec<usize>>,
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

/// What a layer computes before its rounding and lookup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// `weights[o][j]` over the flattened input.
    #[default]
    Dense,
    /// A 2-D convolution: `weights[f]` is filter `f`'s `C·KH·KW` taps (row-major `[C, KH, KW]`).
    Conv2d,
    /// The sum over each window, per channel (average pooling, its divisor folded into the next
    /// table or the client's dequantisation); no weights.
    SumPool2d,
    /// The maximum over each window, per channel (`fhe.maxpool2d`: a lookup per comparison); no
    /// weights and no lookup: its outputs keep their input's grid.
    MaxPool2d,
}

/// One layer: its product, then (every layer but usually the last) a rounding and a table lookup
/// per output neuron (dense) or channel (conv2d, sum_pool2d).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntegerLayer {
    #[serde(default)]
    pub kind: LayerKind,
    #[serde(default)]
    pub weights: Vec<Vec<i64>>,
    /// `[KH, KW]` (conv2d, sum_pool2d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<[usize; 2]>,
    /// `[SH, SW]`: default `[1, 1]` (conv2d), the kernel (sum_pool2d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<[usize; 2]>,
    /// `[PH, PW]` zeros on each side (conv2d only; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<[usize; 2]>,
    /// A skip connection added to the accumulator before its rounding (dense, conv2d, sum_pool2d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<Residual>,
    #[serde(default)]
    pub lookup: Option<Lookup>,
}

/// `acc[e] += coefficients[t] · h_from[e]`: `from` = 0 is the input (after `input_offset`), `i ≥ 1`
/// the output of layer `i − 1` (after its lookup); `t` the output neuron (dense) or channel. The
/// value has the accumulator's shape (`[C, H, W]` for the window layers, as many elements for dense).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Residual {
    pub from: usize,
    pub coefficients: Vec<i64>,
}

/// Rounding of the accumulator by `lsbs` bits, then `tables[t][k − table_lo]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lookup {
    pub lsbs: u32,
    pub table_lo: i64,
    pub tables: Vec<Vec<i64>>,
}

impl IntegerLayer {
    /// A dense layer.
    pub fn dense(weights: Vec<Vec<i64>>, lookup: Option<Lookup>) -> IntegerLayer {
        IntegerLayer {
            kind: LayerKind::Dense,
            weights,
            kernel: None,
            stride: None,
            padding: None,
            residual: None,
            lookup,
        }
    }
}

fn bad(what: impl Into<String>) -> OnnxError {
    OnnxError::Format(format!("integer network: {}", what.into()))
}

fn ir_err(what: &str) -> impl Fn(fhec_ir::Diagnostic) -> OnnxError + '_ {
    move |e| bad(format!("{what}: {}", e.message))
}

/// The element type of values in `lo ..= hi`, signed or not (an op's result takes the signedness of
/// its operands: signed when one is).
fn elem_of(lo: i64, hi: i64, signed: bool) -> Result<ElemType, OnnxError> {
    let w = width_for(lo as i128, hi as i128, signed);
    if w > MAX_ENCRYPTED_WIDTH {
        return Err(bad(format!(
            "values in {lo} ..= {hi} need {w} bits (at most {MAX_ENCRYPTED_WIDTH})"
        )));
    }
    Ok(if signed { ElemType::ESInt(w) } else { ElemType::EInt(w) })
}

/// Largest accumulator magnitude considered (wider ones are refused before any arithmetic on them).
const MAX_ACC: i128 = 1 << 62;

/// A layer's geometry, derived and checked once.
#[derive(Clone, Debug)]
struct Geom {
    /// The input as `[C, H, W]` (absent: a vector).
    chw: Option<[usize; 3]>,
    inputs: usize,
    /// The output as `[C, H, W]` (dense: absent).
    out_chw: Option<[usize; 3]>,
    outputs: usize,
    /// Output neurons (dense) or channels: the number of tables a lookup has.
    groups: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
}

impl Geom {
    /// The table (group) of output element `e`.
    fn group_of(&self, e: usize) -> usize {
        match self.out_chw {
            Some([_, h, w]) => e / (h * w),
            None => e,
        }
    }
}

fn window_out(side: usize, k: usize, s: usize, p: usize) -> Option<usize> {
    (side + 2 * p).checked_sub(k).map(|d| d / s + 1)
}

impl IntegerNetwork {
    /// Reads a description (JSON), bounded and checked like every outside file.
    pub fn from_json(text: &str) -> Result<IntegerNetwork, OnnxError> {
        if text.len() > MAX_MLP_JSON_BYTES {
            return Err(bad(format!("description larger than {MAX_MLP_JSON_BYTES} bytes")));
        }
        let m: IntegerNetwork = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// Checks shapes, bounds and the quantisers (no panic on any description).
    pub fn check(&self) -> Result<(), OnnxError> {
        self.geometry().map(|_| ())
    }

    /// Every layer's geometry, checking shapes, bounds and the quantisers on the way.
    fn geometry(&self) -> Result<Vec<Geom>, OnnxError> {
        if self.input.edges.is_some() {
            return Err(bad("the input quantisers must be affine (no edges)"));
        }
        self.input.validate().map_err(|e| bad(e.to_string()))?;
        if !(1..=16).contains(&self.input.n_bits) {
            return Err(bad(format!("input bits {} (1 to 16)", self.input.n_bits)));
        }
        if self.input_offset.unsigned_abs() > 1 << 16 {
            return Err(bad(format!("input offset {}", self.input_offset)));
        }
        if self.layers.is_empty() || self.layers.len() > MAX_MLP_LAYERS {
            return Err(bad(format!("{} layers (1 to {MAX_MLP_LAYERS})", self.layers.len())));
        }
        let features = self.input.n_features();
        let mut chw: Option<[usize; 3]> = match &self.input_shape {
            None => None,
            Some(s) => match s.as_slice() {
                [n] if *n == features => None,
                &[c, h, w] if c.checked_mul(h).and_then(|v| v.checked_mul(w)) == Some(features) => Some([c, h, w]),
                _ => {
                    return Err(bad(format!(
                        "input shape {s:?} does not hold the {features} features (a vector, or [C, H, W])"
                    )))
                }
            },
        };
        let mut width = features;
        let mut out = Vec::with_capacity(self.layers.len());
        // every value a residual may read: the input, then each layer's output
        let mut values: Vec<(usize, Option<[usize; 3]>)> = vec![(features, chw)];
        for (i, l) in self.layers.iter().enumerate() {
            if width == 0 || width > MAX_MLP_WIDTH {
                return Err(bad(format!("layer {i}: {width} inputs (1 to {MAX_MLP_WIDTH})")));
            }
            let window = |default_stride: Option<[usize; 2]>| -> Result<_, OnnxError> {
                let Some(k) = l.kernel else {
                    return Err(bad(format!("layer {i}: a {:?} layer needs `kernel`", l.kind)));
                };
                let s = l.stride.or(default_stride).unwrap_or(k);
                let p = l.padding.unwrap_or([0, 0]);
                let ok = |v: usize, zero: bool| (zero || v >= 1) && v <= MAX_WINDOW;
                let fits = [k[0], k[1], s[0], s[1]].iter().all(|&v| ok(v, false)) && p.iter().all(|&v| ok(v, true));
                if !fits || p[0] >= k[0] || p[1] >= k[1] {
                    return Err(bad(format!(
                        "layer {i}: kernel {k:?}, stride {s:?}, padding {p:?} (kernel and stride 1 to \
                         {MAX_WINDOW}, padding below the kernel)"
                    )));
                }
                let Some([c, h, w]) = chw else {
                    return Err(bad(format!(
                        "layer {i}: a {:?} layer reads [C, H, W] (set input_shape, and no dense layer before it)",
                        l.kind
                    )));
                };
                let (Some(oh), Some(ow)) = (window_out(h, k[0], s[0], p[0]), window_out(w, k[1], s[1], p[1])) else {
                    return Err(bad(format!(
                        "layer {i}: kernel {k:?} larger than the padded {h}×{w} input"
                    )));
                };
                Ok(([c, h, w], k, s, p, oh, ow))
            };
            let g = match l.kind {
                LayerKind::Dense => {
                    if l.kernel.is_some() || l.stride.is_some() || l.padding.is_some() {
                        return Err(bad(format!(
                            "layer {i}: a dense layer has no kernel, stride or padding"
                        )));
                    }
                    let outs = l.weights.len();
                    if outs == 0 || outs > MAX_MLP_WIDTH {
                        return Err(bad(format!("layer {i}: {outs} outputs over {width} inputs")));
                    }
                    Geom {
                        chw,
                        inputs: width,
                        out_chw: None,
                        outputs: outs,
                        groups: outs,
                        kernel: [1, 1],
                        stride: [1, 1],
                        padding: [0, 0],
                    }
                }
                LayerKind::Conv2d => {
                    let ([c, h, w], k, s, p, oh, ow) = window(Some([1, 1]))?;
                    let f = l.weights.len();
                    if f == 0 || f > MAX_MLP_WIDTH {
                        return Err(bad(format!("layer {i}: {f} filters")));
                    }
                    Geom {
                        chw: Some([c, h, w]),
                        inputs: width,
                        out_chw: Some([f, oh, ow]),
                        outputs: f.saturating_mul(oh).saturating_mul(ow),
                        groups: f,
                        kernel: k,
                        stride: s,
                        padding: p,
                    }
                }
                LayerKind::SumPool2d | LayerKind::MaxPool2d => {
                    let name = if l.kind == LayerKind::SumPool2d {
                        "sum_pool2d"
                    } else {
                        "max_pool2d"
                    };
                    if !l.weights.is_empty() {
                        return Err(bad(format!("layer {i}: a {name} layer has no weights")));
                    }
                    if l.padding.is_some_and(|p| p != [0, 0]) {
                        return Err(bad(format!("layer {i}: a {name} layer has no padding")));
                    }
                    if l.kind == LayerKind::MaxPool2d && l.lookup.is_some() {
                        return Err(bad(format!(
                            "layer {i}: a max_pool2d layer has no lookup (its outputs keep their input's grid)"
                        )));
                    }
                    let ([c, h, w], k, s, p, oh, ow) = window(None)?;
                    Geom {
                        chw: Some([c, h, w]),
                        inputs: width,
                        out_chw: Some([c, oh, ow]),
                        outputs: c * oh * ow,
                        groups: c,
                        kernel: k,
                        stride: s,
                        padding: p,
                    }
                }
            };
            if g.outputs == 0 || g.outputs > MAX_MLP_WIDTH {
                return Err(bad(format!("layer {i}: {} outputs (1 to {MAX_MLP_WIDTH})", g.outputs)));
            }
            // the weights: one row per output neuron (dense) or filter (conv2d)
            let row_len = match (l.kind, g.chw) {
                (LayerKind::Dense, _) => width,
                (LayerKind::Conv2d, Some([c, ..])) => c * g.kernel[0] * g.kernel[1],
                _ => 0,
            };
            if l.weights.len().saturating_mul(row_len) > MAX_MLP_WEIGHTS {
                return Err(bad(format!("layer {i}: more than {MAX_MLP_WEIGHTS} weights")));
            }
            if let Some(r) = l.weights.iter().position(|row| row.len() != row_len) {
                return Err(bad(format!(
                    "layer {i}: weight row {r} has {} entries, expected {row_len}",
                    l.weights[r].len()
                )));
            }
            if l.weights
                .iter()
                .flatten()
                .any(|w| w.unsigned_abs() > MAX_MLP_WEIGHT as u64)
            {
                return Err(bad(format!(
                    "layer {i}: a weight exceeds {MAX_MLP_WEIGHT} in magnitude"
                )));
            }
            if let Some(t) = &l.lookup {
                if t.tables.len() != g.groups {
                    return Err(bad(format!(
                        "layer {i}: {} tables for {} {}",
                        t.tables.len(),
                        g.groups,
                        if l.kind == LayerKind::Dense {
                            "outputs"
                        } else {
                            "channels"
                        }
                    )));
                }
                let k = t.tables[0].len();
                if k == 0 || k > 1 << MAX_MLP_LOOKUP_BITS || t.tables.iter().any(|r| r.len() != k) {
                    return Err(bad(format!(
                        "layer {i}: tables must have one length, 1 to 2^{MAX_MLP_LOOKUP_BITS}"
                    )));
                }
                if t.tables.iter().flatten().any(|v| v.unsigned_abs() > 1 << 16) {
                    return Err(bad(format!("layer {i}: a table value exceeds 2^16 in magnitude")));
                }
                if t.lsbs > 40 || t.table_lo.unsigned_abs() > 1 << 40 {
                    return Err(bad(format!("layer {i}: lsbs {} or table_lo {}", t.lsbs, t.table_lo)));
                }
            }
            if let Some(r) = &l.residual {
                if l.kind == LayerKind::MaxPool2d {
                    return Err(bad(format!("layer {i}: a max_pool2d layer takes no residual")));
                }
                let Some(&(count, from_chw)) = values.get(r.from) else {
                    return Err(bad(format!(
                        "layer {i}: residual from {} (0 the input, at most {i}: an earlier layer's output)",
                        r.from
                    )));
                };
                let fits = match g.out_chw {
                    Some(_) => from_chw == g.out_chw,
                    None => count == g.outputs,
                };
                if !fits {
                    return Err(bad(format!(
                        "layer {i}: residual from {} has shape {}, the accumulator {}",
                        r.from,
                        from_chw.map_or(format!("[{count}]"), |s| format!("{s:?}")),
                        g.out_chw.map_or(format!("[{}]", g.outputs), |s| format!("{s:?}"))
                    )));
                }
                if r.coefficients.len() != g.groups
                    || r.coefficients.iter().any(|c| c.unsigned_abs() > MAX_MLP_WEIGHT as u64)
                {
                    return Err(bad(format!(
                        "layer {i}: the residual needs {} coefficients, each at most {MAX_MLP_WEIGHT} in magnitude",
                        g.groups
                    )));
                }
            }
            width = g.outputs;
            chw = g.out_chw;
            values.push((g.outputs, g.out_chw));
            out.push(g);
        }
        if self.output.parts != 1 {
            return Err(bad(format!(
                "output in {} parts: integer networks return their output whole",
                self.output.parts
            )));
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
        Ok(out)
    }

    /// The program and its client spec. Every accumulator's and every lookup input's range is the
    /// worst case over the accepted inputs; a table that does not cover its rounded accumulator's
    /// range is an error.
    pub fn build(&self) -> Result<QuantizedNetwork, OnnxError> {
        let geoms = self.geometry()?;
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
        let pair = |v: [usize; 2]| Attribute::Array(v.iter().map(|&d| Attribute::Int(d as i64)).collect());
        let mut layers = Vec::new();
        // the values a residual may read (the input, then each layer's output) and their ranges
        let mut outs: Vec<(ValueId, i64, i64)> = vec![(v, lo, hi)];
        for (i, (l, g)) in self.layers.iter().zip(&geoms).enumerate() {
            if i > 0 {
                outs.push((v, lo, hi));
            }
            let what = match l.kind {
                LayerKind::Dense => format!("dense layer {i}"),
                LayerKind::Conv2d => format!("conv2d layer {i}"),
                LayerKind::SumPool2d => format!("sum_pool2d layer {i}"),
                LayerKind::MaxPool2d => format!("max_pool2d layer {i}"),
            };
            if l.kind == LayerKind::MaxPool2d {
                // the window's maximum: the values (and their range) keep their grid
                let [c, h, w] = g.chw.expect("checked: a window layer reads [C, H, W]");
                let [_, oh, ow] = g.out_chw.expect("checked: a window layer writes [C, H, W]");
                let ty = b.ty(v).clone();
                let x4 = b
                    .op_with_type(OpKind::Reshape, &[v], &[], Some(ty.with_shape(vec![1, c, h, w])))
                    .map_err(ir_err(&what))?;
                let y = b
                    .op_with_type(
                        OpKind::Maxpool2d,
                        &[x4],
                        &[("kernel_shape", pair(g.kernel)), ("strides", pair(g.stride))],
                        Some(ty.with_shape(vec![1, c, oh, ow])),
                    )
                    .map_err(ir_err(&what))?;
                v = b
                    .op_with_type(OpKind::Reshape, &[y], &[], Some(ty.with_shape(vec![1, g.outputs])))
                    .map_err(ir_err(&what))?;
                layers.push(LayerReport {
                    node: what,
                    kind: "maxpool".into(),
                    elements: g.outputs,
                    range: (lo, hi),
                    bits: ty.width(),
                    rounded_lsbs: 0,
                    tables: 0,
                });
                continue;
            }
            // the accumulator's worst case per group (output neuron or channel): padding reads zeros
            let (plo, phi) = if g.padding != [0, 0] {
                (lo.min(0), hi.max(0))
            } else {
                (lo, hi)
            };
            // (in i128: a description's ranges cannot overflow, and are bounded before use)
            let (plo, phi, lo128, hi128) = (plo as i128, phi as i128, lo as i128, hi as i128);
            let wide: Vec<(i128, i128)> = match l.kind {
                LayerKind::SumPool2d => {
                    let taps = (g.kernel[0] * g.kernel[1]) as i128;
                    vec![(taps * lo128, taps * hi128); g.groups]
                }
                _ => l
                    .weights
                    .iter()
                    .map(|row| {
                        row.iter().fold((0i128, 0i128), |(a, z), &w| {
                            let w = w as i128;
                            (a + (w * plo).min(w * phi), z + (w * plo).max(w * phi))
                        })
                    })
                    .collect(),
            };
            // the residual's term, per group: its coefficient times the skipped value's range
            let residual = l.residual.as_ref().map(|r| {
                let (hv, hlo, hhi) = outs[r.from];
                let terms: Vec<(i128, i128)> = r
                    .coefficients
                    .iter()
                    .map(|&c| {
                        let (a, z) = (c as i128 * hlo as i128, c as i128 * hhi as i128);
                        (a.min(z), a.max(z))
                    })
                    .collect();
                (r, hv, terms)
            });
            if wide.iter().any(|&(a, z)| a.abs() > MAX_ACC || z.abs() > MAX_ACC) {
                return Err(bad(format!("{what}: accumulators beyond 2^62")));
            }
            let mm_ranges: Vec<(i64, i64)> = wide.iter().map(|&(a, z)| (a as i64, z as i64)).collect();
            let ranges: Vec<(i64, i64)> = match &residual {
                None => mm_ranges.clone(),
                Some((_, _, terms)) => {
                    let total: Vec<(i128, i128)> = wide
                        .iter()
                        .zip(terms)
                        .map(|(&(a, z), &(ta, tz))| (a + ta, z + tz))
                        .collect();
                    if total.iter().any(|&(a, z)| a.abs() > MAX_ACC || z.abs() > MAX_ACC) {
                        return Err(bad(format!("{what}: accumulators beyond 2^62 with the residual")));
                    }
                    total.iter().map(|&(a, z)| (a as i64, z as i64)).collect()
                }
            };
            let amin = ranges.iter().map(|r| r.0).min().unwrap_or(0);
            let amax = ranges.iter().map(|r| r.1).max().unwrap_or(0);
            // the result is signed when an operand is: the input, or weights with a negative one
            let mm_signed = b.ty(v).is_signed() || l.weights.iter().flatten().any(|&w| w < 0);
            let term_signed = residual
                .as_ref()
                .is_some_and(|(r, hv, _)| b.ty(*hv).is_signed() || r.coefficients.iter().any(|&c| c < 0));
            let signed = mm_signed || term_signed;
            let mut acc_elem = if signed {
                elem_of(amin.min(-1), amax, true)?
            } else {
                elem_of(amin, amax, false)?
            };
            // the product's own type (the accumulator's, without a residual)
            let mm_elem = if residual.is_none() {
                None
            } else {
                let lo = mm_ranges.iter().map(|r| r.0).min().unwrap_or(0);
                let hi = mm_ranges.iter().map(|r| r.1).max().unwrap_or(0);
                Some(if mm_signed {
                    elem_of(lo.min(-1), hi, true)?
                } else {
                    elem_of(lo, hi, false)?
                })
            };
            if let Some(t) = &l.lookup {
                // the trainer sizes the rounding from its own (possibly wider) input ranges; a
                // narrower accumulator (a dead neuron upstream) is declared wide enough to drop them
                if t.lsbs > 0 && t.lsbs >= acc_elem.width() && t.lsbs < MAX_ENCRYPTED_WIDTH {
                    acc_elem = if signed {
                        ElemType::ESInt(t.lsbs + 1)
                    } else {
                        ElemType::EInt(t.lsbs + 1)
                    };
                }
            }
            let prod_elem = mm_elem.unwrap_or(acc_elem);
            let acc = match l.kind {
                LayerKind::Dense => {
                    let (n, k) = (g.outputs, g.inputs);
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
                    b.op_with_type(OpKind::Matmul, &[v, wv], &[], Some(Type::new(prod_elem, vec![1, n])))
                        .map_err(ir_err(&what))?
                }
                LayerKind::Conv2d | LayerKind::SumPool2d | LayerKind::MaxPool2d => {
                    let [c, h, w] = g.chw.expect("checked: a window layer reads [C, H, W]");
                    let [f, oh, ow] = g.out_chw.expect("checked: a window layer writes [C, H, W]");
                    let [kh, kw] = g.kernel;
                    let (wflat, cg, group) = if l.kind == LayerKind::Conv2d {
                        (l.weights.iter().flatten().copied().collect::<Vec<i64>>(), c, 1)
                    } else {
                        (vec![1i64; c * kh * kw], 1, c)
                    };
                    let wd = dense(wflat, &[f, cg, kh, kw])?;
                    let wty = wd.ty.clone();
                    let wv = b
                        .op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(wd))], Some(wty))
                        .map_err(ir_err(&what))?;
                    let vty = b.ty(v).with_shape(vec![1, c, h, w]);
                    let x4 = b
                        .op_with_type(OpKind::Reshape, &[v], &[], Some(vty))
                        .map_err(ir_err(&what))?;
                    let [ph, pw] = g.padding;
                    let attrs = [
                        ("strides", pair(g.stride)),
                        (
                            "pads",
                            Attribute::Array([ph, pw, ph, pw].iter().map(|&d| Attribute::Int(d as i64)).collect()),
                        ),
                        ("group", Attribute::Int(group as i64)),
                    ];
                    let y = b
                        .op_with_type(
                            OpKind::Conv2d,
                            &[x4, wv],
                            &attrs,
                            Some(Type::new(prod_elem, vec![1, f, oh, ow])),
                        )
                        .map_err(ir_err(&what))?;
                    b.op_with_type(
                        OpKind::Reshape,
                        &[y],
                        &[],
                        Some(Type::new(prod_elem, vec![1, g.outputs])),
                    )
                    .map_err(ir_err(&what))?
                }
            };
            let acc = match &residual {
                None => acc,
                Some((r, hv, terms)) => {
                    // acc + c·h, the coefficients per element (by its group)
                    let n = g.outputs;
                    let cs: Vec<i64> = (0..n).map(|e| r.coefficients[g.group_of(e)]).collect();
                    let cd = dense(cs, &[1, n])?;
                    let cty = cd.ty.clone();
                    let cv = b
                        .op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(cd))], Some(cty))
                        .map_err(ir_err(&what))?;
                    let tlo = terms.iter().map(|t| t.0).min().unwrap_or(0);
                    let thi = terms.iter().map(|t| t.1).max().unwrap_or(0);
                    if tlo.abs() > MAX_ACC || thi.abs() > MAX_ACC {
                        return Err(bad(format!("{what}: the residual's term beyond 2^62")));
                    }
                    let (tlo, thi) = (tlo as i64, thi as i64);
                    let term_elem = if term_signed {
                        elem_of(tlo.min(-1), thi, true)?
                    } else {
                        elem_of(tlo, thi, false)?
                    };
                    let term = b
                        .op_with_type(OpKind::Mul, &[*hv, cv], &[], Some(Type::new(term_elem, vec![1, n])))
                        .map_err(ir_err(&what))?;
                    b.op_with_type(OpKind::Add, &[acc, term], &[], Some(Type::new(acc_elem, vec![1, n])))
                        .map_err(ir_err(&what))?
                }
            };
            let n = g.outputs;
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
                // the IR keeps at least the accumulator's width less the dropped bits
                let kept = elem_of(if signed { klo.min(-1) } else { klo }, khi, signed)?;
                let width = kept.width().max(acc_elem.width() - t.lsbs);
                let kty = if signed {
                    ElemType::ESInt(width)
                } else {
                    ElemType::EInt(width)
                };
                let ty = Type::new(kty, vec![1, n]);
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
            if g.groups.saturating_mul(size) > MAX_MLP_TABLE_ENTRIES {
                return Err(bad(format!(
                    "{what}: {} tables of {size} entries (at most {MAX_MLP_TABLE_ENTRIES} in all): round more bits",
                    g.groups
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
            let TableSet { tables, map: ids, .. } = set;
            let map: Vec<i64> = (0..n).map(|e| ids[g.group_of(e)]).collect();
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
        let input_shape = match geoms.first().and_then(|g| g.chw) {
            Some(s) if self.layers[0].kind != LayerKind::Dense => s.to_vec(),
            _ => self.input_shape.clone().unwrap_or_else(|| vec![features]),
        };
        Ok(QuantizedNetwork {
            module,
            spec,
            tail: None,
            input_shape,
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

    fn net() -> IntegerNetwork {
        IntegerNetwork {
            input: InputQuantizer {
                n_bits: 3,
                lo: vec![0.0, -1.0],
                scale: vec![0.5, 0.25],
                edges: None,
            },
            input_shape: None,
            input_offset: 4,
            layers: vec![
                IntegerLayer::dense(
                    vec![vec![3, -1], vec![0, 2], vec![-2, -2]],
                    Some(Lookup {
                        lsbs: 2,
                        table_lo: -4,
                        tables: vec![
                            vec![-4, -3, -2, -1, 0, 1, 2, 3, 3],
                            vec![0, 0, 0, 0, 1, 2, 3, 3, 3],
                            vec![3, 2, 1, 0, -1, -2, -3, -4, -4],
                        ],
                    }),
                ),
                IntegerLayer::dense(vec![vec![1, 2, -3], vec![-1, 0, 1]], None),
            ],
            output: Dequant::new(vec![0.1, 0.2], vec![1.0, -1.0]),
            post: Post::Softmax,
            classes: None,
        }
    }

    /// The module's semantics (the doc comment), written out.
    fn forward(m: &IntegerNetwork, q: &[i64]) -> Vec<i64> {
        let mut h: Vec<i64> = q.iter().map(|v| v - m.input_offset).collect();
        let mut seen: Vec<Vec<i64>> = vec![];
        let mut chw = match m.input_shape.as_deref() {
            Some(&[c, hh, w]) => Some([c, hh, w]),
            _ => None,
        };
        for l in &m.layers {
            seen.push(h.clone());
            // (accumulators, the table of each)
            let (mut acc, group): (Vec<i64>, Vec<usize>) = match l.kind {
                LayerKind::Dense => {
                    chw = None;
                    let acc = l
                        .weights
                        .iter()
                        .map(|r| r.iter().zip(&h).map(|(w, x)| w * x).sum())
                        .collect();
                    (acc, (0..l.weights.len()).collect())
                }
                LayerKind::MaxPool2d => {
                    let [c, hh, ww] = chw.unwrap();
                    let [kh, kw] = l.kernel.unwrap();
                    let [sh, sw] = l.stride.unwrap_or([kh, kw]);
                    let (oh, ow) = ((hh - kh) / sh + 1, (ww - kw) / sw + 1);
                    let mut out = vec![];
                    for ch in 0..c {
                        for y in 0..oh {
                            for x in 0..ow {
                                let m = (0..kh)
                                    .flat_map(|i| (0..kw).map(move |j| (i, j)))
                                    .map(|(i, j)| h[(ch * hh + y * sh + i) * ww + x * sw + j])
                                    .max()
                                    .unwrap();
                                out.push(m);
                            }
                        }
                    }
                    chw = Some([c, oh, ow]);
                    let n = out.len();
                    (out, vec![0; n])
                }
                LayerKind::Conv2d | LayerKind::SumPool2d => {
                    let [c, hh, ww] = chw.unwrap();
                    let [kh, kw] = l.kernel.unwrap();
                    let pool = l.kind == LayerKind::SumPool2d;
                    let [sh, sw] = l.stride.unwrap_or(if pool { [kh, kw] } else { [1, 1] });
                    let [ph, pw] = l.padding.unwrap_or([0, 0]);
                    let (oh, ow) = ((hh + 2 * ph - kh) / sh + 1, (ww + 2 * pw - kw) / sw + 1);
                    let f = if pool { c } else { l.weights.len() };
                    let at = |ch: usize, y: i64, x: i64| -> i64 {
                        if y < 0 || x < 0 || y >= hh as i64 || x >= ww as i64 {
                            0
                        } else {
                            h[(ch * hh + y as usize) * ww + x as usize]
                        }
                    };
                    let (mut acc, mut group) = (vec![], vec![]);
                    for o in 0..f {
                        for y in 0..oh {
                            for x in 0..ow {
                                let mut a = 0;
                                for ch in 0..c {
                                    if pool && ch != o {
                                        continue;
                                    }
                                    for i in 0..kh {
                                        for j in 0..kw {
                                            let w = if pool { 1 } else { l.weights[o][(ch * kh + i) * kw + j] };
                                            let yy = (y * sh + i) as i64 - ph as i64;
                                            let xx = (x * sw + j) as i64 - pw as i64;
                                            a += w * at(ch, yy, xx);
                                        }
                                    }
                                }
                                acc.push(a);
                                group.push(o);
                            }
                        }
                    }
                    chw = Some([f, oh, ow]);
                    (acc, group)
                }
            };
            if let Some(r) = &l.residual {
                for (e, a) in acc.iter_mut().enumerate() {
                    *a += r.coefficients[group[e]] * seen[r.from][e];
                }
            }
            h = match &l.lookup {
                None => acc,
                Some(t) => acc
                    .iter()
                    .zip(&group)
                    .map(|(&a, &o)| {
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

    /// A small convolutional network: 2×5×5 inputs of 2 bits, a padded 3×3 convolution of three
    /// filters, a 2×2 sum pooling (both with lookups), a dense layer of two outputs.
    fn conv_net() -> IntegerNetwork {
        let mut seed = 12345u64;
        let mut rnd = |m: i64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as i64).rem_euclid(2 * m + 1) - m
        };
        let conv: Vec<Vec<i64>> = (0..3).map(|_| (0..18).map(|_| rnd(3)).collect()).collect();
        let dense_w: Vec<Vec<i64>> = (0..2).map(|_| (0..12).map(|_| rnd(2)).collect()).collect();
        // tables wider than any rounded accumulator (3·18·2 = 108 → ±14 after 3 bits; pooled ±8 → ±4·… )
        let table = |lo: i64, n: i64, f: &dyn Fn(usize, i64) -> i64, groups: usize| Lookup {
            lsbs: 0,
            table_lo: lo,
            tables: (0..groups).map(|g| (lo..lo + n).map(|k| f(g, k)).collect()).collect(),
        };
        let mut l0 = table(-16, 33, &|g, k| (k * (g as i64 + 1) / 4).clamp(-2, 1), 3);
        l0.lsbs = 3;
        let mut l1 = table(
            -4,
            9,
            &|g, k| if g == 1 { k.clamp(-2, 1) } else { (k / 2).clamp(-2, 1) },
            3,
        );
        l1.lsbs = 1;
        IntegerNetwork {
            input: InputQuantizer {
                n_bits: 2,
                lo: vec![0.0; 50],
                scale: vec![1.0; 50],
                edges: None,
            },
            input_shape: Some(vec![2, 5, 5]),
            input_offset: 2,
            layers: vec![
                IntegerLayer {
                    kind: LayerKind::Conv2d,
                    weights: conv,
                    kernel: Some([3, 3]),
                    stride: None,
                    padding: Some([1, 1]),
                    residual: None,
                    lookup: Some(l0),
                },
                IntegerLayer {
                    kind: LayerKind::SumPool2d,
                    weights: vec![],
                    kernel: Some([2, 2]),
                    stride: None,
                    padding: None,
                    residual: None,
                    lookup: Some(l1),
                },
                IntegerLayer::dense(dense_w, None),
            ],
            output: Dequant::new(vec![1.0; 2], vec![0.0; 2]),
            post: Post::Identity,
            classes: None,
        }
    }

    /// The clear interpreter on `count` pseudo-random inputs of `m` (2-bit features) equals `forward`.
    fn agrees_on_random_inputs(m: &IntegerNetwork, q: &QuantizedNetwork, mut seed: u64, count: usize) {
        let verified = fhec_ir::verify(&q.module).unwrap();
        let features = m.input.n_features();
        for _ in 0..count {
            let x: Vec<i64> = (0..features)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((seed >> 40) % 4) as i64
                })
                .collect();
            let t: Tensor = ArrayD::from_shape_vec(IxDyn(&[1, features]), x.clone()).unwrap();
            let out = fhec_ir::eval(&verified, &[t]).unwrap();
            assert_eq!(out[0].iter().copied().collect::<Vec<_>>(), forward(m, &x));
        }
    }

    #[test]
    fn convolutions_and_pooling_compute_the_stated_semantics() {
        let m = conv_net();
        let q = m.build().unwrap();
        assert_eq!(q.input_shape, vec![2, 5, 5]);
        agrees_on_random_inputs(&m, &q, 7, 300);
        let kinds: Vec<(&str, u32)> = q.layers.iter().map(|r| (r.kind.as_str(), r.rounded_lsbs)).collect();
        assert_eq!(
            kinds,
            vec![
                ("accumulator", 0),
                ("lookup", 3),
                ("accumulator", 0),
                ("lookup", 1),
                ("accumulator", 0)
            ]
        );
        // every extreme input too (all lowest, all highest)
        let verified = fhec_ir::verify(&q.module).unwrap();
        for v in [0, 3] {
            let x = vec![v; 50];
            let t: Tensor = ArrayD::from_shape_vec(IxDyn(&[1, 50]), x.clone()).unwrap();
            let out = fhec_ir::eval(&verified, &[t]).unwrap();
            assert_eq!(out[0].iter().copied().collect::<Vec<_>>(), forward(&m, &x));
        }
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(IntegerNetwork::from_json(&text).unwrap(), m);
        if std::env::var_os("FHEC_WRITE_FUZZ_SEED").is_some() {
            std::fs::write("../../fuzz/fixtures/integer_conv.json", &text).unwrap();
        }
        // the fuzz target's second seed is this network
        let seed = include_str!("../../../fuzz/fixtures/integer_conv.json");
        assert_eq!(IntegerNetwork::from_json(seed).unwrap(), m);
    }

    #[test]
    fn max_pooling_keeps_its_inputs_grid() {
        let mut m = conv_net();
        m.layers[1] = IntegerLayer {
            kind: LayerKind::MaxPool2d,
            weights: vec![],
            kernel: Some([2, 2]),
            stride: None,
            padding: None,
            residual: None,
            lookup: None,
        };
        let q = m.build().unwrap();
        agrees_on_random_inputs(&m, &q, 11, 200);
        let kinds: Vec<&str> = q.layers.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, vec!["accumulator", "lookup", "maxpool", "accumulator"]);
        // the maximum keeps the range of the tables' values (clamped to -2 ..= 1)
        let (a, z) = q.layers[2].range;
        assert!(-2 <= a && z <= 1 && a < z, "{a} ..= {z}");
        m.layers[1].lookup = conv_net().layers[1].lookup.clone();
        assert!(m.build().unwrap_err().to_string().contains("has no lookup"));
    }

    #[test]
    fn nonnegative_values_and_weights_give_unsigned_accumulators() {
        // the hidden lookup's values are all ≥ 0 and so are the next weights: an unsigned product
        let mut m = net();
        m.layers[0].lookup.as_mut().unwrap().tables = vec![vec![0, 0, 1, 1, 2, 2, 3, 3, 3]; 3];
        m.layers[1].weights = vec![vec![1, 2, 0], vec![0, 0, 1]];
        m.layers[1].lookup = Some(Lookup {
            lsbs: 1,
            table_lo: 0,
            tables: vec![vec![5, 6, 7, 8, 9, 10]; 2],
        });
        let q = m.build().unwrap();
        assert_eq!(q.layers[2].bits, 4, "{:?}", q.layers[2]); // 0 ..= 9, unsigned
        let verified = fhec_ir::verify(&q.module).unwrap();
        for a in 0..8 {
            for c in 0..8 {
                let x: Tensor = ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![a, c]).unwrap();
                let out = fhec_ir::eval(&verified, &[x]).unwrap();
                assert_eq!(out[0].iter().copied().collect::<Vec<_>>(), forward(&m, &[a, c]));
            }
        }
    }

    #[test]
    fn a_rounding_keeps_the_accumulators_width_less_its_bits() {
        // −36 ..= 27 (7 bits signed) rounded by 3 bits reaches −4 ..= 3 (3 bits), declared 4
        let mut m = net();
        m.layers[0].weights = vec![vec![4, 5], vec![0, 1], vec![-1, 0]];
        m.layers[0].lookup = Some(Lookup {
            lsbs: 3,
            table_lo: -4,
            tables: vec![vec![1, 2, 3, 4, 4, 3, 2, 1]; 3],
        });
        let q = m.build().unwrap();
        assert_eq!((q.layers[0].bits, q.layers[1].bits), (7, 4));
        fhec_ir::verify(&q.module).unwrap();
    }

    #[test]
    fn hostile_magnitudes_are_refused_without_overflow() {
        let mut m = net();
        m.layers[0].weights[0][0] = i64::MIN;
        assert!(m.build().unwrap_err().to_string().contains("exceeds"));
        let mut m = net();
        m.input_offset = i64::MIN;
        assert!(m.build().is_err());
        let mut m = net();
        m.layers[0].lookup.as_mut().unwrap().tables[0][0] = i64::MIN;
        assert!(m.build().is_err());
        // accumulators that chain beyond 2^62 (no lookup between the layers) are refused, not wrapped
        let c = 32;
        let mut m = conv_net();
        m.input = InputQuantizer {
            n_bits: 16,
            lo: vec![0.0; c],
            scale: vec![1.0; c],
            edges: None,
        };
        m.input_shape = Some(vec![c, 1, 1]);
        m.input_offset = 1 << 15;
        let eye: Vec<Vec<i64>> = (0..c)
            .map(|f| (0..c).map(|j| if j == f { 1 << 16 } else { 0 }).collect())
            .collect();
        m.layers = vec![
            IntegerLayer {
                kind: LayerKind::Conv2d,
                weights: eye,
                kernel: Some([1, 1]),
                stride: None,
                padding: None,
                residual: None,
                lookup: None,
            },
            IntegerLayer {
                kind: LayerKind::Conv2d,
                weights: vec![vec![-(1 << 16); c * 64 * 64]],
                kernel: Some([64, 64]),
                stride: None,
                padding: Some([63, 63]),
                residual: None,
                lookup: None,
            },
        ];
        m.output = Dequant::new(vec![1.0; 4096], vec![0.0; 4096]);
        let e = m.build().unwrap_err().to_string();
        assert!(e.contains("bits (at most") || e.contains("beyond 2^62"), "{e}");
    }

    #[test]
    fn window_layers_that_do_not_fit_are_errors() {
        let msg = |m: &IntegerNetwork| m.build().unwrap_err().to_string();
        let mut m = conv_net();
        m.input_shape = None;
        assert!(msg(&m).contains("reads [C, H, W]"), "{}", msg(&m));
        let mut m = conv_net();
        m.input_shape = Some(vec![2, 5, 4]);
        assert!(msg(&m).contains("input shape"));
        let mut m = conv_net();
        m.layers[0].kernel = Some([8, 8]);
        assert!(msg(&m).contains("larger than"), "{}", msg(&m));
        let mut m = conv_net();
        m.layers[0].padding = Some([3, 1]);
        assert!(msg(&m).contains("padding below the kernel"));
        let mut m = conv_net();
        m.layers[0].kernel = None;
        assert!(msg(&m).contains("needs `kernel`"));
        let mut m = conv_net();
        m.layers[0].weights[1].pop();
        assert!(msg(&m).contains("weight row 1"));
        let mut m = conv_net();
        m.layers[1].weights = vec![vec![1]];
        assert!(msg(&m).contains("no weights"));
        let mut m = conv_net();
        m.layers[1].lookup.as_mut().unwrap().tables.pop();
        assert!(msg(&m).contains("2 tables for 3 channels"), "{}", msg(&m));
        let mut m = conv_net();
        m.layers[2].stride = Some([1, 1]);
        assert!(msg(&m).contains("no kernel, stride or padding"));
        let mut m = conv_net();
        m.layers[0].stride = Some([0, 1]);
        assert!(msg(&m).contains("kernel and stride 1 to"));
        let mut m = conv_net();
        m.layers[0].lookup.as_mut().unwrap().lsbs = 0;
        assert!(msg(&m).contains("tables cover"), "{}", msg(&m));
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
        // output parts are the PTQ builder's: a description claiming them is refused
        let mut m = net();
        m.output.parts = 2;
        assert!(m.build().unwrap_err().to_string().contains("2 parts"));
        assert!(IntegerNetwork::from_json("{\"input\": 3}").is_err());
        let text = serde_json::to_string(&net()).unwrap();
        assert_eq!(IntegerNetwork::from_json(&text).unwrap(), net());
        // the fuzz target's seed is this network
        let seed = include_str!("../../../fuzz/fixtures/integer_mlp.json");
        assert_eq!(IntegerNetwork::from_json(seed).unwrap(), net());
    }

    /// `conv_net` with a residual block after its first layer: a padded convolution of the first
    /// layer's output, plus that output times per-channel coefficients, then its lookup.
    fn residual_conv_net() -> IntegerNetwork {
        let mut m = conv_net();
        let mut seed = 777u64;
        let mut rnd = |k: i64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as i64).rem_euclid(2 * k + 1) - k
        };
        // layer 0's outputs are in -2 ..= 1: |acc| ≤ 27·3·2 + 3·2 = 168, rounded by 3 bits: ±21
        let block = IntegerLayer {
            kind: LayerKind::Conv2d,
            weights: (0..3).map(|_| (0..27).map(|_| rnd(3)).collect()).collect(),
            kernel: Some([3, 3]),
            stride: None,
            padding: Some([1, 1]),
            residual: Some(Residual {
                from: 1,
                coefficients: vec![3, -2, 1],
            }),
            lookup: Some(Lookup {
                lsbs: 3,
                table_lo: -22,
                tables: (0..3)
                    .map(|g| (-22..23).map(|k: i64| (k / (g + 2)).clamp(-2, 1)).collect())
                    .collect(),
            }),
        };
        m.layers.insert(1, block);
        m
    }

    #[test]
    fn residuals_compute_the_stated_semantics() {
        // a convolution block: the skipped value is layer 0's output, [3, 5, 5]
        let m = residual_conv_net();
        let q = m.build().unwrap();
        agrees_on_random_inputs(&m, &q, 99, 40);
        // the block's accumulator range holds the residual's term
        let acc = &q.layers[2];
        assert_eq!(acc.kind, "accumulator");
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains("\"residual\""));
        assert_eq!(IntegerNetwork::from_json(&text).unwrap(), m);
        if std::env::var_os("FHEC_WRITE_FUZZ_SEED").is_some() {
            std::fs::write("../../fuzz/fixtures/integer_residual.json", &text).unwrap();
        }
        // the fuzz target's third seed is this network
        let seed = include_str!("../../../fuzz/fixtures/integer_residual.json");
        assert_eq!(IntegerNetwork::from_json(seed).unwrap(), m);
        // dense: a hidden layer of three plus the first hidden layer's outputs (from 1), and one
        // that adds the input itself (from 0) to a two-output layer
        let mut m = net();
        m.layers.insert(
            1,
            IntegerLayer {
                residual: Some(Residual {
                    from: 1,
                    coefficients: vec![2, -1, 3],
                }),
                ..IntegerLayer::dense(
                    vec![vec![1, -1, 2], vec![0, 3, -2], vec![2, 2, 1]],
                    Some(Lookup {
                        lsbs: 1,
                        table_lo: -16,
                        tables: (0..3)
                            .map(|g| (-16..13).map(|k: i64| (k + g).clamp(-4, 3)).collect())
                            .collect(),
                    }),
                )
            },
        );
        m.layers[2].residual = None;
        let q = m.build().unwrap();
        let verified = fhec_ir::verify(&q.module).unwrap();
        let mut m0 = net();
        m0.layers[1].residual = Some(Residual {
            from: 0,
            coefficients: vec![1, -3],
        });
        let q0 = m0.build().unwrap();
        let verified0 = fhec_ir::verify(&q0.module).unwrap();
        for a in 0..8 {
            for c in 0..8 {
                let x: Tensor = ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![a, c]).unwrap();
                let out = fhec_ir::eval(&verified, std::slice::from_ref(&x)).unwrap();
                assert_eq!(
                    out[0].iter().copied().collect::<Vec<_>>(),
                    forward(&m, &[a, c]),
                    "input {a}, {c}"
                );
                let out = fhec_ir::eval(&verified0, &[x]).unwrap();
                assert_eq!(
                    out[0].iter().copied().collect::<Vec<_>>(),
                    forward(&m0, &[a, c]),
                    "input {a}, {c}"
                );
            }
        }
        // the residual changes the result (the term is not dropped)
        let mut plain = m0.clone();
        plain.layers[1].residual = None;
        assert!((0..8).any(|a| forward(&plain, &[a, 0]) != forward(&m0, &[a, 0])));
    }

    #[test]
    fn residuals_that_do_not_fit_are_errors() {
        let refused = |m: IntegerNetwork, what: &str| {
            let e = m.build().unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        };
        // from a later layer, or its own output
        let mut m = residual_conv_net();
        m.layers[1].residual.as_mut().unwrap().from = 2;
        refused(m, "residual from 2");
        // the input, [2, 5, 5], against a [3, 5, 5] accumulator
        let mut m = residual_conv_net();
        m.layers[1].residual.as_mut().unwrap().from = 0;
        refused(m, "has shape [2, 5, 5]");
        let mut m = residual_conv_net();
        m.layers[1].residual.as_mut().unwrap().coefficients.pop();
        refused(m, "3 coefficients");
        let mut m = residual_conv_net();
        m.layers[1].residual.as_mut().unwrap().coefficients[0] = MAX_MLP_WEIGHT + 1;
        refused(m, "coefficients");
        // the dense output layer of two reads three values
        let mut m = net();
        m.layers[1].residual = Some(Residual {
            from: 1,
            coefficients: vec![1, 1],
        });
        refused(m, "has shape [3]");
        let mut m = conv_net();
        m.layers[1].kind = LayerKind::MaxPool2d;
        m.layers[1].lookup = None;
        m.layers[1].residual = Some(Residual {
            from: 1,
            coefficients: vec![1; 3],
        });
        refused(m, "takes no residual");
    }
}
