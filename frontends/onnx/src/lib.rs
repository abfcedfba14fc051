//! fhec's ONNX frontend (docs/onnx.md): reads ONNX networks through `prost` (messages generated from
//! the vendored `onnx-ml.proto`), orders their graph with `petgraph`, evaluates them in f64 (the float
//! reference) and quantises them after training into an fhec IR module and its client spec
//! ([`OnnxModel::quantize`]). Like every frontend it depends on the IR and `fhec-quant` only; the
//! facade (`fhec::compile`) compiles what it returns.
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
mod model;
mod movement;
mod ops;
mod ptq;
#[cfg(test)]
mod tests;

/// The ONNX protobuf messages, generated from `proto/onnx-ml.proto` by `tools/onnx-proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod proto {
    include!("proto/onnx.rs");
}

pub use model::{GraphInput, OnnxModel, MAX_FILE_BYTES, MAX_NODES, MAX_TENSOR_ELEMENTS, OPSETS};
pub use ops::SUPPORTED;
pub use ptq::{LayerReport, NBits, PtqOptions, QuantizedNetwork, Tail, DEFAULT_N_BITS, DEFAULT_ROUNDING_BITS};

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
