//! The client's view of a program.
//!
//! A client encrypts inputs and decrypts outputs; for that it needs the parameters, the input and
//! output ports (names, shapes, widths, scales, accepted ranges), the program's fingerprint (which
//! every ciphertext carries) and whether the program has lookups (which decides the evaluation keys
//! it needs). It does not need the instructions or the tables — the model's weights — so a deployed
//! client receives a [`ProgramInterface`] and never the [`Program`].

use serde::{Deserialize, Serialize};

use crate::program::{NoiseReport, Port, Program};
use crate::{ParamSet, RuntimeError};

/// What encryption and decryption need of a program: no instruction, no table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramInterface {
    pub name: String,
    pub params: ParamSet,
    /// Inputs in order (each with its first slot or clear index, as in the program).
    pub inputs: Vec<Port>,
    /// Outputs in order; their slot lists are left out (the client never reads slots).
    pub outputs: Vec<Port>,
    /// [`Program::fingerprint`] of the program this interface was taken from.
    pub fingerprint: u64,
    /// Table lookups per run: with none, the program needs no evaluation keys.
    pub lookups: u64,
    /// The compiler's predictions (failure probabilities, lookups by precision, latency), for reports.
    pub noise: NoiseReport,
}

impl Program {
    /// The client's view of this program.
    pub fn interface(&self) -> ProgramInterface {
        ProgramInterface {
            name: self.name.clone(),
            params: self.params,
            inputs: self.inputs.clone(),
            outputs: self
                .outputs
                .iter()
                .map(|p| Port {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    width: p.width,
                    signed: p.signed,
                    scale: p.scale,
                    slots: Vec::new(),
                    clear: p.clear,
                    range: p.range,
                })
                .collect(),
            fingerprint: self.fingerprint(),
            lookups: self.pbs_count() as u64,
            noise: self.noise.clone(),
        }
    }
}

impl ProgramInterface {
    /// Checks what a client relies on (an interface read from a file may hold anything): secure
    /// parameters, input and output encodings the runtime can represent, ranges inside their types,
    /// element counts that do not overflow.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::Format(format!("invalid program interface: {m}")));
        if !self.params.is_secure() {
            return Err(RuntimeError::Params(format!(
                "the program interface names insecure parameters {}",
                self.params
            )));
        }
        for r in self
            .inputs
            .iter()
            .map(Port::check_input)
            .chain(self.outputs.iter().map(Port::check_output))
        {
            if let Err(m) = r {
                return bad(m);
            }
        }
        for p in self.inputs.iter().chain(&self.outputs) {
            if p.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).is_none() {
                return bad(format!("port `{}` has too many elements", p.name));
            }
        }
        Ok(())
    }

    /// Whether this interface is the one of `program`: the same fingerprint, parameters, ports and
    /// lookup count (the noise report is not compared: a program read from a file has it re-derived).
    pub fn matches(&self, program: &Program) -> bool {
        let other = program.interface();
        self.fingerprint == other.fingerprint
            && self.params == other.params
            && self.inputs == other.inputs
            && self.outputs == other.outputs
            && self.lookups == other.lookups
            && self.name == other.name
    }
}
