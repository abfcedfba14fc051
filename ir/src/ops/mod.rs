//! The op table of the `fhe` dialect.
//!
//! Every op is declared once: a row in [`declare_ops!`] (kind, text name, definition) and one struct that
//! implements [`OpDef`] — operand count and encryption rule, attributes, type inference, result checks,
//! clear semantics, noise class and cost — with its documentation and two text examples (one valid, one
//! invalid) that the test suite parses and `docs/ir.md` shows. Adding an op: see `docs/adding-an-op.md`;
//! after the row and the impl, the exhaustive matches and the op-table tests point to anything left.

/// Declares an op's struct with its documentation: the summary, the semantics and both examples become
/// the struct's doc comment and its [`OpDoc`].
macro_rules! op_struct {
    ($name:ident, summary: $s:literal, semantics: $sem:literal, valid: $v:literal, invalid: $i:literal, error: $e:literal $(,)?) => {
        #[doc = $s]
        #[doc = ""]
        #[doc = $sem]
        #[doc = ""]
        #[doc = "Valid:"]
        #[doc = "```text"]
        #[doc = $v]
        #[doc = "```"]
        #[doc = concat!("Invalid (the verifier says: \"", $e, "\"):")]
        #[doc = "```text"]
        #[doc = $i]
        #[doc = "```"]
        #[derive(Clone, Copy, Debug)]
        pub struct $name;

        impl Documented for $name {
            fn doc(&self) -> &'static OpDoc {
                const DOC: OpDoc = OpDoc {
                    summary: $s,
                    semantics: $sem,
                    valid: $v,
                    invalid: $i,
                    error: $e,
                };
                &DOC
            }
        }
    };
}

mod arith;
mod linalg;
mod lut;
mod shape;

pub use arith::*;
pub use linalg::*;
pub use lut::*;
pub use shape::*;

use crate::attr::{Attribute, Attrs, Dense};
use crate::types::{broadcast_shapes, shape_str, width_for, ElemType, Type};
use ndarray::ArrayD;
use std::collections::BTreeMap;

/// Values of the clear interpreter: integer tensors. Every value fits its declared type.
pub type Tensor = ArrayD<i64>;
/// What an op's evaluation returns before the interpreter checks it against the declared result type.
pub type Wide = ArrayD<i128>;

/// How an op affects ciphertext noise, which the parameter search needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseClass {
    /// No ciphertext arithmetic (constants, shape changes, reinterpretation): noise unchanged.
    Zero,
    /// Leveled linear arithmetic: noise grows with the 2-norm of the clear weights.
    Linear,
    /// Programmable bootstraps: output noise is fresh; the input noise must stay below the failure bound.
    Lut,
}

/// Estimated work of one op: programmable bootstraps by input precision, and leveled ciphertext operations.
/// The backend refines it; passes use it to compare rewrites.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Number of PBS for each input precision (bits).
    pub pbs: BTreeMap<u32, u64>,
    /// Number of leveled ciphertext operations (additions, multiplications by a clear integer).
    pub leveled: u64,
}

impl Cost {
    pub fn leveled(n: usize) -> Cost {
        Cost {
            pbs: BTreeMap::new(),
            leveled: n as u64,
        }
    }

    pub fn pbs(precision: u32, n: usize) -> Cost {
        let mut pbs = BTreeMap::new();
        if n > 0 {
            pbs.insert(precision, n as u64);
        }
        Cost { pbs, leveled: 0 }
    }

    pub fn add(&mut self, other: &Cost) {
        for (p, n) in &other.pbs {
            *self.pbs.entry(*p).or_default() += n;
        }
        self.leveled += other.leveled;
    }

    pub fn pbs_count(&self) -> u64 {
        self.pbs.values().sum()
    }
}

/// How value-range analysis bounds an op's result from its operands' bounds. Every op declares
/// one; passes never assume one for an op they do not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRule {
    /// Every element is 0 (`zeros`).
    Zero,
    /// Nondecreasing in every operand: the result at the operands' lower and upper bounds bounds it
    /// (additions, sums, shape ops, casts, rounding, pools; constants, which have no operands).
    Monotone,
    /// `a − b`: increasing in the first operand, decreasing in the second.
    Difference,
    /// `−a`.
    Negation,
    /// A product or a linear map: with clear weights, the positive and negative parts of the weights
    /// against the bounds; of two encrypted values, the four corner products.
    Bilinear,
    /// A table lookup: every input value in the range is looked up.
    Table,
}

/// What a lookup and a leveled operation cost, for passes that weigh rewrites (`lut-fusion`,
/// `round-insertion`). The backend derives it from its parameter search (the cost of the cheapest
/// secure parameters for one lookup of each precision); passes read it from their context and never
/// hold numbers of their own.
#[derive(Clone, Debug, PartialEq)]
pub struct CostModel {
    /// Single-thread nanoseconds of one lookup (keyswitch + bootstrap) by input precision in bits,
    /// index 0 ..= 16 (index 0: a 1-bit extraction).
    pub lookup_ns: Vec<f64>,
    /// Nanoseconds of one leveled operation (an addition or a multiplication by a clear integer).
    pub leveled_ns: f64,
    /// Where the numbers come from, for messages and docs.
    pub source: String,
}

impl CostModel {
    /// Nanoseconds of one lookup on a `bits`-bit input (beyond the table: ×3 per bit).
    pub fn lookup(&self, bits: u32) -> f64 {
        let last = self.lookup_ns.len().saturating_sub(1);
        let i = (bits as usize).min(last);
        let base = self.lookup_ns.get(i).copied().unwrap_or(f64::INFINITY);
        base * 3f64.powi(bits.saturating_sub(last as u32) as i32)
    }

    /// The widest lookup before the first precision step that at least doubles the cost: where
    /// rounding lookup inputs pays most (5 bits with the calibrated tfhe model: N 2048 → 8192).
    pub fn cost_jump(&self) -> u32 {
        (1..16u32)
            .find(|&b| self.lookup(b + 1) >= 2.0 * self.lookup(b))
            .unwrap_or(16)
    }

    /// Estimated seconds of `c` (single thread).
    pub fn seconds(&self, c: &Cost) -> f64 {
        let pbs: f64 = c.pbs.iter().map(|(&p, &n)| self.lookup(p) * n as f64).sum();
        (pbs + self.leveled_ns * c.leveled as f64) * 1e-9
    }
}

/// How many operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    Between(usize, usize),
    AtLeast(usize),
}

impl Arity {
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::Between(a, b) => a <= n && n <= b,
            Arity::AtLeast(k) => n >= k,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Arity::Exactly(1) => "1 operand".to_string(),
            Arity::Exactly(k) => format!("{k} operands"),
            Arity::Between(a, b) => format!("{a} to {b} operands"),
            Arity::AtLeast(k) => format!("at least {k} operand(s)"),
        }
    }
}

/// Which operands must be encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperandRule {
    /// Every operand encrypted.
    AllEncrypted,
    /// At least one operand encrypted (`add`, `sub`).
    SomeEncrypted,
    /// Exactly one of two operands encrypted, the other clear (`mul`, `matmul`, `dot`).
    OneEncrypted,
    /// The first operand encrypted, the others clear (`conv2d`: weights and bias are clear).
    FirstEncrypted,
    /// Anything, as long as all operands have the same element type (shape ops).
    SameElem,
    /// Operands of one signedness, clear or encrypted (the result is encrypted when one is); widths
    /// may differ (`concat`).
    SameSign,
    /// No operands.
    None,
}

/// The kind of an attribute value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    Int,
    Bool,
    IntArray,
    Dense,
}

impl AttrKind {
    pub fn name(self) -> &'static str {
        match self {
            AttrKind::Int => "integer",
            AttrKind::Bool => "boolean",
            AttrKind::IntArray => "array of integers",
            AttrKind::Dense => "dense tensor",
        }
    }

    pub fn matches(self, a: &Attribute) -> bool {
        match self {
            AttrKind::Int => matches!(a, Attribute::Int(_)),
            AttrKind::Bool => matches!(a, Attribute::Bool(_)),
            AttrKind::IntArray => a.as_int_array().is_some(),
            AttrKind::Dense => matches!(a, Attribute::Dense(_)),
        }
    }
}

/// One attribute an op accepts.
#[derive(Clone, Copy, Debug)]
pub struct AttrSpec {
    pub name: &'static str,
    pub kind: AttrKind,
    pub required: bool,
    pub doc: &'static str,
}

const fn attr(name: &'static str, kind: AttrKind, required: bool, doc: &'static str) -> AttrSpec {
    AttrSpec {
        name,
        kind,
        required,
        doc,
    }
}

/// The documentation of an op: what it computes, and two complete example functions.
#[derive(Clone, Copy, Debug)]
pub struct OpDoc {
    /// One line: what the op is.
    pub summary: &'static str,
    /// The exact clear semantics, types and rules (markdown).
    pub semantics: &'static str,
    /// A function using the op that verifies.
    pub valid: &'static str,
    /// A function misusing the op, which the verifier rejects ...
    pub invalid: &'static str,
    /// ... with a message containing this text.
    pub error: &'static str,
}

/// An op's documentation; `op_struct!` implements it from the op's declaration.
pub trait Documented {
    fn doc(&self) -> &'static OpDoc;
}

/// The declaration of one op. See the module doc.
pub trait OpDef: Documented + Sync {
    fn arity(&self) -> Arity;
    fn operand_rule(&self) -> OperandRule;
    fn attrs(&self) -> &'static [AttrSpec] {
        &[]
    }
    /// The result type the op gives these operands: exact shape, encryption and signedness, and the smallest
    /// width that holds every value the operand types allow (saturated at the largest width). Also checks
    /// the op's shape and attribute rules. `declared` is the result type written in the program, which
    /// ops whose shape is not determined by their operands (`reshape`, `broadcast`, `zeros`) read.
    fn infer_type(&self, operands: &[Type], attrs: &Attrs, declared: Option<&Type>) -> Result<Type, String>;
    /// Checks a declared result type against the inferred one. By default: same shape, encryption and
    /// signedness; the width is the program's promise, checked on values by the interpreter.
    fn check_result(&self, _operands: &[Type], _attrs: &Attrs, inferred: &Type, declared: &Type) -> Result<(), String> {
        same_kind(inferred, declared)
    }
    /// The clear semantics. Arguments fit their types and the op verified; the interpreter checks the
    /// result against the declared type.
    fn eval(&self, args: &[&Tensor], operands: &[Type], attrs: &Attrs, result: &Type) -> Result<Wide, String>;
    fn noise_class(&self) -> NoiseClass;
    /// How range analysis bounds the result (required: a wrong guess would be unsound).
    fn range_rule(&self) -> RangeRule;
    /// Whether the result's elements are copies of operand elements, rearranged (shape ops): their
    /// widths are tied, since no value changes.
    fn moves_elements(&self) -> bool {
        false
    }
    /// For table lookups, the attribute holding the table(s), indexed by the first operand's value:
    /// passes that re-encode or re-index tables (`bitwidth`, `round-insertion`) find it here.
    fn table_attr(&self) -> Option<&'static str> {
        None
    }
    fn cost(&self, operands: &[Type], attrs: &Attrs, result: &Type) -> Cost;
}

macro_rules! declare_ops {
    ($($kind:ident => $name:literal, $def:ident;)*) => {
        /// Every op of the `fhe` dialect.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum OpKind {
            $($kind,)*
        }

        impl OpKind {
            /// Every op, in declaration order.
            pub const ALL: &'static [OpKind] = &[$(OpKind::$kind,)*];

            /// The op's text name, such as `fhe.add`.
            pub fn name(self) -> &'static str {
                match self {
                    $(OpKind::$kind => $name,)*
                }
            }

            pub fn from_name(name: &str) -> Option<OpKind> {
                match name {
                    $($name => Some(OpKind::$kind),)*
                    _ => None,
                }
            }

            /// The op's declaration.
            pub fn def(self) -> &'static dyn OpDef {
                match self {
                    $(OpKind::$kind => &$def,)*
                }
            }
        }
    };
}

declare_ops! {
    Constant => "fhe.constant", ConstantOp;
    Zeros => "fhe.zeros", ZerosOp;
    Add => "fhe.add", AddOp;
    Sub => "fhe.sub", SubOp;
    Neg => "fhe.neg", NegOp;
    Mul => "fhe.mul", MulOp;
    MulEint => "fhe.mul_eint", MulEintOp;
    Matmul => "fhe.matmul", MatmulOp;
    Dot => "fhe.dot", DotOp;
    Sum => "fhe.sum", SumOp;
    Conv2d => "fhe.conv2d", Conv2dOp;
    Avgpool2d => "fhe.avgpool2d", Avgpool2dOp;
    Maxpool2d => "fhe.maxpool2d", Maxpool2dOp;
    Lut => "fhe.lut", LutOp;
    MappedLut => "fhe.mapped_lut", MappedLutOp;
    MultiLut => "fhe.multi_lut", MultiLutOp;
    Round => "fhe.round", RoundOp;
    Truncate => "fhe.truncate", TruncateOp;
    ToSigned => "fhe.to_signed", ToSignedOp;
    ToUnsigned => "fhe.to_unsigned", ToUnsignedOp;
    Reshape => "fhe.reshape", ReshapeOp;
    Transpose => "fhe.transpose", TransposeOp;
    Broadcast => "fhe.broadcast", BroadcastOp;
    Concat => "fhe.concat", ConcatOp;
    Slice => "fhe.slice", SliceOp;
    Gather => "fhe.gather", GatherOp;
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// ---- helpers shared by the op definitions -------------------------------------------------------------

/// The default result check: same shape, same encryption, same signedness.
pub(crate) fn same_kind(inferred: &Type, declared: &Type) -> Result<(), String> {
    if inferred.shape != declared.shape {
        return Err(format!(
            "result shape {} does not match the shape {} the operands give",
            shape_str(&declared.shape),
            shape_str(&inferred.shape)
        ));
    }
    if inferred.is_encrypted() != declared.is_encrypted() {
        return Err(format!(
            "result must be {}, found {}",
            if inferred.is_encrypted() { "encrypted" } else { "clear" },
            declared.elem
        ));
    }
    if inferred.is_signed() != declared.is_signed() {
        return Err(format!(
            "result must be {} (like {}), found {}",
            if inferred.is_signed() { "signed" } else { "unsigned" },
            inferred.elem,
            declared.elem
        ));
    }
    Ok(())
}

/// The result check of ops that keep their operand's element type exactly.
pub(crate) fn same_type(inferred: &Type, declared: &Type) -> Result<(), String> {
    if inferred != declared {
        return Err(format!("result type must be {inferred}, found {declared}"));
    }
    Ok(())
}

/// An encrypted element type of the given signedness wide enough for `lo ..= hi` (saturated).
pub(crate) fn enc_elem_for(lo: i128, hi: i128, signed: bool) -> ElemType {
    let w = width_for(lo, hi, signed).min(crate::types::MAX_ENCRYPTED_WIDTH);
    ElemType::new(true, signed, w)
}

pub(crate) fn get_int(attrs: &Attrs, name: &str) -> Result<Option<i64>, String> {
    match attrs.get(name) {
        None => Ok(None),
        Some(Attribute::Int(v)) => Ok(Some(*v)),
        Some(a) => Err(format!(
            "attribute `{name}` must be an integer, found {}",
            a.kind_name()
        )),
    }
}

pub(crate) fn req_int(attrs: &Attrs, name: &str) -> Result<i64, String> {
    get_int(attrs, name)?.ok_or_else(|| format!("missing attribute `{name}`"))
}

pub(crate) fn get_bool(attrs: &Attrs, name: &str) -> Result<Option<bool>, String> {
    match attrs.get(name) {
        None => Ok(None),
        Some(Attribute::Bool(v)) => Ok(Some(*v)),
        Some(a) => Err(format!("attribute `{name}` must be a boolean, found {}", a.kind_name())),
    }
}

pub(crate) fn get_ints(attrs: &Attrs, name: &str) -> Result<Option<Vec<i64>>, String> {
    match attrs.get(name) {
        None => Ok(None),
        Some(a) => a.as_int_array().map(Some).ok_or_else(|| {
            format!(
                "attribute `{name}` must be an array of integers, found {}",
                a.kind_name()
            )
        }),
    }
}

pub(crate) fn req_dense<'a>(attrs: &'a Attrs, name: &str) -> Result<&'a Dense, String> {
    match attrs.get(name) {
        None => Err(format!("missing attribute `{name}`")),
        Some(Attribute::Dense(d)) => Ok(d),
        Some(a) => Err(format!(
            "attribute `{name}` must be a dense tensor, found {}",
            a.kind_name()
        )),
    }
}

/// Range of values of a type, as i128.
pub(crate) fn range(t: &Type) -> (i128, i128) {
    t.elem.range()
}

/// Broadcast shape of two operand types, or an error naming both.
pub(crate) fn bcast(a: &Type, b: &Type) -> Result<Vec<usize>, String> {
    broadcast_shapes(&a.shape, &b.shape).ok_or_else(|| {
        format!(
            "operand shapes {} and {} do not broadcast",
            shape_str(&a.shape),
            shape_str(&b.shape)
        )
    })
}

/// Converts a tensor to i128 for exact arithmetic.
pub(crate) fn wide(t: &Tensor) -> Wide {
    t.mapv(|v| v as i128)
}

/// Applies `f` elementwise to two tensors under numpy broadcasting to `shape`.
pub(crate) fn zip_bcast(
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
    f: impl Fn(i128, i128) -> i128,
) -> Result<Wide, String> {
    let av = a.broadcast(shape).ok_or("operand does not broadcast")?;
    let bv = b.broadcast(shape).ok_or("operand does not broadcast")?;
    Ok(ndarray::Zip::from(&av)
        .and(&bv)
        .map_collect(|&x, &y| f(x as i128, y as i128)))
}

/// Checks an axis attribute against a rank; negative axes count from the end.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r.max(1) || (r == 0) {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { (axis + r) as usize } else { axis as usize })
}

/// Builds a tensor of `shape` from values in C order.
pub(crate) fn from_vec<T: Clone>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>, String> {
    ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).map_err(|e| format!("internal shape error: {e}"))
}
