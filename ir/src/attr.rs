//! Attributes: the compile-time constants an op carries (`{lsbs = 8, table = dense<...> : tensor<64xi7>}`).
//!
//! Attribute dictionaries are ordered by name, which is also how they print, so printing is canonical.

use crate::types::Type;
use ndarray::ArrayD;
use std::collections::BTreeMap;
use std::fmt;

/// A dense tensor of clear integers with its type (`dense<[[1, 2], [3, 4]]> : tensor<2x2xi8>`).
/// Every value fits the element type; the array has the type's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dense {
    pub ty: Type,
    pub data: ArrayD<i64>,
}

impl Dense {
    /// Builds a dense attribute, checking that `data` has `ty`'s shape, that `ty` is clear and that every
    /// value fits the element type.
    pub fn new(ty: Type, data: ArrayD<i64>) -> Result<Dense, String> {
        if ty.is_encrypted() {
            return Err(format!("a dense attribute must have a clear type, not {ty}"));
        }
        if data.shape() != ty.shape.as_slice() {
            return Err(format!(
                "dense attribute has shape {:?} but its type {ty} has shape {:?}",
                data.shape(),
                ty.shape
            ));
        }
        if let Some(v) = data.iter().find(|&&v| !ty.elem.contains(v as i128)) {
            let (lo, hi) = ty.elem.range();
            return Err(format!(
                "dense value {v} does not fit the element type {} (range {lo} ..= {hi})",
                ty.elem
            ));
        }
        Ok(Dense { ty, data })
    }
}

/// One attribute value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    /// An integer, printed bare (`8`). The text `8 : i64` parses to the same attribute.
    Int(i64),
    Bool(bool),
    Str(String),
    /// A list of attributes (`[1, 2, 3]`).
    Array(Vec<Attribute>),
    Dense(Dense),
}

impl Attribute {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Attribute::Int(_) => "integer",
            Attribute::Bool(_) => "boolean",
            Attribute::Str(_) => "string",
            Attribute::Array(_) => "array",
            Attribute::Dense(_) => "dense tensor",
        }
    }

    /// The integers of an array attribute, or `None` when it is not an array of integers.
    pub fn as_int_array(&self) -> Option<Vec<i64>> {
        match self {
            Attribute::Array(items) => items
                .iter()
                .map(|a| match a {
                    Attribute::Int(v) => Some(*v),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    pub fn int_array(values: &[i64]) -> Attribute {
        Attribute::Array(values.iter().map(|&v| Attribute::Int(v)).collect())
    }
}

/// An op's or argument's attribute dictionary, ordered by name.
pub type Attrs = BTreeMap<String, Attribute>;

/// Writes an attribute dictionary (` {a = 1, b = [2]}`), nothing when it is empty.
pub fn write_attrs(f: &mut impl fmt::Write, attrs: &Attrs) -> fmt::Result {
    if attrs.is_empty() {
        return Ok(());
    }
    write!(f, " {{")?;
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            write!(f, ", ")?;
        }
        let bare = k.bytes().next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
            && k.bytes().all(|c| c.is_ascii_alphanumeric() || b"_.$".contains(&c));
        if bare {
            write!(f, "{k}")?;
        } else {
            write_string(f, k)?;
        }
        write!(f, " = {v}")?;
    }
    write!(f, "}}")
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attribute::Int(v) => write!(f, "{v}"),
            Attribute::Bool(b) => write!(f, "{b}"),
            Attribute::Str(s) => write_string(f, s),
            Attribute::Array(items) => {
                write!(f, "[")?;
                for (i, a) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{a}")?;
                }
                write!(f, "]")
            }
            Attribute::Dense(d) => {
                write!(f, "dense<")?;
                let first = d.data.iter().next();
                match first {
                    Some(&v) if d.data.len() > 1 && d.data.iter().all(|&x| x == v) => write!(f, "{v}")?,
                    _ => write_nested(f, &d.data.view())?,
                }
                write!(f, "> : {}", d.ty)
            }
        }
    }
}

fn write_nested(f: &mut fmt::Formatter<'_>, a: &ndarray::ArrayViewD<'_, i64>) -> fmt::Result {
    if a.ndim() == 0 {
        return write!(f, "{}", a.iter().next().copied().unwrap_or(0));
    }
    write!(f, "[")?;
    for (i, sub) in a.outer_iter().enumerate() {
        if i > 0 {
            write!(f, ", ")?;
        }
        write_nested(f, &sub)?;
    }
    write!(f, "]")
}

/// Writes a string literal with MLIR escapes (`\"`, `\\`, `\n`, `\t`, other control bytes as `\XX`).
pub fn write_string(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    write!(f, "\"")?;
    for c in s.chars() {
        match c {
            '"' => write!(f, "\\\"")?,
            '\\' => write!(f, "\\\\")?,
            '\n' => write!(f, "\\n")?,
            '\t' => write!(f, "\\t")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\{:02X}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    write!(f, "\"")
}
