//! QuantizeLinear / DequantizeLinear (QDQ graphs, as onnxruntime's static quantiser and QAT exports
//! write them): their parameters, per tensor or per axis, and the float reference. Quantisation reads
//! them as pending element-wise steps, and as the grid a lookup maps to (`ptq.rs`).

use ndarray::{ArrayD, IxDyn};

use crate::float::{axis, shape_err};
use crate::model::{Node, OnnxModel};
use crate::OnnxError;

/// A Q or DQ node's parameters, broadcast to its input's shape: per element `scale` and `zero`,
/// and (QuantizeLinear) the integer type's saturation range.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Qdq {
    pub scale: Vec<f64>,
    pub zero: Vec<f64>,
    pub lo: f64,
    pub hi: f64,
}

impl Qdq {
    /// `clamp(round_half_even(x / scale) + zero, lo, hi)` of element `e`.
    pub fn quantize(&self, x: f64, e: usize) -> f64 {
        let (s, z) = (pick(&self.scale, e), pick(&self.zero, e));
        ((x / s).round_ties_even() + z).clamp(self.lo, self.hi)
    }

    /// Whether scale and zero point are one value for every element.
    pub fn per_tensor(&self) -> bool {
        self.scale.len() == 1 && self.zero.len() == 1
    }
}

fn pick(v: &[f64], e: usize) -> f64 {
    if v.len() == 1 {
        v[0]
    } else {
        v[e]
    }
}

/// The saturation range of an ONNX integer type.
fn range_of(node: &Node, dtype: i32) -> Result<(f64, f64), OnnxError> {
    use crate::proto::tensor_proto::DataType as D;
    Ok(match D::try_from(dtype) {
        Ok(D::Uint8) => (0.0, 255.0),
        Ok(D::Int8) => (-128.0, 127.0),
        Ok(D::Uint16) => (0.0, 65_535.0),
        Ok(D::Int16) => (-32_768.0, 32_767.0),
        Ok(D::Uint4) => (0.0, 15.0),
        Ok(D::Int4) => (-8.0, 7.0),
        _ => {
            return Err(OnnxError::Unsupported(format!(
                "{}: quantised type {dtype} (fhec reads 4-, 8- and 16-bit integers)",
                node.what()
            )))
        }
    })
}

impl OnnxModel {
    /// The parameters of Q/DQ `node` over an input of `shape`: `scale` (operand 1, positive,
    /// finite) and `zero` (operand 2, default 0) per tensor or along `axis` (default 1).
    pub(crate) fn qdq(
        &self,
        node: &Node,
        shape: &[usize],
        get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
    ) -> Result<Qdq, OnnxError> {
        if node.int("block_size", 0)? != 0 {
            return Err(OnnxError::Unsupported(format!("{}: blocked quantisation", node.what())));
        }
        let param = |i: usize| -> Result<Option<ArrayD<f64>>, OnnxError> {
            match node.input(i) {
                None => Ok(None),
                Some(name) => get(name).map(Some).ok_or_else(|| {
                    OnnxError::Unsupported(format!(
                        "{}: operand {i} (scale or zero point) must be a constant",
                        node.what()
                    ))
                }),
            }
        };
        let scale = param(1)?.ok_or_else(|| shape_err(node, "missing scale"))?;
        let zero = param(2)?;
        let n = shape.iter().product::<usize>();
        let expand = |t: &ArrayD<f64>, what: &str| -> Result<Vec<f64>, OnnxError> {
            if t.len() == 1 {
                return Ok(vec![t.iter().copied().next().unwrap_or(0.0)]);
            }
            if t.ndim() != 1 {
                return Err(shape_err(node, format!("a {what} of shape {:?}", t.shape())));
            }
            let a = axis(node, node.int("axis", 1)?, shape.len())?;
            if t.len() != shape[a] {
                return Err(shape_err(
                    node,
                    format!("{} {what}s for axis {a} of {}", t.len(), shape[a]),
                ));
            }
            let inner: usize = shape[a + 1..].iter().product();
            Ok((0..n).map(|e| t[[(e / inner.max(1)) % shape[a]]]).collect())
        };
        let s = expand(&scale, "scale")?;
        if s.iter().any(|&v| !(v.is_finite() && v > 0.0)) {
            return Err(shape_err(node, "scales must be positive and finite"));
        }
        let z = match &zero {
            Some(z) => expand(z, "zero point")?,
            None => vec![0.0],
        };
        if z.iter().any(|v| v.fract() != 0.0) {
            return Err(shape_err(node, "zero points must be integers"));
        }
        let dtype = match node.input(2) {
            Some(name) => self.dtypes.get(name).copied().unwrap_or(0),
            None => node.int("output_dtype", 2)? as i32, // uint8 by default
        };
        let (lo, hi) = if node.op == "QuantizeLinear" {
            range_of(node, dtype)?
        } else {
            (f64::NEG_INFINITY, f64::INFINITY)
        };
        Ok(Qdq {
            scale: s,
            zero: z,
            lo,
            hi,
        })
    }

    /// QuantizeLinear / DequantizeLinear in f64.
    pub(crate) fn eval_qdq(
        &self,
        node: &Node,
        x: &ArrayD<f64>,
        get: &dyn Fn(&str) -> Option<ArrayD<f64>>,
    ) -> Result<ArrayD<f64>, OnnxError> {
        let q = self.qdq(node, x.shape(), get)?;
        let quant = node.op == "QuantizeLinear";
        let v: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(e, &v)| {
                if quant {
                    q.quantize(v, e)
                } else {
                    (v - pick(&q.zero, e)) * pick(&q.scale, e)
                }
            })
            .collect();
        ArrayD::from_shape_vec(IxDyn(x.shape()), v).map_err(|e| shape_err(node, e))
    }
}
