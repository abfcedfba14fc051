//! `fhec`: the facade of the fhec toolchain and the home of the `fhec` CLI.
//!
//! * [`compile`]: the one compile pipeline (verify → passes → verify → lowering → parameter search);
//!   every frontend's module goes through it. [`compile_traced`] for the tracing DSL.
//! * [`Circuit`], [`Client`], [`Server`]: what compilation gives, and the two roles — a client holds
//!   secret keys (keygen, encrypt, decrypt, evaluation keys as bytes), a server is built from a
//!   program and evaluation keys and can only run.
//! * [`model`]: deployment files — a model's [`ServerModel`] (the program) and [`ClientModel`]
//!   (client spec and program interface, no instruction or table).
//! * `serve` (feature `serve`, on by default): `fhec serve`, the HTTP service over server files.
//! * [`Error`]: one error type with a matchable [`ErrorKind`].
//!
//! The crates behind it are re-exported for embedders: [`ir`] (the `fhe` dialect: types, text
//! format, verifier, clear interpreter), [`quant`] (quantisers, quantised linear models), [`trace`] and
//! [`trees`] (frontends: they build modules),
//! [`passes`], [`backend`] (lowering, parameter search), [`runtime`] (keys, encryption, execution,
//! file formats) and [`io`] (integer tensors as `.npy` and JSON, atomic file writes).

pub use fhec_backend_tfhe as backend;
pub use fhec_ir as ir;
pub use fhec_onnx as onnx;
pub use fhec_passes as passes;
pub use fhec_quant as quant;
pub use fhec_runtime as runtime;
pub use fhec_trace as trace;
pub use fhec_trees as trees;

mod circuit;
mod compile;
mod error;
pub mod io;
pub mod model;
#[cfg(feature = "serve")]
pub mod serve;

pub use backend::params::PError;
pub use circuit::{from_clear, to_clear, Circuit, Client, Server};
pub use compile::{compile, compile_traced, compile_trees, integer_spec, CompileOptions};
pub use error::{Error, ErrorKind};
pub use fhec_quant::ClientSpec;
pub use model::{ClientModel, ModelInfo, ServerModel};

/// Reads a program file: the format checks and validation of [`runtime::io::program_from_bytes`],
/// then the failure probabilities re-derived from the program's own instructions and parameters
/// ([`backend::rederive`]): what a file states about its noise is not trusted.
pub fn program_from_bytes(bytes: &[u8]) -> Result<runtime::Program, Error> {
    let mut p = runtime::io::program_from_bytes(bytes)?;
    backend::rederive::rederive(&mut p);
    Ok(p)
}
