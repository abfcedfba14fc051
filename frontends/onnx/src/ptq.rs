//! Post-training quantisation of an ONNX network into an fhec IR module and its client spec
//! (docs/onnx.md, "Post-training quantisation").
//!
//! Every encrypted tensor is an integer IR value `q` (kept flat, `[1, n]`) standing for the real
//! tensor `f(scale[e]·q[e] + offset[e])`: `scale` and `offset` per element (or one for all), `f` the
//! element-wise steps not applied yet. Linear layers fold the input's scale and offset into their
//! float weights and bias, quantise the weights per output channel and compute the integer
//! accumulator; element-wise steps accumulate in `f` until the next linear layer (or the output)
//! needs integers again: then one rounding and one lookup per element map the accumulator to
//! `n_bits` integers calibrated on the float network's values of that tensor.

use std::collections::HashMap;

use fhec_ir::attr::{Attribute, Dense};
use fhec_ir::types::{clear_type_for, width_for, MAX_ENCRYPTED_WIDTH};
use fhec_ir::{ElemType, FunctionBuilder, Module, OpKind, Tensor, Type, ValueId};
use fhec_quant::{
    quantize_weights, ClientSpec, Dequant, Encoding, InputQuantizer, Post, WeightMode, Weights, MAX_OUTPUT_PARTS,
};
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::conv::{conv_group, divisor, geometry, pool_of, transposed, Geometry, Pool};
use crate::float::{axes_of, broadcast, clip_bounds, reshape_dims, shape_op};
use crate::model::{Node, OnnxModel};
use crate::ops::{unsupported, Unary};
use crate::qdq::Qdq;
use crate::OnnxError;

/// Bits per role, as the incumbent's `n_bits` dict names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NBits {
    /// The network's inputs (per-feature affine quantisers, on the client).
    pub model_inputs: u32,
    /// Activations between layers (the lookups' outputs).
    pub op_inputs: u32,
    /// Weights of linear layers (per output channel, symmetric).
    pub op_weights: u32,
    /// A trailing activation's output (a network that ends in a linear layer returns its
    /// accumulator, exact).
    pub model_outputs: u32,
}

impl NBits {
    pub fn all(n: u32) -> NBits {
        NBits {
            model_inputs: n,
            op_inputs: n,
            op_weights: n,
            model_outputs: n,
        }
    }

    fn check(&self) -> Result<(), OnnxError> {
        for (what, n, lo) in [
            ("model_inputs", self.model_inputs, 1),
            ("op_inputs", self.op_inputs, 1),
            ("op_weights", self.op_weights, 2),
            ("model_outputs", self.model_outputs, 1),
        ] {
            if !(lo..=16).contains(&n) {
                return Err(OnnxError::Options(format!(
                    "n_bits[{what:?}] must be in {lo}..=16, got {n}"
                )));
            }
        }
        Ok(())
    }
}

/// Post-training quantisation options.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PtqOptions {
    pub n_bits: NBits,
    /// Bits an accumulator keeps before a lookup (`fhe.round` drops the others); the lookups'
    /// precision.
    pub rounding_bits: u32,
    /// Round finer where a layer's tables change only inside a window of `2^rounding_bits`
    /// entries (a requantised activation saturates outside its calibrated range): the lowering
    /// reads such a table on that window ([`WINDOW_TOP_BITS`]; docs/onnx.md, "Windows"). Off by
    /// default: finer tables are more accurate, not always cheaper.
    #[serde(default)]
    pub windows: bool,
    /// The network's output, a linear layer's accumulator, returned as this many partial sums over
    /// the layer's inputs, which the client adds after decryption ([`fhec_quant::Dequant::parts`];
    /// docs/onnx.md, "Output parts"): each part has fewer bits and less noise than the whole, so
    /// that the lookups before it may take cheaper parameters, or have secure ones at all. The
    /// client then learns the parts, not only their sums. 1 (the default): the output whole.
    #[serde(default = "one_part")]
    pub output_parts: u32,
}

fn one_part() -> u32 {
    1
}

/// With [`PtqOptions::windows`], how many bits a table's input may have beyond `rounding_bits`
/// (the values outside the window, read by small lookups after the window's bits are extracted).
pub const WINDOW_TOP_BITS: u32 = 2;

/// Most table entries one layer's lookups may take before deduplication (tables per element × size).
const MAX_TABLE_ENTRIES: usize = 1 << 26;

/// Bits an accumulator keeps before a lookup by default.
pub const DEFAULT_ROUNDING_BITS: u32 = 5;
/// Bits of every role by default. Exactness on every input sizes accumulators by their worst case
/// (`Σ|w|·max q`), and dropping their low bits costs one small bootstrap per bit whose noise grows with
/// the accumulator's width: 8-bit inputs and weights make accumulators too wide for secure
/// parameters on most networks (docs/onnx.md, "Choosing n_bits").
pub const DEFAULT_N_BITS: u32 = 5;

impl Default for PtqOptions {
    fn default() -> PtqOptions {
        PtqOptions {
            n_bits: NBits::all(DEFAULT_N_BITS),
            rounding_bits: DEFAULT_ROUNDING_BITS,
            windows: false,
            output_parts: 1,
        }
    }
}

/// What runs on the client after decryption (the graph is cut before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tail {
    Softmax,
    LogSoftmax,
    ArgMax,
}

/// One encrypted step of the quantised network, for the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// The ONNX node (`Gemm node "fc1"`).
    pub node: String,
    /// `accumulator` (a linear layer), `lookup` (rounding and table lookup), or `output parts`
    /// (the output accumulator as partial sums, [`PtqOptions::output_parts`]: the parts' range
    /// and bits).
    pub kind: String,
    /// Elements of the result.
    pub elements: usize,
    /// Accumulator: its integer range and bits. Lookup: its input's range and bits after rounding.
    pub range: (i64, i64),
    pub bits: u32,
    /// Lookup: the low bits the rounding drops.
    pub rounded_lsbs: u32,
    /// Lookup: distinct tables.
    pub tables: usize,
}

/// A quantised network: the module (`@main(%x: [1, features]) -> [1, outputs]`), the client spec
/// (input quantisers, output dequantisation) and what runs after decryption.
#[derive(Clone, Debug)]
pub struct QuantizedNetwork {
    pub module: Module,
    pub spec: ClientSpec,
    pub tail: Option<Tail>,
    /// The graph input's shape without the batch axis (the client flattens each sample to it).
    pub input_shape: Vec<usize>,
    /// The shape of the value the program returns, without the batch axis (before the tail).
    pub output_shape: Vec<usize>,
    pub layers: Vec<LayerReport>,
}

/// An element-wise step not yet applied: a function, an affine map or a PReLU, with per-element
/// constants (one value: the same for every element).
#[derive(Clone, Debug)]
enum Step {
    F(Unary),
    Affine {
        mul: Vec<f64>,
        add: Vec<f64>,
    },
    PRelu(Vec<f64>),
    /// QuantizeLinear: `clamp(round(x / scale) + zero)`.
    Quant(Qdq),
    /// `a(q) ∘ b(q)`: the sum, difference or product of two chains of one encrypted value (`x·σ(x)`
    /// for SiLU, `x·½(1 + erf(x/√2))` for an exported GELU), applied to its integer `q`; the value's
    /// own scale is then 1 and its offset 0.
    Pair(Box<(Chain, Chain, PairOp)>),
}

/// One encrypted value's float value as a function of its integer: `steps(scale·q + offset)`.
#[derive(Clone, Debug)]
struct Chain {
    scale: Vec<f64>,
    offset: Vec<f64>,
    steps: Vec<Step>,
}

impl Chain {
    fn eval(&self, q: f64, e: usize) -> f64 {
        let x = at(&self.scale, e) * q + at(&self.offset, e);
        self.steps.iter().fold(x, |x, s| s.apply(x, e))
    }

    fn of(x: Enc) -> Chain {
        Chain {
            scale: x.scale,
            offset: x.offset,
            steps: x.steps,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum PairOp {
    Add,
    Sub,
    Mul,
}

/// `s` with its per-element constants moved by `remap` (data movement).
fn remap_step(s: &Step, remap: &dyn Fn(&Vec<f64>) -> Vec<f64>) -> Step {
    match s {
        Step::F(u) => Step::F(*u),
        Step::Affine { mul, add } => Step::Affine {
            mul: remap(mul),
            add: remap(add),
        },
        Step::PRelu(p) => Step::PRelu(remap(p)),
        Step::Quant(q) => Step::Quant(Qdq {
            scale: remap(&q.scale),
            zero: remap(&q.zero),
            ..q.clone()
        }),
        Step::Pair(p) => {
            let (a, b, op) = &**p;
            let chain = |c: &Chain| Chain {
                scale: remap(&c.scale),
                offset: remap(&c.offset),
                steps: c.steps.iter().map(|s| remap_step(s, remap)).collect(),
            };
            Step::Pair(Box::new((chain(a), chain(b), *op)))
        }
    }
}

fn at(v: &[f64], e: usize) -> f64 {
    if v.len() == 1 {
        v[0]
    } else {
        v[e]
    }
}

impl Step {
    fn apply(&self, x: f64, e: usize) -> f64 {
        match self {
            Step::F(u) => u.apply(x),
            Step::Affine { mul, add } => x * at(mul, e) + at(add, e),
            Step::PRelu(s) => {
                if x >= 0.0 {
                    x
                } else {
                    at(s, e) * x
                }
            }
            Step::Quant(q) => q.quantize(x, e),
            Step::Pair(p) => {
                let (a, b, op) = &**p;
                let (u, v) = (a.eval(x, e), b.eval(x, e));
                match op {
                    PairOp::Add => u + v,
                    PairOp::Sub => u - v,
                    PairOp::Mul => u * v,
                }
            }
        }
    }
}

/// An encrypted tensor (see the module doc).
#[derive(Clone, Debug)]
struct Enc {
    v: ValueId,
    /// The ONNX shape with a batch of 1; the IR value is `[1, numel]`.
    shape: Vec<usize>,
    lo: i64,
    hi: i64,
    scale: Vec<f64>,
    offset: Vec<f64>,
    steps: Vec<Step>,
    /// The float tensor this value stands for (calibration).
    calib: String,
}

impl Enc {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Appends an element-wise step; an affine step right after the accumulator folds into its
    /// scale and offset instead (nothing runs encrypted for it).
    fn push(&mut self, s: Step) {
        match s {
            // a Clip that no integer of the value reaches (the client's grid is already clipped)
            Step::F(Unary::Clip(a, b)) if self.steps.is_empty() && self.within(a, b) => {}
            Step::Affine { mul, add } if self.steps.is_empty() => {
                let n = self.numel();
                self.scale = (0..n).map(|e| at(&self.scale, e) * at(&mul, e)).collect();
                self.offset = (0..n)
                    .map(|e| at(&self.offset, e) * at(&mul, e) + at(&add, e))
                    .collect();
            }
            s => self.steps.push(s),
        }
    }
    /// Whether every real value the integers stand for lies in `a ..= b`.
    fn within(&self, a: f64, b: f64) -> bool {
        (0..self.numel()).all(|e| {
            let (u, v) = (self.real(self.lo as f64, e), self.real(self.hi as f64, e));
            u.min(v) >= a && u.max(v) <= b
        })
    }
    fn real(&self, q: f64, e: usize) -> f64 {
        let x = at(&self.scale, e) * q + at(&self.offset, e);
        self.steps.iter().fold(x, |x, s| s.apply(x, e))
    }
}

#[derive(Clone, Debug)]
enum Q {
    Clear(ArrayD<f64>),
    Enc(Enc),
}

struct Builder<'a> {
    model: &'a OnnxModel,
    opts: PtqOptions,
    b: FunctionBuilder,
    calib: HashMap<String, ArrayD<f64>>,
    layers: Vec<LayerReport>,
    /// The last linear layer built: the output's, when it is returned in parts.
    last_linear: Option<LinearSite>,
}

/// A linear layer's accumulator `x · W` ([`Builder::linear`]), as [`Builder::output_in_parts`]
/// rebuilds it.
struct LinearSite {
    what: String,
    acc: ValueId,
    x: ValueId,
    /// `x`'s range.
    x_lo: i64,
    x_hi: i64,
    /// The integer weights, `k × n` row-major.
    w: Vec<i64>,
    k: usize,
    n: usize,
    signed: bool,
}

/// The worst case of `x · W[rows, :]` (`W` integers, `k × n` row-major; every `x` in `lo ..= hi`):
/// the least and the greatest value any output column reaches.
fn accumulator_range(w: &[i64], n: usize, rows: std::ops::Range<usize>, (lo, hi): (i64, i64)) -> (i128, i128) {
    let (mut amin, mut amax) = (i128::MAX, i128::MIN);
    for o in 0..n {
        let (mut a, mut z) = (0i128, 0i128);
        for r in rows.clone() {
            let wq = i128::from(w[r * n + o]);
            let (p, q) = (wq * i128::from(lo), wq * i128::from(hi));
            a += p.min(q);
            z += p.max(q);
        }
        amin = amin.min(a);
        amax = amax.max(z);
    }
    (amin, amax)
}

fn ir_err(node: &str) -> impl Fn(fhec_ir::Diagnostic) -> OnnxError + '_ {
    move |e| OnnxError::Unsupported(format!("{node}: {}", e.message))
}

/// The part counts an automatic choice of output parts compiles (`output_parts="auto"` in Python,
/// `--output-parts auto` in the CLI), fewest first.
pub const AUTO_OUTPUT_PARTS: [u32; 4] = [1, 2, 4, 8];
/// More parts show the client more of the last layer: the automatic choice takes more only for this
/// share of the estimated time.
pub const AUTO_PARTS_GAIN: f64 = 0.05;

/// Most elementwise products of two encrypted tensors one Mul or MatMul may take (each is two lookups).
pub const MAX_PRODUCT_TERMS: usize = 1 << 16;

/// numpy's broadcast of two shapes (aligned on their last axes), or `None`.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() >= n { s[i + s.len() - n] } else { 1 };
    (0..n)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// For each element of `to` (row-major), the element of `from` that numpy broadcasting reads.
fn broadcast_picks(from: &[usize], to: &[usize]) -> Vec<Option<usize>> {
    let n = to.len();
    let pad = n - from.len();
    let total: usize = to.iter().product();
    (0..total)
        .map(|mut k| {
            let (mut src, mut stride) = (0usize, 1usize);
            for i in (0..n).rev() {
                let idx = k % to[i];
                k /= to[i];
                if i >= pad {
                    let d = from[i - pad];
                    src += if d == 1 { 0 } else { idx } * stride;
                    stride *= d;
                }
            }
            Some(src)
        })
        .collect()
}

/// The input value entry `idx` of a lookup table stands for, over an input type of `size` entries
/// (signed: the upper half are the negative values, as `fhe.mapped_lut` indexes `x mod 2^w`).
pub(crate) fn table_key(idx: usize, size: usize, signed: bool) -> i64 {
    if signed && idx >= size / 2 {
        idx as i64 - size as i64
    } else {
        idx as i64
    }
}

/// The distinct tables of an `fhe.mapped_lut` (flat, in order of first use) and each element's table.
#[derive(Default)]
pub(crate) struct TableSet {
    ids: HashMap<Vec<i64>, usize>,
    pub tables: Vec<i64>,
    pub map: Vec<i64>,
}

impl TableSet {
    /// Adds the next element's table.
    pub fn push(&mut self, t: Vec<i64>) {
        let next = self.ids.len();
        let tables = &mut self.tables;
        let id = *self.ids.entry(t).or_insert_with_key(|t| {
            tables.extend_from_slice(t);
            next
        });
        self.map.push(id as i64);
    }

    pub fn count(&self) -> usize {
        self.ids.len()
    }
}

pub(crate) fn dense(values: Vec<i64>, shape: &[usize]) -> Result<Dense, OnnxError> {
    let t: Tensor = ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| OnnxError::Shape(e.to_string()))?;
    Dense::new(clear_type_for(&t), t).map_err(OnnxError::Unsupported)
}

/// A clear constant broadcast to `shape`, flat (per element).
fn per_element(node: &Node, c: &ArrayD<f64>, shape: &[usize]) -> Result<Vec<f64>, OnnxError> {
    let zeros = ArrayD::<f64>::zeros(IxDyn(shape));
    let b = broadcast(node, &zeros, c, |_, c| c)?;
    if b.shape() != shape {
        return Err(OnnxError::Unsupported(format!(
            "{}: a constant of shape {:?} would change the encrypted tensor's shape {shape:?}",
            node.what(),
            c.shape()
        )));
    }
    Ok(b.iter().copied().collect())
}

impl Builder<'_> {
    /// Applies the pending steps of `x`: rounding to `rounding_bits`, then one lookup per element
    /// to `bits` unsigned integers calibrated on the float values of `x.calib`.
    fn materialise(&mut self, x: Enc, bits: u32, why: &str) -> Result<Enc, OnnxError> {
        let (lo, hi) = self.calibrated(&x)?;
        if let Some((lo, s, levels)) = grid_of(&x) {
            // the value lies on the grid of a QuantizeLinear → DequantizeLinear pair: its integers,
            // whatever `bits` says (lossless)
            return self.materialise_to(x, lo, s, levels, true, why);
        }
        let levels = ((1u64 << bits) - 1) as f64;
        self.materialise_to(x, lo, (hi - lo) / levels, levels, false, why)
    }

    /// The calibration set's range of the float tensor `x` stands for (a constant one widened to 1).
    fn calibrated(&self, x: &Enc) -> Result<(f64, f64), OnnxError> {
        let float = self
            .calib
            .get(&x.calib)
            .ok_or_else(|| OnnxError::Calibration(format!("no calibration values for tensor {:?}", x.calib)))?;
        let (lo, hi) = float
            .iter()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        if lo > hi {
            return Err(OnnxError::Calibration(format!(
                "tensor {:?} has no finite value on the calibration set",
                x.calib
            )));
        }
        Ok((lo, if lo == hi { lo + 1.0 } else { hi }))
    }

    /// [`Self::materialise`] to the integers `0 ..= levels` of the quantiser `lo + s·q`.
    /// `shift`: the lowest reachable integer becomes 0 (a grid given by the graph, whose range may be
    /// wider than what is reached).
    fn materialise_to(
        &mut self,
        x: Enc,
        lo: f64,
        s: f64,
        levels: f64,
        shift: bool,
        why: &str,
    ) -> Result<Enc, OnnxError> {
        // the rounding keeps `rounding_bits` of the values' exact range; the table is indexed as the
        // IR type of its input says (its width and signedness)
        let width = width_for(x.lo as i128, x.hi as i128, x.lo < 0);
        let mut lsbs = width.saturating_sub(self.opts.rounding_bits);
        if self.opts.windows {
            // finer, while every element's table still changes within a window of
            // 2^rounding_bits entries and the rest stays a few bits
            // (never past what a layer's tables may take: a finer rounding is never refused)
            let fits = |kw: u32| kw <= 16 && x.numel().saturating_mul(1 << kw) <= MAX_TABLE_ENTRIES;
            while lsbs > 0
                && width - (lsbs - 1) <= self.opts.rounding_bits + WINDOW_TOP_BITS
                && fits(width - (lsbs - 1) + 1)
                && self.windows_fit(&x, lsbs - 1, lo, s, levels)
            {
                lsbs -= 1;
            }
        }
        let (mut input, mut klo, mut khi) = (x.v, x.lo, x.hi);
        if lsbs > 0 {
            input = self
                .b
                .op(OpKind::Round, &[x.v], &[("lsbs", Attribute::Int(lsbs as i64))])
                .map_err(ir_err(why))?;
            let half = 1i64 << (lsbs - 1);
            klo = (x.lo + half) >> lsbs;
            khi = (x.hi + half) >> lsbs;
        }
        let (kw, signed) = (self.b.ty(input).width(), self.b.ty(input).is_signed());
        let n = x.numel();
        if kw > 16 || n.saturating_mul(1 << kw.min(16)) > MAX_TABLE_ENTRIES {
            return Err(OnnxError::Unsupported(format!(
                "{why}: {n} lookups over {kw}-bit inputs ({} table entries at most): use fewer rounding_threshold_bits",
                MAX_TABLE_ENTRIES
            )));
        }
        let size = 1usize << kw;
        let mut set = TableSet::default();
        let (mut vmin, mut vmax) = (i64::MAX, i64::MIN);
        for e in 0..n {
            let t: Vec<i64> = (0..size)
                .map(|idx| {
                    let k = table_key(idx, size, signed);
                    let y = x.real((k as f64) * (1u64 << lsbs) as f64, e);
                    if y.is_nan() {
                        0
                    } else {
                        ((y - lo) / s).round_ties_even().clamp(0.0, levels) as i64
                    }
                })
                .collect();
            for k in klo..=khi {
                let idx = k.rem_euclid(size as i64) as usize;
                vmin = vmin.min(t[idx]);
                vmax = vmax.max(t[idx]);
            }
            set.push(t);
        }
        let count = set.count();
        let TableSet { mut tables, map, .. } = set;
        let mut lo = lo;
        if shift && vmin > 0 && vmin <= vmax {
            // the grid's lowest reachable level becomes 0 (unreachable entries saturate at 0)
            tables.iter_mut().for_each(|v| *v = (*v - vmin).max(0));
            lo += vmin as f64 * s;
            vmax -= vmin;
            vmin = 0;
        }
        let y = self
            .b
            .op(
                OpKind::MappedLut,
                &[input],
                &[
                    ("map", Attribute::Dense(dense(map, &[1, n])?)),
                    ("tables", Attribute::Dense(dense(tables, &[count, size])?)),
                ],
            )
            .map_err(ir_err(why))?;
        self.layers.push(LayerReport {
            node: why.to_string(),
            kind: "lookup".into(),
            elements: n,
            range: (klo, khi),
            bits: kw,
            rounded_lsbs: lsbs,
            tables: count,
        });
        Ok(Enc {
            v: y,
            shape: x.shape,
            lo: vmin.min(vmax),
            hi: vmax,
            scale: vec![s],
            offset: vec![lo],
            steps: Vec::new(),
            calib: x.calib,
        })
    }

    /// Whether, rounded by `lsbs` bits, every element's table over its reachable inputs is
    /// constant outside a window of at most `2^rounding_bits` entries (the first entry off the
    /// low run to the last off the high run, and one more).
    fn windows_fit(&self, x: &Enc, lsbs: u32, lo: f64, s: f64, levels: f64) -> bool {
        let (klo, khi) = if lsbs == 0 {
            (x.lo, x.hi)
        } else {
            let half = 1i64 << (lsbs - 1);
            ((x.lo + half) >> lsbs, (x.hi + half) >> lsbs)
        };
        let limit = 1i64 << self.opts.rounding_bits;
        (0..x.numel()).all(|e| {
            let y = |k: i64| {
                let v = x.real((k as f64) * (1u64 << lsbs) as f64, e);
                if v.is_nan() {
                    0
                } else {
                    ((v - lo) / s).round_ties_even().clamp(0.0, levels) as i64
                }
            };
            let (ylo, yhi) = (y(klo), y(khi));
            let Some(a) = (klo..=khi).find(|&k| y(k) != ylo) else {
                return true;
            };
            let b = (klo..=khi).rev().find(|&k| y(k) != yhi).unwrap_or(a);
            b - a + 2 <= limit
        })
    }

    /// The integer weights of a layer as a clear constant, and the element type and width of its
    /// accumulator over `x` (exact range `acc`), refused when wider than the IR allows.
    fn weights(
        &mut self,
        what: &str,
        values: Vec<i64>,
        shape: &[usize],
        x: &Enc,
        (amin, amax): (i64, i64),
    ) -> Result<(ValueId, ElemType, u32), OnnxError> {
        let wt: Tensor = ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| OnnxError::Shape(e.to_string()))?;
        let wty = clear_type_for(&wt);
        let signed = wty.is_signed() || self.b.ty(x.v).is_signed();
        let width = width_for(amin as i128, amax as i128, signed);
        if width > MAX_ENCRYPTED_WIDTH {
            return Err(OnnxError::Unsupported(format!(
                "{what}: the accumulator needs {width} bits (more than {MAX_ENCRYPTED_WIDTH}); use fewer bits for \
                 weights or activations"
            )));
        }
        let dense = Dense::new(wty.clone(), wt).map_err(OnnxError::Unsupported)?;
        let wv = self
            .b
            .op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(dense))], Some(wty))
            .map_err(ir_err(what))?;
        let elem = if signed {
            ElemType::ESInt(width)
        } else {
            ElemType::EInt(width)
        };
        Ok((wv, elem, width))
    }

    /// Whether `x`'s integers are an accumulator wider than activations and inputs plus a small sum
    /// (a pooling of up to 8 values): a weighted layer requantises them first.
    fn too_wide(&self, x: &Enc) -> bool {
        let w = width_for(x.lo as i128, x.hi as i128, x.lo < 0);
        w > self.opts.n_bits.op_inputs.max(self.opts.n_bits.model_inputs) + 3
    }

    /// `x · W + bias` (W: `[K, N]` float, the input's scale and offset folded in), quantised per
    /// output channel.
    fn linear(&mut self, node: &Node, x: Enc, w: &ArrayD<f64>, bias: &[f64], out: &str) -> Result<Enc, OnnxError> {
        let what = node.what();
        let x = if x.steps.is_empty() && !self.too_wide(&x) {
            x
        } else {
            let bits = self.opts.n_bits.op_inputs;
            self.materialise(x, bits, &what)?
        };
        let (k, n) = (w.shape()[0], w.shape()[1]);
        if x.shape.len() != 2 || x.shape[0] != 1 || x.shape[1] != k {
            return Err(OnnxError::Unsupported(format!(
                "{what}: the encrypted operand has shape {:?}, expected [batch, {k}] (fhec reads linear layers on \
                 rank-2 activations in this version)",
                x.shape
            )));
        }
        let mut folded = vec![0f64; k * n];
        let mut b = bias.to_vec();
        for j in 0..k {
            let (sj, oj) = (at(&x.scale, j), at(&x.offset, j));
            for o in 0..n {
                let wv = w[[j, o]];
                folded[j * n + o] = wv * sj;
                b[o] += wv * oj;
            }
        }
        let q = layer_weights(&folded, k, n, self.opts.n_bits.op_weights)
            .map_err(|e| OnnxError::Options(format!("{what}: {e}")))?;
        let (amin, amax) = accumulator_range(&q.values, n, 0..k, (x.lo, x.hi));
        // (in i128: hostile weights cannot overflow it; wider than the IR allows is refused below)
        let to_i64 = |v: i128| v.clamp(i64::MIN.into(), i64::MAX.into()) as i64;
        let (amin, amax) = (to_i64(amin), to_i64(amax));
        let (wv, elem, width) = self.weights(&what, q.values.clone(), &[k, n], &x, (amin, amax))?;
        let acc = self
            .b
            .op_with_type(OpKind::Matmul, &[x.v, wv], &[], Some(Type::new(elem, vec![1, n])))
            .map_err(ir_err(&what))?;
        if self.opts.output_parts > 1 {
            // kept only where the output may be rebuilt in parts
            self.last_linear = Some(LinearSite {
                what: what.clone(),
                acc,
                x: x.v,
                x_lo: x.lo,
                x_hi: x.hi,
                w: q.values.clone(),
                k,
                n,
                signed: elem.is_signed(),
            });
        }
        self.layers.push(LayerReport {
            node: what,
            kind: "accumulator".into(),
            elements: n,
            range: (amin, amax),
            bits: width,
            rounded_lsbs: 0,
            tables: 0,
        });
        Ok(Enc {
            v: acc,
            shape: vec![1, n],
            lo: amin,
            hi: amax,
            scale: q.scales,
            offset: b,
            steps: Vec::new(),
            calib: out.to_string(),
        })
    }

    /// The accumulator of `site` as `parts` partial sums, each over a run of the layer's input rows
    /// (as even as can be), concatenated: `[1, parts · n]`, part `j`'s values at `j·n ..`. One
    /// width for every part: the widest part's worst case.
    fn output_in_parts(&mut self, site: &LinearSite, parts: u32) -> Result<ValueId, OnnxError> {
        let (g, k, n) = (parts as usize, site.k, site.n);
        let what = format!("{} (the output in {g} parts)", site.what);
        let bounds: Vec<usize> = (0..=g).map(|j| j * k / g).collect();
        let (mut plo, mut phi) = (i128::MAX, i128::MIN);
        for j in 0..g {
            let (lo, hi) = accumulator_range(&site.w, n, bounds[j]..bounds[j + 1], (site.x_lo, site.x_hi));
            plo = plo.min(lo);
            phi = phi.max(hi);
        }
        let width = width_for(plo, phi, site.signed);
        let elem = if site.signed {
            ElemType::ESInt(width)
        } else {
            ElemType::EInt(width)
        };
        let mut sums = Vec::with_capacity(g);
        for j in 0..g {
            let (a, b) = (bounds[j], bounds[j + 1]);
            let xs = self
                .b
                .op(
                    OpKind::Slice,
                    &[site.x],
                    &[
                        ("starts", Attribute::int_array(&[0, a as i64])),
                        ("ends", Attribute::int_array(&[1, b as i64])),
                        ("steps", Attribute::int_array(&[1, 1])),
                    ],
                )
                .map_err(ir_err(&what))?;
            let wt: Tensor = ArrayD::from_shape_vec(IxDyn(&[b - a, n]), site.w[a * n..b * n].to_vec())
                .map_err(|e| OnnxError::Shape(e.to_string()))?;
            let mut wty = clear_type_for(&wt);
            if site.signed && !wty.is_signed() {
                // a run of non-negative weights in a signed layer: the part's sum stays signed, as
                // the whole (a signed constant of one more bit)
                wty = wty.with_elem(ElemType::Int((wty.width() + 1).min(64)));
            }
            let dense = Dense::new(wty.clone(), wt).map_err(OnnxError::Unsupported)?;
            let wv = self
                .b
                .op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(dense))], Some(wty))
                .map_err(ir_err(&what))?;
            let m = self
                .b
                .op_with_type(OpKind::Matmul, &[xs, wv], &[], Some(Type::new(elem, vec![1, n])))
                .map_err(ir_err(&what))?;
            sums.push(m);
        }
        let y = self
            .b
            .op(OpKind::Concat, &sums, &[("axis", Attribute::Int(1))])
            .map_err(ir_err(&what))?;
        // the whole accumulator is not computed any more: its report row gives way to the parts'
        if let Some(i) = self
            .layers
            .iter()
            .rposition(|l| l.kind == "accumulator" && l.node == site.what)
        {
            self.layers.remove(i);
        }
        self.layers.push(LayerReport {
            node: what,
            kind: "output parts".into(),
            elements: g * n,
            range: (plo as i64, phi as i64),
            bits: width,
            rounded_lsbs: 0,
            tables: 0,
        });
        Ok(y)
    }

    /// `x` with integers and one scale per channel (axis 1 of `channels`): as it is when it has no
    /// pending step and its scales are uniform per channel (offsets may differ per element), else
    /// materialised.
    fn channelwise(&mut self, x: Enc, channels: usize, uniform_offset: bool, why: &str) -> Result<Enc, OnnxError> {
        let n = x.numel();
        let inner = n / channels.max(1);
        let uniform = |v: &[f64]| {
            v.len() == 1 || (0..n).all(|e| at(v, e).to_bits() == at(v, (e / inner.max(1)) * inner).to_bits())
        };
        if x.steps.is_empty() && uniform(&x.scale) && (!uniform_offset || uniform(&x.offset)) {
            return Ok(x);
        }
        let bits = self.opts.n_bits.op_inputs;
        self.materialise(x, bits, why)
    }

    /// Reshapes the flat IR value of `x` to its ONNX shape read as `[1, C, H, W]`.
    fn nchw_view(&mut self, x: &Enc, g: &Geometry, why: &str) -> Result<ValueId, OnnxError> {
        let ty = self.b.ty(x.v).with_shape(g.x.to_vec());
        self.b
            .op_with_type(OpKind::Reshape, &[x.v], &[], Some(ty))
            .map_err(ir_err(why))
    }

    /// A window op (`fhe.conv2d` with `weights`, or `fhe.maxpool2d`) on `x` read as NCHW, its result
    /// flattened back: `elem` the accumulator's element type.
    #[allow(clippy::too_many_arguments)]
    fn window_op(
        &mut self,
        kind: OpKind,
        x: &Enc,
        weights: Option<ValueId>,
        g: &Geometry,
        group: Option<usize>,
        channels: usize,
        elem: ElemType,
        why: &str,
    ) -> Result<ValueId, OnnxError> {
        let xv = self.nchw_view(x, g, why)?;
        let pair = |v: [usize; 2]| Attribute::Array(v.iter().map(|&d| Attribute::Int(d as i64)).collect());
        let mut attrs = vec![
            ("strides", pair(g.strides)),
            (
                "pads",
                Attribute::Array(g.pads.iter().map(|&d| Attribute::Int(d as i64)).collect()),
            ),
            ("dilations", pair(g.dilations)),
        ];
        if kind == OpKind::Maxpool2d {
            attrs.push(("kernel_shape", pair(g.kernel)));
        }
        if let Some(gr) = group {
            attrs.push(("group", Attribute::Int(gr as i64)));
        }
        let operands: Vec<ValueId> = std::iter::once(xv).chain(weights).collect();
        let out4 = vec![1, channels, g.out[0], g.out[1]];
        let y = self
            .b
            .op_with_type(kind, &operands, &attrs, Some(Type::new(elem, out4)))
            .map_err(ir_err(why))?;
        let flat = channels * g.out[0] * g.out[1];
        self.b
            .op_with_type(OpKind::Reshape, &[y], &[], Some(Type::new(elem, vec![1, flat])))
            .map_err(ir_err(why))
    }

    /// ONNX `Conv` (and average pooling, a convolution of ones per channel): `w` `[F, C/group, k…]`
    /// float, folded with the input's per-channel scales and quantised per filter; the input's
    /// offsets and the bias go to the output's offsets, per element (padding reads no offset).
    /// `divisors`: average pooling's per-output divisor (scales and offsets divided by it).
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        node: &Node,
        x: Enc,
        w: &ArrayD<f64>,
        bias: Option<&ArrayD<f64>>,
        g: &Geometry,
        group: usize,
        quantise: bool,
        divisors: Option<&[usize]>,
        out: &str,
    ) -> Result<Enc, OnnxError> {
        let what = node.what();
        let c = g.x[1];
        // a weighted layer reads activation integers: an accumulator (a linear layer right after
        // another, or after a pooling) is requantised first, else accumulators would compound
        let x = if quantise && self.too_wide(&x) {
            let bits = self.opts.n_bits.op_inputs;
            self.materialise(x, bits, &what)?
        } else {
            x
        };
        let x = self.channelwise(x, c, false, &what)?;
        let (f, cg) = (w.shape()[0], w.shape()[1]);
        let (kh, kw) = (g.kernel[0], g.kernel[1]);
        let kk = kh * kw;
        let inner_in = g.x[2] * g.x[3];
        let w4: Vec<f64> = w.iter().copied().collect(); // [F, cg, kh, kw] row-major
        let bias: Vec<f64> = bias
            .map(|b| b.iter().copied().collect())
            .unwrap_or_else(|| vec![0.0; f]);
        if bias.len() != f {
            return Err(OnnxError::Shape(format!(
                "{what}: a bias of {} values for {f} filters",
                bias.len()
            )));
        }
        let fpg = f / group;
        let sc = |ch: usize| at(&x.scale, ch * inner_in);
        let kdim = cg * kk;
        let (wq, scales) = if quantise {
            let mut folded = vec![0f64; kdim * f];
            for fo in 0..f {
                let c0 = (fo / fpg) * cg;
                for r in 0..kdim {
                    folded[r * f + fo] = w4[fo * kdim + r] * sc(c0 + r / kk);
                }
            }
            let q = layer_weights(&folded, kdim, f, self.opts.n_bits.op_weights)
                .map_err(|e| OnnxError::Options(format!("{what}: {e}")))?;
            let wq: Vec<i64> = (0..f * kdim).map(|i| q.get(i % kdim, i / kdim)).collect();
            (wq, q.scales)
        } else {
            // exact integer weights (pooling's ones); the scale is the input channel's
            let wq: Vec<i64> = w4.iter().map(|&v| v as i64).collect();
            let scales = (0..f).map(|fo| sc((fo / fpg) * cg)).collect();
            (wq, scales)
        };
        // the accumulator's exact range: every tap inside, or some in the padding (zero)
        let padded = g.pads.iter().any(|&p| p > 0);
        let (xlo, xhi) = if padded {
            (x.lo.min(0), x.hi.max(0))
        } else {
            (x.lo, x.hi)
        };
        let (mut amin, mut amax) = (i64::MAX, i64::MIN);
        for fo in 0..f {
            let (mut lo, mut hi) = (0i64, 0i64);
            for &wv in &wq[fo * kdim..(fo + 1) * kdim] {
                let (a, b) = (wv * xlo, wv * xhi);
                lo += a.min(b);
                hi += a.max(b);
            }
            amin = amin.min(lo);
            amax = amax.max(hi);
        }
        let (wv, elem, width) = self.weights(&what, wq.clone(), &[f, cg, kh, kw], &x, (amin, amax))?;
        let acc = self.window_op(OpKind::Conv2d, &x, Some(wv), g, Some(group), f, elem, &what)?;
        // per output element: scale of its filter; offset = bias + Σ w·offset over the taps inside
        let (oh, ow) = (g.out[0], g.out[1]);
        let n_out = f * oh * ow;
        let mut scale = Vec::with_capacity(n_out);
        let mut offset = Vec::with_capacity(n_out);
        for fo in 0..f {
            let c0 = (fo / fpg) * cg;
            for y in 0..oh {
                for xx in 0..ow {
                    let mut o = bias[fo];
                    for ci in 0..cg {
                        for i in 0..kh {
                            for j in 0..kw {
                                if let Some((yy, xi)) = g.tap(y, xx, i, j) {
                                    let e = (c0 + ci) * inner_in + yy * g.x[3] + xi;
                                    o += w4[fo * kdim + ci * kk + i * kw + j] * at(&x.offset, e);
                                }
                            }
                        }
                    }
                    let d = divisors.map_or(1.0, |d| d[(fo * oh + y) * ow + xx] as f64);
                    scale.push(scales[fo] / d);
                    offset.push(o / d);
                }
            }
        }
        self.layers.push(LayerReport {
            node: what,
            kind: "accumulator".into(),
            elements: n_out,
            range: (amin, amax),
            bits: width,
            rounded_lsbs: 0,
            tables: 0,
        });
        Ok(Enc {
            v: acc,
            shape: {
                let mut shape = g.out_shape(f);
                shape[0] = 1;
                shape
            },
            lo: amin,
            hi: amax,
            scale,
            offset,
            steps: Vec::new(),
            calib: out.to_string(),
        })
    }

    /// Data movement (Transpose, Slice, Gather, Pad, Concat, Expand) of encrypted tensors: the ONNX op
    /// runs on index tensors (each encrypted element's flat index + 1, 0 for constants) with a batch
    /// of 2, which says which element each result reads and that samples stay apart; the program
    /// gathers them (`fhe.gather`, free). Pending functions move with their elements when one tensor
    /// moves alone; otherwise they are applied first.
    fn movement(
        &mut self,
        node: &Node,
        operands: &[Option<Q>],
        clear_get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
        out: &str,
    ) -> Result<Enc, OnnxError> {
        let what = node.what();
        let is_data = |i: usize| node.op == "Concat" || i == 0;
        for (i, q) in operands.iter().enumerate() {
            if !is_data(i) && matches!(q, Some(Q::Enc(_))) {
                return Err(OnnxError::Unsupported(format!(
                    "{what}: operand {i} must be a constant"
                )));
            }
        }
        let n_enc = operands.iter().filter(|q| matches!(q, Some(Q::Enc(_)))).count();
        let clear_data = (0..operands.len()).any(|i| is_data(i) && matches!(operands[i], Some(Q::Clear(_))));
        // the index evaluation of Pad reads a pad value of 0 (constants are told apart by index 0)
        let pad_value = if node.op == "Pad" { node.input(2) } else { None };
        let mut encs: Vec<(usize, Enc)> = Vec::with_capacity(n_enc);
        for (i, q) in operands.iter().enumerate() {
            if let Some(Q::Enc(e)) = q {
                let e = if !e.steps.is_empty() && (n_enc > 1 || clear_data || node.op == "Pad") {
                    let bits = self.opts.n_bits.op_inputs;
                    self.materialise(e.clone(), bits, &what)?
                } else {
                    e.clone()
                };
                encs.push((i, e));
            }
        }
        let total: usize = encs.iter().map(|(_, e)| e.numel()).sum();
        let mut idx_args: Vec<Option<ArrayD<f64>>> = vec![None; operands.len()];
        let mut val_args: Vec<Option<ArrayD<f64>>> = vec![None; operands.len()];
        let mut base = 0usize;
        for (i, q) in operands.iter().enumerate() {
            match q {
                Some(Q::Enc(_)) => {
                    let e = &encs.iter().find(|(j, _)| *j == i).expect("collected above").1;
                    let n = e.numel();
                    let mut shape2 = e.shape.clone();
                    shape2[0] = 2;
                    let v: Vec<f64> = (0..2 * n)
                        .map(|k| (base + (k % n) + 1 + (k / n) * total) as f64)
                        .collect();
                    idx_args[i] =
                        Some(ArrayD::from_shape_vec(IxDyn(&shape2), v).map_err(|e| OnnxError::Shape(e.to_string()))?);
                    val_args[i] = Some(ArrayD::zeros(IxDyn(&e.shape)));
                    base += n;
                }
                Some(Q::Clear(c)) if is_data(i) => {
                    idx_args[i] = Some(ArrayD::zeros(c.raw_dim()));
                    val_args[i] = Some(c.clone());
                }
                Some(Q::Clear(c)) => {
                    idx_args[i] = Some(c.clone());
                    val_args[i] = Some(c.clone());
                }
                None => {}
            }
        }
        let eval = |args: &[Option<ArrayD<f64>>], zero_pad: bool| -> Result<ArrayD<f64>, OnnxError> {
            let arg = |i: usize| -> Result<ArrayD<f64>, OnnxError> {
                args.get(i)
                    .cloned()
                    .flatten()
                    .ok_or_else(|| OnnxError::Shape(format!("{what}: operand {i} is missing")))
            };
            let get = |name: &str| -> Option<ArrayD<f64>> {
                if zero_pad && pad_value == Some(name) {
                    Some(ndarray::arr0(0.0).into_dyn())
                } else {
                    clear_get(name)
                }
            };
            self.model.eval_node(node, &arg, &get)
        };
        let idx = eval(&idx_args, true)?;
        let vals = eval(&val_args, false)?;
        let per_sample = idx.shape().first() == Some(&2) && {
            let m = idx.len() / 2;
            let flat: Vec<f64> = idx.iter().copied().collect();
            (0..m).all(|k| {
                let (a, b) = (flat[k], flat[m + k]);
                if a == 0.0 {
                    b == 0.0
                } else {
                    b == a + total as f64
                }
            })
        };
        if !per_sample || vals.shape().first() != Some(&1) || vals.len() * 2 != idx.len() {
            return Err(OnnxError::Unsupported(format!(
                "{what}: it moves elements across the batch axis (fhec runs each sample apart)"
            )));
        }
        let m = vals.len();
        let picks: Vec<Option<usize>> = idx.iter().take(m).map(|&v| (v > 0.0).then(|| v as usize - 1)).collect();
        let encs: Vec<Enc> = encs.into_iter().map(|(_, e)| e).collect();
        let shape = vals.shape().to_vec();
        let vals_flat: Vec<f64> = vals.iter().copied().collect();
        self.assemble(&what, encs, &picks, &vals_flat, shape, out)
    }

    /// The tensor of `shape` whose element `k` is element `picks[k]` of the encrypted tensors `encs`
    /// concatenated flat, or the constant `values[k]` (`picks[k]` = `None`): `fhe.concat` (with a
    /// clear zero for constants) and `fhe.gather`, no encrypted work.
    fn assemble(
        &mut self,
        what: &str,
        encs: Vec<Enc>,
        picks: &[Option<usize>],
        values: &[f64],
        shape: Vec<usize>,
        out: &str,
    ) -> Result<Enc, OnnxError> {
        let m = picks.len();
        let total: usize = encs.iter().map(|e| e.numel()).sum();
        let constants = picks.iter().any(|p| p.is_none());
        // one signedness for the concatenation
        let signed = encs.iter().any(|e| self.b.ty(e.v).is_signed());
        let mut flats = Vec::with_capacity(encs.len() + 1);
        for e in &encs {
            let v = if signed && !self.b.ty(e.v).is_signed() {
                self.b.op(OpKind::ToSigned, &[e.v], &[]).map_err(ir_err(what))?
            } else {
                e.v
            };
            flats.push(v);
        }
        if constants {
            let zero: Tensor = ArrayD::zeros(IxDyn(&[1, 1]));
            let ty = Type::new(if signed { ElemType::Int(2) } else { ElemType::UInt(1) }, vec![1, 1]);
            let dense = Dense::new(ty.clone(), zero).map_err(OnnxError::Unsupported)?;
            flats.push(
                self.b
                    .op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(dense))], Some(ty))
                    .map_err(ir_err(what))?,
            );
        }
        let src = if flats.len() == 1 {
            flats[0]
        } else {
            self.b
                .op(OpKind::Concat, &flats, &[("axis", Attribute::Int(1))])
                .map_err(ir_err(what))?
        };
        let gather_idx: Vec<i64> = picks.iter().map(|p| p.map_or(total as i64, |k| k as i64)).collect();
        let v = self
            .b
            .op(
                OpKind::Gather,
                &[src],
                &[
                    ("axis", Attribute::Int(1)),
                    ("indices", Attribute::Dense(dense(gather_idx, &[m])?)),
                ],
            )
            .map_err(ir_err(what))?;
        // per element: the scale and offset of the element read; a constant: its value as the offset,
        // with the scale of an element of its channel (axis 1 of an image or sequence) when there is one
        let (mut scale_all, mut offset_all) = (Vec::with_capacity(total), Vec::with_capacity(total));
        for e in &encs {
            let n = e.numel();
            scale_all.extend((0..n).map(|k| at(&e.scale, k)));
            offset_all.extend((0..n).map(|k| at(&e.offset, k)));
        }
        let channels = shape.get(1).copied().unwrap_or(1).max(1);
        let inner = (m / channels).max(1);
        let mut channel_scale = vec![None; channels];
        for (k, p) in picks.iter().enumerate() {
            if let Some(j) = p {
                channel_scale[(k / inner) % channels].get_or_insert(scale_all[*j]);
            }
        }
        let scale: Vec<f64> = (0..m)
            .map(|k| match picks[k] {
                Some(j) => scale_all[j],
                // (a constant's integer is 0: its scale only matters to ops asking for one per channel,
                // and 0 keeps a linear layer's folded weights for it at 0)
                None if shape.len() > 2 => channel_scale[(k / inner) % channels].unwrap_or(0.0),
                None => 0.0,
            })
            .collect();
        let offset: Vec<f64> = (0..m)
            .map(|k| match picks[k] {
                Some(j) => offset_all[j],
                None => values[k],
            })
            .collect();
        // pending steps: only a lone tensor without constants keeps them (per-element constants moved)
        let steps = if encs.len() == 1 && !constants {
            let remap = |v: &Vec<f64>| -> Vec<f64> {
                if v.len() == 1 {
                    v.clone()
                } else {
                    picks.iter().map(|p| v[p.expect("no constants")]).collect()
                }
            };
            encs[0].steps.iter().map(|s| remap_step(s, &remap)).collect()
        } else {
            Vec::new()
        };
        let lo = encs.iter().map(|e| e.lo).min().unwrap_or(0);
        let hi = encs.iter().map(|e| e.hi).max().unwrap_or(0);
        Ok(Enc {
            v,
            shape,
            lo: if constants { lo.min(0) } else { lo },
            hi: if constants { hi.max(0) } else { hi },
            scale,
            offset,
            steps,
            calib: out.to_string(),
        })
    }

    /// ReduceSum / ReduceMean of an encrypted tensor: a sum (`fhe.sum`, leveled) of integers with
    /// one scale over each reduced group (else materialised first); the mean divides the scale.
    fn reduce(
        &mut self,
        node: &Node,
        x: Enc,
        clear_get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
        out: &str,
    ) -> Result<Enc, OnnxError> {
        let what = node.what();
        let (axes, keep) = reduction(node, x.shape.len(), clear_get)?;
        self.reduce_axes(&what, x, &axes, keep, node.op == "ReduceMean", out)
    }

    /// The sum (or mean) of `x` over `axes`: `fhe.sum` of integers with one scale per reduced group
    /// (else materialised first).
    fn reduce_axes(
        &mut self,
        what: &str,
        x: Enc,
        axes: &[usize],
        keep: bool,
        mean: bool,
        out: &str,
    ) -> Result<Enc, OnnxError> {
        let what = what.to_string();
        // element e's position in the reduced tensor
        let n = x.numel();
        let strides: Vec<usize> = (0..x.shape.len()).map(|a| x.shape[a + 1..].iter().product()).collect();
        let in_shape = x.shape.clone();
        let group_of = |e: usize| -> usize {
            let mut g = 0;
            for a in 0..in_shape.len() {
                if !axes.contains(&a) {
                    g = g * in_shape[a] + (e / strides[a]) % in_shape[a];
                }
            }
            g
        };
        let groups: usize = (0..x.shape.len())
            .filter(|a| !axes.contains(a))
            .map(|a| x.shape[a])
            .product();
        let count = (n / groups.max(1)).max(1);
        let uniform = x.steps.is_empty() && {
            let mut first: Vec<Option<u64>> = vec![None; groups];
            (0..n).all(|e| {
                let b = at(&x.scale, e).to_bits();
                *first[group_of(e)].get_or_insert(b) == b
            })
        };
        let x = if uniform {
            x
        } else {
            let bits = self.opts.n_bits.op_inputs;
            self.materialise(x, bits, &what)?
        };
        let ty = self.b.ty(x.v).with_shape(x.shape.clone());
        let xv = self
            .b
            .op_with_type(OpKind::Reshape, &[x.v], &[], Some(ty))
            .map_err(ir_err(&what))?;
        let axes_attr = Attribute::Array(axes.iter().map(|&a| Attribute::Int(a as i64)).collect());
        let summed = self
            .b
            .op(
                OpKind::Sum,
                &[xv],
                &[("axes", axes_attr), ("keep_dims", Attribute::Bool(keep))],
            )
            .map_err(ir_err(&what))?;
        let rty = self.b.ty(summed).clone();
        let v = self
            .b
            .op_with_type(OpKind::Reshape, &[summed], &[], Some(rty.with_shape(vec![1, groups])))
            .map_err(ir_err(&what))?;
        let div = if mean { count as f64 } else { 1.0 };
        let mut scale = vec![0.0; groups];
        let mut offset = vec![0.0; groups];
        for e in 0..n {
            let g = group_of(e);
            scale[g] = at(&x.scale, e) / div;
            offset[g] += at(&x.offset, e) / div;
        }
        let shape = reduced_shape(&x.shape, axes, keep);
        let (lo, hi) = (x.lo * count as i64, x.hi * count as i64);
        self.layers.push(LayerReport {
            node: what,
            kind: "accumulator".into(),
            elements: groups,
            range: (lo, hi),
            bits: rty.width(),
            rounded_lsbs: 0,
            tables: 0,
        });
        Ok(Enc {
            v,
            shape,
            lo,
            hi,
            scale,
            offset,
            steps: Vec::new(),
            calib: out.to_string(),
        })
    }

    /// ReduceMax of an encrypted tensor: its integers (one positive scale and offset for all, else
    /// materialised) gathered to `[groups, reduced]` and reduced by `fhe.maxpool2d` with a
    /// `[1, reduced]` window (one lookup per comparison).
    fn reduce_max(
        &mut self,
        node: &Node,
        x: Enc,
        clear_get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
        out: &str,
    ) -> Result<Enc, OnnxError> {
        let what = node.what();
        let rank = x.shape.len();
        let (axes, keep) = reduction(node, rank, clear_get)?;
        let uniform = x.steps.is_empty()
            && x.scale.len() == 1
            && x.offset.len() == 1
            && x.scale[0] > 0.0
            && self.b.ty(x.v).width() <= self.opts.n_bits.op_inputs.max(self.opts.rounding_bits);
        let x = if uniform {
            x
        } else {
            let bits = self.opts.n_bits.op_inputs;
            self.materialise(x, bits, &what)?
        };
        let kept: Vec<usize> = (1..rank).filter(|a| !axes.contains(a)).collect();
        let groups: usize = kept.iter().map(|&a| x.shape[a]).product();
        let reduced: usize = axes.iter().map(|&a| x.shape[a]).product();
        if reduced == 0 {
            return Err(OnnxError::Shape(format!("{what}: ReduceMax over an empty axis")));
        }
        let strides: Vec<usize> = (0..rank).map(|a| x.shape[a + 1..].iter().product()).collect();
        // element (g, r): the kept axes' index g and the reduced axes' index r, both row-major
        let flat = |g: usize, r: usize| -> usize {
            let mut e = 0;
            let mut gi = g;
            for &a in kept.iter().rev() {
                e += (gi % x.shape[a]) * strides[a];
                gi /= x.shape[a];
            }
            let mut ri = r;
            for &a in axes.iter().rev() {
                e += (ri % x.shape[a]) * strides[a];
                ri /= x.shape[a];
            }
            e
        };
        let picks: Vec<Option<usize>> = (0..groups)
            .flat_map(|g| (0..reduced).map(move |r| (g, r)))
            .map(|(g, r)| Some(flat(g, r)))
            .collect();
        let zeros = vec![0.0; picks.len()];
        let (s, o) = (x.scale[0], x.offset[0]);
        let (lo, hi) = (x.lo, x.hi);
        let shape = reduced_shape(&x.shape, &axes, keep);
        let grouped = self.assemble(&what, vec![x], &picks, &zeros, vec![1, groups, reduced], out)?;
        let g = Geometry {
            x: [1, groups, 1, reduced],
            one_d: false,
            kernel: [1, reduced],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [0; 4],
            declared_pads: [0; 4],
            out: [1, 1],
        };
        let elem = self.b.ty(grouped.v).elem;
        let v = self.window_op(OpKind::Maxpool2d, &grouped, None, &g, None, groups, elem, &what)?;
        self.layers.push(LayerReport {
            node: what,
            kind: "max".into(),
            elements: groups,
            range: (lo, hi),
            bits: elem.width(),
            rounded_lsbs: 0,
            tables: 0,
        });
        Ok(Enc {
            v,
            shape,
            lo,
            hi,
            scale: vec![s],
            offset: vec![o],
            steps: Vec::new(),
            calib: out.to_string(),
        })
    }

    /// `a ± b` of two encrypted tensors of one shape (residual connections): both are materialised
    /// to one scale (each with its own offset), then added as integers.
    fn add_enc(&mut self, node: &Node, a: Enc, b: Enc, negate_b: bool, out: &str) -> Result<Enc, OnnxError> {
        let what = node.what();
        if a.shape != b.shape {
            return Err(OnnxError::Unsupported(format!(
                "{what}: encrypted operands of shapes {:?} and {:?} (broadcasting between two encrypted tensors is \
                 not supported)",
                a.shape, b.shape
            )));
        }
        let (alo, ahi) = self.calibrated(&a)?;
        let (blo, bhi) = self.calibrated(&b)?;
        let levels = ((1u64 << self.opts.n_bits.op_inputs) - 1) as f64;
        let s = (ahi - alo).max(bhi - blo) / levels;
        let qa = self.materialise_to(a, alo, s, ((ahi - alo) / s).ceil().min(levels), false, &what)?;
        let qb = self.materialise_to(b, blo, s, ((bhi - blo) / s).ceil().min(levels), false, &what)?;
        let kind = if negate_b { OpKind::Sub } else { OpKind::Add };
        let v = self.b.op(kind, &[qa.v, qb.v], &[]).map_err(ir_err(&what))?;
        let (lo, hi) = if negate_b {
            (qa.lo - qb.hi, qa.hi - qb.lo)
        } else {
            (qa.lo + qb.lo, qa.hi + qb.hi)
        };
        let offset = if negate_b { alo - blo } else { alo + blo };
        self.layers.push(LayerReport {
            node: what,
            kind: "accumulator".into(),
            elements: qa.numel(),
            range: (lo, hi),
            bits: self.b.ty(v).width(),
            rounded_lsbs: 0,
            tables: 0,
        });
        Ok(Enc {
            v,
            shape: qa.shape,
            lo,
            hi,
            scale: vec![s],
            offset: vec![offset],
            steps: Vec::new(),
            calib: out.to_string(),
        })
    }

    /// `a · b` of two different encrypted tensors (numpy broadcasting; gating as in GLU or
    /// squeeze-and-excitation blocks): each is materialised to `op_inputs`-bit integers `q` on a grid
    /// aligned to 0 (`real = s·(q + z)`, `z` an integer), the smaller one broadcast by data movement,
    /// then `(qa + za)·(qb + zb) = qa·qb + zb·qa + za·qb + za·zb`: one `fhe.mul_eint` of the narrow
    /// integers (two lookups of `op_inputs + 1` bits per element) and leveled terms. The product is an
    /// accumulator at scale `sa·sb`, exact on every input.
    fn mul_enc(&mut self, node: &Node, a: Enc, b: Enc, out: &str) -> Result<Enc, OnnxError> {
        let what = node.what();
        // both carry the batch axis first: operands of different ranks would broadcast it against
        // another axis
        if a.shape.len() != b.shape.len() {
            return Err(OnnxError::Unsupported(format!(
                "{what}: a product of two encrypted tensors of ranks {} and {} (give them one rank)",
                a.shape.len(),
                b.shape.len()
            )));
        }
        if self.opts.n_bits.op_inputs < 2 {
            return Err(OnnxError::Unsupported(format!(
                "{what}: a product of two encrypted tensors needs op_inputs of at least 2 bits"
            )));
        }
        let shape = broadcast_shape(&a.shape, &b.shape).ok_or_else(|| {
            OnnxError::Unsupported(format!(
                "{what}: encrypted operands of shapes {:?} and {:?} do not broadcast",
                a.shape, b.shape
            ))
        })?;
        let products = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if products.is_none_or(|p| p > MAX_PRODUCT_TERMS) {
            return Err(OnnxError::Unsupported(format!(
                "{what}: a product of two encrypted tensors of shape {shape:?} (at most {MAX_PRODUCT_TERMS} elements)"
            )));
        }
        let bits = self.opts.n_bits.op_inputs;
        let levels = ((1u64 << bits) - 1) as f64;
        // one level of room: the grid's first point moves down to a multiple of the step
        let room = ((1u64 << bits) - 2).max(1) as f64;
        let mut grids = Vec::with_capacity(2);
        for x in [a, b] {
            let (lo, hi) = self.calibrated(&x)?;
            let s = (hi - lo) / room;
            let z = (lo / s).floor();
            if !(s > 0.0 && s.is_finite()) || z.abs() > (1u64 << 24) as f64 {
                return Err(OnnxError::Calibration(format!(
                    "{what}: an operand's calibrated range {lo} ..= {hi} is too narrow for its offset"
                )));
            }
            let q = self.materialise_to(x, z * s, s, levels, false, &what)?;
            // broadcast by data movement (after the lookups: one per element of the operand)
            let q = if q.shape == shape {
                q
            } else {
                let picks = broadcast_picks(&q.shape, &shape);
                let zeros = vec![0.0; picks.len()];
                let (lo, hi) = (q.lo, q.hi);
                let mut e = self.assemble(&what, vec![q], &picks, &zeros, shape.clone(), out)?;
                (e.lo, e.hi) = (lo, hi);
                e
            };
            grids.push((q, s, z as i64));
        }
        let (qb, sb, zb) = grids.pop().expect("two operands");
        let (qa, sa, za) = grids.pop().expect("two operands");
        let n: usize = shape.iter().product();
        // the type of values in lo ..= hi, signed as the IR's rules make the op's result
        let elem = |lo: i128, hi: i128, signed: bool| -> Result<ElemType, OnnxError> {
            let w = width_for(if signed { lo.min(-1) } else { lo }, hi, signed);
            if w > MAX_ENCRYPTED_WIDTH {
                return Err(OnnxError::Unsupported(format!(
                    "{what}: the product takes {lo} ..= {hi}, {w} bits (at most {MAX_ENCRYPTED_WIDTH})"
                )));
            }
            Ok(if signed { ElemType::ESInt(w) } else { ElemType::EInt(w) })
        };
        let corners = |a: (i128, i128), b: (i128, i128)| {
            let p = [a.0 * b.0, a.0 * b.1, a.1 * b.0, a.1 * b.1];
            (p.into_iter().min().unwrap_or(0), p.into_iter().max().unwrap_or(0))
        };
        let ra = (qa.lo as i128, qa.hi as i128);
        let rb = (qb.lo as i128, qb.hi as i128);
        let mut range = corners(ra, rb);
        let signed = self.b.ty(qa.v).is_signed() || self.b.ty(qb.v).is_signed();
        let mut v = self
            .b
            .op_with_type(
                OpKind::MulEint,
                &[qa.v, qb.v],
                &[],
                Some(Type::new(elem(range.0, range.1, signed)?, vec![1, n])),
            )
            .map_err(ir_err(&what))?;
        // + zb·qa + za·qb + za·zb (leveled), each sum declared by interval arithmetic
        for (x, r, c) in [(qa.v, ra, zb), (qb.v, rb, za)] {
            if c == 0 {
                continue;
            }
            let cv = self.scalar(c, &what)?;
            let term = corners(r, (c as i128, c as i128));
            let signed = self.b.ty(x).is_signed() || self.b.ty(cv).is_signed();
            let t = self
                .b
                .op_with_type(
                    OpKind::Mul,
                    &[x, cv],
                    &[],
                    Some(Type::new(elem(term.0, term.1, signed)?, vec![1, n])),
                )
                .map_err(ir_err(&what))?;
            range = (range.0 + term.0, range.1 + term.1);
            let signed = self.b.ty(v).is_signed() || self.b.ty(t).is_signed();
            let ty = elem(range.0, range.1, signed)?;
            v = self
                .b
                .op_with_type(OpKind::Add, &[v, t], &[], Some(Type::new(ty, vec![1, n])))
                .map_err(ir_err(&what))?;
        }
        // the exact range: (qa + za)·(qb + zb) over the two ranges
        let exact = corners(
            (ra.0 + za as i128, ra.1 + za as i128),
            (rb.0 + zb as i128, rb.1 + zb as i128),
        );
        let zz = za as i128 * zb as i128;
        if zz != 0 {
            let cv = self.scalar(zz as i64, &what)?;
            let signed = self.b.ty(v).is_signed() || self.b.ty(cv).is_signed();
            let ty = elem(exact.0, exact.1, signed)?;
            v = self
                .b
                .op_with_type(OpKind::Add, &[v, cv], &[], Some(Type::new(ty, vec![1, n])))
                .map_err(ir_err(&what))?;
        }
        let (lo, hi) = (exact.0 as i64, exact.1 as i64);
        self.layers.push(LayerReport {
            node: what,
            kind: "product".into(),
            elements: n,
            range: (lo, hi),
            bits: self.b.ty(v).width(),
            rounded_lsbs: 0,
            tables: 0,
        });
        Ok(Enc {
            v,
            shape,
            lo,
            hi,
            scale: vec![sa * sb],
            offset: vec![0.0],
            steps: Vec::new(),
            calib: out.to_string(),
        })
    }

    /// `a @ b` of two encrypted tensors, matrices per sample (`[1, …, m, k] @ [1, …, k, n]`, leading axes
    /// broadcast; attention's `Q·Kᵀ`): the product of `a` as `[…, m, k, 1]` and `b` as `[…, 1, k, n]`
    /// ([`Self::mul_enc`]: one product per `(i, j, l)`), summed over `k` (`fhe.sum`, leveled).
    fn matmul_enc(&mut self, node: &Node, mut a: Enc, mut b: Enc, out: &str) -> Result<Enc, OnnxError> {
        let what = node.what();
        let (ra, rb) = (a.shape.len(), b.shape.len());
        if ra < 3 || rb < 3 || a.shape[ra - 1] != b.shape[rb - 2] {
            return Err(OnnxError::Unsupported(format!(
                "{what}: a product of two encrypted tensors of shapes {:?} and {:?}: both must be matrices per \
                 sample ([batch, …, m, k] and [batch, …, k, n])",
                a.shape, b.shape
            )));
        }
        let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
        if m.saturating_mul(k).saturating_mul(n) > MAX_PRODUCT_TERMS {
            return Err(OnnxError::Unsupported(format!(
                "{what}: {m}×{k} @ {k}×{n} of two encrypted tensors is {} products (at most {MAX_PRODUCT_TERMS})",
                m.saturating_mul(k).saturating_mul(n)
            )));
        }
        a.shape.push(1);
        b.shape.insert(rb - 2, 1);
        let p = self.mul_enc(node, a, b, out)?;
        let axis = p.shape.len() - 2;
        self.reduce_axes(&what, p, &[axis], false, false, out)
    }

    /// A clear scalar constant.
    fn scalar(&mut self, c: i64, what: &str) -> Result<ValueId, OnnxError> {
        let d = dense(vec![c], &[1])?;
        let ty = d.ty.clone();
        self.b
            .op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(d))], Some(ty))
            .map_err(ir_err(what))
    }

    /// ONNX pooling: averages as a convolution of ones per channel (leveled, exact); maxima with
    /// `fhe.maxpool2d` on integers of one positive scale and offset per channel.
    fn pool(&mut self, node: &Node, x: Enc, out: &str) -> Result<Enc, OnnxError> {
        let what = node.what();
        let (kind, g) = pool_of(node, &x.shape)?;
        let c = g.x[1];
        match kind {
            Pool::Average {
                count_include_pad,
                full_kernel,
            } => {
                let ones = ArrayD::from_elem(IxDyn(&[c, 1, g.kernel[0], g.kernel[1]]), 1.0);
                let mut divisors = Vec::with_capacity(c * g.out[0] * g.out[1]);
                for _ in 0..c {
                    for oh in 0..g.out[0] {
                        for ow in 0..g.out[1] {
                            let d = divisor(&g, count_include_pad, full_kernel, oh, ow);
                            if d == 0 {
                                return Err(OnnxError::Shape(format!(
                                    "{what}: window ({oh}, {ow}) covers only padding"
                                )));
                            }
                            divisors.push(d);
                        }
                    }
                }
                self.conv(node, x, &ones, None, &g, c, false, Some(&divisors), out)
            }
            Pool::Max => {
                // the maximum commutes with q ↦ s·q + o for one s > 0 and one o per channel; a wide
                // accumulator is materialised first (each comparison is a lookup on its difference)
                let inner = g.x[2] * g.x[3];
                let x = self.channelwise(x, c, true, &what)?;
                let narrow = self.b.ty(x.v).width() <= self.opts.n_bits.op_inputs.max(self.opts.rounding_bits);
                let x = if narrow && (0..c).all(|ch| at(&x.scale, ch * inner) > 0.0) {
                    x
                } else {
                    let bits = self.opts.n_bits.op_inputs;
                    self.materialise(x, bits, &what)?
                };
                let elem = self.b.ty(x.v).elem;
                let y = self.window_op(OpKind::Maxpool2d, &x, None, &g, None, c, elem, &what)?;
                let n_out = c * g.out[0] * g.out[1];
                let per = g.out[0] * g.out[1];
                let scale = (0..n_out).map(|e| at(&x.scale, (e / per) * inner)).collect();
                let offset = (0..n_out).map(|e| at(&x.offset, (e / per) * inner)).collect();
                self.layers.push(LayerReport {
                    node: what,
                    kind: "max".into(),
                    elements: n_out,
                    range: (x.lo, x.hi),
                    bits: self.b.ty(x.v).width(),
                    rounded_lsbs: 0,
                    tables: 0,
                });
                let mut shape = g.out_shape(c);
                shape[0] = 1;
                Ok(Enc {
                    v: y,
                    shape,
                    lo: x.lo,
                    hi: x.hi,
                    scale,
                    offset,
                    steps: Vec::new(),
                    calib: out.to_string(),
                })
            }
        }
    }
}

impl OnnxModel {
    /// Quantises the network after training: `calibration` is a batch of inputs (first axis the
    /// samples) run through the float reference to calibrate the activations' quantisers.
    pub fn quantize(&self, calibration: &ArrayD<f64>, opts: &PtqOptions) -> Result<QuantizedNetwork, OnnxError> {
        opts.n_bits.check()?;
        if !(1..=16).contains(&opts.rounding_bits) {
            return Err(OnnxError::Options(format!(
                "rounding_threshold_bits must be in 1..=16, got {}",
                opts.rounding_bits
            )));
        }
        if !(1..=MAX_OUTPUT_PARTS).contains(&opts.output_parts) {
            return Err(OnnxError::Options(format!(
                "output_parts must be in 1..={MAX_OUTPUT_PARTS}, got {}",
                opts.output_parts
            )));
        }
        if self.inputs.len() != 1 || self.outputs.len() != 1 {
            return Err(OnnxError::Unsupported(format!(
                "networks of one input and one output are supported; this one has {} inputs and {} outputs",
                self.inputs.len(),
                self.outputs.len()
            )));
        }
        if calibration.ndim() == 0 || calibration.shape()[0] == 0 {
            return Err(OnnxError::Calibration("the calibration set is empty".into()));
        }
        if let Some(v) = calibration.iter().find(|v| !v.is_finite()) {
            return Err(OnnxError::Calibration(format!(
                "the calibration set holds {v}: missing or infinite values are not supported"
            )));
        }
        let calib = self.eval_all(std::slice::from_ref(calibration))?;
        let input_shape: Vec<usize> = calibration.shape()[1..].to_vec();
        let features: usize = input_shape.iter().product();
        let rows: Vec<Vec<f64>> = calibration
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((calibration.shape()[0], features))
            .map_err(|e| OnnxError::Shape(e.to_string()))?
            .outer_iter()
            .map(|r| r.to_vec())
            .collect();
        let mut n_in = opts.n_bits.model_inputs;
        let mut quantizer =
            InputQuantizer::calibrate(&rows, features, n_in).map_err(|e| OnnxError::Calibration(e.to_string()))?;
        if input_shape.len() >= 2 {
            // images and sequences: one quantiser for the whole tensor, so that a convolution's
            // shared weights fold its scale whatever the layout (NCHW, or NHWC behind a Transpose)
            one_range(&mut quantizer, &rows);
        }
        if let Some(q) = self.input_qdq(&input_shape)? {
            // a QDQ graph quantises its input itself: the client uses that grid (its bits)
            let levels = q.hi - q.lo;
            n_in = (levels as u64 + 1).next_power_of_two().trailing_zeros().max(1);
            let (s, z) = (q.scale[0], q.zero[0]);
            quantizer = InputQuantizer {
                n_bits: n_in,
                lo: vec![(q.lo - z) * s; features],
                scale: vec![s; features],
                edges: None,
            };
        }
        let mut b = FunctionBuilder::new("main");
        let max_q = (1i64 << n_in) - 1;
        let x = b.arg_with_range("x", Type::new(ElemType::EInt(n_in), vec![1, features]), 0, max_q);
        let mut shape = vec![1];
        shape.extend_from_slice(&input_shape);
        let gi = &self.inputs[0];
        let mut values: HashMap<String, Q> = HashMap::new();
        values.insert(
            gi.name.clone(),
            Q::Enc(Enc {
                v: x,
                shape,
                lo: 0,
                hi: max_q,
                scale: quantizer.scale.clone(),
                offset: quantizer.lo.clone(),
                steps: Vec::new(),
                calib: gi.name.clone(),
            }),
        );
        let mut bld = Builder {
            model: self,
            opts: *opts,
            b,
            calib,
            layers: Vec::new(),
            last_linear: None,
        };
        let mut tail = None;
        let output = &self.outputs[0];
        for node in &self.nodes {
            let out_name = node.outputs.first().cloned().unwrap_or_default();
            let q = bld.node(node, &values, &out_name)?;
            match q {
                Outcome::Value(q) => {
                    values.insert(out_name, q);
                }
                Outcome::Tail(t, input) => {
                    if &out_name != output {
                        return Err(OnnxError::Unsupported(format!(
                            "{}: {t:?} runs on the client after decryption, so it must be the network's last op",
                            node.what()
                        )));
                    }
                    tail = Some(t);
                    values.insert(out_name, input);
                }
            }
        }
        let result = values
            .remove(output)
            .or_else(|| self.constants.get(output).cloned().map(Q::Clear))
            .ok_or_else(|| OnnxError::Format(format!("output {output:?} is not computed")))?;
        let Q::Enc(mut y) = result else {
            return Err(OnnxError::Unsupported(
                "the network's output does not depend on its input".into(),
            ));
        };
        if !y.steps.is_empty() {
            let bits = opts.n_bits.model_outputs;
            y = bld.materialise(y, bits, "the output")?;
        }
        let mut parts = 1;
        if opts.output_parts > 1 {
            let Some(site) = bld.last_linear.take().filter(|s| s.acc == y.v) else {
                return Err(OnnxError::Unsupported(
                    "output_parts: the network's output must be a linear layer's accumulator (Gemm or MatMul, \
                     then at most a Softmax, LogSoftmax or ArgMax on the client); use output_parts=1"
                        .into(),
                ));
            };
            // at most one input row per part
            parts = opts.output_parts.min(site.k as u32);
            if parts > 1 {
                y.v = bld.output_in_parts(&site, parts)?;
            }
        }
        let n = y.numel();
        let expand = |v: &[f64]| -> Vec<f64> { (0..n).map(|e| at(v, e)).collect() };
        let mut dequant = Dequant::new(expand(&y.scale), expand(&y.offset));
        dequant.parts = parts;
        let post = match tail {
            Some(Tail::Softmax) => Post::Softmax,
            _ => Post::Identity,
        };
        let spec = ClientSpec::model(quantizer, Encoding::Plain, dequant, post);
        let mut module = Module::new();
        let mut f = bld.b.ret(&[y.v]);
        if parts > 1 {
            // the whole output's matmul, rebuilt in parts
            f.drop_dead_ops();
        }
        module.functions.push(f);
        let output_shape = y.shape[1..].to_vec();
        Ok(QuantizedNetwork {
            module,
            spec,
            tail,
            input_shape,
            output_shape,
            layers: bld.layers,
        })
    }
}

impl OnnxModel {
    /// The QuantizeLinear (per tensor, at most 16 bits) that every use of the graph input goes
    /// through, if there is one.
    fn input_qdq(&self, input_shape: &[usize]) -> Result<Option<Qdq>, OnnxError> {
        let name = &self.inputs[0].name;
        let users: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| n.inputs.iter().any(|i| i == name))
            .collect();
        let [node] = users.as_slice() else { return Ok(None) };
        if node.op != "QuantizeLinear" || node.input(0) != Some(name.as_str()) {
            return Ok(None);
        }
        let mut shape = vec![1];
        shape.extend_from_slice(input_shape);
        let mut q = self.qdq(node, &shape, &|n| self.constants.get(n).cloned())?;
        // Q → Clip (QONNX's Quant, the Q → Clip → DQ form of fewer bits): the clipped integers
        let out = node.outputs.first().map_or("", |s| s.as_str());
        let next: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| n.inputs.iter().any(|i| i == out))
            .collect();
        if let [clip] = next.as_slice() {
            if clip.op == "Clip" && clip.input(0) == Some(out) {
                let get = |i: usize| {
                    clip.input(i)
                        .and_then(|n| self.constants.get(n))
                        .and_then(|t| t.iter().next().copied())
                };
                let (a, b) = (get(1), get(2));
                if let Some(a) = a {
                    q.lo = q.lo.max(a.ceil());
                }
                if let Some(b) = b {
                    q.hi = q.hi.min(b.floor());
                }
            }
        }
        Ok((q.per_tensor() && q.lo <= q.hi && q.hi - q.lo < 65_536.0).then_some(q))
    }
}

/// Sets per-feature affine quantisers to one for all features: the calibration rows' range.
fn one_range(q: &mut InputQuantizer, rows: &[Vec<f64>]) {
    let (lo, hi) = rows
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let levels = ((1u64 << q.n_bits) - 1) as f64;
    let scale = if hi > lo { (hi - lo) / levels } else { 1.0 };
    q.lo.iter_mut().for_each(|l| *l = lo);
    q.scale.iter_mut().for_each(|s| *s = scale);
}

/// A reduction's axes (never the batch axis: each sample runs apart) and `keepdims`.
fn reduction(
    node: &Node,
    rank: usize,
    get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
) -> Result<(Vec<usize>, bool), OnnxError> {
    let axes = crate::movement::reduce_axes(node, rank, get)?;
    if axes.contains(&0) {
        return Err(OnnxError::Unsupported(format!(
            "{}: a reduction over the batch axis (fhec runs each sample apart)",
            node.what()
        )));
    }
    Ok((axes, node.int("keepdims", 1)? != 0))
}

/// `shape` without the reduced `axes` (kept as 1 with `keep`).
fn reduced_shape(shape: &[usize], axes: &[usize], keep: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(a, &d)| match (axes.contains(&a), keep) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// Per-output-channel symmetric weights (`rows × channels`, row-major): a channel whose folded
/// weights are already integer multiples of one step with at most `2^(bits−1) − 1` of them (a
/// DequantizeLinear of integer weights, scaled by its input's grid) keeps those integers exactly;
/// any other is quantised to `bits`.
fn layer_weights(w: &[f64], rows: usize, channels: usize, bits: u32) -> Result<Weights, fhec_quant::QuantError> {
    let mut q = quantize_weights(w, rows, channels, bits, WeightMode::Symmetric)?;
    let top = (1i64 << (bits - 1)) - 1;
    for c in 0..channels {
        let col: Vec<f64> = (0..rows).map(|r| w[r * channels + c]).collect();
        let m = col.iter().fold(0f64, |a, v| a.max(v.abs()));
        if m == 0.0 {
            continue;
        }
        let on_grid = |step: f64| {
            col.iter().all(|&v| {
                let k = v / step;
                (k - k.round()).abs() <= 1e-6 * (1.0 + k.abs())
            })
        };
        if let Some(k) = (1..=top).find(|&k| on_grid(m / k as f64)) {
            let step = m / k as f64;
            for r in 0..rows {
                q.values[r * channels + c] = (w[r * channels + c] / step).round() as i64;
            }
            q.scales[c] = step;
        }
    }
    Ok(q)
}

/// The grid a value with pending steps lies on when they end with QuantizeLinear (per tensor), an
/// optional Clip of its integers, and DequantizeLinear (an affine map with one positive scale):
/// `(lowest value, step, levels)`.
fn grid_of(x: &Enc) -> Option<(f64, f64, f64)> {
    let n = x.steps.len();
    let (mul, add) = match x.steps.last()? {
        Step::Affine { mul, add } if mul.len() == 1 && add.len() == 1 && mul[0] > 0.0 => (mul[0], add[0]),
        _ => return None,
    };
    let (q, clip) = match (
        n.checked_sub(2).map(|i| &x.steps[i]),
        n.checked_sub(3).map(|i| &x.steps[i]),
    ) {
        (Some(Step::Quant(q)), _) => (q, None),
        (Some(Step::F(Unary::Clip(a, b))), Some(Step::Quant(q))) => (q, Some((*a, *b))),
        _ => return None,
    };
    if !q.per_tensor() {
        return None;
    }
    let (mut lo, mut hi) = (q.lo, q.hi);
    if let Some((a, b)) = clip {
        lo = lo.max(a.ceil());
        hi = hi.min(b.floor());
    }
    (lo <= hi).then_some((mul * lo + add, mul, hi - lo))
}

/// What a node makes: a value, or the client-side tail (with the value it applies to).
enum Outcome {
    Value(Q),
    Tail(Tail, Q),
}

impl Builder<'_> {
    fn node(&mut self, node: &Node, values: &HashMap<String, Q>, out: &str) -> Result<Outcome, OnnxError> {
        let model = self.model;
        let get = |name: &str| -> Option<Q> {
            values
                .get(name)
                .cloned()
                .or_else(|| model.constants.get(name).cloned().map(Q::Clear))
        };
        let operands: Vec<Option<Q>> = (0..node.inputs.len()).map(|i| node.input(i).and_then(get)).collect();
        let clear_get = |name: &str| -> Option<ArrayD<f64>> {
            match get(name) {
                Some(Q::Clear(c)) => Some(c),
                _ => None,
            }
        };
        // clear subgraphs (shape computations, constants): the float reference folds them
        if operands.iter().flatten().all(|q| matches!(q, Q::Clear(_))) {
            let arg = |i: usize| -> Result<ArrayD<f64>, OnnxError> {
                node.input(i)
                    .and_then(clear_get)
                    .ok_or_else(|| OnnxError::Shape(format!("{}: operand {i} is missing", node.what())))
            };
            let v = self.model.eval_node(node, &arg, &clear_get)?;
            return Ok(Outcome::Value(Q::Clear(v)));
        }
        let enc_at = |i: usize| -> Option<Enc> {
            match operands.get(i) {
                Some(Some(Q::Enc(e))) => Some(e.clone()),
                _ => None,
            }
        };
        let clear_at = |i: usize| -> Option<ArrayD<f64>> {
            match operands.get(i) {
                Some(Some(Q::Clear(c))) => Some(c.clone()),
                _ => None,
            }
        };
        let what = node.what();
        let enc_only = |i: usize| -> Result<Enc, OnnxError> {
            enc_at(i).ok_or_else(|| OnnxError::Unsupported(format!("{what}: operand {i} must be the encrypted tensor")))
        };
        let with = |mut x: Enc, step: Option<Step>| -> Q {
            if let Some(s) = step {
                x.push(s);
            }
            x.calib = out.to_string();
            Q::Enc(x)
        };
        if let Some(u) = Unary::of(node, clip_bounds(node, &clear_get)?)? {
            return Ok(Outcome::Value(with(enc_only(0)?, Some(Step::F(u)))));
        }
        Ok(Outcome::Value(match node.op.as_str() {
            "Identity" | "Dropout" => with(enc_only(0)?, None),
            "MatMul" if enc_at(0).is_some() && enc_at(1).is_some() => {
                let (a, b) = (enc_only(0)?, enc_only(1)?);
                Q::Enc(self.matmul_enc(node, a, b, out)?)
            }
            "Gemm" | "MatMul" => {
                let x = enc_only(0)?;
                let w = clear_at(1).ok_or_else(|| {
                    OnnxError::Unsupported(format!(
                        "{what}: the weights must be constants, or both operands encrypted (MatMul)"
                    ))
                })?;
                let (w, bias) = if node.op == "Gemm" {
                    if node.int("transA", 0)? != 0 {
                        return Err(OnnxError::Unsupported(format!("{what}: transA = 1")));
                    }
                    let mut w = w
                        .into_dimensionality::<ndarray::Ix2>()
                        .map_err(|_| OnnxError::Shape(format!("{what}: B must be a matrix")))?;
                    if node.int("transB", 0)? != 0 {
                        w = w.reversed_axes();
                    }
                    let alpha = node.float("alpha", 1.0)?;
                    let w = w.mapv(|v| v * alpha);
                    let n = w.ncols();
                    let beta = node.float("beta", 1.0)?;
                    let bias = match clear_at(2) {
                        Some(c) => per_element(node, &c, &[1, n])?.into_iter().map(|v| v * beta).collect(),
                        None if node.input(2).is_some() => {
                            return Err(OnnxError::Unsupported(format!("{what}: C must be a constant")))
                        }
                        None => vec![0.0; n],
                    };
                    (w.into_dyn(), bias)
                } else {
                    if w.ndim() != 2 {
                        return Err(OnnxError::Unsupported(format!(
                            "{what}: the constant operand must be a matrix, has shape {:?}",
                            w.shape()
                        )));
                    }
                    let n = w.shape()[1];
                    (w, vec![0.0; n])
                };
                Q::Enc(self.linear(node, x, &w, &bias, out)?)
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let (x, c, x_first) = match (enc_at(0), enc_at(1)) {
                    (Some(x), None) => (x, clear_at(1), true),
                    (None, Some(x)) => (x, clear_at(0), false),
                    // two functions of one encrypted tensor, element by element: one function of it
                    // (one lookup later, not two and a product)
                    (Some(a), Some(b)) if a.v == b.v && a.shape == b.shape && node.op != "Div" => {
                        let op = match node.op.as_str() {
                            "Add" => PairOp::Add,
                            "Sub" => PairOp::Sub,
                            _ => PairOp::Mul,
                        };
                        let (v, shape, lo, hi) = (a.v, a.shape.clone(), a.lo, a.hi);
                        if a.steps.is_empty() && b.steps.is_empty() && !matches!(op, PairOp::Mul) {
                            // two affine maps of one integer: their sum is one (no lookup)
                            let sign = if matches!(op, PairOp::Sub) { -1.0 } else { 1.0 };
                            let n = a.numel();
                            let comb = |x: &[f64], y: &[f64]| -> Vec<f64> {
                                (0..n).map(|e| at(x, e) + sign * at(y, e)).collect()
                            };
                            return Ok(Outcome::Value(Q::Enc(Enc {
                                scale: comb(&a.scale, &b.scale),
                                offset: comb(&a.offset, &b.offset),
                                calib: out.to_string(),
                                ..a
                            })));
                        }
                        return Ok(Outcome::Value(Q::Enc(Enc {
                            v,
                            shape,
                            lo,
                            hi,
                            scale: vec![1.0],
                            offset: vec![0.0],
                            steps: vec![Step::Pair(Box::new((Chain::of(a), Chain::of(b), op)))],
                            calib: out.to_string(),
                        })));
                    }
                    (Some(a), Some(b)) if node.op == "Add" || node.op == "Sub" => {
                        return Ok(Outcome::Value(Q::Enc(self.add_enc(
                            node,
                            a,
                            b,
                            node.op == "Sub",
                            out,
                        )?)))
                    }
                    (Some(a), Some(b)) if node.op == "Mul" => {
                        return Ok(Outcome::Value(Q::Enc(self.mul_enc(node, a, b, out)?)))
                    }
                    _ => {
                        return Err(OnnxError::Unsupported(format!(
                            "{what}: a quotient of two encrypted tensors is not supported (products are, and \
                             quotients of two functions of one tensor)"
                        )))
                    }
                };
                let c = c.ok_or_else(|| OnnxError::Unsupported(format!("{what}: a missing operand")))?;
                let c = per_element(node, &c, &x.shape)?;
                let ones = vec![1.0; c.len()];
                let zeros = vec![0.0; c.len()];
                let steps: Vec<Step> = match (node.op.as_str(), x_first) {
                    ("Add", _) => vec![Step::Affine { mul: ones, add: c }],
                    ("Sub", true) => vec![Step::Affine {
                        mul: ones,
                        add: c.iter().map(|v| -v).collect(),
                    }],
                    ("Sub", false) => vec![Step::Affine {
                        mul: vec![-1.0],
                        add: c,
                    }],
                    ("Mul", _) => vec![Step::Affine { mul: c, add: zeros }],
                    ("Div", true) => vec![Step::Affine {
                        mul: c.iter().map(|v| 1.0 / v).collect(),
                        add: zeros,
                    }],
                    _ => vec![Step::F(Unary::Reciprocal), Step::Affine { mul: c, add: zeros }],
                };
                let mut x = x;
                for s in steps {
                    x.push(s);
                }
                with(x, None)
            }
            "BatchNormalization" => {
                let x = enc_only(0)?;
                if node.int("training_mode", 0)? != 0 {
                    return Err(OnnxError::Unsupported(format!(
                        "{what}: training_mode = 1 (export in eval mode)"
                    )));
                }
                let param = |i: usize| -> Result<Vec<f64>, OnnxError> {
                    clear_at(i)
                        .map(|t| t.iter().copied().collect())
                        .ok_or_else(|| OnnxError::Unsupported(format!("{what}: operand {i} must be a constant")))
                };
                let (scale, bias, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
                let eps = node.float("epsilon", 1e-5)?;
                if x.shape.len() < 2 {
                    return Err(OnnxError::Shape(format!(
                        "{what}: input of shape {:?} has no channel axis",
                        x.shape
                    )));
                }
                let c = x.shape[1];
                if [&scale, &bias, &mean, &var].iter().any(|p| p.len() != c) {
                    return Err(OnnxError::Shape(format!(
                        "{what}: {c} channels (axis 1 of {:?}) but parameters of {}, {}, {}, {}",
                        x.shape,
                        scale.len(),
                        bias.len(),
                        mean.len(),
                        var.len()
                    )));
                }
                let inner: usize = x.shape[2..].iter().product();
                let n = x.numel();
                let ch = |e: usize| (e / inner.max(1)) % c;
                let mul: Vec<f64> = (0..n).map(|e| scale[ch(e)] / (var[ch(e)] + eps).sqrt()).collect();
                let add: Vec<f64> = (0..n).map(|e| bias[ch(e)] - mean[ch(e)] * mul[e]).collect();
                let mut x = x;
                x.push(Step::Affine { mul, add });
                with(x, None)
            }
            "PRelu" => {
                let x = enc_only(0)?;
                let slope = clear_at(1)
                    .ok_or_else(|| OnnxError::Unsupported(format!("{what}: the slope must be a constant")))?;
                let s = per_element(node, &slope, &x.shape)?;
                with(x, Some(Step::PRelu(s)))
            }
            "Flatten" | "Squeeze" | "Unsqueeze" | "Reshape" => {
                let mut x = enc_only(0)?;
                let shape = if node.op == "Reshape" {
                    let t = node.input(1).and_then(clear_get).ok_or_else(|| {
                        OnnxError::Unsupported(format!("{what}: the target shape must be a constant"))
                    })?;
                    let t: Vec<f64> = t.iter().copied().collect();
                    reshape_dims(node, &x.shape, &t, node.int("allowzero", 0)? != 0)?
                } else {
                    let axes = if node.op == "Flatten" {
                        None
                    } else {
                        axes_of(node, &clear_get)?
                    };
                    shape_op(node, &x.shape, axes)?
                };
                if shape.first() != Some(&1) {
                    return Err(OnnxError::Unsupported(format!(
                        "{what}: the batch axis must stay first (shape {:?} → {shape:?})",
                        x.shape
                    )));
                }
                // the IR value is flat: only the logical shape changes (row-major order is kept)
                x.shape = shape;
                with(x, None)
            }
            "Conv" => {
                let x = enc_only(0)?;
                let w = clear_at(1)
                    .ok_or_else(|| OnnxError::Unsupported(format!("{what}: the weights must be constants")))?;
                let bias = match (node.input(2), clear_at(2)) {
                    (None, _) => None,
                    (Some(_), Some(b)) => Some(b),
                    (Some(_), None) => {
                        return Err(OnnxError::Unsupported(format!("{what}: the bias must be a constant")))
                    }
                };
                if w.ndim() != x.shape.len() {
                    return Err(OnnxError::Shape(format!(
                        "{what}: input of shape {:?} and weights of shape {:?}",
                        x.shape,
                        w.shape()
                    )));
                }
                let g = geometry(node, &x.shape, Some(&w.shape()[2..]), false)?;
                let group = conv_group(node, g.x[1], w.shape())?;
                Q::Enc(self.conv(node, x, &w, bias.as_ref(), &g, group, true, None, out)?)
            }
            "Transpose" | "Slice" | "Gather" | "Pad" | "Concat" | "Expand" => {
                Q::Enc(self.movement(node, &operands, &clear_get, out)?)
            }
            "Shape" => Q::Clear(crate::movement::shape_of(node, &enc_only(0)?.shape)?),
            "ReduceSum" | "ReduceMean" => Q::Enc(self.reduce(node, enc_only(0)?, &clear_get, out)?),
            "ReduceMax" => Q::Enc(self.reduce_max(node, enc_only(0)?, &clear_get, out)?),
            "QuantizeLinear" => {
                let mut x = enc_only(0)?;
                let q = self.model.qdq(node, &x.shape, &clear_get)?;
                // integers already on the grid (the client's input quantiser set from this node, or
                // a DequantizeLinear of the same grid): the quantisation is a shift of the integers
                let n = x.numel();
                let shifts: Option<Vec<f64>> = x
                    .steps
                    .is_empty()
                    .then(|| {
                        (0..n)
                            .map(|e| {
                                let (s, qs) = (at(&x.scale, e), at(&q.scale, e));
                                let m = at(&x.offset, e) / qs + at(&q.zero, e);
                                let on_grid = ((s - qs) / qs).abs() < 1e-9 && (m - m.round()).abs() < 1e-6;
                                let inside = x.lo as f64 + m.round() >= q.lo && x.hi as f64 + m.round() <= q.hi;
                                (on_grid && inside).then_some(m.round())
                            })
                            .collect::<Option<Vec<f64>>>()
                    })
                    .flatten();
                match shifts {
                    Some(m) => {
                        x.scale = vec![1.0];
                        x.offset = m;
                    }
                    None => x.steps.push(Step::Quant(q)),
                }
                with(x, None)
            }
            "DequantizeLinear" => {
                let mut x = enc_only(0)?;
                let q = self.model.qdq(node, &x.shape, &clear_get)?;
                let n = if q.per_tensor() { 1 } else { x.numel() };
                let mul: Vec<f64> = (0..n).map(|e| at(&q.scale, e)).collect();
                let add: Vec<f64> = (0..n).map(|e| -at(&q.zero, e) * at(&q.scale, e)).collect();
                x.push(Step::Affine { mul, add });
                with(x, None)
            }
            "ConvTranspose" => {
                let x = enc_only(0)?;
                let w = clear_at(1)
                    .ok_or_else(|| OnnxError::Unsupported(format!("{what}: the weights must be constants")))?;
                let bias = match (node.input(2), clear_at(2)) {
                    (None, _) => None,
                    (Some(_), Some(b)) => Some(b),
                    (Some(_), None) => {
                        return Err(OnnxError::Unsupported(format!("{what}: the bias must be a constant")))
                    }
                };
                let t = transposed(node, &x.shape, &w)?;
                // the input spread with zeros (data movement), then a stride-1 convolution
                let x = if x.steps.is_empty() {
                    x
                } else {
                    let bits = self.opts.n_bits.op_inputs;
                    self.materialise(x, bits, &what)?
                };
                let (h, wd) = (t.geometry.x[2], t.geometry.x[3]);
                let (ih, iw) = (
                    x.shape[2..].iter().rev().nth(1).copied().unwrap_or(1),
                    x.shape[x.shape.len() - 1],
                );
                let channels = t.geometry.x[1];
                let mut picks = Vec::with_capacity(channels * h * wd);
                for ch in 0..channels {
                    for src in &t.source {
                        picks.push(src.map(|(yy, xx)| (ch * ih + yy) * iw + xx));
                    }
                }
                let zeros = vec![0.0; picks.len()];
                let mut shape = vec![1, channels];
                if !t.geometry.one_d {
                    shape.push(h);
                }
                shape.push(wd);
                let spread = self.assemble(&what, vec![x], &picks, &zeros, shape, out)?;
                Q::Enc(self.conv(
                    node,
                    spread,
                    &t.weights,
                    bias.as_ref(),
                    &t.geometry,
                    t.group,
                    true,
                    None,
                    out,
                )?)
            }
            "AveragePool" | "GlobalAveragePool" | "MaxPool" | "GlobalMaxPool" => {
                let x = enc_only(0)?;
                Q::Enc(self.pool(node, x, out)?)
            }
            "Softmax" | "LogSoftmax" | "ArgMax" => {
                let x = enc_only(0)?;
                let rank = x.shape.len();
                let default = if node.op == "ArgMax" {
                    0
                } else if self.model.opset >= 13 {
                    -1
                } else {
                    1
                };
                let ax = crate::float::axis(node, node.int("axis", default)?, rank)?;
                if ax != rank - 1 || rank != 2 {
                    return Err(OnnxError::Unsupported(format!(
                        "{what}: over axis {ax} of a rank-{rank} tensor; the client computes it over the last axis of \
                         [batch, classes]"
                    )));
                }
                if node.op == "ArgMax" && node.int("keepdims", 1)? != 0 {
                    return Err(OnnxError::Unsupported(format!(
                        "{what}: keepdims = 1 (the client returns class indices of shape [batch])"
                    )));
                }
                let t = match node.op.as_str() {
                    "Softmax" => Tail::Softmax,
                    "LogSoftmax" => Tail::LogSoftmax,
                    _ => Tail::ArgMax,
                };
                return Ok(Outcome::Tail(t, Q::Enc(x)));
            }
            _ => return Err(unsupported(node, self.model.opset)),
        }))
    }
}
