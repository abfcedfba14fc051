//! The baseline for the executor benchmark (`bench/`): a bare loop of tfhe-rs calls — keyswitch,
//! centered modulus switch, blind rotation, sample extraction — over a list of ciphertexts, with
//! per-thread scratch and nothing else. Not part of the supported API.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use tfhe::core_crypto::prelude::*;

use crate::keys::{modulus, ServerKeys};
use crate::values::{Ciphertexts, CtData};

/// Decompresses the ciphertexts of the first input of `cts`.
pub fn input_list(cts: &Ciphertexts) -> LweCiphertextListOwned<u64> {
    match &cts.tensors[0].data {
        CtData::Seeded(s) => s.clone().par_decompress_into_lwe_ciphertext_list(),
        CtData::Full(f) => f.clone(),
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
                keyswitch_lwe_ciphertext(&keys.ksk, &ct, small);
                let msed = lwe_ciphertext_centered_binary_modulus_switch::<u64, usize, _>(small.as_view(), log_modulus);
                acc.as_mut().copy_from_slice(lut.as_ref());
                blind_rotate_assign_mem_optimized(&msed, acc, &keys.bsk, fft.as_view(), buf.stack());
                let mut out = LweCiphertext::new(0u64, LweSize(p.big_lwe_dimension() + 1), modulus());
                extract_lwe_sample_from_glwe_ciphertext(acc, &mut out, MonomialDegree(0));
                out
            },
        )
        .collect();
    (out, t0.elapsed())
}
