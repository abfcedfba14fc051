//! Tree ensembles for fhec: one schema for decision trees, random forests and gradient-boosted
//! trees ([`schema::Ensemble`]), their quantisation ([`quant::quantize`]: input quantisers,
//! thresholds on the quantised grid, integer leaves) and the `fhe` module that evaluates the
//! quantised ensemble on a thermometer encoding of the inputs with one low-precision lookup per
//! leaf ([`build::build_module`]). Design and costs: docs/trees.md.

pub mod build;
pub mod lightgbm;
pub mod quant;
pub mod schema;
pub mod xgboost;

pub use build::{build_module, BuildReport, LeafMode};
pub use quant::{quantize, quantize_with, Quantized, Quantizer, QuantizerKind};
pub use schema::{Aggregation, Cmp, Ensemble, FloatKind, Node, Post, Tree};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TreeError {
    /// The model file or ensemble is not acceptable.
    #[error("{0}")]
    Model(String),
    /// Bad options or calibration data.
    #[error("{0}")]
    Options(String),
    /// The module could not be built.
    #[error("{0}")]
    Build(String),
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
