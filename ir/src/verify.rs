//! The verifier. [`verify`] checks every invariant below and returns a [`Verified`] token, which the
//! clear interpreter and the lowering require: code that skips verification does not compile.
//!
//! Invariants checked, for every function of the module:
//!
//! 1. **Names**: function names are unique; `@main` or a single function is the entry (checked by users
//!    of the entry point, not here).
//! 2. **Types**: every width is in `1 ..= 32` for encrypted, `1 ..= 64` for clear signed and `1 ..= 63`
//!    for clear unsigned integers; tensor shapes are static.
//! 3. **Arguments**: the only argument attribute is `fhe.range = [lo, hi]`, with `lo ≤ hi`, both inside the
//!    argument's element type.
//! 4. **SSA and dominance**: every op of `body` appears once; its result value is defined by it; every
//!    operand and returned value is an argument or the result of an op earlier in `body`.
//! 5. **Operand count** matches the op's declaration.
//! 6. **Attributes**: every required attribute is present, none is unknown, each has the declared kind;
//!    dense attributes have a valid clear type, their type's shape, and values that fit the element type.
//! 7. **Operand kinds**: the op's encryption rule holds (all encrypted / at least one / exactly one of two /
//!    first encrypted and the rest clear / same element type).
//! 8. **Op rules and type inference**: the op's own shape and attribute rules (broadcasting, contraction
//!    sizes, table sizes = 2^input width, lookups ≤ 16 bits, axes in range, `lsbs` < width, indices in
//!    range, ...) hold, and the declared result type agrees with the inferred one: same shape and
//!    encryption, signedness by the signedness rules (signed when an operand is signed; always for `sub`
//!    and `neg`; declared for lookups, whose table values must fit), exact type for shape ops and sign
//!    casts, at least `w - lsbs` bits for `round`/`truncate`.
//! 9. **Return**: `func.return` returns as many values as the function declares, with the declared types.
//!
//! Value ranges (a value fits its declared width) cannot be checked statically in general; the clear
//! interpreter checks them on every value it computes.

use crate::attr::{Attribute, Attrs, Dense};
use crate::diag::Diagnostic;
use crate::module::{Function, Module, ValueDef, RANGE_ATTR};
use crate::ops::{OpKind, OperandRule};
use crate::types::{ElemType, Type};

/// Proof that a module passed [`verify`]. Holds the module borrowed, so it cannot change afterwards.
#[derive(Clone, Copy, Debug)]
pub struct Verified<'m> {
    module: &'m Module,
}

impl<'m> Verified<'m> {
    pub fn module(&self) -> &'m Module {
        self.module
    }
}

/// Verifies a module; on failure returns every problem found.
pub fn verify(m: &Module) -> Result<Verified<'_>, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    for (i, f) in m.functions.iter().enumerate() {
        if m.functions[..i].iter().any(|g| g.name == f.name) {
            errors.push(Diagnostic::at(format!("function @{} is defined twice", f.name), f.span));
        }
        verify_function(f, &mut errors);
    }
    if errors.is_empty() {
        Ok(Verified { module: m })
    } else {
        Err(errors)
    }
}

pub fn check_type(t: &Type) -> Result<(), String> {
    let w = t.elem.width();
    if w < 1 || w > t.elem.max_width() {
        return Err(format!(
            "width {w} of {} is out of range (1 ..= {})",
            t.elem,
            t.elem.max_width()
        ));
    }
    Ok(())
}

/// Checks an op's operands and attributes against its declaration and returns the result type: the
/// declared one when given and valid, otherwise the inferred one. Used by the verifier and the builder.
pub fn check_op(kind: OpKind, operands: &[Type], attrs: &Attrs, declared: Option<&Type>) -> Result<Type, String> {
    let def = kind.def();
    if !def.arity().accepts(operands.len()) {
        return Err(format!("expects {}, found {}", def.arity().describe(), operands.len()));
    }
    if let Some(unknown) = attrs.keys().find(|k| !def.attrs().iter().any(|s| s.name == k.as_str())) {
        let known: Vec<&str> = def.attrs().iter().map(|s| s.name).collect();
        return Err(if known.is_empty() {
            format!("unknown attribute `{unknown}`: the op takes no attributes")
        } else {
            format!("unknown attribute `{unknown}` (known: {})", known.join(", "))
        });
    }
    for spec in def.attrs() {
        match attrs.get(spec.name) {
            None if spec.required => return Err(format!("missing attribute `{}` ({})", spec.name, spec.kind.name())),
            Some(a) if !spec.kind.matches(a) => {
                return Err(format!(
                    "attribute `{}` must be {}, found {}",
                    spec.name,
                    spec.kind.name(),
                    a.kind_name()
                ))
            }
            _ => {}
        }
    }
    for (name, a) in attrs {
        if let Attribute::Dense(d) = a {
            check_type(&d.ty)
                .and_then(|_| Dense::new(d.ty.clone(), d.data.clone()).map(|_| ()))
                .map_err(|e| format!("attribute `{name}`: {e}"))?;
        }
    }
    let enc: Vec<bool> = operands.iter().map(|t| t.is_encrypted()).collect();
    match def.operand_rule() {
        OperandRule::AllEncrypted => {
            if let Some(i) = enc.iter().position(|e| !e) {
                return Err(format!("operand {i} must be encrypted, found {}", operands[i]));
            }
        }
        OperandRule::SomeEncrypted => {
            if !enc.iter().any(|&e| e) {
                return Err("at least one operand must be encrypted (fold clear arithmetic before compiling)".into());
            }
        }
        OperandRule::OneEncrypted => {
            if enc.iter().filter(|&&e| e).count() != 1 {
                return Err(format!(
                    "exactly one operand must be encrypted and the other clear, found {} and {}",
                    operands[0], operands[1]
                ));
            }
        }
        OperandRule::FirstEncrypted => {
            if !enc[0] {
                return Err(format!("operand 0 must be encrypted, found {}", operands[0]));
            }
            if let Some(i) = enc.iter().skip(1).position(|&e| e) {
                return Err(format!("operand {} must be clear, found {}", i + 1, operands[i + 1]));
            }
        }
        OperandRule::SameElem => {
            if let Some(t) = operands.iter().find(|t| t.elem != operands[0].elem) {
                return Err(format!(
                    "operands must have the same element type, found {} and {}",
                    operands[0].elem, t.elem
                ));
            }
        }
        OperandRule::SameSign => {
            let t0 = &operands[0];
            if let Some(t) = operands.iter().find(|t| t.is_signed() != t0.is_signed()) {
                return Err(format!(
                    "operands must be of one signedness, found {} and {}",
                    t0.elem, t.elem
                ));
            }
        }
        OperandRule::None => {}
    }
    let inferred = def.infer_type(operands, attrs, declared)?;
    match declared {
        Some(d) => {
            check_type(d)?;
            def.check_result(operands, attrs, &inferred, d)?;
            Ok(d.clone())
        }
        None => Ok(inferred),
    }
}

fn check_range_attr(f: &Function, i: usize, attrs: &Attrs) -> Result<(), String> {
    for (k, v) in attrs {
        if k != RANGE_ATTR {
            return Err(format!("unknown argument attribute `{k}` (known: {RANGE_ATTR})"));
        }
        let elem: ElemType = f.ty(f.args[i].value).elem;
        let r = v.as_int_array().filter(|r| r.len() == 2);
        let Some(r) = r else {
            return Err(format!("`{RANGE_ATTR}` must be `[lo, hi]`, found {v}"));
        };
        if r[0] > r[1] || !elem.contains(r[0] as i128) || !elem.contains(r[1] as i128) {
            let (lo, hi) = elem.range();
            return Err(format!(
                "`{RANGE_ATTR}` [{}, {}] must satisfy lo ≤ hi inside the range of {elem} ({lo} ..= {hi})",
                r[0], r[1]
            ));
        }
    }
    Ok(())
}

fn verify_function(f: &Function, errors: &mut Vec<Diagnostic>) {
    let mut defined = vec![false; f.num_values()];
    for (i, a) in f.args.iter().enumerate() {
        let v = f.value(a.value);
        if let Err(e) = check_type(&v.ty).and_then(|_| check_range_attr(f, i, &a.attrs)) {
            errors.push(Diagnostic::at(format!("argument {i}: {e}"), v.span));
        }
        if v.def != ValueDef::Arg(i) {
            errors.push(Diagnostic::at(
                format!("argument {i} is not defined as argument {i}"),
                v.span,
            ));
        }
        defined[a.value.index()] = true;
    }
    for t in &f.result_types {
        if let Err(e) = check_type(t) {
            errors.push(Diagnostic::at(format!("result type: {e}"), f.span));
        }
    }
    let mut seen = vec![false; f.num_ops()];
    for &o in &f.body {
        let op = f.op(o);
        let name = op.kind.name();
        if std::mem::replace(&mut seen[o.index()], true) {
            errors.push(Diagnostic::at(format!("{name}: op appears twice in the body"), op.span));
            continue;
        }
        if f.value(op.result).def != ValueDef::Op(o) {
            errors.push(Diagnostic::at(
                format!("{name}: result value is not defined by this op"),
                op.span,
            ));
            continue;
        }
        let mut ok = true;
        for (i, &v) in op.operands.iter().enumerate() {
            if v.index() >= f.num_values() || !defined[v.index()] {
                errors.push(Diagnostic::at(
                    format!("{name}: operand {i} is used before it is defined"),
                    op.span,
                ));
                ok = false;
            }
        }
        if ok {
            let types: Vec<Type> = op.operands.iter().map(|&v| f.ty(v).clone()).collect();
            if let Err(e) = check_op(op.kind, &types, &op.attrs, Some(f.ty(op.result))) {
                errors.push(Diagnostic::at(format!("{name}: {e}"), op.span));
            }
        }
        defined[op.result.index()] = true;
    }
    if f.returns.len() != f.result_types.len() {
        errors.push(Diagnostic::at(
            format!(
                "func.return returns {} value(s) but @{} declares {} result(s)",
                f.returns.len(),
                f.name,
                f.result_types.len()
            ),
            f.return_span,
        ));
    }
    for (i, (&v, t)) in f.returns.iter().zip(&f.result_types).enumerate() {
        if v.index() >= f.num_values() || !defined[v.index()] {
            errors.push(Diagnostic::at(
                format!("func.return: value {i} is not defined"),
                f.return_span,
            ));
        } else if f.ty(v) != t {
            errors.push(Diagnostic::at(
                format!(
                    "func.return: value {i} has type {} but @{} declares {t}",
                    f.ty(v),
                    f.name
                ),
                f.return_span,
            ));
        }
    }
}
