//! `fhec opt`: run passes, print the module.

use anyhow::anyhow;
use fhec::io::read_tensor_arg;
use fhec::ir::{self, Tensor};
use fhec::passes::manager::{self, PassContext, RunOptions, DEFAULT_PIPELINE, REGISTRY};

use crate::{read_source, render_all, Failure, Rendered};

pub(crate) struct OptArgs<'a> {
    pub pipeline: Option<&'a str>,
    pub calibration: &'a [String],
    pub statistics: bool,
    pub timing: bool,
    pub print_after_all: bool,
    pub print_after: &'a [String],
    pub list: bool,
}

/// Reads `NAME=PATH` calibration tensors (leading batch axis) into samples, in argument order.
fn calibration(m: &ir::Module, specs: &[String]) -> anyhow::Result<Option<Vec<Vec<Tensor>>>> {
    if specs.is_empty() {
        return Ok(None);
    }
    let f = m.entry().map_err(|d| anyhow!("{}", d.message))?;
    let names: Vec<String> = f
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| f.value(a.value).name.clone().unwrap_or_else(|| i.to_string()))
        .collect();
    let mut given: Vec<Option<Tensor>> = vec![None; names.len()];
    for spec in specs {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--calibration `{spec}` must be NAME=PATH"))?;
        let name = name.trim().trim_start_matches('%');
        let i = names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| anyhow!("@{} has no argument %{name} (arguments: {})", f.name, names.join(", ")))?;
        given[i] = Some(read_tensor_arg(path).map_err(|e| anyhow!("calibration %{name}: {e}"))?);
    }
    let tensors: Vec<Tensor> = given
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.ok_or_else(|| anyhow!("missing calibration input %{}", names[i])))
        .collect::<anyhow::Result<_>>()?;
    let n = tensors[0].shape().first().copied().unwrap_or(0);
    if n == 0 || tensors.iter().any(|t| t.shape().first() != Some(&n)) {
        return Err(anyhow!(
            "calibration inputs need the same, non-empty leading batch axis"
        ));
    }
    Ok(Some(
        (0..n)
            .map(|s| {
                tensors
                    .iter()
                    .map(|t| t.index_axis(ndarray::Axis(0), s).to_owned())
                    .collect()
            })
            .collect(),
    ))
}

pub(crate) fn opt(file: &str, a: &OptArgs<'_>) -> Result<(), Failure> {
    if a.list {
        for p in REGISTRY {
            println!("{:<14} {}", p.name, p.summary);
            for o in p.options {
                println!("    {}={:<8} {}", o.name, o.default, o.help);
            }
        }
        println!("default pipeline: {DEFAULT_PIPELINE}");
        return Ok(());
    }
    let src = read_source(file)?;
    let render = |diags: &[ir::Diagnostic]| Failure::Rendered(Rendered(render_all(diags, file, &src)));
    let mut m = ir::parse_module(&src).map_err(|d| render(&[d]))?;
    ir::verify(&m).map_err(|d| render(&d))?;
    let steps =
        manager::parse_pipeline(a.pipeline.unwrap_or(DEFAULT_PIPELINE)).map_err(|e| anyhow!("--pipeline: {e}"))?;
    let mut ctx = PassContext::with_cost_source(fhec::backend::cost::cost_model);
    ctx.calibration = calibration(&m, a.calibration)?;
    let opts = RunOptions {
        print_after_all: a.print_after_all,
        print_after: a.print_after.to_vec(),
        no_verify: false,
    };
    let timings = manager::run_pipeline(&mut m, &steps, &mut ctx, &opts, |name, text| {
        eprintln!("// -----// IR after {name} //----- //\n{text}");
    })
    .map_err(|d| render(&[d]))?;
    print!("{}", ir::print_module(&m));
    if a.statistics {
        eprintln!("pass statistics:");
        for (pass, what, n) in ctx.statistics() {
            eprintln!("  {pass:<14} {n:>8}  {what}");
        }
    }
    if a.timing {
        let total: f64 = timings.iter().map(|t| t.time.as_secs_f64()).sum();
        eprintln!("pass timing (total {:.3} ms):", total * 1e3);
        for t in &timings {
            eprintln!("  {:<14} {:>9.3} ms", t.pass, t.time.as_secs_f64() * 1e3);
        }
    }
    Ok(())
}
