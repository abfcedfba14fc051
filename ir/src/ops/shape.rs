//! Constants and data movement: `constant`, `zeros`, `reshape`, `transpose`, `broadcast`, `concat`,
//! `slice`, `gather`. Data-movement ops keep their operand's element type exactly and accept clear or
//! encrypted tensors; they cost nothing on ciphertexts.

use super::*;

op_struct!(ConstantOp,
    summary: "A clear constant tensor.",
    semantics: "Attribute `value`: a dense tensor; the result has its type (clear). No operands.",
    valid: r#"func.func @main(%x: tensor<2x!fhe.eint<3>>) -> tensor<2x!fhe.eint<4>> {
  %c = "fhe.constant"() {value = dense<[1, 7]> : tensor<2xui3>} : () -> tensor<2xui3>
  %0 = "fhe.add"(%x, %c) : (tensor<2x!fhe.eint<3>>, tensor<2xui3>) -> tensor<2x!fhe.eint<4>>
  "func.return"(%0) : (tensor<2x!fhe.eint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x!fhe.eint<3>>) -> tensor<2x!fhe.eint<4>> {
  %c = "fhe.constant"() {value = dense<[1, 7]> : tensor<2xui3>} : () -> tensor<2xui4>
  %0 = "fhe.add"(%x, %c) : (tensor<2x!fhe.eint<3>>, tensor<2xui4>) -> tensor<2x!fhe.eint<4>>
  "func.return"(%0) : (tensor<2x!fhe.eint<4>>) -> ()
}"#,
    error: "result type must be tensor<2xui3>",
);

impl OpDef for ConstantOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(0)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::None
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        const A: &[AttrSpec] = &[attr("value", AttrKind::Dense, true, "the constant")];
        A
    }
    fn infer_type(&self, _: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        Ok(req_dense(attrs, "value")?.ty.clone())
    }
    fn check_result(&self, _: &[Type], _: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        same_type(inferred, declared)
    }
    fn eval(&self, _: &[&Tensor], _: &[Type], attrs: &Attrs, _: &Type) -> Result<Wide, String> {
        Ok(wide(&req_dense(attrs, "value")?.data))
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Zero
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn cost(&self, _: &[Type], _: &Attrs, _: &Type) -> Cost {
        Cost::default()
    }
}

op_struct!(ZerosOp,
    summary: "An encrypted tensor of zeros (trivial encryptions).",
    semantics: "No operands, no attributes; the declared result type (encrypted) gives shape and width.",
    valid: r#"func.func @main() -> tensor<2x3x!fhe.eint<4>> {
  %0 = "fhe.zeros"() : () -> tensor<2x3x!fhe.eint<4>>
  "func.return"(%0) : (tensor<2x3x!fhe.eint<4>>) -> ()
}"#,
    invalid: r#"func.func @main() -> tensor<2x3xi4> {
  %0 = "fhe.zeros"() : () -> tensor<2x3xi4>
  "func.return"(%0) : (tensor<2x3xi4>) -> ()
}"#,
    error: "fhe.zeros result must be encrypted",
);

impl OpDef for ZerosOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(0)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::None
    }
    fn infer_type(&self, _: &[Type], _: &Attrs, declared: Option<&Type>) -> Result<Type, String> {
        let t = declared.ok_or("fhe.zeros needs an explicit result type")?;
        if !t.is_encrypted() {
            return Err(format!("fhe.zeros result must be encrypted, found {}", t.elem));
        }
        Ok(t.clone())
    }
    fn eval(&self, _: &[&Tensor], _: &[Type], _: &Attrs, r: &Type) -> Result<Wide, String> {
        Ok(Wide::zeros(r.shape.as_slice()))
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Zero
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Zero
    }
    fn cost(&self, _: &[Type], _: &Attrs, _: &Type) -> Cost {
        Cost::default()
    }
}

op_struct!(ReshapeOp,
    summary: "Changes a tensor's shape, keeping its elements in row-major (C) order.",
    semantics: "The result shape comes from the declared result type and must have the same number of elements; \
the element type is kept.",
    valid: r#"func.func @main(%x: tensor<2x3x!fhe.eint<4>>) -> tensor<6x!fhe.eint<4>> {
  %0 = "fhe.reshape"(%x) : (tensor<2x3x!fhe.eint<4>>) -> tensor<6x!fhe.eint<4>>
  "func.return"(%0) : (tensor<6x!fhe.eint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x3x!fhe.eint<4>>) -> tensor<5x!fhe.eint<4>> {
  %0 = "fhe.reshape"(%x) : (tensor<2x3x!fhe.eint<4>>) -> tensor<5x!fhe.eint<4>>
  "func.return"(%0) : (tensor<5x!fhe.eint<4>>) -> ()
}"#,
    error: "cannot reshape 6 elements into shape [5]",
);

impl OpDef for ReshapeOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::SameElem
    }
    fn infer_type(&self, o: &[Type], _: &Attrs, declared: Option<&Type>) -> Result<Type, String> {
        let t = declared.ok_or("fhe.reshape needs an explicit result type")?;
        if t.num_elements() != o[0].num_elements() {
            return Err(format!(
                "cannot reshape {} elements into shape {} ({} elements)",
                o[0].num_elements(),
                shape_str(&t.shape),
                t.num_elements()
            ));
        }
        Ok(o[0].with_shape(t.shape.clone()))
    }
    fn check_result(&self, _: &[Type], _: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        same_type(inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], _: &[Type], _: &Attrs, r: &Type) -> Result<Wide, String> {
        from_vec(&r.shape, args[0].iter().map(|&v| v as i128).collect())
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Zero
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn moves_elements(&self) -> bool {
        true
    }
    fn cost(&self, _: &[Type], _: &Attrs, _: &Type) -> Cost {
        Cost::default()
    }
}

fn perm(attrs: &Attrs, rank: usize) -> Result<Vec<usize>, String> {
    let Some(p) = get_ints(attrs, "perm")? else {
        return Ok((0..rank).rev().collect());
    };
    let mut seen = vec![false; rank];
    if p.len() != rank {
        return Err(format!("`perm` {p:?} is not a permutation of 0..{rank}"));
    }
    for &a in &p {
        if a < 0 || a as usize >= rank || seen[a as usize] {
            return Err(format!("`perm` {p:?} is not a permutation of 0..{rank}"));
        }
        seen[a as usize] = true;
    }
    Ok(p.iter().map(|&a| a as usize).collect())
}

op_struct!(TransposeOp,
    summary: "Permutes a tensor's axes.",
    semantics: "Attribute `perm` (optional, default: reversed axes): result axis `i` is operand axis `perm[i]`, \
as numpy `transpose`. The element type is kept.",
    valid: r#"func.func @main(%x: tensor<2x3x!fhe.eint<4>>) -> tensor<3x2x!fhe.eint<4>> {
  %0 = "fhe.transpose"(%x) {perm = [1, 0]} : (tensor<2x3x!fhe.eint<4>>) -> tensor<3x2x!fhe.eint<4>>
  "func.return"(%0) : (tensor<3x2x!fhe.eint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x3x!fhe.eint<4>>) -> tensor<3x2x!fhe.eint<4>> {
  %0 = "fhe.transpose"(%x) {perm = [1, 1]} : (tensor<2x3x!fhe.eint<4>>) -> tensor<3x2x!fhe.eint<4>>
  "func.return"(%0) : (tensor<3x2x!fhe.eint<4>>) -> ()
}"#,
    error: "is not a permutation",
);

impl OpDef for TransposeOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::SameElem
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        const A: &[AttrSpec] = &[attr(
            "perm",
            AttrKind::IntArray,
            false,
            "axis permutation, default reversed",
        )];
        A
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let p = perm(attrs, o[0].rank())?;
        Ok(o[0].with_shape(p.iter().map(|&a| o[0].shape[a]).collect::<Vec<_>>()))
    }
    fn check_result(&self, _: &[Type], _: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        same_type(inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, r: &Type) -> Result<Wide, String> {
        let p = perm(attrs, o[0].rank())?;
        let t = args[0].view().permuted_axes(p);
        from_vec(&r.shape, t.iter().map(|&v| v as i128).collect())
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Zero
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn moves_elements(&self) -> bool {
        true
    }
    fn cost(&self, _: &[Type], _: &Attrs, _: &Type) -> Cost {
        Cost::default()
    }
}

op_struct!(BroadcastOp,
    summary: "Broadcasts a tensor to a larger shape (numpy `broadcast_to`).",
    semantics: "The result shape comes from the declared result type; the operand shape must broadcast to it \
(aligned at the right, each dimension equal or 1). The element type is kept.",
    valid: r#"func.func @main(%x: tensor<3x!fhe.eint<4>>) -> tensor<2x3x!fhe.eint<4>> {
  %0 = "fhe.broadcast"(%x) : (tensor<3x!fhe.eint<4>>) -> tensor<2x3x!fhe.eint<4>>
  "func.return"(%0) : (tensor<2x3x!fhe.eint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<3x!fhe.eint<4>>) -> tensor<3x2x!fhe.eint<4>> {
  %0 = "fhe.broadcast"(%x) : (tensor<3x!fhe.eint<4>>) -> tensor<3x2x!fhe.eint<4>>
  "func.return"(%0) : (tensor<3x2x!fhe.eint<4>>) -> ()
}"#,
    error: "does not broadcast to",
);

impl OpDef for BroadcastOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::SameElem
    }
    fn infer_type(&self, o: &[Type], _: &Attrs, declared: Option<&Type>) -> Result<Type, String> {
        let t = declared.ok_or("fhe.broadcast needs an explicit result type")?;
        if broadcast_shapes(&o[0].shape, &t.shape).as_deref() != Some(t.shape.as_slice()) {
            return Err(format!(
                "shape {} does not broadcast to {}",
                shape_str(&o[0].shape),
                shape_str(&t.shape)
            ));
        }
        Ok(o[0].with_shape(t.shape.clone()))
    }
    fn check_result(&self, _: &[Type], _: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        same_type(inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], _: &[Type], _: &Attrs, r: &Type) -> Result<Wide, String> {
        let v = args[0]
            .broadcast(r.shape.as_slice())
            .ok_or("operand does not broadcast")?;
        Ok(v.mapv(|x| x as i128))
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Zero
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn moves_elements(&self) -> bool {
        true
    }
    fn cost(&self, _: &[Type], _: &Attrs, _: &Type) -> Cost {
        Cost::default()
    }
}

op_struct!(ConcatOp,
    summary: "Concatenates tensors along an axis.",
    semantics: "Attribute `axis` (negative counts from the end). Operands are of one signedness, with the same \
rank and equal dimensions except along `axis`; their widths may differ and they may mix clear and encrypted \
tensors. The result has the widest width, and is encrypted when an operand is (no ciphertext work: a narrower \
value is the same ciphertext at the common scale, a clear element a noiseless one).",
    valid: r#"func.func @main(%x: tensor<2x!fhe.eint<4>>, %y: tensor<3x!fhe.eint<4>>) -> tensor<5x!fhe.eint<4>> {
  %0 = "fhe.concat"(%x, %y) {axis = 0} : (tensor<2x!fhe.eint<4>>, tensor<3x!fhe.eint<4>>) -> tensor<5x!fhe.eint<4>>
  "func.return"(%0) : (tensor<5x!fhe.eint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x!fhe.eint<4>>, %y: tensor<3x!fhe.esint<5>>) -> tensor<5x!fhe.esint<5>> {
  %0 = "fhe.concat"(%x, %y) {axis = 0} : (tensor<2x!fhe.eint<4>>, tensor<3x!fhe.esint<5>>) -> tensor<5x!fhe.esint<5>>
  "func.return"(%0) : (tensor<5x!fhe.esint<5>>) -> ()
}"#,
    error: "operands must be of one signedness",
);

impl OpDef for ConcatOp {
    fn arity(&self) -> Arity {
        Arity::AtLeast(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::SameSign
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        const A: &[AttrSpec] = &[attr("axis", AttrKind::Int, true, "concatenation axis")];
        A
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let axis = norm_axis(req_int(attrs, "axis")?, o[0].rank())?;
        let mut shape = o[0].shape.clone();
        for t in &o[1..] {
            let same = t.rank() == o[0].rank()
                && t.shape
                    .iter()
                    .zip(&o[0].shape)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !same {
                return Err(format!(
                    "operand shapes {} and {} differ outside axis {axis}",
                    shape_str(&o[0].shape),
                    shape_str(&t.shape)
                ));
            }
            shape[axis] += t.shape[axis];
        }
        let width = o.iter().map(|t| t.width()).max().unwrap_or(1);
        let encrypted = o.iter().any(|t| t.is_encrypted());
        Ok(Type::new(ElemType::new(encrypted, o[0].is_signed(), width), shape))
    }
    fn check_result(&self, _: &[Type], _: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        same_type(inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, _: &Type) -> Result<Wide, String> {
        let axis = norm_axis(req_int(attrs, "axis")?, o[0].rank())?;
        let views: Vec<_> = args.iter().map(|a| a.view()).collect();
        let t = ndarray::concatenate(ndarray::Axis(axis), &views).map_err(|e| e.to_string())?;
        Ok(wide(&t))
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Zero
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn moves_elements(&self) -> bool {
        true
    }
    fn cost(&self, _: &[Type], _: &Attrs, _: &Type) -> Cost {
        Cost::default()
    }
}

/// (start, end, step) per axis.
fn slice_spec(attrs: &Attrs, shape: &[usize]) -> Result<Vec<(usize, usize, usize)>, String> {
    let starts = get_ints(attrs, "starts")?.ok_or("missing attribute `starts`")?;
    let ends = get_ints(attrs, "ends")?.ok_or("missing attribute `ends`")?;
    let steps = get_ints(attrs, "steps")?.unwrap_or_else(|| vec![1; shape.len()]);
    if starts.len() != shape.len() || ends.len() != shape.len() || steps.len() != shape.len() {
        return Err(format!(
            "`starts`, `ends` and `steps` need one entry per axis ({} axes)",
            shape.len()
        ));
    }
    let mut out = Vec::new();
    for (i, &d) in shape.iter().enumerate() {
        let (s, e, st) = (starts[i], ends[i], steps[i]);
        if st < 1 {
            return Err(format!("step {st} on axis {i} must be ≥ 1"));
        }
        if s < 0 || e < s || e as u64 > d as u64 {
            return Err(format!(
                "slice {s}..{e} on axis {i} is out of bounds for size {d} (need 0 ≤ start ≤ end ≤ size)"
            ));
        }
        out.push((s as usize, e as usize, st as usize));
    }
    Ok(out)
}

op_struct!(SliceOp,
    summary: "Takes a strided rectangular part of a tensor.",
    semantics: "Attributes `starts`, `ends` (one per axis, `0 ≤ start ≤ end ≤ size`) and `steps` (optional, ≥ 1, \
default 1): axis `i` keeps indices `starts[i], starts[i] + steps[i], …` below `ends[i]`, as numpy `x[s:e:st]`. \
The element type is kept.",
    valid: r#"func.func @main(%x: tensor<4x3x!fhe.eint<4>>) -> tensor<2x1x!fhe.eint<4>> {
  %0 = "fhe.slice"(%x) {ends = [4, 2], starts = [0, 1], steps = [2, 1]} : (tensor<4x3x!fhe.eint<4>>) -> tensor<2x1x!fhe.eint<4>>
  "func.return"(%0) : (tensor<2x1x!fhe.eint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<4x3x!fhe.eint<4>>) -> tensor<2x1x!fhe.eint<4>> {
  %0 = "fhe.slice"(%x) {ends = [5, 2], starts = [0, 1], steps = [2, 1]} : (tensor<4x3x!fhe.eint<4>>) -> tensor<2x1x!fhe.eint<4>>
  "func.return"(%0) : (tensor<2x1x!fhe.eint<4>>) -> ()
}"#,
    error: "out of bounds for size 4",
);

impl OpDef for SliceOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::SameElem
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        const A: &[AttrSpec] = &[
            attr("ends", AttrKind::IntArray, true, "exclusive end per axis"),
            attr("starts", AttrKind::IntArray, true, "start per axis"),
            attr("steps", AttrKind::IntArray, false, "step per axis, default 1"),
        ];
        A
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let spec = slice_spec(attrs, &o[0].shape)?;
        Ok(o[0].with_shape(spec.iter().map(|&(s, e, st)| (e - s).div_ceil(st)).collect::<Vec<_>>()))
    }
    fn check_result(&self, _: &[Type], _: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        same_type(inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, _: &Type) -> Result<Wide, String> {
        let spec = slice_spec(attrs, &o[0].shape)?;
        let mut v = args[0].view();
        for (i, &(s, e, st)) in spec.iter().enumerate() {
            v.slice_axis_inplace(
                ndarray::Axis(i),
                ndarray::Slice::new(s as isize, Some(e as isize), st as isize),
            );
        }
        Ok(v.mapv(|x| x as i128))
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Zero
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn moves_elements(&self) -> bool {
        true
    }
    fn cost(&self, _: &[Type], _: &Attrs, _: &Type) -> Cost {
        Cost::default()
    }
}

op_struct!(GatherOp,
    summary: "Selects entries along an axis with clear indices (numpy `take`, ONNX `Gather`).",
    semantics: "Attributes `axis` and `indices` (a dense tensor of indices in `0 .. size(axis)`). The result shape \
is `shape[..axis] ++ indices.shape ++ shape[axis+1..]`; `r[a.., i.., b..] = x[a.., indices[i..], b..]`. The \
element type is kept.",
    valid: r#"func.func @main(%x: tensor<3x2x!fhe.eint<4>>) -> tensor<2x2x!fhe.eint<4>> {
  %0 = "fhe.gather"(%x) {axis = 0, indices = dense<[2, 0]> : tensor<2xi64>} : (tensor<3x2x!fhe.eint<4>>) -> tensor<2x2x!fhe.eint<4>>
  "func.return"(%0) : (tensor<2x2x!fhe.eint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<3x2x!fhe.eint<4>>) -> tensor<2x2x!fhe.eint<4>> {
  %0 = "fhe.gather"(%x) {axis = 0, indices = dense<[3, 0]> : tensor<2xi64>} : (tensor<3x2x!fhe.eint<4>>) -> tensor<2x2x!fhe.eint<4>>
  "func.return"(%0) : (tensor<2x2x!fhe.eint<4>>) -> ()
}"#,
    error: "index 3 is out of range",
);

impl OpDef for GatherOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::SameElem
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        const A: &[AttrSpec] = &[
            attr("axis", AttrKind::Int, true, "gathered axis"),
            attr("indices", AttrKind::Dense, true, "indices into the axis"),
        ];
        A
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let axis = norm_axis(req_int(attrs, "axis")?, o[0].rank())?;
        let idx = req_dense(attrs, "indices")?;
        let size = o[0].shape[axis];
        if let Some(v) = idx.data.iter().find(|&&v| v < 0 || v as u64 >= size as u64) {
            return Err(format!("index {v} is out of range for axis {axis} of size {size}"));
        }
        let mut shape = o[0].shape[..axis].to_vec();
        shape.extend(&idx.ty.shape);
        shape.extend(&o[0].shape[axis + 1..]);
        Ok(o[0].with_shape(shape))
    }
    fn check_result(&self, _: &[Type], _: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        same_type(inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, r: &Type) -> Result<Wide, String> {
        let axis = norm_axis(req_int(attrs, "axis")?, o[0].rank())?;
        let idx = req_dense(attrs, "indices")?;
        let flat: Vec<usize> = idx.data.iter().map(|&v| v as usize).collect();
        let t = args[0].select(ndarray::Axis(axis), &flat);
        from_vec(&r.shape, t.iter().map(|&v| v as i128).collect())
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Zero
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn moves_elements(&self) -> bool {
        true
    }
    fn cost(&self, _: &[Type], _: &Attrs, _: &Type) -> Cost {
        Cost::default()
    }
}
