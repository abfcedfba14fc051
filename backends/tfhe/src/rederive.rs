//! The noise of a lowered program, re-derived from its own instructions and parameters.
//!
//! A program read from a file says what failure probability it has (`Program::noise`), but a
//! client must not trust a number a file states: [`rederive`] recomputes the noise constraints the
//! lowering would have produced — fresh weight 1 for every encrypted input; a linear combination
//! adds `coef²` times the weights of each slot it reads (coefficients of a repeated slot summed
//! first); a `ClearLinear` bounds each slot's coefficient by the largest clear value its port's
//! type allows, as the lowering does; a lookup is a constraint at its table's precision on its
//! input amplified by `4^shift`, and outputs weight (0, 1); each output is a decoding constraint at
//! precision `63 − scale` — and evaluates them under the program's parameters. With several
//! partitions the weights are kept per source (fresh, and each partition's bootstrap output), and
//! a lookup adds its own partition's keyswitch (from its input's dimension) and modulus switch.

use std::collections::HashMap;

use fhec_runtime::program::{Instr, Program};

use crate::params::{
    analyze, keyswitch_variance_from, log2_p_fail, log2_sum, Analysis, Constraint, NoiseDag, Variances,
};

/// The noise constraints of `p`, from its instructions. `p` must be valid (`Program::validate`).
pub fn noise_dag(p: &Program) -> NoiseDag {
    // largest magnitude of each clear value, from its port's type
    let mut clear_max: Vec<f64> = Vec::with_capacity(p.num_clear_values());
    for port in p.inputs.iter().filter(|q| q.clear) {
        let (lo, hi) = port.type_range();
        let m = (lo as i128).abs().max((hi as i128).abs()) as f64;
        clear_max.extend(std::iter::repeat_n(m, port.len()));
    }
    let mut noise: Vec<(f64, f64)> = vec![(1.0, 0.0); p.num_input_slots as usize];
    noise.reserve(p.instrs.len());
    let mut constraints = Vec::new();
    let origin = |i: usize| {
        p.instr_origin
            .get(i)
            .and_then(|&o| p.origins.get(o as usize))
            .map_or_else(|| format!("instruction {i}"), |o| o.op.clone())
    };
    for (i, ins) in p.instrs.iter().enumerate() {
        let w = match ins {
            Instr::Linear { terms, .. } => {
                let mut per: HashMap<u32, f64> = HashMap::new();
                for &(s, c) in terms {
                    *per.entry(s).or_default() += c as f64;
                }
                weigh(&noise, &per)
            }
            Instr::ClearLinear { terms, products, .. } => {
                let mut per: HashMap<u32, f64> = HashMap::new();
                for &(s, c) in terms {
                    *per.entry(s).or_default() += (c as f64).abs();
                }
                for &(s, c, f) in products {
                    *per.entry(s).or_default() += (f as f64).abs() * clear_max.get(c as usize).copied().unwrap_or(0.0);
                }
                weigh(&noise, &per)
            }
            Instr::Pbs {
                input, shift, table, ..
            } => {
                let (a, b) = noise[*input as usize];
                let amp = 2f64.powi(2 * *shift as i32);
                constraints.push(Constraint {
                    precision: p.tables[*table as usize].precision,
                    fresh_weight: a * amp,
                    pbs_weight: b * amp,
                    lookup: true,
                    count: 1,
                    origin: origin(i),
                });
                (0.0, 1.0)
            }
        };
        noise.push(w);
    }
    for port in &p.outputs {
        for &s in &port.slots {
            let (a, b) = noise[s as usize];
            constraints.push(Constraint {
                precision: 63 - port.scale,
                fresh_weight: a,
                pbs_weight: b,
                lookup: false,
                count: 1,
                origin: format!("output `{}`", port.name),
            });
        }
    }
    // not compacted: compaction is quadratic in the number of distinct origins, and a program from
    // a file may have any number of them; the union bound over every constraint is also tighter
    NoiseDag { constraints }
}

fn weigh(noise: &[(f64, f64)], per: &HashMap<u32, f64>) -> (f64, f64) {
    per.iter().fold((0.0, 0.0), |(a, b), (&s, &c)| {
        let (x, y) = noise[s as usize];
        (a + c * c * x, b + c * c * y)
    })
}

/// The failure probabilities of `p` under its own parameters, from its instructions.
pub fn analyze_program(p: &Program) -> Analysis {
    if let [only] = &p.partitions[..] {
        return analyze(&noise_dag(p), only);
    }
    analyze_partitioned(p)
}

/// [`analyze_program`] for a program of several partitions: per slot a weight per noise source
/// (index 0 the fresh inputs under partition 0's key, `1 + q` partition `q`'s bootstrap output).
fn analyze_partitioned(p: &Program) -> Analysis {
    let parts = p.partitions.len();
    let vars: Vec<Variances> = p.partitions.iter().map(Variances::of).collect();
    let sources: Vec<f64> = std::iter::once(vars[0].fresh)
        .chain(vars.iter().map(|v| v.pbs))
        .collect();
    let dims = p.slot_dims();
    let mut clear_max: Vec<f64> = Vec::with_capacity(p.num_clear_values());
    for port in p.inputs.iter().filter(|q| q.clear) {
        let (lo, hi) = port.type_range();
        let m = (lo as i128).abs().max((hi as i128).abs()) as f64;
        clear_max.extend(std::iter::repeat_n(m, port.len()));
    }
    let mut fresh = vec![0.0; parts + 1];
    fresh[0] = 1.0;
    let mut noise: Vec<Vec<f64>> = vec![fresh; p.num_input_slots as usize];
    // (log2 p_fail, count) of every constraint
    let mut per: Vec<f64> = Vec::new();
    let total = |w: &[f64]| w.iter().zip(&sources).map(|(a, b)| a * b).sum::<f64>();
    let combine = |noise: &[Vec<f64>], coefs: &HashMap<u32, f64>| {
        let mut w = vec![0.0; parts + 1];
        for (&s, &c) in coefs {
            for (o, x) in w.iter_mut().zip(&noise[s as usize]) {
                *o += c * c * x;
            }
        }
        w
    };
    for ins in &p.instrs {
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
                input,
                shift,
                table,
                partition,
                ..
            } => {
                let q = *partition as usize;
                let amp = 2f64.powi(2 * *shift as i32);
                let v = total(&noise[*input as usize]) * amp
                    + keyswitch_variance_from(&p.partitions[q], dims[*input as usize] as usize)
                    + vars[q].modulus_switch;
                per.push(log2_p_fail(p.tables[*table as usize].precision, v));
                let mut w = vec![0.0; parts + 1];
                w[1 + q] = 1.0;
                w
            }
        };
        noise.push(w);
    }
    for port in &p.outputs {
        for &s in &port.slots {
            per.push(log2_p_fail(63 - port.scale, total(&noise[s as usize])));
        }
    }
    let worst = per.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let global = log2_sum(per.iter().copied());
    Analysis {
        log2_p_fail: per,
        log2_worst: worst,
        log2_global: global,
    }
}

/// Replaces the failure probabilities a program states (`Program::noise`) with the ones its
/// instructions and parameters give; returns the stated worst and global log2 probabilities it
/// replaced.
pub fn rederive(p: &mut Program) -> (f64, f64) {
    let a = analyze_program(p);
    let stated = (p.noise.log2_p_error_worst_lookup, p.noise.log2_p_error_global);
    p.noise.log2_p_error_worst_lookup = a.log2_worst;
    p.noise.log2_p_error_global = a.log2_global;
    let mut by_prec = std::collections::BTreeMap::<u32, u64>::new();
    for ins in &p.instrs {
        if let Instr::Pbs { table, .. } = ins {
            *by_prec.entry(p.tables[*table as usize].precision).or_default() += 1;
        }
    }
    p.noise.pbs_by_precision = by_prec.into_iter().collect();
    stated
}
