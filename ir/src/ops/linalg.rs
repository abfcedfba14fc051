//! Linear algebra and pooling: `matmul`, `dot`, `sum`, `conv2d`, `avgpool2d`, `maxpool2d`.

use super::*;

/// Operand shapes of a numpy matmul, and the result shape.
struct MatmulShape {
    batch: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
    out: Vec<usize>,
}

fn matmul_shape(a: &[usize], b: &[usize]) -> Result<MatmulShape, String> {
    if a.is_empty() || b.is_empty() {
        return Err("matmul operands must have rank ≥ 1 (use fhe.mul for scalars)".into());
    }
    let a2: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(format!(
            "contraction dimensions differ: lhs {} has {k} columns, rhs {} has {k2} rows",
            shape_str(a),
            shape_str(b)
        ));
    }
    let batch = broadcast_shapes(&a2[..a2.len() - 2], &b2[..b2.len() - 2]).ok_or_else(|| {
        format!(
            "batch dimensions of {} and {} do not broadcast",
            shape_str(a),
            shape_str(b)
        )
    })?;
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(MatmulShape { batch, m, k, n, out })
}

/// Interval of a sum of `k` products of values from two intervals.
fn dot_range(a: &Type, b: &Type, k: usize) -> (i128, i128) {
    let (alo, ahi) = range(a);
    let (blo, bhi) = range(b);
    let c = [alo * blo, alo * bhi, ahi * blo, ahi * bhi];
    let (plo, phi) = (*c.iter().min().unwrap_or(&0), *c.iter().max().unwrap_or(&0));
    (plo.min(0) * k as i128, phi.max(0) * k as i128)
}

/// Materialises `t` broadcast to `shape` in C order.
fn bcast_vec(t: &Tensor, shape: &[usize]) -> Result<Vec<i128>, String> {
    let v = t.broadcast(shape).ok_or("operand does not broadcast")?;
    Ok(v.iter().map(|&x| x as i128).collect())
}

op_struct!(MatmulOp,
    summary: "Matrix product of an encrypted tensor and a clear tensor (either side), numpy `matmul` rules.",
    semantics: "`r = a @ b`, exactly one operand encrypted. Rank-1 operands are promoted as in numpy (a row vector \
on the left, a column vector on the right, the added dimension removed from the result); dimensions before the \
last two are batch dimensions and broadcast. Signed when either operand is signed. Leveled: a weighted sum per \
result element.",
    valid: r#"func.func @main(%x: tensor<1x4x!fhe.eint<6>>) -> tensor<1x2x!fhe.esint<14>> {
  %w = "fhe.constant"() {value = dense<[[3, -1], [0, 2], [5, 5], [-7, 1]]> : tensor<4x2xi4>} : () -> tensor<4x2xi4>
  %0 = "fhe.matmul"(%x, %w) : (tensor<1x4x!fhe.eint<6>>, tensor<4x2xi4>) -> tensor<1x2x!fhe.esint<14>>
  "func.return"(%0) : (tensor<1x2x!fhe.esint<14>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<1x3x!fhe.eint<6>>) -> tensor<1x2x!fhe.esint<14>> {
  %w = "fhe.constant"() {value = dense<[[3, -1], [0, 2], [5, 5], [-7, 1]]> : tensor<4x2xi4>} : () -> tensor<4x2xi4>
  %0 = "fhe.matmul"(%x, %w) : (tensor<1x3x!fhe.eint<6>>, tensor<4x2xi4>) -> tensor<1x2x!fhe.esint<14>>
  "func.return"(%0) : (tensor<1x2x!fhe.esint<14>>) -> ()
}"#,
    error: "contraction dimensions differ",
);

impl OpDef for MatmulOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(2)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::OneEncrypted
    }
    fn infer_type(&self, o: &[Type], _: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let s = matmul_shape(&o[0].shape, &o[1].shape)?;
        let (lo, hi) = dot_range(&o[0], &o[1], s.k);
        Ok(Type::new(
            enc_elem_for(lo, hi, o[0].is_signed() || o[1].is_signed()),
            s.out,
        ))
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], _: &Attrs, _: &Type) -> Result<Wide, String> {
        let s = matmul_shape(&o[0].shape, &o[1].shape)?;
        let (m, k, n) = (s.m, s.k, s.n);
        let mut ash = s.batch.clone();
        ash.extend([m, k]);
        let mut bsh = s.batch.clone();
        bsh.extend([k, n]);
        let a = args[0]
            .to_shape(if o[0].rank() == 1 {
                vec![1, k]
            } else {
                o[0].shape.clone()
            })
            .map_err(|e| e.to_string())?;
        let b = args[1]
            .to_shape(if o[1].rank() == 1 {
                vec![k, 1]
            } else {
                o[1].shape.clone()
            })
            .map_err(|e| e.to_string())?;
        let av = bcast_vec(&a.to_owned().into_dyn(), &ash)?;
        let bv = bcast_vec(&b.to_owned().into_dyn(), &bsh)?;
        let nb: usize = s.batch.iter().product();
        let mut out = Vec::with_capacity(nb * m * n);
        for bi in 0..nb {
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0i128;
                    for t in 0..k {
                        acc += av[bi * m * k + i * k + t] * bv[bi * k * n + t * n + j];
                    }
                    out.push(acc);
                }
            }
        }
        from_vec(&s.out, out)
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Linear
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Bilinear
    }
    fn cost(&self, o: &[Type], _: &Attrs, r: &Type) -> Cost {
        let k = matmul_shape(&o[0].shape, &o[1].shape).map(|s| s.k).unwrap_or(0);
        Cost::leveled(r.num_elements() * k)
    }
}

op_struct!(DotOp,
    summary: "Dot product of two rank-1 tensors of equal length, one encrypted and one clear.",
    semantics: "`r = Σ a[i]·b[i]`, a scalar. Signed when either operand is signed. Leveled.",
    valid: r#"func.func @main(%x: tensor<3x!fhe.eint<4>>) -> !fhe.eint<9> {
  %w = "fhe.constant"() {value = dense<[1, 2, 3]> : tensor<3xui2>} : () -> tensor<3xui2>
  %0 = "fhe.dot"(%x, %w) : (tensor<3x!fhe.eint<4>>, tensor<3xui2>) -> !fhe.eint<9>
  "func.return"(%0) : (!fhe.eint<9>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<3x!fhe.eint<4>>) -> !fhe.eint<9> {
  %w = "fhe.constant"() {value = dense<[1, 2]> : tensor<2xui2>} : () -> tensor<2xui2>
  %0 = "fhe.dot"(%x, %w) : (tensor<3x!fhe.eint<4>>, tensor<2xui2>) -> !fhe.eint<9>
  "func.return"(%0) : (!fhe.eint<9>) -> ()
}"#,
    error: "rank-1 operands of equal length",
);

impl OpDef for DotOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(2)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::OneEncrypted
    }
    fn infer_type(&self, o: &[Type], _: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        if o[0].rank() != 1 || o[1].rank() != 1 || o[0].shape != o[1].shape {
            return Err(format!(
                "fhe.dot needs rank-1 operands of equal length, found {} and {}",
                shape_str(&o[0].shape),
                shape_str(&o[1].shape)
            ));
        }
        let (lo, hi) = dot_range(&o[0], &o[1], o[0].shape[0]);
        Ok(Type::scalar(enc_elem_for(lo, hi, o[0].is_signed() || o[1].is_signed())))
    }
    fn eval(&self, args: &[&Tensor], _: &[Type], _: &Attrs, _: &Type) -> Result<Wide, String> {
        let acc: i128 = args[0]
            .iter()
            .zip(args[1].iter())
            .map(|(&x, &y)| x as i128 * y as i128)
            .sum();
        Ok(ndarray::arr0(acc).into_dyn())
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Linear
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Bilinear
    }
    fn cost(&self, o: &[Type], _: &Attrs, _: &Type) -> Cost {
        Cost::leveled(o[0].num_elements())
    }
}

/// Normalised, sorted, distinct reduction axes of `sum` (all axes when absent or empty).
fn sum_axes(attrs: &Attrs, rank: usize) -> Result<Vec<usize>, String> {
    let axes = get_ints(attrs, "axes")?.unwrap_or_default();
    if axes.is_empty() {
        return Ok((0..rank).collect());
    }
    let mut out = Vec::new();
    for a in axes {
        let n = norm_axis(a, rank)?;
        if out.contains(&n) {
            return Err(format!("axis {a} is listed twice"));
        }
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

fn sum_shape(shape: &[usize], axes: &[usize], keep: bool) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, &d) in shape.iter().enumerate() {
        if axes.contains(&i) {
            if keep {
                out.push(1);
            }
        } else {
            out.push(d);
        }
    }
    out
}

op_struct!(SumOp,
    summary: "Sum of an encrypted tensor over some axes.",
    semantics: "`axes` (optional, negative values count from the end) lists the reduced axes; absent or `[]` reduces \
every axis, as in Concrete. `keep_dims` (default false) keeps reduced axes with size 1. A sum over an empty axis \
is 0. The result keeps the operand's signedness. Leveled.",
    valid: r#"func.func @main(%x: tensor<2x3x!fhe.eint<4>>) -> tensor<2x1x!fhe.eint<6>> {
  %0 = "fhe.sum"(%x) {axes = [1], keep_dims = true} : (tensor<2x3x!fhe.eint<4>>) -> tensor<2x1x!fhe.eint<6>>
  "func.return"(%0) : (tensor<2x1x!fhe.eint<6>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x3x!fhe.eint<4>>) -> tensor<2x!fhe.eint<6>> {
  %0 = "fhe.sum"(%x) {axes = [2]} : (tensor<2x3x!fhe.eint<4>>) -> tensor<2x!fhe.eint<6>>
  "func.return"(%0) : (tensor<2x!fhe.eint<6>>) -> ()
}"#,
    error: "axis 2 is out of range",
);

impl OpDef for SumOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        const A: &[AttrSpec] = &[
            attr("axes", AttrKind::IntArray, false, "reduced axes; absent or [] = all"),
            attr(
                "keep_dims",
                AttrKind::Bool,
                false,
                "keep reduced axes with size 1 (default false)",
            ),
        ];
        A
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let axes = sum_axes(attrs, o[0].rank())?;
        let keep = get_bool(attrs, "keep_dims")?.unwrap_or(false);
        let n: usize = axes.iter().map(|&a| o[0].shape[a]).product();
        let (lo, hi) = range(&o[0]);
        let (lo, hi) = (lo.min(0) * n as i128, hi.max(0) * n as i128);
        Ok(Type::new(
            enc_elem_for(lo, hi, o[0].is_signed()),
            sum_shape(&o[0].shape, &axes, keep),
        ))
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, r: &Type) -> Result<Wide, String> {
        let axes = sum_axes(attrs, o[0].rank())?;
        let mut acc = wide(args[0]);
        for &a in axes.iter().rev() {
            acc = acc.sum_axis(ndarray::Axis(a));
        }
        from_vec(&r.shape, acc.iter().copied().collect())
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Linear
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn cost(&self, o: &[Type], _: &Attrs, _: &Type) -> Cost {
        Cost::leveled(o[0].num_elements())
    }
}

/// Spatial parameters of a 2-D window op (conv or pool), normalised and checked.
pub struct Window {
    pub kernel: [usize; 2],
    strides: [usize; 2],
    /// top, left, bottom, right (ONNX order: h_begin, w_begin, h_end, w_end).
    pads: [usize; 4],
    dilations: [usize; 2],
    pub out: [usize; 2],
}

/// Largest kernel size, stride, dilation or padding accepted (keeps every window computation exact).
const MAX_WINDOW: i64 = 1 << 16;

fn pair(attrs: &Attrs, name: &str, default: [usize; 2]) -> Result<[usize; 2], String> {
    match get_ints(attrs, name)? {
        None => Ok(default),
        Some(v) if v.len() == 2 && v.iter().all(|&x| (1..=MAX_WINDOW).contains(&x)) => {
            Ok([v[0] as usize, v[1] as usize])
        }
        Some(v) => Err(format!(
            "`{name}` must be two integers in 1 ..= {MAX_WINDOW}, found {v:?}"
        )),
    }
}

fn window(attrs: &Attrs, kernel: [usize; 2], hw: [usize; 2]) -> Result<Window, String> {
    let strides = pair(attrs, "strides", [1, 1])?;
    let dilations = pair(attrs, "dilations", [1, 1])?;
    let pads = match get_ints(attrs, "pads")? {
        None => [0; 4],
        Some(v) if v.len() == 4 && v.iter().all(|&x| (0..=MAX_WINDOW).contains(&x)) => {
            [v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize]
        }
        Some(v) => {
            return Err(format!(
                "`pads` must be four integers ≥ 0 [top, left, bottom, right], found {v:?}"
            ))
        }
    };
    let mut out = [0; 2];
    for d in 0..2 {
        if kernel[d] == 0 {
            return Err("kernel dimensions must be ≥ 1".into());
        }
        let eff = dilations[d] * (kernel[d] - 1) + 1;
        let padded = hw[d] + pads[d] + pads[d + 2];
        if padded < eff {
            return Err(format!(
                "the window ({eff} with dilation) is larger than the padded input ({padded}) along spatial axis {d}"
            ));
        }
        out[d] = (padded - eff) / strides[d] + 1;
    }
    Ok(Window {
        kernel,
        strides,
        pads,
        dilations,
        out,
    })
}

impl Window {
    /// Input positions (row, col) covered by output (oh, ow), `None` for padding.
    /// The input positions of output `(oh, ow)`'s window (`None` for padding).
    pub fn taps(&self, oh: usize, ow: usize, h: usize, w: usize) -> impl Iterator<Item = Option<(usize, usize)>> + '_ {
        let (kh, kw) = (self.kernel[0], self.kernel[1]);
        (0..kh * kw).map(move |t| {
            let (i, j) = (t / kw, t % kw);
            let r = (oh * self.strides[0] + i * self.dilations[0]) as isize - self.pads[0] as isize;
            let c = (ow * self.strides[1] + j * self.dilations[1]) as isize - self.pads[1] as isize;
            if r < 0 || c < 0 || r as usize >= h || c as usize >= w {
                None
            } else {
                Some((r as usize, c as usize))
            }
        })
    }
}

fn nchw(t: &Type, op: &str) -> Result<[usize; 4], String> {
    match t.shape.as_slice() {
        &[n, c, h, w] => Ok([n, c, h, w]),
        s => Err(format!(
            "{op} input must have rank 4 (N, C, H, W), found shape {}",
            shape_str(s)
        )),
    }
}

op_struct!(Conv2dOp,
    summary: "2-D convolution of an encrypted NCHW tensor with clear weights and an optional clear bias.",
    semantics: "Operands: input `[N, C, H, W]` (encrypted), weights `[F, C/group, KH, KW]` (clear), optional bias \
`[F]` (clear). Attributes: `strides` (default `[1, 1]`), `pads` `[top, left, bottom, right]` (zero padding, \
default 0), `dilations` (default `[1, 1]`), `group` (default 1; C and F divisible by it). Output \
`[N, F, OH, OW]` with `OH = (H + top + bottom - dil·(KH-1) - 1) / stride + 1`, as ONNX `Conv`. \
`r[n,f,y,x] = bias[f] + Σ_{c,i,j} in[n, g·C/group + c, y·s + i·d - top, x·s + j·d - left] · w[f,c,i,j]`. \
Signed when any operand is signed. Leveled.",
    valid: r#"func.func @main(%x: tensor<1x1x3x3x!fhe.eint<4>>) -> tensor<1x2x2x2x!fhe.esint<9>> {
  %w = "fhe.constant"() {value = dense<[[[[1, 0], [0, 1]]], [[[-1, 2], [1, 1]]]]> : tensor<2x1x2x2xi3>} : () -> tensor<2x1x2x2xi3>
  %0 = "fhe.conv2d"(%x, %w) : (tensor<1x1x3x3x!fhe.eint<4>>, tensor<2x1x2x2xi3>) -> tensor<1x2x2x2x!fhe.esint<9>>
  "func.return"(%0) : (tensor<1x2x2x2x!fhe.esint<9>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<1x2x3x3x!fhe.eint<4>>) -> tensor<1x2x2x2x!fhe.esint<9>> {
  %w = "fhe.constant"() {value = dense<1> : tensor<2x1x2x2xi3>} : () -> tensor<2x1x2x2xi3>
  %0 = "fhe.conv2d"(%x, %w) : (tensor<1x2x3x3x!fhe.eint<4>>, tensor<2x1x2x2xi3>) -> tensor<1x2x2x2x!fhe.esint<9>>
  "func.return"(%0) : (tensor<1x2x2x2x!fhe.esint<9>>) -> ()
}"#,
    error: "weights have 1 input channels per group",
);

struct ConvShape {
    x: [usize; 4],
    f: usize,
    cg: usize,
    group: usize,
    win: Window,
}

fn conv_shape(o: &[Type], attrs: &Attrs) -> Result<ConvShape, String> {
    let x = nchw(&o[0], "fhe.conv2d")?;
    let w = match o[1].shape.as_slice() {
        &[f, c, kh, kw] => [f, c, kh, kw],
        s => {
            return Err(format!(
                "fhe.conv2d weights must have rank 4 (F, C/group, KH, KW), found {}",
                shape_str(s)
            ))
        }
    };
    let group = get_int(attrs, "group")?.unwrap_or(1);
    if group < 1 {
        return Err(format!("`group` must be ≥ 1, found {group}"));
    }
    let group = group as usize;
    if x[1] % group != 0 || w[0] % group != 0 {
        return Err(format!(
            "input channels ({}) and filters ({}) must be divisible by group ({group})",
            x[1], w[0]
        ));
    }
    if w[1] != x[1] / group {
        return Err(format!(
            "weights have {} input channels per group, the input has {} channels in {group} group(s)",
            w[1], x[1]
        ));
    }
    if let Some(b) = o.get(2) {
        if b.shape != [w[0]] {
            return Err(format!(
                "bias must have shape [{}], found {}",
                w[0],
                shape_str(&b.shape)
            ));
        }
    }
    let win = window(attrs, [w[2], w[3]], [x[2], x[3]])?;
    Ok(ConvShape {
        x,
        f: w[0],
        cg: w[1],
        group,
        win,
    })
}

const WINDOW_ATTRS: &[AttrSpec] = &[
    attr("strides", AttrKind::IntArray, false, "[sh, sw], default [1, 1]"),
    attr(
        "pads",
        AttrKind::IntArray,
        false,
        "[top, left, bottom, right], default 0",
    ),
    attr("dilations", AttrKind::IntArray, false, "[dh, dw], default [1, 1]"),
];

impl OpDef for Conv2dOp {
    fn arity(&self) -> Arity {
        Arity::Between(2, 3)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::FirstEncrypted
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        const A: &[AttrSpec] = &[
            WINDOW_ATTRS[0],
            WINDOW_ATTRS[1],
            WINDOW_ATTRS[2],
            attr("group", AttrKind::Int, false, "number of groups, default 1"),
        ];
        A
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let s = conv_shape(o, attrs)?;
        let k = s.cg * s.win.kernel[0] * s.win.kernel[1];
        let (mut lo, mut hi) = dot_range(&o[0], &o[1], k);
        if let Some(b) = o.get(2) {
            let (blo, bhi) = range(b);
            lo += blo.min(0);
            hi += bhi.max(0);
        }
        let signed = o.iter().any(|t| t.is_signed());
        Ok(Type::new(
            enc_elem_for(lo, hi, signed),
            vec![s.x[0], s.f, s.win.out[0], s.win.out[1]],
        ))
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, r: &Type) -> Result<Wide, String> {
        let s = conv_shape(o, attrs)?;
        let [n, _, h, w] = s.x;
        let (x, wt) = (args[0], args[1]);
        let fpg = s.f / s.group;
        let mut out = Vec::with_capacity(r.num_elements());
        for b in 0..n {
            for f in 0..s.f {
                let g = f / fpg;
                for oh in 0..s.win.out[0] {
                    for ow in 0..s.win.out[1] {
                        let mut acc: i128 = args.get(2).map_or(0, |bias| bias[[f]] as i128);
                        for c in 0..s.cg {
                            for (t, tap) in s.win.taps(oh, ow, h, w).enumerate() {
                                if let Some((y, xx)) = tap {
                                    let (i, j) = (t / s.win.kernel[1], t % s.win.kernel[1]);
                                    acc += x[[b, g * s.cg + c, y, xx]] as i128 * wt[[f, c, i, j]] as i128;
                                }
                            }
                        }
                        out.push(acc);
                    }
                }
            }
        }
        from_vec(&r.shape, out)
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Linear
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Bilinear
    }
    fn cost(&self, o: &[Type], _: &Attrs, r: &Type) -> Cost {
        let per = o[1].shape.iter().skip(1).product::<usize>();
        Cost::leveled(r.num_elements() * per)
    }
}

/// Input shape and window of a pooling op (for backends).
pub fn pool_window(o: &[Type], attrs: &Attrs, op: &str) -> Result<([usize; 4], Window), String> {
    let x = nchw(&o[0], op)?;
    let k = match get_ints(attrs, "kernel_shape")? {
        Some(v) if v.len() == 2 && v.iter().all(|&d| (1..=MAX_WINDOW).contains(&d)) => [v[0] as usize, v[1] as usize],
        Some(v) => {
            return Err(format!(
                "`kernel_shape` must be two integers in 1 ..= {MAX_WINDOW}, found {v:?}"
            ))
        }
        None => return Err("missing attribute `kernel_shape`".into()),
    };
    let win = window(attrs, k, [x[2], x[3]])?;
    Ok((x, win))
}

const POOL_ATTRS: &[AttrSpec] = &[
    attr("kernel_shape", AttrKind::IntArray, true, "[kh, kw]"),
    WINDOW_ATTRS[0],
    WINDOW_ATTRS[1],
];

op_struct!(Avgpool2dOp,
    summary: "2-D average pooling of an encrypted NCHW tensor.",
    semantics: "Attributes: `kernel_shape` `[KH, KW]` (required), `strides` (default `[1, 1]`), `pads` \
`[top, left, bottom, right]` (default 0). Each output is the floor of the window sum divided by `KH·KW`; padded \
positions count as zeros (ONNX `count_include_pad = 1`). The result keeps the operand's type kind. One table \
lookup per output element (the division) after a leveled window sum.",
    valid: r#"func.func @main(%x: tensor<1x1x4x4x!fhe.eint<4>>) -> tensor<1x1x2x2x!fhe.eint<4>> {
  %0 = "fhe.avgpool2d"(%x) {kernel_shape = [2, 2], strides = [2, 2]} : (tensor<1x1x4x4x!fhe.eint<4>>) -> tensor<1x1x2x2x!fhe.eint<4>>
  "func.return"(%0) : (tensor<1x1x2x2x!fhe.eint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<1x4x4x!fhe.eint<4>>) -> tensor<1x2x2x!fhe.eint<4>> {
  %0 = "fhe.avgpool2d"(%x) {kernel_shape = [2, 2], strides = [2, 2]} : (tensor<1x4x4x!fhe.eint<4>>) -> tensor<1x2x2x!fhe.eint<4>>
  "func.return"(%0) : (tensor<1x2x2x!fhe.eint<4>>) -> ()
}"#,
    error: "input must have rank 4",
);

impl OpDef for Avgpool2dOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        POOL_ATTRS
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let (x, win) = pool_window(o, attrs, "fhe.avgpool2d")?;
        Ok(o[0].with_shape(vec![x[0], x[1], win.out[0], win.out[1]]))
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, r: &Type) -> Result<Wide, String> {
        let (x, win) = pool_window(o, attrs, "fhe.avgpool2d")?;
        let area = (win.kernel[0] * win.kernel[1]) as i128;
        let mut out = Vec::with_capacity(r.num_elements());
        for b in 0..x[0] {
            for c in 0..x[1] {
                for oh in 0..win.out[0] {
                    for ow in 0..win.out[1] {
                        let s: i128 = win
                            .taps(oh, ow, x[2], x[3])
                            .flatten()
                            .map(|(i, j)| args[0][[b, c, i, j]] as i128)
                            .sum();
                        out.push(s.div_euclid(area));
                    }
                }
            }
        }
        from_vec(&r.shape, out)
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Lut
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn cost(&self, o: &[Type], attrs: &Attrs, r: &Type) -> Cost {
        let area = get_ints(attrs, "kernel_shape")
            .ok()
            .flatten()
            .map_or(1, |k| k.iter().product::<i64>().max(1)) as u32;
        let p = o[0].width() + (32 - (area - 1).leading_zeros());
        let mut c = Cost::pbs(p, r.num_elements());
        c.leveled = (r.num_elements() * area as usize) as u64;
        c
    }
}

op_struct!(Maxpool2dOp,
    summary: "2-D max pooling of an encrypted NCHW tensor.",
    semantics: "Attributes: `kernel_shape` `[KH, KW]` (required), `strides` (default `[1, 1]`), `pads` \
`[top, left, bottom, right]` (default 0; padded positions are ignored), `dilations` (default `[1, 1]`). Each \
output is the maximum of its window; every window must contain at least one input element. The result keeps \
the operand's type kind. Lowered as a tree of `max(a, b) = b + relu(a - b)`: one table lookup per comparison.",
    valid: r#"func.func @main(%x: tensor<1x1x2x2x!fhe.esint<4>>) -> tensor<1x1x1x1x!fhe.esint<4>> {
  %0 = "fhe.maxpool2d"(%x) {kernel_shape = [2, 2]} : (tensor<1x1x2x2x!fhe.esint<4>>) -> tensor<1x1x1x1x!fhe.esint<4>>
  "func.return"(%0) : (tensor<1x1x1x1x!fhe.esint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<1x1x2x2x!fhe.esint<4>>) -> tensor<1x1x1x1x!fhe.esint<4>> {
  %0 = "fhe.maxpool2d"(%x) {kernel_shape = [3, 3]} : (tensor<1x1x2x2x!fhe.esint<4>>) -> tensor<1x1x1x1x!fhe.esint<4>>
  "func.return"(%0) : (tensor<1x1x1x1x!fhe.esint<4>>) -> ()
}"#,
    error: "larger than the padded input",
);

impl OpDef for Maxpool2dOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        const A: &[AttrSpec] = &[POOL_ATTRS[0], POOL_ATTRS[1], POOL_ATTRS[2], WINDOW_ATTRS[2]];
        A
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let (x, win) = pool_window(o, attrs, "fhe.maxpool2d")?;
        if x[0] * x[1] > 0 {
            for oh in 0..win.out[0] {
                for ow in 0..win.out[1] {
                    if win.taps(oh, ow, x[2], x[3]).all(|t| t.is_none()) {
                        return Err(format!("the window of output ({oh}, {ow}) covers only padding"));
                    }
                }
            }
        }
        Ok(o[0].with_shape(vec![x[0], x[1], win.out[0], win.out[1]]))
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, r: &Type) -> Result<Wide, String> {
        let (x, win) = pool_window(o, attrs, "fhe.maxpool2d")?;
        let mut out = Vec::with_capacity(r.num_elements());
        for b in 0..x[0] {
            for c in 0..x[1] {
                for oh in 0..win.out[0] {
                    for ow in 0..win.out[1] {
                        let m = win
                            .taps(oh, ow, x[2], x[3])
                            .flatten()
                            .map(|(i, j)| args[0][[b, c, i, j]] as i128)
                            .max();
                        out.push(m.ok_or("a pooling window covers only padding")?);
                    }
                }
            }
        }
        from_vec(&r.shape, out)
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Lut
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn cost(&self, o: &[Type], attrs: &Attrs, r: &Type) -> Cost {
        let area = get_ints(attrs, "kernel_shape")
            .ok()
            .flatten()
            .map_or(1, |k| k.iter().product::<i64>().max(1)) as usize;
        let mut c = Cost::pbs(o[0].width() + 1, r.num_elements() * (area - 1));
        c.leveled = (2 * r.num_elements() * (area - 1)) as u64;
        c
    }
}
