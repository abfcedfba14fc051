//! Tensors of values and of ciphertexts, as they travel between client and server.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tfhe::core_crypto::prelude::*;
use tfhe_versionable::{Versionize, VersionsDispatch};

use crate::interface::ProgramInterface;
use crate::program::{encode, Port};
use crate::RuntimeError;

/// A clear integer tensor (row-major).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClearTensor {
    pub shape: Vec<usize>,
    pub values: Vec<i64>,
}

impl ClearTensor {
    pub fn new(shape: Vec<usize>, values: Vec<i64>) -> Result<ClearTensor, RuntimeError> {
        if shape.iter().product::<usize>() != values.len() {
            return Err(RuntimeError::Shape(format!(
                "{} values do not fill shape {:?}",
                values.len(),
                shape
            )));
        }
        Ok(ClearTensor { shape, values })
    }
}

/// The ciphertexts of one port for a batch of samples.
#[derive(Serialize, Deserialize, Versionize)]
#[versionize(CtDataVersions)]
pub enum CtData {
    /// Client → server: seeded (the mask is regenerated from a seed on the server).
    Seeded(SeededLweCiphertextListOwned<u64>),
    /// Server → client.
    Full(LweCiphertextListOwned<u64>),
    /// Client → server, packed: per sample, one seeded GLWE list whose polynomial coefficients
    /// hold the tensor's elements in order (N per GLWE, the last one zero-padded). One GLWE mask of
    /// k·N elements carries up to N values, where seeded LWE needs a mask per value: encryption and
    /// the server's mask regeneration are up to N× cheaper. The server extracts coefficient `j` as
    /// the LWE ciphertext of element `j` under the big key; its noise is that of a fresh LWE
    /// encryption under the same key and bound.
    Packed(Vec<SeededGlweCiphertextListOwned<u64>>),
    /// Client → server, a clear input port: the values of every sample, sample-major.
    Clear(Vec<i64>),
    /// Client → server, packed as [`CtData::Packed`] but with the masks expanded from a 256-bit
    /// public seed by ChaCha20 ([`XofGlweList`]): the same ciphertexts, 5–10× cheaper to mask on
    /// both sides than tfhe-rs's byte-wise generator (a single row of a linear model is mostly
    /// mask generation). What the client sends since file format 6; [`CtData::Packed`] is still read.
    PackedXof(Vec<XofGlweList>),
}

/// One sample's GLWE ciphertexts of one port, packed (N values per GLWE), whose masks are the
/// ChaCha20 keystream of `seed` (RFC 8439 block function, nonce 0, counter from 0) read as
/// little-endian `u64`s: GLWE `g`'s mask is words `g·k·N .. (g+1)·k·N`, its `k` polynomials in
/// order. The mask is public and uniform. Only the bodies of the coefficients that carry values
/// are sent (one per element; the padding of the last GLWE is not): the server extracts
/// coefficient `t` with the whole mask and body `t` alone. Each body holds the message and the
/// secret noise (tfhe-rs's generator, seeded from the operating system).
#[derive(Clone, Serialize, Deserialize, Versionize)]
#[versionize(XofGlweListVersions)]
pub struct XofGlweList {
    pub(crate) seed: [u8; 32],
    pub(crate) glwe_dimension: u64,
    pub(crate) polynomial_size: u64,
    /// The bodies of the used coefficients, in order (N per GLWE ciphertext but the last).
    pub(crate) bodies: Vec<u64>,
}

#[derive(VersionsDispatch)]
pub enum XofGlweListVersions {
    V0(XofGlweList),
}

/// Fills `out` with the mask words of `seed` (see [`XofGlweList`]).
pub(crate) fn xof_mask(seed: [u8; 32], out: &mut [u64]) {
    xof_mask_at(seed, 0, out);
}

/// Fills `out` with the mask words of `seed` from word `start` on (64-bit words: the keystream
/// from its 32-bit word `2·start`).
pub(crate) fn xof_mask_at(seed: [u8; 32], start: u128, out: &mut [u64]) {
    use chacha20::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};
    let mut rng = ChaCha20Rng::from_seed(seed);
    rng.set_word_pos(2 * start);
    let mut bytes = [0u8; 512];
    for chunk in out.chunks_mut(64) {
        let b = &mut bytes[..chunk.len() * 8];
        rng.fill_bytes(b);
        for (w, c) in chunk.iter_mut().zip(b.chunks_exact(8)) {
            *w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        }
    }
}

impl XofGlweList {
    /// The GLWE ciphertexts, masks regenerated, unsent bodies zero: `(k + 1)·N` words per
    /// ciphertext.
    pub(crate) fn expand(&self) -> GlweCiphertextListOwned<u64> {
        let (k, big_n) = (self.glwe_dimension as usize, self.polynomial_size as usize);
        let count = self.bodies.len().div_ceil(big_n.max(1));
        let mut mask = vec![0u64; count * k * big_n];
        xof_mask(self.seed, &mut mask);
        let mut data = vec![0u64; count * (k + 1) * big_n];
        for ((ct, m), b) in data
            .chunks_exact_mut((k + 1) * big_n)
            .zip(mask.chunks_exact(k * big_n))
            .zip(self.bodies.chunks(big_n))
        {
            ct[..k * big_n].copy_from_slice(m);
            ct[k * big_n..k * big_n + b.len()].copy_from_slice(b);
        }
        GlweCiphertextList::from_container(data, GlweSize(k + 1), PolynomialSize(big_n), crate::keys::modulus())
    }
}

impl CtData {
    /// Ciphertexts of one port as an LWE list, sample-major (`n` elements per sample).
    pub(crate) fn into_lwe_list(self, n: usize) -> LweCiphertextListOwned<u64> {
        match self {
            CtData::Seeded(s) => s.par_decompress_into_lwe_ciphertext_list(),
            CtData::Full(f) => f,
            CtData::Clear(_) => unreachable!("clear ports are not ciphertexts"),
            CtData::PackedXof(lists) => {
                let Some(first) = lists.first() else {
                    return LweCiphertextList::new(0u64, LweSize(1), LweCiphertextCount(0), crate::keys::modulus());
                };
                let l = (first.glwe_dimension * first.polynomial_size) as usize + 1;
                let mut data = vec![0u64; lists.len() * n * l];
                data.par_chunks_mut((n * l).max(1))
                    .zip(lists.par_iter())
                    .for_each(|(out, list)| unpack_glwes_into(&list.expand(), n, out, None));
                LweCiphertextList::from_container(data, LweSize(l), crate::keys::modulus())
            }
            CtData::Packed(lists) => {
                let Some(first) = lists.first() else {
                    return LweCiphertextList::new(0u64, LweSize(1), LweCiphertextCount(0), crate::keys::modulus());
                };
                let l = first
                    .glwe_size()
                    .to_glwe_dimension()
                    .to_equivalent_lwe_dimension(first.polynomial_size())
                    .0
                    + 1;
                let mut data = vec![0u64; lists.len() * n * l];
                data.par_chunks_mut((n * l).max(1))
                    .zip(lists.par_iter())
                    .for_each(|(out, list)| unpack_into(list, n, out));
                LweCiphertextList::from_container(data, LweSize(l), crate::keys::modulus())
            }
        }
    }
}

/// Decompresses one sample's packed GLWE list and extracts its first `n` coefficients as LWE
/// ciphertexts into `out` (`n` × LWE size words).
pub(crate) fn unpack_into(list: &SeededGlweCiphertextListOwned<u64>, n: usize, out: &mut [u64]) {
    unpack_used_into(list, n, out, None)
}

/// [`unpack_into`] for the elements `used` marks only (all when `None`); the others are left as
/// they are. A program that reads a few of many inputs (a tree ensemble's thermometer bits) skips
/// the rest.
pub(crate) fn unpack_used_into(
    list: &SeededGlweCiphertextListOwned<u64>,
    n: usize,
    out: &mut [u64],
    used: Option<&[bool]>,
) {
    unpack_glwes_into(&list.clone().decompress_into_glwe_ciphertext_list(), n, out, used)
}

/// Extracts the first `n` coefficients of packed GLWE ciphertexts (those `used` marks, all when
/// `None`) as LWE ciphertexts into `out` (`n` × LWE size words, padded to it).
pub(crate) fn unpack_glwes_into(
    glwes: &GlweCiphertextListOwned<u64>,
    n: usize,
    out: &mut [u64],
    used: Option<&[bool]>,
) {
    let big_n = glwes.polynomial_size().0;
    let dim = glwes.glwe_size().to_glwe_dimension().0 * big_n;
    let l = out.len() / n.max(1);
    for (j, ct) in out.chunks_exact_mut(l).enumerate().take(n) {
        if used.is_some_and(|u| !u[j]) {
            continue;
        }
        let glwe = glwes.get(j / big_n);
        let mut lwe = LweCiphertext::from_container(&mut ct[..dim + 1], crate::keys::modulus());
        extract_lwe_sample_from_glwe_ciphertext(&glwe, &mut lwe, MonomialDegree(j % big_n));
        pad(ct, dim);
    }
}

/// Pads an LWE ciphertext of dimension `dim`, written at the start of `ct`, to the length of `ct`
/// (a longer key whose first `dim` coefficients are its key): the body moves to the end, zeros
/// in between.
pub(crate) fn pad(ct: &mut [u64], dim: usize) {
    let last = ct.len() - 1;
    if dim < last {
        ct[last] = ct[dim];
        ct[dim..last].fill(0);
    }
}

#[derive(VersionsDispatch)]
pub enum CtDataVersions {
    V0(CtData),
}

#[derive(Serialize, Deserialize, Versionize)]
#[versionize(CtTensorVersions)]
pub struct CtTensor {
    pub(crate) port: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: CtData,
}

#[derive(VersionsDispatch)]
pub enum CtTensorVersions {
    V0(CtTensor),
}

/// Which side of a program a set of ciphertexts belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Versionize)]
#[versionize(DirectionVersions)]
pub enum Direction {
    Inputs,
    Outputs,
}

#[derive(VersionsDispatch)]
pub enum DirectionVersions {
    V0(Direction),
}

/// Encrypted inputs or outputs of a program, for a batch of samples.
#[derive(Serialize, Deserialize, Versionize)]
#[versionize(CiphertextsVersions)]
pub struct Ciphertexts {
    /// [`crate::Program::fingerprint`] of the program they belong to.
    pub(crate) program: u64,
    /// The key id of the keys they are encrypted under ([`crate::ClientKeys::key_id`]).
    pub(crate) key_id: u64,
    pub(crate) direction: Direction,
    pub(crate) samples: usize,
    pub(crate) lwe_size: usize,
    pub(crate) tensors: Vec<CtTensor>,
}

#[derive(VersionsDispatch)]
pub enum CiphertextsVersions {
    V0(Ciphertexts),
}

impl tfhe::named::Named for Ciphertexts {
    const NAME: &'static str = "fhec::Ciphertexts";
}

impl Ciphertexts {
    pub fn samples(&self) -> usize {
        self.samples
    }
    pub fn direction(&self) -> Direction {
        self.direction
    }
    /// The id of the keys these ciphertexts are encrypted under.
    pub fn key_id(&self) -> u64 {
        self.key_id
    }
    pub fn size_bytes(&self) -> usize {
        self.tensors
            .iter()
            .map(|t| match &t.data {
                CtData::Seeded(l) => l.as_ref().len() * 8,
                CtData::Full(l) => l.as_ref().len() * 8,
                CtData::Packed(lists) => lists.iter().map(|l| l.as_ref().len() * 8 + 16).sum(),
                CtData::PackedXof(lists) => lists.iter().map(|l| l.bodies.len() * 8 + 48).sum(),
                CtData::Clear(v) => v.len() * 8,
            })
            .sum()
    }

    /// Checks that these ciphertexts fit `program` on the given side: fingerprint, ports, shapes,
    /// ciphertext sizes. A file made for another program is an error here.
    pub fn check(&self, program: &ProgramInterface, direction: Direction) -> Result<(), RuntimeError> {
        let mismatch = |m: String| Err(RuntimeError::Mismatch(m));
        if self.direction != direction {
            return mismatch(
                format!("expected encrypted {direction:?}, got encrypted {:?}", self.direction).to_lowercase(),
            );
        }
        if self.program != program.fingerprint {
            return mismatch("these ciphertexts were made for another program (or other parameters)".into());
        }
        let ports = match direction {
            Direction::Inputs => &program.inputs,
            Direction::Outputs => &program.outputs,
        };
        // inputs: partition 0's key; outputs: the output dimension (padded to the widest output)
        let lwe_size = match direction {
            Direction::Inputs => program.params.big_lwe_dimension() + 1,
            Direction::Outputs => program.output_dim as usize + 1,
        };
        if self.lwe_size != lwe_size || self.tensors.len() != ports.len() || self.samples == 0 {
            return mismatch(format!(
                "ciphertexts do not match the program: {} tensors of LWE size {} for {} ports of size {}",
                self.tensors.len(),
                self.lwe_size,
                ports.len(),
                lwe_size
            ));
        }
        for (t, p) in self.tensors.iter().zip(ports) {
            if t.port != p.name || t.shape != p.shape {
                return mismatch(format!(
                    "ciphertext tensor `{}` {:?} does not match port `{}` {:?}",
                    t.port, t.shape, p.name, p.shape
                ));
            }
            if p.clear != matches!(t.data, CtData::Clear(_)) {
                return mismatch(format!(
                    "tensor `{}` is {}, port `{}` takes {} values",
                    t.port,
                    if p.clear { "encrypted" } else { "clear" },
                    p.name,
                    if p.clear { "clear" } else { "encrypted" }
                ));
            }
            if let CtData::Clear(values) = &t.data {
                if values.len() != p.len() * self.samples {
                    return mismatch(format!(
                        "clear tensor `{}` holds {} values, expected {} ({} samples)",
                        t.port,
                        values.len(),
                        p.len() * self.samples,
                        self.samples
                    ));
                }
                // the server's own check: clear values outside the port's range would make results wrong
                for (i, chunk) in values.chunks(p.len().max(1)).enumerate() {
                    let t = ClearTensor {
                        shape: p.shape.clone(),
                        values: chunk.to_vec(),
                    };
                    encode_input(p, &t, i)?;
                }
                continue;
            }
            if let CtData::PackedXof(lists) = &t.data {
                let big_n = program.params.polynomial_size();
                let k = program.params.glwe_dimension();
                let ok = lists.len() == self.samples
                    && lists.iter().all(|l| {
                        l.glwe_dimension == k as u64 && l.polynomial_size == big_n as u64 && l.bodies.len() == p.len()
                    });
                if !ok {
                    return mismatch(format!(
                        "packed ciphertext tensor `{}` does not hold {} samples of {} values in GLWE ciphertexts (k = {k}, N = {big_n})",
                        t.port, self.samples, p.len()
                    ));
                }
                continue;
            }
            if let CtData::Packed(lists) = &t.data {
                let big_n = program.params.polynomial_size();
                let per = p.len().div_ceil(big_n);
                let glwe_size = program.params.glwe_dimension() + 1;
                // raw sizes before the derived count (which divides by the polynomial size)
                let ok = lists.len() == self.samples
                    && lists.iter().all(|l| {
                        l.glwe_size().0 == glwe_size
                            && l.polynomial_size().0 == big_n
                            && l.ciphertext_modulus().is_native_modulus()
                            && l.as_ref().len() == per * big_n
                    });
                if !ok {
                    return mismatch(format!(
                        "packed ciphertext tensor `{}` does not hold {} samples of {per} GLWE ciphertexts (k = {}, N = {big_n})",
                        t.port,
                        self.samples,
                        glwe_size - 1
                    ));
                }
                continue;
            }
            let want = p.len().saturating_mul(self.samples);
            // raw sizes before the derived count (which divides by the LWE size)
            let (size, native) = match &t.data {
                CtData::Seeded(l) => (l.lwe_size().0, l.ciphertext_modulus().is_native_modulus()),
                CtData::Full(l) => (l.lwe_size().0, l.ciphertext_modulus().is_native_modulus()),
                CtData::Packed(_) | CtData::PackedXof(_) | CtData::Clear(_) => unreachable!("checked above"),
            };
            let count = match &t.data {
                _ if size != lwe_size || !native => 0,
                CtData::Seeded(l) => l.as_ref().len(),
                CtData::Full(l) => l.as_ref().len() / lwe_size,
                CtData::Packed(_) | CtData::PackedXof(_) | CtData::Clear(_) => unreachable!("checked above"),
            };
            let whole = match &t.data {
                CtData::Full(l) => l.as_ref().len() % lwe_size == 0,
                _ => true,
            };
            if count != want || size != lwe_size || !native || !whole {
                return mismatch(format!(
                    "ciphertext tensor `{}` holds {count} ciphertexts of size {size}, expected {want} of size {lwe_size}",
                    t.port
                ));
            }
        }
        Ok(())
    }
}

/// Checks a clear input against its port and encodes it.
pub(crate) fn encode_input(port: &Port, t: &ClearTensor, sample: usize) -> Result<Vec<u64>, RuntimeError> {
    if t.shape != port.shape {
        return Err(RuntimeError::Shape(format!(
            "input `{}` (sample {sample}) has shape {:?}, the program expects {:?}",
            port.name, t.shape, port.shape
        )));
    }
    let (lo, hi) = port.range();
    t.values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v < lo || v > hi {
                let what = if port.range.is_some() {
                    "the program was compiled for (its declared or calibrated `fhe.range`; values outside it \
                     would be computed wrong)"
                        .to_string()
                } else {
                    format!(
                        "of its type ({}{} bits)",
                        if port.signed { "signed, " } else { "" },
                        port.width
                    )
                };
                Err(RuntimeError::Range(format!(
                    "input `{}` (sample {sample}) element {i} is {v}, outside the range [{lo}, {hi}] {what}",
                    port.name
                )))
            } else {
                Ok(encode(v, port.scale))
            }
        })
        .collect()
}

/// Checks decrypted (or simulated) output values against their port's type: a value outside it
/// means the computation overflowed a width (an intermediate value beyond the range the program
/// was calibrated for) or a lookup failed; never a result to return.
pub(crate) fn check_output(port: &Port, values: &[i64], sample: usize) -> Result<(), RuntimeError> {
    let (lo, hi) = port.type_range();
    match values.iter().position(|&v| v < lo || v > hi) {
        None => Ok(()),
        Some(i) => Err(RuntimeError::Range(format!(
            "output `{}` (sample {sample}) element {i} decrypted to {}, outside the range [{lo}, {hi}] of its type \
             ({}{} bits): an intermediate value left the range the program was compiled for (inputs outside \
             the calibration set's ranges?) or a lookup failed; the result is not trustworthy",
            port.name,
            values[i],
            if port.signed { "signed, " } else { "" },
            port.width
        ))),
    }
}
