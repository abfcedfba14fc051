//! The baseline for the executor benchmark (`bench/`): a bare loop of tfhe-rs calls — keyswitch,
//! centered modulus switch, blind rotation, sample extraction — over a list of ciphertexts, with
//! per-thread scratch and nothing else. Not part of the supported API.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use tfhe::core_crypto::fft_impl::fft64::crypto::bootstrap::batch_blind_rotate_assign_scratch;
use tfhe::core_crypto::prelude::*;

use crate::exec::Msed;
use crate::keys::{modulus, ServerKeys};
use crate::values::{Ciphertexts, CtData};

/// Decompresses the ciphertexts of the first input of `cts`.
pub fn input_list(cts: &Ciphertexts) -> LweCiphertextListOwned<u64> {
    let t = &cts.tensors[0];
    let n = t.shape.iter().product();
    match &t.data {
        CtData::Seeded(s) => CtData::Seeded(s.clone()).into_lwe_list(n),
        CtData::Full(f) => f.clone(),
        CtData::Packed(p) => CtData::Packed(p.clone()).into_lwe_list(n),
        CtData::PackedXof(p) => CtData::PackedXof(p.clone()).into_lwe_list(n),
        CtData::Clear(_) => panic!("the first input of a benchmark program is encrypted"),
    }
}

/// Bootstraps every ciphertext of `inputs` with `table` (torus values, `2^precision` entries) in
/// the current rayon pool; returns the outputs and the wall time.
pub fn bare_pbs_loop(
    keys: &ServerKeys,
    inputs: &LweCiphertextListOwned<u64>,
    precision: u32,
    table: &[u64],
) -> (Vec<LweCiphertextOwned<u64>>, Duration) {
    let p = &keys.partitions[0].params;
    let boot = keys.partitions[0]
        .bootstrap
        .as_ref()
        .expect("benchmark keys come from ClientKeys::evaluation_keys, with a bootstrap key");
    let n_poly = PolynomialSize(p.polynomial_size());
    let glwe_size = GlweSize(p.glwe_dimension() + 1);
    let lut = generate_programmable_bootstrap_glwe_lut(n_poly, glwe_size, 1 << precision, modulus(), 1u64, |m: u64| {
        table[m as usize]
    });
    let log_modulus = n_poly.to_blind_rotation_input_modulus_log();
    let t0 = Instant::now();
    let out: Vec<LweCiphertextOwned<u64>> = inputs
        .par_iter()
        .map_init(
            || {
                let fft = Fft::new(n_poly);
                let mut buf = ComputationBuffers::new();
                buf.resize(
                    blind_rotate_assign_mem_optimized_requirement::<u64>(glwe_size, n_poly, fft.as_view())
                        .unaligned_bytes_required(),
                );
                let small = LweCiphertext::new(0u64, LweSize(p.lwe_dimension() + 1), modulus());
                let acc = GlweCiphertext::new(0u64, glwe_size, n_poly, modulus());
                (fft, buf, small, acc)
            },
            |(fft, buf, small, acc), ct| {
                keyswitch_lwe_ciphertext(&boot.ksk, &ct, small);
                let msed = lwe_ciphertext_centered_binary_modulus_switch::<u64, usize, _>(small.as_view(), log_modulus);
                acc.as_mut().copy_from_slice(lut.as_ref());
                blind_rotate_assign_mem_optimized(&msed, acc, &boot.bsk, fft.as_view(), buf.stack());
                let mut out = LweCiphertext::new(0u64, LweSize(p.big_lwe_dimension() + 1), modulus());
                extract_lwe_sample_from_glwe_ciphertext(acc, &mut out, MonomialDegree(0));
                out
            },
        )
        .collect();
    (out, t0.elapsed())
}

/// Times of the parts of one lookup at these keys' parameters, single thread, in seconds:
/// (keyswitch, keyswitch in batches of `batch` (the executor's), blind rotation alone, blind rotation
/// in batches of `batch`, per lookup).
pub fn time_parts(keys: &ServerKeys, inputs: &LweCiphertextListOwned<u64>, batch: usize) -> (f64, f64, f64, f64) {
    let p = &keys.partitions[0].params;
    let boot = keys.partitions[0]
        .bootstrap
        .as_ref()
        .expect("benchmark keys come from ClientKeys::evaluation_keys, with a bootstrap key");
    let n_poly = PolynomialSize(p.polynomial_size());
    let glwe_size = GlweSize(p.glwe_dimension() + 1);
    let log_modulus = n_poly.to_blind_rotation_input_modulus_log();
    let lut = generate_programmable_bootstrap_glwe_lut(n_poly, glwe_size, 2, modulus(), 1u64, |m: u64| m << 62);
    let mut small = LweCiphertext::new(0u64, LweSize(p.lwe_dimension() + 1), modulus());
    let n = inputs.lwe_ciphertext_count().0;
    let t0 = Instant::now();
    let mut smalls = Vec::with_capacity(n);
    for ct in inputs.iter() {
        keyswitch_lwe_ciphertext(&boot.ksk, &ct, &mut small);
        smalls.push(small.clone());
    }
    let ks = t0.elapsed().as_secs_f64() / n as f64;
    let small_len = p.lwe_dimension() + 1;
    let big_len = p.big_lwe_dimension() + 1;
    let mut outs = vec![0u64; batch * small_len];
    let t0 = Instant::now();
    for (j, chunk) in inputs.as_ref().chunks(batch * big_len).enumerate() {
        let m = chunk.len() / big_len;
        crate::exec::keyswitch_batch(&boot.ksk, chunk, &mut outs[..m * small_len], big_len, small_len);
        for (s, o) in smalls[j * batch..].iter().zip(outs.chunks_exact(small_len)).take(m) {
            assert_eq!(s.as_ref(), o, "the batched keyswitch equals tfhe-rs's");
        }
    }
    let ks_batch = t0.elapsed().as_secs_f64() / n as f64;
    let fft = Fft::new(n_poly);
    let mut buf = ComputationBuffers::new();
    buf.resize(
        batch_blind_rotate_assign_scratch::<u64>(glwe_size, n_poly, CiphertextCount(batch), fft.as_view())
            .unaligned_bytes_required()
            .max(
                blind_rotate_assign_mem_optimized_requirement::<u64>(glwe_size, n_poly, fft.as_view())
                    .unaligned_bytes_required(),
            ),
    );
    let mut acc = lut.clone();
    let t0 = Instant::now();
    for s in &smalls {
        let msed = lwe_ciphertext_centered_binary_modulus_switch::<u64, usize, _>(s.as_view(), log_modulus);
        acc.as_mut().copy_from_slice(lut.as_ref());
        blind_rotate_assign_mem_optimized(&msed, &mut acc, &boot.bsk, fft.as_view(), buf.stack());
    }
    let br = t0.elapsed().as_secs_f64() / n as f64;
    let mut accs = GlweCiphertextList::new(0u64, glwe_size, n_poly, GlweCiphertextCount(batch), modulus());
    let t0 = Instant::now();
    for chunk in smalls.chunks(batch) {
        let msed: Vec<_> = chunk
            .iter()
            .map(|s| lwe_ciphertext_centered_binary_modulus_switch::<u64, usize, _>(s.as_view(), log_modulus))
            .collect();
        let msed: Vec<Msed> = msed
            .iter()
            .map(|m| Msed {
                body: m.body(),
                mask: m.mask().collect(),
                log: log_modulus,
            })
            .collect();
        let glwe_len = glwe_size.0 * n_poly.0;
        let mut view = GlweCiphertextList::from_container(
            &mut accs.as_mut()[..chunk.len() * glwe_len],
            glwe_size,
            n_poly,
            modulus(),
        );
        for mut a in view.iter_mut() {
            a.as_mut().copy_from_slice(lut.as_ref());
        }
        boot.bsk
            .as_view()
            .batch_blind_rotate_assign(view.as_mut_view(), &msed, fft.as_view(), buf.stack());
    }
    let br_batch = t0.elapsed().as_secs_f64() / n as f64;
    (ks, ks_batch, br, br_batch)
}

/// Phase errors (fractions of the torus) measured along the executor's lookup path, for the
/// noise-model tests (`tests/noise.rs`): each term of the model isolated, without amplification.
pub struct NoiseSamples {
    /// Fresh encryptions of 0 under the big key (the inputs).
    pub fresh: Vec<f64>,
    /// The keyswitch's additive error: phase under the small key after the executor's batched
    /// keyswitch, minus the input's phase.
    pub keyswitch: Vec<f64>,
    /// The centered modulus switch's additive error: phase modulo 2N after the switch, minus the
    /// phase before it.
    pub modulus_switch: Vec<f64>,
    /// The blind rotation's output error: every coefficient of the rotated accumulator (a
    /// constant table), decrypted under the GLWE key, minus the exact rotation of the table.
    pub blind_rotation: Vec<f64>,
}

fn torus(v: u64) -> f64 {
    v as i64 as f64 / 2f64.powi(64)
}

/// Encrypts `count` zeros under the big key, keyswitches them with the executor's batched keyswitch,
/// modulus-switches them as the executor does, and blind-rotates the first `rotations` of them with
/// the Fourier bootstrap key (the executor's batched blind rotation); returns the error of each step.
/// Partition 0's keys; the inputs of its own dimension.
pub fn measure_noise(keys: &crate::ClientKeys, server: &ServerKeys, count: usize, rotations: usize) -> NoiseSamples {
    let dim = server.partitions[0].params.big_lwe_dimension();
    measure_noise_in(keys, server, 0, dim, count, rotations)
}

/// [`measure_noise`] with partition `q`'s keys, on inputs of dimension `input_dim` (the master key's
/// prefix: a slot of another partition, as a lookup of `q` reads it; at most the partition's
/// keyswitch coverage). The inputs are fresh encryptions with partition `q`'s GLWE noise; the
/// keyswitch reads them zero-padded to its coverage, as the executor does.
pub fn measure_noise_in(
    keys: &crate::ClientKeys,
    server: &ServerKeys,
    q: usize,
    input_dim: usize,
    count: usize,
    rotations: usize,
) -> NoiseSamples {
    let part = &server.partitions[q];
    let p = &part.params;
    let boot = part.bootstrap.as_ref().expect("keys with a bootstrap key");
    assert!(
        input_dim <= part.ksk_dim as usize,
        "the keyswitch key covers the inputs"
    );
    let big_key = keys.big_key(input_dim);
    let (big_len, small_len) = (input_dim + 1, p.lwe_dimension() + 1);
    let ks_len = part.ksk_dim as usize + 1;
    let mut seeder = new_seeder();
    let seeder = seeder.as_mut();
    let mut gen = EncryptionRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed(), seeder);
    let mut inputs = LweCiphertextList::new(0u64, LweSize(big_len), LweCiphertextCount(count), modulus());
    encrypt_lwe_ciphertext_list(
        &big_key,
        &mut inputs,
        &PlaintextList::new(0u64, PlaintextCount(count)),
        crate::keys::glwe_noise(p),
        &mut gen,
    );
    let fresh: Vec<u64> = inputs
        .iter()
        .map(|ct| decrypt_lwe_ciphertext(&big_key, &ct).0)
        .collect();
    // zero-padded to the keyswitch key's coverage, body last
    let mut padded = vec![0u64; count * ks_len];
    for (d, c) in padded
        .chunks_exact_mut(ks_len)
        .zip(inputs.as_ref().chunks_exact(big_len))
    {
        d[..big_len].copy_from_slice(c);
        crate::values::pad(d, input_dim);
    }
    let mut smalls = vec![0u64; count * small_len];
    for (i, o) in padded.chunks(16 * ks_len).zip(smalls.chunks_mut(16 * small_len)) {
        crate::exec::keyswitch_batch(&boot.ksk, i, o, ks_len, small_len);
    }
    let n_poly = PolynomialSize(p.polynomial_size());
    let log = n_poly.to_blind_rotation_input_modulus_log();
    let two_n = 2 * p.polynomial_size();
    let s: Vec<usize> = keys.smalls[q].as_ref().iter().map(|&b| b as usize).collect();
    let mut keyswitch = Vec::with_capacity(count);
    let mut modulus_switch = Vec::with_capacity(count);
    let mut switched: Vec<(Msed, usize)> = Vec::new();
    for (j, small) in smalls.chunks_exact(small_len).enumerate() {
        let ct = LweCiphertext::from_container(small, modulus());
        let phase = decrypt_lwe_ciphertext(&keys.smalls[q], &ct).0;
        keyswitch.push(torus(phase.wrapping_sub(fresh[j])));
        let lazy = lwe_ciphertext_centered_binary_modulus_switch::<u64, usize, _>(ct, log);
        let mask: Vec<usize> = lazy.mask().collect();
        let dot = mask.iter().zip(&s).fold(0usize, |a, (m, k)| (a + m * k) % two_n);
        let r = (lazy.body() + two_n - dot) % two_n;
        // the switched phase as a torus fraction, centered, minus the phase before the switch
        let centered = if r >= two_n / 2 {
            r as f64 - two_n as f64
        } else {
            r as f64
        };
        modulus_switch.push(centered / two_n as f64 - torus(phase));
        if switched.len() < rotations {
            switched.push((
                Msed {
                    body: lazy.body(),
                    mask,
                    log,
                },
                r,
            ));
        }
    }
    // blind rotations of a constant table c: the exact result is c·X^(−r)
    let glwe_size = GlweSize(p.glwe_dimension() + 1);
    let c = 1u64 << 61;
    let mut table = GlweCiphertext::new(0u64, glwe_size, n_poly, modulus());
    table.get_mut_body().as_mut().fill(c);
    let fft = Fft::new(n_poly);
    let mut buf = ComputationBuffers::new();
    buf.resize(
        batch_blind_rotate_assign_scratch::<u64>(glwe_size, n_poly, CiphertextCount(1), fft.as_view())
            .unaligned_bytes_required(),
    );
    let mut blind_rotation = Vec::with_capacity(rotations * n_poly.0);
    for (msed, r) in switched {
        let mut accs = GlweCiphertextList::new(0u64, glwe_size, n_poly, GlweCiphertextCount(1), modulus());
        accs.as_mut().copy_from_slice(table.as_ref());
        boot.bsk.as_view().batch_blind_rotate_assign(
            accs.as_mut_view(),
            std::slice::from_ref(&msed),
            fft.as_view(),
            buf.stack(),
        );
        let mut got = PlaintextList::new(0u64, PlaintextCount(n_poly.0));
        decrypt_glwe_ciphertext(&keys.glwe(q), &accs.get(0), &mut got);
        let mut want = Polynomial::from_container(vec![c; n_poly.0]);
        tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_wrapping_monic_monomial_div_assign(
            &mut want,
            MonomialDegree(r),
        );
        blind_rotation.extend(
            got.as_ref()
                .iter()
                .zip(want.as_ref())
                .map(|(g, w)| torus(g.wrapping_sub(*w))),
        );
    }
    NoiseSamples {
        fresh: fresh.into_iter().map(torus).collect(),
        keyswitch,
        modulus_switch,
        blind_rotation,
    }
}
