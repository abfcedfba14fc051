//! fhec-trace: a numpy-like tracing DSL that builds `fhe` modules.
//!
//! ```
//! use fhec_trace::{Tracer, CompileOptions};
//! use ndarray::{arr1, arr2};
//! let t = Tracer::new();
//! let x = t.input("x", &[1, 3]);
//! let w = arr2(&[[2i64, -1], [1, 3], [0, 2]]).into_dyn();
//! let y = (x.matmul(&w) + 4).univariate(|v| v.clamp(0, 15)).round_bits(1);
//! let inputset: Vec<Vec<_>> = (0..8).map(|i| vec![arr2(&[[i, 7 - i, i % 3]]).into_dyn()]).collect();
//! let circuit = t.compile(&[y], &inputset, &CompileOptions::default()).unwrap();
//! let out = circuit.simulate(&[arr2(&[[5i64, 2, 1]]).into_dyn()]).unwrap();
//! assert_eq!(out[0], circuit.eval_clear(&[arr2(&[[5i64, 2, 1]]).into_dyn()]).unwrap()[0]);
//! # let _ = arr1(&[0i64]);
//! ```
//!
//! Tracing records a graph of operations on [`Traced`] values. [`Tracer::compile`] evaluates the
//! graph on the input set to learn every value's range, writes the `fhe` module with those widths
//! (arguments carry the observed ranges as `fhe.range`; a [`Traced::univariate`] function becomes
//! a table over every value its input's type can hold), runs the default pass pipeline, selects
//! parameters and lowers it: a [`Circuit`] that can generate keys, encrypt, run, decrypt and simulate.
//! Inputs outside the input set's ranges are rejected (the widths are promises), as with Concrete's
//! input sets.

use std::cell::RefCell;
use std::ops;
use std::rc::Rc;

use fhec_backend_tfhe::{compile as lower, Compiled};
use fhec_ir::attr::{Attribute, Dense};
use fhec_ir::types::{width_for, MAX_LUT_WIDTH};
use fhec_ir::{Diagnostic, ElemType, FunctionBuilder, Module, OpKind, Tensor, Type, ValueId};
use fhec_passes::manager::{run_text, PassContext, DEFAULT_PIPELINE};
use fhec_passes::params::PError;
use fhec_runtime::{exec, ClearTensor, ClientKeys, Progress, ServerKeys};
use ndarray::{ArrayD, Axis, Ix1, Ix2, IxDyn};

/// Errors of tracing and compilation: a message, with the op it concerns.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{0}")]
    Trace(String),
    #[error("{0}")]
    Compile(String),
    #[error("{0}")]
    Runtime(#[from] fhec_runtime::RuntimeError),
}

fn err<T>(m: impl Into<String>) -> Result<T, TraceError> {
    Err(TraceError::Trace(m.into()))
}

type Func = Rc<dyn Fn(i64) -> i64>;

#[derive(Clone)]
enum Node {
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
    Add(usize, usize),
    Sub(usize, usize),
    Mul(usize, usize),
    Neg(usize),
    MatMul(usize, usize),
    Sum {
        a: usize,
        axes: Vec<usize>,
        keep_dims: bool,
    },
    Reshape(usize, Vec<usize>),
    Transpose(usize, Vec<usize>),
    /// numpy `concatenate(parts, axis)`.
    Concat(Vec<usize>, usize),
    /// numpy `take(x, indices, axis)`.
    Gather {
        a: usize,
        axis: usize,
        indices: Tensor,
    },
    /// `x[starts[i]:ends[i]:steps[i]]` on every axis.
    Slice {
        a: usize,
        starts: Vec<usize>,
        ends: Vec<usize>,
        steps: Vec<usize>,
    },
    Univariate(usize, Func),
    Round(usize, u32),
}

impl Node {
    /// The operation's name in messages.
    fn name(&self) -> &'static str {
        match self {
            Node::Input { .. } => "an input",
            Node::ClearInput { .. } => "a clear input",
            Node::Const(_) => "a constant",
            Node::Add(..) => "an addition",
            Node::Sub(..) => "a subtraction",
            Node::Mul(..) => "a product",
            Node::Neg(_) => "a negation",
            Node::MatMul(..) => "a matmul",
            Node::Sum { .. } => "a sum",
            Node::Reshape(..) => "a reshape",
            Node::Transpose(..) => "a transpose",
            Node::Slice { .. } => "a slice",
            Node::Concat(..) => "a concatenation",
            Node::Gather { .. } => "a take (gather)",
            Node::Univariate(..) => "a table lookup (univariate function)",
            Node::Round(..) => "a rounding",
        }
    }
}

#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    shapes: Vec<Vec<usize>>,
    encrypted: Vec<bool>,
}

/// Records a computation.
#[derive(Clone, Default)]
pub struct Tracer {
    g: Rc<RefCell<Graph>>,
}

/// A traced value (encrypted, or a clear constant folded into the graph).
#[derive(Clone)]
pub struct Traced {
    g: Rc<RefCell<Graph>>,
    id: usize,
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

    fn push(&self, n: Node, shape: Vec<usize>, enc: bool) -> Traced {
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
    fn binary(&self, other: &Traced, make: fn(usize, usize) -> Node) -> Result<Traced, TraceError> {
        if !Rc::ptr_eq(&self.g, &other.g) {
            return err("the values come from different tracers");
        }
        let shape = broadcast(&self.shape(), &other.shape())?;
        let enc = self.enc() || other.enc();
        Ok(self.tracer().push(make(self.id, other.id), shape, enc))
    }
    fn konst(&self, c: i64) -> Traced {
        self.tracer().constant(ndarray::arr0(c).into_dyn())
    }

    pub fn try_add(&self, o: &Traced) -> Result<Traced, TraceError> {
        self.binary(o, Node::Add)
    }
    pub fn try_sub(&self, o: &Traced) -> Result<Traced, TraceError> {
        self.binary(o, Node::Sub)
    }
    pub fn try_mul(&self, o: &Traced) -> Result<Traced, TraceError> {
        self.binary(o, Node::Mul)
    }
    pub fn neg(&self) -> Traced {
        let shape = self.shape();
        self.tracer().push(Node::Neg(self.id), shape, self.enc())
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
        let enc = self.enc() || w.enc();
        Ok(self.tracer().push(Node::MatMul(self.id, w.id), shape, enc))
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
        self.tracer().push(
            Node::Sum {
                a: self.id,
                axes,
                keep_dims,
            },
            shape,
            self.enc(),
        )
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
        Ok(first
            .tracer()
            .push(Node::Concat(parts.iter().map(|p| p.id).collect(), axis), shape, enc))
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
        Ok(self.tracer().push(
            Node::Gather {
                a: self.id,
                axis,
                indices: indices.clone(),
            },
            shape,
            self.enc(),
        ))
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
        Ok(self.tracer().push(
            Node::Slice {
                a: self.id,
                starts: starts.to_vec(),
                ends: ends.to_vec(),
                steps: steps.to_vec(),
            },
            shape,
            self.enc(),
        ))
    }

    pub fn reshape(&self, shape: &[usize]) -> Result<Traced, TraceError> {
        if shape.iter().product::<usize>() != self.shape().iter().product::<usize>() {
            return err(format!("cannot reshape {:?} to {shape:?}", self.shape()));
        }
        Ok(self
            .tracer()
            .push(Node::Reshape(self.id, shape.to_vec()), shape.to_vec(), self.enc()))
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
        self.tracer().push(Node::Transpose(self.id, perm), shape, self.enc())
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

    /// Drops `k` low bits with rounding (`fhe.round`).
    pub fn round_bits(&self, k: u32) -> Traced {
        let shape = self.shape();
        self.tracer().push(Node::Round(self.id, k), shape, self.enc())
    }
}

macro_rules! binop {
    ($tr:ident, $m:ident, $node:path) => {
        impl ops::$tr<&Traced> for &Traced {
            type Output = Traced;
            fn $m(self, o: &Traced) -> Traced {
                self.binary(o, $node).expect("operand shapes broadcast")
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
                self.binary(&self.konst(c), $node).expect("scalar broadcasts")
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
                self.binary(&k, $node).expect("constant broadcasts")
            }
        }
    };
}

binop!(Add, add, Node::Add);
binop!(Sub, sub, Node::Sub);
binop!(Mul, mul, Node::Mul);

impl ops::Neg for &Traced {
    type Output = Traced;
    fn neg(self) -> Traced {
        Traced::neg(self)
    }
}

/// Options of [`Tracer::compile`].
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    pub p_error: PError,
    /// Pass pipeline (default: the default pipeline).
    pub pipeline: Option<String>,
}

/// Evaluates node `n` on the values of its operands (numpy semantics, i64).
fn eval_node(
    n: &Node,
    vals: &[Option<Tensor>],
    inputs: &mut dyn Iterator<Item = Tensor>,
) -> Result<Tensor, TraceError> {
    let v = |i: &usize| vals[*i].as_ref().expect("operands first");
    let bin = |a: &usize, b: &usize, f: fn(i64, i64) -> Option<i64>| -> Result<Tensor, TraceError> {
        let (x, y) = (v(a), v(b));
        let shape = broadcast(x.shape(), y.shape())?;
        let x = x.broadcast(IxDyn(&shape)).expect("broadcasts");
        let y = y.broadcast(IxDyn(&shape)).expect("broadcasts");
        let out: Option<Vec<i64>> = x.iter().zip(y.iter()).map(|(&p, &q)| f(p, q)).collect();
        let out = out.ok_or_else(|| TraceError::Trace("integer overflow evaluating the input set".into()))?;
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), out).expect("shape"))
    };
    Ok(match n {
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
        Node::Add(a, b) => bin(a, b, i64::checked_add)?,
        Node::Sub(a, b) => bin(a, b, i64::checked_sub)?,
        Node::Mul(a, b) => bin(a, b, i64::checked_mul)?,
        Node::Neg(a) => v(a).mapv(|x| -x),
        Node::MatMul(a, w) => {
            let (x, w) = (v(a), v(w));
            match (x.ndim(), w.ndim()) {
                (1, 2) => x
                    .view()
                    .into_dimensionality::<Ix1>()
                    .unwrap()
                    .dot(&w.view().into_dimensionality::<Ix2>().unwrap())
                    .into_dyn(),
                (2, 2) => x
                    .view()
                    .into_dimensionality::<Ix2>()
                    .unwrap()
                    .dot(&w.view().into_dimensionality::<Ix2>().unwrap())
                    .into_dyn(),
                (2, 1) => x
                    .view()
                    .into_dimensionality::<Ix2>()
                    .unwrap()
                    .dot(&w.view().into_dimensionality::<Ix1>().unwrap())
                    .into_dyn(),
                _ => ndarray::arr0(
                    x.view()
                        .into_dimensionality::<Ix1>()
                        .unwrap()
                        .dot(&w.view().into_dimensionality::<Ix1>().unwrap()),
                )
                .into_dyn(),
            }
        }
        Node::Sum { a, axes, keep_dims } => {
            let mut t = v(a).clone();
            let mut sorted = axes.clone();
            sorted.sort_unstable_by(|p, q| q.cmp(p));
            for &ax in &sorted {
                t = t.sum_axis(Axis(ax));
                if *keep_dims {
                    t = t.insert_axis(Axis(ax));
                }
            }
            t
        }
        Node::Reshape(a, s) => v(a)
            .clone()
            .into_shape_with_order(IxDyn(s))
            .map_err(|e| TraceError::Trace(e.to_string()))?,
        Node::Transpose(a, p) => v(a).clone().permuted_axes(IxDyn(p)).as_standard_layout().to_owned(),
        Node::Gather { a, axis, indices } => {
            let x = v(a);
            let flat: Vec<usize> = indices.iter().map(|&i| i as usize).collect();
            let t = x.select(Axis(*axis), &flat);
            let mut shape = x.shape()[..*axis].to_vec();
            shape.extend(indices.shape());
            shape.extend(&x.shape()[*axis + 1..]);
            ArrayD::from_shape_vec(IxDyn(&shape), t.iter().copied().collect())
                .map_err(|e| TraceError::Trace(e.to_string()))?
        }
        Node::Concat(parts, axis) => {
            let views: Vec<_> = parts.iter().map(|p| v(p).view()).collect();
            ndarray::concatenate(Axis(*axis), &views).map_err(|e| TraceError::Trace(e.to_string()))?
        }
        Node::Slice { a, starts, ends, steps } => v(a)
            .slice_each_axis(|ax| {
                let i = ax.axis.index();
                ndarray::Slice::new(starts[i] as isize, Some(ends[i] as isize), steps[i] as isize)
            })
            .to_owned(),
        Node::Univariate(a, f) => v(a).mapv(|x| f(x)),
        Node::Round(a, k) => {
            let k = *k;
            v(a).mapv(|x| if k == 0 { x } else { (x + (1 << (k - 1))) >> k })
        }
    })
}

fn diags(ds: Vec<Diagnostic>) -> TraceError {
    TraceError::Compile(ds.into_iter().map(|d| d.message).collect::<Vec<_>>().join("; "))
}

fn diag(d: Diagnostic) -> TraceError {
    TraceError::Compile(d.message)
}

impl Tracer {
    /// Evaluates the traced graph on one sample (clear, numpy semantics): the reference.
    fn eval_all(&self, inputs: &[Tensor]) -> Result<Vec<Option<Tensor>>, TraceError> {
        let g = self.g.borrow();
        let mut vals: Vec<Option<Tensor>> = vec![None; g.nodes.len()];
        let mut it = inputs.iter().cloned();
        for (i, n) in g.nodes.iter().enumerate() {
            vals[i] = Some(eval_node(n, &vals, &mut it)?);
        }
        Ok(vals)
    }

    /// Compiles the computation of `outputs`, calibrated on `inputset` (one `Vec` per sample, one
    /// tensor per input in the order they were declared).
    pub fn compile(
        &self,
        outputs: &[Traced],
        inputset: &[Vec<Tensor>],
        opts: &CompileOptions,
    ) -> Result<Circuit, TraceError> {
        if inputset.is_empty() {
            return err("the input set is empty: give at least one sample");
        }
        let n = self.g.borrow().nodes.len();
        // ranges over the input set
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
        // live nodes
        let mut live = vec![false; n];
        for o in outputs {
            live[o.id] = true;
        }
        for i in (0..n).rev() {
            if !live[i] {
                continue;
            }
            let ops: Vec<usize> = match &g.nodes[i] {
                Node::Add(a, b) | Node::Sub(a, b) | Node::Mul(a, b) | Node::MatMul(a, b) => vec![*a, *b],
                Node::Neg(a)
                | Node::Reshape(a, _)
                | Node::Transpose(a, _)
                | Node::Univariate(a, _)
                | Node::Round(a, _)
                | Node::Slice { a, .. }
                | Node::Gather { a, .. } => vec![*a],
                Node::Concat(parts, _) => parts.clone(),
                Node::Sum { a, .. } => vec![*a],
                Node::Input { .. } | Node::ClearInput { .. } | Node::Const(_) => vec![],
            };
            for o in ops {
                live[o] = true;
            }
        }
        let mut b = FunctionBuilder::new("main");
        let mut ids: Vec<Option<ValueId>> = vec![None; n];
        let range_of = |i: usize| -> (i128, i128) {
            if lo[i] > hi[i] {
                (0, 0)
            } else {
                (lo[i] as i128, hi[i] as i128)
            }
        };
        for (i, node) in g.nodes.iter().enumerate() {
            let get = |j: &usize| ids[*j].expect("operands first");
            let (rlo, rhi) = range_of(i);
            let id = match node {
                // every input is declared, live or not, so that inputs keep their positions
                Node::Input { name, shape } => {
                    let signed = rlo < 0;
                    let w = width_for(rlo, rhi, signed);
                    let elem = if signed { ElemType::ESInt(w) } else { ElemType::EInt(w) };
                    Some(b.arg_with_range(name, Type::new(elem, shape.clone()), rlo as i64, rhi as i64))
                }
                Node::ClearInput { name, shape } => {
                    let signed = rlo < 0;
                    let w = width_for(rlo, rhi, signed);
                    let elem = if signed { ElemType::Int(w) } else { ElemType::UInt(w) };
                    Some(b.arg_with_range(name, Type::new(elem, shape.clone()), rlo as i64, rhi as i64))
                }
                _ if !live[i] => None,
                Node::Const(t) => {
                    let ty = fhec_passes::rewrite::clear_type_for(t);
                    let d = Dense::new(ty.clone(), t.clone()).map_err(TraceError::Compile)?;
                    Some(
                        b.op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(d))], Some(ty))
                            .map_err(diag)?,
                    )
                }
                Node::Add(..)
                | Node::Sub(..)
                | Node::Mul(..)
                | Node::Neg(_)
                | Node::MatMul(..)
                | Node::Sum { .. }
                | Node::Univariate(..)
                | Node::Round(..)
                    if !g.encrypted[i] =>
                {
                    return err(format!(
                        "{} of clear values only: clear inputs may be added to, subtracted from, multiplied with and \
                         matrix-multiplied with encrypted values, reshaped and transposed; compute the rest before the call",
                        node.name()
                    ));
                }
                Node::Univariate(a, f) => {
                    let x = get(a);
                    let xty = b.ty(x).clone();
                    let w = xty.width();
                    if w > MAX_LUT_WIDTH {
                        return Err(TraceError::Compile(format!(
                            "univariate on a {w}-bit value (range [{}, {}]); table lookups take at most {MAX_LUT_WIDTH} bits: round it first (round_bits)",
                            lo[*a], hi[*a]
                        )));
                    }
                    let size = 1usize << w;
                    let table: Vec<i64> = (0..size)
                        .map(|k| {
                            let v = if xty.is_signed() && k >= size / 2 {
                                k as i64 - size as i64
                            } else {
                                k as i64
                            };
                            f(v)
                        })
                        .collect();
                    let t: Tensor = ArrayD::from_shape_vec(IxDyn(&[size]), table).expect("size");
                    let tty = fhec_passes::rewrite::clear_type_for(&t);
                    let (tlo, thi) = (
                        t.iter().copied().min().unwrap_or(0) as i128,
                        t.iter().copied().max().unwrap_or(0) as i128,
                    );
                    let signed = tlo < 0;
                    let ow = width_for(tlo, thi, signed);
                    if ow > fhec_ir::types::MAX_ENCRYPTED_WIDTH {
                        return Err(TraceError::Compile(format!("univariate results need {ow} bits")));
                    }
                    let elem = if signed {
                        ElemType::ESInt(ow)
                    } else {
                        ElemType::EInt(ow)
                    };
                    let d = Dense::new(tty, t).map_err(TraceError::Compile)?;
                    Some(
                        b.op_with_type(
                            OpKind::Lut,
                            &[x],
                            &[("table", Attribute::Dense(d))],
                            Some(xty.with_elem(elem)),
                        )
                        .map_err(diag)?,
                    )
                }
                Node::Concat(parts, axis) => {
                    // one signedness: unsigned parts of a signed concatenation become signed (a
                    // reinterpretation, no ciphertext work); widths may differ
                    let ops: Vec<ValueId> = parts.iter().map(get).collect();
                    let signed = ops.iter().any(|&v| b.ty(v).is_signed());
                    let mut operands = Vec::with_capacity(ops.len());
                    for (&p, v) in parts.iter().zip(ops) {
                        let t = b.ty(v).clone();
                        operands.push(match &g.nodes[p] {
                            _ if !signed || t.is_signed() => v,
                            // an unsigned constant: the same values under a signed type
                            Node::Const(c) => {
                                let ty = t.with_elem(ElemType::Int(t.width() + 1));
                                let d = Dense::new(ty.clone(), c.clone()).map_err(TraceError::Compile)?;
                                b.op_with_type(OpKind::Constant, &[], &[("value", Attribute::Dense(d))], Some(ty))
                                    .map_err(diag)?
                            }
                            _ => {
                                let to = t.with_elem(ElemType::new(t.is_encrypted(), true, t.width() + 1));
                                b.op_with_type(OpKind::ToSigned, &[v], &[], Some(to)).map_err(diag)?
                            }
                        });
                    }
                    Some(
                        b.op_with_type(
                            OpKind::Concat,
                            &operands,
                            &[("axis", Attribute::Int(*axis as i64))],
                            None,
                        )
                        .map_err(diag)?,
                    )
                }
                other => {
                    let (kind, operands, attrs): (OpKind, Vec<ValueId>, Vec<(&str, Attribute)>) = match other {
                        Node::Add(a, c) => (OpKind::Add, vec![get(a), get(c)], vec![]),
                        Node::Sub(a, c) => (OpKind::Sub, vec![get(a), get(c)], vec![]),
                        Node::Mul(a, c) => {
                            let both = b.ty(get(a)).is_encrypted() && b.ty(get(c)).is_encrypted();
                            (
                                if both { OpKind::MulEint } else { OpKind::Mul },
                                vec![get(a), get(c)],
                                vec![],
                            )
                        }
                        Node::Neg(a) => (OpKind::Neg, vec![get(a)], vec![]),
                        Node::MatMul(a, w) => (OpKind::Matmul, vec![get(a), get(w)], vec![]),
                        Node::Sum { a, axes, keep_dims } => {
                            let ax: Vec<i64> = axes.iter().map(|&x| x as i64).collect();
                            (
                                OpKind::Sum,
                                vec![get(a)],
                                vec![
                                    ("axes", Attribute::int_array(&ax)),
                                    ("keep_dims", Attribute::Bool(*keep_dims)),
                                ],
                            )
                        }
                        Node::Reshape(a, _) => (OpKind::Reshape, vec![get(a)], vec![]),
                        Node::Gather { a, axis, indices } => {
                            let ty = Type::new(ElemType::Int(64), indices.shape().to_vec());
                            let d = Dense::new(ty, indices.clone()).map_err(TraceError::Compile)?;
                            (
                                OpKind::Gather,
                                vec![get(a)],
                                vec![("axis", Attribute::Int(*axis as i64)), ("indices", Attribute::Dense(d))],
                            )
                        }
                        Node::Slice { a, starts, ends, steps } => {
                            let ints =
                                |v: &[usize]| Attribute::int_array(&v.iter().map(|&x| x as i64).collect::<Vec<_>>());
                            (
                                OpKind::Slice,
                                vec![get(a)],
                                vec![("starts", ints(starts)), ("ends", ints(ends)), ("steps", ints(steps))],
                            )
                        }
                        Node::Transpose(a, p) => {
                            let p: Vec<i64> = p.iter().map(|&x| x as i64).collect();
                            (
                                OpKind::Transpose,
                                vec![get(a)],
                                vec![("perm", Attribute::int_array(&p))],
                            )
                        }
                        Node::Round(a, k) => (OpKind::Round, vec![get(a)], vec![("lsbs", Attribute::Int(*k as i64))]),
                        _ => unreachable!("handled above"),
                    };
                    // the op's inferred type, narrowed to the observed range
                    let types: Vec<Type> = operands.iter().map(|&v| b.ty(v).clone()).collect();
                    let attrs_map: fhec_ir::Attrs = attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                    let shape = g.shapes[i].clone();
                    let declared_shape = Type::new(types[0].elem, shape.clone());
                    let hint = matches!(kind, OpKind::Reshape).then_some(&declared_shape);
                    let inferred = fhec_ir::verify::check_op(kind, &types, &attrs_map, hint)
                        .map_err(|e| TraceError::Compile(format!("{}: {e}", kind.name())))?;
                    let mut w = width_for(rlo, rhi, inferred.is_signed());
                    if let (OpKind::Round, Some(Attribute::Int(k))) = (kind, attrs_map.get("lsbs")) {
                        w = w.max(types[0].width().saturating_sub(*k as u32)).max(1);
                    }
                    let declared = if matches!(
                        kind,
                        OpKind::Reshape | OpKind::Transpose | OpKind::Slice | OpKind::Gather
                    ) {
                        Type::new(types[0].elem, shape)
                    } else {
                        Type::new(
                            inferred.elem.with_width(w.min(fhec_ir::types::MAX_ENCRYPTED_WIDTH)),
                            shape,
                        )
                    };
                    Some(b.op_with_type(kind, &operands, &attrs, Some(declared)).map_err(diag)?)
                }
            };
            ids[i] = id;
        }
        let rets: Vec<ValueId> = outputs.iter().map(|o| ids[o.id].expect("live")).collect();
        if let Some(o) = outputs.iter().find(|o| !g.encrypted[o.id]) {
            return err(format!(
                "output {} is clear: outputs must depend on an encrypted input",
                o.id
            ));
        }
        let mut m = Module::new();
        m.functions.push(b.ret(&rets));
        let traced_text = fhec_ir::print_module(&m);
        let pipeline = opts.pipeline.as_deref().unwrap_or(DEFAULT_PIPELINE);
        run_text(&mut m, pipeline, &mut PassContext::default()).map_err(diag)?;
        let proof = fhec_ir::verify(&m).map_err(|d| TraceError::Compile(format!("{d:?}")))?;
        let lopts = fhec_backend_tfhe::CompileOptions {
            p_error: opts.p_error,
            ..Default::default()
        };
        let compiled = lower(&proof, &lopts, None).map_err(diag)?;
        drop(g);
        Ok(Circuit {
            reference: Reference::Traced {
                tracer: self.clone(),
                outputs: outputs.iter().map(|o| o.id).collect(),
            },
            traced_text,
            module: m,
            compiled,
            keys: None,
        })
    }
}

/// A compiled computation.
pub struct Circuit {
    /// What `eval_clear` evaluates: the traced graph, or the module as given.
    reference: Reference,
    traced_text: String,
    module: Module,
    compiled: Compiled,
    keys: Option<(ClientKeys, ServerKeys)>,
}

enum Reference {
    Traced { tracer: Tracer, outputs: Vec<usize> },
    Module(Module),
}

impl Circuit {
    /// Compiles a module built elsewhere (a frontend's builder): the pass pipeline, then lowering
    /// and parameter selection. Its inputs' ranges must be declared (`fhe.range`) or implied by
    /// their types. `eval_clear` runs the module in the reference interpreter.
    pub fn from_module(module: Module, opts: &CompileOptions) -> Result<Circuit, TraceError> {
        fhec_ir::verify(&module).map_err(diags)?;
        let traced_text = fhec_ir::print_module(&module);
        let mut m = module.clone();
        let pipeline = opts.pipeline.as_deref().unwrap_or(DEFAULT_PIPELINE);
        run_text(&mut m, pipeline, &mut PassContext::default()).map_err(diag)?;
        let proof = fhec_ir::verify(&m).map_err(diags)?;
        let lopts = fhec_backend_tfhe::CompileOptions {
            p_error: opts.p_error,
            ..Default::default()
        };
        let compiled = lower(&proof, &lopts, None).map_err(diag)?;
        Ok(Circuit {
            reference: Reference::Module(module),
            traced_text,
            module: m,
            compiled,
            keys: None,
        })
    }
}

fn to_clear(t: &Tensor) -> ClearTensor {
    ClearTensor {
        shape: t.shape().to_vec(),
        values: t.iter().copied().collect(),
    }
}

fn from_clear(c: &ClearTensor) -> Tensor {
    ArrayD::from_shape_vec(IxDyn(&c.shape), c.values.clone()).expect("shape")
}

impl Circuit {
    /// The traced module, before passes.
    pub fn traced_ir(&self) -> &str {
        &self.traced_text
    }
    /// The module after the pass pipeline (what is lowered).
    pub fn ir(&self) -> String {
        fhec_ir::print_module(&self.module)
    }
    /// The lowered program in the `tfhe` dialect.
    pub fn tfhe_ir(&self) -> String {
        fhec_backend_tfhe::text::print_program(&self.compiled.program)
    }
    pub fn program(&self) -> &fhec_runtime::Program {
        &self.compiled.program
    }

    pub fn has_keys(&self) -> bool {
        self.keys.is_some()
    }

    /// Installs keys generated elsewhere (they must be for this program's parameters).
    pub fn set_keys(&mut self, keys: (ClientKeys, ServerKeys)) {
        self.keys = Some(keys);
    }

    /// The program and the keys, for callers that run it themselves (e.g. without the GIL).
    pub fn parts(&self) -> Option<(&fhec_runtime::Program, &ClientKeys, &ServerKeys)> {
        self.keys.as_ref().map(|(c, s)| (&self.compiled.program, c, s))
    }

    /// Generates keys (once).
    pub fn keygen(&mut self) -> Result<(), TraceError> {
        if self.keys.is_none() {
            let ck = ClientKeys::generate(&self.compiled.program.params)?;
            let sk = ck
                .evaluation_keys_for(&self.compiled.program, &Progress::stderr())
                .expand(&Progress::stderr())?;
            self.keys = Some((ck, sk));
        }
        Ok(())
    }

    /// The traced computation in the clear (the reference: numpy semantics on integers).
    pub fn eval_clear(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, TraceError> {
        match &self.reference {
            Reference::Traced { tracer, outputs } => {
                let vals = tracer.eval_all(inputs)?;
                Ok(outputs.iter().map(|&o| vals[o].clone().expect("evaluated")).collect())
            }
            Reference::Module(m) => {
                let v = fhec_ir::verify(m).map_err(diags)?;
                fhec_ir::interp::eval(&v, inputs).map_err(|e| TraceError::Trace(format!("{e:?}")))
            }
        }
    }

    /// The compiled program run on exact values, without keys.
    pub fn simulate(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, TraceError> {
        let out = self
            .compiled
            .program
            .simulate(&[inputs.iter().map(to_clear).collect()])?;
        Ok(out[0].iter().map(from_clear).collect())
    }

    /// Encrypts a batch, runs it, decrypts it (generating keys first if needed).
    pub fn encrypt_run_decrypt_batch(&mut self, samples: &[Vec<Tensor>]) -> Result<Vec<Vec<Tensor>>, TraceError> {
        self.keygen()?;
        let (ck, sk) = self.keys.as_ref().expect("keys");
        let p = &self.compiled.program;
        let batch: Vec<Vec<ClearTensor>> = samples.iter().map(|s| s.iter().map(to_clear).collect()).collect();
        let enc = ck.encrypt(p, &batch)?;
        let out = exec::run(p, sk, enc, &Progress::stderr(), None)?;
        Ok(ck
            .decrypt(p, &out)?
            .iter()
            .map(|s| s.iter().map(from_clear).collect())
            .collect())
    }

    pub fn encrypt_run_decrypt(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, TraceError> {
        Ok(self.encrypt_run_decrypt_batch(&[inputs.to_vec()])?.remove(0))
    }
}
