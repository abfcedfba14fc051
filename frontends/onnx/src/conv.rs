//! Convolutions and pooling: the window geometry of ONNX `Conv`, `AveragePool`, `MaxPool` and the
//! global pools (1-D as 2-D with a height of 1), and their float reference.

use ndarray::{Array4, ArrayD, IxDyn};

use crate::float::shape_err;
use crate::model::Node;
use crate::OnnxError;

/// Most elements one window may cover, and most output positions (hostile files).
const MAX_KERNEL: usize = 1 << 16;

/// A sliding window over `[N, C, H, W]` (1-D inputs `[N, C, L]` read as `H = 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// `[N, C, H, W]` of the input.
    pub x: [usize; 4],
    /// Whether the ONNX tensors are 1-D (`[N, C, L]`).
    pub one_d: bool,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// `[top, left, bottom, right]`, the extra rows and columns of `ceil_mode` included.
    pub pads: [usize; 4],
    /// The pads the file states (or `auto_pad` gives), without `ceil_mode`'s extra.
    pub declared_pads: [usize; 4],
    pub out: [usize; 2],
}

impl Geometry {
    /// The input position of tap `(i, j)` of output `(oh, ow)`, `None` in the padding.
    pub fn tap(&self, oh: usize, ow: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let y = (oh * self.strides[0] + i * self.dilations[0]).checked_sub(self.pads[0])?;
        let x = (ow * self.strides[1] + j * self.dilations[1]).checked_sub(self.pads[1])?;
        (y < self.x[2] && x < self.x[3]).then_some((y, x))
    }

    /// Taps of output `(oh, ow)` inside the input plus the stated padding (`count_include_pad`).
    pub fn padded_taps(&self, oh: usize, ow: usize) -> usize {
        let count = |o: usize, axis: usize| {
            let (s, d, k) = (self.strides[axis], self.dilations[axis], self.kernel[axis]);
            let end = self.x[2 + axis] + self.declared_pads[axis] + self.declared_pads[axis + 2];
            (0..k).filter(|&t| o * s + t * d < end).count()
        };
        count(oh, 0) * count(ow, 1)
    }

    /// The ONNX output shape: `[N, channels, OH, OW]` or `[N, channels, OW]`.
    pub fn out_shape(&self, channels: usize) -> Vec<usize> {
        if self.one_d {
            vec![self.x[0], channels, self.out[1]]
        } else {
            vec![self.x[0], channels, self.out[0], self.out[1]]
        }
    }
}

fn ints(node: &Node, name: &str, n: usize, default: usize, lo: usize) -> Result<Vec<usize>, OnnxError> {
    match node.ints(name)? {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n && v.iter().all(|&x| x >= lo as i64 && x <= MAX_KERNEL as i64) => {
            Ok(v.iter().map(|&x| x as usize).collect())
        }
        Some(v) => Err(OnnxError::Unsupported(format!(
            "{}: `{name}` = {v:?}, expected {n} integers in {lo}..={MAX_KERNEL}",
            node.what()
        ))),
    }
}

/// `[N, C, L]` read as `[N, C, 1, L]`, or `[N, C, H, W]`; and whether it is 1-D.
fn nchw(node: &Node, shape: &[usize]) -> Result<([usize; 4], bool), OnnxError> {
    match *shape {
        [n, c, l] => Ok(([n, c, 1, l], true)),
        [n, c, h, w] => Ok(([n, c, h, w], false)),
        _ => Err(OnnxError::Unsupported(format!(
            "{}: input of shape {shape:?}; fhec reads 1-D and 2-D windows ([N, C, L] or [N, C, H, W])",
            node.what()
        ))),
    }
}

/// A per-axis attribute as `[height, width]` (1-D: `fill` for the height).
fn widen(one_d: bool, v: Vec<usize>, fill: usize) -> [usize; 2] {
    if one_d {
        [fill, v[0]]
    } else {
        [v[0], v[1]]
    }
}

/// The window of `node` over an input of `shape` (`[N, C, L]` or `[N, C, H, W]`); `kernel` from the
/// weights (Conv) or `None` (read `kernel_shape`); `global` for the global pools.
pub(crate) fn geometry(
    node: &Node,
    shape: &[usize],
    kernel: Option<&[usize]>,
    global: bool,
) -> Result<Geometry, OnnxError> {
    let (x, one_d) = nchw(node, shape)?;
    let dims = if one_d { 1 } else { 2 };
    let widen = |v: Vec<usize>, fill: usize| widen(one_d, v, fill);
    if global {
        return Ok(Geometry {
            x,
            one_d,
            kernel: [x[2], x[3]],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [0; 4],
            declared_pads: [0; 4],
            out: [1, 1],
        });
    }
    let k = match (kernel, node.ints("kernel_shape")?) {
        (Some(w), Some(ks)) if ks.iter().map(|&v| v as usize).ne(w.iter().copied()) => {
            return Err(shape_err(
                node,
                format!("kernel_shape {ks:?} but weights of spatial shape {w:?}"),
            ))
        }
        (Some(w), _) => w.to_vec(),
        (None, Some(_)) => ints(node, "kernel_shape", dims, 1, 1)?,
        (None, None) => return Err(shape_err(node, "missing attribute kernel_shape")),
    };
    if k.len() != dims || k.iter().any(|&v| v == 0 || v > MAX_KERNEL) {
        return Err(shape_err(
            node,
            format!("a kernel of shape {k:?} over a {dims}-D input"),
        ));
    }
    let kernel = widen(k, 1);
    let strides = widen(ints(node, "strides", dims, 1, 1)?, 1);
    let dilations = widen(ints(node, "dilations", dims, 1, 1)?, 1);
    let span = |a: usize| dilations[a] * (kernel[a] - 1) + 1;
    let auto = node.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
    let mut pads = [0usize; 4];
    match auto.as_str() {
        "NOTSET" => {
            let p = ints(node, "pads", 2 * dims, 0, 0)?;
            pads = if one_d {
                [0, p[0], 0, p[1]]
            } else {
                [p[0], p[1], p[2], p[3]]
            };
        }
        "VALID" => {}
        "SAME_UPPER" | "SAME_LOWER" => {
            for a in 0..2 {
                let out = x[2 + a].div_ceil(strides[a]);
                let total = ((out.max(1) - 1) * strides[a] + span(a)).saturating_sub(x[2 + a]);
                let (small, big) = (total / 2, total - total / 2);
                if auto == "SAME_UPPER" {
                    (pads[a], pads[a + 2]) = (small, big);
                } else {
                    (pads[a], pads[a + 2]) = (big, small);
                }
            }
        }
        other => return Err(shape_err(node, format!("auto_pad = {other:?}"))),
    }
    let declared_pads = pads;
    let ceil = node.int("ceil_mode", 0)? != 0;
    let mut out = [0usize; 2];
    for a in 0..2 {
        let padded = x[2 + a] + pads[a] + pads[a + 2];
        if padded < span(a) {
            return Err(shape_err(
                node,
                format!("a window of {} does not fit the padded input of {padded}", span(a)),
            ));
        }
        let room = padded - span(a);
        out[a] = if ceil {
            room.div_ceil(strides[a])
        } else {
            room / strides[a]
        } + 1;
        // a window must start inside the input or its leading padding (PyTorch's and onnxruntime's rule)
        if ceil && out[a] > 1 && (out[a] - 1) * strides[a] >= x[2 + a] + pads[a] {
            out[a] -= 1;
        }
        let needed = (out[a] - 1) * strides[a] + span(a);
        pads[a + 2] += needed.saturating_sub(padded);
    }
    if out[0].saturating_mul(out[1]) > MAX_KERNEL * 64 {
        return Err(shape_err(node, format!("{out:?} output positions")));
    }
    Ok(Geometry {
        x,
        one_d,
        kernel,
        strides,
        dilations,
        pads,
        declared_pads,
        out,
    })
}

/// A 4-D view of a 3-D or 4-D tensor.
fn as4(node: &Node, x: &ArrayD<f64>, g: &Geometry) -> Result<Array4<f64>, OnnxError> {
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order((g.x[0], g.x[1], g.x[2], g.x[3]))
        .map_err(|e| shape_err(node, e))
}

fn from4(node: &Node, y: Vec<f64>, g: &Geometry, channels: usize) -> Result<ArrayD<f64>, OnnxError> {
    ArrayD::from_shape_vec(IxDyn(&g.out_shape(channels)), y).map_err(|e| shape_err(node, e))
}

/// The convolution's group count, checked against the input and the weights `[F, C/group, k…]`.
pub(crate) fn conv_group(node: &Node, c: usize, w: &[usize]) -> Result<usize, OnnxError> {
    let group = node.int("group", 1)?;
    if group < 1 || group as usize > c.max(1) {
        return Err(shape_err(node, format!("group = {group} with {c} input channels")));
    }
    let group = group as usize;
    if w.len() < 3 || !c.is_multiple_of(group) || !w[0].is_multiple_of(group) || w[1] * group != c {
        return Err(shape_err(
            node,
            format!("weights of shape {w:?} do not match {c} input channels in {group} group(s)"),
        ));
    }
    Ok(group)
}

/// ONNX `Conv` in f64.
pub(crate) fn conv(
    node: &Node,
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    b: Option<&ArrayD<f64>>,
) -> Result<ArrayD<f64>, OnnxError> {
    if w.ndim() != x.ndim() {
        return Err(shape_err(
            node,
            format!("input of shape {:?} and weights of shape {:?}", x.shape(), w.shape()),
        ));
    }
    let g = geometry(node, x.shape(), Some(&w.shape()[2..]), false)?;
    let group = conv_group(node, g.x[1], w.shape())?;
    conv_with(node, x, w, b, &g, group)
}

/// A convolution of `x` (read as `g.x`) with `w` `[F, C/group, k…]` over the window `g`.
fn conv_with(
    node: &Node,
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    b: Option<&ArrayD<f64>>,
    g: &Geometry,
    group: usize,
) -> Result<ArrayD<f64>, OnnxError> {
    let f = w.shape()[0];
    if let Some(b) = b {
        if b.len() != f {
            return Err(shape_err(node, format!("a bias of {} values for {f} filters", b.len())));
        }
    }
    let bias: Vec<f64> = b.map(|b| b.iter().copied().collect()).unwrap_or_default();
    let cg = w.shape()[1];
    let w4 = w
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((f, cg, g.kernel[0], g.kernel[1]))
        .map_err(|e| shape_err(node, e))?;
    let x4 = as4(node, x, g)?;
    let fpg = f / group;
    let total = g.x[0] * f * g.out[0] * g.out[1];
    if total.saturating_mul(cg * g.kernel[0] * g.kernel[1]) > 1 << 34 {
        return Err(shape_err(node, "the convolution is too large to evaluate"));
    }
    let mut y = Vec::with_capacity(total);
    for n in 0..g.x[0] {
        for fo in 0..f {
            let c0 = (fo / fpg) * cg;
            for oh in 0..g.out[0] {
                for ow in 0..g.out[1] {
                    let mut acc = bias.get(fo).copied().unwrap_or(0.0);
                    for c in 0..cg {
                        for i in 0..g.kernel[0] {
                            for j in 0..g.kernel[1] {
                                if let Some((yy, xx)) = g.tap(oh, ow, i, j) {
                                    acc += x4[[n, c0 + c, yy, xx]] * w4[[fo, c, i, j]];
                                }
                            }
                        }
                    }
                    y.push(acc);
                }
            }
        }
    }
    from4(node, y, g, f)
}

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pool {
    /// `full_kernel`: with `count_include_pad`, every window divides by the kernel's size, the rows
    /// and columns `ceil_mode` adds included (onnxruntime's QLinearAveragePool; its float AveragePool
    /// counts only those inside the input and the stated padding).
    Average {
        count_include_pad: bool,
        full_kernel: bool,
    },
    Max,
}

/// The pooling op of `node` and its geometry.
pub(crate) fn pool_of(node: &Node, shape: &[usize]) -> Result<(Pool, Geometry), OnnxError> {
    let global = node.op.starts_with("Global");
    let pool = if node.op.ends_with("AveragePool") {
        Pool::Average {
            count_include_pad: node.int("count_include_pad", 0)? != 0,
            full_kernel: node.int(FULL_KERNEL_DIVISOR, 0)? != 0,
        }
    } else {
        if node.int("storage_order", 0)? != 0 {
            return Err(OnnxError::Unsupported(format!("{}: storage_order = 1", node.what())));
        }
        Pool::Max
    };
    Ok((pool, geometry(node, shape, None, global)?))
}

/// The internal attribute that marks an AveragePool rewritten from a QLinearAveragePool
/// ([`Pool::Average`]'s `full_kernel`); not an ONNX attribute.
pub(crate) const FULL_KERNEL_DIVISOR: &str = "fhec.full_kernel_divisor";

/// The divisor of average pooling's output `(oh, ow)`.
pub(crate) fn divisor(g: &Geometry, count_include_pad: bool, full_kernel: bool, oh: usize, ow: usize) -> usize {
    if count_include_pad && full_kernel {
        g.kernel[0] * g.kernel[1]
    } else if count_include_pad {
        g.padded_taps(oh, ow)
    } else {
        (0..g.kernel[0])
            .flat_map(|i| (0..g.kernel[1]).map(move |j| (i, j)))
            .filter(|&(i, j)| g.tap(oh, ow, i, j).is_some())
            .count()
    }
}

/// ONNX `AveragePool` / `MaxPool` / `GlobalAveragePool` / `GlobalMaxPool` in f64.
pub(crate) fn pool(node: &Node, x: &ArrayD<f64>) -> Result<ArrayD<f64>, OnnxError> {
    let (kind, g) = pool_of(node, x.shape())?;
    let x4 = as4(node, x, &g)?;
    let c = g.x[1];
    let total = g.x[0] * c * g.out[0] * g.out[1];
    if total.saturating_mul(g.kernel[0] * g.kernel[1]) > 1 << 34 {
        return Err(shape_err(node, "the pooling is too large to evaluate"));
    }
    let mut y = Vec::with_capacity(total);
    for n in 0..g.x[0] {
        for ch in 0..c {
            for oh in 0..g.out[0] {
                for ow in 0..g.out[1] {
                    let taps = (0..g.kernel[0])
                        .flat_map(|i| (0..g.kernel[1]).map(move |j| (i, j)))
                        .filter_map(|(i, j)| g.tap(oh, ow, i, j))
                        .map(|(yy, xx)| x4[[n, ch, yy, xx]]);
                    y.push(match kind {
                        Pool::Max => {
                            let m = taps.fold(f64::NEG_INFINITY, f64::max);
                            if m == f64::NEG_INFINITY {
                                return Err(shape_err(node, format!("window ({oh}, {ow}) covers only padding")));
                            }
                            m
                        }
                        Pool::Average {
                            count_include_pad,
                            full_kernel,
                        } => {
                            let d = divisor(&g, count_include_pad, full_kernel, oh, ow);
                            if d == 0 {
                                return Err(shape_err(node, format!("window ({oh}, {ow}) covers only padding")));
                            }
                            taps.sum::<f64>() / d as f64
                        }
                    });
                }
            }
        }
    }
    from4(node, y, &g, c)
}

/// ONNX `ConvTranspose` as a convolution: the input with `stride − 1` zeros between its elements and
/// `(k − 1)·d − pad` rows of zeros around (negative: cropped), then a stride-1 convolution with the
/// kernel flipped and its channel axes swapped per group.
pub(crate) struct Transposed {
    /// For each position of the extended input (`geometry.x`, `[N, C, H', W']`), the input position it
    /// holds (`None`: a zero).
    pub source: Vec<Option<(usize, usize)>>,
    /// The stride-1 convolution over the extended input.
    pub geometry: Geometry,
    /// `[F, C/group, kh, kw]`.
    pub weights: ArrayD<f64>,
    pub group: usize,
}

pub(crate) fn transposed(node: &Node, shape: &[usize], w: &ArrayD<f64>) -> Result<Transposed, OnnxError> {
    let (x, one_d) = nchw(node, shape)?;
    let dims = if one_d { 1 } else { 2 };
    if w.ndim() != dims + 2 {
        return Err(shape_err(node, format!("weights of shape {:?}", w.shape())));
    }
    let widen = |v: Vec<usize>, fill: usize| widen(one_d, v, fill);
    let c = x[1];
    let group = node.int("group", 1)?;
    if group < 1 || group as usize > c.max(1) {
        return Err(shape_err(node, format!("group = {group} with {c} input channels")));
    }
    let group = group as usize;
    let (wc, mg) = (w.shape()[0], w.shape()[1]);
    if wc != c || !c.is_multiple_of(group) || mg == 0 {
        return Err(shape_err(
            node,
            format!(
                "weights of shape {:?} for {c} input channels in {group} group(s)",
                w.shape()
            ),
        ));
    }
    let kernel = widen(w.shape()[2..].to_vec(), 1);
    if kernel.iter().any(|&k| k == 0 || k > MAX_KERNEL) {
        return Err(shape_err(node, format!("a kernel of {kernel:?}")));
    }
    let strides = widen(ints(node, "strides", dims, 1, 1)?, 1);
    let dilations = widen(ints(node, "dilations", dims, 1, 1)?, 1);
    let out_pad = widen(ints(node, "output_padding", dims, 0, 0)?, 0);
    if node.ints("output_shape")?.is_some() {
        return Err(OnnxError::Unsupported(format!(
            "{}: output_shape (give pads instead)",
            node.what()
        )));
    }
    if !matches!(node.string("auto_pad")?.as_deref(), None | Some("NOTSET")) {
        return Err(OnnxError::Unsupported(format!(
            "{}: auto_pad (give pads instead)",
            node.what()
        )));
    }
    let p = ints(node, "pads", 2 * dims, 0, 0)?;
    let pads = if one_d {
        [0, p[0], 0, p[1]]
    } else {
        [p[0], p[1], p[2], p[3]]
    };
    // extended sizes and where the input starts in them (may be negative: cropped)
    let mut ext = [x[0], c, 0, 0];
    let mut start = [0i64; 2];
    for a in 0..2 {
        let span = (dilations[a] * (kernel[a] - 1)) as i64;
        let before = span - pads[a] as i64;
        let after = span - pads[a + 2] as i64 + out_pad[a] as i64;
        let up = ((x[2 + a].max(1) - 1) * strides[a] + 1) as i64;
        let size = before + up + after;
        if size < span + 1 || size > (MAX_KERNEL * 64) as i64 {
            return Err(shape_err(
                node,
                format!("pads {p:?} leave no output on an axis of {}", x[2 + a]),
            ));
        }
        ext[2 + a] = size as usize;
        start[a] = before;
    }
    if ext[2].saturating_mul(ext[3]).saturating_mul(c.max(1)) > crate::MAX_TENSOR_ELEMENTS {
        return Err(shape_err(node, format!("the spread input {ext:?} is too large")));
    }
    let mut source = Vec::with_capacity(ext[2] * ext[3]);
    for yy in 0..ext[2] as i64 {
        for xx in 0..ext[3] as i64 {
            let (u, v) = (yy - start[0], xx - start[1]);
            let hit = u >= 0
                && v >= 0
                && u % strides[0] as i64 == 0
                && v % strides[1] as i64 == 0
                && ((u / strides[0] as i64) as usize) < x[2]
                && ((v / strides[1] as i64) as usize) < x[3];
            source.push(hit.then(|| ((u / strides[0] as i64) as usize, (v / strides[1] as i64) as usize)));
        }
    }
    let f = mg * group;
    let cg = c / group;
    let (kh, kw) = (kernel[0], kernel[1]);
    let w4: Vec<f64> = w.iter().copied().collect(); // [C, M/g, kh, kw]
    let mut flipped = Vec::with_capacity(f * cg * kh * kw);
    for fo in 0..f {
        let (g, m) = (fo / mg, fo % mg);
        for ci in 0..cg {
            for i in 0..kh {
                for j in 0..kw {
                    let src = (((g * cg + ci) * mg + m) * kh + (kh - 1 - i)) * kw + (kw - 1 - j);
                    flipped.push(w4[src]);
                }
            }
        }
    }
    let wshape: Vec<usize> = if one_d { vec![f, cg, kw] } else { vec![f, cg, kh, kw] };
    let weights = ArrayD::from_shape_vec(IxDyn(&wshape), flipped).map_err(|e| shape_err(node, e))?;
    let out = [ext[2] - dilations[0] * (kh - 1), ext[3] - dilations[1] * (kw - 1)];
    Ok(Transposed {
        source,
        geometry: Geometry {
            x: ext,
            one_d,
            kernel,
            strides: [1, 1],
            dilations,
            pads: [0; 4],
            declared_pads: [0; 4],
            out,
        },
        weights,
        group,
    })
}

/// ONNX `ConvTranspose` in f64 (through [`transposed`]).
pub(crate) fn conv_transpose(
    node: &Node,
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    b: Option<&ArrayD<f64>>,
) -> Result<ArrayD<f64>, OnnxError> {
    let t = transposed(node, x.shape(), w)?;
    let g = &t.geometry;
    let (n, c) = (g.x[0], g.x[1]);
    let rows = if g.one_d { 1 } else { x.shape()[2] };
    let xin = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[n, c, rows, x.shape()[x.ndim() - 1]]))
        .map_err(|e| shape_err(node, e))?;
    let f = t.weights.shape()[0];
    if let Some(b) = b {
        if b.len() != f {
            return Err(shape_err(node, format!("a bias of {} values for {f} filters", b.len())));
        }
    }
    let total = n * f * g.out[0] * g.out[1];
    if total.saturating_mul(t.weights.len() / f.max(1)) > 1 << 34 {
        return Err(shape_err(node, "the convolution is too large to evaluate"));
    }
    let plane = g.x[2] * g.x[3];
    if n.saturating_mul(c).saturating_mul(plane) > crate::MAX_TENSOR_ELEMENTS {
        return Err(shape_err(node, "the spread input is too large to evaluate"));
    }
    let mut ext = vec![0.0; n * c * plane];
    for b_ in 0..n {
        for ch in 0..c {
            for (k, s) in t.source.iter().enumerate() {
                if let Some((yy, xx)) = s {
                    ext[(b_ * c + ch) * plane + k] = xin[[b_, ch, *yy, *xx]];
                }
            }
        }
    }
    let mut ext_shape = vec![n, c];
    if !g.one_d {
        ext_shape.push(g.x[2]);
    }
    ext_shape.push(g.x[3]);
    let ext = ArrayD::from_shape_vec(IxDyn(&ext_shape), ext).map_err(|e| shape_err(node, e))?;
    conv_with(node, &ext, &t.weights, b, g, t.group)
}
