//! The `fhec` command line. See `docs/cli.md`.

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use fhec::io::{read_tensor_arg, tensor_to_json};
use fhec::ir::{self, text::split_cases, Diagnostic, Tensor};
use std::io::Read;
use std::process::ExitCode;

mod fhe;
mod opt;

#[derive(Parser)]
#[command(
    name = "fhec",
    version,
    about = "Compile machine-learning models to programs on encrypted data (TFHE)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse a program and print it in canonical form.
    Fmt {
        /// Program file (`-` for standard input).
        file: String,
        /// Print nothing; exit with 1 when the file is not in canonical form.
        #[arg(long)]
        check: bool,
        /// Treat `// -----` lines as separators between independent programs.
        #[arg(long)]
        split_input_file: bool,
    },
    /// Parse and verify a program; print every problem with its location.
    Verify {
        /// Program file (`-` for standard input).
        file: String,
        /// Treat `// -----` lines as separators between independent programs.
        #[arg(long)]
        split_input_file: bool,
    },
    /// Run a program on clear inputs with the reference interpreter; print the outputs as JSON.
    Eval {
        /// Program file (`-` for standard input).
        file: String,
        /// An input: NAME=PATH (.npy, or a JSON file) or NAME=JSON (inline, e.g. x=[[1,2]]).
        #[arg(long = "input", short = 'i', value_name = "NAME=PATH")]
        inputs: Vec<String>,
        /// The function to run (default: @main, or the only function).
        #[arg(long)]
        function: Option<String>,
    },
    /// Run passes on a program and print the result.
    Opt {
        /// Program file (`-` for standard input).
        file: String,
        /// Comma-separated passes with options, e.g. `canonicalize,bitwidth`; default: the default pipeline.
        #[arg(long, value_name = "PIPELINE")]
        pipeline: Option<String>,
        /// Calibration inputs for range analysis: NAME=PATH with a leading batch axis (one entry per sample).
        #[arg(long = "calibration", value_name = "NAME=PATH")]
        calibration: Vec<String>,
        /// Print each pass's counters (folded constants, narrowed widths, …) to standard error.
        #[arg(long)]
        pass_statistics: bool,
        /// Print each pass's run time to standard error.
        #[arg(long)]
        pass_timing: bool,
        /// Print the module after every pass (standard error).
        #[arg(long)]
        print_ir_after_all: bool,
        /// Print the module after the named pass (repeatable).
        #[arg(long, value_name = "PASS")]
        print_ir_after: Vec<String>,
        /// List the registered passes and their options, and exit.
        #[arg(long)]
        list_passes: bool,
    },
    /// Compile a program for encrypted execution: lowering, parameter selection; writes a .fhecp file
    /// (and/or a model's server and client files with --model-dir).
    Compile {
        /// Program file (`-` for standard input).
        file: String,
        /// Output file for the compiled program.
        #[arg(
            short = 'o',
            long,
            value_name = "PROGRAM.fhecp",
            required_unless_present = "model_dir"
        )]
        output: Option<String>,
        /// Also (or instead) write the deployment files NAME.server.fhec and NAME.client.fhec here
        /// (docs/deployment.md).
        #[arg(long, value_name = "DIR")]
        model_dir: Option<String>,
        /// The model's name in the deployment files (default: the source file's stem).
        #[arg(long, value_name = "NAME", requires = "model_dir")]
        name: Option<String>,
        /// Failure probability of each table lookup (default 2^-128). Accepts `2^-40` or `1e-12`.
        #[arg(long, value_name = "P", conflicts_with = "global_p_error")]
        p_error: Option<String>,
        /// Failure probability of a whole run instead (union bound over all lookups).
        #[arg(long, value_name = "P")]
        global_p_error: Option<String>,
        /// The function to compile (default: @main, or the only function).
        #[arg(long)]
        function: Option<String>,
        /// Also print the lowered program (the `tfhe` dialect) on standard output.
        #[arg(long)]
        emit_tfhe: bool,
        /// Use the parameters of another compiled program instead of searching, so that its keys
        /// serve this program too (its partitions: the lookups are assigned to them; fails if no
        /// assignment meets the failure probability).
        #[arg(long, value_name = "PROGRAM.fhecp")]
        params_of: Option<String>,
        /// The passes to run before lowering (default: the default pipeline; `none` for no passes).
        #[arg(long, value_name = "PIPELINE")]
        pipeline: Option<String>,
        /// Let lookups of low precision or sensitivity get a partition of their own, with smaller
        /// parameters, where the cost model says it pays (docs/crypto.md, "Partitions"): the default
        #[arg(long, conflicts_with_all = ["no_partitions", "params_of"])]
        partitions: bool,
        /// One parameter set for every lookup (no partitions): fewer, smaller keys when the split
        /// buys little
        #[arg(long)]
        no_partitions: bool,
        /// Several lookups on one input in one blind rotation (docs/crypto.md, "Many-LUT"): `auto`
        /// (the default) where the cost model says it pays, `on` wherever possible, `off` never.
        #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "on", "off"])]
        many_lut: String,
        /// Send the bootstrap keys whole instead of rounding away the low bits of their bodies
        /// (docs/crypto.md, "Rounded bootstrap keys"): larger keys, but room left for programs
        /// compiled with --params-of this one to share its keys
        #[arg(long)]
        whole_keys: bool,
        /// The most evaluation keys (as sent) the program may need, in bytes (K/M/G/T: powers of
        /// 1024): the fastest program within them is kept, or compilation fails naming the smallest
        /// keys found (docs/crypto.md, "Key budget")
        #[arg(long, value_name = "SIZE")]
        max_key_bytes: Option<String>,
    },
    /// Generate secret (client) keys and evaluation keys for a compiled program.
    Keygen {
        /// Compiled program (.fhecp).
        program: String,
        /// Where to write the secret keys (keep them on the client).
        #[arg(long, default_value = "client.keys")]
        client_keys: String,
        /// Where to write the evaluation keys (compressed; send them to the server).
        #[arg(long, default_value = "eval.keys")]
        eval_keys: String,
        /// Replace key files that exist (by default keygen refuses: old ciphertexts would no longer
        /// decrypt).
        #[arg(long)]
        force: bool,
    },
    /// Encrypt inputs of a compiled program with the client keys.
    Encrypt {
        /// Compiled program (.fhecp), or a model's client file (.client.fhec).
        program: String,
        /// Secret keys from `fhec keygen`.
        #[arg(long, default_value = "client.keys")]
        client_keys: String,
        /// An input: NAME=PATH (.npy, or a JSON file) or NAME=JSON.
        #[arg(long = "input", short = 'i', value_name = "NAME=PATH", conflicts_with = "features")]
        inputs: Vec<String>,
        /// With a model's client file: rows of float features (a samples × features .npy), quantised
        /// and encoded by the model's client spec; one sample per row.
        #[arg(long, value_name = "X.npy")]
        features: Option<String>,
        /// Output file for the ciphertexts.
        #[arg(short = 'o', long, value_name = "INPUTS.fhecct")]
        output: String,
        /// The inputs carry a leading batch axis: encrypt one sample per entry (run in parallel).
        #[arg(long)]
        batch: bool,
    },
    /// Run a compiled program on encrypted inputs (server side: evaluation keys only).
    Run {
        /// Compiled program (.fhecp).
        program: String,
        /// Encrypted inputs from `fhec encrypt`.
        input: String,
        /// Evaluation keys from `fhec keygen`.
        #[arg(long, default_value = "eval.keys")]
        eval_keys: String,
        /// Output file for the encrypted results.
        #[arg(short = 'o', long, value_name = "OUTPUTS.fhecct")]
        output: String,
        /// Raise or lower a resource limit (repeatable): `max_sample_bytes`, `max_lookups`,
        /// `max_table_bytes`, `max_samples`, `max_result_bytes`; sizes take K/M/G/T.
        #[arg(long = "limit", value_name = "NAME=VALUE")]
        limits: Vec<String>,
    },
    /// Decrypt the results of `fhec run`; prints them as JSON, like `fhec eval` (one line per sample).
    Decrypt {
        /// Compiled program (.fhecp), or a model's client file (.client.fhec).
        program: String,
        /// Encrypted results from `fhec run`.
        input: String,
        /// Secret keys from `fhec keygen`.
        #[arg(long, default_value = "client.keys")]
        client_keys: String,
        /// With a model's client file: print the decrypted integers instead of the model's
        /// predictions.
        #[arg(long)]
        raw: bool,
    },
    /// Run a compiled program on clear inputs without keys (exact simulation of the encrypted run).
    Simulate {
        /// Compiled program (.fhecp).
        program: String,
        /// An input: NAME=PATH (.npy, or a JSON file) or NAME=JSON.
        #[arg(long = "input", short = 'i', value_name = "NAME=PATH")]
        inputs: Vec<String>,
        /// The inputs carry a leading batch axis; prints one line per sample.
        #[arg(long)]
        batch: bool,
    },
    /// Serve models over HTTP: clients upload evaluation keys and run ciphertexts (docs/deployment.md).
    Serve {
        /// Server files (NAME.server.fhec), or directories of them; a NAME.client.fhec beside a server
        /// file is offered to clients.
        #[arg(required = true)]
        models: Vec<String>,
        /// Directory of the uploaded evaluation keys (created if needed).
        #[arg(long, value_name = "DIR")]
        keys: String,
        /// Address to listen on (port 0: any free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
        listen: String,
        /// Budget of the in-memory cache of expanded evaluation keys (K/M/G/T).
        #[arg(long, default_value = "4G", value_name = "BYTES")]
        cache_bytes: String,
        /// Largest request body: an evaluation-key upload or a batch of ciphertexts (K/M/G/T).
        #[arg(long, default_value = "1G", value_name = "BYTES")]
        max_body: String,
        /// Runs at once (each uses every core).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Runs that may wait for a job; more are answered 503 with Retry-After.
        #[arg(long, default_value_t = 16)]
        queue: usize,
        /// Seconds after which a run is cancelled (504).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Raise or lower a resource limit (repeatable), as for `fhec run`.
        #[arg(long = "limit", value_name = "NAME=VALUE")]
        limits: Vec<String>,
    },
    /// Describe a compiled program: parameters, security, failure probability, lookups, key sizes, latency.
    Info {
        /// Compiled program (.fhecp).
        program: String,
    },
    /// Import a tree ensemble (XGBoost JSON, LightGBM dump, ONNX, or fhec's ensemble schema) or an ONNX neural
    /// network, quantise it on calibration data and write its fhe module (docs/trees.md, docs/onnx.md); compile the
    /// module with `fhec compile`.
    Import {
        /// Model format: `xgboost` (the JSON of `Booster.save_model("m.json")`), `lightgbm` (the JSON of
        /// `Booster.dump_model()`), `onnx` (a tree ensemble of ai.onnx.ml, or a neural network) or `fhec` (the
        /// schema).
        format: String,
        /// Model file.
        model: String,
        /// Calibration inputs: a float array (samples × the model's input shape) in a .npy file.
        #[arg(long, value_name = "X.npy")]
        calibration: String,
        /// Output: the fhe module (.fhe). What the client needs goes next to it: the quantised ensemble
        /// (OUTPUT.quantized.json: encode the inputs, decode the scores) or, for a network, its client spec
        /// (OUTPUT.spec.json: input quantisers, output dequantisation).
        #[arg(long, short = 'o', value_name = "MODEL.fhe")]
        output: String,
        /// Input bits per feature (trees: the client encrypts 2^n − 1 bits per feature; default 6). Networks:
        /// the bits of every role (inputs, activations, weights, outputs; default 5).
        #[arg(long)]
        n_bits: Option<u32>,
        /// Networks: the bits an accumulator keeps before a lookup (default 5), or `auto`: the fewest
        /// (2 to 8) that change at most 1 % of the calibration rows' top class against a fine rounding.
        #[arg(long, value_name = "BITS|auto")]
        rounding_bits: Option<fhe::RoundingArg>,
        /// Networks: where a layer's tables change only inside a window of 2^rounding-bits entries (an
        /// activation requantised to its calibrated range saturates outside it), round finer and read that
        /// window (docs/onnx.md, "Windows"): more accurate at few bits, not always cheaper.
        #[arg(long)]
        windows: bool,
        /// Networks ending in a linear layer: return the output as N partial sums that the client adds
        /// after decryption (1 to 64; docs/onnx.md, "Output parts"): narrower, less noisy outputs let the
        /// last lookups take cheaper parameters; the client then sees the parts. `auto`: 1, 2, 4 or 8,
        /// each compiled with `fhec compile`'s defaults, the fastest by the cost model (more parts only
        /// for 5 % of the estimate).
        #[arg(long, value_name = "N|auto")]
        output_parts: Option<fhe::PartsArg>,
        /// Leaf bits.
        #[arg(long, default_value_t = 6)]
        leaf_bits: u32,
        /// Input quantiser: `quantile` (levels at calibration quantiles) or `uniform` (affine).
        #[arg(long, default_value = "quantile")]
        quantizer: String,
        /// `fused` (a table per leaf and output), `indicator` (a 0/1 table per leaf) or `collect` (fused
        /// tables returning 1, summed per leaf value or digit, one small lookup per sum); default: for one
        /// output collect when its extra lookups are at most a tenth, else fused; for several outputs
        /// fused when the leaves are (nearly) pure, else indicator.
        #[arg(long)]
        leaf_mode: Option<String>,
    },
}

/// A failure whose message is already rendered (diagnostics with source excerpts).
pub(crate) struct Rendered(pub(crate) String);

pub(crate) enum Failure {
    Rendered(Rendered),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Other(e)
    }
}

pub(crate) fn read_source(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read standard input")?;
        return Ok(s);
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    String::from_utf8(bytes).map_err(|e| anyhow!("{file} is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

pub(crate) fn display_name(file: &str) -> &str {
    if file == "-" {
        "<stdin>"
    } else {
        file
    }
}

pub(crate) fn render_all(diags: &[Diagnostic], file: &str, src: &str) -> String {
    diags
        .iter()
        .map(|d| d.render(display_name(file), src))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The cases of a file: itself, or its `// -----` separated parts.
fn cases(src: &str, split: bool) -> Vec<String> {
    if split {
        split_cases(src).into_iter().map(|c| c.text).collect()
    } else {
        vec![src.to_string()]
    }
}

fn fmt(file: &str, check: bool, split: bool) -> Result<(), Failure> {
    let src = read_source(file)?;
    let mut printed = Vec::new();
    for case in cases(&src, split) {
        let m =
            ir::parse_module(&case).map_err(|d| Failure::Rendered(Rendered(d.render(display_name(file), &case))))?;
        printed.push(ir::print_module(&m));
    }
    let out = printed.join("\n// -----\n\n");
    if check {
        if out != src {
            let flag = if split { " --split-input-file" } else { "" };
            return Err(Failure::Other(anyhow!(
                "{} is not in canonical form (run `fhec fmt{flag} {file}`)",
                display_name(file)
            )));
        }
        return Ok(());
    }
    print!("{out}");
    Ok(())
}

fn verify(file: &str, split: bool) -> Result<(), Failure> {
    let src = read_source(file)?;
    let all = cases(&src, split);
    let mut rendered = Vec::new();
    for case in &all {
        match ir::parse_and_verify(case) {
            Ok(_) => {}
            Err(diags) => rendered.push(render_all(&diags, file, case)),
        }
    }
    if !rendered.is_empty() {
        return Err(Failure::Rendered(Rendered(rendered.join("\n"))));
    }
    if split {
        println!("ok: {} case(s)", all.len());
    } else {
        println!("ok");
    }
    Ok(())
}

fn eval(file: &str, inputs: &[String], function: Option<&str>) -> Result<(), Failure> {
    let src = read_source(file)?;
    let render = |diags: &[Diagnostic]| Failure::Rendered(Rendered(render_all(diags, file, &src)));
    let m = ir::parse_module(&src).map_err(|d| render(&[d]))?;
    let proof = ir::verify(&m).map_err(|d| render(&d))?;
    let f = match function {
        Some(name) => m.function(name.trim_start_matches('@')).ok_or_else(|| {
            anyhow!(
                "no function @{} in {}",
                name.trim_start_matches('@'),
                display_name(file)
            )
        })?,
        None => m.entry().map_err(|d| render(&[d]))?,
    };
    let arg_names: Vec<String> = f
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| f.value(a.value).name.clone().unwrap_or_else(|| i.to_string()))
        .collect();
    let expected = || {
        f.args
            .iter()
            .zip(&arg_names)
            .map(|(a, n)| format!("{n}: {}", f.ty(a.value)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut given: Vec<Option<Tensor>> = vec![None; f.args.len()];
    for spec in inputs {
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--input `{spec}` must be NAME=PATH"))?;
        let name = name.trim().trim_start_matches('%');
        let i = arg_names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| anyhow!("@{} has no argument %{name} (arguments: {})", f.name, expected()))?;
        if given[i].is_some() {
            return Err(anyhow!("input %{name} is given twice").into());
        }
        given[i] = Some(read_tensor_arg(value).map_err(|e| anyhow!("input %{name}: {e}"))?);
    }
    let mut args = Vec::new();
    for (i, g) in given.into_iter().enumerate() {
        match g {
            Some(t) => args.push(t),
            None => bail_failure(format!(
                "missing input %{} (give --input {}=PATH; arguments: {})",
                arg_names[i],
                arg_names[i],
                expected()
            ))?,
        }
    }
    let outputs = ir::interp::eval_function(&proof, &f.name, &args).map_err(|d| render(&[d]))?;
    let json: Vec<serde_json::Value> = outputs.iter().map(tensor_to_json).collect();
    println!("{}", serde_json::Value::Array(json));
    Ok(())
}

fn bail_failure(msg: String) -> Result<(), Failure> {
    Err(Failure::Other(anyhow!(msg)))
}

fn main() -> ExitCode {
    // A reader that stops early (`fhec info prog.fhecp | head`) closes the pipe: end quietly, as Unix
    // tools do, instead of the panic Rust's `println!` raises on a write to a closed pipe (Rust
    // ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Fmt {
            file,
            check,
            split_input_file,
        } => fmt(file, *check, *split_input_file),
        Command::Verify { file, split_input_file } => verify(file, *split_input_file),
        Command::Eval { file, inputs, function } => eval(file, inputs, function.as_deref()),
        Command::Compile {
            file,
            output,
            model_dir,
            name,
            p_error,
            global_p_error,
            function,
            emit_tfhe,
            params_of,
            pipeline,
            partitions: _,
            no_partitions,
            many_lut,
            whole_keys,
            max_key_bytes,
        } => fhe::compile(
            file,
            output.as_deref(),
            fhe::CompileArgs {
                model_dir: model_dir.as_deref(),
                name: name.as_deref(),
                p_error: p_error.as_deref(),
                global: global_p_error.as_deref(),
                function: function.as_deref(),
                emit: *emit_tfhe,
                params_of: params_of.as_deref(),
                pipeline: pipeline.as_deref(),
                partitions: !*no_partitions,
                many_lut: match many_lut.as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    _ => None,
                },
                whole_keys: *whole_keys,
                max_key_bytes: max_key_bytes.as_deref(),
            },
        ),
        Command::Opt {
            file,
            pipeline,
            calibration,
            pass_statistics,
            pass_timing,
            print_ir_after_all,
            print_ir_after,
            list_passes,
        } => opt::opt(
            file,
            &opt::OptArgs {
                pipeline: pipeline.as_deref(),
                calibration,
                statistics: *pass_statistics,
                timing: *pass_timing,
                print_after_all: *print_ir_after_all,
                print_after: print_ir_after,
                list: *list_passes,
            },
        ),
        Command::Keygen {
            program,
            client_keys,
            eval_keys,
            force,
        } => fhe::keygen(program, client_keys, eval_keys, *force),
        Command::Encrypt {
            program,
            client_keys,
            inputs,
            features,
            output,
            batch,
        } => fhe::encrypt(program, client_keys, inputs, features.as_deref(), output, *batch),
        Command::Run {
            program,
            input,
            eval_keys,
            output,
            limits,
        } => fhe::run(program, input, eval_keys, output, limits),
        Command::Decrypt {
            program,
            input,
            client_keys,
            raw,
        } => fhe::decrypt(program, input, client_keys, *raw),
        Command::Simulate { program, inputs, batch } => fhe::simulate(program, inputs, *batch),
        Command::Info { program } => fhe::info(program),
        Command::Serve {
            models,
            keys,
            listen,
            cache_bytes,
            max_body,
            jobs,
            queue,
            timeout,
            limits,
        } => fhe::serve(fhe::ServeArgs {
            models,
            keys,
            listen,
            cache_bytes,
            max_body,
            jobs: *jobs,
            queue: *queue,
            timeout: *timeout,
            limits,
        }),
        Command::Import {
            format,
            model,
            calibration,
            output,
            n_bits,
            rounding_bits,
            windows,
            output_parts,
            leaf_bits,
            quantizer,
            leaf_mode,
        } => fhe::import(
            format,
            model,
            calibration,
            output,
            (*n_bits, *rounding_bits, *windows, *output_parts),
            *leaf_bits,
            quantizer,
            leaf_mode.as_deref(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rendered(Rendered(text))) => {
            eprint!("{text}");
            ExitCode::FAILURE
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
