//! The float reference: the graph evaluated in f64 on a batch (first axis), every node's results
//! recorded (calibration reads intermediate tensors). pytest compares it with onnxruntime.

use std::collections::HashMap;

use ndarray::{ArrayD, Axis, Ix2, IxDyn};

use crate::model::{Node, OnnxModel};
use crate::movement as mv;
use crate::ops::{unsupported, Unary};
use crate::OnnxError;

pub(crate) fn shape_err(node: &Node, m: impl std::fmt::Display) -> OnnxError {
    OnnxError::Shape(format!("{}: {m}", node.what()))
}

/// `a` broadcast against `b` with numpy's rules, combined element-wise.
pub(crate) fn broadcast(
    node: &Node,
    a: &ArrayD<f64>,
    b: &ArrayD<f64>,
    f: impl Fn(f64, f64) -> f64,
) -> Result<ArrayD<f64>, OnnxError> {
    let rank = a.ndim().max(b.ndim());
    let pad = |s: &[usize]| -> Vec<usize> {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (sa, sb) = (pad(a.shape()), pad(b.shape()));
    let mut out = Vec::with_capacity(rank);
    for (x, y) in sa.iter().zip(&sb) {
        out.push(match (x, y) {
            (x, y) if x == y => *x,
            (1, y) => *y,
            (x, 1) => *x,
            _ => {
                return Err(shape_err(
                    node,
                    format!("shapes {:?} and {:?} do not broadcast", a.shape(), b.shape()),
                ))
            }
        });
    }
    if out
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .is_none_or(|n| n > crate::MAX_TENSOR_ELEMENTS)
    {
        return Err(shape_err(
            node,
            format!(
                "broadcasting {:?} with {:?} gives more than {} elements",
                a.shape(),
                b.shape(),
                crate::MAX_TENSOR_ELEMENTS
            ),
        ));
    }
    let a = a.view().into_shape_with_order(IxDyn(&sa)).expect("padded shape");
    let b = b.view().into_shape_with_order(IxDyn(&sb)).expect("padded shape");
    let a = a.broadcast(IxDyn(&out)).expect("checked");
    let b = b.broadcast(IxDyn(&out)).expect("checked");
    let mut r = ArrayD::zeros(IxDyn(&out));
    ndarray::Zip::from(&mut r)
        .and(&a)
        .and(&b)
        .for_each(|r, &x, &y| *r = f(x, y));
    Ok(r)
}

fn matrix(node: &Node, a: &ArrayD<f64>, what: &str) -> Result<ndarray::Array2<f64>, OnnxError> {
    a.clone()
        .into_dimensionality::<Ix2>()
        .map_err(|_| shape_err(node, format!("{what} must be a matrix, has shape {:?}", a.shape())))
}

/// `x` reshaped to `target` (ONNX Reshape: 0 copies the input's dimension, −1 is inferred).
pub(crate) fn reshape_dims(
    node: &Node,
    input: &[usize],
    target: &[f64],
    allowzero: bool,
) -> Result<Vec<usize>, OnnxError> {
    let total: usize = input.iter().product();
    let mut dims = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        let t = t as i64;
        dims.push(match t {
            0 if !allowzero => *input.get(i).ok_or_else(|| {
                shape_err(
                    node,
                    format!("shape entry {i} is 0 but the input has rank {}", input.len()),
                )
            })?,
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            t if t >= 0 && t as usize <= total.max(1) => t as usize,
            _ => return Err(shape_err(node, format!("cannot reshape {input:?} to {target:?}"))),
        });
    }
    let known = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| shape_err(node, format!("cannot reshape {input:?} to {target:?}")))?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(shape_err(node, format!("cannot reshape {input:?} to {target:?}")));
        }
        dims[i] = total / known;
    }
    if dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(total) {
        return Err(shape_err(node, format!("cannot reshape {input:?} to {target:?}")));
    }
    Ok(dims)
}

/// Normalises an axis in `-rank .. rank`.
pub(crate) fn axis(node: &Node, a: i64, rank: usize) -> Result<usize, OnnxError> {
    let r = rank as i64;
    if a < -r || a >= r {
        return Err(shape_err(node, format!("axis {a} is out of range for rank {rank}")));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// Squeeze/Unsqueeze axes: the `axes` attribute (opset < 13) or the second operand.
pub(crate) fn axes_of(node: &Node, get: &dyn Fn(&str) -> Option<ArrayD<f64>>) -> Result<Option<Vec<i64>>, OnnxError> {
    if let Some(a) = node.ints("axes")? {
        return Ok(Some(a));
    }
    match node.input(1) {
        Some(name) => {
            let t = get(name).ok_or_else(|| shape_err(node, "the axes must be a constant"))?;
            Ok(Some(t.iter().map(|&v| v as i64).collect()))
        }
        None => Ok(None),
    }
}

/// The shape after Squeeze / Unsqueeze / Flatten.
pub(crate) fn shape_op(node: &Node, shape: &[usize], axes: Option<Vec<i64>>) -> Result<Vec<usize>, OnnxError> {
    match node.op.as_str() {
        "Flatten" => {
            let a = axis(node, node.int("axis", 1)?, shape.len() + 1)?;
            Ok(vec![shape[..a].iter().product(), shape[a..].iter().product()])
        }
        "Squeeze" => {
            let axes: Vec<usize> = match axes {
                Some(a) => a
                    .iter()
                    .map(|&x| axis(node, x, shape.len()))
                    .collect::<Result<_, _>>()?,
                None => (0..shape.len()).filter(|&i| shape[i] == 1).collect(),
            };
            if let Some(&i) = axes.iter().find(|&&i| shape[i] != 1) {
                return Err(shape_err(node, format!("cannot squeeze axis {i} of size {}", shape[i])));
            }
            Ok(shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect())
        }
        "Unsqueeze" => {
            let axes = axes.ok_or_else(|| shape_err(node, "Unsqueeze needs axes"))?;
            let rank = shape.len() + axes.len();
            let mut axes: Vec<usize> = axes.iter().map(|&x| axis(node, x, rank)).collect::<Result<_, _>>()?;
            axes.sort_unstable();
            let mut out = shape.to_vec();
            for a in axes {
                out.insert(a, 1);
            }
            Ok(out)
        }
        _ => unreachable!("shape ops only"),
    }
}

fn softmax(x: &ArrayD<f64>, ax: usize, log: bool) -> ArrayD<f64> {
    let mut out = x.clone();
    for mut lane in out.lanes_mut(Axis(ax)) {
        let m = lane.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let s: f64 = lane.iter().map(|v| (v - m).exp()).sum();
        lane.mapv_inplace(|v| if log { v - m - s.ln() } else { (v - m).exp() / s });
    }
    out
}

/// Clip's bounds when they are operands (opset ≥ 11).
pub(crate) fn clip_bounds(
    node: &Node,
    get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
) -> Result<Option<(f64, f64)>, OnnxError> {
    if node.op != "Clip" || node.inputs.len() < 2 {
        return Ok(None);
    }
    let bound = |i: usize, default: f64| -> Result<f64, OnnxError> {
        match node.input(i) {
            None => Ok(default),
            Some(n) => get(n)
                .and_then(|t| t.iter().next().copied())
                .ok_or_else(|| OnnxError::Unsupported(format!("{}: Clip bounds must be constants", node.what()))),
        }
    };
    Ok(Some((bound(1, f64::NEG_INFINITY)?, bound(2, f64::INFINITY)?)))
}

/// Gemm: `alpha·op(A)·op(B) + beta·C`.
pub(crate) fn gemm(
    node: &Node,
    a: &ArrayD<f64>,
    b: &ArrayD<f64>,
    c: Option<&ArrayD<f64>>,
) -> Result<ArrayD<f64>, OnnxError> {
    let mut a = matrix(node, a, "A")?;
    let mut b = matrix(node, b, "B")?;
    if node.int("transA", 0)? != 0 {
        a = a.reversed_axes();
    }
    if node.int("transB", 0)? != 0 {
        b = b.reversed_axes();
    }
    if a.ncols() != b.nrows() {
        return Err(shape_err(node, format!("A is {:?} and B {:?}", a.shape(), b.shape())));
    }
    let y = a.dot(&b) * node.float("alpha", 1.0)?;
    let y = y.into_dyn();
    match c {
        Some(c) => {
            let beta = node.float("beta", 1.0)?;
            broadcast(node, &y, c, |y, c| y + beta * c)
        }
        None => Ok(y),
    }
}

/// MatMul with numpy's rules for the ranks fhec's networks use: `[.., K] · [K, N]`.
pub(crate) fn matmul(node: &Node, a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<ArrayD<f64>, OnnxError> {
    if b.ndim() >= 3 && a.ndim() >= 2 {
        return batched_matmul(node, a, b);
    }
    let b2 = matrix(node, b, "the right operand")?;
    let k = *a.shape().last().ok_or_else(|| shape_err(node, "a scalar operand"))?;
    if k != b2.nrows() {
        return Err(shape_err(node, format!("{:?} · {:?}", a.shape(), b.shape())));
    }
    let lead: Vec<usize> = a.shape()[..a.ndim() - 1].to_vec();
    let rows: usize = lead.iter().product();
    let a2 = a
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((rows, k))
        .map_err(|e| shape_err(node, e))?;
    let mut shape = lead;
    shape.push(b2.ncols());
    Ok(a2
        .dot(&b2)
        .into_shape_with_order(IxDyn(&shape))
        .expect("rows × N")
        .into_dyn())
}

/// numpy's `matmul` of stacks of matrices (`[…, m, k] @ […, k, n]`, the leading axes broadcast).
fn batched_matmul(node: &Node, a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<ArrayD<f64>, OnnxError> {
    let (ra, rb) = (a.ndim(), b.ndim());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    if b.shape()[rb - 2] != k {
        return Err(shape_err(node, format!("{:?} · {:?}", a.shape(), b.shape())));
    }
    let (la, lb) = (&a.shape()[..ra - 2], &b.shape()[..rb - 2]);
    let r = la.len().max(lb.len());
    let dim = |s: &[usize], i: usize| if i + s.len() >= r { s[i + s.len() - r] } else { 1 };
    let mut lead = Vec::with_capacity(r);
    for i in 0..r {
        lead.push(match (dim(la, i), dim(lb, i)) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(shape_err(
                    node,
                    format!("{:?} · {:?} do not broadcast", a.shape(), b.shape()),
                ))
            }
        });
    }
    // the result within MAX_TENSOR_ELEMENTS (what it allocates), the work within 2^32 terms
    let batches = lead.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some(batches) = batches.filter(|b| {
        let out = b.saturating_mul(m).saturating_mul(n);
        out <= crate::MAX_TENSOR_ELEMENTS && out.saturating_mul(k.max(1)) <= 1 << 32
    }) else {
        return Err(shape_err(
            node,
            format!(
                "{:?} · {:?}: more than {} result elements or 2^32 terms",
                a.shape(),
                b.shape(),
                crate::MAX_TENSOR_ELEMENTS
            ),
        ));
    };
    let a = a.as_standard_layout();
    let b = b.as_standard_layout();
    let (af, bf) = (
        a.as_slice().expect("standard layout"),
        b.as_slice().expect("standard layout"),
    );
    // the flat offset of batch t's matrix in an operand of leading shape `l`
    let offset = |l: &[usize], t: usize, size: usize| -> usize {
        let (mut rest, mut off, mut stride) = (t, 0usize, 1usize);
        for i in (0..r).rev() {
            let idx = rest % lead[i];
            rest /= lead[i];
            let d = dim(l, i);
            if i + l.len() >= r {
                off += if d == 1 { 0 } else { idx } * stride;
                stride *= d;
            }
        }
        off * size
    };
    let mut out = Vec::with_capacity(batches * m * n);
    for t in 0..batches {
        let (oa, ob) = (offset(la, t, m * k), offset(lb, t, k * n));
        for i in 0..m {
            for j in 0..n {
                out.push((0..k).map(|l| af[oa + i * k + l] * bf[ob + l * n + j]).sum());
            }
        }
    }
    let mut shape = lead;
    shape.extend([m, n]);
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| shape_err(node, e))
}

impl OnnxModel {
    /// Evaluates the network on a batch (`inputs[i]` for graph input `i`, the first axis the batch):
    /// the graph outputs, in order.
    pub fn eval(&self, inputs: &[ArrayD<f64>]) -> Result<Vec<ArrayD<f64>>, OnnxError> {
        let values = self.eval_all(inputs)?;
        self.outputs
            .iter()
            .map(|o| {
                values
                    .get(o)
                    .or_else(|| self.constants.get(o))
                    .cloned()
                    .ok_or_else(|| OnnxError::Format(format!("graph output {o:?} is not computed")))
            })
            .collect()
    }

    /// Every tensor the graph computes on a batch, by name.
    pub(crate) fn eval_all(&self, inputs: &[ArrayD<f64>]) -> Result<HashMap<String, ArrayD<f64>>, OnnxError> {
        if inputs.len() != self.inputs.len() {
            return Err(OnnxError::Shape(format!(
                "the network takes {} inputs, {} given",
                self.inputs.len(),
                inputs.len()
            )));
        }
        let mut values: HashMap<String, ArrayD<f64>> = HashMap::new();
        for (gi, x) in self.inputs.iter().zip(inputs) {
            let ok = x.ndim() == gi.dims.len()
                && gi
                    .dims
                    .iter()
                    .zip(x.shape())
                    .skip(1)
                    .all(|(d, &s)| d.is_none_or(|d| d == s));
            if !ok {
                return Err(OnnxError::Shape(format!(
                    "input {:?} has shape {:?}, the network takes {:?} (None: any)",
                    gi.name,
                    x.shape(),
                    gi.dims
                )));
            }
            values.insert(gi.name.clone(), x.clone());
        }
        for node in &self.nodes {
            let out = {
                let get = |name: &str| values.get(name).or_else(|| self.constants.get(name)).cloned();
                let arg = |i: usize| -> Result<ArrayD<f64>, OnnxError> {
                    node.input(i)
                        .and_then(get)
                        .ok_or_else(|| shape_err(node, format!("operand {i} is missing")))
                };
                self.eval_node(node, &arg, &get)?
            };
            if let Some(o) = node.outputs.first() {
                values.insert(o.clone(), out);
            }
        }
        Ok(values)
    }

    pub(crate) fn eval_node(
        &self,
        node: &Node,
        arg: &dyn Fn(usize) -> Result<ArrayD<f64>, OnnxError>,
        get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
    ) -> Result<ArrayD<f64>, OnnxError> {
        if let Some(u) = Unary::of(node, clip_bounds(node, get)?)? {
            return Ok(arg(0)?.mapv(|x| u.apply(x)));
        }
        Ok(match node.op.as_str() {
            "Gemm" => {
                let c = node.input(2).map(|_| arg(2)).transpose()?;
                gemm(node, &arg(0)?, &arg(1)?, c.as_ref())?
            }
            "MatMul" => matmul(node, &arg(0)?, &arg(1)?)?,
            "Add" => broadcast(node, &arg(0)?, &arg(1)?, |a, b| a + b)?,
            "Sub" => broadcast(node, &arg(0)?, &arg(1)?, |a, b| a - b)?,
            "Mul" => broadcast(node, &arg(0)?, &arg(1)?, |a, b| a * b)?,
            "Div" => broadcast(node, &arg(0)?, &arg(1)?, |a, b| a / b)?,
            "PRelu" => broadcast(node, &arg(0)?, &arg(1)?, |x, s| if x >= 0.0 { x } else { s * x })?,
            "Identity" | "Dropout" => arg(0)?,
            "BatchNormalization" => {
                let x = arg(0)?;
                if x.ndim() < 2 {
                    return Err(shape_err(
                        node,
                        format!("input of rank {} (needs [batch, channels, ...])", x.ndim()),
                    ));
                }
                let mut pshape = vec![1; x.ndim()];
                pshape[1] = x.shape()[1];
                let p = |i: usize| -> Result<ArrayD<f64>, OnnxError> {
                    let t = arg(i)?;
                    t.as_standard_layout()
                        .into_owned()
                        .into_shape_with_order(IxDyn(&pshape))
                        .map_err(|_| shape_err(node, format!("parameter {i} does not have one value per channel")))
                };
                let eps = node.float("epsilon", 1e-5)?;
                let mul = broadcast(node, &p(1)?, &p(4)?, |s, v| s / (v + eps).sqrt())?;
                let centred = broadcast(node, &x, &p(3)?, |x, m| x - m)?;
                let scaled = broadcast(node, &centred, &mul, |x, m| x * m)?;
                broadcast(node, &scaled, &p(2)?, |x, b| x + b)?
            }
            "Flatten" | "Squeeze" | "Unsqueeze" => {
                let x = arg(0)?;
                let axes = if node.op == "Flatten" {
                    None
                } else {
                    axes_of(node, get)?
                };
                let shape = shape_op(node, x.shape(), axes)?;
                x.as_standard_layout()
                    .into_owned()
                    .into_shape_with_order(IxDyn(&shape))
                    .map_err(|e| shape_err(node, e))?
            }
            "Reshape" => {
                let x = arg(0)?;
                let target = node.input(1).and_then(get).ok_or_else(|| {
                    OnnxError::Unsupported(format!("{}: the target shape must be a constant", node.what()))
                })?;
                let t: Vec<f64> = target.iter().copied().collect();
                let dims = reshape_dims(node, x.shape(), &t, node.int("allowzero", 0)? != 0)?;
                x.as_standard_layout()
                    .into_owned()
                    .into_shape_with_order(IxDyn(&dims))
                    .map_err(|e| shape_err(node, e))?
            }
            "Constant" => constant(node)?,
            "Transpose" => mv::transpose(node, &arg(0)?)?,
            "Slice" => mv::slice(node, &arg(0)?, get)?,
            "Gather" => mv::gather(node, &arg(0)?, &arg(1)?)?,
            "Pad" => mv::pad(node, &arg(0)?, get)?,
            "Concat" => {
                let parts = (0..node.inputs.len()).map(arg).collect::<Result<Vec<_>, _>>()?;
                mv::concat(node, &parts)?
            }
            "Expand" => mv::expand(node, &arg(0)?, &arg(1)?)?,
            "Shape" => mv::shape_of(node, arg(0)?.shape())?,
            "Cast" => mv::cast(node, &arg(0)?)?,
            "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" => mv::compare(node, &arg(0)?, &arg(1)?)?,
            "Where" => mv::where_(node, &arg(0)?, &arg(1)?, &arg(2)?)?,
            "ReduceSum" | "ReduceMean" | "ReduceMax" => mv::reduce(node, &arg(0)?, get)?,
            "QuantizeLinear" | "DequantizeLinear" => self.eval_qdq(node, &arg(0)?, get)?,
            "Conv" => {
                let b = node.input(2).map(|_| arg(2)).transpose()?;
                crate::conv::conv(node, &arg(0)?, &arg(1)?, b.as_ref())?
            }
            "ConvTranspose" => {
                let b = node.input(2).map(|_| arg(2)).transpose()?;
                crate::conv::conv_transpose(node, &arg(0)?, &arg(1)?, b.as_ref())?
            }
            "AveragePool" | "GlobalAveragePool" | "MaxPool" | "GlobalMaxPool" => crate::conv::pool(node, &arg(0)?)?,
            "Softmax" | "LogSoftmax" => {
                let x = arg(0)?;
                let default = if self.opset >= 13 { -1 } else { 1 };
                let ax = axis(node, node.int("axis", default)?, x.ndim())?;
                if self.opset < 13 && ax != x.ndim() - 1 {
                    return Err(OnnxError::Unsupported(format!(
                        "{}: softmax over axes {ax}.. of a rank-{} tensor (opset < 13)",
                        node.what(),
                        x.ndim()
                    )));
                }
                softmax(&x, ax, node.op == "LogSoftmax")
            }
            "ArgMax" => {
                let x = arg(0)?;
                let ax = axis(node, node.int("axis", 0)?, x.ndim())?;
                if x.shape()[ax] == 0 {
                    return Err(shape_err(node, format!("ArgMax over an empty axis {ax}")));
                }
                let last = node.int("select_last_index", 0)? != 0;
                let idx = x.map_axis(Axis(ax), |lane| {
                    let mut best = 0;
                    for (i, &v) in lane.iter().enumerate() {
                        if v > lane[best] || (last && v == lane[best]) {
                            best = i;
                        }
                    }
                    best as f64
                });
                if node.int("keepdims", 1)? != 0 {
                    idx.insert_axis(Axis(ax))
                } else {
                    idx
                }
            }
            _ => return Err(unsupported(node, self.opset)),
        })
    }
}

/// A Constant node's value.
pub(crate) fn constant(node: &Node) -> Result<ArrayD<f64>, OnnxError> {
    use crate::model::Attr;
    for (name, a) in &node.attrs {
        return Ok(match (name.as_str(), a) {
            ("value", Attr::Tensor(t)) => t.clone(),
            ("value_float", Attr::Float(v)) => ndarray::arr0(*v).into_dyn(),
            ("value_int", Attr::Int(v)) => ndarray::arr0(*v as f64).into_dyn(),
            ("value_floats", Attr::Floats(v)) => ndarray::arr1(v).into_dyn(),
            ("value_ints", Attr::Ints(v)) => ndarray::arr1(&v.iter().map(|&x| x as f64).collect::<Vec<_>>()).into_dyn(),
            _ => continue,
        });
    }
    Err(OnnxError::Unsupported(format!(
        "{}: a constant without a numeric value",
        node.what()
    )))
}
