//! The one compile pipeline: verify → pass pipeline → verify → lowering → parameter search.
//!
//! Every frontend hands its module here (the CLI after parsing, the tracing DSL, tree ensembles,
//! the Python package); nothing else in the codebase runs passes and lowering in sequence.

use fhec_backend_tfhe::params::PError;
use fhec_ir::Module;
use fhec_passes::manager::{run_text, PassContext, DEFAULT_PIPELINE};
use fhec_quant::ClientSpec;
use fhec_runtime::ParamSet;

use crate::circuit::Circuit;
use crate::error::Error;

/// Options of [`compile`].
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Failure-probability target (default: 2^-128 per lookup).
    pub p_error: PError,
    /// Pass pipeline as text (`canonicalize,bitwidth`); `None`: the default pipeline; `"none"` or
    /// empty: no passes.
    pub pipeline: Option<String>,
    /// The function to compile (default: `@main`, or the only function).
    pub function: Option<String>,
    /// Use these parameter sets instead of searching (another program's partitions, to reuse its
    /// keys): the lookups are assigned to them; compilation fails when no assignment meets
    /// `p_error`.
    pub params: Option<Vec<ParamSet>>,
    /// The module's source text, to locate ops in messages.
    pub source: Option<String>,
    /// Let the search split lookups by precision and sensitivity into partitions, each with its own
    /// parameter set, where the cost model says it pays (docs/crypto.md, "Partitions"). On by
    /// default; `false` gives every lookup one set. Fixed `params` mean one set (the given one).
    pub partitions: bool,
    /// Many-LUT: several lookups on one input in one blind rotation (docs/crypto.md, "Many-LUT").
    /// `None` (the default): where the cost model says it pays (the program is compiled with and
    /// without); `Some(true)`: wherever possible; `Some(false)`: never.
    pub many_lut: Option<bool>,
    /// Send bootstrap keys whole instead of rounding their bodies (docs/crypto.md, "Rounded
    /// bootstrap keys"): larger keys, but room left for programs compiled onto these parameters
    /// (`params`) to reuse the keys. Off by default.
    pub whole_keys: bool,
    /// The most bytes of evaluation keys (as sent) the program may need: the fastest program found
    /// within them is kept (docs/crypto.md, "Key budget"); an error when none is found. `None` (the
    /// default): the fastest program, whatever its keys.
    pub max_key_bytes: Option<u64>,
    /// [`compile_traced`] only: widen every calibrated range by this fraction of its width on each
    /// side ([`fhec_trace::Tracer::module_with_margin`]); 0 keeps the input set's ranges.
    pub calibration_margin: f64,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            p_error: PError::default(),
            pipeline: None,
            function: None,
            params: None,
            source: None,
            partitions: true,
            many_lut: None,
            whole_keys: false,
            max_key_bytes: None,
            calibration_margin: 0.0,
        }
    }
}

/// Compiles a module with its client half: verification, the pass pipeline, verification again,
/// lowering to a TFHE program and the parameter search. Inputs' ranges must be declared
/// (`fhe.range`) or implied by their types. `spec` describes what the client sends and receives
/// ([`ClientSpec::integers`] for integer programs); it must have one entry per input and output. The
/// circuit keeps the module as given: its clear interpreter is the reference.
pub fn compile(module: Module, spec: ClientSpec, opts: &CompileOptions) -> Result<Circuit, Error> {
    fhec_ir::verify(&module)?;
    spec.validate()?;
    let mut m = module.clone();
    let pipeline = opts.pipeline.as_deref().unwrap_or(DEFAULT_PIPELINE);
    if pipeline != "none" && !pipeline.trim().is_empty() {
        let mut ctx = PassContext::with_cost_source(fhec_backend_tfhe::cost::cost_model);
        run_text(&mut m, pipeline, &mut ctx)?;
    }
    let proof = fhec_ir::verify(&m)?;
    let lopts = fhec_backend_tfhe::CompileOptions {
        p_error: opts.p_error,
        function: opts.function.clone(),
        params: opts.params.clone(),
        // fixed parameters: no search, no split
        partitions: opts.partitions && opts.params.is_none(),
        many_lut: opts.many_lut,
        whole_keys: opts.whole_keys,
        max_key_bytes: opts.max_key_bytes,
    };
    let compiled = fhec_backend_tfhe::compile(&proof, &lopts, opts.source.as_deref())?;
    let p = &compiled.program;
    if spec.inputs.len() != p.inputs.len() || spec.outputs.len() != p.outputs.len() {
        return Err(Error::new(
            crate::ErrorKind::Compile,
            format!(
                "the client spec describes {} input(s) and {} output(s), the program has {} and {}",
                spec.inputs.len(),
                spec.outputs.len(),
                p.inputs.len(),
                p.outputs.len()
            ),
        ));
    }
    for (o, (d, port)) in spec.outputs.iter().zip(&p.outputs).enumerate() {
        if let Some(d) = d.as_ref().filter(|d| d.parts > 1) {
            if port.len() != d.scale.len() * d.parts as usize {
                return Err(Error::new(
                    crate::ErrorKind::Compile,
                    format!(
                        "the client spec adds output {o} from {} parts of {} values, the program returns {}",
                        d.parts,
                        d.scale.len(),
                        port.len()
                    ),
                ));
            }
        }
    }
    Ok(Circuit::new(module, m, compiled, spec))
}

/// Traces `outputs` into a module calibrated on `inputset` ([`fhec_trace::Tracer::module`]) and
/// compiles it.
pub fn compile_traced(
    outputs: &[fhec_trace::Traced],
    inputset: &[Vec<fhec_ir::Tensor>],
    opts: &CompileOptions,
) -> Result<Circuit, Error> {
    let Some(first) = outputs.first() else {
        return Err(Error::new(
            crate::ErrorKind::Shape,
            "no outputs: return at least one value",
        ));
    };
    let module = first
        .tracer()
        .module_with_margin(outputs, inputset, opts.calibration_margin)?;
    let spec = integer_spec(&module)?;
    compile(module, spec, opts)
}

/// The client spec of an integer program: integers in, integers out, for the entry function.
pub fn integer_spec(module: &Module) -> Result<ClientSpec, Error> {
    let f = module.entry()?;
    Ok(ClientSpec::integers(f.args.len(), f.returns.len()))
}

/// Builds and compiles a quantised tree ensemble. With `mode` `None` the leaf mode is the one the
/// cost model prefers: every mode whose lookup count is within 1.5× of the fewest is compiled (the
/// builder's own pick always), and the lowest estimated run time wins (then the smaller evaluation
/// keys). A mode that fails to compile is skipped unless it is the last one standing.
pub fn compile_trees(
    q: &fhec_trees::Quantized,
    mode: Option<fhec_trees::LeafMode>,
    spec: ClientSpec,
    opts: &CompileOptions,
) -> Result<(Circuit, fhec_trees::BuildReport), Error> {
    use fhec_trees::LeafMode;
    let pick = fhec_trees::build_module(q, mode)?;
    if mode.is_some() {
        let circuit = compile(pick.0, spec, opts)?;
        return Ok((circuit, pick.1));
    }
    let mut builds = vec![pick];
    for m in [LeafMode::Fused, LeafMode::Indicator, LeafMode::Collect] {
        if builds.iter().all(|b| b.1.leaf_mode != m) {
            builds.push(fhec_trees::build_module(q, Some(m))?);
        }
    }
    let fewest = builds.iter().map(|b| b.1.lookups).min().unwrap_or(0);
    let mut best: Option<(f64, usize, Circuit, fhec_trees::BuildReport)> = None;
    let mut first_err = None;
    for (i, (module, report)) in builds.into_iter().enumerate() {
        if i > 0 && report.lookups as f64 > 1.5 * fewest as f64 {
            continue;
        }
        match compile(module, spec.clone(), opts) {
            Ok(c) => {
                let secs = c.program().noise.estimated_seconds;
                let keys = fhec_runtime::keys::program_key_bytes(c.program()).0;
                if best.as_ref().is_none_or(|b| (secs, keys) < (b.0, b.1)) {
                    best = Some((secs, keys, c, report));
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (best, first_err) {
        (Some((_, _, c, r)), _) => Ok((c, r)),
        (None, Some(e)) => Err(e),
        (None, None) => Err(Error::new(crate::ErrorKind::Compile, "no leaf mode compiled")),
    }
}
