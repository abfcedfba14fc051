//! The clear interpreter: the definition of what every program computes.
//!
//! Values are `ndarray` integer tensors ([`Tensor`]). Each op's semantics is its [`OpDef::eval`]; this
//! module runs a verified function op by op and checks every value against its declared type. A value
//! that does not fit its width is an error naming the op, the value and its index — never a silent wrap.
//! FHE execution and simulation must return exactly what this returns.

use crate::diag::Diagnostic;
use crate::module::{Function, ValueId};
use crate::ops::{OpDef, Tensor, Wide};
use crate::types::Type;
use crate::verify::Verified;

/// Formats a multi-index as `[1, 2]`.
fn idx_str(shape: &[usize], flat: usize) -> String {
    let mut idx = vec![0; shape.len()];
    let mut rest = flat;
    for i in (0..shape.len()).rev() {
        if shape[i] > 0 {
            idx[i] = rest % shape[i];
            rest /= shape[i];
        }
    }
    format!("{idx:?}")
}

/// Checks that every value of `t` fits `ty`; `what` names the value in the error.
fn check_fits(t: &Wide, ty: &Type, what: &str) -> Result<Tensor, String> {
    if let Some((i, v)) = t.iter().enumerate().find(|(_, &v)| !ty.elem.contains(v)) {
        let (lo, hi) = ty.elem.range();
        return Err(format!(
            "{what} produced {v} at index {}, which does not fit {} ({lo} ..= {hi})",
            idx_str(t.shape(), i),
            ty.elem
        ));
    }
    Ok(t.mapv(|v| v as i64))
}

/// Checks one input against an argument of `f`: shape, width and declared range.
pub fn check_input(f: &Function, i: usize, t: &Tensor) -> Result<(), Diagnostic> {
    let arg = f.args[i].value;
    let ty = f.ty(arg);
    let name = f.value(arg).name.clone().unwrap_or_else(|| i.to_string());
    let span = f.value(arg).span;
    if t.shape() != ty.shape.as_slice() {
        return Err(Diagnostic::at(
            format!(
                "input %{name} has shape {:?}, expected {:?} ({ty})",
                t.shape(),
                ty.shape
            ),
            span,
        ));
    }
    let (lo, hi) = f.arg_range(i).map_or(ty.elem.range(), |(a, b)| (a as i128, b as i128));
    if let Some((j, v)) = t
        .iter()
        .enumerate()
        .find(|(_, &v)| (v as i128) < lo || (v as i128) > hi)
    {
        let what = if f.arg_range(i).is_some() {
            "its declared range"
        } else {
            "its type"
        };
        return Err(Diagnostic::at(
            format!(
                "input %{name} has value {v} at index {}, outside {what} {lo} ..= {hi} ({})",
                idx_str(t.shape(), j),
                ty.elem
            ),
            span,
        ));
    }
    Ok(())
}

/// Runs the entry function (`@main` or the only one) of a verified module on `inputs`.
pub fn eval(v: &Verified<'_>, inputs: &[Tensor]) -> Result<Vec<Tensor>, Diagnostic> {
    run(v.module().entry()?, inputs)
}

/// Runs the function named `name` (without `@`) of a verified module on `inputs`.
pub fn eval_function(v: &Verified<'_>, name: &str, inputs: &[Tensor]) -> Result<Vec<Tensor>, Diagnostic> {
    let f = v
        .module()
        .function(name)
        .ok_or_else(|| Diagnostic::new(format!("the module has no function @{name}")))?;
    run(f, inputs)
}

/// Runs `f`, a function of a verified module.
fn run(f: &Function, inputs: &[Tensor]) -> Result<Vec<Tensor>, Diagnostic> {
    if inputs.len() != f.args.len() {
        return Err(Diagnostic::at(
            format!("@{} takes {} input(s), {} given", f.name, f.args.len(), inputs.len()),
            f.span,
        ));
    }
    let mut vals: Vec<Option<Tensor>> = vec![None; f.num_values()];
    for (i, t) in inputs.iter().enumerate() {
        check_input(f, i, t)?;
        vals[f.args[i].value.index()] = Some(t.clone());
    }
    let get = |vals: &Vec<Option<Tensor>>, v: ValueId| -> Result<Tensor, Diagnostic> {
        vals[v.index()]
            .clone()
            .ok_or_else(|| Diagnostic::new("internal error: value used before definition"))
    };
    for &o in &f.body {
        let op = f.op(o);
        let args: Vec<Tensor> = op.operands.iter().map(|&v| get(&vals, v)).collect::<Result<_, _>>()?;
        let refs: Vec<&Tensor> = args.iter().collect();
        let types: Vec<Type> = op.operands.iter().map(|&v| f.ty(v).clone()).collect();
        let rty = f.ty(op.result);
        let def: &dyn OpDef = op.kind.def();
        let name = op.kind.name();
        let out = def
            .eval(&refs, &types, &op.attrs, rty)
            .map_err(|e| Diagnostic::at(format!("{name}: {e}"), op.span))?;
        if out.shape() != rty.shape.as_slice() {
            return Err(Diagnostic::at(
                format!(
                    "internal error: {name} produced shape {:?}, declared {}",
                    out.shape(),
                    rty
                ),
                op.span,
            ));
        }
        let t = check_fits(&out, rty, name).map_err(|e| {
            Diagnostic::at(e, op.span).with_help("declare a wider result type or narrow the input ranges")
        })?;
        vals[op.result.index()] = Some(t);
    }
    f.returns.iter().map(|&v| get(&vals, v)).collect()
}
