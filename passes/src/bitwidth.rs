//! `bitwidth`: gives every encrypted value the smallest width that holds its range.
//!
//! Ranges come from [`crate::range`]: the arguments' `fhe.range` attributes (else their types)
//! propagated through the ops, or the calibration set of the [`PassContext`] when one is given.
//! Each encrypted value (arguments included) gets `width_for(range)`, keeping its signedness (the
//! type rules of the ops depend on it). Table lookups whose input width changes get their tables
//! re-encoded to `2^w` entries (same value for every reachable input; unreachable entries repeat a
//! reachable one, so they do not widen the result). Clear values keep their types.
//!
//! Errors: a lookup whose input range needs more than 16 bits, or a value that needs more than 32
//! bits, is reported at the op with the fix.

use fhec_ir::attr::{Attribute, Dense};
use fhec_ir::module::OpData;
use fhec_ir::types::{width_for, MAX_ENCRYPTED_WIDTH, MAX_LUT_WIDTH};
use fhec_ir::{Diagnostic, Module, OpKind, Tensor, Type};
use ndarray::{ArrayD, IxDyn};

use crate::manager::{Pass, PassContext, PassInfo, PassOptions};
use crate::range::{calibrated, declared, Range};
use crate::rewrite::Rebuild;

pub static INFO: PassInfo = PassInfo {
    name: "bitwidth",
    keeps_meaning: true,
    summary: "smallest widths from value ranges (declared input ranges or a calibration set); re-encodes tables",
    options: &[],
    create: |_: &PassOptions| Ok(Box::new(Bitwidth)),
};

pub struct Bitwidth;

impl Pass for Bitwidth {
    fn run(&self, m: &mut Module, ctx: &mut PassContext) -> Result<(), Diagnostic> {
        let entry = m.entry().map(|f| f.name.clone()).ok();
        for f in &mut m.functions {
            // the calibration set describes the entry function's inputs
            let ranges = match (&ctx.calibration, Some(&f.name) == entry.as_ref()) {
                (Some(samples), true) => calibrated(f, samples)?,
                _ => declared(f)?,
            };
            let (nf, changed, tables) = rewrite(f, &ranges.range)?;
            *f = nf;
            ctx.count("widths changed", changed);
            ctx.count("tables re-encoded", tables);
        }
        Ok(())
    }
}

/// A table `[.., 2^w_old]` re-encoded for a `w_new`-bit input of signedness `signed`, whose values
/// lie in `reach`.
fn reencode(t: &Tensor, w_old: u32, w_new: u32, signed: bool, reach: Range) -> Tensor {
    let rows = t.len() >> w_old;
    let old = t.as_standard_layout();
    let old = old.as_slice().expect("standard layout");
    let n_new = 1usize << w_new;
    let mut data = Vec::with_capacity(rows * n_new);
    let value_of = |i: usize| -> i128 {
        if signed && i >= n_new / 2 {
            i as i128 - n_new as i128
        } else {
            i as i128
        }
    };
    for row in 0..rows {
        let entry = |v: i128| old[row * (1usize << w_old) + v.rem_euclid(1i128 << w_old) as usize];
        let fallback = entry(reach.0);
        for i in 0..n_new {
            let v = value_of(i);
            data.push(if v < reach.0 || v > reach.1 { fallback } else { entry(v) });
        }
    }
    let mut shape = t.shape().to_vec();
    *shape.last_mut().expect("rank ≥ 1") = n_new;
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("sizes match")
}

fn table_attr(op: &OpData) -> Option<(&'static str, &Dense)> {
    let key = op.kind.def().table_attr()?;
    match op.attrs.get(key) {
        Some(Attribute::Dense(d)) => Some((key, d)),
        _ => None,
    }
}

/// The width of every encrypted value: the smallest that holds its range, then raised to a fixpoint
/// of the ops' own constraints — ops that keep their operand's type (casts, shape ops) share one
/// width; `round`/`truncate` need `w_in > lsbs` and `w_out ≥ w_in − lsbs`.
fn plan_widths(f: &fhec_ir::Function, range: &[Range]) -> Result<Vec<u32>, Diagnostic> {
    let n = f.num_values();
    let mut w = vec![0u32; n];
    for (i, wi) in w.iter_mut().enumerate() {
        let ty = f.ty(fhec_ir::ValueId(i as u32));
        if ty.is_encrypted() {
            let (mut lo, mut hi) = range[i];
            if !ty.is_signed() {
                // an unsigned type promises non-negative values (`to_unsigned` of a signed range,
                // say): values below 0 are refused by the interpreter, so they need no bits
                lo = lo.max(0);
                hi = hi.max(0);
            }
            *wi = width_for(lo, hi, ty.is_signed());
        }
    }
    // shape ops copy elements: their operands' and result's widths are one
    let tied = |k: OpKind| k.def().moves_elements();
    for _ in 0..64 {
        let mut changed = false;
        fn raise(w: &mut [u32], v: usize, to: u32, changed: &mut bool) {
            if w[v] < to {
                w[v] = to;
                *changed = true;
            }
        }
        for &o in &f.body {
            let op = f.op(o);
            if !f.ty(op.result).is_encrypted() {
                continue;
            }
            let r = op.result.index();
            if tied(op.kind) {
                let group: Vec<usize> = std::iter::once(r)
                    .chain(
                        op.operands
                            .iter()
                            .filter(|&&v| f.ty(v).is_encrypted())
                            .map(|v| v.index()),
                    )
                    .collect();
                let m = group.iter().map(|&v| w[v]).max().unwrap_or(1);
                for v in group {
                    raise(&mut w, v, m, &mut changed);
                }
            }
            if matches!(op.kind, OpKind::Round | OpKind::Truncate) {
                let k = match op.attrs.get("lsbs") {
                    Some(Attribute::Int(k)) => *k as u32,
                    _ => 0,
                };
                let x = op.operands[0].index();
                raise(&mut w, x, k + 1, &mut changed);
                let need = w[x].saturating_sub(k);
                raise(&mut w, r, need, &mut changed);
            }
        }
        if !changed {
            break;
        }
    }
    Ok(w)
}

fn rewrite(f: &fhec_ir::Function, range: &[Range]) -> Result<(fhec_ir::Function, u64, u64), Diagnostic> {
    let mut n_narrowed = 0;
    let mut n_tables = 0;
    let widths = plan_widths(f, range)?;
    let with_width = |ty: &Type, v: fhec_ir::ValueId, op: Option<&OpData>| -> Result<Type, Diagnostic> {
        let w = widths[v.index()].max(1);
        if w > MAX_ENCRYPTED_WIDTH {
            let (lo, hi) = range[v.index()];
            let msg = format!(
                "values range over [{lo}, {hi}], {w} bits; encrypted values hold at most {MAX_ENCRYPTED_WIDTH}: round or narrow the inputs"
            );
            return Err(match op {
                Some(op) => Diagnostic::at(format!("{}: {msg}", op.kind.name()), op.span),
                None => Diagnostic::at(msg, f.value(v).span),
            });
        }
        Ok(ty.with_elem(ty.elem.with_width(w)))
    };
    // arguments: a fresh builder with narrowed argument types
    let mut b = fhec_ir::FunctionBuilder::new(f.name.clone());
    let mut map = vec![None; f.num_values()];
    for a in &f.args {
        let ty = f.ty(a.value);
        let nty = if ty.is_encrypted() {
            with_width(ty, a.value, None)?
        } else {
            ty.clone()
        };
        if nty != *ty {
            n_narrowed += 1;
        }
        // a declared range must fit the new type: with a calibration set the type follows the
        // observed range, which then becomes the declared one
        let mut attrs = a.attrs.clone();
        if let Some(Attribute::Array(r)) = attrs.get(fhec_ir::module::RANGE_ATTR) {
            let fits = r
                .iter()
                .all(|x| matches!(x, Attribute::Int(v) if nty.elem.contains(*v as i128)));
            if !fits {
                let (lo, hi) = range[a.value.index()];
                attrs.insert(
                    fhec_ir::module::RANGE_ATTR.into(),
                    Attribute::int_array(&[lo as i64, hi as i64]),
                );
            }
        }
        map[a.value.index()] = Some(b.arg_with_attrs(f.value(a.value).name.clone(), nty, attrs));
    }
    let mut r = Rebuild::from_parts(f, b, map);
    for &o in &f.body {
        let op = f.op(o);
        let ty = f.ty(op.result);
        if !ty.is_encrypted() {
            r.copy(op)?;
            continue;
        }
        let nty = with_width(ty, op.result, Some(op))?;
        if nty != *ty {
            n_narrowed += 1;
        }
        let operands = r.operands(op);
        let mut attrs = op.attrs.clone();
        if op.kind.def().table_attr().is_some() {
            let x = op.operands[0];
            let w_old = f.ty(x).width();
            let w_new = r.ty(operands[0]).width();
            if w_new > MAX_LUT_WIDTH {
                let (lo, hi) = range[x.index()];
                return Err(Diagnostic::at(
                    format!(
                        "{}: its input ranges over [{lo}, {hi}], {w_new} bits; table lookups take at most {MAX_LUT_WIDTH}",
                        op.kind.name()
                    ),
                    op.span,
                )
                .with_help("round the input first (fhe.round) or narrow the input ranges"));
            }
            let (key, d) = table_attr(op).expect("verified lookups have tables");
            let (lo, hi) = range[x.index()];
            let data = reencode(&d.data, w_old, w_new, f.ty(x).is_signed(), (lo, hi));
            // entries fit the (narrowed) result type: unreachable ones repeat a reachable entry
            let (elo, ehi) = (
                data.iter().copied().min().unwrap_or(0) as i128,
                data.iter().copied().max().unwrap_or(0) as i128,
            );
            let tsigned = elo < 0;
            let tw = width_for(elo, ehi, tsigned);
            let telem = if tsigned {
                fhec_ir::ElemType::Int(tw)
            } else {
                fhec_ir::ElemType::UInt(tw)
            };
            let dense = Dense::new(Type::new(telem, data.shape().to_vec()), data.clone())
                .map_err(|e| Diagnostic::at(e, op.span))?;
            if w_new != w_old {
                n_tables += 1;
            }
            attrs.insert(key.to_string(), Attribute::Dense(dense));
            // the result must hold every entry of the new table
            let rty = if data.iter().all(|&v| nty.elem.contains(v as i128)) {
                nty
            } else {
                ty.clone()
            };
            r.emit(op, op.kind, &operands, &attrs, rty)?;
            continue;
        }
        // ops whose result type is tied to their operands' (shape ops, …) take the inferred one
        let types: Vec<Type> = operands.iter().map(|&v| r.ty(v).clone()).collect();
        let ok = |t: &Type| fhec_ir::verify::check_op(op.kind, &types, &attrs, Some(t)).is_ok();
        let rty = if ok(&nty) {
            nty.clone()
        } else {
            match fhec_ir::verify::check_op(op.kind, &types, &attrs, None) {
                Ok(t) if ok(&t) => t,
                _ => ty.clone(),
            }
        };
        if rty == *ty && nty != *ty {
            n_narrowed -= 1;
        }
        r.emit(op, op.kind, &operands, &attrs, rty)?;
    }
    Ok((r.finish(), n_narrowed, n_tables))
}
