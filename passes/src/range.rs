//! Value-range (interval) analysis of a function: for every value, the smallest and largest element
//! it can hold.
//!
//! Two sources: **declared** ranges (each argument's `fhe.range`, else its type's range), propagated
//! soundly through every op; or a **calibration** set of inputs, run through the ops (without the
//! interpreter's width checks) and observed. Transfer functions use the ops' own `eval`: monotone ops
//! are evaluated on constant-filled extremes, linear ops with clear weights on the positive and
//! negative parts of the weights, table lookups on every input value of the interval.

use fhec_ir::module::{Function, OpData};
use fhec_ir::ops::RangeRule;
use fhec_ir::{Diagnostic, Tensor, Type, ValueId};
use ndarray::{ArrayD, IxDyn};

/// An inclusive interval.
pub type Range = (i128, i128);

/// The range of every value, and the data of clear values known at compile time.
pub struct Ranges {
    pub range: Vec<Range>,
    pub clear: Vec<Option<Tensor>>,
}

fn filled(ty: &Type, v: i128) -> Tensor {
    ArrayD::from_elem(IxDyn(&ty.shape), v as i64)
}

fn min_max(t: &ArrayD<i128>) -> Option<Range> {
    let lo = t.iter().copied().min()?;
    let hi = t.iter().copied().max()?;
    Some((lo, hi))
}

fn union(a: Option<Range>, b: Option<Range>) -> Option<Range> {
    match (a, b) {
        (Some(x), Some(y)) => Some((x.0.min(y.0), x.1.max(y.1))),
        (x, None) => x,
        (None, y) => y,
    }
}

fn eval(f: &Function, op: &OpData, args: &[Tensor]) -> Result<ArrayD<i128>, Diagnostic> {
    let refs: Vec<&Tensor> = args.iter().collect();
    let types: Vec<Type> = op.operands.iter().map(|&v| f.ty(v).clone()).collect();
    op.kind
        .def()
        .eval(&refs, &types, &op.attrs, f.ty(op.result))
        .map_err(|e| Diagnostic::at(format!("{}: {e}", op.kind.name()), op.span))
}

/// An extreme value as an i64 tensor element (ranges of declared types always fit).
fn fit(v: i128, op: &OpData) -> Result<i128, Diagnostic> {
    if v < i64::MIN as i128 || v > i64::MAX as i128 {
        return Err(Diagnostic::at(
            format!("{}: a value range reaches {v}, beyond 64 bits", op.kind.name()),
            op.span,
        ));
    }
    Ok(v)
}

/// Per-element bounds of a value.
type Bounds = (ArrayD<i128>, ArrayD<i128>);

fn to_i64(t: &ArrayD<i128>, op: &OpData) -> Result<Tensor, Diagnostic> {
    t.iter()
        .map(|&v| fit(v, op).map(|v| v as i64))
        .collect::<Result<Vec<_>, _>>()
        .map(|d| ArrayD::from_shape_vec(t.raw_dim(), d).expect("same shape"))
}

fn elementwise(a: &ArrayD<i128>, b: &ArrayD<i128>, f: impl Fn(i128, i128) -> i128) -> ArrayD<i128> {
    ndarray::Zip::from(a).and(b).map_collect(|&x, &y| f(x, y))
}

/// Ranges from the arguments' declared ranges, propagated through every op, element by element
/// (a tensor's range is the union of its elements').
pub fn declared(f: &Function) -> Result<Ranges, Diagnostic> {
    let n = f.num_values();
    let mut bounds: Vec<Option<Bounds>> = vec![None; n];
    let mut clear: Vec<Option<Tensor>> = vec![None; n];
    for (i, a) in f.args.iter().enumerate() {
        let (lo, hi) = match f.arg_range(i) {
            Some((lo, hi)) => (lo as i128, hi as i128),
            None => f.ty(a.value).elem.range(),
        };
        let shape = IxDyn(&f.ty(a.value).shape);
        bounds[a.value.index()] = Some((ArrayD::from_elem(shape.clone(), lo), ArrayD::from_elem(shape, hi)));
    }
    for &o in &f.body {
        let op = f.op(o);
        let (b, c) = transfer(f, op, &bounds, &clear)?;
        let b = if c.is_none() { promised(b, f.ty(op.result)) } else { b };
        bounds[op.result.index()] = Some(b);
        clear[op.result.index()] = c;
    }
    let range = bounds
        .iter()
        .map(|b| match b {
            Some((lo, hi)) => (
                lo.iter().copied().min().unwrap_or(0),
                hi.iter().copied().max().unwrap_or(0),
            ),
            None => (0, 0),
        })
        .collect();
    Ok(Ranges { range, clear })
}

/// `b` narrowed to the declared result type: a declared width is the program's promise, which the
/// interpreter checks on every value an op produces (an input whose values do not fit is refused),
/// so over the accepted inputs the value lies in both. A frontend that knows more than interval
/// arithmetic can (a tree's leaf sum, where one leaf per tree is reached, so that the sum of `L`
/// leaf values is as wide as one of them) states it by declaring the narrow type. Elements whose
/// propagated range misses the type entirely (no input is accepted) keep the propagated range.
fn promised((mut lo, mut hi): Bounds, ty: &Type) -> Bounds {
    let (tlo, thi) = ty.elem.range();
    ndarray::Zip::from(&mut lo).and(&mut hi).for_each(|l, h| {
        let (nl, nh) = ((*l).max(tlo), (*h).min(thi));
        if nl <= nh {
            (*l, *h) = (nl, nh);
        }
    });
    (lo, hi)
}

fn transfer(
    f: &Function,
    op: &OpData,
    bounds: &[Option<Bounds>],
    clear: &[Option<Tensor>],
) -> Result<(Bounds, Option<Tensor>), Diagnostic> {
    let rty = f.ty(op.result);
    let b = |v: ValueId| bounds[v.index()].as_ref().expect("defined before use");
    // clear values known at compile time: compute them
    if op.operands.iter().all(|v| clear[v.index()].is_some()) && !rty.is_encrypted() {
        let args: Vec<Tensor> = op
            .operands
            .iter()
            .map(|v| clear[v.index()].clone().expect("known"))
            .collect();
        let out = eval(f, op, &args)?;
        return Ok(((out.clone(), out.clone()), Some(out.mapv(|v| v as i64))));
    }
    // an operand at its lower or upper bounds (the clear data when known)
    let at = |v: ValueId, high: bool| -> Result<Tensor, Diagnostic> {
        match &clear[v.index()] {
            Some(t) => Ok(t.clone()),
            None => to_i64(if high { &b(v).1 } else { &b(v).0 }, op),
        }
    };
    let enc: Vec<bool> = op.operands.iter().map(|v| clear[v.index()].is_none()).collect();
    let hull = |outs: &[ArrayD<i128>]| -> Bounds {
        let mut lo = outs[0].clone();
        let mut hi = outs[0].clone();
        for o in &outs[1..] {
            lo = elementwise(&lo, o, i128::min);
            hi = elementwise(&hi, o, i128::max);
        }
        (lo, hi)
    };
    // each op declares how its result is bounded (`OpDef::range_rule`): nothing is assumed here
    let r = match op.kind.def().range_rule() {
        RangeRule::Zero => {
            let z = ArrayD::zeros(IxDyn(&rty.shape));
            (z.clone(), z)
        }
        RangeRule::Negation => {
            let (lo, hi) = b(op.operands[0]);
            (hi.mapv(|v| -v), lo.mapv(|v| -v))
        }
        RangeRule::Difference => {
            let lo = eval(f, op, &[at(op.operands[0], false)?, at(op.operands[1], true)?])?;
            let hi = eval(f, op, &[at(op.operands[0], true)?, at(op.operands[1], false)?])?;
            hull(&[lo, hi])
        }
        // an elementwise product of two encrypted values: the four corners
        RangeRule::Bilinear if enc.len() == 2 && enc.iter().all(|&e| e) => {
            let mut outs = Vec::new();
            for (ha, hb) in [(false, false), (false, true), (true, false), (true, true)] {
                outs.push(eval(f, op, &[at(op.operands[0], ha)?, at(op.operands[1], hb)?])?);
            }
            hull(&outs)
        }
        RangeRule::Bilinear => bilinear(f, op, bounds, clear, &enc)?,
        RangeRule::Table => {
            let x = op.operands[0];
            let (lo, hi) = b(x);
            let n_in = lo.len().max(1);
            let n_out = rty.num_elements();
            let per = (n_out / n_in).max(1);
            let lo_in: Vec<i128> = lo.iter().copied().collect();
            let hi_in: Vec<i128> = hi.iter().copied().collect();
            let mut out_lo = vec![i128::MAX; n_out];
            let mut out_hi = vec![i128::MIN; n_out];
            let (vmin, vmax) = (
                lo_in.iter().copied().min().unwrap_or(0),
                hi_in.iter().copied().max().unwrap_or(0),
            );
            for v in vmin..=vmax {
                let out = eval(f, op, &[filled(f.ty(x), v)])?;
                for (j, &y) in out.iter().enumerate() {
                    let i = j / per;
                    if lo_in[i] <= v && v <= hi_in[i] {
                        out_lo[j] = out_lo[j].min(y);
                        out_hi[j] = out_hi[j].max(y);
                    }
                }
            }
            let shape = IxDyn(&rty.shape);
            (
                ArrayD::from_shape_vec(shape.clone(), out_lo).expect("shape"),
                ArrayD::from_shape_vec(shape, out_hi).expect("shape"),
            )
        }
        RangeRule::Monotone => {
            let lo: Vec<Tensor> = op.operands.iter().map(|&v| at(v, false)).collect::<Result<_, _>>()?;
            let hi: Vec<Tensor> = op.operands.iter().map(|&v| at(v, true)).collect::<Result<_, _>>()?;
            hull(&[eval(f, op, &lo)?, eval(f, op, &hi)?])
        }
    };
    Ok((r, None))
}

/// `x ⊗ W (+ bias)` with one encrypted operand `x` and clear weights: per output, the max is
/// `f(hi, W⁺) − f(lo, W⁻)` and the min `f(lo, W⁺) − f(hi, W⁻)`.
fn bilinear(
    f: &Function,
    op: &OpData,
    bounds: &[Option<Bounds>],
    clear: &[Option<Tensor>],
    enc: &[bool],
) -> Result<Bounds, Diagnostic> {
    let k = enc.iter().position(|&e| e).expect("an encrypted operand");
    let x = op.operands[k];
    let (lo, hi) = bounds[x.index()].as_ref().expect("defined");
    let (lo_t, hi_t) = (to_i64(lo, op)?, to_i64(hi, op)?);
    // the weight operand: the other one of the first two
    let w = if k == 0 { 1 } else { 0 };
    let base: Vec<Tensor> = op
        .operands
        .iter()
        .map(|&v| {
            clear[v.index()]
                .clone()
                .unwrap_or_else(|| ArrayD::zeros(IxDyn(&f.ty(v).shape)))
        })
        .collect();
    let Some(wt) = clear[op.operands[w].index()].clone() else {
        // clear weights unknown at compile time: bound |x|·|W| with the weight's range
        let (wl, wh) = bounds[op.operands[w].index()].as_ref().expect("defined");
        let xa = elementwise(lo, hi, |a, b| a.abs().max(b.abs()));
        let wa = elementwise(wl, wh, |a, b| a.abs().max(b.abs()));
        let mut args = base.clone();
        args[k] = to_i64(&xa, op)?;
        args[w] = to_i64(&wa, op)?;
        let m = eval(f, op, &args)?.mapv(|v| v.abs());
        return Ok((m.mapv(|v| -v), m));
    };
    let pos = wt.mapv(|v| v.max(0));
    let neg = wt.mapv(|v| v.saturating_neg().max(0));
    let run = |xv: &Tensor, wv: &Tensor, bias: bool| -> Result<ArrayD<i128>, Diagnostic> {
        let mut args = base.clone();
        args[k] = xv.clone();
        args[w] = wv.clone();
        if !bias {
            for (i, a) in args.iter_mut().enumerate() {
                if i != k && i != w {
                    a.fill(0);
                }
            }
        }
        eval(f, op, &args)
    };
    // bias (conv2d): f(0, 0, b)
    let zero_x = lo_t.mapv(|_| 0);
    let zero_w = wt.mapv(|_| 0);
    let b = run(&zero_x, &zero_w, true)?;
    let hi_out = &run(&hi_t, &pos, false)? - &run(&lo_t, &neg, false)? + &b;
    let lo_out = &run(&lo_t, &pos, false)? - &run(&hi_t, &neg, false)? + &b;
    Ok((lo_out, hi_out))
}

/// Ranges observed on calibration inputs: every op evaluated on every sample (no width checks).
pub fn calibrated(f: &Function, samples: &[Vec<Tensor>]) -> Result<Ranges, Diagnostic> {
    if samples.is_empty() {
        return Err(Diagnostic::new("the calibration set is empty"));
    }
    let n = f.num_values();
    let mut range: Vec<Option<Range>> = vec![None; n];
    let mut clear: Vec<Option<Tensor>> = vec![None; n];
    for (s, inputs) in samples.iter().enumerate() {
        if inputs.len() != f.args.len() {
            return Err(Diagnostic::new(format!(
                "calibration sample {s} has {} inputs, @{} takes {}",
                inputs.len(),
                f.name,
                f.args.len()
            )));
        }
        let mut vals: Vec<Option<ArrayD<i128>>> = vec![None; n];
        for (a, t) in f.args.iter().zip(inputs) {
            if t.shape() != f.ty(a.value).shape.as_slice() {
                return Err(Diagnostic::at(
                    format!(
                        "calibration sample {s}: input shape {:?}, expected {}",
                        t.shape(),
                        f.ty(a.value)
                    ),
                    f.value(a.value).span,
                ));
            }
            vals[a.value.index()] = Some(t.mapv(|v| v as i128));
        }
        for &o in &f.body {
            let op = f.op(o);
            let args: Vec<Tensor> = op
                .operands
                .iter()
                .map(|v| {
                    let t = vals[v.index()].as_ref().expect("defined before use");
                    t.iter()
                        .map(|&x| i64::try_from(x))
                        .collect::<Result<Vec<_>, _>>()
                        .map(|d| ArrayD::from_shape_vec(t.raw_dim(), d).expect("same shape"))
                        .map_err(|_| {
                            Diagnostic::at(
                                format!(
                                    "{}: an operand exceeds 64 bits on calibration sample {s}",
                                    op.kind.name()
                                ),
                                op.span,
                            )
                        })
                })
                .collect::<Result<_, _>>()?;
            let out = eval(f, op, &args)?;
            if s == 0 && !f.ty(op.result).is_encrypted() && op.operands.iter().all(|v| clear[v.index()].is_some()) {
                clear[op.result.index()] = Some(out.mapv(|v| v as i64));
            }
            range[op.result.index()] = union(range[op.result.index()], min_max(&out));
            vals[op.result.index()] = Some(out);
        }
        for a in &f.args {
            let r = vals[a.value.index()].as_ref().and_then(min_max);
            range[a.value.index()] = union(range[a.value.index()], r);
        }
    }
    Ok(Ranges {
        range: range.into_iter().map(|r| r.unwrap_or((0, 0))).collect(),
        clear,
    })
}
