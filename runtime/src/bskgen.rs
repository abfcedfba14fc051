//! Bootstrap keys: generated with an exact FFT product and ChaCha20 masks (docs/crypto.md, "Key
//! generation").
//!
//! A bootstrap key is `n` GGSW encryptions of the small key's bits under the GLWE key: `n·ℓ·(k+1)`
//! GLWE rows, each with a body `b = Σ_i a_i·s_i + e + m` (mod 2^64, negacyclic in `N`). tfhe-rs
//! computes the `Σ a_i·s_i` with Karatsuba (~N^1.58 multiplications per polynomial) and draws masks
//! and noise byte by byte from AES-CTR: together most of key generation here (0.42–0.89 s per
//! partition on this machine, and the server's mask regeneration another 0.07–0.13 s). This module:
//!
//! - **Masks.** The ChaCha20 keystream of a fresh public 256-bit seed, in the key's order
//!   ([`crate::packed::BskMasks::ChaCha20`]); the server regenerates them from the seed
//!   ([`crate::packed::chacha_bootstrap_key`]), each GGSW's from its own position in the stream.
//! - **Product, exact.** Each mask coefficient is split into three limbs of at most 22 bits; each
//!   limb polynomial is multiplied by the binary key in f64 (tfhe-rs's negacyclic FFT, the key's
//!   transform computed once), the `k` products summed in the Fourier domain. The true result `R` of a
//!   limb is an integer with `|R| ≤ k·N·2^22 ≤ 2^39` (`k·N ≤ 2^17`, validated parameters); the key's
//!   transform is scaled by `2^-41`, so the inverse transform, read as a torus element, is
//!   `R·2^23 + ε` with `|ε|` far below `2^22` (f64 error ≲ `2^-53 · 2^39 · log2 N` in units of
//!   `R`), and rounding `(u + 2^22) >> 23` recovers `R` exactly; then `R·2^lo` is added modulo 2^64.
//!   `tests::fft_product_is_exact` checks it against tfhe-rs's Karatsuba on random and extreme inputs
//!   for every (k, N) the search can choose.
//! - **Noise.** TUniform at the set's GLWE bound ([`t_uniform`], exact on `b + 2` random bits),
//!   from ChaCha20 under a secret 256-bit seed drawn from the OS seeder, one stream per GGSW.
//! - **Messages.** As tfhe-rs's `encrypt_constant_seeded_ggsw_ciphertext`: with
//!   `factor = −bit · 2^(64 − base_log·level)`, row `r < k` of a level encrypts
//!   `factor·s_r` and the last row `−factor` in its constant coefficient; levels from the last
//!   (`ℓ`) to the first. `tests::same_messages_as_tfhe_rs` decrypts every row of ours and of
//!   tfhe-rs's key for the same secret keys and compares.

use std::sync::Mutex;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use rayon::prelude::*;
use tfhe::core_crypto::fft_impl::fft64::c64;
use tfhe::core_crypto::fft_impl::fft64::math::fft::{setup_custom_fft_plan, Fft};
use tfhe::core_crypto::fft_impl::fft64::math::polynomial::FourierPolynomial;
use tfhe::core_crypto::prelude::*;
use zeroize::Zeroize;

/// How long tfhe-fft measures each candidate algorithm when it plans an FFT size.
const PLAN_MEASURE: Duration = Duration::from_millis(2);

/// Plans the FFT of polynomials of `size` once per process, measuring each candidate algorithm for
/// [`PLAN_MEASURE`] (tfhe-rs's own `Fft::new` measures 10 ms each: ~0.1 s per size up to N = 1024 and
/// ~0.22 s above, paid by the first key generation, expansion or run of a process; 2 ms picks the
/// same algorithms on this machine in a fifth of the time). Later `Fft::new` calls, ours and
/// tfhe-rs's, find the plan registered.
pub(crate) fn prepare_fft(size: PolynomialSize) {
    static PLANNED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    let mut planned = PLANNED.lock().unwrap_or_else(|e| e.into_inner());
    if !planned.contains(&size.0) {
        let plan = tfhe_fft::unordered::Plan::new(size.0 / 2, tfhe_fft::unordered::Method::Measure(PLAN_MEASURE));
        setup_custom_fft_plan(plan);
        planned.push(size.0);
    }
}

/// Limbs of a mask coefficient: `[lo, hi)` bit ranges of at most 22 bits.
const LIMBS: [(u32, u32); 3] = [(0, 22), (22, 43), (43, 64)];
/// The key's transform is scaled by `2^-SCALE_LOG`: a limb product `R` (`|R| < 2^39`) reads back as
/// `R·2^(64 − SCALE_LOG)` on the torus.
const SCALE_LOG: u32 = 41;
const SHIFT: u32 = 64 - SCALE_LOG;

/// The binary GLWE key in the Fourier domain, scaled by `2^-SCALE_LOG`; wiped on drop.
pub(crate) struct KeyProduct {
    fft: Fft,
    n: usize,
    k: usize,
    /// `k` transforms of `n/2` values each.
    key: Vec<c64>,
}

impl Drop for KeyProduct {
    fn drop(&mut self) {
        wipe_c64(&mut self.key);
    }
}

fn wipe_c64(v: &mut [c64]) {
    // zeroize's volatile writes: not elided although the buffer is dropped right after
    for c in v.iter_mut() {
        c.re.zeroize();
        c.im.zeroize();
    }
}

/// Per-thread buffers of [`KeyProduct::add_product`]; wiped on drop (they hold `a·s`, which with the
/// public body would reveal the noise and message).
pub(crate) struct Scratch {
    buffers: ComputationBuffers,
    limb: Vec<u64>,
    out: Vec<u64>,
    fourier: Vec<c64>,
    acc: Vec<c64>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.limb.zeroize();
        self.out.zeroize();
        wipe_c64(&mut self.fourier);
        wipe_c64(&mut self.acc);
    }
}

impl KeyProduct {
    /// `key`: binary coefficients (0 or 1), `k` polynomials of `n`.
    pub(crate) fn new(key: &GlweSecretKey<&[u64]>) -> KeyProduct {
        let n = key.polynomial_size().0;
        let k = key.glwe_dimension().0;
        prepare_fft(key.polynomial_size());
        let fft = Fft::new(key.polynomial_size());
        let mut scratch_buffers = ComputationBuffers::new();
        scratch_buffers.resize(fft.as_view().forward_scratch().unaligned_bytes_required());
        let mut out = vec![c64::new(0.0, 0.0); k * n / 2];
        let scale = (-(SCALE_LOG as f64)).exp2();
        for (poly, dst) in key.as_polynomial_list().iter().zip(out.chunks_exact_mut(n / 2)) {
            fft.as_view().forward_as_integer(
                FourierPolynomial { data: &mut *dst },
                poly.as_view(),
                scratch_buffers.stack(),
            );
            for c in dst.iter_mut() {
                *c *= scale;
            }
        }
        KeyProduct { fft, n, k, key: out }
    }

    pub(crate) fn scratch(&self) -> Scratch {
        let fft = self.fft.as_view();
        let mut buffers = ComputationBuffers::new();
        buffers.resize(
            fft.forward_scratch()
                .unaligned_bytes_required()
                .max(fft.backward_scratch().unaligned_bytes_required()),
        );
        Scratch {
            buffers,
            limb: vec![0; self.n],
            out: vec![0; self.n],
            fourier: vec![c64::new(0.0, 0.0); self.n / 2],
            acc: vec![c64::new(0.0, 0.0); self.n / 2],
        }
    }

    /// `body += Σ_i mask_i·s_i` modulo `X^N + 1` and 2^64, exactly; `mask` holds the `k` polynomials.
    pub(crate) fn add_product(&self, body: &mut [u64], mask: &[u64], s: &mut Scratch) {
        let (n, h) = (self.n, self.n / 2);
        debug_assert_eq!(mask.len(), self.k * n);
        debug_assert_eq!(body.len(), n);
        let fft = self.fft.as_view();
        for &(lo, hi) in &LIMBS {
            let bits = hi - lo;
            let keep = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            s.acc.fill(c64::new(0.0, 0.0));
            for (a, key) in mask.chunks_exact(n).zip(self.key.chunks_exact(h)) {
                for (l, &x) in s.limb.iter_mut().zip(a) {
                    *l = (x >> lo) & keep;
                }
                fft.forward_as_integer(
                    FourierPolynomial {
                        data: &mut s.fourier[..],
                    },
                    Polynomial::from_container(&s.limb[..]),
                    s.buffers.stack(),
                );
                for ((acc, f), kf) in s.acc.iter_mut().zip(&s.fourier).zip(key) {
                    *acc += *f * *kf;
                }
            }
            fft.backward_as_torus(
                Polynomial::from_container(&mut s.out[..]),
                FourierPolynomial { data: &s.acc[..] },
                s.buffers.stack(),
            );
            for (b, &u) in body.iter_mut().zip(&s.out) {
                // u = R·2^SHIFT + ε (mod 2^64) with |R| < 2^39 and |ε| ≪ 2^(SHIFT−1)
                let r = (u as i64).wrapping_add(1 << (SHIFT - 1)) >> SHIFT;
                *b = b.wrapping_add((r as u64) << lo);
            }
        }
    }
}

/// The bodies of a bootstrap key of `small` under `glwe` whose masks are the ChaCha20 keystream of a
/// fresh public seed ([`crate::packed::BskMasks::ChaCha20`]): `(seed, bodies)`, the bodies in the
/// layout of tfhe-rs's seeded key (GGSW, level from the last, row), with tfhe-rs's encodings.
pub(crate) fn generate_bootstrap_key(
    small: &LweSecretKey<&[u64]>,
    glwe: &GlweSecretKey<&[u64]>,
    base_log: DecompositionBaseLog,
    level: DecompositionLevelCount,
    noise_bound_log2: u32,
    seeder: &mut dyn Seeder,
) -> ([u8; 32], Vec<u64>) {
    let (k, n) = (glwe.glwe_dimension().0, glwe.polynomial_size().0);
    let mask_seed = seed_bytes(seeder);
    // secret: the noise of every body (one ChaCha20 stream per GGSW)
    let mut noise_seed = seed_bytes(seeder);
    let product = KeyProduct::new(glwe);
    let keys: Vec<&[u64]> = glwe.as_ref().chunks_exact(n).collect();
    let rows = level.0 * (k + 1);
    let mut bodies = vec![0u64; small.lwe_dimension().0 * rows * n];
    bodies
        .par_chunks_exact_mut(rows * n)
        .zip(small.as_ref().par_iter())
        .enumerate()
        .for_each_init(
            || (product.scratch(), vec![0u64; rows * k * n]),
            |(scratch, masks), (g, (bodies, &bit))| {
                crate::packed::chacha_ggsw_masks(mask_seed, g, masks);
                let mut noise = ChaCha20Rng::from_seed(noise_seed);
                noise.set_stream(g as u64);
                for (row, (body, mask)) in bodies.chunks_exact_mut(n).zip(masks.chunks_exact(k * n)).enumerate() {
                    let (li, r) = (row / (k + 1), row % (k + 1));
                    // tfhe-rs's `DecompositionTerm(level, base_log, −bit).to_recomposition_summand()`
                    // for the native modulus: level `ℓ − li` (1 is the most significant)
                    let factor = bit.wrapping_neg() << (64 - base_log.0 * (level.0 - li));
                    if r < k {
                        for (b, &s) in body.iter_mut().zip(keys[r]) {
                            *b = s.wrapping_mul(factor);
                        }
                    } else {
                        body.fill(0);
                        body[0] = factor.wrapping_neg();
                    }
                    for b in body.iter_mut() {
                        *b = b.wrapping_add(t_uniform(noise.next_u64(), noise_bound_log2));
                    }
                    product.add_product(body, mask, scratch);
                }
            },
        );
    noise_seed.zeroize();
    (mask_seed, bodies)
}

/// 32 bytes from the seeder (two of its 128-bit seeds).
pub(crate) fn seed_bytes(seeder: &mut dyn Seeder) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&seeder.seed().0.to_le_bytes());
    out[16..].copy_from_slice(&seeder.seed().0.to_le_bytes());
    out
}

/// A TUniform sample of bound `2^b` (tfhe-rs's `TUniform`: uniform on `(−2^b, 2^b)`, and `±2^b`
/// each with half that probability) modulo 2^64, from the `b + 2` low bits `r` of `word`:
/// `(r >> 1) + (r & 1) − 2^b` takes every interior value for two `r` and each end for one.
pub(crate) fn t_uniform(word: u64, b: u32) -> u64 {
    debug_assert!(b <= 62, "TUniform needs b + 2 ≤ 64 bits");
    let r = word & (u64::MAX >> (62 - b.min(62)));
    ((r >> 1) + (r & 1)).wrapping_sub(1u64 << b.min(62))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_wrapping_add_multisum_assign;

    /// Every `b + 2`-bit word, once: each interior value of `[−2^b, 2^b]` twice, each end once.
    #[test]
    fn t_uniform_is_exact() {
        for b in [0u32, 1, 3, 7] {
            let mut counts = std::collections::BTreeMap::<i64, u32>::new();
            for r in 0..(1u64 << (b + 2)) {
                // high bits beyond b + 2 are ignored
                let x = t_uniform(r | (0xdead_beef << 20), b) as i64;
                *counts.entry(x).or_default() += 1;
            }
            let top = 1i64 << b;
            assert_eq!(counts.len() as i64, 2 * top + 1, "b = {b}: the support is [−2^b, 2^b]");
            for (&x, &c) in &counts {
                let want = if x.abs() == top { 1 } else { 2 };
                assert!(x.abs() <= top && c == want, "b = {b}: {x} drawn {c} times");
            }
        }
        assert_eq!(t_uniform(u64::MAX, 62) as i64, 1 << 62);
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Every (k, N) with `k·N ≤ 2^17` that file validation accepts at N ≤ 2^14 (larger N are checked
    /// at k = 1 on the extreme input only, for time): random masks and keys, then the extreme case
    /// (every mask coefficient 2^64 − 1 or 2^63, the key all ones) where `|R|` is largest.
    #[test]
    fn fft_product_is_exact() {
        let mut st = 0x1234_5678_9abc_def1u64;
        for log_n in 8..=14u32 {
            let n = 1usize << log_n;
            for k in [1usize, 2, 3, 4, 6] {
                if k * n > 1 << 17 {
                    continue;
                }
                let cases: Vec<(Vec<u64>, Vec<u64>)> = vec![
                    (
                        (0..k * n).map(|_| xorshift(&mut st)).collect(),
                        (0..k * n).map(|_| xorshift(&mut st) & 1).collect(),
                    ),
                    (vec![u64::MAX; k * n], vec![1; k * n]),
                    (
                        (0..k * n)
                            .map(|i| if i % 3 == 0 { 1 << 63 } else { u64::MAX >> 1 })
                            .collect(),
                        vec![1; k * n],
                    ),
                    (
                        (0..k * n).map(|_| xorshift(&mut st) | 0x003f_ffff_ffc0_0000).collect(),
                        (0..k * n).map(|i| u64::from(i % 5 != 0)).collect(),
                    ),
                ];
                for (mask, key) in cases {
                    let glwe = GlweSecretKey::from_container(&key[..], PolynomialSize(n));
                    let product = KeyProduct::new(&glwe);
                    let mut scratch = product.scratch();
                    let start: Vec<u64> = (0..n).map(|_| xorshift(&mut st)).collect();
                    let mut fast = start.clone();
                    product.add_product(&mut fast, &mask, &mut scratch);
                    let mut want = Polynomial::from_container(start);
                    polynomial_wrapping_add_multisum_assign(
                        &mut want,
                        &PolynomialList::from_container(&mask[..], PolynomialSize(n)),
                        &PolynomialList::from_container(&key[..], PolynomialSize(n)),
                    );
                    assert!(
                        fast == want.into_container(),
                        "k = {k}, N = {n}: the FFT product differs"
                    );
                }
            }
        }
    }

    /// Our key and tfhe-rs's for the same secret keys: every GLWE row's phase (`body − Σ a·s`) differs
    /// by the difference of two noises only (the messages, multiples of `2^(64 − base_log·level)`,
    /// are equal), and that difference has the variance of two TUniform samples at the bound.
    #[test]
    fn same_messages_as_tfhe_rs() {
        let mut seeder = new_seeder();
        let mut secret = SecretRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed());
        let small = allocate_and_generate_new_binary_lwe_secret_key(LweDimension(12), &mut secret);
        let (k, n) = (2usize, 256usize);
        let glwe = allocate_and_generate_new_binary_glwe_secret_key(GlweDimension(k), PolynomialSize(n), &mut secret);
        let bound = 17u32;
        let noise = DynamicDistribution::new_t_uniform(bound);
        let phases = |bsk: &LweBootstrapKeyOwned<u64>| -> Vec<u64> {
            let mut out = Vec::new();
            for row in bsk.as_ref().chunks_exact((k + 1) * n) {
                let mut phase = Polynomial::from_container(row[k * n..].to_vec());
                let mut minus = Polynomial::new(0u64, PolynomialSize(n));
                polynomial_wrapping_add_multisum_assign(
                    &mut minus,
                    &PolynomialList::from_container(&row[..k * n], PolynomialSize(n)),
                    &glwe.as_polynomial_list(),
                );
                for (p, m) in phase.as_mut().iter_mut().zip(minus.as_ref()) {
                    *p = p.wrapping_sub(*m);
                }
                out.extend(phase.into_container());
            }
            out
        };
        for (base, level) in [(15usize, 2usize), (23, 1), (8, 3)] {
            let (base, level) = (DecompositionBaseLog(base), DecompositionLevelCount(level));
            let (seed, bodies) =
                generate_bootstrap_key(&small.as_view(), &glwe.as_view(), base, level, bound, seeder.as_mut());
            let ours =
                crate::packed::chacha_bootstrap_key(seed, &bodies, GlweSize(k + 1), PolynomialSize(n), base, level);
            let theirs = par_allocate_and_generate_new_seeded_lwe_bootstrap_key(
                &small,
                &glwe,
                base,
                level,
                noise,
                crate::keys::modulus(),
                seeder.as_mut(),
            )
            .par_decompress_into_lwe_bootstrap_key();
            assert_eq!(ours.as_ref().len(), theirs.as_ref().len());
            let diffs: Vec<f64> = phases(&ours)
                .iter()
                .zip(phases(&theirs))
                .map(|(o, t)| o.wrapping_sub(t) as i64 as f64)
                .collect();
            assert_two_noises(&diffs, bound, &format!("{base:?} {level:?}"));
        }
    }

    /// `diffs` are differences of phases of the same messages under two keys: each below `2^(b+1)`
    /// (else a message differs), of the variance of two TUniform(b) samples within six standard
    /// errors of the sample variance (the difference of two uniforms has kurtosis 2.4, so the
    /// relative standard error is `√(1.4/N)`: 1.8 % at N = 4096), which must be at most 15 %.
    pub(crate) fn assert_two_noises(diffs: &[f64], b: u32, what: &str) {
        let worst = diffs.iter().fold(0f64, |m, d| m.max(d.abs()));
        assert!(
            worst <= 2f64.powi(b as i32 + 1),
            "{what}: a message differs (|diff| {worst:e})"
        );
        let var = diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64;
        let want = 2.0 * (2f64.powi(2 * b as i32 + 1) + 1.0) / 6.0;
        let tol = 6.0 * (1.4 / diffs.len() as f64).sqrt();
        assert!(
            tol <= 0.15,
            "{what}: {} samples are too few for the variance check",
            diffs.len()
        );
        assert!(
            (var / want - 1.0).abs() < tol,
            "{what}: noise variance {var:e}, want {want:e} (±{tol:.3})"
        );
    }
}
