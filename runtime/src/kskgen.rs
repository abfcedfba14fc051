//! Keyswitch keys with ChaCha20 masks (docs/crypto.md, "Key generation").
//!
//! A keyswitch key from a big key `S` (dimension `D`) to a small key `s` (dimension `n`) is `D·ℓ`
//! LWE encryptions under `s`, modulo 2^64 or, for KS32, 2^32: row `(i, level)` encrypts
//! `S_i · 2^(w − base_log·level)` (`w` the word's bits), levels from the last (`ℓ`) to the first,
//! as tfhe-rs's `generate_seeded_lwe_keyswitch_key` lays them out. tfhe-rs draws masks and noise
//! byte by byte from AES-CTR and encrypts one row after the other; here the masks are the ChaCha20
//! keystream of a fresh public seed (row `j`'s `n` words from word `j·n` on: 64-bit words, or the
//! keystream's own 32-bit words for KS32), the noise TUniform from ChaCha20 under a secret seed, and
//! the rows of each key coefficient run in parallel. The server regenerates the masks from the seed
//! ([`expand`]). `tests::same_messages_as_tfhe_rs` compares every row's phase with tfhe-rs's key.

use chacha20::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use rayon::prelude::*;
use tfhe::core_crypto::prelude::*;
use zeroize::Zeroize;

use crate::bskgen::{seed_bytes, t_uniform};

/// A keyswitch-key word: `u64`, or `u32` for KS32.
pub(crate) trait KskWord: UnsignedInteger + Default + Send + Sync {
    /// Fills `out` with the keystream of `seed` from this word size's position `start` on.
    fn masks(seed: [u8; 32], start: u128, out: &mut [Self]);
    fn from_u64(x: u64) -> Self;
}

impl KskWord for u64 {
    fn masks(seed: [u8; 32], start: u128, out: &mut [u64]) {
        crate::values::xof_mask_at(seed, start, out);
    }
    fn from_u64(x: u64) -> u64 {
        x
    }
}

impl KskWord for u32 {
    fn masks(seed: [u8; 32], start: u128, out: &mut [u32]) {
        let mut rng = ChaCha20Rng::from_seed(seed);
        rng.set_word_pos(start);
        for w in out.iter_mut() {
            *w = rng.next_u32();
        }
    }
    fn from_u64(x: u64) -> u32 {
        x as u32
    }
}

/// `(seed, bodies)` of a keyswitch key from `big` to `small` (`D·ℓ` bodies, row-major as tfhe-rs's
/// seeded key), its masks the keystream of `seed`, its noise TUniform of bound `2^noise_bound_log2`.
pub(crate) fn generate<W: KskWord>(
    big: &[u64],
    small: &[W],
    base_log: DecompositionBaseLog,
    level: DecompositionLevelCount,
    noise_bound_log2: u32,
    seeder: &mut dyn Seeder,
) -> ([u8; 32], Vec<W>) {
    let n = small.len();
    let mask_seed = seed_bytes(seeder);
    let mut noise_seed = seed_bytes(seeder);
    let mut bodies = vec![W::ZERO; big.len() * level.0];
    bodies
        .par_chunks_exact_mut(level.0)
        .zip(big.par_iter())
        .enumerate()
        .for_each_init(
            || vec![W::ZERO; level.0 * n],
            |masks, (i, (bodies, &bit))| {
                W::masks(mask_seed, (i * level.0 * n) as u128, masks);
                let mut noise = ChaCha20Rng::from_seed(noise_seed);
                noise.set_stream(i as u64);
                for (li, (body, mask)) in bodies.iter_mut().zip(masks.chunks_exact(n)).enumerate() {
                    let shift = W::BITS - base_log.0 * (level.0 - li);
                    let message = W::from_u64(bit) << shift;
                    let dot = mask
                        .iter()
                        .zip(small)
                        .fold(W::ZERO, |acc, (&a, &s)| acc.wrapping_add(a.wrapping_mul(s)));
                    let e = W::from_u64(t_uniform(noise.next_u64(), noise_bound_log2));
                    *body = dot.wrapping_add(e).wrapping_add(message);
                }
            },
        );
    noise_seed.zeroize();
    (mask_seed, bodies)
}

/// The keyswitch key of `bodies` (`input_dim·ℓ`) whose masks are the keystream of `seed`, into
/// dimension `output_dim`; each key coefficient's rows regenerated in parallel.
pub(crate) fn expand<W: KskWord>(
    seed: [u8; 32],
    bodies: &[W],
    base_log: DecompositionBaseLog,
    level: DecompositionLevelCount,
    output_dim: usize,
) -> LweKeyswitchKeyOwned<W> {
    let n = output_dim;
    let input_dim = bodies.len() / level.0;
    let mut key = LweKeyswitchKeyOwned::new(
        W::ZERO,
        base_log,
        level,
        LweDimension(input_dim),
        LweDimension(n),
        CiphertextModulus::new_native(),
    );
    interleave_rows(key.as_mut(), bodies, level.0, n, 1, |i, masks| {
        W::masks(seed, (i * level.0 * n) as u128, masks)
    });
    key
}

/// Writes ciphertext rows `[mask | body]` (`mask_len` and `body_len` words) into `out`, `rows` per
/// block, block `i`'s masks from `masks(i, buffer)` and its bodies from `bodies` in order; the blocks
/// in parallel. A bootstrap key's blocks are its GGSWs (`[k·N masks | N body]` rows), a keyswitch
/// key's its key coefficients (`[n masks | 1 body]` rows).
pub(crate) fn interleave_rows<W: Copy + Default + Send + Sync>(
    out: &mut [W],
    bodies: &[W],
    rows: usize,
    mask_len: usize,
    body_len: usize,
    masks: impl Fn(usize, &mut [W]) + Sync,
) {
    out.par_chunks_exact_mut(rows * (mask_len + body_len))
        .zip(bodies.par_chunks_exact(rows * body_len))
        .enumerate()
        .for_each_init(
            || vec![W::default(); rows * mask_len],
            |buf, (i, (block, bodies))| {
                masks(i, buf);
                for ((row, m), b) in block
                    .chunks_exact_mut(mask_len + body_len)
                    .zip(buf.chunks_exact(mask_len))
                    .zip(bodies.chunks_exact(body_len))
                {
                    row[..mask_len].copy_from_slice(m);
                    row[mask_len..].copy_from_slice(b);
                }
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bskgen::tests::assert_two_noises;

    /// Ours and tfhe-rs's keyswitch keys for the same secret keys, 64- and 32-bit: every row's
    /// phase (`body − ⟨a, s⟩`) differs by two noises only, of the TUniform variance.
    #[test]
    fn same_messages_as_tfhe_rs() {
        let mut seeder = new_seeder();
        let mut secret = SecretRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed());
        let big: LweSecretKeyOwned<u64> =
            allocate_and_generate_new_binary_lwe_secret_key(LweDimension(2048), &mut secret);
        let small: LweSecretKeyOwned<u64> =
            allocate_and_generate_new_binary_lwe_secret_key(LweDimension(40), &mut secret);
        fn phases<W: KskWord>(key: &LweKeyswitchKeyOwned<W>, small: &[W]) -> Vec<W> {
            let n = small.len();
            key.as_ref()
                .chunks_exact(n + 1)
                .map(|row| {
                    let dot = row[..n]
                        .iter()
                        .zip(small)
                        .fold(W::ZERO, |acc, (&a, &s)| acc.wrapping_add(a.wrapping_mul(s)));
                    row[n].wrapping_sub(dot)
                })
                .collect()
        }
        for (base, level) in [(4usize, 4usize), (2, 7), (8, 2)] {
            let (base, level) = (DecompositionBaseLog(base), DecompositionLevelCount(level));
            // 64-bit
            let bound = 20;
            let (seed, bodies) = generate::<u64>(big.as_ref(), small.as_ref(), base, level, bound, seeder.as_mut());
            let ours = expand(seed, &bodies, base, level, 40);
            let theirs = allocate_and_generate_new_seeded_lwe_keyswitch_key(
                &big,
                &small,
                base,
                level,
                DynamicDistribution::<u64>::new_t_uniform(bound),
                CiphertextModulus::new_native(),
                seeder.as_mut(),
            )
            .decompress_into_lwe_keyswitch_key();
            assert_eq!(ours.as_ref().len(), theirs.as_ref().len());
            let diffs: Vec<f64> = phases(&ours, small.as_ref())
                .iter()
                .zip(phases(&theirs, small.as_ref()))
                .map(|(o, t)| o.wrapping_sub(t) as i64 as f64)
                .collect();
            assert_two_noises(&diffs, bound, &format!("64-bit {base:?} {level:?}"));
            // 32-bit (KS32)
            let bound = 12;
            let small32: Vec<u32> = small.as_ref().iter().map(|&b| b as u32).collect();
            let (seed, bodies) = generate::<u32>(big.as_ref(), &small32, base, level, bound, seeder.as_mut());
            let ours = expand(seed, &bodies, base, level, 40);
            let theirs = allocate_and_generate_new_seeded_lwe_keyswitch_key(
                &big,
                &LweSecretKey::from_container(small32.clone()),
                base,
                level,
                DynamicDistribution::<u32>::new_t_uniform(bound),
                CiphertextModulus::<u32>::new_native(),
                seeder.as_mut(),
            )
            .decompress_into_lwe_keyswitch_key();
            let diffs: Vec<f64> = phases(&ours, &small32)
                .iter()
                .zip(phases(&theirs, &small32))
                .map(|(o, t)| o.wrapping_sub(t) as i32 as f64)
                .collect();
            assert_two_noises(&diffs, bound, &format!("32-bit {base:?} {level:?}"));
        }
    }
}
