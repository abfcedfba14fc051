//! Rebuilding a function op by op: the mechanism passes use to rewrite.
//!
//! [`Rebuild`] copies a function's arguments (names and attributes kept) into a fresh
//! [`FunctionBuilder`] and maps old values to new ones. A pass walks the old body and, for each op,
//! either copies it ([`Rebuild::copy`]), replaces its result by an existing new value
//! ([`Rebuild::replace`]), or emits other ops through [`Rebuild::builder`]. Every emitted op goes
//! through the verifier's op check, so a rewrite that breaks typing fails at the op, by name.

use fhec_ir::attr::{Attribute, Dense};
use fhec_ir::module::{Function, OpData};
use fhec_ir::{Diagnostic, FunctionBuilder, OpKind, Tensor, Type, ValueId};

pub struct Rebuild<'f> {
    pub old: &'f Function,
    b: FunctionBuilder,
    map: Vec<Option<ValueId>>,
    /// New values known to be clear constants, with their data.
    consts: Vec<Option<Tensor>>,
}

impl<'f> Rebuild<'f> {
    pub fn new(old: &'f Function) -> Rebuild<'f> {
        let mut b = FunctionBuilder::new(old.name.clone());
        let mut map = vec![None; old.num_values()];
        for a in &old.args {
            let v = b.arg_with_attrs(
                old.value(a.value).name.clone(),
                old.ty(a.value).clone(),
                a.attrs.clone(),
            );
            map[a.value.index()] = Some(v);
        }
        Rebuild {
            old,
            b,
            map,
            consts: Vec::new(),
        }
    }

    /// Continues from a builder whose arguments the caller made (e.g. with new types); `map` maps
    /// the old arguments to them.
    pub fn from_parts(old: &'f Function, b: FunctionBuilder, map: Vec<Option<ValueId>>) -> Rebuild<'f> {
        Rebuild {
            old,
            b,
            map,
            consts: Vec::new(),
        }
    }

    /// The new value standing for old value `v`.
    pub fn get(&self, v: ValueId) -> ValueId {
        self.map[v.index()].expect("operands are mapped before use (the body is in program order)")
    }

    /// The new value standing for old value `v`, if it has one yet.
    pub fn try_get(&self, v: ValueId) -> Option<ValueId> {
        self.map[v.index()]
    }

    /// The new values of an op's operands.
    pub fn operands(&self, op: &OpData) -> Vec<ValueId> {
        op.operands.iter().map(|&v| self.get(v)).collect()
    }

    pub fn builder(&mut self) -> &mut FunctionBuilder {
        &mut self.b
    }

    pub fn ty(&self, new: ValueId) -> &Type {
        self.b.ty(new)
    }

    /// Maps the old result of `op` to `new` (which must have a compatible type for its users).
    pub fn replace(&mut self, op: &OpData, new: ValueId) {
        self.map[op.result.index()] = Some(new);
    }

    /// Emits `kind(operands) {attrs} : declared` and names it like `op`'s result.
    pub fn emit(
        &mut self,
        op: &OpData,
        kind: OpKind,
        operands: &[ValueId],
        attrs: &fhec_ir::Attrs,
        declared: Type,
    ) -> Result<ValueId, Diagnostic> {
        let attrs: Vec<(&str, Attribute)> = attrs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let v = self
            .b
            .op_with_type(kind, operands, &attrs, Some(declared))
            .map_err(|d| Diagnostic { span: op.span, ..d })?;
        self.b.set_name(v, self.old.value(op.result).name.clone());
        self.b.set_span(v, op.span);
        self.map[op.result.index()] = Some(v);
        Ok(v)
    }

    /// Copies `op` unchanged (operands mapped).
    pub fn copy(&mut self, op: &OpData) -> Result<ValueId, Diagnostic> {
        let operands = self.operands(op);
        let v = self.emit(op, op.kind, &operands, &op.attrs, self.old.ty(op.result).clone())?;
        if op.kind == OpKind::Constant {
            if let Some(Attribute::Dense(d)) = op.attrs.get("value") {
                self.set_const(v, d.data.clone());
            }
        }
        Ok(v)
    }

    /// Emits a clear constant of type `ty` holding `data`, as `op`'s result.
    pub fn constant(&mut self, op: &OpData, ty: Type, data: Tensor) -> Result<ValueId, Diagnostic> {
        let dense = Dense::new(ty.clone(), data.clone()).map_err(|e| Diagnostic::at(e, op.span))?;
        let mut attrs = fhec_ir::Attrs::new();
        attrs.insert("value".into(), Attribute::Dense(dense));
        let v = self.emit(op, OpKind::Constant, &[], &attrs, ty)?;
        self.set_const(v, data);
        Ok(v)
    }

    /// Emits an unnamed clear constant (an operand for ops the pass builds).
    pub fn new_constant(&mut self, ty: Type, data: Tensor) -> Result<ValueId, Diagnostic> {
        let dense = Dense::new(ty.clone(), data.clone()).map_err(Diagnostic::new)?;
        let v = self
            .b
            .op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(dense))], Some(ty))?;
        self.set_const(v, data);
        Ok(v)
    }

    fn set_const(&mut self, v: ValueId, data: Tensor) {
        if self.consts.len() <= v.index() {
            self.consts.resize(v.index() + 1, None);
        }
        self.consts[v.index()] = Some(data);
    }

    /// The data of a new value that is a clear constant.
    pub fn const_of(&self, new: ValueId) -> Option<&Tensor> {
        self.consts.get(new.index()).and_then(|c| c.as_ref())
    }

    /// Finishes with the old function's returns, mapped.
    pub fn finish(self) -> Function {
        let rets: Vec<ValueId> = self.old.returns.iter().map(|&v| self.get(v)).collect();
        let mut f = self.b.ret(&rets);
        f.span = self.old.span;
        f.return_span = self.old.return_span;
        f
    }
}

/// Values used by the returns, transitively: everything else is dead ([`Function::live_ops`]).
pub fn live_ops(f: &Function) -> Vec<bool> {
    f.live_ops()
}

pub use fhec_ir::types::clear_type_for;
