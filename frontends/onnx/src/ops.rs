//! The operators fhec reads, by ONNX name: element-wise functions (shared by the float reference and
//! the lookups of the quantised network) and the list that unsupported-op errors print.

use crate::model::Node;
use crate::OnnxError;

/// Every op of the default domain fhec reads (docs/onnx.md has their lowering).
pub const SUPPORTED: &[&str] = &[
    "Abs",
    "Add",
    "ArgMax",
    "AveragePool",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "ConvTranspose",
    "DequantizeLinear",
    "Div",
    "Dropout",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "MaxPool",
    "Mul",
    "Neg",
    "PRelu",
    "Pad",
    "QuantizeLinear",
    "Reciprocal",
    "ReduceMax",
    "ReduceMean",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Round",
    "Selu",
    "Shape",
    "Sigmoid",
    "Sign",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// The error for an op fhec does not read.
pub(crate) fn unsupported(node: &Node, opset: i64) -> OnnxError {
    OnnxError::Unsupported(format!(
        "{} (opset {opset}) is not supported; supported ops: {}; quantised operators: {}",
        node.what(),
        SUPPORTED.join(", "),
        crate::qop::QUANTISED_OPS.join(", ")
    ))
}

/// An element-wise function of one real variable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Unary {
    Relu,
    LeakyRelu(f64),
    Sigmoid,
    Tanh,
    Elu(f64),
    Selu(f64, f64),
    Softplus,
    Softsign,
    HardSigmoid(f64, f64),
    HardSwish,
    Erf,
    Gelu,
    GeluTanh,
    Clip(f64, f64),
    Abs,
    Neg,
    Sign,
    Exp,
    Log,
    Round,
    Floor,
    Ceil,
    Sqrt,
    Reciprocal,
}

impl Unary {
    /// The element-wise function of `node`, if it is one. `clip` gives Clip's bounds when they are
    /// operands (opset ≥ 11).
    pub fn of(node: &Node, clip: Option<(f64, f64)>) -> Result<Option<Unary>, OnnxError> {
        Ok(Some(match node.op.as_str() {
            "Relu" => Unary::Relu,
            "LeakyRelu" => Unary::LeakyRelu(node.float("alpha", 0.01)?),
            "Sigmoid" => Unary::Sigmoid,
            "Tanh" => Unary::Tanh,
            "Elu" => Unary::Elu(node.float("alpha", 1.0)?),
            "Selu" => Unary::Selu(
                node.float("alpha", 1.673_263_192_176_818_8)?,
                node.float("gamma", 1.050_701_022_148_132_3)?,
            ),
            "Softplus" => Unary::Softplus,
            "Softsign" => Unary::Softsign,
            "HardSigmoid" => Unary::HardSigmoid(node.float("alpha", 0.2)?, node.float("beta", 0.5)?),
            "HardSwish" => Unary::HardSwish,
            "Erf" => Unary::Erf,
            "Gelu" => match node.string("approximate")?.as_deref() {
                None | Some("none") => Unary::Gelu,
                Some("tanh") => Unary::GeluTanh,
                Some(other) => {
                    return Err(OnnxError::Unsupported(format!(
                        "{}: approximate = {other:?} (none or tanh)",
                        node.what()
                    )))
                }
            },
            "Clip" => {
                let (lo, hi) = match clip {
                    Some(b) => b,
                    None => (node.float("min", f64::NEG_INFINITY)?, node.float("max", f64::INFINITY)?),
                };
                Unary::Clip(lo, hi)
            }
            "Abs" => Unary::Abs,
            "Neg" => Unary::Neg,
            "Sign" => Unary::Sign,
            "Exp" => Unary::Exp,
            "Log" => Unary::Log,
            "Round" => Unary::Round,
            "Floor" => Unary::Floor,
            "Ceil" => Unary::Ceil,
            "Sqrt" => Unary::Sqrt,
            "Reciprocal" => Unary::Reciprocal,
            _ => return Ok(None),
        }))
    }

    pub fn apply(self, x: f64) -> f64 {
        match self {
            Unary::Relu => x.max(0.0),
            Unary::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::Tanh => x.tanh(),
            Unary::Elu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * (x.exp() - 1.0)
                }
            }
            Unary::Selu(a, g) => {
                if x > 0.0 {
                    g * x
                } else {
                    g * a * (x.exp() - 1.0)
                }
            }
            Unary::Softplus => {
                if x > 30.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
            Unary::Softsign => x / (1.0 + x.abs()),
            Unary::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Unary::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Unary::Erf => libm::erf(x),
            Unary::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Unary::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
            }
            Unary::Clip(lo, hi) => x.max(lo).min(hi),
            Unary::Abs => x.abs(),
            Unary::Neg => -x,
            Unary::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Round => x.round_ties_even(),
            Unary::Floor => x.floor(),
            Unary::Ceil => x.ceil(),
            Unary::Sqrt => x.sqrt(),
            Unary::Reciprocal => 1.0 / x,
        }
    }
}
