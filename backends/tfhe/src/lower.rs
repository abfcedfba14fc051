//! Lowering of a verified `fhe` function to a TFHE [`Program`].
//!
//! Two phases (see `docs/crypto.md` for the encoding and the exactness argument):
//!
//! 1. **Plan.** Encrypted values joined by leveled ops (add, matmul, reshapes…) form *components*
//!    (union-find); a component shares one scale `s = 63 − P`, where `P` is the largest width any of
//!    its values — or any temporary the lowering creates in it (the `a ± b` of `mul_eint`, the
//!    window sums of pooling) — needs. A rounding by extraction links its input and output
//!    components: `P_in ≥ P_out + lsbs`, solved by a fixpoint.
//! 2. **Lower.** Every encrypted tensor element becomes a linear expression over slots (inputs and
//!    lookup outputs) with torus coefficients; leveled ops only combine expressions. An expression
//!    is materialised into a slot (one `Linear` instruction) where a lookup reads it or an output
//!    returns it. Lookups re-encode their input to the precision of its value range
//!    (`shift = P − w`, offset `2^(w−1)` for signed ranges) and write their table at the scale of
//!    the consumer's component, so no separate re-encoding step is needed.
//!
//! `round`/`truncate` are exact: either one lookup at the input's precision (when a lookup at least
//! that wide exists anyway), or bit extraction: for each dropped bit, shift it into the padding
//! position and read it with a 1-entry negacyclic table (a precision-0 PBS), then subtract it.
//!
//! The noise of every slot is tracked exactly (`Σ coef²` over fresh encryptions and over lookup
//! outputs), and every lookup and output becomes a [`Constraint`] for the parameter search.

use std::collections::HashMap;

use crate::params::Constraint;
use fhec_ir::module::{Function, ValueDef};
use fhec_ir::ops::pool_window;
use fhec_ir::types::width_for;
use fhec_ir::{Diagnostic, ElemType, NoiseClass, OpKind, Tensor, Type, ValueId};
use fhec_runtime::program::{encode, Instr, Origin, Port, Table, MAX_CLEAR_WIDTH, MAX_PBS_PRECISION};
use ndarray::{ArrayD, IxDyn};

/// Largest component precision: the scale must stay ≥ 1 (bit extraction writes `2^(s−1)`).
const MAX_PRECISION: u32 = 62;

type Slot = u32;

/// A torus-level linear expression: `Σ coef·slot + constant`.
#[derive(Clone, Debug, Default, PartialEq)]
struct Lin {
    terms: Vec<(Slot, i128)>,
    constant: u64,
}

impl Lin {
    fn slot(s: Slot) -> Lin {
        Lin {
            terms: vec![(s, 1)],
            constant: 0,
        }
    }
    fn constant(c: u64) -> Lin {
        Lin {
            terms: Vec::new(),
            constant: c,
        }
    }
    fn add_scaled(&mut self, other: &Lin, c: i128) {
        if c == 0 {
            return;
        }
        self.terms
            .extend(other.terms.iter().map(|&(s, k)| (s, k.saturating_mul(c))));
        self.constant = self.constant.wrapping_add(other.constant.wrapping_mul(c as i64 as u64));
        if self.terms.len() > 64 {
            self.normalize();
        }
    }
    fn scaled(&self, c: i128) -> Lin {
        let mut l = Lin::default();
        l.add_scaled(self, c);
        l
    }
    fn add_constant(&mut self, c: u64) {
        self.constant = self.constant.wrapping_add(c);
    }
    /// Merges terms on the same slot and drops zeros.
    fn normalize(&mut self) {
        self.terms.sort_unstable_by_key(|t| t.0);
        let mut out: Vec<(Slot, i128)> = Vec::with_capacity(self.terms.len());
        for &(s, c) in &self.terms {
            match out.last_mut() {
                Some(l) if l.0 == s => l.1 += c,
                _ => out.push((s, c)),
            }
        }
        out.retain(|t| t.1 != 0);
        self.terms = out;
    }
}

/// A value during lowering.
enum Val {
    /// Known at compile time.
    Clear(Tensor),
    /// A clear argument, or a shape op of clear arguments: known to the server at run time. Each
    /// element is a clear index (`$c`).
    Runtime {
        shape: Vec<usize>,
        refs: Vec<u32>,
    },
    Enc {
        shape: Vec<usize>,
        elems: Vec<Lin>,
    },
}

/// What clear arguments may do (for messages).
const CLEAR_ARG_USES: &str = "a clear argument may be added to, subtracted from, multiplied with (elementwise) or \
     matrix-multiplied with (rank ≤ 2) encrypted values, and reshaped, transposed, broadcast, sliced, gathered or \
     concatenated with other clear arguments";

/// How a rounding (`round`, `truncate`, power-of-two average pool) is lowered.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RoundMethod {
    /// One lookup on the whole input.
    Table,
    /// One precision-0 lookup per dropped bit.
    Extract,
}

/// What the lowering produces before parameter selection.
#[derive(Clone)]
pub struct Lowered {
    pub name: String,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
    pub num_input_slots: u32,
    pub instrs: Vec<Instr>,
    pub tables: Vec<Table>,
    pub instr_origin: Vec<u32>,
    pub origins: Vec<Origin>,
    pub constraints: Vec<Constraint>,
    /// The plain table lookups — input re-encoded to `[0, 2^w)` at the top of its precision, so
    /// its top bits are zero: the candidates for many-LUT lanes ([`crate::lanes`]).
    pub plain_lookups: Vec<PlainLookup>,
    /// Lookups read on a window ([`WindowPlan`]).
    pub window_lookups: usize,
}

/// A plain table lookup ([`Lowered::plain_lookups`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainLookup {
    /// The instruction.
    pub instr: u32,
    /// Its constraint in [`Lowered::constraints`].
    pub constraint: usize,
    /// The `fhe` value whose elements it reads (an op's operand), when it reads one directly.
    pub value: Option<ValueId>,
}

impl Lowered {
    /// The program, with its parameters and noise report.
    pub fn into_program(
        self,
        params: fhec_runtime::ParamSet,
        noise: fhec_runtime::NoiseReport,
    ) -> fhec_runtime::Program {
        fhec_runtime::Program {
            name: self.name,
            partitions: vec![params],
            inputs: self.inputs,
            outputs: self.outputs,
            num_input_slots: self.num_input_slots,
            instrs: self.instrs,
            tables: self.tables,
            instr_origin: self.instr_origin,
            origins: self.origins,
            noise,
        }
    }
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut y = x;
        while self.0[y] != r {
            let n = self.0[y];
            self.0[y] = r;
            y = n;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a] = b;
        }
    }
}

fn elem_range(e: ElemType) -> (i128, i128) {
    e.range()
}

/// Width (and whether an offset is needed) of a lookup reading values in `lo ..= hi`.
fn lookup_width(lo: i128, hi: i128) -> (u32, bool) {
    if lo >= 0 {
        (width_for(0, hi.max(0), false), false)
    } else {
        (width_for(lo, hi, true), true)
    }
}

fn is_pow2(a: i128) -> Option<u32> {
    (a > 0 && a & (a - 1) == 0).then(|| a.trailing_zeros())
}

/// The planning phase: components and their precisions, and how each rounding is lowered.
struct Plan {
    comp: Vec<usize>,
    precision: HashMap<usize, u32>,
    round_method: HashMap<ValueId, RoundMethod>,
}

impl Plan {
    fn scale(&self, v: ValueId) -> u32 {
        63 - self.precision[&self.comp[v.index()]]
    }
}

fn enc(f: &Function, v: ValueId) -> bool {
    f.ty(v).is_encrypted()
}

/// The value range of an average pool's window sum (padding counts as zero).
fn pool_sum_range(f: &Function, x: ValueId, area: i128) -> (i128, i128) {
    let (lo, hi) = elem_range(f.ty(x).elem);
    (area * lo.min(0), area * hi.max(0))
}

fn pool_area(f: &Function, op: &fhec_ir::module::OpData) -> Result<i128, String> {
    let types = vec![f.ty(op.operands[0]).clone()];
    let (_, win) = pool_window(&types, &op.attrs, op.kind.name())?;
    Ok((win.kernel[0] * win.kernel[1]) as i128)
}

fn lsbs(op: &fhec_ir::module::OpData) -> u32 {
    match op.attrs.get("lsbs") {
        Some(fhec_ir::Attribute::Int(k)) => *k as u32,
        _ => 0,
    }
}

/// `room`: precision to leave for many-LUT ([`crate::lanes`]) per value: the component of a
/// value whose lookups are to share a blind rotation gets at least that precision.
/// `windows`: the operands' reachable ranges, when wide lookups may be read on a window.
fn plan(f: &Function, room: &HashMap<ValueId, u32>, windows: Option<&[(i128, i128)]>) -> Result<Plan, Diagnostic> {
    let nv = f.num_values();
    let mut uf = UnionFind((0..nv).collect());
    // requirements per value (before union)
    let mut req: Vec<u32> = (0..nv)
        .map(|v| {
            let t = f.ty(ValueId(v as u32));
            if t.is_encrypted() {
                t.width()
            } else {
                0
            }
        })
        .collect();
    let mut max_lut = 0u32;
    for &o in &f.body {
        let op = f.op(o);
        let r = op.result;
        if !enc(f, r) {
            continue;
        }
        let encs: Vec<ValueId> = op.operands.iter().copied().filter(|&v| enc(f, v)).collect();
        match op.kind {
            OpKind::Lut | OpKind::MappedLut | OpKind::MultiLut => {
                let x = op.operands[0];
                let w = f.ty(x).width();
                max_lut = max_lut.max(w);
                if windows.is_some_and(|reach| window_needs_room(f, op, reach[x.index()])) {
                    req[x.index()] = req[x.index()].max(w + 1);
                }
            }
            OpKind::MulEint => {
                let (al, ah) = elem_range(f.ty(op.operands[0]).elem);
                let (bl, bh) = elem_range(f.ty(op.operands[1]).elem);
                let (ws, _) = lookup_width(al + bl, ah + bh);
                let (wd, _) = lookup_width(al - bh, ah - bl);
                let w = ws.max(wd);
                uf.union(op.operands[0].index(), op.operands[1].index());
                req[op.operands[0].index()] = req[op.operands[0].index()].max(w);
                max_lut = max_lut.max(w);
            }
            OpKind::Maxpool2d => {
                // max(a, b) = b + relu(a − b), all at the input's scale
                let (lo, hi) = elem_range(f.ty(op.operands[0]).elem);
                let (w, _) = lookup_width(lo - hi, hi - lo);
                uf.union(r.index(), op.operands[0].index());
                req[r.index()] = req[r.index()].max(w);
                max_lut = max_lut.max(w);
            }
            OpKind::Round | OpKind::Truncate | OpKind::Avgpool2d => {}
            // leveled ops and data movement: the result and its encrypted operands share a scale
            OpKind::Constant
            | OpKind::Zeros
            | OpKind::Add
            | OpKind::Sub
            | OpKind::Neg
            | OpKind::Mul
            | OpKind::Matmul
            | OpKind::Dot
            | OpKind::Sum
            | OpKind::Conv2d
            | OpKind::ToSigned
            | OpKind::ToUnsigned
            | OpKind::Reshape
            | OpKind::Transpose
            | OpKind::Broadcast
            | OpKind::Concat
            | OpKind::Slice
            | OpKind::Gather => {
                debug_assert_ne!(op.kind.def().noise_class(), NoiseClass::Lut);
                for &x in &encs {
                    uf.union(r.index(), x.index());
                }
            }
        }
    }
    for (v, &p) in room {
        if let Some(r) = req.get_mut(v.index()) {
            *r = (*r).max(p);
        }
    }
    // Roundings: a table when a lookup at least as wide exists anyway, else bit extraction.
    let mut round_method = HashMap::new();
    let mut edges: Vec<(usize, usize, u32)> = Vec::new(); // (input value, output value, lsbs)
    for &o in &f.body {
        let op = f.op(o);
        match op.kind {
            OpKind::Round | OpKind::Truncate => {
                let x = op.operands[0];
                let w = f.ty(x).width();
                let k = lsbs(op);
                let m = if w <= max_lut.min(MAX_PBS_PRECISION) || k == 0 {
                    RoundMethod::Table
                } else {
                    RoundMethod::Extract
                };
                if m == RoundMethod::Extract {
                    let wo = f.ty(op.result).width();
                    req[x.index()] = req[x.index()].max(wo + k);
                    edges.push((x.index(), op.result.index(), k));
                }
                round_method.insert(op.result, m);
            }
            OpKind::Avgpool2d => {
                let x = op.operands[0];
                let area = pool_area(f, op).map_err(|e| Diagnostic::at(e, op.span))?;
                let (lo, hi) = pool_sum_range(f, x, area);
                let (w, _) = lookup_width(lo, hi);
                req[x.index()] = req[x.index()].max(w);
                let m = match is_pow2(area) {
                    Some(k) if w > max_lut.min(MAX_PBS_PRECISION) => {
                        let wo = f.ty(op.result).width();
                        req[x.index()] = req[x.index()].max(wo + k);
                        edges.push((x.index(), op.result.index(), k));
                        RoundMethod::Extract
                    }
                    _ => RoundMethod::Table,
                };
                round_method.insert(op.result, m);
            }
            // no rounding inside
            OpKind::Constant
            | OpKind::Zeros
            | OpKind::Add
            | OpKind::Sub
            | OpKind::Neg
            | OpKind::Mul
            | OpKind::MulEint
            | OpKind::Matmul
            | OpKind::Dot
            | OpKind::Sum
            | OpKind::Conv2d
            | OpKind::Maxpool2d
            | OpKind::Lut
            | OpKind::MappedLut
            | OpKind::MultiLut
            | OpKind::ToSigned
            | OpKind::ToUnsigned
            | OpKind::Reshape
            | OpKind::Transpose
            | OpKind::Broadcast
            | OpKind::Concat
            | OpKind::Slice
            | OpKind::Gather => {}
        }
    }
    let comp: Vec<usize> = (0..nv).map(|v| uf.find(v)).collect();
    let mut precision: HashMap<usize, u32> = HashMap::new();
    for v in 0..nv {
        if f.ty(ValueId(v as u32)).is_encrypted() {
            let p = precision.entry(comp[v]).or_insert(1);
            *p = (*p).max(req[v]);
        }
    }
    // P_in ≥ P_out + k along extraction edges, to a fixpoint (bounded; leftovers are re-encoded).
    for _ in 0..16 {
        let mut changed = false;
        for &(x, r, k) in &edges {
            let need = precision[&comp[r]] + k;
            let p = precision.get_mut(&comp[x]).expect("encrypted");
            if *p < need && need <= MAX_PRECISION {
                *p = need;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for v in 0..nv {
        let vid = ValueId(v as u32);
        if f.ty(vid).is_encrypted() && precision[&comp[v]] > MAX_PRECISION {
            let span = match f.value(vid).def {
                ValueDef::Op(o) => f.op(o).span,
                ValueDef::Arg(_) => f.value(vid).span,
            };
            return Err(Diagnostic::at(
                format!(
                    "this value is combined with values that need {} bits; at most {MAX_PRECISION} bits fit a ciphertext",
                    precision[&comp[v]]
                ),
                span,
            )
            .with_help("round wide accumulators (fhe.round) before combining them"));
        }
    }
    Ok(Plan {
        comp,
        precision,
        round_method,
    })
}

/// The instruction builder: slots, noise, tables, constraints.
struct Builder {
    /// Whether wide lookups may be read on a window ([`WindowPlan`]).
    windows: bool,
    /// How many are.
    window_lookups: usize,
    num_input_slots: u32,
    instrs: Vec<Instr>,
    /// (fresh weight, lookup weight) of each slot.
    noise: Vec<(f64, f64)>,
    tables: Vec<Table>,
    table_ids: HashMap<(u32, Vec<u64>), u32>,
    instr_origin: Vec<u32>,
    origins: Vec<Origin>,
    origin: u32,
    constraints: Vec<Constraint>,
    /// See [`Lowered::plain_lookups`].
    plain_lookups: Vec<PlainLookup>,
    /// Linear combinations already materialised (common subexpressions share a slot).
    linear_memo: HashMap<(Vec<(Slot, i128)>, u64), Slot>,
    /// Largest magnitude of each clear input value (`$c`), from its argument's type.
    clear_max: Vec<i128>,
}

impl Builder {
    fn push(&mut self, ins: Instr, noise: (f64, f64)) -> Slot {
        let slot = self.num_input_slots + self.instrs.len() as u32;
        self.instrs.push(ins);
        self.noise.push(noise);
        self.instr_origin.push(self.origin);
        slot
    }

    /// Adds the noise of `c·slot` to `noise`; `c` must keep the arithmetic exact (|c| < 2^62).
    fn add_noise(&self, noise: &mut (f64, f64), s: Slot, c: i128, when: &str) -> Result<(), String> {
        if c.unsigned_abs() >= 1u128 << 62 {
            return Err(format!(
                "a clear coefficient reaches {c}{when}, too large for exact encrypted arithmetic"
            ));
        }
        let (a, b) = self.noise[s as usize];
        let c2 = (c as f64) * (c as f64);
        noise.0 += c2 * a;
        noise.1 += c2 * b;
        Ok(())
    }

    /// The slot holding `e`, emitting a `Linear` instruction unless `e` is one slot as is.
    fn materialize(&mut self, e: &Lin) -> Result<Slot, String> {
        let mut e = e.clone();
        e.normalize();
        if e.constant == 0 && e.terms.len() == 1 && e.terms[0].1 == 1 {
            return Ok(e.terms[0].0);
        }
        if let Some(&s) = self.linear_memo.get(&(e.terms.clone(), e.constant)) {
            return Ok(s);
        }
        let mut noise = (0.0, 0.0);
        let mut terms = Vec::with_capacity(e.terms.len());
        for &(s, c) in &e.terms {
            self.add_noise(&mut noise, s, c, "")?;
            terms.push((s, c as i64));
        }
        let slot = self.push(
            Instr::Linear {
                terms,
                constant: e.constant,
            },
            noise,
        );
        self.linear_memo.insert((e.terms, e.constant), slot);
        Ok(slot)
    }

    /// Materialises `base + Σ factor·$c·x + Σ $c·unit` as a `ClearLinear` instruction: `products`
    /// are `(c, x, factor)`, `units` are `(c, unit)`. The noise weight of each slot is bounded
    /// with the largest magnitude the clear values may take.
    fn clear_linear(
        &mut self,
        base: &Lin,
        products: &[(u32, &Lin, i128)],
        units: &[(u32, u64)],
    ) -> Result<Slot, String> {
        let mut base = base.clone();
        base.normalize();
        let mut prods: Vec<(Slot, u32, i128)> = Vec::new();
        let mut consts: Vec<(u32, u64)> = units.to_vec();
        for &(c, x, factor) in products {
            for &(s, k) in &x.terms {
                let f = k.checked_mul(factor).ok_or("a clear coefficient overflows")?;
                prods.push((s, c, f));
            }
            if x.constant != 0 {
                consts.push((c, x.constant.wrapping_mul(factor as i64 as u64)));
            }
        }
        prods.sort_unstable_by_key(|p| (p.0, p.1));
        prods.dedup_by(|b, a| {
            let same = a.0 == b.0 && a.1 == b.1;
            if same {
                a.2 += b.2;
            }
            same
        });
        prods.retain(|p| p.2 != 0);
        consts.sort_unstable_by_key(|c| c.0);
        consts.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.1 = a.1.wrapping_add(b.1);
            }
            same
        });
        consts.retain(|c| c.1 != 0);
        // worst-case coefficient of each slot: |coef| + Σ |factor|·max|$c|
        let mut bound: HashMap<Slot, i128> = HashMap::new();
        for &(s, k) in &base.terms {
            *bound.entry(s).or_default() += k.abs();
        }
        for &(s, c, f) in &prods {
            let m = f.abs().saturating_mul(self.clear_max[c as usize]);
            let b = bound.entry(s).or_default();
            *b = b.saturating_add(m);
        }
        let mut noise = (0.0, 0.0);
        for (&s, &b) in &bound {
            self.add_noise(&mut noise, s, b, " for the largest clear argument values")?;
        }
        let terms = base.terms.iter().map(|&(s, k)| (s, k as i64)).collect();
        let products = prods.iter().map(|&(s, c, f)| (s, c, f as i64)).collect();
        Ok(self.push(
            Instr::ClearLinear {
                terms,
                products,
                clear_constants: consts,
                constant: base.constant,
            },
            noise,
        ))
    }

    fn table(&mut self, precision: u32, values: Vec<u64>) -> u32 {
        let n = self.tables.len() as u32;
        *self.table_ids.entry((precision, values.clone())).or_insert_with(|| {
            self.tables.push(Table { precision, values });
            n
        })
    }

    /// A bootstrap on `slot·2^shift + offset` with a table of `precision`.
    fn pbs(&mut self, e: &Lin, shift: u32, offset: u64, precision: u32, values: Vec<u64>) -> Result<Slot, String> {
        let input = self.materialize(e)?;
        let amp = (2.0f64).powi(2 * shift as i32);
        let (a, b) = self.noise[input as usize];
        self.constraints.push(Constraint {
            precision,
            fresh_weight: a * amp,
            pbs_weight: b * amp,
            lookup: true,
            count: 1,
            origin: self.origin_text(),
        });
        let table = self.table(precision, values);
        Ok(self.push(
            Instr::Pbs {
                input,
                shift,
                offset,
                table,
                partition: 0,
            },
            (0.0, 1.0),
        ))
    }

    fn origin_text(&self) -> String {
        let o = &self.origins[self.origin as usize];
        match &o.location {
            Some(l) => format!("{} (at {l})", o.op),
            None => o.op.clone(),
        }
    }

    /// `f(v)` for `v`, the value of `e` at `scale`, known to lie in `lo ..= hi`; the result at `out_scale`.
    fn lookup(
        &mut self,
        e: &Lin,
        scale: u32,
        (lo, hi): (i128, i128),
        out_scale: u32,
        f: impl Fn(i128) -> i128,
    ) -> Result<Lin, String> {
        self.lookup_dyn(e, scale, (lo, hi), out_scale, &f)
    }

    /// [`Self::lookup`], not generic (it recurses).
    fn lookup_dyn(
        &mut self,
        e: &Lin,
        scale: u32,
        (lo, hi): (i128, i128),
        out_scale: u32,
        f: &dyn Fn(i128) -> i128,
    ) -> Result<Lin, String> {
        let (w, signed) = lookup_width(lo, hi);
        let p = 63 - scale;
        if w > MAX_PBS_PRECISION {
            return Err(format!(
                "needs a {w}-bit table lookup; at most {MAX_PBS_PRECISION} bits are supported: round its input first (fhe.round)"
            ));
        }
        if w > p {
            return Err(format!("internal error: a {w}-bit lookup on a {p}-bit encoding"));
        }
        if let Some(plan) = bit_plan(lo, hi, w, signed && out_scale > scale, &f) {
            return self.lookup_on_bits(e, scale, w, signed, out_scale, plan);
        }
        if let Some(plan) = self.windows.then(|| window_plan(lo, hi, w, p, out_scale, &f)).flatten() {
            self.window_lookups += 1;
            return self.lookup_on_window(e, scale, out_scale, plan, f);
        }
        let off: i128 = if signed { 1 << (w - 1) } else { 0 };
        let mut input = e.clone();
        input.add_constant(encode(off as i64, scale));
        let values = (0..1i128 << w).map(|u| encode(f(u - off) as i64, out_scale)).collect();
        let constraint = self.constraints.len();
        let slot = self.pbs(&input, p - w, 0, w, values)?;
        self.plain_lookups.push(PlainLookup {
            instr: slot - self.num_input_slots,
            constraint,
            value: None,
        });
        Ok(Lin::slot(slot))
    }

    /// `f(v)` for a `w`-bit `v` where `f` is linear on each side of 0 ([`BitPlan`]): the bits of
    /// `v` below its sign by one-bit extractions (low first), then one small lookup per chunk of
    /// them, which reads the chunk with the sign bit above it and writes that chunk's share of
    /// `f(v)` at `out_scale`; the shares add up to `f(v)`. With `plan.negacyclic` the sign sits in
    /// the padding position (a lookup one bit narrower): the table gives `±T[u]` by the sign, and a
    /// linear term in the chunk's bits supplies the rest (docs/crypto.md, "Wide lookups on bits").
    fn lookup_on_bits(
        &mut self,
        e: &Lin,
        scale: u32,
        w: u32,
        signed: bool,
        out_scale: u32,
        plan: BitPlan,
    ) -> Result<Lin, String> {
        let sb = u32::from(signed);
        let nbits = w - sb;
        // bits[j] = m_j·2^(scale+j) as a linear expression
        let mut bits: Vec<Lin> = Vec::with_capacity(nbits as usize);
        let mut cur = e.clone();
        for j in 0..nbits {
            let slot = self.materialize(&cur)?;
            let neg_bit = self.extract_bit(&Lin::slot(slot), scale, j)?;
            bits.push(neg_bit.scaled(-1));
            cur = Lin::slot(slot);
            cur.add_scaled(&neg_bit, 1);
        }
        // cur = −b·2^(scale+w−1) for a signed v (b its sign bit), 0 otherwise
        let sign = cur.scaled(-1);
        let (alpha, beta) = (plan.alpha, plan.beta);
        let mut out = Lin::constant(encode(plan.gamma as i64, out_scale));
        let mut a = 0u32;
        for &c in &plan.chunks {
            let top = a + c == nbits;
            // the chunk just under bit w−1, where the sign is
            let mut y = Lin::default();
            for bit in bits.iter().skip(a as usize).take(c as usize) {
                y.add_scaled(bit, 1i128 << (w - sb - c - a));
            }
            if signed {
                y.add_scaled(&sign, 1);
            }
            let share = if plan.negacyclic {
                // g(u, b) = (α+β)/2·u·2^a + (1 − 2b)·(α−β)/2·u·2^a, at out_scale − 1 in halves
                let half = out_scale - 1;
                let values = (0..1i128 << c)
                    .map(|u| {
                        let mut t = (alpha - beta) * (u << a);
                        if top {
                            t += beta << (w - 1);
                        }
                        encode(t as i64, half)
                    })
                    .collect();
                let t = self.pbs(&y, 64 - scale - w, 0, c, values)?;
                let mut l = Lin::slot(t);
                let k = (alpha + beta) << (half - scale);
                for bit in bits.iter().skip(a as usize).take(c as usize) {
                    l.add_scaled(bit, k);
                }
                if top {
                    l.add_constant(encode((-beta << (w - 1)) as i64, half));
                }
                l
            } else {
                let precision = c + sb;
                let values = (0..1i128 << precision)
                    .map(|idx| {
                        let (b, u) = (idx >> c, idx & ((1 << c) - 1));
                        let mut g = (u << a) * if b == 1 { beta } else { alpha };
                        if top && b == 1 {
                            g -= beta << (w - 1);
                        }
                        encode(g as i64, out_scale)
                    })
                    .collect();
                Lin::slot(self.pbs(&y, 63 - scale - w, 0, precision, values)?)
            };
            out.add_scaled(&share, 1);
            a += c;
        }
        Ok(out)
    }

    /// `f(v)` for a `w`-bit `v` where `f` is constant below and above a window of `2^r` values
    /// ([`WindowPlan`]): `u = v − base`, its `r` low bits `l` by one-bit extractions (low first),
    /// then the rest `t = ⌊u / 2^r⌋` (a few bits, its low bits now zero), read unsigned as
    /// `t − t_lo` (so a range that wraps the encoding's top bit is still read whole), through its
    /// class ([`Builder::window_class_read`]) or in pairs ([`Builder::window_pairs`]), as the plan
    /// says (docs/crypto.md, "Saturating lookups on a window").
    fn lookup_on_window(
        &mut self,
        e: &Lin,
        scale: u32,
        out_scale: u32,
        plan: WindowPlan,
        f: &dyn Fn(i128) -> i128,
    ) -> Result<Lin, String> {
        let mut cur = e.clone();
        cur.add_constant(encode(-plan.base as i64, scale));
        // l = u mod 2^r at `scale`, as a linear expression of the extractions
        let mut l = Lin::default();
        for j in 0..plan.r {
            let slot = self.materialize(&cur)?;
            let neg_bit = self.extract_bit(&Lin::slot(slot), scale, j)?;
            l.add_scaled(&neg_bit, -1);
            cur = Lin::slot(slot);
            cur.add_scaled(&neg_bit, 1);
        }
        // cur = (t − t_lo)·2^r at `scale`
        cur.add_constant(encode(-(plan.tlo as i64), scale + plan.r));
        // inside the window: f(base + l) (a value past the range is never read there)
        let inside = |l: i128| {
            let v = plan.base + l;
            if v > plan.hi {
                plan.c_lo
            } else {
                f(v)
            }
        };
        let w = Window {
            l,
            t: cur,
            scale,
            out_scale,
        };
        if plan.class_read {
            self.window_class_read(w, &plan, &inside)
        } else {
            self.window_pairs(w, &plan, &inside)
        }
    }

    /// The end of a window read (`r ≤ 3`): `t` read once for its class, written at bit `r` of
    /// `z = l + c·2^r`: `c = 0` inside the window (`t = 0`), 1 below, 3 above. One negacyclic read
    /// of `z` (a table of `2^(r+1)` entries, bit `r + 1` of `z` in the padding position) then gives,
    /// in halves, `2f(base + l) − c_lo − c_hi` inside, `c_lo − c_hi` below and its negation above;
    /// adding `c_lo + c_hi` makes it `f(v)`. One lookup's noise reaches the result.
    fn window_class_read(
        &mut self,
        w: Window,
        plan: &WindowPlan,
        inside: &dyn Fn(i128) -> i128,
    ) -> Result<Lin, String> {
        let WindowPlan {
            r,
            tlo,
            thi,
            c_lo,
            c_hi,
            ..
        } = *plan;
        let Window { l, t, scale, out_scale } = w;
        if tlo == 0 && thi == 0 {
            // the window holds the whole range: one plain read of l
            return self.lookup_dyn(&l, scale, (0, (1 << r) - 1), out_scale, inside);
        }
        let class = self.lookup_dyn(&t, scale + r, (0, thi - tlo), scale, &|t| match (t + tlo).signum() {
            0 => 0,
            -1 => 1 << r,
            _ => 3 << r,
        })?;
        let mut z = l;
        z.add_scaled(&class, 1);
        let half = out_scale - 1;
        let values = (0..2i128 << r)
            .map(|u| {
                let twice = if u < 1 << r {
                    2 * inside(u) - c_lo - c_hi
                } else {
                    c_lo - c_hi
                };
                encode(twice as i64, half)
            })
            .collect();
        let read = self.pbs(&z, 63 - scale - r - 1, 0, r + 1, values)?;
        let mut out = Lin::slot(read);
        out.add_constant(encode((c_lo + c_hi) as i64, half));
        Ok(out)
    }

    /// The end of a window read for windows of 16 values or more (`r ≥ 4`: a read of `z` would take
    /// 5 bits or more): `t` read twice, once for the constant outside the window (`c_lo` for
    /// `t ≤ 0`, `c_hi` for `t > 0`), once for the flag `b = [t ≠ 0]` placed at bit `r` of
    /// `z = l + b·2^r`. With `G(l) = f(base + l) − c_lo`, a plain read of `l` gives `G(l)` and a
    /// negacyclic read of `z` gives `(1 − 2b)·G(l)`, both in halves: their sum is `[t = 0]·G(l)`.
    fn window_pairs(&mut self, w: Window, plan: &WindowPlan, inside: &dyn Fn(i128) -> i128) -> Result<Lin, String> {
        let WindowPlan {
            r,
            tlo,
            thi,
            c_lo,
            c_hi,
            ..
        } = *plan;
        let Window { l, t, scale, out_scale } = w;
        let span = (0, thi - tlo);
        let mut out = if c_lo == c_hi || thi <= 0 {
            Lin::constant(encode(c_lo as i64, out_scale))
        } else if tlo > 0 {
            Lin::constant(encode(c_hi as i64, out_scale))
        } else {
            self.lookup_dyn(&t, scale + r, span, out_scale, &|t| {
                if t + tlo > 0 {
                    c_hi
                } else {
                    c_lo
                }
            })?
        };
        let flag = if tlo == 0 && thi == 0 {
            Lin::default()
        } else {
            self.lookup_dyn(&t, scale + r, span, scale, &|t| if t + tlo != 0 { 1 << r } else { 0 })?
        };
        let g = |l: i128| inside(l) - c_lo;
        let half = out_scale - 1;
        let plain = self.lookup_dyn(&l, scale, (0, (1 << r) - 1), half, &g)?;
        let mut z = l.clone();
        z.add_scaled(&flag, 1);
        let values = (0..1i128 << r).map(|u| encode(g(u) as i64, half)).collect();
        let signed = self.pbs(&z, 63 - scale - r, 0, r, values)?;
        out.add_scaled(&plain, 1);
        out.add_scaled(&Lin::slot(signed), 1);
        Ok(out)
    }

    /// The bit at position `i` of the value of `e` (at `scale`, low `i` bits zero), as a lookup
    /// output worth `−bit·2^(scale+i)` plus the constant to add. Precision-0 table.
    fn extract_bit(&mut self, e: &Lin, scale: u32, i: u32) -> Result<Lin, String> {
        let shift = 63 - scale - i;
        let half = 1u64 << (scale + i - 1);
        let out = self.pbs(e, shift, 0, 0, vec![half])?;
        let mut l = Lin::slot(out);
        l.add_constant(half.wrapping_neg());
        Ok(l)
    }
}

/// How [`Builder::lookup`] computes a wide lookup whose function is linear on each side of 0:
/// `f(v) = gamma + alpha·v` for `v ≥ 0`, `gamma + beta·v` for `v < 0` (ReLU, identity, abs,
/// integer leaky slopes…), from the bits of `v` in chunks of the given sizes (low first).
#[derive(Clone, Debug, PartialEq)]
struct BitPlan {
    alpha: i128,
    beta: i128,
    gamma: i128,
    chunks: Vec<u32>,
    /// The sign read in the padding position (needs `out_scale > scale` for the halves).
    negacyclic: bool,
}

/// Lookups this wide or wider are candidates for [`BitPlan`] (narrower ones are cheap).
const BITS_MIN_WIDTH: u32 = 5;

/// The [`BitPlan`] for `f` on `lo ..= hi` (`w` bits) when `f` is linear on each side of 0 and the
/// cost model prices the extractions and chunk lookups below one `w`-bit lookup.
fn bit_plan(lo: i128, hi: i128, w: u32, negacyclic: bool, f: &impl Fn(i128) -> i128) -> Option<BitPlan> {
    if !(BITS_MIN_WIDTH..=MAX_PBS_PRECISION).contains(&w) {
        return None;
    }
    if lo > 0 || hi < 0 {
        return None; // a range that excludes 0 has no breakpoint to split at: leave it to the table
    }
    let gamma = f(0);
    let alpha = if hi >= 1 { f(1) - gamma } else { 0 };
    let beta = if lo <= -1 { gamma - f(-1) } else { 0 };
    // a constant is left to its table (or to canonicalize); small slopes only: the chunk shares
    // stay far from the 64-bit edge
    if (alpha == 0 && beta == 0) || alpha.abs() > 1 << 16 || beta.abs() > 1 << 16 {
        return None;
    }
    if (lo..=hi).any(|v| f(v) != gamma + if v >= 0 { alpha * v } else { beta * v }) {
        return None;
    }
    let signed = lo < 0;
    let sb = u32::from(signed);
    let nbits = w - sb;
    let m = crate::cost::cost_model();
    // chunks of at most c bits, as even as possible; the cheapest c by the cost model
    let mut best: Option<(f64, Vec<u32>)> = None;
    for c in 1..=4u32.min(nbits) {
        let n = nbits.div_ceil(c);
        let chunks: Vec<u32> = (0..n).map(|i| nbits / n + u32::from(i < nbits % n)).collect();
        let extra = if negacyclic { 0 } else { sb };
        let ns = nbits as f64 * m.lookup(0) + chunks.iter().map(|&c| m.lookup(c + extra)).sum::<f64>();
        if best.as_ref().is_none_or(|b| ns < b.0) {
            best = Some((ns, chunks));
        }
    }
    let (ns, chunks) = best?;
    (ns < 0.8 * m.lookup(w)).then_some(BitPlan {
        alpha,
        beta,
        gamma,
        chunks,
        negacyclic,
    })
}

/// How [`Builder::lookup`] computes a wide lookup whose table is constant outside a window:
/// `f(v) = c_lo` for `v ≤ base`, `c_hi` for `v ≥ base + 2^r`, anything between (a requantising
/// activation whose output saturates: the PTQ networks' lookups, rounded by fewer bits than their
/// width asks for).
#[derive(Clone, Debug, PartialEq)]
struct WindowPlan {
    base: i128,
    r: u32,
    /// `⌊(lo − base) / 2^r⌋ ..= ⌊(hi − base) / 2^r⌋`: the values of `t`.
    tlo: i128,
    thi: i128,
    c_lo: i128,
    c_hi: i128,
    /// The operand's largest value.
    hi: i128,
    /// One read of `t`'s class and one `(r + 1)`-bit read ([`Builder::window_class_read`]); else two
    /// reads of `t` and two `r`-bit reads ([`Builder::window_pairs`]).
    class_read: bool,
}

/// What the two ends of a window read start from ([`Builder::lookup_on_window`]): `l` (the low `r`
/// bits) and `(t − t_lo)·2^r`, both at the operand's `scale`, and the result's scale.
struct Window {
    l: Lin,
    t: Lin,
    scale: u32,
    out_scale: u32,
}

/// Most bits of `t` ([`WindowPlan`]) read by one lookup.
const WINDOW_MAX_TOP: u32 = 4;
/// Most bits of a window's class read (`r + 1`; wider windows take the pairs of `r`-bit reads): a
/// 5-bit read needs N = 4096 and, its result being the activation, low noise there (a partition of
/// ~100 MB of keys), where 4-bit ones share N = 2048; the cost model of one lookup does not see it.
const WINDOW_MAX_READ: u32 = 4;

/// The [`WindowPlan`] for `f` on `lo ..= hi` (`w` bits, at a precision of `p` bits), when `f` is
/// constant outside a window that needs fewer lookups, by the cost model, than one `w`-bit table.
fn window_plan(lo: i128, hi: i128, w: u32, p: u32, out_scale: u32, f: &impl Fn(i128) -> i128) -> Option<WindowPlan> {
    if !(BITS_MIN_WIDTH..=MAX_PBS_PRECISION).contains(&w) || out_scale == 0 {
        return None;
    }
    let (c_lo, c_hi) = (f(lo), f(hi));
    // the first value off the low run and the last off the high run
    let a = (lo..=hi).find(|&v| f(v) != c_lo)?;
    let b = (lo..=hi).rev().find(|&v| f(v) != c_hi)?;
    // base < a and base + 2^r > b: every value at or below base is on the low run, every one at
    // or above base + 2^r on the high run. A wider window than needed may cost less: t narrower.
    let span = (b - (a - 1) + 1).max(2);
    let r_min = 128 - (span - 1).leading_zeros();
    let cm = crate::cost::cost_model();
    let mut best: Option<(f64, i128, u32, i128, i128, bool)> = None;
    for r in r_min..w {
        // of the bases that work, one on lo's grid (lo ≡ base mod 2^r) keeps t to the fewest values
        let first = lo.max(b + 1 - (1 << r));
        let aligned = lo + (((first - lo) + (1 << r) - 1) >> r << r);
        let base = if aligned < a { aligned } else { a - 1 };
        let (tlo, thi) = ((lo - base) >> r, (hi - base) >> r);
        let m = width_for(0, thi - tlo, false);
        if m > WINDOW_MAX_TOP || r + m > p {
            continue;
        }
        let extractions = r as f64 * cm.lookup(0);
        let mut consider = |cost: f64, class_read: bool| {
            if best.as_ref().is_none_or(|b| cost < b.0) {
                best = Some((cost, base, r, tlo, thi, class_read));
            }
        };
        // one read of t's class and one (r + 1)-bit read of z (none of t when the window holds
        // the range); or, where that read would be too wide, two reads of t and two r-bit reads
        if r < WINDOW_MAX_READ {
            let whole = tlo == 0 && thi == 0;
            consider(
                extractions
                    + if whole {
                        cm.lookup(r)
                    } else {
                        cm.lookup(m) + cm.lookup(r + 1)
                    },
                true,
            );
        } else {
            let reads = u32::from(!(c_lo == c_hi || thi <= 0 || tlo > 0)) + u32::from(!(tlo == 0 && thi == 0));
            consider(extractions + reads as f64 * cm.lookup(m) + 2.0 * cm.lookup(r), false);
        }
    }
    let (cost, base, r, tlo, thi, class_read) = best?;
    (cost < 0.8 * cm.lookup(w)).then_some(WindowPlan {
        base,
        r,
        tlo,
        thi,
        c_lo,
        c_hi,
        hi,
        class_read,
    })
}

/// Whether a window read ([`WindowPlan`]) of some element of the lookup `op` (`lut` or
/// `mapped_lut`) may take place: the plan then gives its operand a bit of room. A base off the
/// operand's grid needs it (`t` takes one value more than the operand's bits hold), and the two
/// reads of `t` can then share a blind rotation (many-LUT lanes need a spare bit).
fn window_needs_room(f: &Function, op: &fhec_ir::module::OpData, reach: (i128, i128)) -> bool {
    if !matches!(op.kind, OpKind::Lut | OpKind::MappedLut) {
        return false;
    }
    let xty = f.ty(op.operands[0]);
    let (tlo, thi) = xty.elem.range();
    let (lo, hi) = (reach.0.max(tlo), reach.1.min(thi));
    let (w, _) = lookup_width(lo, hi);
    if !(BITS_MIN_WIDTH..=MAX_PBS_PRECISION).contains(&w) || lo > hi {
        return false;
    }
    let n_out = f.ty(op.result).num_elements();
    let distinct = if op.kind == OpKind::Lut { n_out.min(1) } else { n_out };
    // each value evaluates the whole op: a huge layer's tables are not worth evaluating twice (no
    // room; a window read still applies where its base is on the operand's grid)
    if (hi - lo + 1) as usize * n_out.max(1) > 1 << 22 {
        return false;
    }
    let mut tables: Vec<Vec<i128>> = vec![Vec::with_capacity((hi - lo + 1) as usize); distinct];
    for v in lo..=hi {
        let t = ArrayD::from_elem(IxDyn(&xty.shape), v as i64);
        let Ok(out) = op
            .kind
            .def()
            .eval(&[&t], std::slice::from_ref(xty), &op.attrs, f.ty(op.result))
        else {
            return false;
        };
        for (j, &y) in out.iter().take(distinct).enumerate() {
            tables[j].push(y);
        }
    }
    tables.iter().any(|t| {
        let at = |v: i128| t[(v - lo) as usize];
        window_plan(lo, hi, w, w + 1, 1, &at).is_some()
    })
}

/// Exact `floor((x + bias) / 2^k)` by bit extraction. `x` is at `scale` (precision `63 − scale`);
/// the result is at `scale + k`.
fn extract_round(b: &mut Builder, x: &Lin, scale: u32, k: u32, bias: i128) -> Result<Lin, String> {
    let mut cur = x.clone();
    cur.add_constant(encode(bias as i64, scale));
    for i in 0..k {
        let slot = b.materialize(&cur)?;
        let bit = b.extract_bit(&Lin::slot(slot), scale, i)?;
        cur = Lin::slot(slot);
        cur.add_scaled(&bit, 1);
    }
    Ok(cur)
}

/// Moves `e`, a value in `range` at scale `from`, to scale `to`.
fn rescale(b: &mut Builder, e: Lin, from: u32, to: u32, range: (i128, i128)) -> Result<Lin, String> {
    if to >= from {
        Ok(e.scaled(1i128 << (to - from)))
    } else {
        b.lookup(&e, from, range, to, |v| v)
    }
}

fn flat_index_map(shape: &[usize], out: &[usize]) -> Result<Vec<usize>, String> {
    let n: usize = shape.iter().product();
    let idx = ArrayD::from_shape_vec(IxDyn(shape), (0..n).collect::<Vec<usize>>()).map_err(|e| e.to_string())?;
    let view = idx
        .broadcast(IxDyn(out))
        .ok_or_else(|| format!("cannot broadcast {shape:?} to {out:?}"))?;
    Ok(view.iter().copied().collect())
}

fn wide_to_i64(w: &ArrayD<i128>) -> Result<Tensor, String> {
    w.iter()
        .map(|&v| i64::try_from(v).map_err(|_| format!("a clear value {v} does not fit 64 bits")))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| ArrayD::from_shape_vec(w.raw_dim(), v).map_err(|e| e.to_string()))
}

struct Lowerer<'f> {
    f: &'f Function,
    plan: Plan,
    b: Builder,
    vals: Vec<Option<Val>>,
    /// Per value, the interval its elements can take (within its type's range).
    reach: Vec<(i128, i128)>,
}

impl<'f> Lowerer<'f> {
    fn get(&self, v: ValueId) -> &Val {
        self.vals[v.index()]
            .as_ref()
            .expect("values are defined before use in a verified function")
    }

    fn enc_elems(&self, v: ValueId) -> &[Lin] {
        match self.get(v) {
            Val::Enc { elems, .. } => elems,
            Val::Clear(_) | Val::Runtime { .. } => unreachable!("encrypted by type"),
        }
    }

    /// The tensor to feed an op's `eval` for operand `i`: the clear value, or `probe` for encrypted ones.
    fn eval_op(&self, op: &fhec_ir::module::OpData, args: &[Tensor]) -> Result<ArrayD<i128>, String> {
        let refs: Vec<&Tensor> = args.iter().collect();
        let types: Vec<Type> = op.operands.iter().map(|&v| self.f.ty(v).clone()).collect();
        op.kind.def().eval(&refs, &types, &op.attrs, self.f.ty(op.result))
    }

    fn clear_or_zeros(&self, v: ValueId) -> Tensor {
        match self.get(v) {
            Val::Clear(t) => t.clone(),
            Val::Enc { shape, .. } | Val::Runtime { shape, .. } => ArrayD::zeros(IxDyn(shape)),
        }
    }

    fn lower_op(&mut self, o: fhec_ir::OpId) -> Result<(), String> {
        let f = self.f;
        let op = f.op(o);
        let r = op.result;
        let rty = f.ty(r);
        let runtime = op.operands.iter().any(|&v| matches!(self.get(v), Val::Runtime { .. }));
        if runtime {
            return self.lower_runtime(o);
        }
        if !rty.is_encrypted() {
            // clear computation: constant folding with the op's own semantics
            let args: Vec<Tensor> = op.operands.iter().map(|&v| self.clear_or_zeros(v)).collect();
            let out = wide_to_i64(&self.eval_op(op, &args)?)?;
            self.vals[r.index()] = Some(Val::Clear(out));
            return Ok(());
        }
        let scale = self.plan.scale(r);
        let out_shape = rty.shape.clone();
        let n_out: usize = out_shape.iter().product();
        let elems: Vec<Lin> = match op.kind {
            OpKind::Zeros => vec![Lin::default(); n_out],
            OpKind::ToSigned | OpKind::ToUnsigned => self.enc_elems(op.operands[0]).to_vec(),
            OpKind::Neg => self.enc_elems(op.operands[0]).iter().map(|e| e.scaled(-1)).collect(),
            OpKind::Add | OpKind::Sub | OpKind::Mul => self.elementwise(op, &out_shape, scale)?,
            OpKind::Reshape
            | OpKind::Transpose
            | OpKind::Broadcast
            | OpKind::Concat
            | OpKind::Slice
            | OpKind::Gather => self.gather_like(op, n_out, scale)?,
            OpKind::Matmul | OpKind::Dot => match self.matmul_2d(op, n_out)? {
                Some(res) => res,
                None => self.probe_linear(op, n_out, scale)?,
            },
            OpKind::Sum | OpKind::Conv2d => self.probe_linear(op, n_out, scale)?,
            OpKind::Lut | OpKind::MappedLut | OpKind::MultiLut => self.table_lookups(op, n_out, scale)?,
            OpKind::MulEint => self.mul_eint(op, &out_shape, scale)?,
            OpKind::Round | OpKind::Truncate => self.round(op, scale)?,
            OpKind::Avgpool2d | OpKind::Maxpool2d => self.pool(op, scale)?,
            OpKind::Constant => unreachable!("constants are clear"),
        };
        debug_assert_eq!(elems.len(), n_out);
        self.vals[r.index()] = Some(Val::Enc {
            shape: out_shape,
            elems,
        });
        Ok(())
    }

    /// An op with a clear-argument operand: shape ops on clear arguments (index maps evaluated now,
    /// the values come at run time), or a leveled op combining them with encrypted values
    /// (`ClearLinear` instructions).
    fn lower_runtime(&mut self, o: fhec_ir::OpId) -> Result<(), String> {
        let f = self.f;
        let op = f.op(o);
        let r = op.result;
        let rty = f.ty(r);
        let refuse = || Err(format!("a clear argument cannot be an operand here: {CLEAR_ARG_USES}"));
        if !rty.is_encrypted() {
            // data movement on clear arguments: index maps at compile time
            if !op.kind.def().moves_elements() {
                return refuse();
            }
            // evaluate the shape op on (clear index + 1) tensors
            let mut args = Vec::with_capacity(op.operands.len());
            for &v in &op.operands {
                match self.get(v) {
                    Val::Runtime { shape, refs } => args.push(
                        ArrayD::from_shape_vec(IxDyn(shape), refs.iter().map(|&c| c as i64 + 1).collect())
                            .map_err(|e| e.to_string())?,
                    ),
                    _ => {
                        return Err(format!(
                            "{} of a clear argument with a constant is not supported: {CLEAR_ARG_USES}",
                            op.kind.name()
                        ))
                    }
                }
            }
            let idx = self.eval_op(op, &args)?;
            let refs = idx
                .iter()
                .map(|&i| u32::try_from(i - 1).map_err(|_| "internal error: a clear index out of range".to_string()))
                .collect::<Result<Vec<u32>, String>>()?;
            self.vals[r.index()] = Some(Val::Runtime {
                shape: rty.shape.clone(),
                refs,
            });
            return Ok(());
        }
        let scale = self.plan.scale(r);
        let out = rty.shape.clone();
        let elems = match op.kind {
            OpKind::Add | OpKind::Sub | OpKind::Mul => self.elementwise_runtime(op, &out, scale)?,
            OpKind::Matmul | OpKind::Dot => self.matmul_runtime(op, out.iter().product())?,
            OpKind::Constant
            | OpKind::Zeros
            | OpKind::Neg
            | OpKind::MulEint
            | OpKind::Sum
            | OpKind::Conv2d
            | OpKind::Avgpool2d
            | OpKind::Maxpool2d
            | OpKind::Lut
            | OpKind::MappedLut
            | OpKind::MultiLut
            | OpKind::Round
            | OpKind::Truncate
            | OpKind::ToSigned
            | OpKind::ToUnsigned
            | OpKind::Reshape
            | OpKind::Transpose
            | OpKind::Broadcast
            | OpKind::Concat
            | OpKind::Slice
            | OpKind::Gather => return refuse(),
        };
        self.vals[r.index()] = Some(Val::Enc { shape: out, elems });
        Ok(())
    }

    /// For each operand, the flat index of its element that each output element reads (numpy
    /// broadcasting to `out`).
    fn operand_maps(&self, op: &fhec_ir::module::OpData, out: &[usize]) -> Result<Vec<Vec<usize>>, String> {
        op.operands
            .iter()
            .map(|&v| flat_index_map(&self.f.ty(v).shape, out))
            .collect()
    }

    /// `x ± w`, `w − x`, `x·w` with `w` a clear argument, elementwise with broadcasting.
    fn elementwise_runtime(
        &mut self,
        op: &fhec_ir::module::OpData,
        out: &[usize],
        scale: u32,
    ) -> Result<Vec<Lin>, String> {
        let maps = self.operand_maps(op, out)?;
        let n: usize = out.iter().product();
        let sign: i128 = if op.kind == OpKind::Sub { -1 } else { 1 };
        let unit = encode(1, scale);
        let mut res = Vec::with_capacity(n);
        for j in 0..n {
            let slot = match (self.get(op.operands[0]), self.get(op.operands[1]), op.kind) {
                (Val::Enc { elems, .. }, Val::Runtime { refs, .. }, OpKind::Mul)
                | (Val::Runtime { refs, .. }, Val::Enc { elems, .. }, OpKind::Mul) => {
                    let (x, c) = if matches!(self.get(op.operands[0]), Val::Enc { .. }) {
                        (elems[maps[0][j]].clone(), refs[maps[1][j]])
                    } else {
                        (elems[maps[1][j]].clone(), refs[maps[0][j]])
                    };
                    self.b.clear_linear(&Lin::default(), &[(c, &x, 1)], &[])?
                }
                (Val::Enc { elems, .. }, Val::Runtime { refs, .. }, _) => {
                    let c = refs[maps[1][j]];
                    let unit = if sign < 0 { unit.wrapping_neg() } else { unit };
                    let x = elems[maps[0][j]].clone();
                    self.b.clear_linear(&x, &[], &[(c, unit)])?
                }
                (Val::Runtime { refs, .. }, Val::Enc { elems, .. }, _) => {
                    let c = refs[maps[0][j]];
                    let x = elems[maps[1][j]].scaled(sign);
                    self.b.clear_linear(&x, &[], &[(c, unit)])?
                }
                _ => {
                    return Err(format!(
                        "{} of a clear argument with a constant or another clear argument is not supported: {CLEAR_ARG_USES}",
                        op.kind.name()
                    ))
                }
            };
            res.push(Lin::slot(slot));
        }
        Ok(res)
    }

    /// `matmul`/`dot` of an encrypted operand and a clear argument (ranks ≤ 2): one `ClearLinear`
    /// per output element.
    fn matmul_runtime(&mut self, op: &fhec_ir::module::OpData, n_out: usize) -> Result<Vec<Lin>, String> {
        let (a, b) = (op.operands[0], op.operands[1]);
        let (sa, sb) = (self.f.ty(a).shape.clone(), self.f.ty(b).shape.clone());
        let ea = matches!(self.get(a), Val::Enc { .. });
        let (x, refs) = match (self.get(a), self.get(b)) {
            (Val::Enc { elems, .. }, Val::Runtime { refs, .. })
            | (Val::Runtime { refs, .. }, Val::Enc { elems, .. }) => (elems.clone(), refs.clone()),
            _ => {
                return Err(format!(
                    "{} needs one encrypted operand and one clear argument: {CLEAR_ARG_USES}",
                    op.kind.name()
                ))
            }
        };
        if sa.len() > 2 || sb.len() > 2 || sa.is_empty() || sb.is_empty() {
            return Err(format!(
                "{} with a clear argument takes operands of rank 1 or 2, not {sa:?} and {sb:?}",
                op.kind.name()
            ));
        }
        let (m, k) = if sa.len() == 2 { (sa[0], sa[1]) } else { (1, sa[0]) };
        let (k2, n) = if sb.len() == 2 { (sb[0], sb[1]) } else { (sb[0], 1) };
        if k != k2 || m * n != n_out {
            return Err(format!("internal error: {} shapes {sa:?} and {sb:?}", op.kind.name()));
        }
        let left = |i: usize, t: usize| i * k + t;
        let right = |j: usize, t: usize| t * n + j;
        let mut res = Vec::with_capacity(n_out);
        for i in 0..m {
            for j in 0..n {
                let products: Vec<(u32, &Lin, i128)> = (0..k)
                    .map(|t| {
                        if ea {
                            (refs[right(j, t)], &x[left(i, t)], 1)
                        } else {
                            (refs[left(i, t)], &x[right(j, t)], 1)
                        }
                    })
                    .collect();
                res.push(Lin::slot(self.b.clear_linear(&Lin::default(), &products, &[])?));
            }
        }
        Ok(res)
    }

    fn elementwise(&self, op: &fhec_ir::module::OpData, out: &[usize], scale: u32) -> Result<Vec<Lin>, String> {
        let maps = self.operand_maps(op, out)?;
        let n: usize = out.iter().product();
        let mut res = Vec::with_capacity(n);
        let sign = if op.kind == OpKind::Sub { -1 } else { 1 };
        let clear: Vec<Option<std::borrow::Cow<'_, [i64]>>> = op
            .operands
            .iter()
            .map(|&v| match self.get(v) {
                Val::Clear(c) => Some(c.as_slice_memory_order_or_vec()),
                Val::Enc { .. } | Val::Runtime { .. } => None,
            })
            .collect();
        for j in 0..n {
            let mut e = Lin::default();
            match op.kind {
                OpKind::Mul => {
                    let (a, c) = match (self.get(op.operands[0]), &clear[1], self.get(op.operands[1]), &clear[0]) {
                        (Val::Enc { elems, .. }, Some(c), _, _) => (&elems[maps[0][j]], c[maps[1][j]]),
                        (_, _, Val::Enc { elems, .. }, Some(c)) => (&elems[maps[1][j]], c[maps[0][j]]),
                        _ => return Err("fhe.mul needs one clear operand (use fhe.mul_eint)".into()),
                    };
                    e.add_scaled(a, c as i128);
                }
                _ => {
                    for (k, &v) in op.operands.iter().enumerate() {
                        let s = if k == 0 { 1 } else { sign };
                        match self.get(v) {
                            Val::Enc { elems, .. } => e.add_scaled(&elems[maps[k][j]], s),
                            Val::Clear(_) => {
                                let x = clear[k].as_ref().expect("clear")[maps[k][j]];
                                e.add_constant(encode(x.wrapping_mul(s as i64), scale));
                            }
                            Val::Runtime { .. } => unreachable!("lowered by lower_runtime"),
                        }
                    }
                }
            }
            res.push(e);
        }
        Ok(res)
    }

    /// Shape ops: evaluate the op on index tensors to learn where each output element comes from.
    fn gather_like(&self, op: &fhec_ir::module::OpData, n_out: usize, scale: u32) -> Result<Vec<Lin>, String> {
        let mut args = Vec::new();
        let mut sources: Vec<&Lin> = Vec::new();
        for &v in &op.operands {
            match self.get(v) {
                Val::Enc { shape, elems } => {
                    let base = sources.len() as i64;
                    let idx: Vec<i64> = (0..elems.len() as i64).map(|i| base + i + 1).collect();
                    args.push(ArrayD::from_shape_vec(IxDyn(shape), idx).map_err(|e| e.to_string())?);
                    sources.extend(elems.iter());
                }
                Val::Clear(_) | Val::Runtime { .. } => args.push(ArrayD::zeros(IxDyn(&self.f.ty(v).shape))),
            }
        }
        let idx = self.eval_op(op, &args)?;
        let clear_args: Vec<Tensor> = op.operands.iter().map(|&v| self.clear_or_zeros(v)).collect();
        let base = self.eval_op(op, &clear_args)?;
        let mut res = Vec::with_capacity(n_out);
        for (&i, &c) in idx.iter().zip(base.iter()) {
            if i > 0 {
                res.push(sources[(i - 1) as usize].clone());
            } else {
                res.push(Lin::constant(encode(c as i64, scale)));
            }
        }
        Ok(res)
    }

    /// `matmul`/`dot` of operands of rank ≤ 2 with one encrypted side, directly from the clear
    /// matrix (probing would evaluate the product once per input element: quadratic in the size).
    /// `None` for other shapes (batched matmul), which probing handles.
    fn matmul_2d(&self, op: &fhec_ir::module::OpData, n_out: usize) -> Result<Option<Vec<Lin>>, String> {
        let (a, b) = (op.operands[0], op.operands[1]);
        let (ea, eb) = (enc(self.f, a), enc(self.f, b));
        if ea == eb {
            return Ok(None);
        }
        let (sa, sb) = (self.f.ty(a).shape.clone(), self.f.ty(b).shape.clone());
        if sa.len() > 2 || sb.len() > 2 || sa.is_empty() || sb.is_empty() {
            return Ok(None);
        }
        // as matrices: a is (m × k) (a vector is 1 × k), b is (k × n) (a vector is k × 1)
        let (m, k) = if sa.len() == 2 { (sa[0], sa[1]) } else { (1, sa[0]) };
        let (k2, n) = if sb.len() == 2 { (sb[0], sb[1]) } else { (sb[0], 1) };
        if k != k2 || m * n != n_out {
            return Ok(None);
        }
        // the clear operand, and where each product's encrypted element and coefficient sit
        let (x, w) = if ea {
            (self.enc_elems(a), self.clear_or_zeros(b))
        } else {
            (self.enc_elems(b), self.clear_or_zeros(a))
        };
        let w = w
            .as_slice_memory_order()
            .ok_or("clear operand not in standard layout")?;
        // (i, j, t, k, n) → index in a row-major (m × k) or (k × n) operand
        type At = fn(usize, usize, usize, usize, usize) -> usize;
        let left: At = |i, _, t, k, _| i * k + t;
        let right: At = |_, j, t, _, n| t * n + j;
        let (x_at, w_at) = if ea { (left, right) } else { (right, left) };
        let mut res = vec![Lin::default(); n_out];
        for i in 0..m {
            for (j, r) in res[i * n..(i + 1) * n].iter_mut().enumerate() {
                for t in 0..k {
                    let c = w[w_at(i, j, t, k, n)];
                    if c != 0 {
                        r.add_scaled(&x[x_at(i, j, t, k, n)], c as i128);
                    }
                }
                r.normalize();
            }
        }
        Ok(Some(res))
    }

    /// Linear ops with one encrypted operand: probe with unit vectors.
    fn probe_linear(&self, op: &fhec_ir::module::OpData, n_out: usize, scale: u32) -> Result<Vec<Lin>, String> {
        let k = op
            .operands
            .iter()
            .position(|&v| enc(self.f, v))
            .expect("an encrypted operand");
        if op.operands.iter().filter(|&&v| enc(self.f, v)).count() != 1 {
            return Err(format!(
                "{} with two encrypted operands is not supported",
                op.kind.name()
            ));
        }
        let mut args: Vec<Tensor> = op.operands.iter().map(|&v| self.clear_or_zeros(v)).collect();
        let base = self.eval_op(op, &args)?;
        let mut res: Vec<Lin> = base.iter().map(|&c| Lin::constant(encode(c as i64, scale))).collect();
        let inputs = self.enc_elems(op.operands[k]).to_vec();
        for (i, input) in inputs.iter().enumerate() {
            args[k].as_slice_memory_order_mut().expect("standard layout")[i] = 1;
            let out = self.eval_op(op, &args)?;
            args[k].as_slice_memory_order_mut().expect("standard layout")[i] = 0;
            for (j, (&y, &y0)) in out.iter().zip(base.iter()).enumerate() {
                if y != y0 {
                    res[j].add_scaled(input, y - y0);
                }
            }
        }
        for r in &mut res {
            r.normalize();
        }
        debug_assert_eq!(res.len(), n_out);
        Ok(res)
    }

    fn table_lookups(
        &mut self,
        op: &fhec_ir::module::OpData,
        n_out: usize,
        out_scale: u32,
    ) -> Result<Vec<Lin>, String> {
        let x = op.operands[0];
        let xty = self.f.ty(x).clone();
        let in_scale = self.plan.scale(x);
        let range = xty.elem.range();
        let reach = self.reach[x.index()];
        let reach = (reach.0.max(range.0), reach.1.min(range.1));
        let n_in = xty.num_elements();
        let per = n_out.checked_div(n_in).unwrap_or(1); // multi_lut: K outputs per input element
                                                        // the table of every output element: evaluate the op on constant inputs
        let (lo, hi) = range;
        // one table for `lut` (every element the same), one per output element otherwise
        let distinct = if op.kind == OpKind::Lut { n_out.min(1) } else { n_out };
        let mut tables: Vec<Vec<i128>> = vec![Vec::with_capacity((hi - lo + 1) as usize); distinct];
        for v in lo..=hi {
            let t = ArrayD::from_elem(IxDyn(&xty.shape), v as i64);
            let out = self.eval_op(op, &[t])?;
            for (j, &y) in out.iter().take(distinct).enumerate() {
                tables[j].push(y);
            }
        }
        let inputs = self.enc_elems(x).to_vec();
        let mut res = Vec::with_capacity(n_out);
        for j in 0..n_out {
            let table = &tables[j.min(distinct.saturating_sub(1))];
            let e = &inputs[j / per];
            // the lookup may ask for values of its encoding beyond the type's range (a 1-bit signed
            // value read on an unsigned domain): they never occur, any entry does
            let at = |v: i128| {
                usize::try_from(v - lo)
                    .ok()
                    .and_then(|i| table.get(i))
                    .copied()
                    .unwrap_or(0)
            };
            let first = self.b.plain_lookups.len();
            res.push(self.b.lookup(e, in_scale, reach, out_scale, at)?);
            for p in &mut self.b.plain_lookups[first..] {
                p.value = Some(x);
            }
        }
        Ok(res)
    }

    fn mul_eint(&mut self, op: &fhec_ir::module::OpData, out: &[usize], out_scale: u32) -> Result<Vec<Lin>, String> {
        let (a, b) = (op.operands[0], op.operands[1]);
        let scale = self.plan.scale(a);
        let (al, ah) = self.f.ty(a).elem.range();
        let (bl, bh) = self.f.ty(b).elem.range();
        let ma = flat_index_map(&self.f.ty(a).shape, out)?;
        let mb = flat_index_map(&self.f.ty(b).shape, out)?;
        let (ea, eb) = (self.enc_elems(a).to_vec(), self.enc_elems(b).to_vec());
        let sq4 = |v: i128| (v * v).div_euclid(4);
        let mut res = Vec::with_capacity(ma.len());
        for j in 0..ma.len() {
            let mut s = ea[ma[j]].clone();
            s.add_scaled(&eb[mb[j]], 1);
            let mut d = ea[ma[j]].clone();
            d.add_scaled(&eb[mb[j]], -1);
            let mut p = self.b.lookup(&s, scale, (al + bl, ah + bh), out_scale, sq4)?;
            let q = self.b.lookup(&d, scale, (al - bh, ah - bl), out_scale, |v| -sq4(v))?;
            p.add_scaled(&q, 1);
            res.push(p);
        }
        Ok(res)
    }

    fn round(&mut self, op: &fhec_ir::module::OpData, out_scale: u32) -> Result<Vec<Lin>, String> {
        let x = op.operands[0];
        let k = lsbs(op);
        let scale = self.plan.scale(x);
        let xr = self.f.ty(x).elem.range();
        let outr = self.f.ty(op.result).elem.range();
        let bias: i128 = if op.kind == OpKind::Round && k > 0 {
            1 << (k - 1)
        } else {
            0
        };
        let inputs = self.enc_elems(x).to_vec();
        let method = self.plan.round_method[&op.result];
        let mut res = Vec::with_capacity(inputs.len());
        for e in &inputs {
            res.push(match method {
                RoundMethod::Table => self
                    .b
                    .lookup(e, scale, xr, out_scale, |v| (v + bias).div_euclid(1 << k))?,
                RoundMethod::Extract => {
                    let q = extract_round(&mut self.b, e, scale, k, bias)?;
                    rescale(&mut self.b, q, scale + k, out_scale, outr)?
                }
            });
        }
        Ok(res)
    }

    fn pool(&mut self, op: &fhec_ir::module::OpData, out_scale: u32) -> Result<Vec<Lin>, String> {
        let x = op.operands[0];
        let types = vec![self.f.ty(x).clone()];
        let (xs, win) = pool_window(&types, &op.attrs, op.kind.name())?;
        let scale = self.plan.scale(x);
        let inputs = self.enc_elems(x).to_vec();
        let (lo, hi) = self.f.ty(x).elem.range();
        let area = (win.kernel[0] * win.kernel[1]) as i128;
        let outr = self.f.ty(op.result).elem.range();
        let method = self.plan.round_method.get(&op.result).copied();
        let mut res = Vec::new();
        for bch in 0..xs[0] {
            for c in 0..xs[1] {
                for oh in 0..win.out[0] {
                    for ow in 0..win.out[1] {
                        let taps: Vec<Lin> = win
                            .taps(oh, ow, xs[2], xs[3])
                            .flatten()
                            .map(|(i, j)| inputs[((bch * xs[1] + c) * xs[2] + i) * xs[3] + j].clone())
                            .collect();
                        let v = if op.kind == OpKind::Avgpool2d {
                            let mut s = Lin::default();
                            for t in &taps {
                                s.add_scaled(t, 1);
                            }
                            let srange = (area * lo.min(0), area * hi.max(0));
                            match method {
                                Some(RoundMethod::Extract) => {
                                    let k = area.trailing_zeros();
                                    let q = extract_round(&mut self.b, &s, scale, k, 0)?;
                                    rescale(&mut self.b, q, scale + k, out_scale, outr)?
                                }
                                _ => self.b.lookup(&s, scale, srange, out_scale, |v| v.div_euclid(area))?,
                            }
                        } else {
                            // max by a balanced tree of b + relu(a − b), at the input's scale
                            let mut level = taps;
                            while level.len() > 1 {
                                let mut next = Vec::with_capacity(level.len().div_ceil(2));
                                for pair in level.chunks(2) {
                                    if let [a, b] = pair {
                                        let mut d = a.clone();
                                        d.add_scaled(b, -1);
                                        let relu = self.b.lookup(&d, scale, (lo - hi, hi - lo), scale, |v| v.max(0))?;
                                        let mut m = b.clone();
                                        m.add_scaled(&relu, 1);
                                        next.push(m);
                                    } else {
                                        next.push(pair[0].clone());
                                    }
                                }
                                level = next;
                            }
                            level.pop().ok_or("a pooling window covers only padding")?
                        };
                        res.push(v);
                    }
                }
            }
        }
        Ok(res)
    }
}

/// Where `v` is named in messages: `%name` or `%<index>`.
fn value_name(f: &Function, v: ValueId) -> String {
    match &f.value(v).name {
        Some(n) => format!("%{n}"),
        None => format!("%{}", v.index()),
    }
}

/// Lowers function `f` of a verified module. `source`, when given, locates ops in messages.
pub fn lower_function(f: &Function, source: Option<&str>) -> Result<Lowered, Diagnostic> {
    lower_function_with(f, source, &HashMap::new())
}

/// [`lower_function`], leaving at least `room[v]` bits of precision to the component of each value
/// `v` in `room`: room for many-LUT lanes ([`crate::lanes::room`] says where).
pub fn lower_function_with(
    f: &Function,
    source: Option<&str>,
    room: &HashMap<ValueId, u32>,
) -> Result<Lowered, Diagnostic> {
    lower_function_opts(f, source, room, true)
}

/// [`lower_function_with`]; `windows`: whether wide lookups constant outside a small window may be
/// read on it ([`WindowPlan`]; `crate::compile` lowers both ways where any is).
pub fn lower_function_opts(
    f: &Function,
    source: Option<&str>,
    room: &HashMap<ValueId, u32>,
    windows: bool,
) -> Result<Lowered, Diagnostic> {
    // sound value ranges (from the arguments' declared ranges): a lookup only needs its table
    // where its input can be; without them, the types' ranges
    let reach = match fhec_passes::range::declared(f) {
        Ok(r) => r.range,
        Err(_) => (0..f.num_values())
            .map(|v| f.ty(ValueId(v as u32)).elem.range())
            .collect(),
    };
    let plan = plan(f, room, windows.then_some(&reach[..]))?;
    let loc = |span: Option<fhec_ir::Span>| -> Option<String> {
        let (s, span) = (source?, span?);
        let (l, c) = fhec_ir::diag::line_col(s, span.start);
        Some(format!("{l}:{c}"))
    };
    let mut b = Builder {
        windows,
        window_lookups: 0,
        num_input_slots: 0,
        instrs: Vec::new(),
        noise: Vec::new(),
        tables: Vec::new(),
        table_ids: HashMap::new(),
        instr_origin: Vec::new(),
        origins: vec![Origin {
            op: "inputs".into(),
            location: None,
        }],
        origin: 0,
        constraints: Vec::new(),
        plain_lookups: Vec::new(),
        linear_memo: HashMap::new(),
        clear_max: Vec::new(),
    };
    let mut vals: Vec<Option<Val>> = (0..f.num_values()).map(|_| None).collect();
    // inputs
    let mut inputs = Vec::new();
    for (i, arg) in f.args.iter().enumerate() {
        let v = arg.value;
        let ty = f.ty(v);
        let name = f.value(v).name.clone().unwrap_or_else(|| format!("arg{i}"));
        // the declared range travels with the program: values outside it are refused at encryption
        let range = f
            .arg_range(i)
            .filter(|&(lo, hi)| (lo as i128, hi as i128) != ty.elem.range());
        if !ty.is_encrypted() {
            let (lo, hi) = ty.elem.range();
            let width = ty.width();
            if width > MAX_CLEAR_WIDTH {
                return Err(Diagnostic::at(
                    format!("clear argument %{name} is {width} bits wide; clear arguments take at most {MAX_CLEAR_WIDTH} bits"),
                    f.value(v).span,
                ));
            }
            let first = b.clear_max.len() as u32;
            let n = ty.num_elements();
            b.clear_max.extend(std::iter::repeat_n(lo.abs().max(hi.abs()), n));
            inputs.push(Port {
                name,
                shape: ty.shape.clone(),
                width,
                signed: ty.is_signed(),
                scale: 0,
                slots: vec![first],
                clear: true,
                range,
            });
            vals[v.index()] = Some(Val::Runtime {
                shape: ty.shape.clone(),
                refs: (first..first + n as u32).collect(),
            });
            continue;
        }
        let first = b.num_input_slots;
        let n = ty.num_elements() as u32;
        b.num_input_slots += n;
        b.noise.extend(std::iter::repeat_n((1.0, 0.0), n as usize));
        inputs.push(Port {
            name,
            shape: ty.shape.clone(),
            width: ty.width(),
            signed: ty.is_signed(),
            scale: plan.scale(v),
            slots: vec![first],
            clear: false,
            range,
        });
        vals[v.index()] = Some(Val::Enc {
            shape: ty.shape.clone(),
            elems: (first..first + n).map(Lin::slot).collect(),
        });
    }
    let mut lw = Lowerer {
        f,
        plan,
        b,
        vals,
        reach,
    };
    for &o in &f.body {
        let op = f.op(o);
        lw.b.origins.push(Origin {
            op: format!("{} {}", op.kind.name(), value_name(f, op.result)),
            location: loc(op.span),
        });
        lw.b.origin = lw.b.origins.len() as u32 - 1;
        lw.lower_op(o)
            .map_err(|e| Diagnostic::at(format!("{}: {e}", op.kind.name()), op.span))?;
    }
    // outputs
    let mut outputs = Vec::new();
    for (i, &v) in f.returns.iter().enumerate() {
        let ty = f.ty(v);
        let name = format!("out{i}");
        lw.b.origins.push(Origin {
            op: format!("output {} ({})", i, value_name(f, v)),
            location: loc(f.return_span),
        });
        lw.b.origin = lw.b.origins.len() as u32 - 1;
        let elems = match lw.get(v) {
            Val::Enc { elems, .. } => elems.clone(),
            Val::Clear(_) | Val::Runtime { .. } => {
                return Err(Diagnostic::at(
                    format!("result {i} is clear; the TFHE backend returns encrypted results only"),
                    f.return_span,
                ))
            }
        };
        let scale = lw.plan.scale(v);
        let mut slots = Vec::with_capacity(elems.len());
        for e in &elems {
            let s = lw.b.materialize(e).map_err(|e| Diagnostic::at(e, f.return_span))?;
            let (a, b2) = lw.b.noise[s as usize];
            let origin = lw.b.origin_text();
            lw.b.constraints.push(Constraint {
                precision: 63 - scale,
                fresh_weight: a,
                pbs_weight: b2,
                lookup: false,
                count: 1,
                origin,
            });
            slots.push(s);
        }
        outputs.push(Port {
            name,
            shape: ty.shape.clone(),
            width: ty.width(),
            signed: ty.is_signed(),
            scale,
            slots,
            clear: false,
            range: None,
        });
    }
    let b = lw.b;
    Ok(Lowered {
        name: f.name.clone(),
        inputs,
        outputs,
        num_input_slots: b.num_input_slots,
        instrs: b.instrs,
        tables: b.tables,
        instr_origin: b.instr_origin,
        origins: b.origins,
        constraints: b.constraints,
        plain_lookups: b.plain_lookups,
        window_lookups: b.window_lookups,
    })
}

trait SliceOrVec {
    fn as_slice_memory_order_or_vec(&self) -> std::borrow::Cow<'_, [i64]>;
}

impl SliceOrVec for Tensor {
    fn as_slice_memory_order_or_vec(&self) -> std::borrow::Cow<'_, [i64]> {
        match self.as_slice() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(self.iter().copied().collect()),
        }
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    /// A window of at most 8 values is read through `t`'s class and one 4-bit read; a wider one
    /// through the pairs of reads (its class read would take 5 bits); a table that changes
    /// everywhere has no window.
    #[test]
    fn window_plans_choose_the_class_read_for_narrow_windows() {
        let bump = |v: i128| if (20..28).contains(&v) { 3 + (v - 20) % 5 } else { 3 };
        let p = window_plan(0, 63, 6, 7, 1, &bump).expect("a window");
        assert!(p.class_read && p.r <= 3, "{p:?}");
        let ramp = |v: i128| (v - 40).clamp(0, 15);
        let p = window_plan(0, 127, 7, 8, 1, &ramp).expect("a window");
        assert!(!p.class_read && p.r >= WINDOW_MAX_READ, "{p:?}");
        // the class read at either end of a 7-bit range and around 0 of a 6-bit signed one (an
        // 8-bit one takes the pairs: with r = 3 its t would have more than WINDOW_MAX_TOP bits)
        for (lo, hi, w, f) in [
            (0, 127, 7, &(|v: i128| v.min(5)) as &dyn Fn(i128) -> i128),
            (0, 127, 7, &|v: i128| (v - 121).max(0)),
            (-32, 31, 6, &|v: i128| (v + 3).clamp(0, 7)),
        ] {
            let p = window_plan(lo, hi, w, w + 1, 1, &f).expect("a window");
            assert!(p.class_read && p.r <= 3, "{p:?}");
        }
        let square = |v: i128| v * v % 61;
        assert!(window_plan(0, 63, 6, 7, 1, &square).is_none());
    }
}
