//! `fhec-ir`: the `fhe` dialect of fhec.
//!
//! - [`types`]: `!fhe.eint<w>`, `!fhe.esint<w>`, clear `iN`/`uiN`, ranked tensors.
//! - [`module`]: modules, functions, the op arena with typed ids, and a builder.
//! - [`ops`]: the op table; each op declared once with its rules, semantics, noise class and cost.
//! - [`text`]: the MLIR-generic text format (printer and parser).
//! - [`verify`]: the verifier and its [`Verified`] token.
//! - [`interp`]: the clear interpreter, the oracle of every test.
//! - [`diag`]: located, rendered diagnostics.
//!
//! This crate depends on nothing heavy (no tfhe, no egg): everything that reads or writes programs can
//! use it.

pub mod attr;
pub mod diag;
pub mod interp;
pub mod module;
pub mod ops;
pub mod text;
pub mod types;
pub mod verify;

pub use attr::{Attribute, Attrs, Dense};
pub use diag::{Diagnostic, Span};
pub use interp::eval;
pub use module::{Function, FunctionBuilder, Module, OpId, ValueId};
pub use ops::{Cost, CostModel, NoiseClass, OpKind, Tensor};
pub use text::{parse_module, print_module};
pub use types::{ElemType, Type};
pub use verify::{verify, Verified};

/// Parses and verifies `src`; the convenience entry point of tools.
pub fn parse_and_verify(src: &str) -> Result<Module, Vec<Diagnostic>> {
    let m = parse_module(src).map_err(|d| vec![d])?;
    verify(&m)?;
    Ok(m)
}
