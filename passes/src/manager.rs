//! The pass manager: registry, pipeline strings, running with verification, statistics and timing.
//!
//! A pass is registered by one line in [`REGISTRY`]: its kebab-case name, a summary, its options and a
//! constructor. A pipeline is text: `canonicalize,bitwidth,round-insertion{max-lut-bits=8}`. Between passes
//! the module is verified (a pass that breaks an invariant is reported by name), timed, and, on request,
//! printed. See `docs/passes.md` and `docs/adding-a-pass.md`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fhec_ir::{print_module, verify, CostModel, Diagnostic, Module, Tensor};

/// Where a pass context's cost model comes from: a model, or a function that derives it once (the
/// backend's takes a second of parameter searches; programs without lookups never ask for it).
#[derive(Clone)]
pub enum CostSource {
    Model(CostModel),
    Derived(fn() -> &'static CostModel),
}

/// What a pass can read besides the module: a calibration input set, the backend's cost model,
/// and where to count statistics.
#[derive(Default)]
pub struct PassContext {
    /// Calibration inputs (one `Vec<Tensor>` per sample, one tensor per argument of the entry
    /// function), for passes that infer ranges from data (`bitwidth`).
    pub calibration: Option<Vec<Vec<Tensor>>>,
    /// What lookups cost, for passes that weigh rewrites (`lut-fusion`, `round-insertion`); the
    /// backend provides it (`fhec_backend_tfhe::cost::cost_model`), derived on first use.
    pub cost: Option<CostSource>,
    stats: Vec<(String, String, u64)>,
    current: String,
}

impl PassContext {
    pub fn with_calibration(samples: Vec<Vec<Tensor>>) -> PassContext {
        PassContext {
            calibration: Some(samples),
            ..Default::default()
        }
    }

    /// A context with a cost model.
    pub fn with_cost(cost: CostModel) -> PassContext {
        PassContext {
            cost: Some(CostSource::Model(cost)),
            ..Default::default()
        }
    }

    /// A context whose cost model `derive` computes when a pass first asks for it.
    pub fn with_cost_source(derive: fn() -> &'static CostModel) -> PassContext {
        PassContext {
            cost: Some(CostSource::Derived(derive)),
            ..Default::default()
        }
    }

    /// The cost model, or the error a pass that weighs costs gives without one.
    pub fn cost(&self, pass: &str) -> Result<&CostModel, Diagnostic> {
        let model = self.cost.as_ref().map(|c| match c {
            CostSource::Model(m) => m,
            CostSource::Derived(f) => f(),
        });
        model.ok_or_else(|| {
            Diagnostic::new(format!(
                "{pass} weighs lookup costs and has no cost model (the facade's compile and `fhec opt` give the \
                 backend's; embedders set PassContext::cost)"
            ))
        })
    }

    /// Adds `n` to the counter `what` of the running pass.
    pub fn count(&mut self, what: &str, n: u64) {
        if n == 0 {
            return;
        }
        match self.stats.iter_mut().find(|(p, w, _)| *p == self.current && w == what) {
            Some(s) => s.2 += n,
            None => self.stats.push((self.current.clone(), what.to_string(), n)),
        }
    }

    /// Every counter so far: (pass, counter, value).
    pub fn statistics(&self) -> &[(String, String, u64)] {
        &self.stats
    }
}

/// A module transformation.
pub trait Pass {
    /// Rewrites `m`. Must keep the clear meaning of every function (the interpreter's results on
    /// every input the function accepts) unless the pass documents otherwise.
    fn run(&self, m: &mut Module, ctx: &mut PassContext) -> Result<(), Diagnostic>;
}

/// One option of a pass: `name=value` in a pipeline string.
#[derive(Clone, Copy, Debug)]
pub struct OptionSpec {
    pub name: &'static str,
    pub help: &'static str,
    pub default: &'static str,
}

/// Parsed options of one pass in a pipeline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassOptions(pub BTreeMap<String, String>);

impl PassOptions {
    /// An integer option, or its default.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("option `{name}` expects an integer, found `{v}`")),
        }
    }
}

/// A registered pass.
pub struct PassInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// Whether the pass keeps the clear meaning of every function (the tests check it on its cases
    /// and on random programs); `round-insertion` does not, by design.
    pub keeps_meaning: bool,
    pub options: &'static [OptionSpec],
    pub create: fn(&PassOptions) -> Result<Box<dyn Pass>, String>,
}

/// Every pass, by name. Adding a pass = one line here (see `docs/adding-a-pass.md`).
pub static REGISTRY: &[&PassInfo] = &[
    &crate::canonicalize::INFO,
    &crate::bitwidth::INFO,
    &crate::round_insertion::INFO,
    &crate::lut_fusion::INFO,
];

/// The pipeline `fhec compile` and the frontends run before lowering.
pub const DEFAULT_PIPELINE: &str = "canonicalize,bitwidth,lut-fusion,canonicalize";

pub fn lookup(name: &str) -> Option<&'static PassInfo> {
    REGISTRY.iter().find(|p| p.name == name).copied()
}

fn known_passes() -> String {
    REGISTRY.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// One step of a parsed pipeline.
pub struct Step {
    pub info: &'static PassInfo,
    pub options: PassOptions,
    pub pass: Box<dyn Pass>,
}

/// Parses `a,b{k=v,k2=v2},c` (`none`: no passes). Errors name the problem and list what is known.
pub fn parse_pipeline(text: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    if text.trim() == "none" {
        return Ok(steps);
    }
    let mut rest = text.trim();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| c == ',' || c == '{' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..end].trim();
        if name.is_empty() {
            return Err(format!(
                "empty pass name in pipeline `{text}` (known passes: {})",
                known_passes()
            ));
        }
        let info = lookup(name).ok_or_else(|| format!("unknown pass `{name}` (known passes: {})", known_passes()))?;
        rest = &rest[end..];
        let mut options = PassOptions::default();
        if let Some(r) = rest.strip_prefix('{') {
            let close = r
                .find('}')
                .ok_or_else(|| format!("missing `}}` after the options of `{name}`"))?;
            for kv in r[..close].split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("option `{kv}` of `{name}` must be written key=value"))?;
                let k = k.trim();
                if !info.options.iter().any(|o| o.name == k) {
                    let known: Vec<&str> = info.options.iter().map(|o| o.name).collect();
                    return Err(if known.is_empty() {
                        format!("pass `{name}` takes no options (found `{k}`)")
                    } else {
                        format!("unknown option `{k}` for `{name}` (known: {})", known.join(", "))
                    });
                }
                options.0.insert(k.to_string(), v.trim().to_string());
            }
            rest = &r[close + 1..];
        }
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            if rest.is_empty() {
                return Err(format!("pipeline `{text}` ends with `,`"));
            }
        } else if !rest.is_empty() {
            return Err(format!("expected `,` between passes, found `{rest}`"));
        }
        let pass = (info.create)(&options).map_err(|e| format!("{name}: {e}"))?;
        steps.push(Step { info, options, pass });
    }
    Ok(steps)
}

/// How to run a pipeline.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Print the module after every pass (to the `print` sink).
    pub print_after_all: bool,
    /// Print the module after the passes with these names.
    pub print_after: Vec<String>,
    /// Skip the verifier between passes (it runs by default).
    pub no_verify: bool,
}

/// Timing of one pass run.
#[derive(Clone, Debug)]
pub struct Timing {
    pub pass: &'static str,
    pub time: Duration,
}

/// Runs `steps` on `m`; `print` receives `(pass name, module text)` for requested prints.
pub fn run_pipeline(
    m: &mut Module,
    steps: &[Step],
    ctx: &mut PassContext,
    opts: &RunOptions,
    mut print: impl FnMut(&str, &str),
) -> Result<Vec<Timing>, Diagnostic> {
    let mut timings = Vec::new();
    for step in steps {
        let name = step.info.name;
        ctx.current = name.to_string();
        let t0 = Instant::now();
        step.pass.run(m, ctx).map_err(|d| Diagnostic {
            message: format!("{name}: {}", d.message),
            ..d
        })?;
        timings.push(Timing {
            pass: name,
            time: t0.elapsed(),
        });
        if !opts.no_verify {
            if let Err(errors) = verify(m) {
                let first = errors.into_iter().next().map(|d| d.message).unwrap_or_default();
                return Err(Diagnostic::new(format!(
                    "internal error: pass `{name}` produced an invalid module: {first}\n{}",
                    print_module(m)
                )));
            }
        }
        if opts.print_after_all || opts.print_after.iter().any(|p| p == name) {
            print(name, &print_module(m));
        }
    }
    Ok(timings)
}

/// Parses and runs a pipeline with default run options.
pub fn run_text(m: &mut Module, pipeline: &str, ctx: &mut PassContext) -> Result<(), Diagnostic> {
    let steps = parse_pipeline(pipeline).map_err(Diagnostic::new)?;
    run_pipeline(m, &steps, ctx, &RunOptions::default(), |_, _| {}).map(|_| ())
}
