//! Deployment files: a model as two files, one per side (`docs/deployment.md`).
//!
//! * [`ServerModel`] (`NAME.server.fhec`, file kind 5): the [`Program`] a server runs and what the
//!   model is ([`ModelInfo`]). No secret; no float weight beyond what the program's tables hold.
//! * [`ClientModel`] (`NAME.client.fhec`, file kind 6): the [`ClientSpec`] (quantisers, encodings,
//!   dequantisation, post-processing, class labels) and the program's [`ProgramInterface`]
//!   (parameters, ports, fingerprint). A client quantises, encrypts, decrypts and post-processes with
//!   it alone: it never receives the instructions or the tables.
//!
//! Both payloads carry their own version ([`runtime::io::MODEL_FORMAT_VERSION`]); a later fhec keeps
//! a reader for every earlier version, and the tests read committed fixtures of each
//! (`tests/fixtures/deploy/v1/`, `v2/`). Version 2 (partitions) keeps version 1's layout: the
//! interface gains per-partition fields (absent ones read as one partition) and the embedded program
//! file its own format (5 and later: format 6 changed only ciphertexts; format-4 programs still read).

use bincode::Options as _;
use serde::{Deserialize, Serialize};

use fhec_quant::{ClientSpec, InputSpec};
use fhec_runtime::io::{self as rio, FileKind};
use fhec_runtime::{ClearTensor, Program, ProgramInterface};

use crate::error::{Error, ErrorKind};

/// Largest client file read (a spec and an interface: kilobytes; quantile quantisers of many features
/// reach megabytes).
pub const MAX_CLIENT_FILE_BYTES: usize = 256 << 20;

/// What a deployed model is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model's name (file names, `fhec serve`'s URLs): letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// What kind of model: the estimator's class (`LogisticRegression`, `XGBClassifier`), `circuit`
    /// for a traced function, `program` for a compiled `.fhe` module.
    pub kind: String,
    /// The fhec version that wrote the files.
    pub fhec_version: String,
}

impl ModelInfo {
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Result<ModelInfo, Error> {
        let info = ModelInfo {
            name: name.into(),
            kind: kind.into(),
            fhec_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        info.validate()?;
        Ok(info)
    }

    fn validate(&self) -> Result<(), Error> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 128
            && !self.name.starts_with('.')
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(Error::new(
                ErrorKind::Format,
                format!(
                    "model name `{}`: use 1 to 128 letters, digits, `-`, `_` or `.` (not first)",
                    self.name.escape_debug()
                ),
            ));
        }
        if self.kind.len() > 128 || self.fhec_version.len() > 64 {
            return Err(Error::new(ErrorKind::Format, "model info: kind or version too long"));
        }
        Ok(())
    }
}

/// A model's server file: what a server runs.
#[derive(Clone, Debug)]
pub struct ServerModel {
    pub info: ModelInfo,
    pub program: Program,
}

#[derive(Serialize, Deserialize)]
struct ServerModelV1 {
    info: ModelInfo,
    /// A program file (its own header and version).
    program: Vec<u8>,
}

impl ServerModel {
    pub fn new(info: ModelInfo, program: Program) -> ServerModel {
        ServerModel { info, program }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let payload = ServerModelV1 {
            info: self.info.clone(),
            program: rio::program_to_bytes(&self.program)?,
        };
        let bytes = bincode_options(u64::MAX)
            .serialize(&payload)
            .map_err(|e| Error::new(ErrorKind::Format, format!("cannot serialise a server file: {e}")))?;
        Ok(rio::frame(FileKind::ServerModel, &bytes))
    }

    /// Reads a server file: header, version, the program's own checks, its failure probabilities
    /// re-derived ([`crate::program_from_bytes`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<ServerModel, Error> {
        let (version, payload) = rio::unframe(FileKind::ServerModel, bytes)?;
        // 2: programs of several partitions (the payload's layout is 1's; the embedded program file
        // and the interface carry the difference, and read both forms)
        let v1: ServerModelV1 = match version {
            1 | 2 => bincode_options(payload.len() as u64)
                .deserialize(payload)
                .map_err(|e| Error::new(ErrorKind::Format, format!("damaged server file: {e}")))?,
            v => unreachable_version(v)?,
        };
        v1.info.validate()?;
        let program = crate::program_from_bytes(&v1.program)?;
        Ok(ServerModel { info: v1.info, program })
    }

    /// The client file that goes with this server file.
    pub fn client_model(&self, spec: ClientSpec) -> Result<ClientModel, Error> {
        ClientModel::new(self.info.clone(), spec, self.program.interface())
    }
}

/// A model's client file: what a client needs (no instruction, no table, no key).
#[derive(Clone, Debug, PartialEq)]
pub struct ClientModel {
    pub info: ModelInfo,
    pub spec: ClientSpec,
    pub interface: ProgramInterface,
}

#[derive(Serialize, Deserialize)]
struct ClientModelV1 {
    info: ModelInfo,
    spec: ClientSpec,
    interface: ProgramInterface,
}

fn bincode_options(limit: u64) -> impl bincode::Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(limit)
        .reject_trailing_bytes()
}

fn unreachable_version<T>(v: u16) -> Result<T, Error> {
    // `unframe` accepts only the versions this fhec reads; each has a branch above
    Err(Error::new(
        ErrorKind::Format,
        format!("no reader for payload version {v}"),
    ))
}

impl ClientModel {
    /// A client model; the spec must describe each input and output of the interface.
    pub fn new(info: ModelInfo, spec: ClientSpec, interface: ProgramInterface) -> Result<ClientModel, Error> {
        let m = ClientModel { info, spec, interface };
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), Error> {
        self.info.validate()?;
        self.spec.validate()?;
        self.interface.validate()?;
        let bad = |m: String| Err(Error::new(ErrorKind::Format, format!("client file: {m}")));
        if self.spec.inputs.len() != self.interface.inputs.len() {
            return bad(format!(
                "the spec describes {} inputs, the program takes {}",
                self.spec.inputs.len(),
                self.interface.inputs.len()
            ));
        }
        if !self.spec.outputs.is_empty() && self.spec.outputs.len() != self.interface.outputs.len() {
            return bad(format!(
                "the spec describes {} outputs, the program gives {}",
                self.spec.outputs.len(),
                self.interface.outputs.len()
            ));
        }
        for (o, (d, port)) in self.spec.outputs.iter().zip(&self.interface.outputs).enumerate() {
            if let Some(d) = d.as_ref().filter(|d| d.parts > 1) {
                if port.len() != d.scale.len() * d.parts as usize {
                    return bad(format!(
                        "output {o} has {} values, the spec adds {} parts of {}",
                        port.len(),
                        d.parts,
                        d.scale.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The file: JSON (readable with any tool) after the fhec header. Non-finite figures of the noise
    /// report (a program without lookups has none to report) are written as the most negative
    /// finite value, since JSON has no infinity.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut interface = self.interface.clone();
        for v in [
            &mut interface.noise.log2_p_error_worst_lookup,
            &mut interface.noise.log2_p_error_global,
            &mut interface.noise.estimated_seconds,
        ] {
            if !v.is_finite() {
                *v = if *v > 0.0 { f64::MAX } else { f64::MIN };
            }
        }
        let payload = ClientModelV1 {
            info: self.info.clone(),
            spec: self.spec.clone(),
            interface,
        };
        let json = serde_json::to_vec(&payload)
            .map_err(|e| Error::new(ErrorKind::Format, format!("cannot serialise a client file: {e}")))?;
        Ok(rio::frame(FileKind::ClientModel, &json))
    }

    /// Reads a client file: header, version, size, then the spec's and the interface's own checks
    /// (secure parameters included) and their agreement.
    pub fn from_bytes(bytes: &[u8]) -> Result<ClientModel, Error> {
        if bytes.len() > MAX_CLIENT_FILE_BYTES {
            return Err(Error::new(
                ErrorKind::Format,
                format!(
                    "a client file of {} bytes (at most {MAX_CLIENT_FILE_BYTES})",
                    bytes.len()
                ),
            ));
        }
        let (version, payload) = rio::unframe(FileKind::ClientModel, bytes)?;
        let v1: ClientModelV1 = match version {
            1 | 2 => serde_json::from_slice(payload)
                .map_err(|e| Error::new(ErrorKind::Format, format!("damaged client file: {e}")))?,
            v => unreachable_version(v)?,
        };
        ClientModel::new(v1.info, v1.spec, v1.interface)
    }

    /// Whether this client file goes with `server` (the same program).
    pub fn matches(&self, server: &ServerModel) -> bool {
        self.interface.matches(&server.program)
    }

    /// Rows of float features (row-major `rows × features`) as samples for encryption: quantised and
    /// encoded by the spec, one sample per row, shaped as the program's (only) input. Returns the
    /// samples and how many values were clipped to the calibrated range.
    pub fn encode_rows(&self, features: &[f64], rows: usize) -> Result<(Vec<Vec<ClearTensor>>, usize), Error> {
        let n_features = match self.spec.inputs.as_slice() {
            [InputSpec::Features { quantizer, .. }] if self.interface.inputs.len() == 1 => quantizer.n_features(),
            _ => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "this model does not take rows of float features: give its integer inputs",
                ))
            }
        };
        if rows == 0 || features.len() != rows.saturating_mul(n_features) {
            return Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "X has {} values in {rows} rows; the model takes rows of {n_features} features",
                    features.len()
                ),
            ));
        }
        let (width, values, clipped) = self.spec.encode(0, features)?;
        let port = &self.interface.inputs[0];
        if port.len() != width || values.len() != rows * width {
            return Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "the spec encodes a row as {width} values, the program's input `{}` takes {:?}",
                    port.name, port.shape
                ),
            ));
        }
        let samples = values
            .chunks(width.max(1))
            .map(|row| ClearTensor::new(port.shape.clone(), row.to_vec()).map(|t| vec![t]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((samples, clipped))
    }

    /// Decrypted samples (one output tensor each) as the model's values: output 0 dequantised, then
    /// post-processed (predictions for regressions, class probabilities or decision values for
    /// classifiers), row-major `rows × columns`; returns the values and the column count.
    pub fn decode_rows(&self, outputs: &[Vec<ClearTensor>]) -> Result<(Vec<f64>, usize), Error> {
        let (ints, c) = self.output_ints(outputs)?;
        let values = self.spec.dequantize(0, &ints);
        let post = self.spec.post_process(&values, c);
        let cols = if outputs.is_empty() {
            c
        } else {
            post.len() / outputs.len()
        };
        Ok((post, cols))
    }

    /// The predicted class index of each decrypted sample (classifiers).
    pub fn class_indices(&self, outputs: &[Vec<ClearTensor>]) -> Result<Vec<usize>, Error> {
        let (ints, c) = self.output_ints(outputs)?;
        let values = self.spec.dequantize(0, &ints);
        Ok(self.spec.class_index(&values, c))
    }

    /// The decrypted integers of the model's (only) output for every sample, concatenated
    /// (row-major), and its element count per sample; when the program returns the output in parts
    /// ([`fhec_quant::Dequant::parts`]), the values they add up to.
    pub fn output_ints(&self, outputs: &[Vec<ClearTensor>]) -> Result<(Vec<i64>, usize), Error> {
        if self.interface.outputs.len() != 1 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "this model has several outputs: read the decrypted tensors (decrypt with its Client)",
            ));
        }
        let c = self.interface.outputs[0].len();
        let mut ints = Vec::with_capacity(outputs.len() * c);
        for s in outputs {
            match s.first() {
                Some(t) if s.len() == 1 && t.values.len() == c => ints.extend_from_slice(&t.values),
                _ => {
                    return Err(Error::new(
                        ErrorKind::Shape,
                        "decrypted samples do not match the model's output",
                    ))
                }
            }
        }
        // an output in parts: each value's partial sums added
        Ok(self.spec.output_values(0, &ints, c)?)
    }
}

/// The client's view of a program from a program file (kind 1) or a model's client file (kind 6).
pub fn interface_from_bytes(bytes: &[u8]) -> Result<ProgramInterface, Error> {
    match rio::file_kind(bytes) {
        Some(FileKind::ClientModel) => Ok(ClientModel::from_bytes(bytes)?.interface),
        Some(FileKind::ServerModel) => Ok(ServerModel::from_bytes(bytes)?.program.interface()),
        _ => Ok(crate::program_from_bytes(bytes)?.interface()),
    }
}

/// The program of a program file (kind 1) or a model's server file (kind 5).
pub fn server_program_from_bytes(bytes: &[u8]) -> Result<Program, Error> {
    match rio::file_kind(bytes) {
        Some(FileKind::ServerModel) => Ok(ServerModel::from_bytes(bytes)?.program),
        Some(FileKind::ClientModel) => Err(Error::new(
            ErrorKind::Format,
            "this is a model's client file, which holds no program: give the server file (NAME.server.fhec)",
        )),
        _ => crate::program_from_bytes(bytes),
    }
}
