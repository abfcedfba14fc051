//! fhec backend: a verified `fhe` module → a TFHE [`Program`] with parameters chosen for it.
//!
//! [`compile`] = [`lower::lower_function`] (element-level linear combinations and lookups, exact
//! noise weights) → [`params::search`] (cheapest secure parameters meeting the
//! failure-probability target) → with `CompileOptions::partitions`, [`params::partition::optimize`]
//! (lookups split by precision and sensitivity into up to three parameter sets where the cost model
//! says it pays) →
//! [`Program`]. [`text`] prints the lowered program as the `tfhe`
//! dialect. See `docs/crypto.md`.

pub mod cost;
pub mod lanes;
pub mod lower;
pub mod params;
pub mod rederive;
pub mod text;

use std::collections::HashMap;

use fhec_ir::{Diagnostic, Verified};
use fhec_runtime::program::{Instr, NoiseReport, Program};
use fhec_runtime::ParamSet;
use params::{NoiseDag, PError, Solution};

/// Options of [`compile`].
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Failure-probability target (default: 2^-128 per lookup).
    pub p_error: PError,
    /// The function to compile (default: `@main`, or the only function).
    pub function: Option<String>,
    /// Use these parameter sets instead of searching (e.g. another program's, to reuse its keys):
    /// one set, or several partitions (nested as a program's are; partition 0 encrypts the inputs),
    /// to which the lookups are assigned ([`params::partition::assign_fixed`]). Compilation fails
    /// when they do not meet `p_error`.
    pub params: Option<Vec<ParamSet>>,
    /// Let the search split lookups by precision and sensitivity into partitions, each with its own
    /// parameter set, where the cost model says it pays (`docs/crypto.md`, "Partitions"). This
    /// struct's default is off; the facade (`fhec::CompileOptions`) turns it on.
    pub partitions: bool,
    /// Many-LUT ([`lanes`]): lookups on one input in one blind rotation. `None` (the default): the
    /// program is compiled with and without them, and lanes are kept where they are estimated at
    /// least 10 % faster with at most 2.5× the keys ([`lanes_pay`]); `Some(true)`: wherever possible; `Some(false)`: never.
    pub many_lut: Option<bool>,
    /// Send bootstrap keys whole: no rounding of their bodies (`bsk_rounding_log2` stays 0). By
    /// default the search rounds each partition's key as coarsely as the program's failure target
    /// allows ([`fhec_runtime::packed`]: 25–40 % smaller keys, no run-time cost), which leaves other
    /// programs compiled onto these parameters (`params`, to reuse the keys) less room.
    pub whole_keys: bool,
    /// The most bytes of evaluation keys (as sent) the program may need. `None` (the default): the
    /// search minimises the run time alone. With a budget the fastest program found within it is
    /// kept: the searches weigh the keys' bytes against run time, more heavily until they fit
    /// ([`compile_within`]); a budget no parameters meet is an error naming the smallest keys found.
    pub max_key_bytes: Option<u64>,
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
    // window reads: each is cheaper than its table by the cost model of one lookup, but the program
    // may not be (the parameter sets they need); lowered both ways, the faster kept
    let mut windows = l.window_lookups > 0;
    let mut plain: Option<Compiled> = None;
    if windows {
        let without = lower::lower_function_opts(f, source, &HashMap::new(), false)?;
        let a = compile_lowered(l.clone(), opts);
        let b = compile_lowered(without.clone(), opts);
        match (a, b) {
            (Ok(a), Ok(b)) if a.program.noise.estimated_seconds <= b.program.noise.estimated_seconds => plain = Some(a),
            (Err(_), Ok(b)) | (Ok(_), Ok(b)) => {
                (windows, l, plain) = (false, without, Some(b));
            }
            (Ok(a), Err(_)) => plain = Some(a),
            (Err(e), Err(f)) => return Err(smaller_budget_error(e, f)),
        }
    }
    // many-LUT: where lookups share an input, lowered again with room for lanes, then grouped
    let grouped = match opts.many_lut {
        Some(false) => None,
        _ => {
            let room = lanes::room(&l);
            let wide = if room.is_empty() {
                Ok(l.clone())
            } else {
                lower::lower_function_opts(f, source, &room, windows)
            };
            wide.ok().and_then(|w| lanes::group(&w))
        }
    };
    let plain = |l| match plain {
        Some(c) => Ok(c),
        None => compile_lowered(l, opts),
    };
    match (grouped, opts.many_lut) {
        (None, _) => plain(l),
        (Some(g), Some(true)) => compile_lowered(g, opts),
        (Some(g), _) => {
            let plain = plain(l)?;
            match compile_lowered(g, opts) {
                Ok(c) if lanes_pay(&c.program, &plain.program) => Ok(c),
                _ => Ok(plain),
            }
        }
    }
}

/// Whether a program with lanes is worth keeping over the same program without: at least
/// [`LANES_GAIN`] faster by the cost model, with evaluation keys at most [`LANES_KEYS`] times as
/// large: wider lookups need bigger sets, and a few percent is not worth several times the keys
/// (`fhec-bench many-lut`: four 3-bit tables in one 5-bit rotation, 1.13× faster measured, 2.9×
/// the keys and 3× the keygen). Keys are compared whole (before [`round_bootstrap_keys`], which
/// takes whatever slack each set was left and says nothing of the sets' sizes).
pub fn lanes_pay(with: &Program, without: &Program) -> bool {
    let keys = |p: &Program| {
        let mut whole = p.interface();
        for q in &mut whole.partitions {
            *q = ParamSet::new(fhec_runtime::params::RawParamSet {
                bsk_rounding_log2: 0,
                ..*q.raw()
            })
            .unwrap_or(*q);
        }
        fhec_runtime::keys::interface_key_bytes(&whole).0 as f64
    };
    with.noise.estimated_seconds < (1.0 - LANES_GAIN) * without.noise.estimated_seconds
        && keys(with) <= LANES_KEYS * keys(without)
}

/// The estimated speed-up below which lanes are not kept (as partitions: 10 %).
pub const LANES_GAIN: f64 = 0.1;
/// The growth of the evaluation keys above which lanes are not kept.
pub const LANES_KEYS: f64 = 2.5;

/// Parameters for a lowered program (the search, or the given sets), and the partitions, within
/// the key budget when there is one.
fn compile_lowered(l: lower::Lowered, opts: &CompileOptions) -> Result<Compiled, Diagnostic> {
    match opts.max_key_bytes {
        None => compile_lowered_in(l, opts, &params::SearchSpace::default()),
        Some(budget) => compile_within(l, opts, budget),
    }
}

/// How the error of a key budget that no parameters meet begins.
pub const KEY_BUDGET_NOT_MET: &str = "no parameters found with evaluation keys within";

/// The smallest keys (MB) a key-budget error names, `None` for another error.
fn budget_smallest(e: &Diagnostic) -> Option<f64> {
    e.message
        .strip_prefix(KEY_BUDGET_NOT_MET)?
        .split("the smallest found need ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// Of two lowerings' errors, the first, unless both are over a key budget and the second found
/// smaller keys: a budget error names the smallest keys of every lowering tried.
fn smaller_budget_error(e: Diagnostic, f: Diagnostic) -> Diagnostic {
    match (budget_smallest(&e), budget_smallest(&f)) {
        (Some(x), Some(y)) if y < x => f,
        _ => e,
    }
}

/// Bytes of evaluation keys a program needs, as sent.
pub fn key_bytes(p: &Program) -> u64 {
    fhec_runtime::keys::program_key_bytes(p).0 as u64
}

/// The range of weights on the keys that [`compile_within`] searches, in units of the unconstrained
/// program's time per byte of its keys (at 1, a byte of keys weighs what the program's average byte
/// costs in run time): `10^lo ..= 10^hi`.
pub const KEY_WEIGHT_LOG10: (f64, f64) = (-1.5, 3.0);

/// Steps of the bisection in [`compile_within`]: with the unconstrained compile and the one at the
/// heaviest weight, a budget costs at most this many compiles more.
pub const KEY_WEIGHT_STEPS: usize = 4;

/// The fastest program (by the cost model) whose evaluation keys fit `budget` bytes. The search
/// minimises `time + λ·bytes`: λ = 0 first; if the keys do not fit, at the heaviest weight
/// ([`KEY_WEIGHT_LOG10`]; the smallest keys the search finds), then, when those fit, λ is bisected
/// in log scale ([`KEY_WEIGHT_STEPS`]) for the lightest weight that fits: the fastest program of
/// those tried that fit is kept. Fixed parameters are checked against the budget only.
fn compile_within(l: lower::Lowered, opts: &CompileOptions, budget: u64) -> Result<Compiled, Diagnostic> {
    let base = compile_lowered_in(l.clone(), opts, &params::SearchSpace::default())?;
    let first = key_bytes(&base.program);
    if first <= budget {
        return Ok(base);
    }
    let too_big = |smallest: u64| {
        Diagnostic::new(format!(
            "{KEY_BUDGET_NOT_MET} {:.1} MB: the smallest found need {:.1} MB (raise the budget, allow a higher failure probability, or round the lookups to fewer bits)",
            budget as f64 / 1e6,
            smallest as f64 / 1e6
        ))
    };
    if opts.params.is_some() {
        return Err(Diagnostic::new(format!(
            "{KEY_BUDGET_NOT_MET} {:.1} MB: the given parameters' keys need {:.1} MB for this program",
            budget as f64 / 1e6,
            first as f64 / 1e6
        )));
    }
    let unit = (base.program.noise.estimated_seconds * 1e9 / first.max(1) as f64).max(1e-9);
    let at = |log_w: f64| {
        let space = params::SearchSpace {
            ns_per_key_byte: 10f64.powf(log_w) * unit,
            ..Default::default()
        };
        compile_lowered_in(l.clone(), opts, &space).ok()
    };
    let mut smallest = first;
    let mut best: Option<Compiled> = None;
    let keep = |c: Compiled, best: &mut Option<Compiled>, smallest: &mut u64| -> bool {
        let b = key_bytes(&c.program);
        *smallest = (*smallest).min(b);
        let fits = b <= budget;
        if fits
            && best
                .as_ref()
                .is_none_or(|x| c.program.noise.estimated_seconds < x.program.noise.estimated_seconds)
        {
            *best = Some(c);
        }
        fits
    };
    let (mut lo, mut hi) = KEY_WEIGHT_LOG10;
    if !at(hi).is_some_and(|c| keep(c, &mut best, &mut smallest)) {
        return Err(too_big(smallest));
    }
    for _ in 0..KEY_WEIGHT_STEPS {
        let mid = 0.5 * (lo + hi);
        if at(mid).is_some_and(|c| keep(c, &mut best, &mut smallest)) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    best.ok_or_else(|| too_big(smallest))
}

/// [`compile_lowered`] with the searches' space given (its weight on the keys).
fn compile_lowered_in(
    mut l: lower::Lowered,
    opts: &CompileOptions,
    space: &params::SearchSpace,
) -> Result<Compiled, Diagnostic> {
    let mut dag = NoiseDag {
        constraints: std::mem::take(&mut l.constraints),
    };
    dag.compact();
    let fixed = opts.params.as_deref().filter(|ps| ps.len() > 1);
    let mut solution = match (opts.params.as_deref(), fixed) {
        (None, _) => params::search_in(&dag, opts.p_error, space).map_err(|e| Diagnostic::new(e.to_string()))?,
        (Some([one]), _) => params::check(&dag, opts.p_error, one).map_err(|e| Diagnostic::new(e.to_string()))?,
        (Some(_), Some(parts)) => {
            if let Some(m) = fhec_runtime::params::partitions_problem(parts) {
                return Err(Diagnostic::new(format!("the given parameters: {m}")));
            }
            if params::partition::nest(parts) != parts {
                return Err(Diagnostic::new(
                    "the given parameters are not a program's partitions (their GLWE noise is not nested)",
                ));
            }
            // provisional: partition 0 and no analysis; the assignment below fills both in
            Solution {
                params: parts[0],
                analysis: params::Analysis {
                    log2_p_fail: Vec::new(),
                    log2_worst: f64::NEG_INFINITY,
                    log2_global: f64::NEG_INFINITY,
                },
                ns_per_pbs: 0.0,
            }
        }
        (Some(_), None) => return Err(Diagnostic::new("no parameter set given")),
    };
    let mut by_prec = std::collections::BTreeMap::<u32, u64>::new();
    let mut linear_terms = 0usize;
    for ins in &l.instrs {
        match ins {
            Instr::Pbs { table, .. } => *by_prec.entry(l.tables[*table as usize].precision).or_default() += 1,
            Instr::Linear { terms, .. } => linear_terms += terms.len().max(1),
            Instr::ClearLinear { terms, products, .. } => linear_terms += (terms.len() + products.len()).max(1),
            // a sample extraction: about one linear term's work
            Instr::Lane { .. } => linear_terms += 1,
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
    match fixed {
        None => program
            .validate()
            .map_err(|e| Diagnostic::new(format!("internal error: {e}")))?,
        // every lookup sits on partition 0 until the assignment and may not fit it: the program is
        // checked on the widest partition (what the assignment starts from)
        Some(parts) => {
            let mut probe = program.clone();
            probe.partitions = parts
                .iter()
                .max_by_key(|p| p.polynomial_size())
                .copied()
                .into_iter()
                .collect();
            probe.validate().map_err(|e| {
                Diagnostic::new(format!(
                    "the given parameters ({} partitions) cannot run this program: {e}; compile without fixed parameters",
                    parts.len()
                ))
            })?;
        }
    }
    if let Some(parts) = fixed {
        let Some(part) = params::partition::assign_fixed(&program, parts, opts.p_error) else {
            return Err(Diagnostic::new(format!(
                "the given parameters ({} partitions) cannot run this program at the failure-probability target \
                 (no assignment of its lookups meets it); compile without fixed parameters, or compile the program \
                 they come from with whole bootstrap keys (rounded keys leave less room)",
                parts.len()
            )));
        };
        program = with_partitions(program, &part, linear_terms, opts.p_error).ok_or_else(|| {
            Diagnostic::new("internal error: an assignment that meets the target fails its re-derivation")
        })?;
        solution.analysis = rederive::analyze_program(&program);
        solution.ns_per_pbs = part.lookup_ns / (pbs.max(1) as f64);
    }
    if opts.params.is_none() && opts.partitions {
        if let Some(part) = params::partition::optimize(&program, &solution.params, opts.p_error, space) {
            // the search's constraints bound the program's from above: it meets the target;
            // re-derived anyway, and the split kept only if it does
            if let Some(split) = with_partitions(program.clone(), &part, linear_terms, opts.p_error) {
                program = split;
            }
        }
    }
    if opts.params.is_none() && !opts.whole_keys {
        program = round_bootstrap_keys(program, opts.p_error);
        solution.analysis = rederive::analyze_program(&program);
        solution.params = program.partitions[0];
    }
    Ok(Compiled { program, dag, solution })
}

/// Gives each partition with lookups the coarsest rounding of its bootstrap key's bodies
/// (`bsk_rounding_log2`, [`fhec_runtime::packed`]) at which the program still meets `target`: the
/// rounding costs nothing at run time and shrinks the keys the client sends by `t/64`. Partitions
/// are taken in order, each with the largest `t` the ones before it leave room for; the program's
/// stated failure probabilities are re-derived.
fn round_bootstrap_keys(mut program: Program, target: PError) -> Program {
    let analyze = rederive::analyzer(&program);
    let meets = |ps: &[ParamSet]| {
        let a = analyze(ps);
        match target {
            PError::PerLookup(t) => a.log2_worst <= t.log2(),
            PError::Global(t) => a.log2_global <= t.log2(),
        }
    };
    let mut parts = program.partitions.clone();
    if !meets(&parts) {
        return program;
    }
    let lookups = program.lookups_by_partition();
    for q in 0..parts.len() {
        if lookups.get(q).is_none_or(|&n| n == 0) {
            continue;
        }
        let with = |parts: &[ParamSet], t: u32| -> Option<Vec<ParamSet>> {
            let mut ps = parts.to_vec();
            ps[q] = ParamSet::new(fhec_runtime::params::RawParamSet {
                bsk_rounding_log2: t,
                ..*parts[q].raw()
            })
            .ok()?;
            Some(ps)
        };
        // past the key's own noise bound the rounding's variance grows 4× per bit: the answer lies
        // well below bound + 8 (binary search on a monotone test)
        let (mut lo, mut hi) = (
            parts[q].raw().bsk_rounding_log2,
            (parts[q].raw().glwe_noise_bound_log2 + 8).min(fhec_runtime::params::MAX_BSK_ROUNDING_LOG2),
        );
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            match with(&parts, mid) {
                Some(ps) if meets(&ps) => lo = mid,
                _ => hi = mid - 1,
            }
        }
        if let Some(ps) = with(&parts, lo) {
            parts = ps;
        }
    }
    let a = analyze(&parts);
    program.partitions = parts;
    program.noise.log2_p_error_worst_lookup = a.log2_worst;
    program.noise.log2_p_error_global = a.log2_global;
    program
}

/// `program` with its lookups in the partitions of `part`, its failure probabilities re-derived
/// from its instructions and its estimate from the partitions' costs; `None` when the re-derived
/// probabilities miss `target` or the program is not valid.
fn with_partitions(
    program: Program,
    part: &params::partition::Partitioning,
    linear_terms: usize,
    target: PError,
) -> Option<Program> {
    let mut split = program;
    split.partitions = part.partitions.clone();
    for (ins, &q) in split.instrs.iter_mut().zip(&part.assign) {
        if let Instr::Pbs { partition, .. } = ins {
            *partition = q;
        }
    }
    split.validate().ok()?;
    let a = rederive::analyze_program(&split);
    let ok = match target {
        PError::PerLookup(t) => a.log2_worst <= t.log2(),
        PError::Global(t) => a.log2_global <= t.log2(),
    };
    if !ok {
        return None;
    }
    let big = split.master_dimension() as f64 + 1.0;
    split.noise.log2_p_error_worst_lookup = a.log2_worst;
    split.noise.log2_p_error_global = a.log2_global;
    split.noise.estimated_seconds = (part.lookup_ns + linear_terms as f64 * big * params::cost::LEVELED) * 1e-9;
    Some(split)
}

#[cfg(test)]
mod window_choice_tests {
    use super::*;

    /// A 7-bit table constant outside `[40, 62)` (a requantisation), and, in the second program,
    /// a 6-bit table that changes everywhere (a square) on another input.
    fn module(with_square: bool) -> String {
        let requant: Vec<String> = (0..128i64)
            .map(|v| (((v - 40) as f64 * 0.7).round() as i64).clamp(0, 15).to_string())
            .collect();
        let square: Vec<String> = (0..64i64).map(|v| (v * v % 61).to_string()).collect();
        let (extra_arg, extra_ty, extra_op, extra_ret) = if with_square {
            (
                ", %y: tensor<8x!fhe.eint<6>>",
                ", tensor<8x!fhe.eint<6>>",
                format!(
                    "  %1 = \"fhe.lut\"(%y) {{table = dense<[{}]> : tensor<64xi64>}} : (tensor<8x!fhe.eint<6>>) -> tensor<8x!fhe.eint<6>>\n",
                    square.join(", ")
                ),
                ", %1",
            )
        } else {
            ("", "", String::new(), "")
        };
        format!(
            "func.func @main(%x: tensor<8x!fhe.eint<7>>{extra_arg}) -> (tensor<8x!fhe.eint<4>>{extra_ty}) {{\n  %0 = \"fhe.lut\"(%x) {{table = dense<[{}]> : tensor<128xi64>}} : (tensor<8x!fhe.eint<7>>) -> tensor<8x!fhe.eint<4>>\n{extra_op}  \"func.return\"(%0{extra_ret}) : (tensor<8x!fhe.eint<4>>{extra_ty}) -> ()\n}}",
            requant.join(", ")
        )
    }

    /// The estimate and lookup count of `src` lowered with or without window reads, compiled with
    /// partitions.
    fn estimate(src: &str, windows: bool) -> (f64, usize) {
        let m = fhec_ir::parse_module(src).unwrap();
        let v = fhec_ir::verify(&m).unwrap();
        let f = v.module().entry().unwrap();
        let l = lower::lower_function_opts(f, Some(src), &HashMap::new(), windows).unwrap();
        let opts = CompileOptions {
            partitions: true,
            ..Default::default()
        };
        let p = compile_lowered(l, &opts).unwrap().program;
        (p.noise.estimated_seconds, p.pbs_count())
    }

    /// `compile` lowers a program with window reads both ways and keeps the faster estimate: a
    /// lone saturating table is read on its window; next to a 6-bit table that needs a large set
    /// anyway, the window's reads cost more than its bits lowering, and that stays.
    #[test]
    fn compile_keeps_the_faster_of_the_two_lowerings() {
        for (with_square, windows_win) in [(false, true), (true, false)] {
            let src = module(with_square);
            let ((with, n_with), (without, n_without)) = (estimate(&src, true), estimate(&src, false));
            assert_ne!(n_with, n_without, "the window read changes the lowering");
            assert_eq!(with < without, windows_win, "square {with_square}: {with} vs {without}");
            let m = fhec_ir::parse_module(&src).unwrap();
            let v = fhec_ir::verify(&m).unwrap();
            let opts = CompileOptions {
                many_lut: Some(false),
                partitions: true,
                ..Default::default()
            };
            let c = compile(&v, &opts, Some(&src)).unwrap();
            assert_eq!(
                c.program.noise.estimated_seconds,
                with.min(without),
                "square {with_square}"
            );
            let kept = if windows_win { n_with } else { n_without };
            assert_eq!(c.program.pbs_count(), kept, "square {with_square}");
        }
    }
}

#[cfg(test)]
mod key_budget_tests {
    use super::*;

    const ROUND: &str = include_str!("../../../examples/round.fhe");

    fn compiled(max_key_bytes: Option<u64>) -> Result<Program, Diagnostic> {
        let m = fhec_ir::parse_module(ROUND).unwrap();
        let v = fhec_ir::verify(&m).unwrap();
        let opts = CompileOptions {
            partitions: true,
            max_key_bytes,
            ..Default::default()
        };
        compile(&v, &opts, Some(ROUND)).map(|c| c.program)
    }

    /// A lookup read on its window and as one table: when neither fits the budget, the error names
    /// the smaller of the two lowerings' smallest keys (it named the windowed one's).
    #[test]
    fn a_budget_error_names_the_smaller_of_both_lowerings() {
        let table: Vec<String> = (0..128)
            .map(|v: i64| (((v - 40) as f64 * 0.7).round() as i64).clamp(0, 15).to_string())
            .collect();
        let src = format!(
            r#"func.func @main(%x: tensor<4x!fhe.eint<7>>) -> tensor<4x!fhe.eint<4>> {{
  %0 = "fhe.lut"(%x) {{table = dense<[{}]> : tensor<128xi64>}} : (tensor<4x!fhe.eint<7>>) -> tensor<4x!fhe.eint<4>>
  "func.return"(%0) : (tensor<4x!fhe.eint<4>>) -> ()
}}"#,
            table.join(", ")
        );
        let m = fhec_ir::parse_module(&src).unwrap();
        let v = fhec_ir::verify(&m).unwrap();
        let f = v.module().entry().unwrap();
        let opts = CompileOptions {
            partitions: true,
            max_key_bytes: Some(1 << 20),
            ..Default::default()
        };
        let windowed = lower::lower_function(f, Some(&src)).unwrap();
        assert!(windowed.window_lookups > 0);
        let whole = lower::lower_function_opts(f, Some(&src), &HashMap::new(), false).unwrap();
        let err = |r: Result<Compiled, Diagnostic>| r.err().expect("over the budget");
        let a = budget_smallest(&err(compile_lowered(windowed, &opts))).unwrap();
        let b = budget_smallest(&err(compile_lowered(whole, &opts))).unwrap();
        let e = err(compile(&v, &opts, Some(&src)));
        assert_eq!(budget_smallest(&e), Some(a.min(b)), "{}", e.message);
        // here the window's reads need the smaller keys; the choice, either way round
        let over = |mb: f64| {
            Diagnostic::new(format!(
                "{KEY_BUDGET_NOT_MET} 1.0 MB: the smallest found need {mb:.1} MB"
            ))
        };
        for (x, y) in [(60.2, 235.8), (235.8, 60.2)] {
            assert_eq!(budget_smallest(&smaller_budget_error(over(x), over(y))), Some(60.2));
        }
        let other = Diagnostic::new("no secure parameters");
        assert_eq!(smaller_budget_error(other.clone(), over(1.0)).message, other.message);
        assert_eq!(budget_smallest(&smaller_budget_error(over(3.0), other)), Some(3.0));
    }

    /// A budget the fastest program meets changes nothing; a tighter one gives a slower program
    /// within it that still meets the failure target on secure, nested parameters; one below the
    /// smallest keys the search finds is an error that names them, and a weight on the keys shrinks
    /// them in the searches themselves (one set and partitions).
    #[test]
    fn a_key_budget_trades_time_for_keys() {
        let free = compiled(None).unwrap();
        let bytes = key_bytes(&free);
        let same = compiled(Some(bytes)).unwrap();
        assert_eq!(same, free);
        let budget = bytes * 9 / 10;
        let tight = compiled(Some(budget)).unwrap();
        assert!(key_bytes(&tight) <= budget, "{} > {budget}", key_bytes(&tight));
        assert!(tight.noise.estimated_seconds >= free.noise.estimated_seconds);
        let a = rederive::analyze_program(&tight);
        assert!(
            a.log2_worst <= params::DEFAULT_P_ERROR.log2() + 1e-9,
            "{}",
            a.log2_worst
        );
        assert!(tight.partitions.iter().all(|p| p.is_secure()));
        assert_eq!(fhec_runtime::params::partitions_problem(&tight.partitions), None);
        let e = compiled(Some(1 << 20)).unwrap_err();
        assert!(e.message.starts_with(KEY_BUDGET_NOT_MET), "{}", e.message);
        let smallest: f64 = e
            .message
            .split("the smallest found need ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(smallest * 1e6 <= key_bytes(&tight) as f64 + 1e5, "{smallest} MB");
        // the searches' weight on the keys: smaller keys, more time (one set: mlp's 2-bit lookups
        // take a smaller LWE dimension; partitions: the rounding's)
        let lowered = |src: &str| {
            let m = fhec_ir::parse_module(src).unwrap();
            let v = fhec_ir::verify(&m).unwrap();
            lower::lower_function(v.module().entry().unwrap(), Some(src)).unwrap()
        };
        let mut dag = params::NoiseDag {
            constraints: lowered(include_str!("../../../examples/mlp.fhe")).constraints,
        };
        dag.compact();
        let l = lowered(ROUND);
        let heavy = params::SearchSpace {
            ns_per_key_byte: 1e3,
            ..Default::default()
        };
        let (a, b) = (
            params::search(&dag, PError::default()).unwrap(),
            params::search_in(&dag, PError::default(), &heavy).unwrap(),
        );
        let size = |p: &ParamSet| fhec_runtime::keys::compressed_key_bytes(p, p.big_lwe_dimension());
        assert!(size(&b.params) < size(&a.params), "{} vs {}", b.params, a.params);
        assert!(b.ns_per_pbs > a.ns_per_pbs);
        let opts = CompileOptions {
            partitions: true,
            ..Default::default()
        };
        let light = compile_lowered_in(l.clone(), &opts, &params::SearchSpace::default()).unwrap();
        let weighed = compile_lowered_in(l, &opts, &heavy).unwrap();
        assert!(key_bytes(&weighed.program) < key_bytes(&light.program));
    }
}
