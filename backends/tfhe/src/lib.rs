//! fhec backend: a verified `fhe` module → a TFHE [`Program`] with parameters chosen for it.
//!
//! [`compile`] = [`lower::lower_function`] (element-level linear combinations and lookups, exact
//! noise weights) → [`params::search`] (cheapest secure parameters meeting the
//! failure-probability target) → with `CompileOptions::partitions`, [`params::partition::optimize`]
//! (lookups split by precision into two parameter sets where the cost model says it pays) →
//! [`Program`]. [`text`] prints the lowered program as the `tfhe`
//! dialect. See `docs/crypto.md`.

pub mod cost;
pub mod lower;
pub mod params;
pub mod rederive;
pub mod text;

use fhec_ir::{Diagnostic, Verified};
use fhec_runtime::program::{Instr, NoiseReport, Program};
use fhec_runtime::ParamSet;
use params::{NoiseDag, PError, Solution};

/// Options of [`compile`].
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Failure-probability target (default: 2^-40 per lookup).
    pub p_error: PError,
    /// The function to compile (default: `@main`, or the only function).
    pub function: Option<String>,
    /// Use this parameter set instead of searching (e.g. to reuse existing keys). Compilation fails
    /// when it does not meet `p_error` for every lookup.
    pub params: Option<ParamSet>,
    /// Let the search split lookups by precision into partitions, each with its own parameter set,
    /// where the cost model says it pays (`docs/crypto.md`, "Partitions"). Off by default until the
    /// search is fast enough for every compile.
    pub partitions: bool,
}

/// A compiled program with what the search saw.
pub struct Compiled {
    pub program: Program,
    pub dag: NoiseDag,
    pub solution: Solution,
}

/// Lowers and selects parameters. `source` (the module's text) locates ops in messages.
pub fn compile(v: &Verified<'_>, opts: &CompileOptions, source: Option<&str>) -> Result<Compiled, Diagnostic> {
    let m = v.module();
    let f = match &opts.function {
        Some(name) => m
            .function(name)
            .ok_or_else(|| Diagnostic::new(format!("the module has no function @{name}")))?,
        None => m.entry()?,
    };
    let mut l = lower::lower_function(f, source)?;
    let mut dag = NoiseDag {
        constraints: std::mem::take(&mut l.constraints),
    };
    dag.compact();
    let solution = match opts.params {
        None => params::search(&dag, opts.p_error).map_err(|e| Diagnostic::new(e.to_string()))?,
        Some(p) => params::check(&dag, opts.p_error, &p).map_err(|e| Diagnostic::new(e.to_string()))?,
    };
    let mut by_prec = std::collections::BTreeMap::<u32, u64>::new();
    let mut linear_terms = 0usize;
    for ins in &l.instrs {
        match ins {
            Instr::Pbs { table, .. } => *by_prec.entry(l.tables[*table as usize].precision).or_default() += 1,
            Instr::Linear { terms, .. } => linear_terms += terms.len().max(1),
            Instr::ClearLinear { terms, products, .. } => linear_terms += (terms.len() + products.len()).max(1),
        }
    }
    let pbs: u64 = by_prec.values().sum();
    let big = solution.params.big_lwe_dimension() as f64 + 1.0;
    let seconds = (pbs as f64 * solution.ns_per_pbs + linear_terms as f64 * big * params::cost::LEVELED) * 1e-9;
    let noise = NoiseReport {
        log2_p_error_worst_lookup: solution.analysis.log2_worst,
        log2_p_error_global: solution.analysis.log2_global,
        pbs_by_precision: by_prec.into_iter().collect(),
        estimated_seconds: seconds,
    };
    let mut program = l.into_program(solution.params, noise);
    program
        .validate()
        .map_err(|e| Diagnostic::new(format!("internal error: {e}")))?;
    if opts.params.is_none() && opts.partitions {
        if let Some(part) = params::partition::optimize(&program, &solution.params, opts.p_error) {
            let mut split = program.clone();
            split.partitions = part.partitions;
            for (ins, &q) in split.instrs.iter_mut().zip(&part.assign) {
                if let Instr::Pbs { partition, .. } = ins {
                    *partition = q;
                }
            }
            let a = rederive::analyze_program(&split);
            let ok = match opts.p_error {
                PError::PerLookup(t) => a.log2_worst <= t.log2(),
                PError::Global(t) => a.log2_global <= t.log2(),
            };
            // the search's constraints bound the program's from above: `ok` holds; checked anyway
            if ok && split.validate().is_ok() {
                let big = split.master_dimension() as f64 + 1.0;
                split.noise.log2_p_error_worst_lookup = a.log2_worst;
                split.noise.log2_p_error_global = a.log2_global;
                split.noise.estimated_seconds =
                    (part.lookup_ns + linear_terms as f64 * big * params::cost::LEVELED) * 1e-9;
                program = split;
            }
        }
    }
    Ok(Compiled { program, dag, solution })
}
