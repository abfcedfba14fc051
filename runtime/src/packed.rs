//! Bootstrap keys as sent: seeded, with each body coefficient rounded to a multiple of `2^t` and
//! only its top `64 − t` bits stored (docs/crypto.md, "Rounded bootstrap keys").
//!
//! A seeded bootstrap key is, after its seed, one body polynomial per GLWE row: `n·ℓ·(k+1)·N`
//! coefficients, each `⟨a, s⟩ + m + e` modulo 2^64. The low bits of a body are covered by the noise
//! `e` (TUniform of bound `2^b`, `b` about 17 on the usual sets), and the mask `a` comes from the seed,
//! so `⟨a, s⟩` makes every body uniform modulo `2^t`: rounding to the nearest multiple of `2^t`
//! adds an error uniform on `(−2^(t−1), 2^(t−1)]`, independent of `e`, of variance `(4^t − 1)/12`.
//! The key stays a valid encryption of the same values with a slightly larger error, which the
//! parameter search counts ([`crate::params::RawParamSet::bsk_rounding_log2`]); security is
//! unchanged (rounding is a public function of the public key material).

use tfhe::core_crypto::commons::math::random::CompressionSeed;
use tfhe::core_crypto::prelude::*;

use crate::params::ParamSet;

/// A seeded bootstrap key whose bodies are rounded to `2^t` (`t` = its parameter set's
/// `bsk_rounding_log2`) and bit-packed, `64 − t` bits each, little endian.
#[derive(Clone, serde::Serialize, serde::Deserialize, tfhe_versionable::Versionize)]
#[versionize(PackedBootstrapKeyVersions)]
pub struct PackedBootstrapKey {
    pub(crate) seed: CompressionSeed,
    pub(crate) bodies: Vec<u8>,
}

#[derive(tfhe_versionable::VersionsDispatch)]
pub enum PackedBootstrapKeyVersions {
    V0(PackedBootstrapKey),
}

/// Body coefficients of a bootstrap key of `p` (`None` if the count overflows: a damaged set).
pub(crate) fn body_count(p: &ParamSet) -> Option<usize> {
    let r = p.raw();
    r.lwe_dimension
        .checked_mul(r.pbs_level)?
        .checked_mul(r.glwe_dimension + 1)?
        .checked_mul(r.polynomial_size)
}

/// Bytes of `count` bodies rounded to `2^t`.
pub(crate) fn packed_len(count: usize, t: u32) -> Option<usize> {
    count
        .checked_mul(64usize.checked_sub(t as usize)?)?
        .checked_add(7)
        .map(|bits| bits / 8)
}

/// Values per parallel block: a multiple of 8, so that every block packs into whole bytes.
const BLOCK: usize = 1 << 16;

/// Rounds each value to the nearest multiple of `2^t` (ties up, modulo 2^64) and stores its top
/// `64 − t` bits (blocks of [`BLOCK`] values in parallel, each written in place; the stream is
/// the same as one pass would write).
pub(crate) fn pack(values: &[u64], t: u32) -> Vec<u8> {
    use rayon::prelude::*;
    let mut out = vec![0u8; packed_len(values.len(), t).unwrap_or(0)];
    let block_bytes = (64 - t as usize) * BLOCK / 8;
    out.par_chunks_mut(block_bytes)
        .zip(values.par_chunks(BLOCK))
        .for_each(|(out, values)| pack_block(values, t, out));
    out
}

/// Packs `values` into `out`, exactly `packed_len(values.len(), t)` bytes.
fn pack_block(values: &[u64], t: u32, out: &mut [u8]) {
    let width = 64 - t;
    let (mut acc, mut held, mut pos) = (0u128, 0u32, 0usize);
    for &v in values {
        let kept = if t == 0 { v } else { v.wrapping_add(1 << (t - 1)) >> t };
        acc |= (kept as u128) << held;
        held += width;
        if held >= 64 {
            out[pos..pos + 8].copy_from_slice(&(acc as u64).to_le_bytes());
            pos += 8;
            acc >>= 64;
            held -= 64;
        }
    }
    let tail = (held as usize).div_ceil(8);
    out[pos..pos + tail].copy_from_slice(&(acc as u64).to_le_bytes()[..tail]);
}

/// The inverse of [`pack`] (up to the rounding): `count` values, each its stored bits times `2^t`.
/// `None` unless `bytes` holds exactly `count` values with zero padding bits.
pub(crate) fn unpack(bytes: &[u8], count: usize, t: u32) -> Option<Vec<u64>> {
    use rayon::prelude::*;
    if t >= 64 || Some(bytes.len()) != packed_len(count, t) {
        return None;
    }
    let mut out = vec![0u64; count];
    // whole blocks are whole bytes: (64 − t)·BLOCK/8 of them each
    let block_bytes = (64 - t as usize) * BLOCK / 8;
    let ok = out
        .par_chunks_mut(BLOCK)
        .zip(bytes.par_chunks(block_bytes))
        .all(|(out, bytes)| unpack_block(bytes, t, out));
    ok.then_some(out)
}

/// Fills `out` from `bytes` (exactly its packed length); false if the unused bits of the last byte
/// are not zero (this fhec writes them zero).
fn unpack_block(bytes: &[u8], t: u32, out: &mut [u64]) -> bool {
    let width = 64 - t;
    let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
    let (mut acc, mut held, mut pos) = (0u128, 0u32, 0usize);
    for o in out.iter_mut() {
        if held < width {
            let mut word = [0u8; 8];
            let n = (bytes.len() - pos).min(8);
            if n == 0 {
                return false; // too few bytes (`unpack` checked the length: not reached)
            }
            word[..n].copy_from_slice(&bytes[pos..pos + n]);
            pos += n;
            acc |= (u64::from_le_bytes(word) as u128) << held;
            held += 8 * n as u32;
        }
        *o = ((acc as u64) & mask) << t;
        acc >>= width;
        held -= width;
    }
    acc == 0
}

impl PackedBootstrapKey {
    /// Rounds and packs a seeded key generated for `p`.
    pub(crate) fn new(key: &SeededLweBootstrapKeyOwned<u64>, p: &ParamSet) -> PackedBootstrapKey {
        PackedBootstrapKey {
            seed: key.compression_seed(),
            bodies: pack(key.as_ref(), p.raw().bsk_rounding_log2),
        }
    }

    /// Whether the stored bodies are exactly those of a key of `p` (their count, and zero bits
    /// after the last one).
    pub(crate) fn fits(&self, p: &ParamSet) -> bool {
        let t = p.raw().bsk_rounding_log2;
        let Some(n) = body_count(p) else { return false };
        if packed_len(n, t) != Some(self.bodies.len()) {
            return false;
        }
        let used = (n * (64 - t as usize)) % 8;
        used == 0 || self.bodies.last().is_some_and(|&b| b >> used == 0)
    }

    /// The seeded key again (bodies rounded), ready to decompress; `None` if it does not [`fits`](Self::fits) `p`.
    pub(crate) fn unpack(&self, p: &ParamSet) -> Option<SeededLweBootstrapKeyOwned<u64>> {
        let r = p.raw();
        let bodies = unpack(&self.bodies, body_count(p)?, r.bsk_rounding_log2)?;
        if bodies.is_empty() {
            return None;
        }
        Some(SeededLweBootstrapKey::from_container(
            bodies,
            GlweSize(r.glwe_dimension + 1),
            PolynomialSize(r.polynomial_size),
            DecompositionBaseLog(r.pbs_base_log),
            DecompositionLevelCount(r.pbs_level),
            self.seed.clone(),
            CiphertextModulus::new_native(),
        ))
    }

    /// Bytes of key material (the packed bodies).
    pub(crate) fn size_bytes(&self) -> usize {
        self.bodies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_rounds_to_the_nearest_multiple_and_reads_back() {
        let values: Vec<u64> = (0..(2 * BLOCK as u64 + 1000))
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 7))
            .chain([0, 1, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1])
            .collect();
        for t in [0u32, 1, 7, 8, 13, 16, 17, 31, 48] {
            let bytes = pack(&values, t);
            assert_eq!(Some(bytes.len()), packed_len(values.len(), t));
            let back = unpack(&bytes, values.len(), t).expect("reads back");
            for (&v, &w) in values.iter().zip(&back) {
                // a multiple of 2^t, at most half a step away (ties up), modulo 2^64
                let err = w.wrapping_sub(v) as i64 as i128;
                if t == 0 {
                    assert_eq!(err, 0);
                } else {
                    assert_eq!(w & ((1u64 << t) - 1), 0);
                    let half = 1i128 << (t - 1);
                    assert!(-half < err && err <= half, "t={t} v={v:#x} w={w:#x}");
                }
            }
            // the wrong count, a byte more or less, or set padding bits: refused
            assert!(unpack(&bytes, values.len() + 1, t).is_none());
            assert!(unpack(&bytes[..bytes.len() - 1], values.len(), t).is_none());
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(unpack(&longer, values.len(), t).is_none());
            if !(values.len() * (64 - t as usize)).is_multiple_of(8) {
                let mut dirty = bytes.clone();
                *dirty.last_mut().unwrap() |= 0x80;
                assert!(unpack(&dirty, values.len(), t).is_none(), "t={t}");
            }
        }
    }

    #[test]
    fn rounding_error_is_uniform_with_the_stated_variance() {
        // bodies of a real key are uniform modulo 2^t; so are these
        let mut x = 0x0123_4567_89AB_CDEFu64;
        let values: Vec<u64> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect();
        let t = 16;
        let back = unpack(&pack(&values, t), values.len(), t).unwrap();
        let errs: Vec<f64> = values
            .iter()
            .zip(&back)
            .map(|(&v, &w)| w.wrapping_sub(v) as i64 as f64)
            .collect();
        let mean = errs.iter().sum::<f64>() / errs.len() as f64;
        let var = errs.iter().map(|e| (e - mean) * (e - mean)).sum::<f64>() / errs.len() as f64;
        let stated = ((4f64).powi(t as i32) - 1.0) / 12.0;
        assert!((var / stated - 1.0).abs() < 0.02, "variance {var} against {stated}");
        assert!(mean.abs() < 0.01 * stated.sqrt(), "mean {mean}");
    }
}
