//! fhec's ONNX frontend (docs/onnx.md): reads ONNX networks through `prost` (messages generated from
//! the vendored `onnx-ml.proto`), orders their graph with `petgraph`, evaluates them in f64 (the float
//! reference) and quantises them after training into an fhec IR module and its client spec
//! ([`OnnxModel::quantize`]). Tree ensembles (`ai.onnx.ml` nodes) are read by [`trees::import`] into
//! `fhec-trees`' schema. Like every frontend it depends on the IR, `fhec-quant` and (for that schema)
//! `fhec-trees` only; the facade (`fhec::compile`) compiles what it returns.
//!
//! ```no_run
//! let bytes = std::fs::read("net.onnx").unwrap();
//! let model = fhec_onnx::OnnxModel::from_bytes(&bytes).unwrap();
//! let calibration = ndarray::ArrayD::<f64>::zeros(ndarray::IxDyn(&[100, 4]));
//! let q = model.quantize(&calibration, &fhec_onnx::PtqOptions::default()).unwrap();
//! println!("{}", fhec_ir::print_module(&q.module));
//! ```

mod conv;
mod float;
mod integer;
mod model;
mod movement;
mod ops;
mod ptq;
mod qdq;
mod qop;
mod rounding;
#[cfg(test)]
mod tests;
pub mod trees;
#[cfg(test)]
mod trees_tests;

/// The ONNX protobuf messages, generated from `proto/onnx-ml.proto` by `tools/onnx-proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod proto {
    include!("proto/onnx.rs");
}

pub use integer::{IntegerLayer, IntegerNetwork, LayerKind, Lookup, MAX_MLP_LAYERS, MAX_MLP_WEIGHTS, MAX_MLP_WIDTH};
pub use model::{GraphInput, OnnxModel, MAX_FILE_BYTES, MAX_NODES, MAX_TENSOR_ELEMENTS, OPSETS};
pub use ops::SUPPORTED;
pub use ptq::{
    LayerReport, NBits, PtqOptions, QuantizedNetwork, Tail, AUTO_OUTPUT_PARTS, AUTO_PARTS_GAIN, DEFAULT_N_BITS,
    DEFAULT_ROUNDING_BITS, MAX_PRODUCT_TERMS, WINDOW_TOP_BITS,
};
pub use rounding::{
    BuildFailure, RoundingChoice, RoundingTrial, AUTO_ROUNDING_CANDIDATES, AUTO_ROUNDING_REFERENCE, AUTO_ROUNDING_ROWS,
    DEFAULT_ROUNDING_TOLERANCE,
};

/// What can go wrong reading or quantising a network.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// Not an ONNX file, a damaged one, or one that breaks the format's rules.
    #[error("{0}")]
    Format(String),
    /// Valid ONNX that fhec does not compile (an op, an opset, a data type, a layout).
    #[error("{0}")]
    Unsupported(String),
    /// Shapes that do not fit.
    #[error("{0}")]
    Shape(String),
    /// A bad calibration set.
    #[error("{0}")]
    Calibration(String),
    /// Bad options (bit widths).
    #[error("{0}")]
    Options(String),
}
