//! The traced graph and the numpy-like API on it: [`Tracer`] records, [`Traced`] values combine.
//!
//! Every node but inputs, constants and user functions is an op of the `fhe` dialect with its
//! attributes, recorded as it will be written in the module; it evaluates by the op's declared
//! semantics ([`fhec_ir::ops::OpDef::eval`]), so the traced computation and the module's clear
//! interpreter cannot disagree. A user function ([`Traced::univariate`]) stays a closure until the
//! module is built, where it becomes a table over every value its input's type can hold.

use std::cell::RefCell;
use std::ops;
use std::rc::Rc;

use fhec_ir::attr::{Attribute, Attrs, Dense};
use fhec_ir::{ElemType, OpKind, Tensor, Type};

use crate::{err, TraceError};

pub(crate) type Func = Rc<dyn Fn(i64) -> i64>;

#[derive(Clone)]
pub(crate) enum Node {
    Input {
        name: String,
        shape: Vec<usize>,
    },
    /// A clear argument: given with each call, unencrypted.
    ClearInput {
        name: String,
        shape: Vec<usize>,
    },
    Const(Tensor),
    /// An op of the `fhe` dialect; `what` names it in messages ("a sum").
    Op {
        kind: OpKind,
        operands: Vec<usize>,
        attrs: Attrs,
        what: &'static str,
    },
    /// A user's function of one value: a table lookup once the input's type is known.
    Univariate(usize, Func),
}

impl Node {
    pub(crate) fn operands(&self) -> &[usize] {
        match self {
            Node::Input { .. } | Node::ClearInput { .. } | Node::Const(_) => &[],
            Node::Op { operands, .. } => operands,
            Node::Univariate(a, _) => std::slice::from_ref(a),
        }
    }
}

#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) shapes: Vec<Vec<usize>>,
    pub(crate) encrypted: Vec<bool>,
}

/// Records a computation.
#[derive(Clone, Default)]
pub struct Tracer {
    pub(crate) g: Rc<RefCell<Graph>>,
}

/// A traced value (encrypted, or a clear constant folded into the graph).
#[derive(Clone)]
pub struct Traced {
    pub(crate) g: Rc<RefCell<Graph>>,
    pub(crate) id: usize,
}

fn attrs(items: Vec<(&str, Attribute)>) -> Attrs {
    items.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn ints(v: &[usize]) -> Attribute {
    Attribute::int_array(&v.iter().map(|&x| x as i64).collect::<Vec<_>>())
}

impl Tracer {
    pub fn new() -> Tracer {
        Tracer::default()
    }

    /// An encrypted input of the given shape.
    pub fn input(&self, name: &str, shape: &[usize]) -> Traced {
        self.push(
            Node::Input {
                name: name.into(),
                shape: shape.to_vec(),
            },
            shape.to_vec(),
            true,
        )
    }

    /// A clear input of the given shape: a value given with each call (not encrypted, not fixed
    /// at compile time), such as weights. It may be added to, subtracted from, multiplied with and
    /// matrix-multiplied with encrypted values, and reshaped or transposed.
    pub fn clear_input(&self, name: &str, shape: &[usize]) -> Traced {
        self.push(
            Node::ClearInput {
                name: name.into(),
                shape: shape.to_vec(),
            },
            shape.to_vec(),
            false,
        )
    }

    /// A clear constant.
    pub fn constant(&self, t: Tensor) -> Traced {
        let shape = t.shape().to_vec();
        self.push(Node::Const(t), shape, false)
    }

    pub(crate) fn push(&self, n: Node, shape: Vec<usize>, enc: bool) -> Traced {
        let mut g = self.g.borrow_mut();
        g.nodes.push(n);
        g.shapes.push(shape);
        g.encrypted.push(enc);
        Traced {
            g: self.g.clone(),
            id: g.nodes.len() - 1,
        }
    }
}

fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, TraceError> {
    fhec_ir::types::broadcast_shapes(a, b)
        .ok_or_else(|| TraceError::Trace(format!("shapes {a:?} and {b:?} do not broadcast")))
}

impl Traced {
    /// The tracer this value belongs to.
    pub fn tracer(&self) -> Tracer {
        Tracer { g: self.g.clone() }
    }
    pub fn shape(&self) -> Vec<usize> {
        self.g.borrow().shapes[self.id].clone()
    }
    fn enc(&self) -> bool {
        self.g.borrow().encrypted[self.id]
    }
    /// Whether the value is encrypted (depends on an encrypted input).
    pub fn is_encrypted(&self) -> bool {
        self.enc()
    }
    /// Records op `kind` on these operands with the result's shape (encrypted when an operand is).
    fn op(&self, kind: OpKind, operands: &[&Traced], attrs: Attrs, what: &'static str, shape: Vec<usize>) -> Traced {
        let enc = operands.iter().any(|o| o.enc());
        let node = Node::Op {
            kind,
            operands: operands.iter().map(|o| o.id).collect(),
            attrs,
            what,
        };
        self.tracer().push(node, shape, enc)
    }
    fn binary(&self, other: &Traced, kind: OpKind, what: &'static str) -> Result<Traced, TraceError> {
        if !Rc::ptr_eq(&self.g, &other.g) {
            return err("the values come from different tracers");
        }
        let shape = broadcast(&self.shape(), &other.shape())?;
        Ok(self.op(kind, &[self, other], Attrs::new(), what, shape))
    }
    fn konst(&self, c: i64) -> Traced {
        self.tracer().constant(ndarray::arr0(c).into_dyn())
    }

    pub fn try_add(&self, o: &Traced) -> Result<Traced, TraceError> {
        self.binary(o, OpKind::Add, "an addition")
    }
    pub fn try_sub(&self, o: &Traced) -> Result<Traced, TraceError> {
        self.binary(o, OpKind::Sub, "a subtraction")
    }
    pub fn try_mul(&self, o: &Traced) -> Result<Traced, TraceError> {
        // two encrypted factors: fhe.mul_eint (lookups); else a leveled product
        let kind = if self.enc() && o.enc() {
            OpKind::MulEint
        } else {
            OpKind::Mul
        };
        self.binary(o, kind, "a product")
    }
    pub fn neg(&self) -> Traced {
        self.op(OpKind::Neg, &[self], Attrs::new(), "a negation", self.shape())
    }

    /// `self @ w` with a clear matrix (numpy `matmul`, rank 1 or 2). Panics on other shapes, like the
    /// operators (`+ - *` panic when shapes do not broadcast); the `try_*` methods return errors instead.
    pub fn matmul(&self, w: &Tensor) -> Traced {
        self.try_matmul(w).expect("matmul shapes")
    }
    pub fn try_matmul(&self, w: &Tensor) -> Result<Traced, TraceError> {
        let c = self.tracer().constant(w.clone());
        self.try_matmul_value(&c)
    }

    /// `self @ w` with another traced value (ranks 1 and 2): one side encrypted and the other a clear
    /// constant or clear input (a leveled matmul), or both encrypted (elementwise products by
    /// `fhe.mul_eint`, two lookups each, then a sum).
    pub fn try_matmul_value(&self, w: &Traced) -> Result<Traced, TraceError> {
        if !Rc::ptr_eq(&self.g, &w.g) {
            return err("the values come from different tracers");
        }
        let a = self.shape();
        let b = w.shape();
        let shape = match (a.len(), b.len()) {
            (1, 2) if a[0] == b[0] => vec![b[1]],
            (2, 2) if a[1] == b[0] => vec![a[0], b[1]],
            (2, 1) if a[1] == b[0] => vec![a[0]],
            (1, 1) if a[0] == b[0] => vec![],
            _ => return err(format!("matmul of shapes {a:?} and {b:?} (ranks 1 and 2 supported)")),
        };
        if self.enc() && w.enc() {
            // both encrypted: (m, k, 1) · (1, k, n) elementwise (fhe.mul_eint, two lookups per
            // product), summed over k
            let (m, k) = if a.len() == 2 { (a[0], a[1]) } else { (1, a[0]) };
            let n = if b.len() == 2 { b[1] } else { 1 };
            let x = self.reshape(&[m, k, 1])?;
            let y = w.reshape(&[1, k, n])?;
            return x.try_mul(&y)?.try_sum(&[1], false)?.reshape(&shape);
        }
        Ok(self.op(OpKind::Matmul, &[self, w], Attrs::new(), "a matmul", shape))
    }

    /// Sum over `axes` (all when empty).
    pub fn sum(&self, axes: &[usize], keep_dims: bool) -> Traced {
        self.try_sum(axes, keep_dims).expect("axes in range")
    }

    pub fn try_sum(&self, axes: &[usize], keep_dims: bool) -> Result<Traced, TraceError> {
        let s = self.shape();
        let mut seen = axes.to_vec();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != axes.len() || axes.iter().any(|&a| a >= s.len()) {
            return err(format!(
                "sum axes {axes:?} are not distinct axes of a rank-{} value",
                s.len()
            ));
        }
        Ok(self.sum_unchecked(axes, keep_dims))
    }

    fn sum_unchecked(&self, axes: &[usize], keep_dims: bool) -> Traced {
        let s = self.shape();
        let axes: Vec<usize> = if axes.is_empty() {
            (0..s.len()).collect()
        } else {
            axes.to_vec()
        };
        let shape: Vec<usize> = s
            .iter()
            .enumerate()
            .filter_map(|(i, &d)| {
                if axes.contains(&i) {
                    keep_dims.then_some(1)
                } else {
                    Some(d)
                }
            })
            .collect();
        let a = attrs(vec![("axes", ints(&axes)), ("keep_dims", Attribute::Bool(keep_dims))]);
        self.op(OpKind::Sum, &[self], a, "a sum", shape)
    }

    /// numpy `concatenate(parts, axis)`: all parts encrypted (or all clear inputs), same rank, equal
    /// dimensions except along `axis`.
    pub fn concat(parts: &[Traced], axis: usize) -> Result<Traced, TraceError> {
        let Some(first) = parts.first() else {
            return err("concatenation of no values");
        };
        if parts.iter().any(|p| !Rc::ptr_eq(&p.g, &first.g)) {
            return err("the values come from different tracers");
        }
        // encrypted parts may be joined by constants (noiseless elements), not by clear inputs
        let enc = parts.iter().any(|p| p.enc());
        let is_const = |p: &Traced| matches!(p.g.borrow().nodes[p.id], Node::Const(_));
        if enc && parts.iter().any(|p| !p.enc() && !is_const(p)) {
            return err("a concatenation of encrypted values and a clear input is not supported (encrypt it)");
        }
        let s0 = first.shape();
        if axis >= s0.len() {
            return err(format!("axis {axis} is out of range for values of rank {}", s0.len()));
        }
        let mut shape = s0.clone();
        for p in &parts[1..] {
            let s = p.shape();
            if s.len() != s0.len() || s.iter().zip(&s0).enumerate().any(|(i, (a, b))| i != axis && a != b) {
                return err(format!("cannot concatenate shapes {s0:?} and {s:?} along axis {axis}"));
            }
            shape[axis] += s[axis];
        }
        let refs: Vec<&Traced> = parts.iter().collect();
        let a = attrs(vec![("axis", Attribute::Int(axis as i64))]);
        Ok(first.op(OpKind::Concat, &refs, a, "a concatenation", shape))
    }

    /// numpy `take(x, indices, axis)` (also integer-array indexing `x[:, [2, 0]]`): the result's shape
    /// is `shape[..axis] ++ indices.shape ++ shape[axis+1..]`. Indices must lie in `0 .. shape[axis]`.
    pub fn try_take(&self, indices: &Tensor, axis: usize) -> Result<Traced, TraceError> {
        let s = self.shape();
        if axis >= s.len() {
            return err(format!("axis {axis} is out of range for a value of rank {}", s.len()));
        }
        if let Some(v) = indices.iter().find(|&&v| v < 0 || v as u64 >= s[axis] as u64) {
            return err(format!(
                "index {v} is out of bounds for axis {axis} with size {}",
                s[axis]
            ));
        }
        let mut shape = s[..axis].to_vec();
        shape.extend(indices.shape());
        shape.extend(&s[axis + 1..]);
        let ty = Type::new(ElemType::Int(64), indices.shape().to_vec());
        let d = Dense::new(ty, indices.clone()).map_err(TraceError::Trace)?;
        let a = attrs(vec![
            ("axis", Attribute::Int(axis as i64)),
            ("indices", Attribute::Dense(d)),
        ]);
        Ok(self.op(OpKind::Gather, &[self], a, "a take (gather)", shape))
    }

    /// `x[s0:e0:k0, s1:e1:k1, …]` (numpy basic slicing, one range per axis, steps ≥ 1); an empty
    /// selection is an error.
    pub fn try_slice(&self, starts: &[usize], ends: &[usize], steps: &[usize]) -> Result<Traced, TraceError> {
        let s = self.shape();
        if starts.len() != s.len() || ends.len() != s.len() || steps.len() != s.len() {
            return err(format!(
                "a slice of a rank-{} value needs {} starts, ends and steps",
                s.len(),
                s.len()
            ));
        }
        let mut shape = Vec::with_capacity(s.len());
        for i in 0..s.len() {
            let (b, e, k) = (starts[i], ends[i], steps[i]);
            if k == 0 || b >= e || e > s[i] {
                return err(format!(
                    "slice {b}:{e}:{k} of axis {i} (size {}) selects nothing or goes out of bounds",
                    s[i]
                ));
            }
            shape.push((e - b).div_ceil(k));
        }
        let a = attrs(vec![
            ("starts", ints(starts)),
            ("ends", ints(ends)),
            ("steps", ints(steps)),
        ]);
        Ok(self.op(OpKind::Slice, &[self], a, "a slice", shape))
    }

    pub fn reshape(&self, shape: &[usize]) -> Result<Traced, TraceError> {
        if shape.iter().product::<usize>() != self.shape().iter().product::<usize>() {
            return err(format!("cannot reshape {:?} to {shape:?}", self.shape()));
        }
        Ok(self.op(OpKind::Reshape, &[self], Attrs::new(), "a reshape", shape.to_vec()))
    }

    /// Permutes the axes (`perm` empty: reverse them, as numpy).
    pub fn transpose(&self, perm: &[usize]) -> Traced {
        self.try_transpose(perm).expect("a permutation of the axes")
    }

    pub fn try_transpose(&self, perm: &[usize]) -> Result<Traced, TraceError> {
        let n = self.shape().len();
        let mut sorted = perm.to_vec();
        sorted.sort_unstable();
        if !perm.is_empty() && sorted != (0..n).collect::<Vec<_>>() {
            return err(format!("{perm:?} is not a permutation of the {n} axes"));
        }
        Ok(self.transpose_unchecked(perm))
    }

    fn transpose_unchecked(&self, perm: &[usize]) -> Traced {
        let s = self.shape();
        let perm: Vec<usize> = if perm.is_empty() {
            (0..s.len()).rev().collect()
        } else {
            perm.to_vec()
        };
        let shape = perm.iter().map(|&p| s[p]).collect();
        self.op(
            OpKind::Transpose,
            &[self],
            attrs(vec![("perm", ints(&perm))]),
            "a transpose",
            shape,
        )
    }

    /// Any function of one encrypted value, applied elementwise: one table lookup.
    pub fn univariate(&self, f: impl Fn(i64) -> i64 + 'static) -> Traced {
        let shape = self.shape();
        self.tracer()
            .push(Node::Univariate(self.id, Rc::new(f)), shape, self.enc())
    }

    pub fn clip(&self, lo: i64, hi: i64) -> Traced {
        self.univariate(move |v| v.clamp(lo, hi))
    }
    pub fn relu(&self) -> Traced {
        self.univariate(|v| v.max(0))
    }
    /// `self < c` as 0/1 (and the other comparisons below).
    pub fn lt(&self, c: i64) -> Traced {
        self.univariate(move |v| (v < c) as i64)
    }
    pub fn le(&self, c: i64) -> Traced {
        self.univariate(move |v| (v <= c) as i64)
    }
    pub fn gt(&self, c: i64) -> Traced {
        self.univariate(move |v| (v > c) as i64)
    }
    pub fn ge(&self, c: i64) -> Traced {
        self.univariate(move |v| (v >= c) as i64)
    }
    pub fn equal(&self, c: i64) -> Traced {
        self.univariate(move |v| (v == c) as i64)
    }

    /// Drops `k` low bits with rounding (`fhe.round`); `k = 0` is the value itself.
    pub fn round_bits(&self, k: u32) -> Traced {
        if k == 0 {
            return self.clone();
        }
        let a = attrs(vec![("lsbs", Attribute::Int(k as i64))]);
        self.op(OpKind::Round, &[self], a, "a rounding", self.shape())
    }
}

macro_rules! binop {
    ($tr:ident, $m:ident, $try:ident) => {
        impl ops::$tr<&Traced> for &Traced {
            type Output = Traced;
            fn $m(self, o: &Traced) -> Traced {
                self.$try(o).expect("operand shapes broadcast")
            }
        }
        impl ops::$tr<Traced> for Traced {
            type Output = Traced;
            fn $m(self, o: Traced) -> Traced {
                (&self).$m(&o)
            }
        }
        impl ops::$tr<i64> for &Traced {
            type Output = Traced;
            fn $m(self, c: i64) -> Traced {
                self.$try(&self.konst(c)).expect("scalar broadcasts")
            }
        }
        impl ops::$tr<i64> for Traced {
            type Output = Traced;
            fn $m(self, c: i64) -> Traced {
                (&self).$m(c)
            }
        }
        impl ops::$tr<&Tensor> for &Traced {
            type Output = Traced;
            fn $m(self, c: &Tensor) -> Traced {
                let k = self.tracer().constant(c.clone());
                self.$try(&k).expect("constant broadcasts")
            }
        }
    };
}

binop!(Add, add, try_add);
binop!(Sub, sub, try_sub);
binop!(Mul, mul, try_mul);

impl ops::Neg for &Traced {
    type Output = Traced;
    fn neg(self) -> Traced {
        Traced::neg(self)
    }
}
