//! Several parameter sets in one program: the noise constraints of a program whose lookups are
//! assigned to partitions, and the search for one parameter set per partition
//! (`docs/design-partitions.md`, `docs/crypto.md` "Partitions").
//!
//! The constraints are those of [`crate::rederive`] kept symbolic in the parameters: per
//! constraint, a weight on each noise source (the fresh inputs, under partition 0's key, and each
//! partition's bootstrap output), and for a lookup its partition and the partitions whose keys its
//! input spans (the keyswitch reads that many mask elements). The search fixes all partitions but
//! one, finds the cheapest set for that one meeting every constraint (the others' included: its
//! bootstrap noise reaches them), and goes round until nothing changes. Which lookups share a
//! partition is chosen by precision: every split of the distinct precisions into "up to t bits"
//! and "more" is searched, and one partition stays a candidate; the cheapest by the cost model wins.

use std::collections::HashMap;

use fhec_runtime::params::{master_dimension, nested_glwe_bound};
use fhec_runtime::program::{Instr, Program};
use fhec_runtime::{ParamSet, RawParamSet};

use super::{
    best_ks_bases, best_pbs_bases, keyswitch_variance_from, ks_variance, log2_p_fail, log2_sum, ms_variance,
    pbs_cost_raw, tuniform_variance, Analysis, PError, SearchSpace, Variances,
};

/// One noise constraint of a partitioned program.
#[derive(Clone, Debug, PartialEq)]
pub struct PartConstraint {
    /// Bits of message to resolve: the lookup's precision, or 63 − scale for an output.
    pub precision: u32,
    /// `Σ coef²` over fresh input encryptions (partition 0's key).
    pub fresh: f64,
    /// Per partition, `Σ coef²` over its bootstrap outputs.
    pub pbs: Vec<f64>,
    /// For a lookup: its partition (a keyswitch and a modulus switch of that partition come first).
    pub lookup: Option<usize>,
    /// The partitions whose ciphertexts the input combines (its dimension is the largest of their
    /// `k·N`: the keyswitch reads that many mask elements).
    pub spans: Vec<bool>,
    /// How many times per run.
    pub count: u64,
}

impl PartConstraint {
    /// Dimension of the input's mask under these parameters.
    fn dim(&self, parts: &[ParamSet]) -> usize {
        self.spans
            .iter()
            .zip(parts)
            .filter(|(s, _)| **s)
            .map(|(_, p)| p.big_lwe_dimension())
            .max()
            .unwrap_or(0)
    }
}

/// The constraints of `p` with its lookups in the partitions `assign` names (one entry per
/// instruction; read for lookups only), `parts` partitions in all. `p` must be valid.
pub fn constraints(p: &Program, assign: &[u32], parts: usize) -> Vec<PartConstraint> {
    let mut clear_max: Vec<f64> = Vec::with_capacity(p.num_clear_values());
    for port in p.inputs.iter().filter(|q| q.clear) {
        let (lo, hi) = port.type_range();
        let m = (lo as i128).abs().max((hi as i128).abs()) as f64;
        clear_max.extend(std::iter::repeat_n(m, port.len()));
    }
    // per slot: weights (fresh, pbs per partition) and the partitions it spans
    let mut fresh = vec![0.0; parts + 1];
    fresh[0] = 1.0;
    let mut span0 = vec![false; parts];
    span0[0] = true;
    let mut noise: Vec<(Vec<f64>, Vec<bool>)> = vec![(fresh, span0); p.num_input_slots as usize];
    let mut out = Vec::new();
    let combine = |noise: &[(Vec<f64>, Vec<bool>)], coefs: &HashMap<u32, f64>| {
        let mut w = vec![0.0; parts + 1];
        let mut s = vec![false; parts];
        for (&slot, &c) in coefs {
            let (x, sp) = &noise[slot as usize];
            for (o, x) in w.iter_mut().zip(x) {
                *o += c * c * x;
            }
            if c != 0.0 {
                for (o, &x) in s.iter_mut().zip(sp) {
                    *o |= x;
                }
            }
        }
        (w, s)
    };
    for (i, ins) in p.instrs.iter().enumerate() {
        let w = match ins {
            Instr::Linear { terms, .. } => {
                let mut c: HashMap<u32, f64> = HashMap::new();
                for &(s, k) in terms {
                    *c.entry(s).or_default() += k as f64;
                }
                combine(&noise, &c)
            }
            Instr::ClearLinear { terms, products, .. } => {
                let mut c: HashMap<u32, f64> = HashMap::new();
                for &(s, k) in terms {
                    *c.entry(s).or_default() += (k as f64).abs();
                }
                for &(s, w, f) in products {
                    *c.entry(s).or_default() += (f as f64).abs() * clear_max.get(w as usize).copied().unwrap_or(0.0);
                }
                combine(&noise, &c)
            }
            Instr::Pbs {
                input, shift, table, ..
            } => {
                let q = assign.get(i).copied().unwrap_or(0) as usize;
                let amp = 2f64.powi(2 * *shift as i32);
                let (w, s) = &noise[*input as usize];
                out.push(PartConstraint {
                    precision: p.tables[*table as usize].precision,
                    fresh: w[0] * amp,
                    pbs: w[1..].iter().map(|x| x * amp).collect(),
                    lookup: Some(q),
                    spans: s.clone(),
                    count: 1,
                });
                let mut w = vec![0.0; parts + 1];
                w[1 + q] = 1.0;
                let mut s = vec![false; parts];
                s[q] = true;
                (w, s)
            }
            // the same bootstrap's output, extracted elsewhere: its noise
            Instr::Lane { pbs, .. } => noise[*pbs as usize].clone(),
        };
        noise.push(w);
    }
    for port in &p.outputs {
        for &slot in &port.slots {
            let (w, s) = &noise[slot as usize];
            out.push(PartConstraint {
                precision: 63 - port.scale,
                fresh: w[0],
                pbs: w[1..].to_vec(),
                lookup: None,
                spans: s.clone(),
                count: 1,
            });
        }
    }
    out
}

/// Merges constraints of the same precision, kind and partition into one with the largest of
/// each weight and the union of the spans (its variance bounds each member's from above), their
/// counts summed.
pub fn compact(cs: Vec<PartConstraint>) -> Vec<PartConstraint> {
    let mut out: Vec<PartConstraint> = Vec::new();
    for c in cs {
        match out
            .iter_mut()
            .find(|o| o.precision == c.precision && o.lookup == c.lookup)
        {
            Some(o) => {
                o.fresh = o.fresh.max(c.fresh);
                for (a, b) in o.pbs.iter_mut().zip(&c.pbs) {
                    *a = a.max(*b);
                }
                for (a, b) in o.spans.iter_mut().zip(&c.spans) {
                    *a |= *b;
                }
                o.count += c.count;
            }
            None => out.push(c),
        }
    }
    out
}

/// The partitions with the GLWE noise of each raised where a smaller key shares its prefix
/// ([`fhec_runtime::params::partitions_problem`]).
pub fn nest(parts: &[ParamSet]) -> Vec<ParamSet> {
    (0..parts.len())
        .map(|q| {
            let p = &parts[q];
            let need = nested_glwe_bound(parts, q);
            if p.raw().glwe_noise_bound_log2 >= need {
                return *p;
            }
            ParamSet::new(RawParamSet {
                glwe_noise_bound_log2: need,
                ..*p.raw()
            })
            .expect("a raised noise bound stays secure")
        })
        .collect()
}

/// The largest variance whose failure probability at `precision` bits is at most `2^log2_target`
/// (bisection on log2 of the variance; `log2_p_fail` grows with the variance), a hair below the
/// exact bound so that every variance it accepts meets the target.
fn max_variance(precision: u32, log2_target: f64) -> f64 {
    let (mut lo, mut hi) = (-400.0f64, 0.0f64);
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if log2_p_fail(precision, mid.exp2()) <= log2_target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo.exp2()
}

/// Estimated single-thread nanoseconds of one keyswitch (from `ks_dim` mask elements) + bootstrap.
pub fn pbs_cost_from_ns(p: &ParamSet, ks_dim: usize) -> f64 {
    let r = p.raw();
    pbs_cost_raw(
        r.lwe_dimension,
        r.glwe_dimension,
        r.polynomial_size,
        r.pbs_level,
        (r.ks_level, p.ks32()),
        ks_dim,
    )
}

/// log2 p_fail of every constraint under `parts` (already nested).
pub fn evaluate(cs: &[PartConstraint], parts: &[ParamSet]) -> Analysis {
    let vars: Vec<Variances> = parts.iter().map(Variances::of).collect();
    let per: Vec<f64> = cs
        .iter()
        .map(|c| log2_p_fail(c.precision, variance(c, parts, &vars)))
        .collect();
    let worst = per.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let global = log2_sum(cs.iter().zip(&per).map(|(c, &lp)| lp + (c.count.max(1) as f64).log2()));
    Analysis {
        log2_p_fail: per,
        log2_worst: worst,
        log2_global: global,
    }
}

fn variance(c: &PartConstraint, parts: &[ParamSet], vars: &[Variances]) -> f64 {
    let mut v = c.fresh * vars[0].fresh;
    for (w, x) in c.pbs.iter().zip(vars) {
        v += w * x.pbs;
    }
    if let Some(q) = c.lookup {
        v += keyswitch_variance_from(&parts[q], c.dim(parts)) + vars[q].modulus_switch;
    }
    v
}

fn meets(cs: &[PartConstraint], parts: &[ParamSet], vars: &[Variances], target: PError) -> bool {
    match target {
        PError::PerLookup(t) => {
            let lt = t.log2();
            cs.iter()
                .all(|c| log2_p_fail(c.precision, variance(c, parts, vars)) <= lt)
        }
        PError::Global(t) => {
            let g = log2_sum(
                cs.iter()
                    .map(|c| log2_p_fail(c.precision, variance(c, parts, vars)) + (c.count.max(1) as f64).log2()),
            );
            g <= t.log2()
        }
    }
}

/// `Σ f(q, lookups, input dimension)` over the partitions with lookups under `parts` (the dimension:
/// the widest input of the partition's lookups, which its keyswitch reads).
fn sum_over_partitions(cs: &[PartConstraint], parts: &[ParamSet], f: impl Fn(usize, u64, usize) -> f64) -> f64 {
    (0..parts.len())
        .map(|q| {
            let mine = cs.iter().filter(|c| c.lookup == Some(q));
            let (count, dim) = mine.fold((0u64, 0usize), |(n, d), c| (n + c.count, d.max(c.dim(parts))));
            if count == 0 {
                0.0
            } else {
                f(q, count, dim)
            }
        })
        .sum()
}

/// Bytes of the evaluation keys under `parts` (as sent, bootstrap keys whole): per partition with
/// lookups, its bootstrap key and the keyswitch key into it from its lookups' widest input.
pub fn key_bytes(cs: &[PartConstraint], parts: &[ParamSet]) -> f64 {
    sum_over_partitions(cs, parts, |q, _, dim| {
        fhec_runtime::keys::compressed_key_bytes(&parts[q], dim) as f64
    })
}

/// What the search minimises: the lookups' time, plus `space.ns_per_key_byte` per byte of keys.
fn weighted_cost(cs: &[PartConstraint], parts: &[ParamSet], space: &SearchSpace) -> f64 {
    let t = lookup_cost_ns(cs, parts);
    if space.ns_per_key_byte > 0.0 {
        t + space.ns_per_key_byte * key_bytes(cs, parts)
    } else {
        t
    }
}

/// Estimated single-thread nanoseconds of a run's lookups under `parts`.
pub fn lookup_cost_ns(cs: &[PartConstraint], parts: &[ParamSet]) -> f64 {
    sum_over_partitions(cs, parts, |q, count, dim| {
        count as f64 * pbs_cost_from_ns(&parts[q], dim)
    })
}

/// The cheapest set for partition `q`, the others fixed, meeting `target` on every constraint (the
/// nesting applied to the whole vector). `None` when no candidate does.
///
/// For each `(k, N)` of partition `q` the nesting, the other partitions' variances, every
/// constraint's input dimension and the part of its variance that `q` does not change are computed
/// once; a candidate then adds its own bootstrap, keyswitch and modulus-switch terms.
fn best_for(
    q: usize,
    parts: &[ParamSet],
    cs: &[PartConstraint],
    target: PError,
    space: &SearchSpace,
) -> Option<(f64, Vec<ParamSet>)> {
    let mine: Vec<&PartConstraint> = cs.iter().filter(|c| c.lookup == Some(q)).collect();
    let min_log_n = mine.iter().map(|c| c.precision).max().unwrap_or(0).max(1);
    let mut best: Option<(f64, Vec<ParamSet>)> = None;
    let others: f64 = lookup_cost_ns(
        &cs.iter()
            .filter(|c| c.lookup.is_some_and(|r| r != q))
            .cloned()
            .collect::<Vec<_>>(),
        parts,
    );
    let count: u64 = mine.iter().map(|c| c.count).sum();
    let (global, lt) = match target {
        PError::PerLookup(t) => (false, t.log2()),
        PError::Global(t) => (true, t.log2()),
    };
    // per constraint, the largest variance meeting a per-lookup target (no erfc in the scan)
    let v_max: Vec<f64> = if global {
        Vec::new()
    } else {
        cs.iter().map(|c| max_variance(c.precision, lt)).collect()
    };
    let n0 = space.lwe_dimensions.first().copied().unwrap_or(512);
    for log_n in space.log_polynomial_sizes.clone() {
        if log_n < min_log_n {
            continue;
        }
        let big_n = 1usize << log_n;
        for k in space.glwe_dimensions.clone() {
            if k * big_n > space.max_big_dimension {
                continue;
            }
            // what depends on (k, N) only: the nesting, the others' variances, the dimensions
            let Ok(shape) = ParamSet::with_secure_noise(n0, k, big_n, 1, 1, 1, 1) else {
                continue;
            };
            let mut trial = parts.to_vec();
            trial[q] = shape;
            let nested = nest(&trial);
            let glwe_bound = nested[q].raw().glwe_noise_bound_log2;
            let vars: Vec<Variances> = nested.iter().map(Variances::of).collect();
            let fresh_q = tuniform_variance(glwe_bound as f64);
            let dims: Vec<usize> = cs.iter().map(|c| c.dim(&trial)).collect();
            let dim_q = mine.iter().map(|c| c.dim(&trial)).max().unwrap_or(0);
            // with a weight on the keys: the other partitions' keys (their sizes do not depend on q's n)
            let lambda = space.ns_per_key_byte;
            let others_bytes = if lambda > 0.0 {
                (0..trial.len())
                    .filter(|&r| r != q)
                    .map(|r| {
                        let mut lookups = cs.iter().zip(&dims).filter(|(c, _)| c.lookup == Some(r)).peekable();
                        if lookups.peek().is_none() {
                            0.0
                        } else {
                            let dim = lookups.map(|(_, &d)| d).max().unwrap_or(0);
                            fhec_runtime::keys::compressed_key_bytes(&nested[r], dim) as f64
                        }
                    })
                    .sum::<f64>()
            } else {
                0.0
            };
            let base: Vec<f64> = cs
                .iter()
                .zip(&dims)
                .map(|(c, &d)| {
                    let mut v = if q == 0 { 0.0 } else { c.fresh * vars[0].fresh };
                    for (r, (w, x)) in c.pbs.iter().zip(&vars).enumerate() {
                        if r != q {
                            v += w * x.pbs;
                        }
                    }
                    if let Some(r) = c.lookup.filter(|&r| r != q) {
                        v += keyswitch_variance_from(&nested[r], d) + vars[r].modulus_switch;
                    }
                    v
                })
                .collect();
            let mut distinct: Vec<usize> = cs
                .iter()
                .zip(&dims)
                .filter(|(c, _)| c.lookup == Some(q))
                .map(|(_, &d)| d)
                .collect();
            distinct.sort_unstable();
            distinct.dedup();
            for &n in &space.lwe_dimensions {
                let floor = others + count as f64 * pbs_cost_raw(n, k, big_n, 1, (1, true), dim_q);
                if best.as_ref().is_some_and(|(c, _)| floor >= *c) {
                    continue;
                }
                let pbs_best = best_pbs_bases(n, k, big_n, glwe_bound, space.max_pbs_level);
                let ks_best = best_ks_bases(dim_q.max(1), n, space.max_ks_level);
                for &(pl, pb, pv) in &pbs_best {
                    // keyswitches cheapest first: the cost only grows, so the first candidate that
                    // meets every constraint, or the first not cheaper than the best, ends the scan
                    for choice in &ks_best {
                        let (kl, kb, km) = (choice.level, choice.base_log, choice.modulus_log2);
                        // the time, a lower bound of the cost (the keys only add)
                        let time = others + count as f64 * pbs_cost_raw(n, k, big_n, pl, choice.cost_key(), dim_q);
                        if best.as_ref().is_some_and(|(c, _)| time >= *c) {
                            break;
                        }
                        let Ok(cand) = ParamSet::with_secure_noise(n, k, big_n, pb, pl, kb, kl)
                            .and_then(|c| c.with_ks_modulus(km))
                        else {
                            continue;
                        };
                        let cost = if lambda > 0.0 {
                            time + lambda
                                * (others_bytes + fhec_runtime::keys::compressed_key_bytes(&cand, dim_q) as f64)
                        } else {
                            time
                        };
                        if best.as_ref().is_some_and(|(c, _)| cost >= *c) {
                            continue;
                        }
                        let ms = ms_variance(n, big_n, km);
                        let ks: Vec<f64> = distinct.iter().map(|&d| ks_variance(d, n, kb, kl, km)).collect();
                        let var = |(i, c): (usize, &PartConstraint)| {
                            let mut v = base[i] + c.pbs[q] * pv;
                            if q == 0 {
                                v += c.fresh * fresh_q;
                            }
                            if c.lookup == Some(q) {
                                let at = distinct.binary_search(&dims[i]).unwrap_or(0);
                                v += ks[at] + ms;
                            }
                            v
                        };
                        let ok = if global {
                            log2_sum(
                                cs.iter()
                                    .enumerate()
                                    .map(|x| log2_p_fail(x.1.precision, var(x)) + (x.1.count.max(1) as f64).log2()),
                            ) <= lt
                        } else {
                            cs.iter().enumerate().all(|x| var(x) <= v_max[x.0])
                        };
                        if ok {
                            let mut chosen = nested.clone();
                            chosen[q] = ParamSet::new(RawParamSet {
                                glwe_noise_bound_log2: glwe_bound,
                                ..*cand.raw()
                            })
                            .expect("a raised noise bound stays secure");
                            best = Some((cost, chosen));
                            // by time alone no later keyswitch can be cheaper; with a weight on
                            // the keys one into the other modulus may be smaller
                            if lambda == 0.0 {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
    best
}

/// The cheapest parameter sets for the partitions of `cs` (`parts` partitions), starting from
/// `start` (a feasible vector: one set repeated), by coordinate descent; cheapest by the lookups'
/// time, plus `space.ns_per_key_byte` per byte of keys. Returns the sets (nested) and the
/// estimated nanoseconds of the lookups of a run.
pub fn search(
    cs: &[PartConstraint],
    start: &[ParamSet],
    target: PError,
    space: &SearchSpace,
) -> Option<(Vec<ParamSet>, f64)> {
    let mut parts = nest(start);
    let vars: Vec<Variances> = parts.iter().map(Variances::of).collect();
    if !meets(cs, &parts, &vars, target) {
        return None;
    }
    let mut cost = weighted_cost(cs, &parts, space);
    descend(&mut parts, &mut cost, cs, target, space);
    // Coordinate descent stops where making one partition cheaper needs another to change too (a
    // cheaper bootstrap whose noise another partition's lookups must absorb). Relax and repair:
    // give partition q the cheapest set its own lookups allow, re-fit the others to it, and keep
    // the result when it meets every constraint and costs less.
    if parts.len() > 1 {
        for q in 0..parts.len() {
            let own: Vec<PartConstraint> = cs.iter().filter(|c| c.lookup == Some(q)).cloned().collect();
            let Some((_, relaxed)) = best_for(q, &parts, &own, target, space) else {
                continue;
            };
            let mut trial = parts.clone();
            trial[q] = relaxed[q];
            let mut ok = true;
            for r in (0..parts.len()).filter(|&r| r != q) {
                match best_for(r, &nest(&trial), cs, target, space) {
                    Some((_, p)) => trial = p,
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            let trial = nest(&trial);
            let vars: Vec<Variances> = trial.iter().map(Variances::of).collect();
            if ok && meets(cs, &trial, &vars, target) {
                let mut c = weighted_cost(cs, &trial, space);
                if c < cost * (1.0 - 1e-9) {
                    let mut t = trial;
                    descend(&mut t, &mut c, cs, target, space);
                    parts = t;
                    cost = c;
                }
            }
        }
    }
    // without a weight on the keys, the descent's running total is the time (as it always was);
    // with one, the time is taken apart from the score
    let ns = if space.ns_per_key_byte > 0.0 {
        lookup_cost_ns(cs, &parts)
    } else {
        cost
    };
    Some((parts, ns))
}

/// Coordinate descent: the cheapest set for each partition in turn, the others fixed, until no
/// partition changes (at most 4 rounds).
fn descend(parts: &mut Vec<ParamSet>, cost: &mut f64, cs: &[PartConstraint], target: PError, space: &SearchSpace) {
    for _round in 0..4 {
        let mut changed = false;
        for q in 0..parts.len() {
            if let Some((c, p)) = best_for(q, parts, cs, target, space) {
                if c < *cost * (1.0 - 1e-9) {
                    *cost = c;
                    *parts = p;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
}

/// Per instruction, log2 of how strongly the noise of its result is read: the largest, over the
/// lookups and outputs that read it (through linear instructions), of `coef²·2^(2·shift)` divided
/// by the square of the reader's threshold. A lookup whose output is read with a large
/// amplification (the first bits of an exact rounding) needs a low-noise bootstrap; one read
/// gently (the last bits, a final activation) does not. Used to group lookups into partitions;
/// along several paths the largest is taken (a classification, not a bound).
pub fn sensitivity(p: &Program) -> Vec<f64> {
    let base = p.num_input_slots as usize;
    let mut need = vec![f64::NEG_INFINITY; base + p.instrs.len()];
    // log2 of 1/threshold² for a reader of `precision` bits (threshold 2^-(precision+2))
    let th2 = |precision: u32| 2.0 * (precision as f64 + 2.0);
    for port in &p.outputs {
        for &slot in &port.slots {
            let n = &mut need[slot as usize];
            *n = n.max(th2(63 - port.scale));
        }
    }
    let clear_max: Vec<f64> = p
        .inputs
        .iter()
        .filter(|q| q.clear)
        .flat_map(|port| {
            let (lo, hi) = port.type_range();
            let m = (lo as i128).abs().max((hi as i128).abs()) as f64;
            std::iter::repeat_n(m, port.len())
        })
        .collect();
    for (i, ins) in p.instrs.iter().enumerate().rev() {
        let mine = need[base + i];
        let read = |s: u32, log2_c2: f64, need: &mut Vec<f64>| {
            let n = &mut need[s as usize];
            *n = n.max(mine + log2_c2);
        };
        match ins {
            Instr::Pbs {
                input, shift, table, ..
            } => {
                let n = &mut need[*input as usize];
                *n = n.max(2.0 * *shift as f64 + th2(p.tables[*table as usize].precision));
            }
            Instr::Linear { terms, .. } => {
                if mine.is_finite() {
                    for &(s, k) in terms {
                        read(s, 2.0 * (k.unsigned_abs() as f64).log2(), &mut need);
                    }
                }
            }
            Instr::ClearLinear { terms, products, .. } => {
                if mine.is_finite() {
                    for &(s, k) in terms {
                        read(s, 2.0 * (k.unsigned_abs() as f64).log2(), &mut need);
                    }
                    for &(s, w, f) in products {
                        let m = (f.unsigned_abs() as f64) * clear_max.get(w as usize).copied().unwrap_or(0.0);
                        read(s, 2.0 * m.log2(), &mut need);
                    }
                }
            }
            // a lane's output is its lookup's bootstrap noise: what the lane needs, the lookup gives
            Instr::Lane { pbs, .. } => {
                if mine.is_finite() {
                    read(*pbs, 0.0, &mut need);
                }
            }
        }
    }
    need.split_off(base)
}

/// The lookups of `p` assigned to the given (fixed, nested) parameter sets `parts` — another
/// program's partitions, whose keys this program is to reuse — meeting `target` at the least
/// estimated cost, or `None` when no assignment the search tries does. Lookups of one precision
/// move together: all start on the partition of the largest polynomial size, then each precision
/// class, narrowest first, moves to the cheapest partition (at least `2^precision` wide) that
/// keeps every constraint met, until nothing moves.
pub fn assign_fixed(p: &Program, parts: &[ParamSet], target: PError) -> Option<Partitioning> {
    let precision = |i: usize| match &p.instrs[i] {
        Instr::Pbs { table, .. } => Some(p.tables[*table as usize].precision),
        _ => None,
    };
    let mut classes: Vec<u32> = (0..p.instrs.len()).filter_map(precision).collect();
    classes.sort_unstable();
    classes.dedup();
    let vars: Vec<Variances> = parts.iter().map(Variances::of).collect();
    let widest = (0..parts.len()).max_by_key(|&q| (parts[q].polynomial_size(), std::cmp::Reverse(q)))?;
    // a table of `b` bits needs `N ≥ 2^b` (one coefficient per message at least)
    if classes
        .last()
        .is_some_and(|&b| parts[widest].polynomial_size() < 1usize << b)
    {
        return None;
    }
    let mut class_of: Vec<usize> = vec![widest; classes.len()];
    let assign_of = |class_of: &[usize]| -> Vec<u32> {
        (0..p.instrs.len())
            .map(|i| match precision(i) {
                Some(b) => class_of[classes.binary_search(&b).unwrap_or(0)] as u32,
                None => 0,
            })
            .collect()
    };
    let cost = |class_of: &[usize]| -> Option<f64> {
        let cs = compact(constraints(p, &assign_of(class_of), parts.len()));
        meets(&cs, parts, &vars, target).then(|| lookup_cost_ns(&cs, parts))
    };
    let mut best = cost(&class_of)?;
    for _ in 0..4 {
        let mut moved = false;
        for c in 0..classes.len() {
            for (q, part) in parts.iter().enumerate() {
                if q == class_of[c] || part.polynomial_size() < 1usize << classes[c] {
                    continue;
                }
                let mut trial = class_of.clone();
                trial[c] = q;
                if let Some(ns) = cost(&trial) {
                    if ns < best {
                        best = ns;
                        class_of = trial;
                        moved = true;
                    }
                }
            }
        }
        if !moved {
            break;
        }
    }
    Some(Partitioning {
        partitions: parts.to_vec(),
        assign: assign_of(&class_of),
        lookup_ns: best,
    })
}

/// A partitioning of a program's lookups found by [`optimize`].
#[derive(Clone, Debug)]
pub struct Partitioning {
    /// The parameter sets, nested; partition 0 encrypts the inputs.
    pub partitions: Vec<ParamSet>,
    /// Per instruction, the partition of a lookup (0 for the others).
    pub assign: Vec<u32>,
    /// Estimated single-thread nanoseconds of a run's lookups.
    pub lookup_ns: f64,
}

/// What each partition beyond the first must save of the lookup time: a partition costs a bootstrap
/// key of its own (14–90 MB of evaluation keys as sent, ~0.5 s of keygen on two cores), so it is
/// taken only when it saves more than this share of the time of the best choice without it.
pub const PARTITION_MIN_SAVING: f64 = 0.10;

/// The search's score of a candidate: its estimated lookup time, charged for each partition beyond
/// the first (so a further partition wins only when it saves [`PARTITION_MIN_SAVING`]).
fn score(lookup_ns: f64, partitions: usize) -> f64 {
    lookup_ns / (1.0 - PARTITION_MIN_SAVING).powi(partitions.saturating_sub(1) as i32)
}

/// Tries splitting the lookups of `p` (compiled with the single set `single`) into two partitions
/// by precision, then three by sensitivity; returns the split of the best [`score`] — each partition
/// beyond the first must save [`PARTITION_MIN_SAVING`] of the lookup time — or `None` (one partition
/// is then best).
pub fn optimize(p: &Program, single: &ParamSet, target: PError, space: &SearchSpace) -> Option<Partitioning> {
    let mut precisions: Vec<u32> = p
        .instrs
        .iter()
        .filter_map(|i| match i {
            Instr::Pbs { table, .. } => Some(p.tables[*table as usize].precision),
            _ => None,
        })
        .collect();
    precisions.sort_unstable();
    precisions.dedup();
    if precisions.is_empty() {
        return None;
    }
    let one: Vec<u32> = vec![0; p.instrs.len()];
    let single_cs = compact(constraints(p, &one, 1));
    let single_ns = weighted_cost(&single_cs, std::slice::from_ref(single), space);
    // the best split and its score
    let mut best: Option<(Partitioning, f64)> = None;
    let mut best_t = None;
    let consider = |best: &mut Option<(Partitioning, f64)>, assign: Vec<u32>, start: &[ParamSet]| -> Option<f64> {
        let cs = compact(constraints(p, &assign, start.len()));
        let (found, ns) = search(&cs, start, target, space)?;
        let w = if space.ns_per_key_byte > 0.0 {
            weighted_cost(&cs, &found, space)
        } else {
            ns
        };
        let s = score(w, found.len());
        if best.as_ref().is_none_or(|b| s < b.1) {
            *best = Some((
                Partitioning {
                    partitions: found,
                    assign,
                    lookup_ns: ns,
                },
                s,
            ));
        }
        Some(w)
    };
    for &t in &precisions[..precisions.len() - 1] {
        // partition 0: the wider lookups (and the inputs); partition 1: those of at most t bits
        let assign: Vec<u32> = p
            .instrs
            .iter()
            .map(|i| match i {
                Instr::Pbs { table, .. } if p.tables[*table as usize].precision <= t => 1,
                _ => 0,
            })
            .collect();
        let before = best.as_ref().map(|b| b.1);
        if consider(&mut best, assign, &[*single, *single]).is_some() && best.as_ref().map(|b| b.1) != before {
            best_t = Some(t);
        }
    }
    // Three partitions: the narrow lookups of the best split (or all lookups, two partitions) split
    // again by how strongly their outputs are read (sensitivity, in steps of 4 in log2), so the last
    // bits of a rounding need not pay for the first. Cuts are tried from the least sensitive up and
    // the scan stops after two that do not improve (the cost is about unimodal in the cut).
    let sens = sensitivity(p);
    let level = |i: usize| (sens[i] / 4.0).floor() as i64;
    let top = precisions[precisions.len() - 1];
    // one precision: split it by sensitivity (two partitions); several: the narrow side of the best
    // split by precision (three), starting from that split with its narrow set repeated
    let (t, start) = match (&best, best_t) {
        (Some((b, _)), Some(t)) => (t, vec![b.partitions[0], b.partitions[1], b.partitions[1]]),
        _ if precisions.len() == 1 => (top, vec![*single, *single]),
        _ => (top, Vec::new()),
    };
    if !start.is_empty() {
        let narrow = |i: usize| match &p.instrs[i] {
            Instr::Pbs { table, .. } => p.tables[*table as usize].precision <= t,
            _ => false,
        };
        let mut levels: Vec<i64> = (0..p.instrs.len()).filter(|&i| narrow(i)).map(level).collect();
        levels.sort_unstable();
        levels.dedup();
        let wide_exists = t < top;
        let mut local = f64::INFINITY;
        let mut misses = 0;
        for &cut in levels.iter().skip(1) {
            // with wide lookups: 0 wide, 1 sensitive, 2 the rest; without: 0 sensitive, 1 the rest
            let first = u32::from(wide_exists);
            let assign: Vec<u32> = (0..p.instrs.len())
                .map(|i| match &p.instrs[i] {
                    Instr::Pbs { .. } if narrow(i) && level(i) >= cut => first,
                    Instr::Pbs { .. } if narrow(i) => first + 1,
                    _ => 0,
                })
                .collect();
            match consider(&mut best, assign, &start) {
                Some(ns) if ns < local => {
                    local = ns;
                    misses = 0;
                }
                _ => {
                    misses += 1;
                    if misses == 2 {
                        break;
                    }
                }
            }
        }
    }
    let (best, s) = best?;
    if s < single_ns && master_dimension(&best.partitions) > 0 {
        Some(best)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUND: &str = include_str!("../../../../examples/round.fhe");

    fn compiled(src: &str, partitions: bool) -> Program {
        compiled_with(src, partitions, false)
    }

    fn compiled_with(src: &str, partitions: bool, whole_keys: bool) -> Program {
        let m = fhec_ir::parse_module(src).unwrap();
        let v = fhec_ir::verify(&m).unwrap();
        let opts = crate::CompileOptions {
            partitions,
            whole_keys,
            ..Default::default()
        };
        crate::compile(&v, &opts, Some(src)).unwrap().program
    }

    /// Fixed partitions (another program's, to reuse its keys; compiled with whole bootstrap keys,
    /// which leaves room): a program compiled onto them assigns its lookups so that the re-derived
    /// failure probability meets the target, at no more cost than with every lookup on the widest
    /// set; partitions too narrow for a program are an error. The same partitions with the keys
    /// rounded for the first program (the default) leave this one no room: a clear error.
    #[test]
    fn fixed_partitions_take_another_programs_lookups() {
        const MLP: &str = include_str!("../../../../examples/mlp.fhe");
        let rounded = compiled(ROUND, true);
        assert!(rounded.partitions.iter().all(|p| p.raw().bsk_rounding_log2 > 0));
        let round = compiled_with(ROUND, true, true);
        assert!(round.partitions.len() >= 2);
        assert!(round.partitions.iter().all(|p| p.raw().bsk_rounding_log2 == 0));
        let m = fhec_ir::parse_module(MLP).unwrap();
        let v = fhec_ir::verify(&m).unwrap();
        let tight = crate::CompileOptions {
            params: Some(rounded.partitions.clone()),
            ..Default::default()
        };
        let e = crate::compile(&v, &tight, Some(MLP)).err().unwrap();
        assert!(e.message.contains("whole bootstrap keys"), "{}", e.message);
        let opts = crate::CompileOptions {
            params: Some(round.partitions.clone()),
            ..Default::default()
        };
        let c = crate::compile(&v, &opts, Some(MLP)).unwrap();
        let p = &c.program;
        assert_eq!(p.partitions, round.partitions);
        let a = crate::rederive::analyze_program(p);
        assert!(a.log2_worst <= super::super::DEFAULT_P_ERROR.log2(), "{}", a.log2_worst);
        assert_eq!(c.solution.analysis.log2_worst, a.log2_worst);
        // no more than all on the widest partition
        let widest = (0..p.partitions.len())
            .max_by_key(|&q| (p.partitions[q].polynomial_size(), std::cmp::Reverse(q)))
            .unwrap() as u32;
        let all: Vec<u32> = p
            .instrs
            .iter()
            .map(|i| if matches!(i, Instr::Pbs { .. }) { widest } else { 0 })
            .collect();
        let assigned: Vec<u32> = p
            .instrs
            .iter()
            .map(|i| match i {
                Instr::Pbs { partition, .. } => *partition,
                _ => 0,
            })
            .collect();
        let cost = |assign: &[u32]| lookup_cost_ns(&compact(constraints(p, assign, p.partitions.len())), &p.partitions);
        assert!(cost(&assigned) <= cost(&all));
        // the other way round: the rounding's 5-bit lookups do not fit mlp's partitions
        let small = compiled(MLP, true);
        let m = fhec_ir::parse_module(ROUND).unwrap();
        let v = fhec_ir::verify(&m).unwrap();
        let opts = crate::CompileOptions {
            params: Some(small.partitions.clone()),
            ..Default::default()
        };
        let e = crate::compile(&v, &opts, Some(ROUND)).err().unwrap();
        assert!(e.message.contains("cannot run this program"), "{}", e.message);
        // a lookup wider than every partition's polynomial size allows (12 bits, N ≤ 2048): the
        // same clear error, before any noise is weighed
        let wide = "func.func @main(%x: tensor<2x!fhe.eint<12>>) -> tensor<2x!fhe.eint<12>> {\n  \
                    %0 = \"fhe.lut\"(%x) {table = dense<0> : tensor<4096xui12>} : (tensor<2x!fhe.eint<12>>) -> tensor<2x!fhe.eint<12>>\n  \
                    \"func.return\"(%0) : (tensor<2x!fhe.eint<12>>) -> ()\n}\n";
        let m = fhec_ir::parse_module(wide).unwrap_or_else(|d| panic!("{}", d.render("wide", wide)));
        let v = fhec_ir::verify(&m).unwrap();
        let opts = crate::CompileOptions {
            params: Some(small.partitions.clone()),
            p_error: PError::PerLookup(0.1),
            ..Default::default()
        };
        assert!(small.partitions.iter().all(|p| p.polynomial_size() < 1 << 12));
        let e = crate::compile(&v, &opts, Some(wide)).err().unwrap();
        assert!(e.message.contains("cannot run this program"), "{}", e.message);
    }

    /// Along an exact rounding, each extraction's output is read less strongly than the one before
    /// (the next read's shift is one bit smaller: 2 less in log2 of the squared amplification); a
    /// lookup whose output is returned is read at the output's threshold.
    #[test]
    fn sensitivity_falls_along_a_rounding() {
        let p = compiled(ROUND, false);
        let sens = sensitivity(&p);
        let mut chain: Vec<f64> = Vec::new();
        for (i, ins) in p.instrs.iter().enumerate() {
            if let Instr::Pbs { table, .. } = ins {
                if p.tables[*table as usize].precision == 0 {
                    chain.push(sens[i]);
                }
            }
        }
        assert_eq!(chain.len(), 27);
        for c in chain.chunks(9) {
            for w in c.windows(2) {
                assert!((w[0] - w[1] - 2.0).abs() < 1e-9, "{c:?}");
            }
        }
        let out_scale = p.outputs[0].scale;
        for &slot in &p.outputs[0].slots {
            let i = slot as usize - p.num_input_slots as usize;
            assert!(matches!(p.instrs[i], Instr::Pbs { .. }));
            assert_eq!(sens[i], 2.0 * ((63 - out_scale) as f64 + 2.0));
        }
    }

    /// The variance bound the per-lookup scan compares against meets the target and is tight.
    #[test]
    fn max_variance_inverts_the_failure_probability() {
        for p in [0, 3, 7] {
            for t in [-40.0, -128.0] {
                let v = max_variance(p, t);
                assert!(log2_p_fail(p, v) <= t);
                assert!(log2_p_fail(p, v * 1.001) > t);
            }
        }
    }

    #[test]
    fn one_partition_matches_the_plain_analysis() {
        for src in [ROUND, include_str!("../../../../examples/mlp.fhe")] {
            let p = compiled(src, false);
            let plain = crate::params::analyze(&crate::rederive::noise_dag(&p), &p.partitions[0]);
            let part = evaluate(&constraints(&p, &vec![0; p.instrs.len()], 1), &p.partitions);
            assert!(
                (plain.log2_worst - part.log2_worst).abs() < 1e-9,
                "{plain:?} / {part:?}"
            );
            assert!((plain.log2_global - part.log2_global).abs() < 1e-9);
        }
    }

    /// The larger key's GLWE noise is raised to the curve of the coefficients it does not share;
    /// keys of one size are left alone.
    #[test]
    fn nesting_raises_the_larger_key_only() {
        let big = ParamSet::with_secure_noise(960, 1, 4096, 15, 2, 3, 6).unwrap();
        let small = ParamSet::with_secure_noise(720, 4, 512, 15, 2, 4, 3).unwrap();
        let same = ParamSet::with_secure_noise(720, 1, 2048, 15, 2, 4, 3).unwrap();
        assert!(fhec_runtime::params::partitions_problem(&[big, small]).is_some());
        let n = nest(&[big, small]);
        assert_eq!(n[1], small);
        assert_eq!(
            n[0].raw().glwe_noise_bound_log2,
            fhec_runtime::params::secure_lwe_bound(4096 - 2048)
        );
        assert_eq!(fhec_runtime::params::partitions_problem(&n), None);
        assert_eq!(nest(&[small, same]), vec![small, same]);
    }

    /// The search splits the extractions from the final lookup, its result meets the target by the
    /// program's own analysis, costs less than one set, and a program of one precision stays whole.
    #[test]
    fn optimize_splits_extractions_and_meets_the_target() {
        let one = compiled(ROUND, false);
        let p = compiled(ROUND, true);
        // the 5-bit lookups; the first, sensitive extractions; the last ones on a cheaper set
        assert_eq!(p.partitions.len(), 3, "{}", p.params_summary());
        let by = p.lookups_by_partition();
        assert_eq!((by[0], by[1] + by[2]), (3, 27), "{by:?}");
        assert!(p.partitions[1].big_lwe_dimension() <= p.partitions[0].big_lwe_dimension());
        assert!(
            super::super::pbs_cost_ns(&p.partitions[2]) < super::super::pbs_cost_ns(&p.partitions[1]),
            "{}",
            p.params_summary()
        );
        assert!(p.noise.estimated_seconds < 0.5 * one.noise.estimated_seconds);
        let a = crate::rederive::analyze_program(&p);
        assert!(a.log2_worst <= super::super::DEFAULT_P_ERROR.log2() + 1e-9);
        assert_eq!(fhec_runtime::params::partitions_problem(&p.partitions), None);
        let mlp = compiled(include_str!("../../../../examples/tree.fhe"), true);
        let precisions: std::collections::BTreeSet<u32> = mlp.tables.iter().map(|t| t.precision).collect();
        if precisions.len() == 1 {
            assert_eq!(mlp.partitions.len(), 1);
        }
        // a global target holds the same way
        let m = fhec_ir::parse_module(ROUND).unwrap();
        let v = fhec_ir::verify(&m).unwrap();
        let opts = crate::CompileOptions {
            partitions: true,
            p_error: PError::Global(2f64.powi(-60)),
            ..Default::default()
        };
        let g = crate::compile(&v, &opts, Some(ROUND)).unwrap().program;
        assert!(crate::rederive::analyze_program(&g).log2_global <= -60.0);
    }
}
