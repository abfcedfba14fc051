//! fhec passes: the pass manager and the passes on the `fhe` dialect, and TFHE parameter selection.
//!
//! * [`manager`]: the [`manager::Pass`] trait, the registry, pipeline strings, verification, statistics.
//! * [`rewrite`]: rebuilding functions op by op.
//! * [`canonicalize`], [`bitwidth`]: the passes.
//! * [`params`]: the noise model and the parameter search (used by the backend).
//!
//! See `docs/passes.md`.

pub mod bitwidth;
pub mod canonicalize;
pub mod lut_fusion;
pub mod manager;
pub mod params;
pub mod range;
pub mod rewrite;
pub mod round_insertion;
