//! `fhec`: the stable library facade of the fhec toolchain and the home of the `fhec` CLI.
//!
//! Embedders use this crate: [`ir`] (the `fhe` dialect: types, text format, verifier, clear interpreter)
//! and [`io`] (reading and writing integer tensors as `.npy` and JSON). Later stages (passes, lowering,
//! runtime) are re-exported here as they land.

pub use fhec_ir as ir;

pub mod io;
