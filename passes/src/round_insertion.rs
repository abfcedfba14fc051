//! `round-insertion{max-lut-bits=N}`: rounds the input of every table lookup wider than N bits.
//!
//! A lookup `T[x]` on a `w`-bit input becomes `T'[round(x, k)]` with the smallest `k` for which the
//! rounded input fits N bits (its range is computed from the declared input ranges). The new table
//! is `T'[q] = T[clamp(q · 2^k)]`, the clamp keeping `q · 2^k` in the input's type range (the top
//! values round up past it). This **changes the program's meaning**: the lookup now sees its input
//! rounded to a multiple of `2^k` (round half up) — the accuracy/cost trade of Concrete ML's
//! `rounding_threshold_bits`. It is therefore not in the default pipeline; the frontends and
//! `--pipeline` ask for it. Each rounded lookup is reported with the bits it lost.
//!
//! The default threshold is where the context's cost model says a lookup's cost at least doubles
//! with one more bit (4 bits with the backend's model at the default failure probability 2^-128:
//! 4 → 5 bits costs ×2.3 per lookup; 5 bits at 2^-40; `docs/benchmarks.md`).

use fhec_ir::attr::{Attribute, Dense};
use fhec_ir::types::width_for;
use fhec_ir::{Diagnostic, Module, OpKind, Tensor, Type};
use ndarray::{ArrayD, IxDyn};

use crate::manager::{OptionSpec, Pass, PassContext, PassInfo, PassOptions};
use crate::range::declared;
use crate::rewrite::Rebuild;

pub static INFO: PassInfo = PassInfo {
    name: "round-insertion",
    keeps_meaning: false,
    summary: "rounds lookup inputs wider than max-lut-bits (changes results: an accuracy/cost trade)",
    options: &[OptionSpec {
        name: "max-lut-bits",
        help: "widest lookup input kept exact",
        default: "where the cost model's lookup cost jumps (4 at p_error 2^-128)",
    }],
    create: |o: &PassOptions| {
        let max_bits = match o.0.get("max-lut-bits") {
            None => None,
            Some(_) => {
                let n = o.int("max-lut-bits", 0)?;
                if !(1..=16).contains(&n) {
                    return Err(format!("max-lut-bits must be in 1..=16, found {n}"));
                }
                Some(n as u32)
            }
        };
        Ok(Box::new(RoundInsertion { max_bits }))
    },
};

pub struct RoundInsertion {
    /// The widest lookup input kept; `None`: the cost model's jump ([`fhec_ir::CostModel::cost_jump`]).
    pub max_bits: Option<u32>,
}

/// `floor((v + 2^(k-1)) / 2^k)`, as `fhe.round` computes it.
fn round(v: i128, k: u32) -> i128 {
    if k == 0 {
        v
    } else {
        (v + (1 << (k - 1))) >> k
    }
}

impl Pass for RoundInsertion {
    fn run(&self, m: &mut Module, ctx: &mut PassContext) -> Result<(), Diagnostic> {
        let max_bits = match self.max_bits {
            Some(b) => b,
            None => ctx.cost("round-insertion")?.cost_jump(),
        };
        for f in &mut m.functions {
            let ranges = declared(f)?;
            let mut r = Rebuild::new(f);
            for &o in &f.body {
                let op = f.op(o);
                let lookup = op.kind.def().table_attr().is_some();
                let x = op.operands.first().copied();
                let Some(x) = x.filter(|&x| lookup && f.ty(x).width() > max_bits) else {
                    r.copy(op)?;
                    continue;
                };
                let xty = f.ty(x).clone();
                let (w, signed) = (xty.width(), xty.is_signed());
                let (lo, hi) = ranges.range[x.index()];
                // the smallest k for which the rounded value fits max_bits (`fhe.round` also
                // declares at least w − k bits: run `bitwidth` first so that w is the range's width)
                let fits = |k: u32| width_for(round(lo, k), round(hi, k), signed).max(w - k);
                let Some(k) = (1..w).find(|&k| fits(k) <= max_bits) else {
                    r.copy(op)?;
                    continue;
                };
                let qty = xty.with_elem(xty.elem.with_width(fits(k)));
                let xn = r.get(x);
                let q = r
                    .builder()
                    .op_with_type(
                        OpKind::Round,
                        &[xn],
                        &[("lsbs", Attribute::Int(k as i64))],
                        Some(qty.clone()),
                    )
                    .map_err(|d| Diagnostic { span: op.span, ..d })?;
                r.builder().set_span(q, op.span);
                // the new table: T'[i] = T[clamp(v(i) · 2^k)] for the q-bit index i
                let key = op.kind.def().table_attr().unwrap_or("table");
                let Some(Attribute::Dense(d)) = op.attrs.get(key) else {
                    return Err(Diagnostic::at("lookup without a table", op.span));
                };
                let (tlo, thi) = xty.elem.range();
                let wn = qty.width();
                let n_new = 1usize << wn;
                let rows = d.data.len() >> w;
                let old = d.data.as_standard_layout();
                let old = old.as_slice().expect("standard layout");
                let mut data = Vec::with_capacity(rows * n_new);
                for row in 0..rows {
                    for i in 0..n_new {
                        let v = if signed && i >= n_new / 2 {
                            i as i128 - n_new as i128
                        } else {
                            i as i128
                        };
                        let u = (v << k).clamp(tlo, thi);
                        data.push(old[row * (1usize << w) + u.rem_euclid(1i128 << w) as usize]);
                    }
                }
                let mut shape = d.data.shape().to_vec();
                *shape.last_mut().expect("rank ≥ 1") = n_new;
                let data: Tensor = ArrayD::from_shape_vec(IxDyn(&shape), data).expect("sizes");
                let dense = Dense::new(Type::new(d.ty.elem, shape), data).map_err(|e| Diagnostic::at(e, op.span))?;
                let mut attrs = op.attrs.clone();
                attrs.insert(key.into(), Attribute::Dense(dense));
                r.emit(op, op.kind, &[q], &attrs, f.ty(op.result).clone())?;
                let name = f
                    .value(op.result)
                    .name
                    .clone()
                    .unwrap_or_else(|| op.result.index().to_string());
                ctx.count("lookups rounded", 1);
                ctx.count("bits dropped", k as u64);
                ctx.count(
                    &format!("bits dropped at {} %{name} ({w} → {wn} bits)", op.kind.name()),
                    k as u64,
                );
            }
            *f = r.finish();
        }
        Ok(())
    }
}
