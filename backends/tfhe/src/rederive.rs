//! The noise of a lowered program, re-derived from its own instructions and parameters.
//!
//! A program read from a file says what failure probability it has (`Program::noise`), but a
//! client must not trust a number a file states: [`rederive`] recomputes the noise constraints the
//! lowering would have produced — fresh weight 1 for every encrypted input; a linear combination
//! adds `coef²` times the weights of each slot it reads (coefficients of a repeated slot summed
//! first); a `ClearLinear` bounds each slot's coefficient by the largest clear value its port's
//! type allows, as the lowering does; a lookup is a constraint at its table's precision on its
//! input amplified by `4^shift`, and outputs weight (0, 1) (its lanes too); each output is a decoding constraint at
//! precision `63 − scale` — and evaluates them under the program's parameters. With several
//! partitions the weights are kept per source (fresh, and each partition's bootstrap output), and
//! a lookup adds its own partition's keyswitch (from its input's dimension) and modulus switch.

use std::collections::HashMap;

use fhec_runtime::program::{Instr, Program};
use fhec_runtime::ParamSet;

use crate::params::{analyze, Analysis, Constraint, NoiseDag};

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
            // another extraction of that lookup's blind rotation: the same noise, no constraint
            // of its own (the lookup's, at the table's full precision, covers it)
            Instr::Lane { pbs, .. } => noise[*pbs as usize],
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

/// Failure probabilities of one program's instructions under given parameter sets.
pub type Analyzer = Box<dyn Fn(&[ParamSet]) -> Analysis>;

/// [`analyze_program`] of `p`'s instructions under other parameter sets (as many as `p` has; the
/// noise graph is built once): for searches over one field of the sets.
pub fn analyzer(p: &Program) -> Analyzer {
    if let [_] = &p.partitions[..] {
        let dag = noise_dag(p);
        return Box::new(move |ps: &[ParamSet]| analyze(&dag, &ps[0]));
    }
    let cs = partitioned_constraints(p);
    Box::new(move |ps: &[ParamSet]| crate::params::partition::evaluate(&cs, ps))
}

fn partitioned_constraints(p: &Program) -> Vec<crate::params::partition::PartConstraint> {
    let assign: Vec<u32> = p
        .instrs
        .iter()
        .map(|i| match i {
            Instr::Pbs { partition, .. } => *partition,
            _ => 0,
        })
        .collect();
    crate::params::partition::constraints(p, &assign, p.partitions.len())
}

/// [`analyze_program`] for a program of several partitions: the search's own constraints
/// ([`crate::params::partition::constraints`], per slot a weight per noise source and the
/// partitions its ciphertext spans), uncompacted, under the program's parameters.
fn analyze_partitioned(p: &Program) -> Analysis {
    crate::params::partition::evaluate(&partitioned_constraints(p), &p.partitions)
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
