//! Table lookups and precision changes: `lut`, `mapped_lut`, `multi_lut`, `round`, `truncate`,
//! `to_signed`, `to_unsigned`.
//!
//! Table indexing rule (all three lookups): a w-bit input value `v` reads entry `v mod 2^w`. For unsigned
//! inputs that is `v`; for signed inputs, entries `0 .. 2^(w-1)` hold the results for `0 .. 2^(w-1) - 1` and
//! entries `2^(w-1) .. 2^w` those for `-2^(w-1) .. -1` (two's complement order, as in Concrete).

use super::*;
use crate::types::MAX_LUT_WIDTH;

/// Checks a lookup's input type and returns its width.
fn lut_input(t: &Type, op: &str) -> Result<u32, String> {
    let w = t.width();
    if w > MAX_LUT_WIDTH {
        return Err(format!(
            "{op} input has {w} bits; table lookups take at most {MAX_LUT_WIDTH} bits (round or truncate first)"
        ));
    }
    Ok(w)
}

/// Checks a table tensor `[.., 2^w]`.
fn check_tables(d: &Dense, rank: usize, w: u32, what: &str) -> Result<(), String> {
    if d.ty.rank() != rank {
        return Err(format!("`{what}` must have rank {rank}, found {}", d.ty));
    }
    let n = d.ty.shape[rank - 1];
    if n != 1usize << w {
        return Err(format!(
            "table has {n} entries, expected {} (2^{w} for a {w}-bit input)",
            1usize << w
        ));
    }
    Ok(())
}

/// The encrypted type of the given shape that holds every table value.
fn table_result(d: &Dense, shape: Vec<usize>) -> Type {
    let lo = d.data.iter().copied().min().unwrap_or(0) as i128;
    let hi = d.data.iter().copied().max().unwrap_or(0) as i128;
    Type::new(enc_elem_for(lo, hi, lo < 0), shape)
}

/// A lookup's declared result: encrypted, the inferred shape, and every table value fits.
fn check_table_result(d: &Dense, inferred: &Type, declared: &Type) -> Result<(), String> {
    if inferred.shape != declared.shape {
        return Err(format!(
            "result shape {} does not match the shape {} the operands give",
            shape_str(&declared.shape),
            shape_str(&inferred.shape)
        ));
    }
    if !declared.is_encrypted() {
        return Err(format!("result must be encrypted, found {}", declared.elem));
    }
    if let Some(v) = d.data.iter().find(|&&v| !declared.elem.contains(v as i128)) {
        let (lo, hi) = declared.elem.range();
        return Err(format!(
            "table value {v} does not fit the result type {} (range {lo} ..= {hi})",
            declared.elem
        ));
    }
    Ok(())
}

/// Table index of a w-bit value.
fn index(v: i64, w: u32) -> usize {
    (v as i128).rem_euclid(1i128 << w) as usize
}

op_struct!(LutOp,
    summary: "Table lookup: every element of an encrypted tensor indexes one clear table.",
    semantics: "Attribute `table`: a rank-1 dense tensor of `2^w` entries for a `w`-bit input (w ≤ 16). \
`r[i] = table[x[i] mod 2^w]` (see the indexing rule for signed inputs). The result is encrypted, has the input's \
shape, and any width and signedness that holds every table value. One programmable bootstrap per element at \
precision `w`.",
    valid: r#"func.func @main(%x: tensor<3x!fhe.eint<2>>) -> tensor<3x!fhe.eint<4>> {
  %0 = "fhe.lut"(%x) {table = dense<[0, 1, 4, 9]> : tensor<4xui4>} : (tensor<3x!fhe.eint<2>>) -> tensor<3x!fhe.eint<4>>
  "func.return"(%0) : (tensor<3x!fhe.eint<4>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<3x!fhe.eint<3>>) -> tensor<3x!fhe.eint<4>> {
  %0 = "fhe.lut"(%x) {table = dense<[0, 1, 4, 9]> : tensor<4xui4>} : (tensor<3x!fhe.eint<3>>) -> tensor<3x!fhe.eint<4>>
  "func.return"(%0) : (tensor<3x!fhe.eint<4>>) -> ()
}"#,
    error: "table has 4 entries, expected 8",
);

impl OpDef for LutOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        const A: &[AttrSpec] = &[attr("table", AttrKind::Dense, true, "2^w entries")];
        A
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let w = lut_input(&o[0], "fhe.lut")?;
        let t = req_dense(attrs, "table")?;
        check_tables(t, 1, w, "table")?;
        Ok(table_result(t, o[0].shape.clone()))
    }
    fn check_result(&self, _: &[Type], attrs: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        check_table_result(req_dense(attrs, "table")?, inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, _: &Type) -> Result<Wide, String> {
        let t = req_dense(attrs, "table")?;
        let w = o[0].width();
        Ok(args[0].mapv(|v| t.data[[index(v, w)]] as i128))
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Lut
    }
    fn table_attr(&self) -> Option<&'static str> {
        Some("table")
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Table
    }
    fn cost(&self, o: &[Type], _: &Attrs, r: &Type) -> Cost {
        Cost::pbs(o[0].width(), r.num_elements())
    }
}

op_struct!(MappedLutOp,
    summary: "Table lookup with a table chosen per element.",
    semantics: "Attributes: `tables`, a rank-2 dense tensor `[K, 2^w]`; `map`, a dense tensor of the input's shape \
whose entries in `0 .. K` choose each element's table. `r[i] = tables[map[i], x[i] mod 2^w]`. The result is \
encrypted, has the input's shape and holds every table value. One PBS per element at precision `w`.",
    valid: r#"func.func @main(%x: tensor<2x!fhe.eint<1>>) -> tensor<2x!fhe.eint<2>> {
  %0 = "fhe.mapped_lut"(%x) {map = dense<[1, 0]> : tensor<2xui8>, tables = dense<[[0, 1], [3, 2]]> : tensor<2x2xui2>} : (tensor<2x!fhe.eint<1>>) -> tensor<2x!fhe.eint<2>>
  "func.return"(%0) : (tensor<2x!fhe.eint<2>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x!fhe.eint<1>>) -> tensor<2x!fhe.eint<2>> {
  %0 = "fhe.mapped_lut"(%x) {map = dense<[2, 0]> : tensor<2xui8>, tables = dense<[[0, 1], [3, 2]]> : tensor<2x2xui2>} : (tensor<2x!fhe.eint<1>>) -> tensor<2x!fhe.eint<2>>
  "func.return"(%0) : (tensor<2x!fhe.eint<2>>) -> ()
}"#,
    error: "map entry 2 is not a table index",
);

impl OpDef for MappedLutOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        const A: &[AttrSpec] = &[
            attr(
                "map",
                AttrKind::Dense,
                true,
                "table index per element, the input's shape",
            ),
            attr("tables", AttrKind::Dense, true, "[K, 2^w] tables"),
        ];
        A
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let w = lut_input(&o[0], "fhe.mapped_lut")?;
        let t = req_dense(attrs, "tables")?;
        check_tables(t, 2, w, "tables")?;
        let map = req_dense(attrs, "map")?;
        if map.ty.shape != o[0].shape {
            return Err(format!(
                "`map` has shape {} but the input has shape {}",
                shape_str(&map.ty.shape),
                shape_str(&o[0].shape)
            ));
        }
        let k = t.ty.shape[0] as i64;
        if let Some(v) = map.data.iter().find(|&&v| v < 0 || v >= k) {
            return Err(format!("map entry {v} is not a table index (there are {k} tables)"));
        }
        Ok(table_result(t, o[0].shape.clone()))
    }
    fn check_result(&self, _: &[Type], attrs: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        check_table_result(req_dense(attrs, "tables")?, inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, _: &Type) -> Result<Wide, String> {
        let t = req_dense(attrs, "tables")?;
        let map = req_dense(attrs, "map")?;
        let w = o[0].width();
        Ok(ndarray::Zip::from(args[0])
            .and(&map.data)
            .map_collect(|&v, &m| t.data[[m as usize, index(v, w)]] as i128))
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Lut
    }
    fn table_attr(&self) -> Option<&'static str> {
        Some("tables")
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Table
    }
    fn cost(&self, o: &[Type], _: &Attrs, r: &Type) -> Cost {
        Cost::pbs(o[0].width(), r.num_elements())
    }
}

op_struct!(MultiLutOp,
    summary: "Several table lookups on the same encrypted input.",
    semantics: "Attribute `tables`: a rank-2 dense tensor `[K, 2^w]`. The result has the input's shape with a \
last axis of size K added: `r[i, k] = tables[k, x[i] mod 2^w]`. The result is encrypted and holds every table \
value. Costs K PBS per element at precision `w` in the reference lowering (one blind rotation can serve several \
tables; the backend decides).",
    valid: r#"func.func @main(%x: tensor<2x!fhe.eint<2>>) -> tensor<2x2x!fhe.eint<3>> {
  %0 = "fhe.multi_lut"(%x) {tables = dense<[[0, 1, 2, 3], [0, 2, 4, 6]]> : tensor<2x4xui3>} : (tensor<2x!fhe.eint<2>>) -> tensor<2x2x!fhe.eint<3>>
  "func.return"(%0) : (tensor<2x2x!fhe.eint<3>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x!fhe.eint<2>>) -> tensor<2x!fhe.eint<3>> {
  %0 = "fhe.multi_lut"(%x) {tables = dense<[[0, 1, 2, 3], [0, 2, 4, 6]]> : tensor<2x4xui3>} : (tensor<2x!fhe.eint<2>>) -> tensor<2x!fhe.eint<3>>
  "func.return"(%0) : (tensor<2x!fhe.eint<3>>) -> ()
}"#,
    error: "result shape [2] does not match the shape [2, 2]",
);

impl OpDef for MultiLutOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        const A: &[AttrSpec] = &[attr("tables", AttrKind::Dense, true, "[K, 2^w] tables")];
        A
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let w = lut_input(&o[0], "fhe.multi_lut")?;
        let t = req_dense(attrs, "tables")?;
        check_tables(t, 2, w, "tables")?;
        let mut shape = o[0].shape.clone();
        shape.push(t.ty.shape[0]);
        Ok(table_result(t, shape))
    }
    fn check_result(&self, _: &[Type], attrs: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        check_table_result(req_dense(attrs, "tables")?, inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, r: &Type) -> Result<Wide, String> {
        let t = req_dense(attrs, "tables")?;
        let w = o[0].width();
        let k = t.ty.shape[0];
        let mut out = Vec::with_capacity(r.num_elements());
        for &v in args[0].iter() {
            let i = index(v, w);
            out.extend((0..k).map(|j| t.data[[j, i]] as i128));
        }
        from_vec(&r.shape, out)
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Lut
    }
    fn table_attr(&self) -> Option<&'static str> {
        Some("tables")
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Table
    }
    fn cost(&self, o: &[Type], _: &Attrs, r: &Type) -> Cost {
        Cost::pbs(o[0].width(), r.num_elements())
    }
}

/// Checks `lsbs` against the input width and returns it.
fn lsbs(attrs: &Attrs, t: &Type) -> Result<u32, String> {
    let k = req_int(attrs, "lsbs")?;
    let w = t.width() as i64;
    if k < 1 || k >= w {
        return Err(format!(
            "`lsbs` must be between 1 and {} for a {w}-bit input, found {k}",
            w - 1
        ));
    }
    Ok(k as u32)
}

/// The result check of `round` and `truncate`: same kind, width at least `w - lsbs`.
fn check_dropped(o: &[Type], attrs: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
    same_kind(inferred, declared)?;
    let min = o[0].width() - lsbs(attrs, &o[0])?;
    if declared.width() < min {
        return Err(format!(
            "result has {} bits, fewer than the {min} bits left after dropping {} of {}",
            declared.width(),
            o[0].width() - min,
            o[0].width()
        ));
    }
    Ok(())
}

const LSBS_ATTR: &[AttrSpec] = &[attr("lsbs", AttrKind::Int, true, "number of low bits dropped")];

op_struct!(RoundOp,
    summary: "Drops low bits with rounding: divides by 2^lsbs, rounding half up.",
    semantics: "Attribute `lsbs` (1 ≤ lsbs < w). `r = floor((x + 2^(lsbs-1)) / 2^lsbs)`: the nearest integer to \
`x / 2^lsbs`, ties rounded towards +∞ (for signed values too: -2.5 → -2). The result keeps the operand's kind \
and has at least `w - lsbs` bits; the largest inputs round up past that range (to `2^(w - lsbs)` unsigned, \
`2^(w - lsbs - 1)` signed), which needs one bit more — declare it, or keep such values out of the input range. Lowered exactly (bit extraction by small PBS).",
    valid: r#"func.func @main(%x: tensor<2x!fhe.esint<14>>) -> tensor<2x!fhe.esint<6>> {
  %0 = "fhe.round"(%x) {lsbs = 8} : (tensor<2x!fhe.esint<14>>) -> tensor<2x!fhe.esint<6>>
  "func.return"(%0) : (tensor<2x!fhe.esint<6>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x!fhe.esint<14>>) -> tensor<2x!fhe.esint<5>> {
  %0 = "fhe.round"(%x) {lsbs = 8} : (tensor<2x!fhe.esint<14>>) -> tensor<2x!fhe.esint<5>>
  "func.return"(%0) : (tensor<2x!fhe.esint<5>>) -> ()
}"#,
    error: "fewer than the 6 bits left",
);

impl OpDef for RoundOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        LSBS_ATTR
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let k = lsbs(attrs, &o[0])?;
        let (lo, hi) = range(&o[0]);
        let half = 1i128 << (k - 1);
        let (lo, hi) = ((lo + half) >> k, (hi + half) >> k);
        Ok(o[0].with_elem(enc_elem_for(lo, hi, o[0].is_signed())))
    }
    fn check_result(&self, o: &[Type], attrs: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        check_dropped(o, attrs, inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, _: &Type) -> Result<Wide, String> {
        let k = lsbs(attrs, &o[0])?;
        let half = 1i128 << (k - 1);
        Ok(args[0].mapv(|v| (v as i128 + half) >> k))
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Lut
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn cost(&self, o: &[Type], attrs: &Attrs, r: &Type) -> Cost {
        let k = lsbs(attrs, &o[0]).unwrap_or(1) as usize;
        let mut c = Cost::pbs(1, k * r.num_elements());
        c.leveled = (2 * k * r.num_elements()) as u64;
        c
    }
}

op_struct!(TruncateOp,
    summary: "Drops low bits: divides by 2^lsbs, rounding towards -∞.",
    semantics: "Attribute `lsbs` (1 ≤ lsbs < w). `r = floor(x / 2^lsbs)` (an arithmetic shift right). The result \
keeps the operand's kind and has at least `w - lsbs` bits, which always suffice. Lowered exactly (bit \
extraction by small PBS).",
    valid: r#"func.func @main(%x: tensor<2x!fhe.eint<8>>) -> tensor<2x!fhe.eint<5>> {
  %0 = "fhe.truncate"(%x) {lsbs = 3} : (tensor<2x!fhe.eint<8>>) -> tensor<2x!fhe.eint<5>>
  "func.return"(%0) : (tensor<2x!fhe.eint<5>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x!fhe.eint<8>>) -> tensor<2x!fhe.eint<5>> {
  %0 = "fhe.truncate"(%x) {lsbs = 8} : (tensor<2x!fhe.eint<8>>) -> tensor<2x!fhe.eint<5>>
  "func.return"(%0) : (tensor<2x!fhe.eint<5>>) -> ()
}"#,
    error: "`lsbs` must be between 1 and 7",
);

impl OpDef for TruncateOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn attrs(&self) -> &'static [AttrSpec] {
        LSBS_ATTR
    }
    fn infer_type(&self, o: &[Type], attrs: &Attrs, _: Option<&Type>) -> Result<Type, String> {
        let k = lsbs(attrs, &o[0])?;
        Ok(o[0].with_elem(o[0].elem.with_width(o[0].width() - k)))
    }
    fn check_result(&self, o: &[Type], attrs: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        check_dropped(o, attrs, inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], o: &[Type], attrs: &Attrs, _: &Type) -> Result<Wide, String> {
        let k = lsbs(attrs, &o[0])?;
        Ok(args[0].mapv(|v| (v as i128) >> k))
    }
    fn noise_class(&self) -> NoiseClass {
        NoiseClass::Lut
    }
    fn range_rule(&self) -> RangeRule {
        RangeRule::Monotone
    }
    fn cost(&self, o: &[Type], attrs: &Attrs, r: &Type) -> Cost {
        let k = lsbs(attrs, &o[0]).unwrap_or(1) as usize;
        let mut c = Cost::pbs(1, k * r.num_elements());
        c.leveled = (2 * k * r.num_elements()) as u64;
        c
    }
}

op_struct!(ToSignedOp,
    summary: "Reinterprets an encrypted unsigned tensor as signed, keeping the values.",
    semantics: "`!fhe.eint<w>` → `!fhe.esint<v>` (same shape). Values are kept; the result width is the \
declared one (without a declaration, `v = w`), a promise like every width: every value must fit \
`!fhe.esint<v>`, and the interpreter reports one that does not. No ciphertext work.",
    valid: r#"func.func @main(%x: tensor<2x!fhe.eint<4>>) -> tensor<2x!fhe.esint<5>> {
  %0 = "fhe.to_signed"(%x) : (tensor<2x!fhe.eint<4>>) -> tensor<2x!fhe.esint<5>>
  "func.return"(%0) : (tensor<2x!fhe.esint<5>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x!fhe.eint<4>>) -> tensor<2x!fhe.eint<4>> {
  %0 = "fhe.to_signed"(%x) : (tensor<2x!fhe.eint<4>>) -> tensor<2x!fhe.eint<4>>
  "func.return"(%0) : (tensor<2x!fhe.eint<4>>) -> ()
}"#,
    error: "result must be a signed encrypted tensor of shape [2]",
);

/// The result of a sign reinterpretation: the declared width when there is one.
fn reinterpret(o: &Type, declared: Option<&Type>, signed: bool) -> Result<Type, String> {
    if o.is_signed() == signed {
        return Err(format!(
            "operand is already {} ({})",
            if signed { "signed" } else { "unsigned" },
            o.elem
        ));
    }
    match declared {
        Some(d) if d.shape == o.shape && d.is_encrypted() && d.is_signed() == signed => Ok(d.clone()),
        Some(_) => Err(format!(
            "result must be a{} encrypted tensor of shape {:?}",
            if signed { " signed" } else { "n unsigned" },
            o.shape
        )),
        None => Ok(o.with_elem(o.elem.with_signed(signed))),
    }
}

impl OpDef for ToSignedOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn infer_type(&self, o: &[Type], _: &Attrs, declared: Option<&Type>) -> Result<Type, String> {
        reinterpret(&o[0], declared, true)
    }
    fn check_result(&self, _: &[Type], _: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        same_type(inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], _: &[Type], _: &Attrs, _: &Type) -> Result<Wide, String> {
        Ok(wide(args[0]))
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

op_struct!(ToUnsignedOp,
    summary: "Reinterprets an encrypted signed tensor as unsigned, keeping the values.",
    semantics: "`!fhe.esint<w>` → `!fhe.eint<v>` (same shape). Values are kept; the result width is the \
declared one (without a declaration, `v = w`), a promise like every width: every value must be ≥ 0 and \
fit `!fhe.eint<v>` — a sum known to lie in `[0, 2^v)` can feed a `v`-bit lookup even though its signed type \
needs `v + 1` bits. The interpreter reports a value that does not fit. No ciphertext work.",
    valid: r#"func.func @main(%x: tensor<2x!fhe.esint<4>>) -> tensor<2x!fhe.eint<3>> {
  %0 = "fhe.to_unsigned"(%x) : (tensor<2x!fhe.esint<4>>) -> tensor<2x!fhe.eint<3>>
  "func.return"(%0) : (tensor<2x!fhe.eint<3>>) -> ()
}"#,
    invalid: r#"func.func @main(%x: tensor<2x!fhe.eint<4>>) -> tensor<2x!fhe.eint<4>> {
  %0 = "fhe.to_unsigned"(%x) : (tensor<2x!fhe.eint<4>>) -> tensor<2x!fhe.eint<4>>
  "func.return"(%0) : (tensor<2x!fhe.eint<4>>) -> ()
}"#,
    error: "operand is already unsigned",
);

impl OpDef for ToUnsignedOp {
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }
    fn operand_rule(&self) -> OperandRule {
        OperandRule::AllEncrypted
    }
    fn infer_type(&self, o: &[Type], _: &Attrs, declared: Option<&Type>) -> Result<Type, String> {
        reinterpret(&o[0], declared, false)
    }
    fn check_result(&self, _: &[Type], _: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        same_type(inferred, declared)
    }
    fn eval(&self, args: &[&Tensor], _: &[Type], _: &Attrs, _: &Type) -> Result<Wide, String> {
        Ok(wide(args[0]))
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
