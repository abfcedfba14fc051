//! Elementwise arithmetic: `add`, `sub`, `neg`, `mul` (encrypted × clear), `mul_eint` (encrypted × encrypted).

use super::*;

/// Result type of a binary elementwise op given the interval of its result.
fn binary_type(
    a: &Type,
    b: &Type,
    signed: bool,
    f: impl Fn((i128, i128), (i128, i128)) -> (i128, i128),
) -> Result<Type, String> {
    let shape = bcast(a, b)?;
    let (lo, hi) = f(range(a), range(b));
    Ok(Type::new(enc_elem_for(lo, hi, signed), shape))
}

/// Interval of the product of two intervals.
fn mul_range((alo, ahi): (i128, i128), (blo, bhi): (i128, i128)) -> (i128, i128) {
    let c = [alo * blo, alo * bhi, ahi * blo, ahi * bhi];
    (*c.iter().min().unwrap_or(&0), *c.iter().max().unwrap_or(&0))
}

op_struct!(AddOp,
    summary: "Elementwise addition of two tensors, at least one encrypted.",
    semantics: "`r = a + b` with numpy broadcasting. The result is encrypted; it is signed when either operand is \
signed (`!fhe.esint`, `iN`). Leveled: no bootstrap.",
    valid: r#"func.func @main(%x: tensor<4x!fhe.eint<3>>, %y: tensor<4x!fhe.eint<3>>) -> tensor<4x!fhe.eint<4>> {
  %0 = "fhe.add"(%x, %y) : (tensor<4x!fhe.eint<3>>, tensor<4x!fhe.eint<3>>) -> tensor<4x!fhe.eint<4>>
  "func.return"(%0) : (tensor<4x!fhe.eint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<4x!fhe.eint<3>>, %y: tensor<3x!fhe.eint<3>>) -> tensor<4x!fhe.eint<4>> {
  %0 = "fhe.add"(%x, %y) : (tensor<4x!fhe.eint<3>>, tensor<3x!fhe.eint<3>>) -> tensor<4x!fhe.eint<4>>
  "func.return"(%0) : (tensor<4x!fhe.eint<4>>) -> ()
}"#,
    error: "do not broadcast",
);

impl OpDef for AddOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(2)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::SomeEncrypted
    }
    fn infer_type(&self, o: &[Type], _: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        binary_type(&o[0], &o[1], o[0].is_signed() || o[1].is_signed(), |a, b| {
            (a.0 + b.0, a.1 + b.1)
        })
    }
    fn eval(&self, args: &[&Tensor], _: &[Type], _: &Attrs, r: &Type) -> Result<Wide, String> {
        zip_bcast(args[0], args[1], &r.shape, |x, y| x + y)
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Linear
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn cost(&self, _: &[Type], _: &Attrs, r: &Type) -> Cost {
        Cost::leveled(r.num_elements())
    }
}

op_struct!(SubOp,
    summary: "Elementwise subtraction of two tensors, at least one encrypted.",
    semantics: "`r = a - b` with numpy broadcasting. The result is encrypted and always signed. Leveled.",
    valid: r#"func.func @main(%x: tensor<2x!fhe.eint<4>>) -> tensor<2x!fhe.esint<5>> {
  %t = "fhe.constant"() {value = dense<[3, 9]> : tensor<2xui4>} : () -> tensor<2xui4>
  %0 = "fhe.sub"(%x, %t) : (tensor<2x!fhe.eint<4>>, tensor<2xui4>) -> tensor<2x!fhe.esint<5>>
  "func.return"(%0) : (tensor<2x!fhe.esint<5>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x!fhe.eint<4>>, %y: tensor<2x!fhe.eint<4>>) -> tensor<2x!fhe.eint<5>> {
  %0 = "fhe.sub"(%x, %y) : (tensor<2x!fhe.eint<4>>, tensor<2x!fhe.eint<4>>) -> tensor<2x!fhe.eint<5>>
  "func.return"(%0) : (tensor<2x!fhe.eint<5>>) -> ()
}"#,
    error: "result must be signed",
);

impl OpDef for SubOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(2)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::SomeEncrypted
    }
    fn infer_type(&self, o: &[Type], _: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        binary_type(&o[0], &o[1], true, |a, b| (a.0 - b.1, a.1 - b.0))
    }
    fn eval(&self, args: &[&Tensor], _: &[Type], _: &Attrs, r: &Type) -> Result<Wide, String> {
        zip_bcast(args[0], args[1], &r.shape, |x, y| x - y)
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Linear
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Difference
    }
    fn cost(&self, _: &[Type], _: &Attrs, r: &Type) -> Cost {
        Cost::leveled(r.num_elements())
    }
}

op_struct!(NegOp,
    summary: "Elementwise negation of an encrypted tensor.",
    semantics: "`r = -a`. The result is encrypted and always signed. Leveled.",
    valid: r#"func.func @main(%x: tensor<4x!fhe.eint<3>>) -> tensor<4x!fhe.esint<4>> {
  %0 = "fhe.neg"(%x) : (tensor<4x!fhe.eint<3>>) -> tensor<4x!fhe.esint<4>>
  "func.return"(%0) : (tensor<4x!fhe.esint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<4xi3>) -> tensor<4xi4> {
  %0 = "fhe.neg"(%x) : (tensor<4xi3>) -> tensor<4xi4>
  "func.return"(%0) : (tensor<4xi4>) -> ()
}"#,
    error: "must be encrypted",
);

impl OpDef for NegOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn infer_type(&self, o: &[Type], _: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let (lo, hi) = range(&o[0]);
        Ok(o[0].with_elem(enc_elem_for(-hi, -lo, true)))
    }
    fn eval(&self, args: &[&Tensor], _: &[Type], _: &Attrs, _: &Type) -> Result<Wide, String> {
        Ok(args[0].mapv(|v| -(v as i128)))
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Linear
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Negation
    }
    fn cost(&self, _: &[Type], _: &Attrs, r: &Type) -> Cost {
        Cost::leveled(r.num_elements())
    }
}

op_struct!(MulOp,
    summary: "Elementwise product of an encrypted tensor and a clear tensor.",
    semantics: "`r = a * b` with numpy broadcasting; exactly one operand is encrypted. Signed when either operand \
is signed. Leveled (multiplication of a ciphertext by a clear integer).",
    valid: r#"func.func @main(%x: tensor<2x3x!fhe.eint<4>>) -> tensor<2x3x!fhe.esint<8>> {
  %c = "fhe.constant"() {value = dense<[-2, 0, 7]> : tensor<3xi4>} : () -> tensor<3xi4>
  %0 = "fhe.mul"(%x, %c) : (tensor<2x3x!fhe.eint<4>>, tensor<3xi4>) -> tensor<2x3x!fhe.esint<8>>
  "func.return"(%0) : (tensor<2x3x!fhe.esint<8>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<3x!fhe.eint<4>>, %y: tensor<3x!fhe.eint<4>>) -> tensor<3x!fhe.eint<8>> {
  %0 = "fhe.mul"(%x, %y) : (tensor<3x!fhe.eint<4>>, tensor<3x!fhe.eint<4>>) -> tensor<3x!fhe.eint<8>>
  "func.return"(%0) : (tensor<3x!fhe.eint<8>>) -> ()
}"#,
    error: "exactly one operand must be encrypted",
);

impl OpDef for MulOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(2)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::OneEncrypted
    }
    fn infer_type(&self, o: &[Type], _: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        binary_type(&o[0], &o[1], o[0].is_signed() || o[1].is_signed(), mul_range)
    }
    fn eval(&self, args: &[&Tensor], _: &[Type], _: &Attrs, r: &Type) -> Result<Wide, String> {
        zip_bcast(args[0], args[1], &r.shape, |x, y| x * y)
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Linear
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Bilinear
    }
    fn cost(&self, _: &[Type], _: &Attrs, r: &Type) -> Cost {
        Cost::leveled(r.num_elements())
    }
}

op_struct!(MulEintOp,
    summary: "Elementwise product of two encrypted tensors.",
    semantics: "`r = a * b` with numpy broadcasting; both operands encrypted. Signed when either is signed. \
Lowered with two table lookups per element (`((a+b)² - (a-b)²) / 4`), so it costs two PBS at one bit more \
than the wider operand.",
    valid: r#"func.func @main(%x: tensor<3x!fhe.eint<3>>, %y: tensor<3x!fhe.eint<3>>) -> tensor<3x!fhe.eint<6>> {
  %0 = "fhe.mul_eint"(%x, %y) : (tensor<3x!fhe.eint<3>>, tensor<3x!fhe.eint<3>>) -> tensor<3x!fhe.eint<6>>
  "func.return"(%0) : (tensor<3x!fhe.eint<6>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<3x!fhe.eint<3>>) -> tensor<3x!fhe.eint<6>> {
  %c = "fhe.constant"() {value = dense<2> : tensor<3xui3>} : () -> tensor<3xui3>
  %0 = "fhe.mul_eint"(%x, %c) : (tensor<3x!fhe.eint<3>>, tensor<3xui3>) -> tensor<3x!fhe.eint<6>>
  "func.return"(%0) : (tensor<3x!fhe.eint<6>>) -> ()
}"#,
    error: "must be encrypted",
);

impl OpDef for MulEintOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(2)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn infer_type(&self, o: &[Type], _: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        binary_type(&o[0], &o[1], o[0].is_signed() || o[1].is_signed(), mul_range)
    }
    fn eval(&self, args: &[&Tensor], _: &[Type], _: &Attrs, r: &Type) -> Result<Wide, String> {
        zip_bcast(args[0], args[1], &r.shape, |x, y| x * y)
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Lut
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Bilinear
    }
    fn cost(&self, o: &[Type], _: &Attrs, r: &Type) -> Cost {
        let p = o[0].width().max(o[1].width()) + 1;
        let mut c = Cost::pbs(p, 2 * r.num_elements());
        c.leveled = 3 * r.num_elements() as u64;
        c
    }
}
