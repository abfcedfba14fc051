//! `fhec`: the stable library facade of the fhec toolchain and the home of the `fhec` CLI.
//!
//! Embedders use this crate: [`ir`] (the `fhe` dialect: types, text format, verifier, clear interpreter),
//! [`backend`] (lowering to a TFHE program and parameter selection), [`passes`] (parameter search and,
//! later, the pass pipeline), [`runtime`] (keys, encryption, execution, file formats) and [`io`] (integer
//! tensors as `.npy` and JSON, atomic file writes).

pub use fhec_backend_tfhe as backend;
pub use fhec_ir as ir;
pub use fhec_passes as passes;
pub use fhec_runtime as runtime;
pub use fhec_trees as trees;

pub mod io;
