//! Server side: runs a [`Program`] on ciphertexts with [`ServerKeys`].
//!
//! Execution goes by PBS depth. Stage `d` runs every lookup at depth `d` — for all samples of the
//! batch at once — in parallel with rayon (each worker has its own FFT plan, scratch memory and
//! accumulator; the keys are shared read-only; no locks), then the linear instructions of depth `d`,
//! in parallel over samples. A lookup is: multiply by `2^shift`, add `offset`, keyswitch to the
//! small key, centered modulus switch (the switch the noise formulas assume), blind rotation of the
//! table's accumulator, sample extraction — with the keys of the lookup's partition (and one more
//! extraction per [`Instr::Lane`] of the lookup, from the same rotated accumulator). Slots are stored
//! at the master key's size; a slot of a smaller dimension is padded with zeros (see
//! [`crate::program`]), and the keyswitch of partition `q` reads only the first `ksk_dim` mask
//! elements (the rest are zero by construction: `Program::ksk_dims`).

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use tfhe::core_crypto::fft_impl::fft64::crypto::bootstrap::batch_blind_rotate_assign_scratch;
use tfhe::core_crypto::prelude::*;

use crate::keys::{modulus, modulus32, Bootstrap, Ksk, ServerKeys, ServerPartition};
use crate::program::{Instr, Limits, Program};
use crate::progress::Progress;
use crate::values::{pad, unpack_glwes_into, unpack_used_into, Ciphertexts, CtData, CtTensor, Direction, XofGlweList};
use crate::RuntimeError;

/// Lookups per batched blind rotation: each bootstrap-key row is read once for the whole batch.
pub const BATCH: usize = 16;

/// A modulus-switched ciphertext with its mask materialised, so that the batched blind rotation
/// reads mask element `i` in O(1).
pub(crate) struct Msed {
    pub(crate) body: usize,
    pub(crate) mask: Vec<usize>,
    pub(crate) log: CiphertextModulusLog,
}

impl ModulusSwitchedLweCiphertext<usize> for Msed {
    fn log_modulus(&self) -> CiphertextModulusLog {
        self.log
    }
    fn lwe_dimension(&self) -> LweDimension {
        LweDimension(self.mask.len())
    }
    fn body(&self) -> usize {
        self.body
    }
    fn mask(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.mask.iter().copied()
    }
}

/// One lookup to do: source ciphertext, shift, offset, accumulator, and its lanes (instruction,
/// monomial degree of the extraction), extracted after its own at degree 0.
type Job<'a> = (&'a [u64], u32, u64, &'a GlweCiphertextOwned<u64>, &'a [(usize, usize)]);

/// Per-worker scratch state for the lookups of one partition.
struct Worker {
    fft: Fft,
    buffers: ComputationBuffers,
    /// Inputs of the batch's keyswitches (`src·2^shift + offset`), one big-key LWE after another.
    bigs: Vec<u64>,
    /// Their small-key outputs (modulo 2^64, or 2^32 with KS32).
    smalls: Vec<u64>,
    smalls32: Vec<u32>,
    accs: GlweCiphertextListOwned<u64>,
    msed: Vec<Msed>,
}

impl Worker {
    fn new(keys: &ServerPartition, batch: usize) -> Worker {
        let p = &keys.params;
        let n_poly = PolynomialSize(p.polynomial_size());
        let glwe_size = GlweSize(p.glwe_dimension() + 1);
        crate::bskgen::prepare_fft(n_poly);
        let fft = Fft::new(n_poly);
        let mut buffers = ComputationBuffers::new();
        let req = batch_blind_rotate_assign_scratch::<u64>(glwe_size, n_poly, CiphertextCount(batch), fft.as_view());
        buffers.resize(req.unaligned_bytes_required());
        Worker {
            fft,
            buffers,
            bigs: vec![0u64; batch * (keys.ksk_dim as usize + 1)],
            smalls: if p.ks32() {
                Vec::new()
            } else {
                vec![0u64; batch * (p.lwe_dimension() + 1)]
            },
            smalls32: if p.ks32() {
                vec![0u32; batch * (p.lwe_dimension() + 1)]
            } else {
                Vec::new()
            },
            accs: GlweCiphertextList::new(0u64, glwe_size, n_poly, GlweCiphertextCount(batch), modulus()),
            msed: Vec::with_capacity(batch),
        }
    }

    /// Keyswitch and centered modulus switch of `src·2^shift + offset` (big-key ciphertexts) for
    /// every job, into `self.msed`; consecutive jobs on the same input (a multi_lut) share one.
    ///
    /// The keyswitches of the batch run together: each keyswitch-key row (one per input mask
    /// element and decomposition level, a few KB) is read once and applied to every ciphertext of the
    /// batch while it is in cache, instead of streaming the whole key (tens of MB) once per lookup.
    /// Per ciphertext the arithmetic is exactly tfhe-rs's `keyswitch_lwe_ciphertext` (same signed
    /// decomposition, same key rows in the same order), so the results are bit-identical to it.
    fn switch_batch(&mut self, keys: &ServerPartition, boot: &Bootstrap, jobs: &[Job<'_>]) {
        let big_len = keys.ksk_dim as usize + 1;
        let small_len = keys.params.lwe_dimension() + 1;
        // distinct inputs, and which one each job reads
        let mut which = Vec::with_capacity(jobs.len());
        let mut count = 0usize;
        let mut prev: Option<(*const u64, u32, u64)> = None;
        for &(src, shift, offset, _, _) in jobs {
            let key = (src.as_ptr(), shift, offset);
            if prev != Some(key) {
                // the first ksk_dim mask elements (the slot's others are zero) and the body
                let big = &mut self.bigs[count * big_len..(count + 1) * big_len];
                for (d, s) in big.iter_mut().zip(src) {
                    *d = s.wrapping_shl(shift);
                }
                big[big_len - 1] = src[src.len() - 1].wrapping_shl(shift).wrapping_add(offset);
                count += 1;
            }
            prev = Some(key);
            which.push(count - 1);
        }
        let log = PolynomialSize(keys.params.polynomial_size()).to_blind_rotation_input_modulus_log();
        let bigs = &self.bigs[..count * big_len];
        let (smalls, smalls32) = (&mut self.smalls[..], &mut self.smalls32[..]);
        let switched: Vec<Msed> = match &boot.ksk {
            Ksk::Native(ksk) => switch_all(ksk, bigs, &mut smalls[..count * small_len], big_len, log),
            Ksk::Ks32(ksk) => switch_all(ksk, bigs, &mut smalls32[..count * small_len], big_len, log),
        };
        self.msed.clear();
        self.msed.extend(which.iter().map(|&i| Msed {
            body: switched[i].body,
            mask: switched[i].mask.clone(),
            log: switched[i].log,
        }));
    }

    /// A batch of lookups; per lookup its output ciphertext, then its lanes'.
    fn pbs_batch(&mut self, keys: &ServerPartition, boot: &Bootstrap, jobs: &[Job<'_>]) -> Vec<Vec<Vec<u64>>> {
        let p = &keys.params;
        let l = p.big_lwe_dimension() + 1;
        self.switch_batch(keys, boot, jobs);
        let glwe_size = GlweSize(p.glwe_dimension() + 1);
        let n_poly = PolynomialSize(p.polynomial_size());
        let glwe_len = glwe_size.0 * n_poly.0;
        let mut accs = GlweCiphertextList::from_container(
            &mut self.accs.as_mut()[..jobs.len() * glwe_len],
            glwe_size,
            n_poly,
            modulus(),
        );
        for (mut acc, job) in accs.iter_mut().zip(jobs) {
            acc.as_mut().copy_from_slice(job.3.as_ref());
        }
        boot.bsk.as_view().batch_blind_rotate_assign(
            accs.as_mut_view(),
            &self.msed,
            self.fft.as_view(),
            self.buffers.stack(),
        );
        accs.iter()
            .zip(jobs)
            .map(|(acc, job)| {
                std::iter::once(0)
                    .chain(job.4.iter().map(|&(_, degree)| degree))
                    .map(|degree| {
                        let mut out = LweCiphertext::new(0u64, LweSize(l), modulus());
                        extract_lwe_sample_from_glwe_ciphertext(&acc, &mut out, MonomialDegree(degree));
                        out.into_container()
                    })
                    .collect()
            })
            .collect()
    }
}

/// The batched keyswitch of `bigs` into `smalls` (one small ciphertext per big one), then each
/// one's centered modulus switch to `2N`.
fn switch_all<O: KsWord>(
    ksk: &LweKeyswitchKeyOwned<O>,
    bigs: &[u64],
    smalls: &mut [O],
    big_len: usize,
    log: CiphertextModulusLog,
) -> Vec<Msed> {
    let small_len = ksk.output_key_lwe_dimension().0 + 1;
    keyswitch_batch(ksk, bigs, smalls, big_len, small_len);
    smalls
        .chunks_exact(small_len)
        .map(|small| msed(LweCiphertext::from_container(small, O::ciphertext_modulus()), log))
        .collect()
}

/// The centered modulus switch of a small-key ciphertext (modulo 2^64 or 2^32) to `2N`.
pub(crate) fn msed<S: UnsignedInteger + CastInto<usize>>(ct: LweCiphertext<&[S]>, log: CiphertextModulusLog) -> Msed {
    let lazy = lwe_ciphertext_centered_binary_modulus_switch::<S, usize, _>(ct, log);
    Msed {
        body: lazy.body(),
        mask: lazy.mask().collect(),
        log,
    }
}

/// A keyswitch output word: `u64` (ciphertexts modulo 2^64) or `u32` (KS32, modulo 2^32).
pub(crate) trait KsWord: UnsignedInteger + CastFrom<u64> + CastInto<usize> {
    /// The input's body at the output modulus: itself, or rounded to its top 32 bits (tfhe-rs's
    /// `keyswitch_lwe_ciphertext_with_scalar_change`: closest multiple of 2^32, then shifted).
    fn body_of(b: u64) -> Self;
    /// The native modulus of this word.
    fn ciphertext_modulus() -> CiphertextModulus<Self>;
    /// tfhe-rs's own keyswitch of one ciphertext into this word (the reference the batched one
    /// equals, for tests and benchmarks).
    fn reference_keyswitch(ksk: &LweKeyswitchKeyOwned<Self>, input: &LweCiphertext<&[u64]>, output: &mut [Self]);
    /// The same torus element on 64 bits.
    fn to_torus64(self) -> u64;
}

impl KsWord for u64 {
    #[inline(always)]
    fn body_of(b: u64) -> u64 {
        b
    }
    fn ciphertext_modulus() -> CiphertextModulus<u64> {
        modulus()
    }
    fn reference_keyswitch(ksk: &LweKeyswitchKeyOwned<u64>, input: &LweCiphertext<&[u64]>, output: &mut [u64]) {
        keyswitch_lwe_ciphertext(ksk, input, &mut LweCiphertext::from_container(output, modulus()));
    }
    fn to_torus64(self) -> u64 {
        self
    }
}

impl KsWord for u32 {
    #[inline(always)]
    fn body_of(b: u64) -> u32 {
        let round = SignedDecomposer::<u64>::new(DecompositionBaseLog(32), DecompositionLevelCount(1));
        (round.closest_representable(b) >> 32) as u32
    }
    fn ciphertext_modulus() -> CiphertextModulus<u32> {
        modulus32()
    }
    fn reference_keyswitch(ksk: &LweKeyswitchKeyOwned<u32>, input: &LweCiphertext<&[u64]>, output: &mut [u32]) {
        keyswitch_lwe_ciphertext_with_scalar_change(
            ksk,
            input,
            &mut LweCiphertext::from_container(output, modulus32()),
        );
    }
    fn to_torus64(self) -> u64 {
        (self as u64) << 32
    }
}

/// Keyswitches `count` big-key LWE ciphertexts (`inputs`, `big_len` words each) to the small key
/// (`outputs`, `small_len` words each), reading each key row once for all of them. Per ciphertext
/// this is tfhe-rs's keyswitch — `keyswitch_lwe_ciphertext` on the native modulus (`O = u64`),
/// `keyswitch_lwe_ciphertext_with_scalar_change` into 32 bits (`O = u32`, KS32): output =
/// (0, …, 0, body) − Σ_i Σ_level digit(mask_i, level)·row(i, level), the digits from the 64-bit
/// mask elements, the arithmetic wrapping at the output's width.
pub(crate) fn keyswitch_batch<O: KsWord>(
    ksk: &LweKeyswitchKeyOwned<O>,
    inputs: &[u64],
    outputs: &mut [O],
    big_len: usize,
    small_len: usize,
) {
    // the same code compiled for the widest vectors the CPU has (the crate targets baseline x86-64)
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
            // SAFETY: the features are present on this CPU (checked just above)
            return unsafe { keyswitch_batch_avx512(ksk, inputs, outputs, big_len, small_len) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: as above
            return unsafe { keyswitch_batch_avx2(ksk, inputs, outputs, big_len, small_len) };
        }
    }
    keyswitch_batch_impl(ksk, inputs, outputs, big_len, small_len)
}

/// `keyswitch_batch_impl` compiled with wider vector instructions, one entry point per feature set.
macro_rules! keyswitch_with_features {
    ($($name:ident = $features:literal),*) => {$(
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<O: KsWord>(
            ksk: &LweKeyswitchKeyOwned<O>,
            inputs: &[u64],
            outputs: &mut [O],
            big_len: usize,
            small_len: usize,
        ) {
            keyswitch_batch_impl(ksk, inputs, outputs, big_len, small_len)
        }
    )*};
}

keyswitch_with_features!(
    keyswitch_batch_avx512 = "avx512f,avx512dq",
    keyswitch_batch_avx2 = "avx2"
);

#[inline(always)]
pub(crate) fn keyswitch_batch_impl<O: KsWord>(
    ksk: &LweKeyswitchKeyOwned<O>,
    inputs: &[u64],
    outputs: &mut [O],
    big_len: usize,
    small_len: usize,
) {
    let count = inputs.len() / big_len;
    debug_assert_eq!(outputs.len(), count * small_len);
    debug_assert_eq!(ksk.input_key_lwe_dimension().0 + 1, big_len);
    debug_assert_eq!(ksk.output_key_lwe_dimension().0 + 1, small_len);
    for (out, inp) in outputs.chunks_exact_mut(small_len).zip(inputs.chunks_exact(big_len)) {
        out.fill(O::ZERO);
        out[small_len - 1] = O::body_of(inp[big_len - 1]);
    }
    let levels = ksk.decomposition_level_count().0;
    let decomposer = SignedDecomposer::<u64>::new(ksk.decomposition_base_log(), ksk.decomposition_level_count());
    // the key's rows, row (i, l) at (i·levels + l)·small_len: the layout `ksk.iter()` walks
    let key = ksk.as_ref();
    // digits[l·count + c]: level l (in tfhe-rs's iteration order) of ciphertext c's mask element i
    let mut digits = vec![0i64; levels * count];
    for i in 0..big_len - 1 {
        for c in 0..count {
            let terms = decomposer.decompose(inputs[c * big_len + i]);
            for (l, t) in terms.enumerate().take(levels) {
                digits[l * count + c] = t.value() as i64;
            }
        }
        for (l, ds) in digits.chunks_exact(count).enumerate() {
            let r = i * levels + l;
            let row = &key[r * small_len..(r + 1) * small_len];
            for (&d, out) in ds.iter().zip(outputs.chunks_exact_mut(small_len)) {
                if d == 0 {
                    continue;
                }
                // a power of two is a shift (much cheaper than a 64-bit vector multiply), the
                // rest a multiply; all wrapping, so the result is the same
                let m = d.unsigned_abs();
                if m.is_power_of_two() {
                    let sh = m.trailing_zeros();
                    if d > 0 {
                        out.iter_mut()
                            .zip(row)
                            .for_each(|(o, &k)| *o = o.wrapping_sub(k << sh as usize));
                    } else {
                        out.iter_mut()
                            .zip(row)
                            .for_each(|(o, &k)| *o = o.wrapping_add(k << sh as usize));
                    }
                } else {
                    let d = O::cast_from(d as u64);
                    out.iter_mut()
                        .zip(row)
                        .for_each(|(o, &k)| *o = o.wrapping_sub(k.wrapping_mul(d)));
                }
            }
        }
    }
}

/// The accumulator (trivial GLWE) of each table, per partition: `[partition][table]`, for the
/// pairs some lookup uses.
fn accumulators(program: &Program) -> Vec<Vec<Option<GlweCiphertextOwned<u64>>>> {
    let mut luts: Vec<Vec<Option<GlweCiphertextOwned<u64>>>> = program
        .partitions
        .iter()
        .map(|_| (0..program.tables.len()).map(|_| None).collect())
        .collect();
    for ins in &program.instrs {
        if let Instr::Pbs { table, partition, .. } = ins {
            let slot = &mut luts[*partition as usize][*table as usize];
            if slot.is_none() {
                let p = &program.partitions[*partition as usize];
                let t = &program.tables[*table as usize];
                *slot = Some(generate_programmable_bootstrap_glwe_lut(
                    PolynomialSize(p.polynomial_size()),
                    GlweSize(p.glwe_dimension() + 1),
                    1usize << t.precision,
                    modulus(),
                    1u64,
                    |m: u64| t.values[m as usize],
                ));
            }
        }
    }
    luts
}

/// Per instruction, for a lookup its lanes: (lane instruction, monomial degree of its extraction)
/// in the partition the lookup runs in (empty for the others).
fn lanes(program: &Program) -> Vec<Vec<(usize, usize)>> {
    let base = program.num_input_slots as usize;
    let mut lanes = vec![Vec::new(); program.instrs.len()];
    for (i, ins) in program.instrs.iter().enumerate() {
        if let Instr::Lane { pbs, boxes } = ins {
            let h = *pbs as usize - base;
            if let Instr::Pbs { table, partition, .. } = &program.instrs[h] {
                let n = program.partitions[*partition as usize].polynomial_size();
                let box_size = n >> program.tables[*table as usize].precision;
                lanes[h].push((i, *boxes as usize * box_size));
            }
        }
    }
    lanes
}

/// Instruction indices by stage: (lookups at depth d, linear instructions at depth d). Lanes are
/// in neither: their lookups write them.
fn stages(program: &Program) -> Vec<(Vec<usize>, Vec<usize>)> {
    let depths = program.depths();
    let base = program.num_input_slots as usize;
    let max = depths.iter().copied().max().unwrap_or(0) as usize;
    let mut st = vec![(Vec::new(), Vec::new()); max + 1];
    for (i, ins) in program.instrs.iter().enumerate() {
        let d = depths[base + i] as usize;
        match ins {
            Instr::Pbs { .. } => st[d].0.push(i),
            Instr::Linear { .. } | Instr::ClearLinear { .. } => st[d].1.push(i),
            Instr::Lane { .. } => {}
        }
    }
    st
}

/// Checks that a program, keys and inputs go together.
pub fn check_run(program: &Program, keys: &ServerKeys, inputs: &Ciphertexts) -> Result<(), RuntimeError> {
    program.validate()?;
    keys.check_program(program)?;
    inputs.check(&program.interface(), Direction::Inputs)?;
    if inputs.key_id != keys.key_id {
        return Err(RuntimeError::KeyMismatch(format!(
            "these ciphertexts are encrypted under other keys (key id {:016x}) than the evaluation keys (key id {:016x}): \
             upload the evaluation keys of the client that encrypted them",
            inputs.key_id, keys.key_id
        )));
    }
    Ok(())
}

/// Most samples per chunk: a chunk's slot memory is allocated once and reused, so a large batch does
/// not hold every sample's intermediate ciphertexts at once (64 samples are enough to fill the
/// lookup batches of every thread).
const CHUNK: usize = 64;
/// Slot memory of one chunk at most (bytes); programs with many slots (a tree ensemble's
/// thermometer inputs) run fewer samples per chunk, at least one.
const CHUNK_BYTES: usize = 1 << 29;

/// Where one input port's ciphertexts come from.
enum Source {
    Packed(Vec<SeededGlweCiphertextListOwned<u64>>),
    Xof(Vec<XofGlweList>),
    Lwe(LweCiphertextListOwned<u64>),
    Clear(Vec<i64>),
}

/// Runs `program` on a batch of encrypted inputs, under the default resource [`Limits`]. `cancel`,
/// when set from another thread, stops the run at the next lookup with [`RuntimeError::Cancelled`].
pub fn run(
    program: &Program,
    keys: &ServerKeys,
    inputs: Ciphertexts,
    progress: &Progress,
    cancel: Option<&AtomicBool>,
) -> Result<Ciphertexts, RuntimeError> {
    run_with_limits(program, keys, inputs, progress, cancel, &Limits::default())
}

/// [`run`] under the given resource limits (checked before any allocation).
pub fn run_with_limits(
    program: &Program,
    keys: &ServerKeys,
    inputs: Ciphertexts,
    progress: &Progress,
    cancel: Option<&AtomicBool>,
    limits: &Limits,
) -> Result<Ciphertexts, RuntimeError> {
    // bounds first: nothing below allocates more than they allow
    program.validate()?;
    limits.check_run(program, inputs.samples)?;
    check_run(program, keys, &inputs)?;
    let samples = inputs.samples;
    let l = program.master_dimension() + 1;
    let k0 = program.input_params().big_lwe_dimension();
    let out_len = program.output_dimension() + 1;
    let slots = program.num_slots();
    let dims = program.slot_dims();
    let sources: Vec<Source> = program
        .inputs
        .iter()
        .zip(inputs.tensors)
        .map(|(port, t)| match t.data {
            CtData::Packed(lists) => Source::Packed(lists),
            CtData::PackedXof(lists) => Source::Xof(lists),
            CtData::Clear(values) => Source::Clear(values),
            other => Source::Lwe(other.into_lwe_list(port.len())),
        })
        .collect();
    let luts = accumulators(program);
    let stages = stages(program);
    let lanes = lanes(program);
    let used = program.read_slots();
    let mut outputs: Vec<Vec<u64>> = program
        .outputs
        .iter()
        .map(|p| Vec::with_capacity(samples * p.len() * out_len))
        .collect();
    progress.start("running", (program.pbs_count() * samples) as u64);
    let mut state: Vec<Vec<u64>> = Vec::new();
    let num_clear = program.num_clear_values();
    let mut clear: Vec<Vec<i64>> = Vec::new();
    let chunk = (CHUNK_BYTES / (slots * l * 8).max(1)).clamp(1, CHUNK);
    for first_sample in (0..samples).step_by(chunk) {
        let count = chunk.min(samples - first_sample);
        state.resize_with(count, || vec![0u64; slots * l]);
        state.truncate(count);
        clear.resize_with(count, || vec![0i64; num_clear]);
        clear.truncate(count);
        // input ciphertexts into each sample's slot memory, clear inputs into its clear values
        for (port, src) in program.inputs.iter().zip(&sources) {
            let n = port.len();
            if n == 0 {
                continue;
            }
            if let Source::Clear(values) = src {
                let first = port.slots[0] as usize;
                for (i, c) in clear.iter_mut().enumerate() {
                    let s = first_sample + i;
                    c[first..first + n].copy_from_slice(&values[s * n..(s + 1) * n]);
                }
                continue;
            }
            let first = port.slots[0] as usize;
            state.par_iter_mut().enumerate().for_each(|(i, st)| {
                let dst = &mut st[first * l..(first + n) * l];
                let s = first_sample + i;
                match src {
                    // regenerate the GLWE masks and extract straight into the slot memory
                    Source::Packed(lists) => unpack_used_into(&lists[s], n, dst, Some(&used[first..first + n])),
                    Source::Xof(lists) => unpack_glwes_into(&lists[s].expand(), n, dst, Some(&used[first..first + n])),
                    Source::Lwe(list) => {
                        let src = &list.as_ref()[s * n * (k0 + 1)..(s + 1) * n * (k0 + 1)];
                        for (d, c) in dst.chunks_exact_mut(l).zip(src.chunks_exact(k0 + 1)) {
                            d[..k0 + 1].copy_from_slice(c);
                            pad(d, k0);
                        }
                    }
                    Source::Clear(_) => unreachable!("handled above"),
                }
            });
        }
        let plan = Plan {
            luts: &luts,
            stages: &stages,
            lanes: &lanes,
            dims: &dims,
        };
        run_stages(program, keys, &plan, &mut state, &clear, progress, cancel)?;
        for (port, out) in program.outputs.iter().zip(&mut outputs) {
            for st in &state {
                for &slot in &port.slots {
                    // the first out_len − 1 mask elements (the rest are zero) and the body
                    let ct = &st[slot as usize * l..(slot as usize + 1) * l];
                    out.extend_from_slice(&ct[..out_len - 1]);
                    out.push(ct[l - 1]);
                }
            }
        }
    }
    progress.finish();

    let tensors = program
        .outputs
        .iter()
        .zip(outputs)
        .map(|(port, data)| CtTensor {
            port: port.name.clone(),
            shape: port.shape.clone(),
            data: CtData::Full(LweCiphertextList::from_container(data, LweSize(out_len), modulus())),
        })
        .collect();
    Ok(Ciphertexts {
        program: program.fingerprint(),
        key_id: keys.key_id,
        direction: Direction::Outputs,
        samples,
        lwe_size: out_len,
        tensors,
    })
}

/// What [`run_stages`] derives from the program once per run.
struct Plan<'a> {
    /// Accumulators, `[partition][table]`.
    luts: &'a [Vec<Option<GlweCiphertextOwned<u64>>>],
    stages: &'a [(Vec<usize>, Vec<usize>)],
    /// Per lookup instruction its lanes (instruction, degree).
    lanes: &'a [Vec<(usize, usize)>],
    dims: &'a [u32],
}

/// Runs every stage of `program` on the slot memories of a chunk of samples (inputs filled in).
fn run_stages(
    program: &Program,
    keys: &ServerKeys,
    plan: &Plan<'_>,
    state: &mut [Vec<u64>],
    clear: &[Vec<i64>],
    progress: &Progress,
    cancel: Option<&AtomicBool>,
) -> Result<(), RuntimeError> {
    let samples = state.len();
    let l = program.master_dimension() + 1;
    let base = program.num_input_slots as usize;
    let cancelled = || cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    let (luts, dims) = (plan.luts, plan.dims);
    for (pbs, linear) in plan.stages {
        // the stage's lookups, one partition after another
        for (q, part) in keys.partitions.iter().enumerate() {
            let mine: Vec<usize> = pbs
                .iter()
                .copied()
                .filter(|&i| matches!(program.instrs[i], Instr::Pbs { partition, .. } if partition as usize == q))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let boot = keys.bootstrap(q)?;
            let out_dim = part.params.big_lwe_dimension();
            let jobs: Vec<(usize, usize)> = (0..samples).flat_map(|s| mine.iter().map(move |&i| (s, i))).collect();
            // batches of up to BATCH lookups, but enough batches to keep every thread busy
            let threads = rayon::current_num_threads().max(1);
            let batch = jobs.len().div_ceil(threads).clamp(1, BATCH);
            let state_ref = &state;
            let results: Vec<Option<Vec<Vec<Vec<u64>>>>> = jobs
                .par_chunks(batch)
                .map_init(
                    || Worker::new(part, batch),
                    |w, chunk| {
                        if cancelled() {
                            return None;
                        }
                        let work: Vec<Job<'_>> = chunk
                            .iter()
                            .map(|&(s, i)| {
                                let Instr::Pbs {
                                    input,
                                    shift,
                                    offset,
                                    table,
                                    ..
                                } = &program.instrs[i]
                                else {
                                    unreachable!("stage lists hold lookups")
                                };
                                let src = &state_ref[s][*input as usize * l..(*input as usize + 1) * l];
                                let lut = luts[q][*table as usize].as_ref().expect("accumulator of a used table");
                                (src, *shift, *offset, lut, &plan.lanes[i][..])
                            })
                            .collect();
                        let out = w.pbs_batch(part, boot, &work);
                        progress.advance(chunk.len() as u64);
                        Some(out)
                    },
                )
                .collect();
            for (chunk, r) in jobs.chunks(batch).zip(results) {
                let Some(r) = r else {
                    return Err(RuntimeError::Cancelled);
                };
                for (&(s, i), cts) in chunk.iter().zip(r) {
                    let targets = std::iter::once(i).chain(plan.lanes[i].iter().map(|&(j, _)| j));
                    for (j, ct) in targets.zip(cts) {
                        let dst = &mut state[s][(base + j) * l..(base + j + 1) * l];
                        dst[..out_dim + 1].copy_from_slice(&ct);
                        pad(dst, out_dim);
                    }
                }
            }
        }
        if cancelled() {
            return Err(RuntimeError::Cancelled);
        }
        if !linear.is_empty() {
            state.par_iter_mut().zip(clear).for_each(|(st, clear)| {
                for &i in linear {
                    let (before, after) = st.split_at_mut((base + i) * l);
                    let out = &mut after[..l];
                    out.fill(0);
                    // only the operand's own mask elements (its padding is zero) and the body
                    let mut add = |slot: u32, c: u64| {
                        let src = &before[slot as usize * l..(slot as usize + 1) * l];
                        let d = dims[slot as usize] as usize;
                        for (o, x) in out[..d].iter_mut().zip(&src[..d]) {
                            *o = o.wrapping_add(x.wrapping_mul(c));
                        }
                        out[l - 1] = out[l - 1].wrapping_add(src[l - 1].wrapping_mul(c));
                    };
                    let constant = match &program.instrs[i] {
                        Instr::Linear { terms, constant } => {
                            terms.iter().for_each(|&(slot, c)| add(slot, c as u64));
                            *constant
                        }
                        Instr::ClearLinear {
                            terms,
                            products,
                            clear_constants,
                            constant,
                        } => {
                            Instr::clear_coefficients(terms, products, clear).for_each(|(slot, c)| add(slot, c));
                            clear_constants.iter().fold(*constant, |acc, &(w, unit)| {
                                acc.wrapping_add((clear[w as usize] as u64).wrapping_mul(unit))
                            })
                        }
                        Instr::Pbs { .. } | Instr::Lane { .. } => {
                            unreachable!("stage lists hold linear instructions")
                        }
                    };
                    out[l - 1] = out[l - 1].wrapping_add(constant);
                }
            });
        }
    }
    Ok(())
}
