//! TFHE parameter sets.
//!
//! A [`ParamSet`] names every knob of the KS-PBS atomic pattern that fhec uses: the small LWE
//! dimension `n` (keyswitch output, blind-rotation input), the GLWE dimension `k` and polynomial size
//! `N` (bootstrap output; `k·N` is the "big" LWE dimension that ciphertexts live in between lookups),
//! the bootstrap and keyswitch decompositions, and the TUniform noise bounds of both secret keys.
//!
//! Security comes from the dependency: the noise bounds must be at least the minimal bounds that
//! tfhe-rs's `secure_noise` curves give for the dimension (≥ 128-bit; the curves are labelled
//! 132-bit). [`ParamSet::new`] refuses anything else, so a `ParamSet` that exists is secure; every
//! deserialised set goes through the same check. The only way around it is
//! [`ParamSet::insecure_for_tests`], compiled only into this crate's own unit tests.

use serde::{Deserialize, Serialize};
use tfhe::core_crypto::commons::noise_formulas::secure_noise::{
    minimal_glwe_bound_for_132_bits_security_tuniform, minimal_lwe_bound_for_132_bits_security_tuniform,
};
use tfhe::core_crypto::prelude::{GlweDimension, LweDimension, PolynomialSize};
use tfhe_versionable::{Versionize, VersionsDispatch};

use crate::RuntimeError;

/// The ciphertext modulus, as the noise formulas take it.
pub const MODULUS: f64 = 18446744073709551616.0; // 2^64

/// Smallest TUniform bound used for the GLWE key even where the security curve allows less
/// (large `k·N`): tfhe-rs's shipped parameter sets use the same floor.
pub const MIN_GLWE_NOISE_BOUND_LOG2: u32 = 3;

/// One TFHE parameter set (KS-PBS, 64-bit torus, TUniform noise, binary keys).
///
/// Files carry it through serde (checked on load) or through tfhe's versioning (key and ciphertext
/// files, which check [`ParamSet::is_secure`] after loading).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Versionize)]
#[serde(try_from = "RawParamSet", into = "RawParamSet")]
#[versionize(ParamSetVersions)]
pub struct ParamSet {
    raw: RawParamSet,
}

#[derive(VersionsDispatch)]
pub enum ParamSetVersions {
    V0(ParamSet),
}

#[derive(VersionsDispatch)]
pub enum RawParamSetVersions {
    V0(RawParamSetV0),
    V1(RawParamSetV1),
    V2(RawParamSet),
}

/// The fields of a [`ParamSet`] before KS32: the keyswitch output modulus was always 2^64. Files
/// of format 6 and before (keys, ciphertexts; programs through [`crate::program`]'s readers)
/// carry this layout, upgraded on reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, tfhe_versionable::Version)]
pub struct RawParamSetV0 {
    pub lwe_dimension: usize,
    pub glwe_dimension: usize,
    pub polynomial_size: usize,
    pub lwe_noise_bound_log2: u32,
    pub glwe_noise_bound_log2: u32,
    pub pbs_base_log: usize,
    pub pbs_level: usize,
    pub ks_base_log: usize,
    pub ks_level: usize,
}

impl tfhe_versionable::Upgrade<RawParamSetV1> for RawParamSetV0 {
    type Error = std::convert::Infallible;
    fn upgrade(self) -> Result<RawParamSetV1, Self::Error> {
        Ok(RawParamSetV1 {
            lwe_dimension: self.lwe_dimension,
            glwe_dimension: self.glwe_dimension,
            polynomial_size: self.polynomial_size,
            lwe_noise_bound_log2: self.lwe_noise_bound_log2,
            glwe_noise_bound_log2: self.glwe_noise_bound_log2,
            pbs_base_log: self.pbs_base_log,
            pbs_level: self.pbs_level,
            ks_base_log: self.ks_base_log,
            ks_level: self.ks_level,
            ks_modulus_log2: 64,
        })
    }
}

impl From<RawParamSetV0> for RawParamSet {
    fn from(r: RawParamSetV0) -> RawParamSet {
        let Ok(v1) = tfhe_versionable::Upgrade::<RawParamSetV1>::upgrade(r);
        v1.into()
    }
}

/// The fields of a [`ParamSet`] from KS32 to format 8: bootstrap keys were sent whole (no rounded
/// bodies). Files of formats 7 and 8 carry this layout, upgraded on reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, tfhe_versionable::Version)]
pub struct RawParamSetV1 {
    pub lwe_dimension: usize,
    pub glwe_dimension: usize,
    pub polynomial_size: usize,
    pub lwe_noise_bound_log2: u32,
    pub glwe_noise_bound_log2: u32,
    pub pbs_base_log: usize,
    pub pbs_level: usize,
    pub ks_base_log: usize,
    pub ks_level: usize,
    pub ks_modulus_log2: u32,
}

impl tfhe_versionable::Upgrade<RawParamSet> for RawParamSetV1 {
    type Error = std::convert::Infallible;
    fn upgrade(self) -> Result<RawParamSet, Self::Error> {
        Ok(RawParamSet::from(self))
    }
}

impl From<RawParamSetV1> for RawParamSet {
    fn from(r: RawParamSetV1) -> RawParamSet {
        RawParamSet {
            lwe_dimension: r.lwe_dimension,
            glwe_dimension: r.glwe_dimension,
            polynomial_size: r.polynomial_size,
            lwe_noise_bound_log2: r.lwe_noise_bound_log2,
            glwe_noise_bound_log2: r.glwe_noise_bound_log2,
            pbs_base_log: r.pbs_base_log,
            pbs_level: r.pbs_level,
            ks_base_log: r.ks_base_log,
            ks_level: r.ks_level,
            ks_modulus_log2: r.ks_modulus_log2,
            bsk_rounding_log2: 0,
        }
    }
}

/// A [`ParamSet`] in the serde layout of format 6 and before (programs), checked like any other.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "RawParamSetV0")]
pub(crate) struct ParamSetV0(pub(crate) ParamSet);

impl TryFrom<RawParamSetV0> for ParamSetV0 {
    type Error = String;
    fn try_from(raw: RawParamSetV0) -> Result<ParamSetV0, String> {
        ParamSet::new(raw.into()).map(ParamSetV0).map_err(|e| e.to_string())
    }
}

/// A [`ParamSet`] in the serde layout of formats 7 and 8 (programs), checked like any other.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "RawParamSetV1")]
pub(crate) struct ParamSetV1(pub(crate) ParamSet);

impl TryFrom<RawParamSetV1> for ParamSetV1 {
    type Error = String;
    fn try_from(raw: RawParamSetV1) -> Result<ParamSetV1, String> {
        ParamSet::new(raw.into()).map(ParamSetV1).map_err(|e| e.to_string())
    }
}

fn native_ks_modulus() -> u32 {
    64
}

/// The plain fields of a [`ParamSet`]; only [`ParamSet::new`] turns them into one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Versionize)]
#[versionize(RawParamSetVersions)]
pub struct RawParamSet {
    /// Small LWE dimension `n`.
    pub lwe_dimension: usize,
    /// GLWE dimension `k`.
    pub glwe_dimension: usize,
    /// Polynomial size `N` (a power of two).
    pub polynomial_size: usize,
    /// TUniform bound (log2) of the small LWE key's noise (keyswitch key), at the keyswitch's output
    /// modulus `2^ks_modulus_log2`.
    pub lwe_noise_bound_log2: u32,
    /// TUniform bound (log2) of the GLWE key's noise (bootstrap key, fresh encryptions).
    pub glwe_noise_bound_log2: u32,
    pub pbs_base_log: usize,
    pub pbs_level: usize,
    pub ks_base_log: usize,
    pub ks_level: usize,
    /// log2 of the keyswitch's output modulus: 64 (the native torus) or 32 (KS32: the keyswitch
    /// writes 32-bit ciphertexts under the small key, which the modulus switch then reads;
    /// docs/crypto.md, "KS32"). Absent in JSON written before KS32: 64.
    #[serde(default = "native_ks_modulus")]
    pub ks_modulus_log2: u32,
    /// log2 of the step the bootstrap key's bodies are rounded to before they leave the client
    /// (0: sent whole). Rounding drops the low bits of each body coefficient, which are noise: the
    /// sent key shrinks by `bsk_rounding_log2/64`, and each coefficient's error grows by a uniform
    /// term of variance `4^bsk_rounding_log2/12`, which the noise formulas count (docs/crypto.md,
    /// "Rounded bootstrap keys"). Absent in JSON written before format 9: 0.
    #[serde(default)]
    pub bsk_rounding_log2: u32,
}

/// Largest [`RawParamSet::bsk_rounding_log2`]: far above any useful value (the key noise grows 4×
/// per bit past the key's own noise bound).
pub const MAX_BSK_ROUNDING_LOG2: u32 = 48;

/// The minimal secure TUniform bound for an LWE key of dimension `n` (ciphertexts modulo 2^64).
pub fn secure_lwe_bound(n: usize) -> u32 {
    minimal_lwe_bound_for_132_bits_security_tuniform(LweDimension(n), MODULUS)
}

/// The minimal secure TUniform bound for an LWE key of dimension `n`, ciphertexts modulo
/// `2^modulus_log2` (the curve is in the noise's size relative to the modulus: 32 less at 2^32).
pub fn secure_lwe_bound_at(n: usize, modulus_log2: u32) -> u32 {
    minimal_lwe_bound_for_132_bits_security_tuniform(LweDimension(n), (modulus_log2 as f64).exp2())
}

/// The minimal secure TUniform bound for a GLWE key, floored at [`MIN_GLWE_NOISE_BOUND_LOG2`].
pub fn secure_glwe_bound(k: usize, n: usize) -> u32 {
    minimal_glwe_bound_for_132_bits_security_tuniform(GlweDimension(k), PolynomialSize(n), MODULUS)
        .max(MIN_GLWE_NOISE_BOUND_LOG2)
}

impl RawParamSet {
    /// Why this set is not acceptable, if it is not.
    fn problem(&self, check_security: bool) -> Option<String> {
        let r = self;
        if !(2..=1 << 17).contains(&r.polynomial_size) || !r.polynomial_size.is_power_of_two() {
            return Some(format!(
                "polynomial size {} is not a power of two in [2, 2^17]",
                r.polynomial_size
            ));
        }
        if r.glwe_dimension == 0 || r.glwe_dimension > 16 || r.lwe_dimension == 0 || r.lwe_dimension > 1 << 16 {
            return Some(format!(
                "dimensions n={} k={} out of range",
                r.lwe_dimension, r.glwe_dimension
            ));
        }
        for (what, b, l) in [
            ("bootstrap", r.pbs_base_log, r.pbs_level),
            ("keyswitch", r.ks_base_log, r.ks_level),
        ] {
            if b == 0 || l == 0 || b.checked_mul(l).is_none_or(|x| x > 64) {
                return Some(format!(
                    "{what} decomposition base_log={b} level={l} is not valid (0 < base_log·level ≤ 64)"
                ));
            }
        }
        match r.ks_modulus_log2 {
            64 => {}
            32 => {
                // tfhe-rs's scalar-change keyswitch decomposes into at most the output's 32 bits
                if r.ks_base_log * r.ks_level > 32 {
                    return Some(format!(
                        "keyswitch decomposition base_log={} level={} reads {} bits, more than a 32-bit keyswitch output holds",
                        r.ks_base_log,
                        r.ks_level,
                        r.ks_base_log * r.ks_level
                    ));
                }
            }
            m => return Some(format!("keyswitch output modulus 2^{m} is not 2^64 or 2^32")),
        }
        if r.bsk_rounding_log2 > MAX_BSK_ROUNDING_LOG2 {
            return Some(format!(
                "bootstrap key bodies rounded to 2^{} (at most 2^{MAX_BSK_ROUNDING_LOG2})",
                r.bsk_rounding_log2
            ));
        }
        // TUniform(b) samples in [-2^b, 2^b]; tfhe-rs needs b + 2 ≤ the bits of the modulus.
        if r.lwe_noise_bound_log2.saturating_add(2) > r.ks_modulus_log2 || r.glwe_noise_bound_log2 > 62 {
            return Some(format!(
                "noise bound above 2^{} (LWE, modulo 2^{}) or 2^62 (GLWE)",
                r.ks_modulus_log2 - 2,
                r.ks_modulus_log2
            ));
        }
        if check_security {
            let lwe_min = secure_lwe_bound_at(r.lwe_dimension, r.ks_modulus_log2);
            if r.lwe_noise_bound_log2 < lwe_min {
                return Some(format!(
                    "insecure: LWE noise bound 2^{} < 2^{} needed for 128-bit security at n={} modulo 2^{}",
                    r.lwe_noise_bound_log2, lwe_min, r.lwe_dimension, r.ks_modulus_log2
                ));
            }
            let glwe_min = secure_glwe_bound(r.glwe_dimension, r.polynomial_size);
            if r.glwe_noise_bound_log2 < glwe_min {
                return Some(format!(
                    "insecure: GLWE noise bound 2^{} < 2^{} needed for 128-bit security at k·N={}",
                    r.glwe_noise_bound_log2,
                    glwe_min,
                    r.glwe_dimension * r.polynomial_size
                ));
            }
        }
        None
    }
}

impl TryFrom<RawParamSet> for ParamSet {
    type Error = String;
    fn try_from(raw: RawParamSet) -> Result<ParamSet, String> {
        ParamSet::new(raw).map_err(|e| e.to_string())
    }
}

impl From<ParamSet> for RawParamSet {
    fn from(p: ParamSet) -> RawParamSet {
        p.raw
    }
}

impl ParamSet {
    /// A parameter set, if it is well formed and ≥ 128-bit secure by tfhe-rs's curves.
    pub fn new(raw: RawParamSet) -> Result<ParamSet, RuntimeError> {
        match raw.problem(true) {
            Some(p) => Err(RuntimeError::Params(p)),
            None => Ok(ParamSet { raw }),
        }
    }

    /// A set with the secure noise bounds for its dimensions.
    #[allow(clippy::too_many_arguments)]
    pub fn with_secure_noise(
        lwe_dimension: usize,
        glwe_dimension: usize,
        polynomial_size: usize,
        pbs_base_log: usize,
        pbs_level: usize,
        ks_base_log: usize,
        ks_level: usize,
    ) -> Result<ParamSet, RuntimeError> {
        ParamSet::new(RawParamSet {
            lwe_dimension,
            glwe_dimension,
            polynomial_size,
            lwe_noise_bound_log2: secure_lwe_bound(lwe_dimension),
            glwe_noise_bound_log2: secure_glwe_bound(glwe_dimension, polynomial_size),
            pbs_base_log,
            pbs_level,
            ks_base_log,
            ks_level,
            ks_modulus_log2: 64,
            bsk_rounding_log2: 0,
        })
    }

    /// This set with its keyswitch writing modulo `2^modulus_log2` (64 or 32) and the LWE key's
    /// secure noise bound at that modulus (the same noise relative to the modulus).
    pub fn with_ks_modulus(&self, modulus_log2: u32) -> Result<ParamSet, RuntimeError> {
        ParamSet::new(RawParamSet {
            lwe_noise_bound_log2: secure_lwe_bound_at(self.raw.lwe_dimension, modulus_log2),
            ks_modulus_log2: modulus_log2,
            ..self.raw
        })
    }

    /// Skips the security check. Test code only: with insecure parameters a ciphertext can be
    /// decrypted without the key. Not compiled into normal builds.
    #[cfg(test)]
    pub fn insecure_for_tests(raw: RawParamSet) -> ParamSet {
        assert!(
            raw.problem(false).is_none(),
            "malformed test parameters: {:?}",
            raw.problem(false)
        );
        ParamSet { raw }
    }

    pub fn raw(&self) -> &RawParamSet {
        &self.raw
    }
    pub fn lwe_dimension(&self) -> usize {
        self.raw.lwe_dimension
    }
    pub fn glwe_dimension(&self) -> usize {
        self.raw.glwe_dimension
    }
    pub fn polynomial_size(&self) -> usize {
        self.raw.polynomial_size
    }
    /// Whether the keyswitch writes 32-bit ciphertexts (KS32).
    pub fn ks32(&self) -> bool {
        self.raw.ks_modulus_log2 == 32
    }
    /// The keyswitch's output modulus, as the noise formulas take it (2^64 or 2^32).
    pub fn ks_modulus(&self) -> f64 {
        (self.raw.ks_modulus_log2 as f64).exp2()
    }
    /// `k·N`: the dimension of ciphertexts between lookups.
    pub fn big_lwe_dimension(&self) -> usize {
        self.raw.glwe_dimension * self.raw.polynomial_size
    }

    /// Whether the noise bounds meet the security curves (always true for sets built by `new`).
    pub fn is_secure(&self) -> bool {
        self.raw.problem(true).is_none()
    }

    /// A stable 64-bit fingerprint, stored in keys and ciphertexts to detect mismatches.
    pub fn fingerprint(&self) -> u64 {
        let r = &self.raw;
        let mut h = Fnv::default();
        for v in [
            r.lwe_dimension as u64,
            r.glwe_dimension as u64,
            r.polynomial_size as u64,
            r.lwe_noise_bound_log2 as u64,
            r.glwe_noise_bound_log2 as u64,
            r.pbs_base_log as u64,
            r.pbs_level as u64,
            r.ks_base_log as u64,
            r.ks_level as u64,
        ] {
            h.write(&v.to_le_bytes());
        }
        // sets written before KS32 keep their fingerprints
        if r.ks_modulus_log2 != 64 {
            h.write(&(r.ks_modulus_log2 as u64).to_le_bytes());
        }
        // and sets whose bootstrap keys are sent whole keep theirs too
        if r.bsk_rounding_log2 != 0 {
            h.write(b"bsk-rounding");
            h.write(&(r.bsk_rounding_log2 as u64).to_le_bytes());
        }
        h.finish()
    }
}

impl std::fmt::Display for ParamSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.raw;
        write!(
            f,
            "n={} k={} N={} pbs=(base_log {}, level {}) ks=(base_log {}, level {}{}) noise=(lwe 2^{}, glwe 2^{})",
            r.lwe_dimension,
            r.glwe_dimension,
            r.polynomial_size,
            r.pbs_base_log,
            r.pbs_level,
            r.ks_base_log,
            r.ks_level,
            if r.ks_modulus_log2 == 64 { "" } else { ", 32-bit" },
            r.lwe_noise_bound_log2,
            r.glwe_noise_bound_log2
        )?;
        if r.bsk_rounding_log2 > 0 {
            write!(f, " bsk_rounding=2^{}", r.bsk_rounding_log2)?;
        }
        Ok(())
    }
}

/// Most partitions (parameter sets) one program may use.
pub const MAX_PARTITIONS: usize = 8;

/// Why a program's partitions may not share one master key, if they may not.
///
/// All partitions' GLWE keys are prefixes of one binary master key (`docs/crypto.md`, "Partitions"):
/// partition `q`'s key is its first `k_q·N_q` coefficients. Then a ciphertext of any partition is,
/// padded with zeros, a ciphertext under the master key: values of different partitions mix in
/// linear instructions, and one keyswitch key per partition serves every source. Security with
/// shared coefficients: give the attacker, for free, the whole shorter prefix that a key shares with
/// smaller ones; what remains, the `k_q·N_q − K'` coefficients that only keys of size ≥ `k_q·N_q`
/// hold, must be ≥ 128-bit secure at partition `q`'s noise (the curve of that dimension). Samples
/// of the larger keys are then indistinguishable from uniform even knowing the prefix, so they do not
/// help attack the smaller ones either; each key alone meets its own curve too (every `ParamSet` does: `ParamSet::new`).
pub fn partitions_problem(parts: &[ParamSet]) -> Option<String> {
    if parts.is_empty() || parts.len() > MAX_PARTITIONS {
        return Some(format!(
            "{} partitions (a program has 1 to {MAX_PARTITIONS})",
            parts.len()
        ));
    }
    for (q, p) in parts.iter().enumerate() {
        let need = nested_glwe_bound(parts, q);
        if p.raw.glwe_noise_bound_log2 < need {
            let k = p.big_lwe_dimension();
            let shared = shared_prefix(parts, k);
            return Some(format!(
                "partition {q}: insecure with a shared key: GLWE noise bound 2^{} < 2^{need} needed for 128-bit \
                 security of the {} coefficients it does not share with a smaller partition's key",
                p.raw.glwe_noise_bound_log2,
                k - shared
            ));
        }
    }
    None
}

/// The longest prefix a key of dimension `k` shares with a smaller partition's key (0: none).
fn shared_prefix(parts: &[ParamSet], k: usize) -> usize {
    parts
        .iter()
        .map(ParamSet::big_lwe_dimension)
        .filter(|&d| d < k)
        .max()
        .unwrap_or(0)
}

/// The smallest GLWE noise bound (log2) partition `q` needs for the coefficients it does not share
/// with a smaller partition's key (0 when it shares none): see [`partitions_problem`].
pub fn nested_glwe_bound(parts: &[ParamSet], q: usize) -> u32 {
    let k = parts[q].big_lwe_dimension();
    match shared_prefix(parts, k) {
        0 => 0,
        shared => secure_lwe_bound(k - shared).max(MIN_GLWE_NOISE_BOUND_LOG2),
    }
}

/// The dimension of the master key of a program's partitions: the largest `k·N`.
pub fn master_dimension(parts: &[ParamSet]) -> usize {
    parts.iter().map(ParamSet::big_lwe_dimension).max().unwrap_or(0)
}

/// FNV-1a, for fingerprints (not a security primitive: it detects accidents, not attacks).
#[derive(Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}
