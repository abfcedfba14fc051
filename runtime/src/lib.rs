//! fhec runtime: TFHE programs, keys, encryption and execution on `tfhe::core_crypto`.
//!
//! * [`program`]: the lowered [`Program`] a server runs (and its keyless simulation).
//! * [`params`]: [`ParamSet`], secure by construction.
//! * [`keys`]: [`ClientKeys`] (secret, client only), [`EvaluationKeys`] (compressed, sent to the
//!   server), [`ServerKeys`] (expanded, server only).
//! * [`interface`]: [`ProgramInterface`], the client's view of a program (no instruction, no table).
//! * [`client`]: encryption and decryption; [`exec`]: the parallel executor.
//! * [`io`]: versioned file formats.
//!
//! See `docs/runtime.md` and `docs/crypto.md`.

#[doc(hidden)]
pub mod bench_support;
mod bskgen;
pub mod client;
pub mod exec;
pub mod interface;
pub mod io;
pub mod keys;
mod kskgen;
pub mod packed;
pub mod params;
pub mod program;
pub mod progress;
pub mod values;

pub use interface::ProgramInterface;
pub use keys::{ClientKeys, EvaluationKeys, ServerKeys};
pub use params::{ParamSet, RawParamSet};
pub use program::{Instr, Limits, NoiseReport, Origin, Port, Program, Table};
pub use progress::Progress;
pub use tfhe;
pub use values::{Ciphertexts, ClearTensor, Direction};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("parameters: {0}")]
    Params(String),
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    Mismatch(String),
    /// Ciphertexts, evaluation keys or secret keys from different keygens.
    #[error("{0}")]
    KeyMismatch(String),
    /// Inputs of the wrong shape or number.
    #[error("{0}")]
    Shape(String),
    /// An input value outside the range its port accepts.
    #[error("{0}")]
    Range(String),
    /// A program or batch above the server's resource limits ([`Limits`]).
    #[error("{0}")]
    Limit(String),
    #[error("cancelled")]
    Cancelled,
}

#[cfg(test)]
mod tests;
