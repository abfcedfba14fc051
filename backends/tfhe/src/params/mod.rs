//! TFHE parameter selection.
//!
//! The backend reduces a lowered program to a [`NoiseDag`]: one [`Constraint`] per table lookup
//! (and per decrypted output), each with the precision it must resolve and the weights of the noise
//! sources that reach it (`Σ coef²` over fresh encryptions and over bootstrap outputs, including the
//! `2^shift` re-encoding factor — Concrete's "MANP"). The search then picks the cheapest
//! [`ParamSet`] under the cost model below such that every constraint fails with probability at
//! most the target.
//!
//! Noise (all variances normalised by q² = 2^128, formulas from
//! `tfhe::core_crypto::commons::noise_formulas`, 132-bit-secure noise):
//!
//! * fresh encryption under the big key: variance of TUniform(glwe bound);
//! * bootstrap output: `pbs_variance_132_bits_security_tuniform_fft_mul` (+ a correction when the
//!   GLWE bound is floored above the curve's minimum);
//! * keyswitch: `keyswitch_additive_variance_132_bits_security_tuniform`, with the set's output
//!   modulus (2^64, or 2^32 for KS32: the key's noise at that modulus and the rounding of the
//!   body to 32 bits);
//! * modulus switch: `centered_binary_shifted_modulus_switch_additive_variance` from the
//!   keyswitch's output modulus (the runtime uses the centered switch).
//!
//! A lookup of precision p sees `V = w_fresh·V_fresh + w_pbs·V_pbs + V_ks + V_ms` and fails when
//! the noise exceeds half a message step, 2^-(p+2): `p_fail = erfc(2^-(p+2) / √(2V))` — the
//! formula tfhe-rs uses for its own parameter sets. A decrypted output at scale s fails when its
//! noise exceeds 2^(s-1), the same formula with p = 63 − s and no keyswitch/modulus switch.

use std::collections::HashMap;
use tfhe::core_crypto::commons::noise_formulas::centered_mean_shifted_modulus_switch::centered_binary_shifted_modulus_switch_additive_variance_impl;
use tfhe::core_crypto::commons::noise_formulas::lwe_keyswitch::keyswitch_additive_variance_132_bits_security_tuniform_impl;
use tfhe::core_crypto::commons::noise_formulas::lwe_programmable_bootstrap::pbs_variance_132_bits_security_tuniform_fft_mul_impl;

use fhec_runtime::params::{secure_glwe_bound, MODULUS};
use fhec_runtime::ParamSet;

/// Mantissa of the f64 FFT used by the bootstrap.
const FFT_MANTISSA: f64 = 53.0;

/// One place where noise must stay below a threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Constraint {
    /// Bits of message to resolve: the lookup's precision, or 63 − scale for an output.
    pub precision: u32,
    /// `Σ coef²` over fresh input encryptions reaching this point.
    pub fresh_weight: f64,
    /// `Σ coef²` over bootstrap outputs reaching this point.
    pub pbs_weight: f64,
    /// Whether a keyswitch and modulus switch come before (a lookup) or not (a decrypted output).
    pub lookup: bool,
    /// How many times per run (the constraint stands for the worst of them).
    pub count: u64,
    /// The `fhe` op responsible, for messages: `fhe.lut %3 at 5:8`.
    pub origin: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NoiseDag {
    pub constraints: Vec<Constraint>,
}

impl NoiseDag {
    /// Merges constraints with the same precision, kind and origin (keeping the worst weights).
    pub fn compact(&mut self) {
        let mut out: Vec<Constraint> = Vec::new();
        for c in self.constraints.drain(..) {
            match out
                .iter_mut()
                .find(|o| o.precision == c.precision && o.lookup == c.lookup && o.origin == c.origin)
            {
                Some(o) => {
                    o.fresh_weight = o.fresh_weight.max(c.fresh_weight);
                    o.pbs_weight = o.pbs_weight.max(c.pbs_weight);
                    o.count += c.count;
                }
                None => out.push(c),
            }
        }
        self.constraints = out;
    }

    pub fn lookups(&self) -> u64 {
        self.constraints.iter().filter(|c| c.lookup).map(|c| c.count).sum()
    }

    pub fn max_lookup_precision(&self) -> Option<u32> {
        self.constraints.iter().filter(|c| c.lookup).map(|c| c.precision).max()
    }
}

/// The failure-probability target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PError {
    /// Each table lookup (and each output) fails with probability at most this.
    PerLookup(f64),
    /// One whole run fails with probability at most this (union bound over all lookups).
    Global(f64),
}

impl Default for PError {
    fn default() -> PError {
        PError::PerLookup(DEFAULT_P_ERROR)
    }
}

/// Default failure probability per lookup: 2^-128, negligible, so that a decrypted result seen by the
/// server (IND-CPA^D) gives no key-recovery signal; the measured cost against 2^-40 is in
/// docs/benchmarks.md ("Failure probability: 2^-40 against 2^-128").
pub const DEFAULT_P_ERROR: f64 = 2.938735877055719e-39;

/// Cost model constants (nanoseconds), fitted to the single-thread figures of PERF-NOTES.md.
pub mod cost {
    /// Per element·log2(N) of one FFT.
    pub const FFT: f64 = 0.11;
    /// Per complex multiply-add in the external product.
    pub const MUL: f64 = 0.25;
    /// Per multiply-add of the keyswitch, as the executor runs it (batches of 16 keyswitches reading
    /// each key row once, AVX-512 where present: 0.14–0.17 ns measured by `fhec-bench calibrate` at
    /// 2–5 bits; tfhe-rs's one-at-a-time keyswitch costs about 0.45).
    pub const KS: f64 = 0.16;
    /// The same into 32 bits (KS32): half the key's bytes, twice the words per vector register
    /// (0.081–0.086 ns measured against 0.149–0.164 for the 64-bit one, same machine, same run).
    pub const KS32: f64 = 0.085;
    /// Per torus element of a leveled multiply-add (one term of a linear combination).
    pub const LEVELED: f64 = 0.15;
}

/// Estimated single-thread time of one keyswitch + bootstrap, in nanoseconds.
pub fn pbs_cost_ns(p: &ParamSet) -> f64 {
    partition::pbs_cost_from_ns(p, p.big_lwe_dimension())
}

/// The cost model of one keyswitch (from `ks_dim` mask elements, `ks_level` levels, into 32 bits
/// when `ks32`) + bootstrap from the raw dimensions, in nanoseconds: the searches prune with it
/// before building a set.
pub(crate) fn pbs_cost_raw(
    n: usize,
    k: usize,
    big_n: usize,
    pbs_level: usize,
    (ks_level, ks32): (usize, bool),
    ks_dim: usize,
) -> f64 {
    let (n, k, big_n, l) = (n as f64, k as f64, big_n as f64, pbs_level as f64);
    let br = n
        * ((l * (k + 1.0) + (k + 1.0)) * big_n * big_n.log2() * cost::FFT + l * (k + 1.0).powi(2) * big_n * cost::MUL);
    br + ks_dim as f64 * ks_level as f64 * (n + 1.0) * if ks32 { cost::KS32 } else { cost::KS }
}

/// Output moduli (log2) a keyswitch may have.
pub(crate) const KS_MODULI: [u32; 2] = [32, 64];

/// Noise variances of one parameter set (normalised by q²).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variances {
    pub fresh: f64,
    pub pbs: f64,
    pub keyswitch: f64,
    pub modulus_switch: f64,
}

fn tuniform_variance(bound_log2: f64) -> f64 {
    ((2.0 * bound_log2).exp2() + 0.5) / 3.0 / (MODULUS * MODULUS)
}

/// Variance (normalised by q²) of rounding a uniform body to a multiple of `2^t`.
pub fn bsk_rounding_variance(t: u32) -> f64 {
    if t == 0 {
        0.0
    } else {
        ((2.0 * t as f64).exp2() - 1.0) / 12.0 / (MODULUS * MODULUS)
    }
}

fn pbs_variance(
    n: usize,
    k: usize,
    big_n: usize,
    base_log: usize,
    level: usize,
    glwe_bound: u32,
    bsk_rounding_log2: u32,
) -> f64 {
    let base = (base_log as f64).exp2();
    let v = pbs_variance_132_bits_security_tuniform_fft_mul_impl(
        n as f64,
        k as f64,
        big_n as f64,
        base,
        level as f64,
        FFT_MANTISSA,
        MODULUS,
    );
    // The formula assumes the key noise of the security curve; where our bound is floored higher,
    // add the difference through the same key-noise term, and the rounding of the key's bodies
    // (`packed.rs` in the runtime: uniform, independent of the key noise) the same way.
    let curve_bound = (-0.025167785 * (k * big_n) as f64 + 64.0 + 4.10067100000001).ceil();
    let extra = (tuniform_variance(glwe_bound as f64) - tuniform_variance(curve_bound)).max(0.0)
        + bsk_rounding_variance(bsk_rounding_log2);
    let correction = if extra > 0.0 {
        n as f64 * level as f64 * big_n as f64 * (k as f64 + 1.0) * (base * base / 12.0 + 1.0 / 6.0) * extra
    } else {
        0.0
    };
    v + correction
}

/// The keyswitch's variance from `big_dim` mask elements to dimension `n`, into ciphertexts
/// modulo `2^modulus_log2`.
fn ks_variance(big_dim: usize, n: usize, base_log: usize, level: usize, modulus_log2: u32) -> f64 {
    keyswitch_additive_variance_132_bits_security_tuniform_impl(
        big_dim as f64,
        n as f64,
        (base_log as f64).exp2(),
        level as f64,
        MODULUS,
        (modulus_log2 as f64).exp2(),
    )
}

/// The centered modulus switch's variance from `2^modulus_log2` to `2N`.
fn ms_variance(n: usize, big_n: usize, modulus_log2: u32) -> f64 {
    centered_binary_shifted_modulus_switch_additive_variance_impl(
        n as f64,
        (modulus_log2 as f64).exp2(),
        2.0 * big_n as f64,
    )
}

impl Variances {
    pub fn of(p: &ParamSet) -> Variances {
        let r = p.raw();
        Variances {
            fresh: tuniform_variance(r.glwe_noise_bound_log2 as f64),
            pbs: pbs_variance(
                r.lwe_dimension,
                r.glwe_dimension,
                r.polynomial_size,
                r.pbs_base_log,
                r.pbs_level,
                r.glwe_noise_bound_log2,
                r.bsk_rounding_log2,
            ),
            keyswitch: ks_variance(
                p.big_lwe_dimension(),
                r.lwe_dimension,
                r.ks_base_log,
                r.ks_level,
                r.ks_modulus_log2,
            ),
            modulus_switch: ms_variance(r.lwe_dimension, r.polynomial_size, r.ks_modulus_log2),
        }
    }

    /// Total variance at a constraint.
    pub fn at(&self, c: &Constraint) -> f64 {
        let mut v = c.fresh_weight * self.fresh + c.pbs_weight * self.pbs;
        if c.lookup {
            v += self.keyswitch + self.modulus_switch;
        }
        v
    }
}

/// The keyswitch variance into partition `p` from a ciphertext of dimension `input_dim` (the
/// mask elements past a slot's own dimension are zero and add nothing).
pub fn keyswitch_variance_from(p: &ParamSet, input_dim: usize) -> f64 {
    let r = p.raw();
    ks_variance(input_dim, r.lwe_dimension, r.ks_base_log, r.ks_level, r.ks_modulus_log2)
}

/// ln(erfc(x)) for x ≥ 0, accurate also where erfc underflows.
pub fn ln_erfc(x: f64) -> f64 {
    if x < 25.0 {
        libm::erfc(x).ln()
    } else {
        // asymptotic expansion: erfc(x) ≈ e^(-x²) / (x√π) · (1 − 1/(2x²) + 3/(4x⁴))
        let x2 = x * x;
        -x2 - (x * std::f64::consts::PI.sqrt()).ln() + (1.0 - 0.5 / x2 + 0.75 / (x2 * x2)).ln()
    }
}

/// log2 of the probability that noise of variance `v` exceeds half a step at `precision` bits.
pub fn log2_p_fail(precision: u32, v: f64) -> f64 {
    if v <= 0.0 {
        return f64::NEG_INFINITY;
    }
    let threshold = (-(precision as f64 + 2.0)).exp2();
    ln_erfc(threshold / (2.0 * v).sqrt()) / std::f64::consts::LN_2
}

/// The predicted failure probabilities of a program under a parameter set.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// log2 p_fail of each constraint, in order.
    pub log2_p_fail: Vec<f64>,
    /// The worst one.
    pub log2_worst: f64,
    /// Union bound over one run: log2 Σ count·p_fail.
    pub log2_global: f64,
}

pub fn analyze(dag: &NoiseDag, p: &ParamSet) -> Analysis {
    let v = Variances::of(p);
    let per: Vec<f64> = dag
        .constraints
        .iter()
        .map(|c| log2_p_fail(c.precision, v.at(c)))
        .collect();
    let worst = per.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let global = log2_sum(
        dag.constraints
            .iter()
            .zip(&per)
            .map(|(c, &lp)| lp + (c.count.max(1) as f64).log2()),
    );
    Analysis {
        log2_p_fail: per,
        log2_worst: worst,
        log2_global: global,
    }
}

/// log2 Σ 2^x_i, stable for very negative x_i.
pub(crate) fn log2_sum(xs: impl Iterator<Item = f64>) -> f64 {
    let xs: Vec<f64> = xs.collect();
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp2()).sum::<f64>().log2()
}

/// The result of a search.
#[derive(Clone, Debug)]
pub struct Solution {
    pub params: ParamSet,
    pub analysis: Analysis,
    /// Estimated single-thread nanoseconds per keyswitch + bootstrap (0 for a program without lookups).
    pub ns_per_pbs: f64,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("{0}")]
    Infeasible(String),
    #[error("invalid failure probability {0}: expected a number in (0, 1)")]
    BadTarget(f64),
}

/// Search bounds. With the defaults, lookups up to 10 bits are feasible at 2^-40 (N up to 2^17);
/// wider ones get the "no secure parameters" error that asks for rounding.
#[derive(Clone, Debug)]
pub struct SearchSpace {
    pub lwe_dimensions: Vec<usize>,
    /// log2 N candidates.
    pub log_polynomial_sizes: std::ops::RangeInclusive<u32>,
    pub glwe_dimensions: std::ops::RangeInclusive<usize>,
    /// Upper bound on k·N.
    pub max_big_dimension: usize,
    pub max_pbs_level: usize,
    pub max_ks_level: usize,
    /// What a byte of evaluation keys (as sent, bootstrap keys whole) costs against a nanosecond of
    /// run time: the searches minimise `time + ns_per_key_byte · bytes`. 0 (the default) minimises
    /// the time alone; a key budget (`CompileOptions::max_key_bytes`) raises it until the keys fit.
    pub ns_per_key_byte: f64,
}

impl Default for SearchSpace {
    fn default() -> SearchSpace {
        SearchSpace {
            lwe_dimensions: (512..=1536).step_by(8).collect(),
            log_polynomial_sizes: 8..=17,
            glwe_dimensions: 1..=6,
            max_big_dimension: 1 << 17,
            max_pbs_level: 6,
            max_ks_level: 24,
            ns_per_key_byte: 0.0,
        }
    }
}

fn budget_ok(dag: &NoiseDag, v: &Variances, target: PError) -> bool {
    match target {
        PError::PerLookup(t) => {
            let lt = t.log2();
            dag.constraints.iter().all(|c| log2_p_fail(c.precision, v.at(c)) <= lt)
        }
        PError::Global(t) => {
            let g = log2_sum(
                dag.constraints
                    .iter()
                    .map(|c| log2_p_fail(c.precision, v.at(c)) + (c.count.max(1) as f64).log2()),
            );
            g <= t.log2()
        }
    }
}

/// Finds the cheapest secure parameter set meeting `target` for every constraint of `dag`.
pub fn search(dag: &NoiseDag, target: PError) -> Result<Solution, ParamError> {
    search_in(dag, target, &SearchSpace::default())
}

pub fn search_in(dag: &NoiseDag, target: PError, space: &SearchSpace) -> Result<Solution, ParamError> {
    let t = match target {
        PError::PerLookup(t) | PError::Global(t) => t,
    };
    if !(t > 0.0 && t < 1.0) {
        return Err(ParamError::BadTarget(t));
    }
    if let Some(c) = dag
        .constraints
        .iter()
        .find(|c| c.lookup && c.precision > fhec_runtime::program::MAX_PBS_PRECISION)
    {
        return Err(ParamError::Infeasible(format!(
            "{} needs a {}-bit table lookup; at most {} bits are supported: round its input first (fhe.round)",
            c.origin,
            c.precision,
            fhec_runtime::program::MAX_PBS_PRECISION
        )));
    }
    if dag.lookups() == 0 {
        return search_leveled(dag, target, space);
    }
    let min_log_n = dag.max_lookup_precision().unwrap_or(1);
    // scores are per lookup: time, plus the keys' weight shared over the run's lookups
    let per_byte = space.ns_per_key_byte / dag.lookups().max(1) as f64;
    let mut best: Option<(f64, ParamSet, f64)> = None;
    for log_n in space.log_polynomial_sizes.clone() {
        if log_n < min_log_n {
            continue;
        }
        let big_n = 1usize << log_n;
        for k in space.glwe_dimensions.clone() {
            if k * big_n > space.max_big_dimension {
                continue;
            }
            let glwe_bound = secure_glwe_bound(k, big_n);
            let fresh = tuniform_variance(glwe_bound as f64);
            for &n in &space.lwe_dimensions {
                // cheapest first: skip sets that cannot beat the best even with one level each and
                // the cheaper keyswitch (into 32 bits): a lower bound on every candidate below
                if ParamSet::with_secure_noise(n, k, big_n, 1, 1, 1, 1).is_err() {
                    continue;
                }
                if let Some((c, _, _)) = best {
                    if pbs_cost_raw(n, k, big_n, 1, (1, true), k * big_n) >= c {
                        continue;
                    }
                }
                // best base log per level, for the bootstrap and the keyswitch (each output modulus)
                let pbs_best = best_pbs_bases(n, k, big_n, glwe_bound, space.max_pbs_level);
                let ks_best = best_ks_bases(k * big_n, n, space.max_ks_level);
                for &(pl, pb, pv) in &pbs_best {
                    for ks in &ks_best {
                        let (kl, kb, kv) = (ks.level, ks.base_log, ks.variance);
                        let Ok(cand) = ParamSet::with_secure_noise(n, k, big_n, pb, pl, kb, kl)
                            .and_then(|c| c.with_ks_modulus(ks.modulus_log2))
                        else {
                            continue;
                        };
                        let ms = ms_variance(n, big_n, ks.modulus_log2);
                        let time = pbs_cost_ns(&cand);
                        // the time alone bounds the score from below
                        if best.as_ref().is_some_and(|(c, _, _)| time >= *c) {
                            continue;
                        }
                        let cost = if per_byte > 0.0 {
                            time + per_byte * fhec_runtime::keys::compressed_key_bytes(&cand, k * big_n) as f64
                        } else {
                            time
                        };
                        if best.as_ref().is_some_and(|(c, _, _)| cost >= *c) {
                            continue;
                        }
                        let v = Variances {
                            fresh,
                            pbs: pv,
                            keyswitch: kv,
                            modulus_switch: ms,
                        };
                        if budget_ok(dag, &v, target) {
                            best = Some((cost, cand, time));
                        }
                    }
                }
            }
        }
    }
    match best {
        Some((_, params, ns)) => Ok(Solution {
            analysis: analyze(dag, &params),
            params,
            ns_per_pbs: ns,
        }),
        None => Err(ParamError::Infeasible(explain_infeasible(dag, target, space))),
    }
}

/// Memoised `(level, base_log, variance)` lists, by their arguments.
type BasesMemo<K> = std::sync::OnceLock<std::sync::Mutex<HashMap<K, Vec<(usize, usize, f64)>>>>;

/// Per bootstrap decomposition level `1..=max_level`, the base log with the smallest output
/// variance: `(level, base_log, variance)`.
pub(crate) fn best_pbs_bases(
    n: usize,
    k: usize,
    big_n: usize,
    glwe_bound: u32,
    max_level: usize,
) -> Vec<(usize, usize, f64)> {
    type Key = (usize, usize, usize, u32, usize);
    static MEMO: BasesMemo<Key> = std::sync::OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    let key = (n, k, big_n, glwe_bound, max_level);
    if let Some(v) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return v.clone();
    }
    let v: Vec<(usize, usize, f64)> = (1..=max_level)
        .map(|l| {
            (1..=(64 / l).min(50))
                .map(|b| (l, b, pbs_variance(n, k, big_n, b, l, glwe_bound, 0)))
                .fold((l, 1, f64::INFINITY), |a, x| if x.2 < a.2 { x } else { a })
        })
        .collect();
    memo.lock().unwrap_or_else(|e| e.into_inner()).insert(key, v.clone());
    v
}

/// One keyswitch decomposition candidate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct KsChoice {
    pub(crate) level: usize,
    pub(crate) base_log: usize,
    /// log2 of the output modulus: 64, or 32 (KS32).
    pub(crate) modulus_log2: u32,
    pub(crate) variance: f64,
}

impl KsChoice {
    /// The cost model's weight of this keyswitch per mask element and output coefficient.
    pub(crate) fn cost_key(&self) -> (usize, bool) {
        (self.level, self.modulus_log2 == 32)
    }
}

/// Per keyswitch level `1..=max_level` and output modulus (2^64, and 2^32 where the decomposition
/// fits 32 bits), the base log with the smallest variance from `input_dim` mask elements to
/// dimension `n`, without the dominated ones; cheapest first under the cost model (the searches
/// stop at the first candidate that meets their constraints). Memoised across searches (a compile with partitions asks for the
/// same few hundred pairs again and again).
pub(crate) fn best_ks_bases(input_dim: usize, n: usize, max_level: usize) -> Vec<KsChoice> {
    type Key = (usize, usize, usize);
    type Memo = std::sync::OnceLock<std::sync::Mutex<HashMap<Key, Vec<KsChoice>>>>;
    static MEMO: Memo = std::sync::OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    let key = (input_dim, n, max_level);
    if let Some(v) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return v.clone();
    }
    let mut v: Vec<KsChoice> = Vec::new();
    for l in 1..=max_level {
        for m in KS_MODULI {
            let best = (1..=(m as usize / l).min(40))
                .map(|b| KsChoice {
                    level: l,
                    base_log: b,
                    modulus_log2: m,
                    variance: ks_variance(input_dim, n, b, l, m),
                })
                .min_by(|a, b| a.variance.total_cmp(&b.variance));
            v.extend(best);
        }
    }
    let per = |c: &KsChoice| c.level as f64 * if c.modulus_log2 == 32 { cost::KS32 } else { cost::KS };
    v.sort_by(|a, b| per(a).total_cmp(&per(b)).then(a.variance.total_cmp(&b.variance)));
    // drop the dominated ones (no less costly, no less noisy than one before): a 64-bit keyswitch
    // stays only where its wider decomposition buys noise no 32-bit one of its cost reaches
    let mut least = f64::INFINITY;
    v.retain(|c| {
        let keep = c.variance < least;
        least = least.min(c.variance);
        keep
    });
    memo.lock().unwrap_or_else(|e| e.into_inner()).insert(key, v.clone());
    v
}

/// A program without table lookups (a linear model) needs no bootstrap: no evaluation keys are
/// generated for it, and its cost is the encryption and the leveled arithmetic, proportional to
/// the big LWE dimension k·N. Picks the smallest k·N that meets `target`; among equal k·N the
/// smallest polynomial size N (k up to 16, N from 128): inputs are encrypted packed in GLWE
/// ciphertexts, and the client's product of the mask with the key costs ~k·N^1.58, so small
/// polynomials encrypt fastest (measured: k = 12, N = 128 encrypts 2.7× faster than k = 3, N = 512).
/// The bootstrap and keyswitch fields get the smallest secure LWE dimension and one level, unused.
fn search_leveled(dag: &NoiseDag, target: PError, space: &SearchSpace) -> Result<Solution, ParamError> {
    const MAX_K: usize = 16;
    const MIN_LOG_N: u32 = 7;
    let n = space.lwe_dimensions.first().copied().unwrap_or(512);
    let mut best: Option<(usize, usize, ParamSet)> = None;
    for log_n in MIN_LOG_N..=*space.log_polynomial_sizes.end() {
        let big_n = 1usize << log_n;
        for k in 1..=MAX_K {
            let dim = k * big_n;
            if dim > space.max_big_dimension || best.as_ref().is_some_and(|&(d, bn, _)| (dim, big_n) >= (d, bn)) {
                continue;
            }
            let Ok(cand) = ParamSet::with_secure_noise(n, k, big_n, 16, 1, 4, 1) else {
                continue;
            };
            let v = Variances::of(&cand);
            if budget_ok(dag, &v, target) {
                best = Some((dim, big_n, cand));
            }
        }
    }
    match best {
        Some((_, _, params)) => Ok(Solution {
            analysis: analyze(dag, &params),
            params,
            ns_per_pbs: 0.0,
        }),
        None => Err(ParamError::Infeasible(explain_infeasible(dag, target, space))),
    }
}

/// Checks that a given parameter set meets `target` for every constraint of `dag`.
pub fn check(dag: &NoiseDag, target: PError, p: &ParamSet) -> Result<Solution, ParamError> {
    let t = match target {
        PError::PerLookup(t) | PError::Global(t) => t,
    };
    if !(t > 0.0 && t < 1.0) {
        return Err(ParamError::BadTarget(t));
    }
    let log_n = p.polynomial_size().trailing_zeros();
    if let Some(c) = dag.constraints.iter().find(|c| c.lookup && c.precision > log_n) {
        return Err(ParamError::Infeasible(format!(
            "{} needs a {}-bit lookup, more than polynomial size {} of the given parameters allows",
            c.origin,
            c.precision,
            p.polynomial_size()
        )));
    }
    let analysis = analyze(dag, p);
    let ok = match target {
        PError::PerLookup(t) => analysis.log2_worst <= t.log2(),
        PError::Global(t) => analysis.log2_global <= t.log2(),
    };
    if !ok {
        let (i, worst) = analysis
            .log2_p_fail
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |a, (i, &x)| if x > a.1 { (i, x) } else { a });
        return Err(ParamError::Infeasible(format!(
            "the given parameters fail with probability 2^{worst:.1} at {} (target 2^{:.1}); compile without fixed parameters",
            dag.constraints.get(i).map_or("?", |c| c.origin.as_str()),
            t.log2()
        )));
    }
    Ok(Solution {
        ns_per_pbs: pbs_cost_ns(p),
        params: *p,
        analysis,
    })
}

/// Names the constraint that no parameter set can meet, with what to change.
fn explain_infeasible(dag: &NoiseDag, target: PError, space: &SearchSpace) -> String {
    let tgt = match target {
        PError::PerLookup(t) => format!("p_error {:.3e} per lookup", t),
        PError::Global(t) => format!("global p_error {:.3e}", t),
    };
    // the constraint that is hardest on its own: the largest required precision + weight
    let worst = dag.constraints.iter().max_by(|a, b| {
        let ka = a.precision as f64 + 0.5 * (a.pbs_weight.max(a.fresh_weight)).max(1.0).log2();
        let kb = b.precision as f64 + 0.5 * (b.pbs_weight.max(b.fresh_weight)).max(1.0).log2();
        ka.total_cmp(&kb)
    });
    let _ = space;
    match worst {
        Some(c) => {
            let amp = 0.5 * c.pbs_weight.max(c.fresh_weight).max(1.0).log2();
            // a precision of 0 is a one-bit extraction (an exact rounding's): say so
            let needs = if c.lookup && c.precision == 0 {
                "reads one bit exactly (an extraction of an exact rounding)".to_string()
            } else {
                format!("needs {} bits of precision", c.precision)
            };
            format!(
                "no secure TFHE parameters reach {tgt}: {} {needs}{}; {}",
                c.origin,
                if amp >= 1.0 {
                    format!(" with its noise amplified ~2^{amp:.1} by the linear ops before it")
                } else {
                    String::new()
                },
                if c.lookup {
                    "lower its input width (round it with fhe.round), reduce the clear weights feeding it, or relax p_error"
                } else {
                    "lower the output width, reduce the weights feeding it, or relax p_error"
                }
            )
        }
        None => format!("no secure TFHE parameters reach {tgt}"),
    }
}

pub mod partition;

#[cfg(test)]
mod tests;
