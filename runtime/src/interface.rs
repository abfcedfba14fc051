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
///
/// Interfaces written before partitions (model files of format 1) have only `params`; reading one
/// fills in the single partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "InterfaceRepr")]
pub struct ProgramInterface {
    pub name: String,
    /// Partition 0's parameters: its key encrypts the inputs.
    pub params: ParamSet,
    /// Every partition's parameters (`params` first).
    pub partitions: Vec<ParamSet>,
    /// Per partition: lookups per run.
    pub partition_lookups: Vec<u64>,
    /// Per partition: mask elements its keyswitch key must cover ([`Program::ksk_dims`]).
    pub ksk_dims: Vec<u32>,
    /// Dimension of the output ciphertexts ([`Program::output_dimension`]).
    pub output_dim: u32,
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
            params: self.partitions[0],
            partitions: self.partitions.clone(),
            partition_lookups: self.lookups_by_partition(),
            ksk_dims: self.ksk_dims(),
            output_dim: self.output_dimension() as u32,
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
        if let Some(p) = self.partitions.iter().chain([&self.params]).find(|p| !p.is_secure()) {
            return Err(RuntimeError::Params(format!(
                "the program interface names insecure parameters {p}"
            )));
        }
        if let Some(m) = crate::params::partitions_problem(&self.partitions) {
            return Err(RuntimeError::Params(format!("the program interface: {m}")));
        }
        let master = crate::params::master_dimension(&self.partitions);
        let n = self.partitions.len();
        if self.partitions[0] != self.params
            || self.partition_lookups.len() != n
            || self.ksk_dims.len() != n
            || self.partition_lookups.iter().sum::<u64>() != self.lookups
            || self.ksk_dims.iter().any(|&d| d as usize > master)
            || (self.output_dim as usize) < self.params.big_lwe_dimension()
            || self.output_dim as usize > master
        {
            return bad("its partitions do not add up".into());
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
            && self.partitions == other.partitions
            && self.partition_lookups == other.partition_lookups
            && self.ksk_dims == other.ksk_dims
            && self.output_dim == other.output_dim
            && self.inputs == other.inputs
            && self.outputs == other.outputs
            && self.lookups == other.lookups
            && self.name == other.name
    }
}

impl ProgramInterface {
    /// Every partition's parameters.
    pub fn partitions(&self) -> &[ParamSet] {
        &self.partitions
    }
    /// Per partition: lookups per run.
    pub fn partition_lookups(&self) -> &[u64] {
        &self.partition_lookups
    }
    /// Per partition: mask elements its keyswitch key must cover.
    pub fn ksk_dims(&self) -> &[u32] {
        &self.ksk_dims
    }
}

/// The serialised form, with the fields that interfaces of model-file format 1 lack optional.
#[derive(Deserialize)]
struct InterfaceRepr {
    name: String,
    params: ParamSet,
    #[serde(default)]
    partitions: Vec<ParamSet>,
    #[serde(default)]
    partition_lookups: Vec<u64>,
    #[serde(default)]
    ksk_dims: Vec<u32>,
    #[serde(default)]
    output_dim: u32,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
    fingerprint: u64,
    lookups: u64,
    noise: NoiseReport,
}

impl From<InterfaceRepr> for ProgramInterface {
    fn from(r: InterfaceRepr) -> ProgramInterface {
        let single = r.partitions.is_empty();
        let k = r.params.big_lwe_dimension() as u32;
        ProgramInterface {
            partitions: if single { vec![r.params] } else { r.partitions },
            partition_lookups: if single { vec![r.lookups] } else { r.partition_lookups },
            ksk_dims: if single {
                vec![if r.lookups > 0 { k } else { 0 }]
            } else {
                r.ksk_dims
            },
            output_dim: if single { k } else { r.output_dim },
            name: r.name,
            params: r.params,
            inputs: r.inputs,
            outputs: r.outputs,
            fingerprint: r.fingerprint,
            lookups: r.lookups,
            noise: r.noise,
        }
    }
}
