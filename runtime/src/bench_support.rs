//! The baseline for the executor benchmark (`bench/`): a bare loop of tfhe-rs calls — keyswitch,
//! centered modulus switch, blind rotation, sample extraction — over a list of ciphertexts, with
//! per-thread scratch and nothing else. Not part of the supported API.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use tfhe::core_crypto::fft_impl::fft64::crypto::bootstrap::batch_blind_rotate_assign_scratch;
use tfhe::core_crypto::prelude::*;

use crate::exec::{keyswitch_batch, msed, KsWord, Msed};
use crate::keys::{modulus, Ksk, ServerKeys};
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
                let acc = GlweCiphertext::new(0u64, glwe_size, n_poly, modulus());
                (fft, buf, acc)
            },
            |(fft, buf, acc), ct| {
                let msed = reference_switch(&boot.ksk, &ct.as_view(), p.lwe_dimension() + 1, log_modulus);
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
    let n = inputs.lwe_ciphertext_count().0;
    let (ks, ks_batch, switched) = match &boot.ksk {
        Ksk::Native(k) => time_keyswitch(k, inputs, batch, p.lwe_dimension() + 1, log_modulus),
        Ksk::Ks32(k) => time_keyswitch(k, inputs, batch, p.lwe_dimension() + 1, log_modulus),
    };
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
    for msed in &switched {
        acc.as_mut().copy_from_slice(lut.as_ref());
        blind_rotate_assign_mem_optimized(msed, &mut acc, &boot.bsk, fft.as_view(), buf.stack());
    }
    let br = t0.elapsed().as_secs_f64() / n as f64;
    let mut accs = GlweCiphertextList::new(0u64, glwe_size, n_poly, GlweCiphertextCount(batch), modulus());
    let t0 = Instant::now();
    for msed in switched.chunks(batch) {
        let glwe_len = glwe_size.0 * n_poly.0;
        let mut view = GlweCiphertextList::from_container(
            &mut accs.as_mut()[..msed.len() * glwe_len],
            glwe_size,
            n_poly,
            modulus(),
        );
        for mut a in view.iter_mut() {
            a.as_mut().copy_from_slice(lut.as_ref());
        }
        boot.bsk
            .as_view()
            .batch_blind_rotate_assign(view.as_mut_view(), msed, fft.as_view(), buf.stack());
    }
    let br_batch = t0.elapsed().as_secs_f64() / n as f64;
    (ks, ks_batch, br, br_batch)
}

/// tfhe-rs's keyswitch of one ciphertext (either modulus), then the centered modulus switch.
fn reference_switch(ksk: &Ksk, ct: &LweCiphertext<&[u64]>, small_len: usize, log: CiphertextModulusLog) -> Msed {
    fn go<O: KsWord>(
        k: &LweKeyswitchKeyOwned<O>,
        ct: &LweCiphertext<&[u64]>,
        small_len: usize,
        log: CiphertextModulusLog,
    ) -> Msed {
        let mut small = vec![O::ZERO; small_len];
        O::reference_keyswitch(k, ct, &mut small);
        msed(LweCiphertext::from_container(&small[..], O::ciphertext_modulus()), log)
    }
    match ksk {
        Ksk::Native(k) => go(k, ct, small_len, log),
        Ksk::Ks32(k) => go(k, ct, small_len, log),
    }
}

/// Single-thread times of tfhe-rs's keyswitch and of the executor's batched one (checked equal, per
/// lookup, in seconds) and the modulus-switched outputs.
fn time_keyswitch<O: KsWord>(
    ksk: &LweKeyswitchKeyOwned<O>,
    inputs: &LweCiphertextListOwned<u64>,
    batch: usize,
    small_len: usize,
    log: CiphertextModulusLog,
) -> (f64, f64, Vec<Msed>) {
    let n = inputs.lwe_ciphertext_count().0;
    let big_len = inputs.lwe_size().0;
    let mut smalls = vec![O::ZERO; n * small_len];
    let t0 = Instant::now();
    for (ct, small) in inputs.iter().zip(smalls.chunks_exact_mut(small_len)) {
        O::reference_keyswitch(ksk, &ct, small);
    }
    let ks = t0.elapsed().as_secs_f64() / n as f64;
    let mut outs = vec![O::ZERO; batch * small_len];
    let t0 = Instant::now();
    for (j, chunk) in inputs.as_ref().chunks(batch * big_len).enumerate() {
        let m = chunk.len() / big_len;
        keyswitch_batch(ksk, chunk, &mut outs[..m * small_len], big_len, small_len);
        assert!(
            smalls[j * batch * small_len..][..m * small_len] == outs[..m * small_len],
            "the batched keyswitch equals tfhe-rs's"
        );
    }
    let ks_batch = t0.elapsed().as_secs_f64() / n as f64;
    let switched = smalls
        .chunks_exact(small_len)
        .map(|s| msed(LweCiphertext::from_container(s, O::ciphertext_modulus()), log))
        .collect();
    (ks, ks_batch, switched)
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

/// The executor's batched keyswitch and modulus switch of `padded` (inputs of phases `fresh`): the
/// keyswitch errors, the modulus-switch errors, and the first `rotations` switched ciphertexts with
/// their phase modulo 2N.
#[allow(clippy::type_complexity)]
fn switch_errors<O: KsWord>(
    ksk: &LweKeyswitchKeyOwned<O>,
    small_key: &[u64],
    (padded, ks_len, small_len, fresh, log, rotations): (&[u64], usize, usize, &[u64], CiphertextModulusLog, usize),
) -> (Vec<f64>, Vec<f64>, Vec<(Msed, usize)>) {
    let count = fresh.len();
    let mut smalls = vec![O::ZERO; count * small_len];
    for (i, o) in padded.chunks(16 * ks_len).zip(smalls.chunks_mut(16 * small_len)) {
        keyswitch_batch(ksk, i, o, ks_len, small_len);
    }
    let two_n = 1usize << log.0;
    let s: Vec<usize> = small_key.iter().map(|&b| b as usize).collect();
    let mut keyswitch = Vec::with_capacity(count);
    let mut modulus_switch = Vec::with_capacity(count);
    let mut switched: Vec<(Msed, usize)> = Vec::new();
    for (j, small) in smalls.chunks_exact(small_len).enumerate() {
        // the phase under the small key, as a 64-bit torus element
        let (mask, body) = small.split_at(small_len - 1);
        let dot = mask
            .iter()
            .zip(small_key)
            .fold(O::ZERO, |a, (&m, &k)| if k == 1 { a.wrapping_add(m) } else { a });
        let phase = body[0].wrapping_sub(dot).to_torus64();
        keyswitch.push(torus(phase.wrapping_sub(fresh[j])));
        let m = msed(LweCiphertext::from_container(small, O::ciphertext_modulus()), log);
        let dot = m.mask.iter().zip(&s).fold(0usize, |a, (m, k)| (a + m * k) % two_n);
        let r = (m.body + two_n - dot) % two_n;
        // the switched phase as a torus fraction, centered, minus the phase before the switch
        let centered = if r >= two_n / 2 {
            r as f64 - two_n as f64
        } else {
            r as f64
        };
        modulus_switch.push(centered / two_n as f64 - torus(phase));
        if switched.len() < rotations {
            switched.push((m, r));
        }
    }
    (keyswitch, modulus_switch, switched)
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
    let n_poly = PolynomialSize(p.polynomial_size());
    let log = n_poly.to_blind_rotation_input_modulus_log();
    let small_key = keys.smalls[q].as_ref();
    let args = (&padded[..], ks_len, small_len, &fresh[..], log, rotations);
    let (keyswitch, modulus_switch, switched) = match &boot.ksk {
        Ksk::Native(k) => switch_errors(k, small_key, args),
        Ksk::Ks32(k) => switch_errors(k, small_key, args),
    };
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
