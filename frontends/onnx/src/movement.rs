//! Data movement and reductions in the float reference: Transpose, Slice, Gather, Pad, Concat, Expand,
//! Shape, Cast, comparisons and Where (on constants), ReduceSum / ReduceMean / ReduceMax. Quantisation
//! reuses the movement ops on index tensors (`ptq.rs`, "Data movement").

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use crate::float::{axis, broadcast, shape_err};
use crate::model::Node;
use crate::OnnxError;

/// Most elements a movement op may produce (hostile files: Expand or Pad to a huge shape).
const MAX_ELEMENTS: usize = 1 << 26;

fn ints_of(node: &Node, t: &ArrayD<f64>, what: &str) -> Result<Vec<i64>, OnnxError> {
    t.iter()
        .map(|&v| {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(v as i64)
            } else {
                Err(shape_err(node, format!("{what} holds {v}, not an integer")))
            }
        })
        .collect()
}

fn check_size(node: &Node, shape: &[usize]) -> Result<(), OnnxError> {
    match shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(n) if n <= MAX_ELEMENTS => Ok(()),
        _ => Err(shape_err(node, format!("a result of shape {shape:?} is too large"))),
    }
}

/// An operand or attribute list of integers: operand `i` when present, else attribute `attr`.
fn list(
    node: &Node,
    i: usize,
    attr: &str,
    get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
) -> Result<Option<Vec<i64>>, OnnxError> {
    match node.input(i) {
        Some(name) => {
            let t = get(name).ok_or_else(|| {
                OnnxError::Unsupported(format!("{}: operand {i} ({attr}) must be a constant", node.what()))
            })?;
            Ok(Some(ints_of(node, &t, attr)?))
        }
        None => node.ints(attr),
    }
}

pub(crate) fn transpose(node: &Node, x: &ArrayD<f64>) -> Result<ArrayD<f64>, OnnxError> {
    let r = x.ndim();
    let perm: Vec<usize> = match node.ints("perm")? {
        Some(p) => p.iter().map(|&a| axis(node, a, r)).collect::<Result<_, _>>()?,
        None => (0..r).rev().collect(),
    };
    let mut seen = vec![false; r];
    if perm.len() != r || perm.iter().any(|&a| std::mem::replace(&mut seen[a], true)) {
        return Err(shape_err(
            node,
            format!("perm {perm:?} is not a permutation of {r} axes"),
        ));
    }
    Ok(x.view().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned())
}

pub(crate) fn slice(
    node: &Node,
    x: &ArrayD<f64>,
    get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
) -> Result<ArrayD<f64>, OnnxError> {
    let starts = list(node, 1, "starts", get)?.ok_or_else(|| shape_err(node, "missing starts"))?;
    let ends = list(node, 2, "ends", get)?.ok_or_else(|| shape_err(node, "missing ends"))?;
    let r = x.ndim();
    let axes: Vec<usize> = match list(node, 3, "axes", get)? {
        Some(a) => a.iter().map(|&v| axis(node, v, r)).collect::<Result<_, _>>()?,
        None => (0..starts.len()).collect(),
    };
    let steps = list(node, 4, "steps", get)?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() || starts.len() > r {
        return Err(shape_err(node, "starts, ends, axes and steps differ in length"));
    }
    let mut v = x.view();
    for k in 0..starts.len() {
        let (a, step) = (axes[k], steps[k]);
        if step == 0 {
            return Err(shape_err(node, "a step of 0"));
        }
        let d = x.shape()[a] as i64;
        let norm = |i: i64| if i < 0 { i + d } else { i };
        let (s, e) = if step > 0 {
            (norm(starts[k]).clamp(0, d), norm(ends[k]).clamp(0, d))
        } else {
            (norm(starts[k]).clamp(-1, d - 1), norm(ends[k]).clamp(-1, d - 1))
        };
        let sl = if step > 0 {
            Slice::new(s as isize, Some(e.max(s) as isize), step as isize)
        } else if s <= e {
            Slice::new(0, Some(0), 1)
        } else {
            // elements s, s+step, … > e: numpy's slice of [e+1, s] taken backwards
            Slice::new((e + 1) as isize, Some((s + 1) as isize), step as isize)
        };
        v.slice_axis_inplace(Axis(a), sl);
    }
    Ok(v.as_standard_layout().into_owned())
}

pub(crate) fn gather(node: &Node, x: &ArrayD<f64>, indices: &ArrayD<f64>) -> Result<ArrayD<f64>, OnnxError> {
    let r = x.ndim();
    let a = axis(node, node.int("axis", 0)?, r)?;
    let d = x.shape()[a] as i64;
    let idx: Vec<usize> = ints_of(node, indices, "indices")?
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + d } else { i };
            if (0..d).contains(&j) {
                Ok(j as usize)
            } else {
                Err(shape_err(node, format!("index {i} is out of range for an axis of {d}")))
            }
        })
        .collect::<Result<_, _>>()?;
    let mut shape: Vec<usize> = x.shape()[..a].to_vec();
    shape.extend(indices.shape());
    shape.extend(&x.shape()[a + 1..]);
    check_size(node, &shape)?;
    let picked = x.select(Axis(a), &idx);
    picked
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| shape_err(node, e))
}

pub(crate) fn pad(
    node: &Node,
    x: &ArrayD<f64>,
    get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
) -> Result<ArrayD<f64>, OnnxError> {
    let r = x.ndim();
    let pads = list(node, 1, "pads", get)?.ok_or_else(|| shape_err(node, "missing pads"))?;
    let value = match node.input(2) {
        Some(name) => get(name)
            .and_then(|t| t.iter().next().copied())
            .ok_or_else(|| OnnxError::Unsupported(format!("{}: the pad value must be a constant", node.what())))?,
        None => node.float("value", 0.0)?,
    };
    let axes: Vec<usize> = match list(node, 3, "axes", get)? {
        Some(a) => a.iter().map(|&v| axis(node, v, r)).collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(shape_err(node, format!("{} pads for {} axes", pads.len(), axes.len())));
    }
    let mode = node.string("mode")?.unwrap_or_else(|| "constant".into());
    let mut before = vec![0i64; r];
    let mut after = vec![0i64; r];
    for (k, &a) in axes.iter().enumerate() {
        before[a] = pads[k];
        after[a] = pads[k + axes.len()];
    }
    let mut shape = Vec::with_capacity(r);
    for a in 0..r {
        let d = x.shape()[a] as i64 + before[a] + after[a];
        if d < 0 || before[a].abs() > 1 << 30 || after[a].abs() > 1 << 30 {
            return Err(shape_err(node, format!("pads {pads:?} on shape {:?}", x.shape())));
        }
        shape.push(d as usize);
    }
    check_size(node, &shape)?;
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut pos = vec![0usize; r];
    for _ in 0..n {
        let mut src = Vec::with_capacity(r);
        let mut constant = false;
        for a in 0..r {
            let d = x.shape()[a] as i64;
            let i = pos[a] as i64 - before[a];
            let j = if (0..d).contains(&i) {
                i
            } else {
                match mode.as_str() {
                    "constant" => {
                        constant = true;
                        0
                    }
                    "edge" if d > 0 => i.clamp(0, d - 1),
                    "reflect" if d > 1 => {
                        let p = 2 * (d - 1);
                        let m = i.rem_euclid(p);
                        if m < d {
                            m
                        } else {
                            p - m
                        }
                    }
                    "wrap" if d > 0 => i.rem_euclid(d),
                    m => {
                        return Err(OnnxError::Unsupported(format!(
                            "{}: mode {m:?} on an axis of {d}",
                            node.what()
                        )))
                    }
                }
            };
            src.push(j as usize);
        }
        out.push(if constant { value } else { x[IxDyn(&src)] });
        for a in (0..r).rev() {
            pos[a] += 1;
            if pos[a] < shape[a] {
                break;
            }
            pos[a] = 0;
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| shape_err(node, e))
}

pub(crate) fn concat(node: &Node, parts: &[ArrayD<f64>]) -> Result<ArrayD<f64>, OnnxError> {
    let first = parts.first().ok_or_else(|| shape_err(node, "no operands"))?;
    let a = axis(node, node.int("axis", 0)?, first.ndim())?;
    for p in parts {
        let ok = p.ndim() == first.ndim() && (0..p.ndim()).all(|i| i == a || p.shape()[i] == first.shape()[i]);
        if !ok {
            return Err(shape_err(
                node,
                format!(
                    "shapes {:?} and {:?} do not concatenate on axis {a}",
                    first.shape(),
                    p.shape()
                ),
            ));
        }
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(a), &views).map_err(|e| shape_err(node, e))
}

pub(crate) fn expand(node: &Node, x: &ArrayD<f64>, shape: &ArrayD<f64>) -> Result<ArrayD<f64>, OnnxError> {
    let dims = ints_of(node, shape, "shape")?;
    if dims.iter().any(|&d| !(0..=1 << 30).contains(&d)) {
        return Err(shape_err(node, format!("shape {dims:?}")));
    }
    // numpy broadcasting of x against the shape, both ways
    let target: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    check_size(node, &target)?;
    let out = broadcast(node, x, &ArrayD::zeros(IxDyn(&target)), |v, _| v)?;
    check_size(node, out.shape())?;
    Ok(out)
}

/// Reductions over `axes` (operand 1 from opset 13 for ReduceSum, 18 for the others; attribute
/// before), `keepdims`, `noop_with_empty_axes`.
pub(crate) fn reduce_axes(
    node: &Node,
    rank: usize,
    get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
) -> Result<Vec<usize>, OnnxError> {
    let axes = list(node, 1, "axes", get)?;
    let mut axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a.iter().map(|&v| axis(node, v, rank)).collect::<Result<_, _>>()?,
        _ if node.int("noop_with_empty_axes", 0)? != 0 => Vec::new(),
        _ => (0..rank).collect(),
    };
    axes.sort_unstable();
    axes.dedup();
    Ok(axes)
}

pub(crate) fn reduce(
    node: &Node,
    x: &ArrayD<f64>,
    get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
) -> Result<ArrayD<f64>, OnnxError> {
    let axes = reduce_axes(node, x.ndim(), get)?;
    let keep = node.int("keepdims", 1)? != 0;
    let mut y = x.clone();
    for &a in axes.iter().rev() {
        let n = y.shape()[a];
        if n == 0 && node.op == "ReduceMax" {
            return Err(shape_err(node, "ReduceMax over an empty axis"));
        }
        y = match node.op.as_str() {
            "ReduceSum" => y.sum_axis(Axis(a)),
            "ReduceMean" => y.sum_axis(Axis(a)) / n.max(1) as f64,
            _ => y.fold_axis(Axis(a), f64::NEG_INFINITY, |m, &v| m.max(v)),
        };
        if keep {
            y = y.insert_axis(Axis(a));
        }
    }
    Ok(y)
}

/// `Shape` (with `start`, `end`, opset 15) of a tensor: clear, whatever the tensor.
pub(crate) fn shape_of(node: &Node, shape: &[usize]) -> Result<ArrayD<f64>, OnnxError> {
    let r = shape.len() as i64;
    let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let s = clampi(node.int("start", 0)?);
    let e = clampi(node.int("end", r)?);
    let dims: Vec<f64> = shape[s..e.max(s)].iter().map(|&d| d as f64).collect();
    Ok(ndarray::arr1(&dims).into_dyn())
}

/// `Cast` to a numeric type: integers truncate toward zero, booleans are `v != 0`.
pub(crate) fn cast(node: &Node, x: &ArrayD<f64>) -> Result<ArrayD<f64>, OnnxError> {
    use crate::proto::tensor_proto::DataType as D;
    let to = node.int("to", 1)?;
    Ok(match D::try_from(to as i32) {
        Ok(D::Float | D::Double | D::Float16 | D::Bfloat16) => x.clone(),
        Ok(D::Bool) => x.mapv(|v| (v != 0.0) as u8 as f64),
        Ok(D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::Uint8 | D::Uint16 | D::Uint32 | D::Uint64) => {
            x.mapv(f64::trunc)
        }
        _ => return Err(OnnxError::Unsupported(format!("{}: Cast to type {to}", node.what()))),
    })
}

/// Comparisons and `Where`, on constants only (shape computations): 1.0 for true.
pub(crate) fn compare(node: &Node, a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<ArrayD<f64>, OnnxError> {
    let f: fn(f64, f64) -> bool = match node.op.as_str() {
        "Equal" => |a, b| a == b,
        "Less" => |a, b| a < b,
        "LessOrEqual" => |a, b| a <= b,
        "Greater" => |a, b| a > b,
        _ => |a, b| a >= b,
    };
    broadcast(node, a, b, |x, y| f(x, y) as u8 as f64)
}

pub(crate) fn where_(node: &Node, c: &ArrayD<f64>, a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<ArrayD<f64>, OnnxError> {
    let z = broadcast(node, &broadcast(node, c, a, |_, _| 0.0)?, b, |_, _| 0.0)?;
    let cc = broadcast(node, &z, c, |_, c| c)?;
    let aa = broadcast(node, &z, a, |_, a| a)?;
    let bb = broadcast(node, &z, b, |_, b| b)?;
    let mut out = aa;
    ndarray::Zip::from(&mut out).and(&cc).and(&bb).for_each(|o, &c, &b| {
        if c == 0.0 {
            *o = b
        }
    });
    Ok(out)
}
