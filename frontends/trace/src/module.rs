//! From a traced graph to an `fhe` module: calibration on the input set, then one op per live node
//! with the widths the input set proved.

use fhec_ir::attr::{Attribute, Attrs, Dense};
use fhec_ir::types::{clear_type_for, width_for, MAX_ENCRYPTED_WIDTH, MAX_LUT_WIDTH};
use fhec_ir::{Diagnostic, ElemType, FunctionBuilder, Module, NoiseClass, OpKind, Tensor, Type, ValueId};
use ndarray::{ArrayD, IxDyn};

use crate::graph::{Graph, Node};
use crate::{err, TraceError, Traced, Tracer};

fn diag(d: Diagnostic) -> TraceError {
    TraceError::Compile(d.message)
}

/// The type a node's value has while the graph is evaluated before any width is known: encrypted
/// values as the widest encrypted integers, clear ones as 64-bit integers. Op semantics read only the
/// shape, the encryption and the signedness of these; the widths come from the values afterwards.
fn unbounded(g: &Graph, i: usize) -> Type {
    let elem = if g.encrypted[i] {
        ElemType::ESInt(MAX_ENCRYPTED_WIDTH)
    } else {
        ElemType::Int(64)
    };
    Type::new(elem, g.shapes[i].clone())
}

/// Evaluates node `i` on the values of its operands.
fn eval_node(
    g: &Graph,
    i: usize,
    vals: &[Option<Tensor>],
    inputs: &mut dyn Iterator<Item = Tensor>,
) -> Result<Tensor, TraceError> {
    let v = |j: usize| vals[j].as_ref().expect("operands come first");
    Ok(match &g.nodes[i] {
        Node::Input { name, shape } | Node::ClearInput { name, shape } => {
            let t = inputs
                .next()
                .ok_or_else(|| TraceError::Trace(format!("missing input `{name}`")))?;
            if t.shape() != shape.as_slice() {
                return err(format!("input `{name}` has shape {:?}, traced as {shape:?}", t.shape()));
            }
            t
        }
        Node::Const(t) => t.clone(),
        Node::Univariate(a, f) => v(*a).mapv(|x| f(x)),
        Node::Op {
            kind,
            operands,
            attrs,
            what,
        } => {
            let args: Vec<&Tensor> = operands.iter().map(|&j| v(j)).collect();
            let types: Vec<Type> = operands.iter().map(|&j| unbounded(g, j)).collect();
            let wide = kind
                .def()
                .eval(&args, &types, attrs, &unbounded(g, i))
                .map_err(|e| TraceError::Trace(format!("{what} ({kind}): {e}")))?;
            let mut out = Vec::with_capacity(wide.len());
            for &x in wide.iter() {
                out.push(
                    i64::try_from(x).map_err(|_| {
                        TraceError::Trace(format!("integer overflow evaluating {what} on the input set"))
                    })?,
                );
            }
            ArrayD::from_shape_vec(IxDyn(wide.shape()), out).map_err(|e| TraceError::Trace(e.to_string()))?
        }
    })
}

impl Tracer {
    /// Evaluates every node of the graph on one sample (one tensor per input, in declaration order).
    fn eval_all(&self, inputs: &[Tensor]) -> Result<Vec<Option<Tensor>>, TraceError> {
        let g = self.g.borrow();
        let mut vals: Vec<Option<Tensor>> = vec![None; g.nodes.len()];
        let mut it = inputs.iter().cloned();
        for i in 0..g.nodes.len() {
            vals[i] = Some(eval_node(&g, i, &vals, &mut it)?);
        }
        Ok(vals)
    }

    /// The traced computation of `outputs` on one sample, on unbounded integers: each op by its
    /// declared semantics, each user function called directly.
    pub fn eval(&self, outputs: &[Traced], inputs: &[Tensor]) -> Result<Vec<Tensor>, TraceError> {
        let vals = self.eval_all(inputs)?;
        Ok(outputs.iter().map(|o| vals[o.id].clone().expect("evaluated")).collect())
    }

    /// The `fhe` module computing `outputs`, calibrated on `inputset` (one `Vec` per sample, one
    /// tensor per input in the order they were declared): every value gets the width of the range
    /// the input set gave it, inputs carry that range as `fhe.range`, and each user function becomes
    /// a table over every value its input's type can hold. Compile it with the facade (`fhec::compile`).
    pub fn module(&self, outputs: &[Traced], inputset: &[Vec<Tensor>]) -> Result<Module, TraceError> {
        self.module_with_margin(outputs, inputset, 0.0)
    }

    /// [`Tracer::module`] with a safety margin: every calibrated range `[lo, hi]` (inputs and
    /// intermediate values) is widened by `⌈m·max(|lo|, |hi|)⌉` on each side (a value never negative
    /// stays non-negative), so that inputs a little beyond the input set are accepted and
    /// intermediate values a little beyond what it produced still fit their widths, at the cost of
    /// wider values and lookups. `margin` is in `[0, 16]`.
    pub fn module_with_margin(
        &self,
        outputs: &[Traced],
        inputset: &[Vec<Tensor>],
        margin: f64,
    ) -> Result<Module, TraceError> {
        if !(0.0..=16.0).contains(&margin) {
            return err(format!("the calibration margin {margin} is not in [0, 16]"));
        }
        if inputset.is_empty() {
            return err("the input set is empty: give at least one sample");
        }
        if outputs.is_empty() {
            return err("no outputs: return at least one value");
        }
        if outputs.iter().any(|o| !std::rc::Rc::ptr_eq(&o.g, &self.g)) {
            return err("an output comes from another tracer");
        }
        let n = self.g.borrow().nodes.len();
        let mut lo = vec![i64::MAX; n];
        let mut hi = vec![i64::MIN; n];
        for sample in inputset {
            let vals = self.eval_all(sample)?;
            for (i, v) in vals.iter().enumerate() {
                if let Some(t) = v {
                    for &x in t.iter() {
                        lo[i] = lo[i].min(x);
                        hi[i] = hi[i].max(x);
                    }
                }
            }
        }
        let g = self.g.borrow();
        if let Some(o) = outputs.iter().find(|o| !g.encrypted[o.id]) {
            return err(format!(
                "output {} is clear: outputs must depend on an encrypted input",
                o.id
            ));
        }
        let mut live = vec![false; n];
        for o in outputs {
            live[o.id] = true;
        }
        for i in (0..n).rev() {
            if live[i] {
                for &o in g.nodes[i].operands() {
                    live[o] = true;
                }
            }
        }
        let range_of = |i: usize| -> (i128, i128) {
            if lo[i] > hi[i] {
                (0, 0)
            } else {
                let (l, h) = (lo[i] as i128, hi[i] as i128);
                let pad = (margin * l.abs().max(h.abs()) as f64).ceil() as i128;
                // a value that was never negative stays unsigned
                let l2 = if l >= 0 { (l - pad).max(0) } else { l - pad };
                (l2.max(i64::MIN as i128), (h + pad).min(i64::MAX as i128))
            }
        };
        let mut b = FunctionBuilder::new("main");
        let mut ids: Vec<Option<ValueId>> = vec![None; n];
        for (i, node) in g.nodes.iter().enumerate() {
            let (rlo, rhi) = range_of(i);
            let signed = rlo < 0;
            ids[i] = match node {
                // every input is declared, live or not, so that inputs keep their positions
                Node::Input { name, shape } | Node::ClearInput { name, shape } => {
                    let w = width_for(rlo, rhi, signed);
                    let elem = ElemType::new(matches!(node, Node::Input { .. }), signed, w);
                    Some(b.arg_with_range(name, Type::new(elem, shape.clone()), rlo as i64, rhi as i64))
                }
                _ if !live[i] => None,
                Node::Const(t) => Some(constant(&mut b, t, clear_type_for(t))?),
                // arithmetic and lookups need an encrypted operand; shape ops may act on clear inputs
                Node::Op { kind, what, .. } if !g.encrypted[i] && kind.def().noise_class() != NoiseClass::Zero => {
                    return clear_only(what);
                }
                Node::Univariate(..) if !g.encrypted[i] => return clear_only("a table lookup (univariate function)"),
                Node::Univariate(a, f) => Some(table(&mut b, ids[*a].expect("operands first"), f, lo[*a], hi[*a])?),
                Node::Op {
                    kind, operands, attrs, ..
                } => {
                    let ops: Vec<ValueId> = operands.iter().map(|&j| ids[j].expect("operands first")).collect();
                    Some(op(&mut b, &g, i, *kind, operands, ops, attrs, (rlo, rhi))?)
                }
            };
        }
        let rets: Vec<ValueId> = outputs.iter().map(|o| ids[o.id].expect("live")).collect();
        let mut m = Module::new();
        m.functions.push(b.ret(&rets));
        Ok(m)
    }
}

fn clear_only<T>(what: &str) -> Result<T, TraceError> {
    err(format!(
        "{what} of clear values only: clear inputs may be added to, subtracted from, multiplied with and \
         matrix-multiplied with encrypted values, reshaped and transposed; compute the rest before the call"
    ))
}

fn constant(b: &mut FunctionBuilder, t: &Tensor, ty: Type) -> Result<ValueId, TraceError> {
    let d = Dense::new(ty.clone(), t.clone()).map_err(TraceError::Compile)?;
    b.op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(d))], Some(ty))
        .map_err(diag)
}

/// A user function on value `x` (observed range `lo ..= hi`): a table over every value of its type.
fn table(b: &mut FunctionBuilder, x: ValueId, f: &crate::graph::Func, lo: i64, hi: i64) -> Result<ValueId, TraceError> {
    let xty = b.ty(x).clone();
    let w = xty.width();
    if w > MAX_LUT_WIDTH {
        return Err(TraceError::Compile(format!(
            "univariate on a {w}-bit value (range [{lo}, {hi}]); table lookups take at most {MAX_LUT_WIDTH} bits: round it first (round_bits)"
        )));
    }
    let size = 1usize << w;
    let values: Vec<i64> = (0..size)
        .map(|k| {
            let v = if xty.is_signed() && k >= size / 2 {
                k as i64 - size as i64
            } else {
                k as i64
            };
            f(v)
        })
        .collect();
    let t: Tensor = ArrayD::from_shape_vec(IxDyn(&[size]), values).expect("size");
    let (tlo, thi) = (
        t.iter().copied().min().unwrap_or(0) as i128,
        t.iter().copied().max().unwrap_or(0) as i128,
    );
    let signed = tlo < 0;
    let ow = width_for(tlo, thi, signed);
    if ow > MAX_ENCRYPTED_WIDTH {
        return Err(TraceError::Compile(format!("univariate results need {ow} bits")));
    }
    let d = Dense::new(clear_type_for(&t), t).map_err(TraceError::Compile)?;
    b.op_with_type(
        OpKind::Lut,
        &[x],
        &[("table", Attribute::Dense(d))],
        Some(xty.with_elem(ElemType::new(true, signed, ow))),
    )
    .map_err(diag)
}

/// Writes node `i`, op `kind` on `ops` (the module values of graph nodes `operands`), with the
/// result type the op infers narrowed to the observed range `r`.
#[allow(clippy::too_many_arguments)]
fn op(
    b: &mut FunctionBuilder,
    g: &Graph,
    i: usize,
    kind: OpKind,
    operands: &[usize],
    ops: Vec<ValueId>,
    attrs: &Attrs,
    r: (i128, i128),
) -> Result<ValueId, TraceError> {
    let ops = if kind == OpKind::Concat {
        signed_parts(b, g, operands, ops)?
    } else {
        ops
    };
    let types: Vec<Type> = ops.iter().map(|&v| b.ty(v).clone()).collect();
    let shape = g.shapes[i].clone();
    let declared_shape = Type::new(types[0].elem, shape.clone());
    let hint = (kind == OpKind::Reshape).then_some(&declared_shape);
    let inferred = fhec_ir::verify::check_op(kind, &types, attrs, hint)
        .map_err(|e| TraceError::Compile(format!("{}: {e}", kind.name())))?;
    let declared = if kind.def().noise_class() == NoiseClass::Zero && kind != OpKind::Concat {
        // shape ops keep their operand's element type
        Type::new(types[0].elem, shape)
    } else {
        let mut w = width_for(r.0, r.1, inferred.is_signed());
        if let (OpKind::Round, Some(Attribute::Int(k))) = (kind, attrs.get("lsbs")) {
            w = w.max(types[0].width().saturating_sub(*k as u32)).max(1);
        }
        Type::new(inferred.elem.with_width(w.min(MAX_ENCRYPTED_WIDTH)), shape)
    };
    let attrs: Vec<(&str, Attribute)> = attrs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    b.op_with_type(kind, &ops, &attrs, Some(declared)).map_err(diag)
}

/// One signedness for a concatenation: unsigned parts of a signed one become signed (a
/// reinterpretation, no ciphertext work); widths may differ.
fn signed_parts(
    b: &mut FunctionBuilder,
    g: &Graph,
    parts: &[usize],
    ops: Vec<ValueId>,
) -> Result<Vec<ValueId>, TraceError> {
    let signed = ops.iter().any(|&v| b.ty(v).is_signed());
    let mut out = Vec::with_capacity(ops.len());
    for (&p, v) in parts.iter().zip(ops) {
        let t = b.ty(v).clone();
        out.push(match &g.nodes[p] {
            _ if !signed || t.is_signed() => v,
            // an unsigned constant: the same values under a signed type
            Node::Const(c) => constant(b, c, t.with_elem(ElemType::Int(t.width() + 1)))?,
            _ => {
                let to = t.with_elem(ElemType::new(t.is_encrypted(), true, t.width() + 1));
                b.op_with_type(OpKind::ToSigned, &[v], &[], Some(to)).map_err(diag)?
            }
        });
    }
    Ok(out)
}
