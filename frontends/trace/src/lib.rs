//! fhec-trace: a numpy-like tracing DSL that builds `fhe` modules.
//!
//! ```
//! use fhec_trace::Tracer;
//! use ndarray::arr2;
//! let t = Tracer::new();
//! let x = t.input("x", &[1, 3]);
//! let w = arr2(&[[2i64, -1], [1, 3], [0, 2]]).into_dyn();
//! let y = (x.matmul(&w) + 4).univariate(|v| v.clamp(0, 15)).round_bits(1);
//! let inputset: Vec<Vec<_>> = (0..8).map(|i| vec![arr2(&[[i, 7 - i, i % 3]]).into_dyn()]).collect();
//! let module = t.module(&[y.clone()], &inputset).unwrap();
//! assert!(fhec_ir::print_module(&module).contains("fhe.lut"));
//! // the module's clear interpreter computes what the traced program computes
//! let v = fhec_ir::verify(&module).unwrap();
//! let x0 = arr2(&[[5i64, 2, 1]]).into_dyn();
//! assert_eq!(fhec_ir::interp::eval(&v, &[x0.clone()]).unwrap(), t.eval(&[y], &[x0]).unwrap());
//! ```
//!
//! Tracing records a graph of operations on [`Traced`] values: each is an op of the `fhe` dialect
//! (evaluated by the op's own declared semantics, the one clear semantics of the house) or a user
//! function of one value. [`Tracer::module`] evaluates the graph on the input set to learn every
//! value's range and writes the `fhe` module with those widths (arguments carry the observed ranges as
//! `fhe.range`; a [`Traced::univariate`] function becomes a table over every value its input's type can
//! hold). The frontend stops there: the facade (`fhec::compile`) runs the passes, lowers, selects
//! parameters and returns a circuit. Inputs outside the input set's ranges are rejected (the widths
//! are promises), as with Concrete's input sets.

mod graph;
mod module;

pub use graph::{Traced, Tracer};

/// Errors of tracing: a message, with the op it concerns.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A misuse of the DSL (shapes, axes, operands from another tracer, a bad input set).
    #[error("{0}")]
    Trace(String),
    /// The traced program cannot be written as a module (widths, clear-only arithmetic, tables).
    #[error("{0}")]
    Compile(String),
}

pub(crate) fn err<T>(m: impl Into<String>) -> Result<T, TraceError> {
    Err(TraceError::Trace(m.into()))
}
