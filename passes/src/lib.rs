//! fhec passes: the pass manager and the passes on the `fhe` dialect.
//!
//! * [`manager`]: the [`manager::Pass`] trait, the registry, pipeline strings, verification, statistics.
//! * [`rewrite`]: rebuilding functions op by op.
//! * [`canonicalize`], [`bitwidth`]: the passes.
//!
//! See `docs/passes.md`.

pub mod bitwidth;
pub mod canonicalize;
pub mod lut_fusion;
pub mod manager;
pub mod range;
pub mod rewrite;
pub mod round_insertion;
