//! `canonicalize`: constant folding, dead-code elimination, identity removal and merging of
//! consecutive operations with clear constants.
//!
//! * **Folding.** An op whose operands are all clear constants becomes an `fhe.constant` holding its
//!   value (computed with the op's own semantics), when the value fits the declared type.
//! * **Dead code.** Ops whose results no return depends on are dropped.
//! * **Identities.** `add x, 0`, `sub x, 0`, `mul x, 1`, a `reshape` to the same shape and a
//!   `transpose` with the identity permutation are replaced by their input — when the input has exactly the declared result type (widths are
//!   promises; a narrower input would change the types downstream).
//! * **Merging.** `(x + c1) + c2 → x + (c1 + c2)`, `(x + c1) − c2 → x + (c1 − c2)`, `(x − c1) + c2`,
//!   `(x · c1) · c2 → x · (c1 · c2)`, when the inner result has no other use; the merged op keeps the
//!   outer op's declared type.

use fhec_ir::module::{Function, OpData};
use fhec_ir::{Attribute, Diagnostic, Module, OpKind, Tensor, Type, ValueId};

use crate::manager::{Pass, PassContext, PassInfo, PassOptions};
use crate::rewrite::{clear_type_for, live_ops, Rebuild};

pub static INFO: PassInfo = PassInfo {
    name: "canonicalize",
    keeps_meaning: true,
    summary: "constant folding, dead-code elimination, identity removal, merging of consecutive clear-constant ops",
    options: &[],
    create: |_: &PassOptions| Ok(Box::new(Canonicalize)),
};

pub struct Canonicalize;

impl Pass for Canonicalize {
    fn run(&self, m: &mut Module, ctx: &mut PassContext) -> Result<(), Diagnostic> {
        for f in &mut m.functions {
            // rewrites leave dead operands behind (the constants of a merge, an identity's input
            // chain): repeat until nothing changes
            for _ in 0..8 {
                let before = f.num_ops();
                let counted: u64 = ctx.statistics().iter().map(|s| s.2).sum();
                *f = canonicalize_function(f, ctx)?;
                let after: u64 = ctx.statistics().iter().map(|s| s.2).sum();
                if f.num_ops() == before && after == counted {
                    break;
                }
            }
        }
        Ok(())
    }
}

fn all_equal(t: &Tensor, v: i64) -> bool {
    t.iter().all(|&x| x == v)
}

fn uses(f: &Function) -> Vec<usize> {
    let mut n = vec![0; f.num_values()];
    for &o in &f.body {
        for &x in &f.op(o).operands {
            n[x.index()] += 1;
        }
    }
    for &v in &f.returns {
        n[v.index()] += 1;
    }
    n
}

/// Elementwise `a op b` with numpy broadcasting, if the shapes broadcast and nothing overflows.
fn combine(a: &Tensor, b: &Tensor, op: impl Fn(i64, i64) -> Option<i64>) -> Option<Tensor> {
    let shape = fhec_ir::types::broadcast_shapes(a.shape(), b.shape())?;
    let a = a.broadcast(ndarray::IxDyn(&shape))?;
    let b = b.broadcast(ndarray::IxDyn(&shape))?;
    let v: Option<Vec<i64>> = a.iter().zip(b.iter()).map(|(&x, &y)| op(x, y)).collect();
    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), v?).ok()
}

pub fn canonicalize_function(f: &Function, ctx: &mut PassContext) -> Result<Function, Diagnostic> {
    let live = live_ops(f);
    let n_uses = uses(f);
    let mut r = Rebuild::new(f);
    // for merging: old value → (kind, old encrypted operand, constant data) of simple ops
    let mut simple: Vec<Option<(OpKind, ValueId, Tensor)>> = vec![None; f.num_values()];
    for &o in &f.body {
        if !live[o.index()] {
            ctx.count("dead ops removed", 1);
            continue;
        }
        let op = f.op(o);
        let declared = f.ty(op.result).clone();
        let new_ops = r.operands(op);
        // 1. folding
        if op.kind != OpKind::Constant && !declared.is_encrypted() {
            let consts: Option<Vec<Tensor>> = new_ops.iter().map(|&v| r.const_of(v).cloned()).collect();
            if let Some(args) = consts {
                if let Some(v) = fold(op, f, &args, &declared) {
                    r.constant(op, declared, v)?;
                    ctx.count("constants folded", 1);
                    continue;
                }
            }
        }
        // 2. identities
        if let Some(x) = identity_input(op, &r, &new_ops) {
            if *r.ty(x) == declared {
                r.replace(op, x);
                ctx.count("identities removed", 1);
                continue;
            }
        }
        // 3. merging with the op before
        if let Some((kind, x, c)) = merge(op, f, &r, &new_ops, &simple, &n_uses) {
            let mut cty = clear_type_for(&c);
            if declared.is_signed() && !cty.is_signed() {
                // keep the result signed (the outer op's type): a signed constant of one more bit
                cty = cty.with_elem(fhec_ir::ElemType::Int((cty.width() + 1).min(64)));
            }
            let types = [r.ty(r.get(x)).clone(), cty.clone()];
            let fits = fhec_ir::verify::check_type(&cty).is_ok() && c.iter().all(|&v| cty.elem.contains(v as i128));
            if fits && fhec_ir::verify::check_op(kind, &types, &Default::default(), Some(&declared)).is_ok() {
                let cv = r.new_constant(cty, c.clone())?;
                r.emit(op, kind, &[r.get(x), cv], &Default::default(), declared)?;
                simple[op.result.index()] = Some((kind, x, c));
                ctx.count("ops merged", 1);
                continue;
            }
        }
        r.copy(op)?;
        // remember `x ± c` / `x · c` for later merges
        if let [a, b] = op.operands[..] {
            let (ea, eb) = (f.ty(a).is_encrypted(), f.ty(b).is_encrypted());
            let cb = r.const_of(r.get(b)).cloned();
            let ca = r.const_of(r.get(a)).cloned();
            let has_min = cb.as_ref().is_some_and(|c| c.iter().any(|&v| v == i64::MIN));
            simple[op.result.index()] = match (op.kind, ea, eb) {
                (OpKind::Add, true, false) => cb.map(|c| (OpKind::Add, a, c)),
                (OpKind::Add, false, true) => ca.map(|c| (OpKind::Add, b, c)),
                (OpKind::Sub, true, false) => cb.map(|c| (OpKind::Add, a, c.mapv(|v| v.wrapping_neg()))),
                (OpKind::Mul, true, false) => cb.map(|c| (OpKind::Mul, a, c)),
                (OpKind::Mul, false, true) => ca.map(|c| (OpKind::Mul, b, c)),
                _ => None,
            };
            // `x − c` stored as `x + (−c)`: only exact when −c does not overflow
            if op.kind == OpKind::Sub && has_min {
                simple[op.result.index()] = None;
            }
        }
    }
    Ok(r.finish())
}

fn fold(op: &OpData, f: &Function, args: &[Tensor], declared: &Type) -> Option<Tensor> {
    let refs: Vec<&Tensor> = args.iter().collect();
    let types: Vec<Type> = op.operands.iter().map(|&v| f.ty(v).clone()).collect();
    let out = op.kind.def().eval(&refs, &types, &op.attrs, declared).ok()?;
    if out.shape() != declared.shape.as_slice() || out.iter().any(|&v| !declared.elem.contains(v)) {
        return None;
    }
    Some(out.mapv(|v| v as i64))
}

/// The input an op passes through unchanged, if it is an identity.
fn identity_input(op: &OpData, r: &Rebuild<'_>, ops: &[ValueId]) -> Option<ValueId> {
    let c = |i: usize| ops.get(i).and_then(|&v| r.const_of(v));
    match op.kind {
        OpKind::Add => {
            if c(1).is_some_and(|t| all_equal(t, 0)) {
                Some(ops[0])
            } else if c(0).is_some_and(|t| all_equal(t, 0)) {
                Some(ops[1])
            } else {
                None
            }
        }
        OpKind::Sub => c(1).is_some_and(|t| all_equal(t, 0)).then(|| ops[0]),
        OpKind::Mul => {
            if c(1).is_some_and(|t| all_equal(t, 1)) {
                Some(ops[0])
            } else if c(0).is_some_and(|t| all_equal(t, 1)) {
                Some(ops[1])
            } else {
                None
            }
        }
        OpKind::Reshape | OpKind::ToSigned | OpKind::ToUnsigned => Some(ops[0]),
        OpKind::Transpose => match op.attrs.get("perm") {
            Some(Attribute::Array(p)) => p
                .iter()
                .enumerate()
                .all(|(i, a)| matches!(a, Attribute::Int(v) if *v == i as i64))
                .then(|| ops[0]),
            _ => None,
        },
        _ => None,
    }
}

/// `(x ∘ c1) ∘ c2` → `(kind, x, c1 ∘ c2)`, when the inner op is used only here.
fn merge(
    op: &OpData,
    f: &Function,
    r: &Rebuild<'_>,
    ops: &[ValueId],
    simple: &[Option<(OpKind, ValueId, Tensor)>],
    n_uses: &[usize],
) -> Option<(OpKind, ValueId, Tensor)> {
    let [a, b] = op.operands[..] else { return None };
    let (inner, c2, sign) = match op.kind {
        OpKind::Add if r.const_of(ops[1]).is_some() => (a, r.const_of(ops[1])?, 1),
        OpKind::Add if r.const_of(ops[0]).is_some() => (b, r.const_of(ops[0])?, 1),
        OpKind::Sub if r.const_of(ops[1]).is_some() => (a, r.const_of(ops[1])?, -1),
        OpKind::Mul if r.const_of(ops[1]).is_some() => (a, r.const_of(ops[1])?, 0),
        OpKind::Mul if r.const_of(ops[0]).is_some() => (b, r.const_of(ops[0])?, 0),
        _ => return None,
    };
    if n_uses[inner.index()] != 1 || !f.ty(inner).is_encrypted() {
        return None;
    }
    let (kind, x, c1) = simple[inner.index()].as_ref()?;
    let merged = match (kind, sign) {
        (OpKind::Add, 1) => combine(c1, c2, |p, q| p.checked_add(q))?,
        (OpKind::Add, -1) => combine(c1, c2, |p, q| p.checked_sub(q))?,
        (OpKind::Mul, 0) => combine(c1, c2, |p, q| p.checked_mul(q))?,
        _ => return None,
    };
    // the merged constant must broadcast to the same result shape as before
    let shape = fhec_ir::types::broadcast_shapes(&f.ty(*x).shape, merged.shape())?;
    if shape != f.ty(op.result).shape {
        return None;
    }
    Some((*kind, *x, merged))
}
