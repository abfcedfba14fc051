//! File formats: programs, keys and ciphertexts.
//!
//! Every file starts with a 7-byte header — `FHEC`, a kind byte, the format version (u16, little
//! endian) — followed by the payload:
//!
//! * programs: bincode of [`Program`] (our own serde types);
//! * deployment files (a model's server file and client file, written by the facade crate): a
//!   payload of their own with its own version, [`MODEL_FORMAT_VERSION`], framed by [`frame`];
//! * keys and ciphertexts: tfhe-rs's safe serialisation (`tfhe::safe_serialization`), which adds its
//!   own header (type name, serialisation version) and versions every tfhe entity through
//!   `tfhe-versionable`, so files survive tfhe upgrades that keep backward compatibility.
//!
//! Loading checks the magic, the kind ("this is a key file, not a program"), the version, a size
//! limit (the payload may not claim more memory than the file holds), trailing bytes, and then the
//! content's own invariants (program validation; keys and ciphertexts against their parameters,
//! security included). A damaged file is an error, never a panic.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};
use tfhe::named::Named;
use tfhe::safe_serialization::{safe_deserialize, safe_serialize};
use tfhe::{Unversionize, Versionize};

use crate::keys::{ClientKeys, ClientKeysFile, EvaluationKeys};
use crate::program::Program;
use crate::values::Ciphertexts;
use crate::RuntimeError;

const MAGIC: &[u8; 4] = b"FHEC";
/// Version of the payload layout; bump on any change of the serialised types.
pub const FORMAT_VERSION: u16 = 10;
/// Version of the deployment files' payloads (server and client model files). These files must stay
/// readable by later fhec versions: a change of their payload bumps this and keeps a reader for each
/// earlier version (fixtures of every version are read by the tests).
pub const MODEL_FORMAT_VERSION: u16 = 2;
const HEADER: usize = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Program = 1,
    ClientKeys = 2,
    EvaluationKeys = 3,
    Ciphertexts = 4,
    /// A model's server file: the program and what the model is (no secret).
    ServerModel = 5,
    /// A model's client file: the program's interface and the client spec (no instruction, no table).
    ClientModel = 6,
}

impl FileKind {
    fn name(self) -> &'static str {
        match self {
            FileKind::Program => "a compiled program",
            FileKind::ClientKeys => "secret (client) keys",
            FileKind::EvaluationKeys => "evaluation keys",
            FileKind::Ciphertexts => "ciphertexts",
            FileKind::ServerModel => "a model's server file",
            FileKind::ClientModel => "a model's client file",
        }
    }
    /// The payload versions this fhec reads for this kind.
    fn versions(self) -> std::ops::RangeInclusive<u16> {
        match self {
            FileKind::ServerModel | FileKind::ClientModel => 1..=MODEL_FORMAT_VERSION,
            // 4: before partitions (programs are converted, keys upgraded by their versioning);
            // 5: before masks from ChaCha20 (ciphertexts of `CtData::Packed`, still read);
            // 6: before KS32 (programs read with the old parameter layout, keys upgraded);
            // 7: before many-LUT lanes (`Instr::Lane` appended: programs read unchanged);
            // 8: before rounded bootstrap keys (a parameter set's `bsk_rounding_log2`: programs
            //    read with the old parameter layout, keys upgraded by their versioning);
            // 9: before bootstrap-key masks from ChaCha20 (keys upgraded by their versioning:
            //    their masks stay tfhe-rs's, regenerated from its seed)
            _ => 4..=FORMAT_VERSION,
        }
    }
    fn from_byte(b: u8) -> Option<FileKind> {
        [
            FileKind::Program,
            FileKind::ClientKeys,
            FileKind::EvaluationKeys,
            FileKind::Ciphertexts,
            FileKind::ServerModel,
            FileKind::ClientModel,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }
}

fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(limit)
        .reject_trailing_bytes()
}

pub(crate) fn to_bytes<T: Serialize>(kind: FileKind, value: &T) -> Result<Vec<u8>, RuntimeError> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    options(u64::MAX)
        .serialize_into(&mut out, value)
        .map_err(|e| RuntimeError::Format(format!("cannot serialise {}: {e}", kind.name())))?;
    Ok(out)
}

/// What kind of fhec file `bytes` holds, if any.
pub fn file_kind(bytes: &[u8]) -> Option<FileKind> {
    if bytes.len() >= HEADER && &bytes[..4] == MAGIC {
        FileKind::from_byte(bytes[4])
    } else {
        None
    }
}

/// A file whose payload is tfhe's safe serialisation of `value`.
fn to_bytes_safe<T: Serialize + Versionize + Named>(kind: FileKind, value: &T) -> Result<Vec<u8>, RuntimeError> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    safe_serialize(value, &mut out, 1 << 42)
        .map_err(|e| RuntimeError::Format(format!("cannot serialise {}: {e}", kind.name())))?;
    Ok(out)
}

fn from_bytes_safe<T: DeserializeOwned + Unversionize + Named>(
    kind: FileKind,
    bytes: &[u8],
) -> Result<T, RuntimeError> {
    let payload = check_header(kind, bytes)?;
    let mut reader = payload;
    let value = safe_deserialize(&mut reader, payload.len() as u64)
        .map_err(|e| RuntimeError::Format(format!("damaged file ({}): {e}", kind.name())))?;
    if !reader.is_empty() {
        return Err(RuntimeError::Format(format!(
            "damaged file ({}): trailing bytes",
            kind.name()
        )));
    }
    Ok(value)
}

/// A file of `kind` around `payload`, at the newest version of that kind (for the deployment files,
/// whose payloads the facade crate serialises).
pub fn frame(kind: FileKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&kind.versions().end().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a file of `kind` and its version (one this fhec reads), after the header checks.
pub fn unframe(kind: FileKind, bytes: &[u8]) -> Result<(u16, &[u8]), RuntimeError> {
    let payload = check_header(kind, bytes)?;
    Ok((u16::from_le_bytes([bytes[5], bytes[6]]), payload))
}

fn check_header(kind: FileKind, bytes: &[u8]) -> Result<&[u8], RuntimeError> {
    let err = |m: String| RuntimeError::Format(m);
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err(err(format!("not an fhec file (expected {})", kind.name())));
    }
    match FileKind::from_byte(bytes[4]) {
        Some(k) if k == kind => {}
        Some(k) => return Err(err(format!("this file holds {}, expected {}", k.name(), kind.name()))),
        None => return Err(err(format!("unknown fhec file kind {}", bytes[4]))),
    }
    let version = u16::from_le_bytes([bytes[5], bytes[6]]);
    let versions = kind.versions();
    if !versions.contains(&version) {
        let reads = if versions.start() == versions.end() {
            format!("version {}", versions.start())
        } else {
            format!("versions {} to {}", versions.start(), versions.end())
        };
        let what = if version > *versions.end() {
            "it was written by a newer fhec; upgrade fhec"
        } else {
            "regenerate the file"
        };
        return Err(err(format!(
            "file format version {version} ({}), this fhec reads {reads}; {what}",
            kind.name()
        )));
    }
    Ok(&bytes[HEADER..])
}

fn from_bytes<T: DeserializeOwned>(kind: FileKind, bytes: &[u8]) -> Result<T, RuntimeError> {
    let err = |m: String| RuntimeError::Format(m);
    let payload = check_header(kind, bytes)?;
    options(payload.len() as u64)
        .deserialize(payload)
        .map_err(|e| err(format!("damaged file ({}): {e}", kind.name())))
}

pub fn program_to_bytes(p: &Program) -> Result<Vec<u8>, RuntimeError> {
    to_bytes(FileKind::Program, p)
}

pub fn program_from_bytes(bytes: &[u8]) -> Result<Program, RuntimeError> {
    let p: Program = match unframe(FileKind::Program, bytes)?.0 {
        4 => from_bytes::<crate::program::v4::Program>(FileKind::Program, bytes)?.into(),
        5 | 6 => from_bytes::<crate::program::legacy::V6>(FileKind::Program, bytes)?.into(),
        7 | 8 => from_bytes::<crate::program::legacy::V8>(FileKind::Program, bytes)?.into(),
        _ => from_bytes(FileKind::Program, bytes)?,
    };
    p.validate()?;
    Ok(p)
}

/// Serialises the secret keys. The bytes must stay on the client.
pub fn client_keys_to_bytes(k: &ClientKeys) -> Result<Vec<u8>, RuntimeError> {
    let mut file = ClientKeysFile::of(k);
    let bytes = to_bytes_safe(FileKind::ClientKeys, &file);
    file.wipe();
    bytes
}

pub fn client_keys_from_bytes(bytes: &[u8]) -> Result<ClientKeys, RuntimeError> {
    let k: ClientKeys = from_bytes_safe::<ClientKeysFile>(FileKind::ClientKeys, bytes)?.into_keys();
    if let Some(p) = k.partitions.iter().find(|p| !p.is_secure()) {
        return Err(RuntimeError::Params(format!("secret keys for insecure parameters {p}")));
    }
    if let Some(m) = crate::params::partitions_problem(&k.partitions) {
        return Err(RuntimeError::Params(format!("secret keys: {m}")));
    }
    if k.master.as_ref().len() != crate::params::master_dimension(&k.partitions)
        || k.smalls.len() != k.partitions.len()
        || k.smalls
            .iter()
            .zip(&k.partitions)
            .any(|(s, p)| s.as_ref().len() != p.lwe_dimension())
    {
        return Err(RuntimeError::Mismatch(
            "secret keys do not match their parameters (damaged file?)".into(),
        ));
    }
    Ok(k)
}

pub fn evaluation_keys_to_bytes(k: &EvaluationKeys) -> Result<Vec<u8>, RuntimeError> {
    to_bytes_safe(FileKind::EvaluationKeys, k)
}

pub fn evaluation_keys_from_bytes(bytes: &[u8]) -> Result<EvaluationKeys, RuntimeError> {
    let k: EvaluationKeys = from_bytes_safe(FileKind::EvaluationKeys, bytes)?;
    k.check()?;
    Ok(k)
}

pub fn ciphertexts_to_bytes(c: &Ciphertexts) -> Result<Vec<u8>, RuntimeError> {
    to_bytes_safe(FileKind::Ciphertexts, c)
}

/// Loads ciphertexts; check them against their program with [`Ciphertexts::check`].
pub fn ciphertexts_from_bytes(bytes: &[u8]) -> Result<Ciphertexts, RuntimeError> {
    from_bytes_safe(FileKind::Ciphertexts, bytes)
}
