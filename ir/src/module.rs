//! Modules, functions and the op arena.
//!
//! A [`Module`] holds functions. A [`Function`] owns two arenas, values and ops, addressed by the typed ids
//! [`ValueId`] and [`OpId`]; `body` lists the ops in program order. Every op has exactly one result value.
//! Analyses keep side tables keyed by these ids. Source locations (`Span`s) ride along for diagnostics.
//!
//! [`FunctionBuilder`] builds functions from Rust: it infers each result type from the op's declaration
//! (the widest type the operand types allow) unless one is given, so what it builds verifies.

use crate::attr::{Attribute, Attrs};
use crate::diag::{Diagnostic, Span};
use crate::ops::OpKind;
use crate::types::Type;
use std::fmt;

/// A value of a function: an argument or an op result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// An op of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl OpId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueDef {
    /// The i-th function argument.
    Arg(usize),
    /// The result of an op.
    Op(OpId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueData {
    pub ty: Type,
    pub def: ValueDef,
    /// The name the value had in the source (`%x` → `x`), kept when printing.
    pub name: Option<String>,
    pub span: Option<Span>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpData {
    pub kind: OpKind,
    pub operands: Vec<ValueId>,
    pub attrs: Attrs,
    pub result: ValueId,
    /// Location of the op name in the source.
    pub span: Option<Span>,
}

/// One function argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    pub value: ValueId,
    /// Argument attributes, such as `fhe.range = [0, 63]`, the range of values the caller promises.
    pub attrs: Attrs,
}

/// Name of the argument attribute that declares the range of an input: `{fhe.range = [lo, hi]}`.
pub const RANGE_ATTR: &str = "fhe.range";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub args: Vec<Arg>,
    pub result_types: Vec<Type>,
    values: Vec<ValueData>,
    ops: Vec<OpData>,
    /// The ops in program order.
    pub body: Vec<OpId>,
    /// The values returned by `func.return`.
    pub returns: Vec<ValueId>,
    pub span: Option<Span>,
    pub return_span: Option<Span>,
}

impl Function {
    /// An empty function with no arguments, results or ops.
    pub fn new(name: impl Into<String>) -> Function {
        Function {
            name: name.into(),
            args: Vec::new(),
            result_types: Vec::new(),
            values: Vec::new(),
            ops: Vec::new(),
            body: Vec::new(),
            returns: Vec::new(),
            span: None,
            return_span: None,
        }
    }

    pub fn value(&self, v: ValueId) -> &ValueData {
        &self.values[v.index()]
    }

    pub fn value_mut(&mut self, v: ValueId) -> &mut ValueData {
        &mut self.values[v.index()]
    }

    pub fn ty(&self, v: ValueId) -> &Type {
        &self.values[v.index()].ty
    }

    pub fn op(&self, o: OpId) -> &OpData {
        &self.ops[o.index()]
    }

    pub fn op_mut(&mut self, o: OpId) -> &mut OpData {
        &mut self.ops[o.index()]
    }

    /// Number of values in the arena (including values of ops no longer in `body`).
    pub fn num_values(&self) -> usize {
        self.values.len()
    }

    /// Number of ops in the arena (including ops no longer in `body`).
    pub fn num_ops(&self) -> usize {
        self.ops.len()
    }

    /// Per op of the arena, whether a return depends on it (transitively): everything else is dead.
    pub fn live_ops(&self) -> Vec<bool> {
        let mut live_val = vec![false; self.num_values()];
        for &v in &self.returns {
            live_val[v.index()] = true;
        }
        let mut live_op = vec![false; self.num_ops()];
        for &o in self.body.iter().rev() {
            let op = self.op(o);
            if live_val[op.result.index()] {
                live_op[o.index()] = true;
                for &x in &op.operands {
                    live_val[x.index()] = true;
                }
            }
        }
        live_op
    }

    /// Takes the ops no return depends on out of the body (they stay in the arena, unreachable);
    /// returns how many. For builders that replace a value after building it.
    pub fn drop_dead_ops(&mut self) -> usize {
        let live = self.live_ops();
        let before = self.body.len();
        self.body.retain(|o| live[o.index()]);
        before - self.body.len()
    }

    pub fn arg_values(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.args.iter().map(|a| a.value)
    }

    pub fn arg_types(&self) -> Vec<Type> {
        self.args.iter().map(|a| self.ty(a.value).clone()).collect()
    }

    /// Adds an argument of type `ty`.
    pub fn add_arg(&mut self, name: Option<String>, ty: Type, attrs: Attrs, span: Option<Span>) -> ValueId {
        let v = ValueId(self.values.len() as u32);
        self.values.push(ValueData {
            ty,
            def: ValueDef::Arg(self.args.len()),
            name,
            span,
        });
        self.args.push(Arg { value: v, attrs });
        v
    }

    /// Adds an op to the arena without placing it in `body`; returns the op and its result.
    pub fn create_op(
        &mut self,
        kind: OpKind,
        operands: Vec<ValueId>,
        attrs: Attrs,
        result_type: Type,
        name: Option<String>,
        span: Option<Span>,
    ) -> (OpId, ValueId) {
        let op = OpId(self.ops.len() as u32);
        let result = ValueId(self.values.len() as u32);
        self.values.push(ValueData {
            ty: result_type,
            def: ValueDef::Op(op),
            name,
            span,
        });
        self.ops.push(OpData {
            kind,
            operands,
            attrs,
            result,
            span,
        });
        (op, result)
    }

    /// Adds an op at the end of `body`; returns its result.
    pub fn push_op(&mut self, kind: OpKind, operands: Vec<ValueId>, attrs: Attrs, result_type: Type) -> ValueId {
        let (op, v) = self.create_op(kind, operands, attrs, result_type, None, None);
        self.body.push(op);
        v
    }

    /// The op that defines `v`, if `v` is an op result.
    pub fn def_op(&self, v: ValueId) -> Option<OpId> {
        match self.values[v.index()].def {
            ValueDef::Op(o) => Some(o),
            ValueDef::Arg(_) => None,
        }
    }

    /// The estimated work of the function: the sum of its ops' [`Cost`](crate::ops::Cost)s.
    pub fn cost(&self) -> crate::ops::Cost {
        let mut total = crate::ops::Cost::default();
        for &o in &self.body {
            let op = self.op(o);
            let types: Vec<Type> = op.operands.iter().map(|&v| self.ty(v).clone()).collect();
            total.add(&op.kind.def().cost(&types, &op.attrs, self.ty(op.result)));
        }
        total
    }

    /// The declared range of argument `i` (`fhe.range = [lo, hi]`), if any.
    pub fn arg_range(&self, i: usize) -> Option<(i64, i64)> {
        let r = self.args.get(i)?.attrs.get(RANGE_ATTR)?.as_int_array()?;
        match r.as_slice() {
            [lo, hi] => Some((*lo, *hi)),
            _ => None,
        }
    }
}

/// A compilation unit: a list of functions. The entry point is `@main`, or the only function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Module {
    pub functions: Vec<Function>,
}

impl Module {
    pub fn new() -> Module {
        Module::default()
    }

    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// `@main`, or the only function of the module.
    pub fn entry(&self) -> Result<&Function, Diagnostic> {
        if let Some(f) = self.function("main") {
            return Ok(f);
        }
        match self.functions.as_slice() {
            [f] => Ok(f),
            [] => Err(Diagnostic::new("the module has no function")),
            _ => Err(
                Diagnostic::new("the module has several functions and none is named @main")
                    .with_help("name the entry function @main"),
            ),
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::text::print_module(self))
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::text::print_function(self))
    }
}

/// Builds a function op by op, inferring result types. Each method returns the new value's id.
///
/// ```
/// use fhec_ir::{FunctionBuilder, OpKind, Type, ElemType, Attribute};
/// let mut b = FunctionBuilder::new("main");
/// let x = b.arg("x", Type::new(ElemType::EInt(3), vec![4]));
/// let y = b.op(OpKind::Neg, &[x], &[]).unwrap();
/// let f = b.ret(&[y]);
/// assert_eq!(f.ty(y).to_string(), "tensor<4x!fhe.esint<4>>");
/// ```
pub struct FunctionBuilder {
    func: Function,
}

impl FunctionBuilder {
    pub fn new(name: impl Into<String>) -> FunctionBuilder {
        FunctionBuilder {
            func: Function::new(name),
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, name: &str, ty: Type) -> ValueId {
        self.func.add_arg(Some(name.to_string()), ty, Attrs::new(), None)
    }

    /// Adds an argument whose values the caller promises to lie in `lo ..= hi`.
    pub fn arg_with_range(&mut self, name: &str, ty: Type, lo: i64, hi: i64) -> ValueId {
        let mut attrs = Attrs::new();
        attrs.insert(RANGE_ATTR.to_string(), Attribute::int_array(&[lo, hi]));
        self.func.add_arg(Some(name.to_string()), ty, attrs, None)
    }

    /// Adds an argument with attributes (e.g. `fhe.range`), as passes copy them.
    pub fn arg_with_attrs(&mut self, name: Option<String>, ty: Type, attrs: Attrs) -> ValueId {
        self.func.add_arg(name, ty, attrs, None)
    }

    /// Names a value (printed as `%name`); passes keep the names of the values they copy.
    pub fn set_name(&mut self, v: ValueId, name: Option<String>) {
        self.func.value_mut(v).name = name;
    }

    /// Gives a value, and the op that defines it, a source location: passes keep the locations of
    /// the ops they copy or replace, so that later diagnostics still point into the source.
    pub fn set_span(&mut self, v: ValueId, span: Option<Span>) {
        self.func.value_mut(v).span = span;
        if let ValueDef::Op(o) = self.func.value(v).def {
            self.func.ops[o.index()].span = span;
        }
    }

    /// Adds an op whose result type is inferred from its declaration.
    pub fn op(
        &mut self,
        kind: OpKind,
        operands: &[ValueId],
        attrs: &[(&str, Attribute)],
    ) -> Result<ValueId, Diagnostic> {
        self.op_with_type(kind, operands, attrs, None)
    }

    /// Adds an op with the given result type (or an inferred one when `ty` is `None`). Ops whose result
    /// shape is not determined by operands (`reshape`, `broadcast`, `zeros`) need the type.
    pub fn op_with_type(
        &mut self,
        kind: OpKind,
        operands: &[ValueId],
        attrs: &[(&str, Attribute)],
        ty: Option<Type>,
    ) -> Result<ValueId, Diagnostic> {
        let attrs: Attrs = attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let types: Vec<Type> = operands.iter().map(|&v| self.func.ty(v).clone()).collect();
        let ty = crate::verify::check_op(kind, &types, &attrs, ty.as_ref())
            .map_err(|e| Diagnostic::new(format!("{}: {e}", kind.name())))?;
        Ok(self.func.push_op(kind, operands.to_vec(), attrs, ty))
    }

    /// The type of a value built so far.
    pub fn ty(&self, v: ValueId) -> &Type {
        self.func.ty(v)
    }

    /// Finishes the function, returning `results`.
    pub fn ret(mut self, results: &[ValueId]) -> Function {
        self.func.result_types = results.iter().map(|&v| self.func.ty(v).clone()).collect();
        self.func.returns = results.to_vec();
        self.func
    }
}
