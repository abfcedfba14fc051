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
    let p = &keys.params;
    let boot = keys
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
    let p = &keys.params;
    let boot = keys
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
