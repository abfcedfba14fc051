//! fhec-quant: the quantisation every model family shares — from floats to the integers a client
//! encrypts, and back.
//!
//! * [`InputQuantizer`]: per-feature input quantisers, affine (`2^n` evenly spaced levels between the
//!   calibration minimum and maximum) or quantile (levels at the calibration data's quantiles).
//! * [`weights`]: per-channel weight quantisation, symmetric or affine (`2^n` levels that include 0).
//! * [`requant`]: requantisation tables: a univariate function between two quantised domains as one
//!   lookup table.
//! * [`spec`]: the [`ClientSpec`], a model's client half as plain data (input quantisers and encodings,
//!   output dequantisation, post-processing, class labels).
//! * [`linear`]: quantised linear models (`y = X·W + b`): input scales folded into per-output affine
//!   weights, the integer accumulator as the encrypted program, dequantisation on the client.
//!
//! Frontends build their modules from these (trees, linear models; ONNX networks next); the client half
//! of a model (input quantisers, output dequantisation) is plain data (serde), so Python and Rust
//! compute exactly the same integers.

pub mod input;
pub mod linear;
pub mod requant;
pub mod spec;
pub mod weights;

pub use input::{InputQuantizer, Quantized as QuantizedInputs, QuantizerKind};
pub use linear::QuantizedLinear;
pub use spec::{ClientSpec, Dequant, Encoding, InputSpec, Post, MAX_OUTPUT_PARTS};
pub use weights::{quantize_weights, WeightMode, Weights};

/// Errors of quantisation: bad options or calibration data, a model that cannot be quantised.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum QuantError {
    /// Bad bit widths or options.
    #[error("{0}")]
    Options(String),
    /// Bad calibration data (empty, non-finite, wrong width).
    #[error("{0}")]
    Calibration(String),
    /// The quantised model does not fit what the compiler supports (an accumulator too wide).
    #[error("{0}")]
    Unsupported(String),
}
