//! Types of the `fhe` dialect: encrypted and clear integers, alone or in ranked tensors.
//!
//! A width is a promise: every value of the type fits in it. `!fhe.eint<w>` holds `0 ..= 2^w - 1`,
//! `!fhe.esint<w>` holds `-2^(w-1) ..= 2^(w-1) - 1` (two's complement), clear `iN` and `uiN` the same
//! ranges as signed and unsigned N-bit integers. The verifier and the clear interpreter enforce it.

use std::fmt;

/// Largest width of an encrypted integer. Table lookups are limited further (see [`MAX_LUT_WIDTH`]).
pub const MAX_ENCRYPTED_WIDTH: u32 = 32;
/// Largest width of a clear signed integer (`i64`).
pub const MAX_CLEAR_WIDTH: u32 = 64;
/// Largest width of a clear unsigned integer (`ui63`): values are stored as `i64`.
pub const MAX_CLEAR_UNSIGNED_WIDTH: u32 = 63;
/// Largest input width of a table lookup (`fhe.lut`, `fhe.mapped_lut`, `fhe.multi_lut`): 2^16 entries.
pub const MAX_LUT_WIDTH: u32 = 16;

/// The element type of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElemType {
    /// `!fhe.eint<w>`: encrypted unsigned integer.
    EInt(u32),
    /// `!fhe.esint<w>`: encrypted signed integer (two's complement).
    ESInt(u32),
    /// `iN`: clear signed integer.
    Int(u32),
    /// `uiN`: clear unsigned integer.
    UInt(u32),
}

impl ElemType {
    /// Builds an element type from its parts.
    pub fn new(encrypted: bool, signed: bool, width: u32) -> ElemType {
        match (encrypted, signed) {
            (true, false) => ElemType::EInt(width),
            (true, true) => ElemType::ESInt(width),
            (false, true) => ElemType::Int(width),
            (false, false) => ElemType::UInt(width),
        }
    }

    pub fn width(self) -> u32 {
        match self {
            ElemType::EInt(w) | ElemType::ESInt(w) | ElemType::Int(w) | ElemType::UInt(w) => w,
        }
    }

    pub fn is_encrypted(self) -> bool {
        matches!(self, ElemType::EInt(_) | ElemType::ESInt(_))
    }

    pub fn is_signed(self) -> bool {
        matches!(self, ElemType::ESInt(_) | ElemType::Int(_))
    }

    /// The same kind of integer with another width.
    pub fn with_width(self, width: u32) -> ElemType {
        ElemType::new(self.is_encrypted(), self.is_signed(), width)
    }

    /// The same width and encryption with the given signedness.
    pub fn with_signed(self, signed: bool) -> ElemType {
        ElemType::new(self.is_encrypted(), signed, self.width())
    }

    /// Largest width this kind of integer may have.
    pub fn max_width(self) -> u32 {
        match self {
            ElemType::EInt(_) | ElemType::ESInt(_) => MAX_ENCRYPTED_WIDTH,
            ElemType::Int(_) => MAX_CLEAR_WIDTH,
            ElemType::UInt(_) => MAX_CLEAR_UNSIGNED_WIDTH,
        }
    }

    /// Smallest and largest value of the type.
    pub fn range(self) -> (i128, i128) {
        int_range(self.is_signed(), self.width())
    }

    /// Whether `v` fits the type.
    pub fn contains(self, v: i128) -> bool {
        let (lo, hi) = self.range();
        lo <= v && v <= hi
    }
}

/// Range of a signed or unsigned integer of `width` bits (`(0, 0)` for the invalid width 0; widths above
/// 126 are treated as 126).
pub fn int_range(signed: bool, width: u32) -> (i128, i128) {
    let width = width.min(126);
    if width == 0 {
        (0, 0)
    } else if signed {
        (-(1i128 << (width - 1)), (1i128 << (width - 1)) - 1)
    } else {
        (0, (1i128 << width) - 1)
    }
}

/// Smallest width of a signed (or unsigned) integer that holds every value of `lo ..= hi`.
/// For unsigned integers `lo` must be ≥ 0. The result is at least 1.
pub fn width_for(lo: i128, hi: i128, signed: bool) -> u32 {
    let mut w = 1;
    while w < 127 {
        let (a, b) = int_range(signed, w);
        if a <= lo && hi <= b {
            return w;
        }
        w += 1;
    }
    w
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElemType::EInt(w) => write!(f, "!fhe.eint<{w}>"),
            ElemType::ESInt(w) => write!(f, "!fhe.esint<{w}>"),
            ElemType::Int(w) => write!(f, "i{w}"),
            ElemType::UInt(w) => write!(f, "ui{w}"),
        }
    }
}

/// A value's type: an element type and a shape. Rank 0 is a scalar and prints as the bare element type;
/// any other rank prints as `tensor<d0xd1x...xE>`. Dimensions may be 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Type {
    pub elem: ElemType,
    pub shape: Vec<usize>,
}

impl Type {
    pub fn new(elem: ElemType, shape: impl Into<Vec<usize>>) -> Type {
        Type {
            elem,
            shape: shape.into(),
        }
    }

    pub fn scalar(elem: ElemType) -> Type {
        Type {
            elem,
            shape: Vec::new(),
        }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (1 for a scalar).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_encrypted(&self) -> bool {
        self.elem.is_encrypted()
    }

    pub fn is_signed(&self) -> bool {
        self.elem.is_signed()
    }

    pub fn width(&self) -> u32 {
        self.elem.width()
    }

    pub fn with_elem(&self, elem: ElemType) -> Type {
        Type::new(elem, self.shape.clone())
    }

    pub fn with_shape(&self, shape: impl Into<Vec<usize>>) -> Type {
        Type::new(self.elem, shape)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shape.is_empty() {
            return write!(f, "{}", self.elem);
        }
        write!(f, "tensor<")?;
        for d in &self.shape {
            write!(f, "{d}x")?;
        }
        write!(f, "{}>", self.elem)
    }
}

/// Shape that numpy broadcasting gives two shapes, or `None` when they do not broadcast.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// Formats a shape as `[2, 3]`.
pub fn shape_str(shape: &[usize]) -> String {
    format!("{shape:?}")
}

/// The smallest clear integer type (signed `iN` if any value is negative, else `uiN`) holding `data`.
pub fn clear_type_for(data: &crate::Tensor) -> Type {
    let lo = data.iter().copied().min().unwrap_or(0) as i128;
    let hi = data.iter().copied().max().unwrap_or(0) as i128;
    let signed = lo < 0;
    let w = width_for(lo, hi, signed);
    let elem = if signed { ElemType::Int(w) } else { ElemType::UInt(w) };
    Type::new(elem, data.shape().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_widths() {
        assert_eq!(ElemType::EInt(3).range(), (0, 7));
        assert_eq!(ElemType::ESInt(3).range(), (-4, 3));
        assert_eq!(ElemType::Int(64).range(), (i64::MIN as i128, i64::MAX as i128));
        assert_eq!(width_for(0, 7, false), 3);
        assert_eq!(width_for(0, 8, false), 4);
        assert_eq!(width_for(-4, 3, true), 3);
        assert_eq!(width_for(-5, 3, true), 4);
        assert_eq!(width_for(0, 0, false), 1);
    }

    #[test]
    fn display() {
        let t = Type::new(ElemType::EInt(6), vec![1, 4]);
        assert_eq!(t.to_string(), "tensor<1x4x!fhe.eint<6>>");
        assert_eq!(Type::scalar(ElemType::UInt(8)).to_string(), "ui8");
        assert_eq!(Type::new(ElemType::Int(4), vec![0]).to_string(), "tensor<0xi4>");
    }

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shapes(&[2, 1, 3], &[4, 1]), Some(vec![2, 4, 3]));
        assert_eq!(broadcast_shapes(&[], &[4]), Some(vec![4]));
        assert_eq!(broadcast_shapes(&[2], &[3]), None);
        assert_eq!(broadcast_shapes(&[0], &[1]), Some(vec![0]));
    }
}
