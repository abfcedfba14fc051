//! The encrypted-execution commands: compile, keygen, encrypt, run, decrypt, simulate, info.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context};
use std::sync::Arc;

use fhec::backend::text::print_program;
use fhec::io::{read_tensor_arg, tensor_to_json, write_atomic, write_atomic_private};
use fhec::ir::{self, Tensor};
use fhec::runtime::{self, io as rio, ClearTensor, Port, Program, ProgramInterface, Progress};
use fhec::{Client, CompileOptions, PError, Server};
use ndarray::{ArrayD, IxDyn};

use crate::{display_name, read_source, render_all, Failure, Rendered};

/// Parses a probability: `2^-40`, `1e-12` or `0.001`.
fn parse_probability(s: &str) -> anyhow::Result<f64> {
    let t = s.trim();
    let p = if let Some(e) = t.strip_prefix("2^") {
        let e: f64 = e
            .parse()
            .map_err(|_| anyhow!("`{s}` is not a probability (try 2^-40 or 1e-12)"))?;
        e.exp2()
    } else {
        t.parse()
            .map_err(|_| anyhow!("`{s}` is not a probability (try 2^-40 or 1e-12)"))?
    };
    if !(p > 0.0 && p < 1.0) {
        return Err(anyhow!("failure probability {s} must be in (0, 1)"));
    }
    Ok(p)
}

fn read_file(path: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {path}"))
}

/// A program file, or a model's server file.
fn load_program(path: &str) -> anyhow::Result<Program> {
    let bytes = read_file(path, "program")?;
    fhec::model::server_program_from_bytes(&bytes).map_err(|e| anyhow!("{path}: {e}"))
}

/// The client's view of a program file, a model's client file or a model's server file.
fn load_interface(path: &str) -> anyhow::Result<ProgramInterface> {
    let bytes = read_file(path, "program")?;
    fhec::model::interface_from_bytes(&bytes).map_err(|e| anyhow!("{path}: {e}"))
}

fn load_client(path: &str, interface: ProgramInterface) -> anyhow::Result<Client> {
    let bytes = read_file(path, "client keys")?;
    let k = rio::client_keys_from_bytes(&bytes).map_err(|e| anyhow!("{path}: {e}"))?;
    if k.partitions() != interface.partitions {
        return Err(anyhow!(
            "{path}: these keys are for other parameters than the program (run `fhec keygen` for it)"
        ));
    }
    Client::from_keys(interface, k).map_err(|e| anyhow!("{path}: {e}"))
}

fn write(path: &str, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic(Path::new(path), bytes).map_err(|e| anyhow!("{e}"))
}

fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub(crate) struct CompileArgs<'a> {
    pub partitions: bool,
    pub many_lut: Option<bool>,
    pub whole_keys: bool,
    pub max_key_bytes: Option<&'a str>,
    pub model_dir: Option<&'a str>,
    pub name: Option<&'a str>,
    pub p_error: Option<&'a str>,
    pub global: Option<&'a str>,
    pub function: Option<&'a str>,
    pub emit: bool,
    pub params_of: Option<&'a str>,
    pub pipeline: Option<&'a str>,
}

pub(crate) fn compile(file: &str, output: Option<&str>, a: CompileArgs<'_>) -> Result<(), Failure> {
    let CompileArgs {
        model_dir,
        name,
        p_error,
        global,
        function,
        emit,
        params_of,
        pipeline,
        partitions,
        many_lut,
        whole_keys,
        max_key_bytes,
    } = a;
    let src = read_source(file)?;
    let render = |diags: &[ir::Diagnostic]| Failure::Rendered(Rendered(render_all(diags, file, &src)));
    let m = ir::parse_module(&src).map_err(|d| render(&[d]))?;
    let p_error = match (p_error, global) {
        (Some(p), _) => PError::PerLookup(parse_probability(p)?),
        (None, Some(g)) => PError::Global(parse_probability(g)?),
        (None, None) => PError::default(),
    };
    let params = match params_of {
        Some(path) => Some(load_program(path)?.partitions),
        None => None,
    };
    let opts = CompileOptions {
        p_error,
        pipeline: pipeline.map(str::to_string),
        function: function.map(|f| f.trim_start_matches('@').to_string()),
        params,
        source: Some(src.clone()),
        partitions,
        many_lut,
        whole_keys,
        max_key_bytes: max_key_bytes
            .map(|v| runtime::program::parse_size(v).map_err(|m| anyhow!("--max-key-bytes: {m}")))
            .transpose()?,
        ..Default::default()
    };
    let t0 = Instant::now();
    let spec = fhec::integer_spec(&m).map_err(|e| anyhow!("{e}"))?;
    let c = fhec::compile(m, spec, &opts).map_err(|e| {
        if e.diagnostics().is_empty() {
            Failure::Other(anyhow!("{e}"))
        } else {
            render(e.diagnostics())
        }
    })?;
    let mut wrote = Vec::new();
    if let Some(output) = output {
        let bytes = c.program_bytes().map_err(|e| anyhow!("{e}"))?;
        write(output, &bytes)?;
        wrote.push(output.to_string());
    }
    if let Some(dir) = model_dir {
        let stem = Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| s != "-")
            .unwrap_or_else(|| "model".into());
        let name = name.map(str::to_string).unwrap_or(stem);
        let (server, client) = c.model_files(&name, "program").map_err(|e| anyhow!("{e}"))?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
        for (suffix, bytes) in [("server", server), ("client", client)] {
            let path = Path::new(dir).join(format!("{name}.{suffix}.fhec"));
            write(&path.to_string_lossy(), &bytes)?;
            wrote.push(path.display().to_string());
        }
    }
    let output = wrote.join(", ");
    let program = c.program();
    if emit {
        print!("{}", print_program(program));
    }
    let n = &program.noise;
    let lanes = match program.lane_count() {
        0 => String::new(),
        k => format!(" and {k} lanes"),
    };
    let budget = match opts.max_key_bytes {
        Some(b) => format!(
            ", evaluation keys {} (budget {})",
            mb(runtime::keys::program_key_bytes(program).0),
            mb(b as usize)
        ),
        None => String::new(),
    };
    eprintln!(
        "compiled {} in {:.2} s: {} lookups{lanes}, parameters {}, p_error 2^{:.1} per lookup (worst), estimated {:.3} s per run{budget}; wrote {output}",
        display_name(file),
        t0.elapsed().as_secs_f64(),
        program.pbs_count(),
        program.params_summary(),
        n.log2_p_error_worst_lookup,
        n.estimated_seconds
    );
    Ok(())
}

pub(crate) fn keygen(program: &str, client: &str, eval: &str, force: bool) -> Result<(), Failure> {
    if !force {
        if let Some(existing) = [client, eval].into_iter().find(|f| Path::new(f).exists()) {
            return Err(anyhow!(
                "{existing} exists: new keys would make ciphertexts under the old ones undecryptable; \
                 remove it, write elsewhere (--client-keys, --eval-keys) or pass --force"
            )
            .into());
        }
    }
    let p = load_interface(program)?;
    let progress = Progress::stderr();
    let t0 = Instant::now();
    let c = Client::keygen(p).map_err(|e| anyhow!("{e}"))?;
    let ek = c.evaluation_keys(&progress);
    let secs = t0.elapsed().as_secs_f64();
    let secret = c.secret_keys_bytes().map_err(|e| anyhow!("{e}"))?;
    write_atomic_private(Path::new(client), &secret).map_err(|e| anyhow!("{e}"))?;
    write(eval, &rio::evaluation_keys_to_bytes(&ek).map_err(|e| anyhow!("{e}"))?)?;
    eprintln!(
        "generated keys {:016x} in {secs:.2} s: secret keys → {client} (keep private), evaluation keys ({}) → {eval}",
        c.key_id(),
        mb(ek.size_bytes())
    );
    Ok(())
}

/// Reads `--input NAME=PATH` arguments for the program's inputs, in port order.
fn collect_inputs(ports: &[Port], specs: &[String], batch: bool) -> anyhow::Result<Vec<ClearTensor>> {
    let names: Vec<&str> = ports.iter().map(|i| i.name.as_str()).collect();
    let expected = || {
        ports
            .iter()
            .map(|i| format!("{}: {:?}", i.name, i.shape))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut given: Vec<Option<Tensor>> = vec![None; names.len()];
    for spec in specs {
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--input `{spec}` must be NAME=PATH"))?;
        let name = name.trim().trim_start_matches('%');
        let i = names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| anyhow!("the program has no input %{name} (inputs: {})", expected()))?;
        if given[i].is_some() {
            return Err(anyhow!("input %{name} is given twice"));
        }
        given[i] = Some(read_tensor_arg(value).map_err(|e| anyhow!("input %{name}: {e}"))?);
    }
    given
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let t = g.ok_or_else(|| {
                anyhow!(
                    "missing input %{} (give --input {}=PATH; inputs: {})",
                    names[i],
                    names[i],
                    expected()
                )
            })?;
            let t = if t.ndim() == ports[i].shape.len() + usize::from(batch) {
                t
            } else if !batch && t.len() == ports[i].len() {
                // same elements, other layout (e.g. a flat list): reshape to the port's shape
                t.into_shape_with_order(IxDyn(&ports[i].shape))
                    .map_err(|e| anyhow!("{e}"))?
            } else {
                t
            };
            ClearTensor::new(t.shape().to_vec(), t.iter().copied().collect()).map_err(|e| anyhow!("{e}"))
        })
        .collect()
}

/// Splits each input along its first axis into samples (`--batch`).
fn split_batch(ports: &[Port], values: Vec<ClearTensor>, batch: bool) -> anyhow::Result<Vec<Vec<ClearTensor>>> {
    if !batch {
        return Ok(vec![values]);
    }
    let mut n = None;
    let mut per_input = Vec::new();
    for (port, t) in ports.iter().zip(values) {
        let (&b, rest) = t
            .shape
            .split_first()
            .ok_or_else(|| anyhow!("--batch: input %{} needs a leading batch axis", port.name))?;
        if *n.get_or_insert(b) != b {
            return Err(anyhow!("--batch: inputs have different batch sizes"));
        }
        let size: usize = rest.iter().product();
        per_input.push(
            (0..b)
                .map(|i| ClearTensor::new(rest.to_vec(), t.values[i * size..(i + 1) * size].to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow!("{e}"))?,
        );
    }
    let n = n.unwrap_or(1);
    if n == 0 {
        return Err(anyhow!("--batch: the batch is empty"));
    }
    Ok((0..n)
        .map(|i| per_input.iter().map(|v| v[i].clone()).collect())
        .collect())
}

/// A model's client file (kind 6), if `bytes` is one.
fn client_model(path: &str, bytes: &[u8]) -> anyhow::Result<Option<fhec::ClientModel>> {
    if rio::file_kind(bytes) == Some(rio::FileKind::ClientModel) {
        return Ok(Some(
            fhec::ClientModel::from_bytes(bytes).map_err(|e| anyhow!("{path}: {e}"))?,
        ));
    }
    Ok(None)
}

pub(crate) fn encrypt(
    program: &str,
    client: &str,
    inputs: &[String],
    features: Option<&str>,
    output: &str,
    batch: bool,
) -> Result<(), Failure> {
    let c = load_client(client, load_interface(program)?)?;
    let p = c.interface();
    let samples = match features {
        Some(x) => {
            let bytes = read_file(program, "program")?;
            let model = client_model(program, &bytes)?.ok_or_else(|| {
                anyhow!("--features needs a model's client file (NAME.client.fhec), which knows how to quantise them")
            })?;
            let (shape, values) = fhec::io::read_npy_f64(Path::new(x)).map_err(|e| anyhow!("{e}"))?;
            if shape.len() != 2 {
                return Err(anyhow!("{x}: expected a matrix of samples × features, got shape {shape:?}").into());
            }
            let (samples, clipped) = model.encode_rows(&values, shape[0]).map_err(|e| anyhow!("{x}: {e}"))?;
            if clipped > 0 {
                eprintln!("warning: {clipped} feature value(s) outside the calibrated range were clipped to it");
            }
            samples
        }
        None => split_batch(&p.inputs, collect_inputs(&p.inputs, inputs, batch)?, batch)?,
    };
    let cts = c.encrypt(&samples).map_err(|e| anyhow!("{e}"))?;
    write(output, &rio::ciphertexts_to_bytes(&cts).map_err(|e| anyhow!("{e}"))?)?;
    let clear: Vec<&str> = p.inputs.iter().filter(|i| i.clear).map(|i| i.name.as_str()).collect();
    let clear = if clear.is_empty() {
        String::new()
    } else {
        format!("; {} in the clear", clear.join(", "))
    };
    eprintln!(
        "encrypted {} sample(s) of {} input(s) ({}{clear}) → {output}",
        samples.len(),
        p.inputs.len(),
        mb(cts.size_bytes())
    );
    Ok(())
}

fn limits_of(limits: &[String]) -> anyhow::Result<runtime::Limits> {
    let mut policy = runtime::Limits::default();
    for l in limits {
        let (name, value) = l
            .split_once('=')
            .ok_or_else(|| anyhow!("--limit `{l}` must be NAME=VALUE"))?;
        policy.set(name.trim(), value).map_err(|e| anyhow!("--limit: {e}"))?;
    }
    Ok(policy)
}

pub(crate) struct ServeArgs<'a> {
    pub models: &'a [String],
    pub keys: &'a str,
    pub listen: &'a str,
    pub cache_bytes: &'a str,
    pub max_body: &'a str,
    pub jobs: usize,
    pub queue: usize,
    pub timeout: u64,
    pub limits: &'a [String],
}

/// `fhec serve`: the HTTP service until Ctrl-C or SIGTERM, then the running requests finish.
pub(crate) fn serve(a: ServeArgs<'_>) -> Result<(), Failure> {
    use fhec::serve::{serve, ServeConfig};
    let size = |flag: &str, v: &str| -> anyhow::Result<usize> {
        let n = runtime::program::parse_size(v).map_err(|m| anyhow!("--{flag}: {m}"))?;
        usize::try_from(n).map_err(|_| anyhow!("--{flag}: {v} is too large"))
    };
    let listen: std::net::SocketAddr = a
        .listen
        .parse()
        .map_err(|e| anyhow!("--listen `{}`: {e} (write ADDR:PORT, e.g. 127.0.0.1:8080)", a.listen))?;
    if a.jobs == 0 {
        return Err(anyhow!("--jobs must be at least 1").into());
    }
    let mut cfg = ServeConfig::new(
        a.models.iter().map(std::path::PathBuf::from).collect(),
        std::path::PathBuf::from(a.keys),
    );
    cfg.cache_bytes = size("cache-bytes", a.cache_bytes)?;
    cfg.max_body_bytes = size("max-body", a.max_body)?;
    cfg.jobs = a.jobs;
    cfg.queue = a.queue;
    cfg.timeout = std::time::Duration::from_secs(a.timeout.max(1));
    cfg.limits = limits_of(a.limits)?;
    let keys = a.keys.to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the runtime: {e}"))?;
    rt.block_on(serve(
        cfg,
        listen,
        |addr, names| {
            eprintln!(
                "fhec serve: listening on http://{addr} (models: {}; keys in {keys})",
                names.join(", ")
            );
        },
        shutdown_signal(),
    ))
    .map_err(|e| anyhow!("{e}"))?;
    eprintln!("fhec serve: stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("fhec serve: shutting down (finishing the requests in progress)");
}

pub(crate) fn run(program: &str, input: &str, eval: &str, output: &str, limits: &[String]) -> Result<(), Failure> {
    let policy = limits_of(limits)?;
    let p = load_program(program)?;
    policy
        .check_program(&p)
        .map_err(|e| anyhow!("{program}: {e} (raise it with --limit)"))?;
    let progress = Progress::stderr();
    let ek =
        rio::evaluation_keys_from_bytes(&read_file(eval, "evaluation keys")?).map_err(|e| anyhow!("{eval}: {e}"))?;
    ek.check_interface(&p.interface()).map_err(|e| anyhow!("{eval}: {e}"))?;
    let cts = rio::ciphertexts_from_bytes(&read_file(input, "ciphertexts")?).map_err(|e| anyhow!("{input}: {e}"))?;
    cts.check(&p.interface(), runtime::Direction::Inputs)
        .map_err(|e| anyhow!("{input}: {e}"))?;
    let lookups = p.pbs_count();
    let t0 = Instant::now();
    let server = Server::with_limits(Arc::new(p), ek, policy, &progress).map_err(|e| anyhow!("{eval}: {e}"))?;
    let t_keys = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let out = server.run(cts, &progress, None).map_err(|e| anyhow!("{e}"))?;
    let t_run = t1.elapsed().as_secs_f64();
    write(output, &rio::ciphertexts_to_bytes(&out).map_err(|e| anyhow!("{e}"))?)?;
    eprintln!(
        "ran {} lookups in {t_run:.2} s (key expansion {t_keys:.2} s) → {output}",
        lookups * out.samples()
    );
    Ok(())
}

fn print_outputs(outputs: &[ClearTensor]) -> anyhow::Result<()> {
    let json: Vec<serde_json::Value> = outputs
        .iter()
        .map(|t| {
            ArrayD::from_shape_vec(IxDyn(&t.shape), t.values.clone())
                .map(|a| tensor_to_json(&a))
                .map_err(|e| anyhow!("{e}"))
        })
        .collect::<Result<_, _>>()?;
    println!("{}", serde_json::Value::Array(json));
    Ok(())
}

pub(crate) fn decrypt(program: &str, input: &str, client: &str, raw: bool) -> Result<(), Failure> {
    let c = load_client(client, load_interface(program)?)?;
    let cts = rio::ciphertexts_from_bytes(&read_file(input, "ciphertexts")?).map_err(|e| anyhow!("{input}: {e}"))?;
    let out = c.decrypt(&cts).map_err(|e| anyhow!("{input}: {e}"))?;
    let model = if raw {
        None
    } else {
        client_model(program, &read_file(program, "program")?)?
            .filter(|m| matches!(m.spec.inputs.as_slice(), [fhec::quant::InputSpec::Features { .. }]))
    };
    let Some(model) = model else {
        for sample in &out {
            print_outputs(sample)?;
        }
        return Ok(());
    };
    // a model: one JSON object per sample, its prediction (a class label or a value) and the
    // post-processed values (class probabilities, decision values or predictions)
    let (values, cols) = model.decode_rows(&out).map_err(|e| anyhow!("{input}: {e}"))?;
    let classes = match &model.spec.classes {
        Some(labels) => Some((labels, model.class_indices(&out).map_err(|e| anyhow!("{input}: {e}"))?)),
        None => None,
    };
    for (i, row) in values.chunks(cols.max(1)).enumerate() {
        let prediction = match &classes {
            Some((labels, idx)) => labels.get(idx[i]).cloned().unwrap_or(serde_json::Value::Null),
            None if row.len() == 1 => serde_json::json!(row[0]),
            None => serde_json::json!(row),
        };
        println!("{}", serde_json::json!({"prediction": prediction, "values": row}));
    }
    Ok(())
}

pub(crate) fn simulate(program: &str, inputs: &[String], batch: bool) -> Result<(), Failure> {
    let p = load_program(program)?;
    let samples = split_batch(&p.inputs, collect_inputs(&p.inputs, inputs, batch)?, batch)?;
    let out = p.simulate(&samples).map_err(|e| anyhow!("{e}"))?;
    for sample in &out {
        print_outputs(sample)?;
    }
    Ok(())
}

pub(crate) fn info(program: &str) -> Result<(), Failure> {
    use fhec::model::{ClientModel, ServerModel};
    let bytes = read_file(program, "program")?;
    let at = |e: fhec::Error| anyhow!("{program}: {e}");
    let (model, what, iface, prog) = match rio::file_kind(&bytes) {
        Some(rio::FileKind::ClientModel) => {
            let m = ClientModel::from_bytes(&bytes).map_err(at)?;
            let spec = format!(
                "client file: the program's interface and the client spec ({} input(s){}); no instruction, no table",
                m.spec.inputs.len(),
                match &m.spec.classes {
                    Some(c) => format!(", {} classes", c.len()),
                    None => String::new(),
                }
            );
            (Some(m.info), spec, m.interface, None)
        }
        Some(rio::FileKind::ServerModel) => {
            let m = ServerModel::from_bytes(&bytes).map_err(at)?;
            let iface = m.program.interface();
            (
                Some(m.info),
                "server file: the program".to_string(),
                iface,
                Some(m.program),
            )
        }
        _ => {
            let p = fhec::program_from_bytes(&bytes).map_err(at)?;
            (None, String::new(), p.interface(), Some(p))
        }
    };
    if let Some(m) = &model {
        println!(
            "model {} ({}, written by fhec {}): {what}",
            m.name, m.kind, m.fhec_version
        );
    }
    let p = &iface;
    let port = |x: &runtime::Port| {
        format!(
            "{}: {:?} {}-bit {} {}{}",
            x.name,
            x.shape,
            x.width,
            if x.signed { "signed" } else { "unsigned" },
            if x.clear {
                "(clear: sent unencrypted)".to_string()
            } else {
                format!("(scale 2^{})", x.scale)
            },
            match x.range {
                Some((lo, hi)) => format!(", accepts [{lo}, {hi}]"),
                None => String::new(),
            }
        )
    };
    println!("program @{}", p.name);
    for i in &p.inputs {
        println!("  input   {}", port(i));
    }
    for o in &p.outputs {
        println!("  output  {}", port(o));
    }
    let keys = runtime::keys::partition_key_bytes(p);
    for (q, part) in p.partitions.iter().enumerate() {
        let r = part.raw();
        if p.partitions.len() == 1 {
            println!("parameters");
        } else {
            let (c, e) = keys[q];
            let role = if q == 0 { ", encrypts the inputs" } else { "" };
            println!(
                "partition {q} ({} lookups{role}; evaluation keys {} compressed, {} expanded)",
                p.partition_lookups[q],
                mb(c),
                mb(e)
            );
        }
        println!(
            "  LWE dimension n = {}, GLWE dimension k = {}, polynomial size N = {} (k·N = {})",
            r.lwe_dimension,
            r.glwe_dimension,
            r.polynomial_size,
            part.big_lwe_dimension()
        );
        if p.partition_lookups[q] == 0 {
            println!("  no table lookups: no bootstrap or keyswitch (inputs and outputs under the GLWE key only)");
        } else {
            println!(
                "  bootstrap decomposition base 2^{} × {} levels, keyswitch base 2^{} × {} levels into {}-bit ciphertexts{}",
                r.pbs_base_log,
                r.pbs_level,
                r.ks_base_log,
                r.ks_level,
                r.ks_modulus_log2,
                if part.ks32() { " (KS32)" } else { "" }
            );
        }
        println!(
            "  noise: TUniform 2^{} (LWE key, modulo 2^{}), 2^{} (GLWE key){}",
            r.lwe_noise_bound_log2,
            r.ks_modulus_log2,
            r.glwe_noise_bound_log2,
            if r.bsk_rounding_log2 > 0 && p.partition_lookups[q] > 0 {
                format!(
                    "; bootstrap key bodies sent rounded to 2^{} ({} of 64 bits each)",
                    r.bsk_rounding_log2,
                    64 - r.bsk_rounding_log2
                )
            } else {
                String::new()
            }
        );
    }
    let secure =
        p.partitions.iter().all(|q| q.is_secure()) && runtime::params::partitions_problem(&p.partitions).is_none();
    if let [only] = &p.partitions[..] {
        let r = only.raw();
        let lwe_min = runtime::params::secure_lwe_bound_at(r.lwe_dimension, r.ks_modulus_log2);
        let glwe_min = runtime::params::secure_glwe_bound(r.glwe_dimension, r.polynomial_size);
        println!(
            "security: {} (tfhe-rs secure_noise curves, labelled 132-bit: LWE bound 2^{} ≥ 2^{lwe_min} at n = {} modulo 2^{}, GLWE bound 2^{} ≥ 2^{glwe_min} at k·N = {})",
            if secure { "≥ 128 bits" } else { "NOT SECURE" },
            r.lwe_noise_bound_log2,
            r.lwe_dimension,
            r.ks_modulus_log2,
            r.glwe_noise_bound_log2,
            only.big_lwe_dimension()
        );
    } else {
        println!(
            "security: {} (tfhe-rs secure_noise curves, labelled 132-bit, for every partition's keys, and for the GLWE \
             keys as prefixes of one master key of dimension {}: see docs/crypto.md)",
            if secure { "≥ 128 bits" } else { "NOT SECURE" },
            runtime::params::master_dimension(&p.partitions)
        );
    }
    let n = &p.noise;
    let stated = if prog.is_none() {
        " (as stated by the client file)"
    } else {
        ""
    };
    println!(
        "failure probability: 2^{:.1} per lookup (worst), 2^{:.1} per run (all lookups and outputs){stated}",
        n.log2_p_error_worst_lookup, n.log2_p_error_global
    );
    let by: Vec<String> = n
        .pbs_by_precision
        .iter()
        .map(|(p, c)| format!("{c} at {p} bits"))
        .collect();
    let by = if by.is_empty() {
        "none".to_string()
    } else {
        by.join(", ")
    };
    match &prog {
        Some(prog) => {
            let n_lanes = prog.lane_count();
            let lanes = if n_lanes == 0 {
                String::new()
            } else {
                format!(" and {n_lanes} lanes (more outputs of those blind rotations)")
            };
            println!(
                "lookups per run: {} ({by}){lanes}; linear instructions: {}; tables: {}",
                prog.pbs_count(),
                prog.instrs.len() - prog.pbs_count() - n_lanes,
                prog.tables.len()
            )
        }
        None => println!("lookups per run: {} ({by})", p.lookups),
    }
    let (compressed, expanded) = runtime::keys::interface_key_bytes(p);
    if compressed == 0 {
        println!("key sizes: no evaluation keys (no table lookups: the server needs no key)");
    } else {
        println!(
            "key sizes: evaluation keys {} compressed, {} expanded on the server",
            mb(compressed),
            mb(expanded)
        );
    }
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    if threads > 1 && compressed > 0 {
        // the executor runs each stage's lookups in parallel, at 0.85–0.99 of a perfect split
        // (docs/benchmarks.md, "Exact rounding and wide lookups")
        println!(
            "estimated latency: {:.3} s per sample, single thread (cost model); ~{:.3} s on this machine's {threads} threads",
            n.estimated_seconds,
            n.estimated_seconds / threads as f64
        );
    } else {
        println!(
            "estimated latency: {:.3} s per sample, single thread (cost model)",
            n.estimated_seconds
        );
    }
    Ok(())
}

/// `--rounding-bits`: a number of bits, or `auto` (`OnnxModel::choose_rounding_bits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoundingArg {
    Bits(u32),
    Auto,
}

impl std::str::FromStr for RoundingArg {
    type Err = String;
    fn from_str(s: &str) -> Result<RoundingArg, String> {
        if s == "auto" {
            return Ok(RoundingArg::Auto);
        }
        s.parse::<u32>()
            .map(RoundingArg::Bits)
            .map_err(|_| format!("`{s}` is neither a number of bits nor `auto`"))
    }
}

/// `--output-parts`: a number of parts, or `auto` (the fastest of `AUTO_OUTPUT_PARTS` by the cost model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PartsArg {
    Count(u32),
    Auto,
}

impl std::str::FromStr for PartsArg {
    type Err = String;
    fn from_str(s: &str) -> Result<PartsArg, String> {
        if s == "auto" {
            return Ok(PartsArg::Auto);
        }
        s.parse::<u32>()
            .map(PartsArg::Count)
            .map_err(|_| format!("`{s}` is neither a number of parts nor `auto`"))
    }
}

/// `fhec import`'s network flags: `--n-bits`, `--rounding-bits`, `--windows`, `--output-parts`.
pub(crate) type NetworkFlags = (Option<u32>, Option<RoundingArg>, bool, Option<PartsArg>);

/// One candidate of `import_network`: the quantised network at `opts` (with `--rounding-bits auto`,
/// the rounding chosen for it), and whether the choice met its tolerance.
fn quantize_network(
    m: &fhec::onnx::OnnxModel,
    x: &ndarray::ArrayD<f64>,
    mut opts: fhec::onnx::PtqOptions,
    rounding_bits: Option<RoundingArg>,
    model: &str,
) -> Result<(fhec::onnx::QuantizedNetwork, bool), Failure> {
    match rounding_bits {
        Some(RoundingArg::Bits(b)) => opts.rounding_bits = b,
        Some(RoundingArg::Auto) => {
            let tolerance = fhec::onnx::DEFAULT_ROUNDING_TOLERANCE;
            // a candidate counts when it compiles with the default options (`fhec compile` of the
            // written module): secure parameters exist for its lookups
            let (c, built) = m
                .choose_rounding_bits_with(x, &opts, tolerance, |q| {
                    fhec::compile(q.module.clone(), q.spec.clone(), &fhec::CompileOptions::default())
                        .map(|_| ())
                        .map_err(fhec::Error::rounding_failure)
                })
                .map_err(|e| anyhow!("{model}: {e}"))?;
            if let Err(fhec::onnx::BuildFailure::Failed(e)) = built {
                return Err(anyhow!("{model}: {e}").into());
            }
            let tried: Vec<String> = c
                .trials
                .iter()
                .map(|t| match (t.error, &t.infeasible) {
                    (Some(e), None) => format!("{} bits {:.2} %", t.bits, 100.0 * e),
                    (Some(e), Some(_)) => format!("{} bits {:.2} % (no secure parameters)", t.bits, 100.0 * e),
                    (None, _) => format!("{} bits: no tables", t.bits),
                })
                .collect();
            let refused = c.trials.iter().any(|t| t.infeasible.is_some());
            let parts = if opts.output_parts > 1 {
                format!(" ({} output parts)", opts.output_parts)
            } else {
                String::new()
            };
            eprintln!(
                "rounding{parts}: {} bits ({} the {:.0} % tolerance against {}-bit rounding on {} calibration rows; tried {})",
                c.bits,
                match (c.met, refused) {
                    (true, _) => "within",
                    (false, false) => "the closest to; none within",
                    (false, true) => "the closest with secure parameters to",
                },
                100.0 * tolerance,
                c.reference_bits,
                c.rows,
                tried.join(", ")
            );
            opts.rounding_bits = c.bits;
            let q = m.quantize(x, &opts).map_err(|e| anyhow!("{model}: {e}"))?;
            return Ok((q, c.met));
        }
        None => {}
    }
    let q = m.quantize(x, &opts).map_err(|e| anyhow!("{model}: {e}"))?;
    Ok((q, true))
}

/// `fhec import onnx` of a neural network: post-training quantisation (docs/onnx.md).
fn import_network(
    bytes: &[u8],
    model: &str,
    shape: Vec<usize>,
    values: Vec<f64>,
    output: &str,
    (n_bits, rounding_bits, windows, output_parts): NetworkFlags,
) -> Result<(), Failure> {
    let m = fhec::onnx::OnnxModel::from_bytes(bytes).map_err(|e| anyhow!("{model}: {e}"))?;
    let x = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), values).map_err(|e| anyhow!("{e}"))?;
    let opts = |parts: u32| fhec::onnx::PtqOptions {
        n_bits: fhec::onnx::NBits::all(n_bits.unwrap_or(fhec::onnx::DEFAULT_N_BITS)),
        rounding_bits: fhec::onnx::DEFAULT_ROUNDING_BITS,
        windows,
        output_parts: parts,
    };
    let q = match output_parts {
        None => quantize_network(&m, &x, opts(1), rounding_bits, model)?.0,
        Some(PartsArg::Count(n)) => quantize_network(&m, &x, opts(n), rounding_bits, model)?.0,
        Some(PartsArg::Auto) => {
            // each part count compiled with `fhec compile`'s defaults; the fastest by the cost model,
            // more parts only for AUTO_PARTS_GAIN of the estimate (the client sees more of the last layer)
            let mut best: Option<(bool, f64, u32, fhec::onnx::QuantizedNetwork)> = None;
            let (mut tried, mut refused) = (Vec::new(), None);
            for parts in fhec::onnx::AUTO_OUTPUT_PARTS {
                let (q, met) = match quantize_network(&m, &x, opts(parts), rounding_bits, model) {
                    Ok(v) => v,
                    // the output takes no parts: the whole one stands
                    Err(Failure::Other(e)) if parts > 1 && e.to_string().contains("output_parts") => {
                        tried.push(format!("{parts}: not a linear output"));
                        break;
                    }
                    Err(e) => return Err(e),
                };
                match fhec::compile(q.module.clone(), q.spec.clone(), &fhec::CompileOptions::default()) {
                    Ok(c) => {
                        let secs = c.program().noise.estimated_seconds;
                        tried.push(format!("{parts}: {secs:.3} s"));
                        let better = best
                            .as_ref()
                            .is_none_or(|(bm, bs, ..)| (met, -secs) > (*bm, -bs * (1.0 - fhec::onnx::AUTO_PARTS_GAIN)));
                        if better {
                            best = Some((met, secs, parts, q));
                        }
                    }
                    Err(e) => match e.rounding_failure() {
                        fhec::onnx::BuildFailure::Infeasible(why) => {
                            tried.push(format!("{parts}: no secure parameters"));
                            refused.get_or_insert(why);
                        }
                        fhec::onnx::BuildFailure::Failed(e) => return Err(anyhow!("{model}: {e}").into()),
                    },
                }
            }
            let Some((_, secs, parts, q)) = best else {
                return Err(anyhow!(
                    "{model}: no part count compiles ({}): {}",
                    tried.join(", "),
                    refused.unwrap_or_default()
                )
                .into());
            };
            eprintln!(
                "output parts: {parts} (estimated {secs:.3} s per sample, single thread; tried {})",
                tried.join(", ")
            );
            q
        }
    };
    let spath = format!("{}.spec.json", output.trim_end_matches(".fhe"));
    write(&spath, q.spec.to_json().as_bytes())?;
    write(output, ir::print_module(&q.module).as_bytes())?;
    let lookups: usize = q.layers.iter().filter(|l| l.kind == "lookup").map(|l| l.elements).sum();
    let widest = q
        .layers
        .iter()
        .filter(|l| l.kind == "accumulator")
        .map(|l| l.bits)
        .max()
        .unwrap_or(0);
    eprintln!(
        "imported a network ({} ops, input {:?}): {} linear layers (widest accumulator {widest} bits), {lookups} \
         lookups{}; wrote {output} and {spath}",
        m.ops().len(),
        q.input_shape,
        q.layers.iter().filter(|l| l.kind == "accumulator").count(),
        q.tail.map_or(String::new(), |t| format!(", {t:?} on the client"))
    );
    Ok(())
}

/// `fhec import`: a tree ensemble → quantised ensemble (JSON) + fhe module. An ONNX file with
/// `ai.onnx.ml` nodes is a tree ensemble (`fhec_onnx::trees`); any other a network.
#[allow(clippy::too_many_arguments)]
pub(crate) fn import(
    format: &str,
    model: &str,
    calibration: &str,
    output: &str,
    (n_bits, rounding_bits, windows, output_parts): NetworkFlags,
    leaf_bits: u32,
    quantizer: &str,
    leaf_mode: Option<&str>,
) -> Result<(), Failure> {
    use fhec_trees::{build_module, quantize_with, Ensemble, LeafMode, QuantizerKind};
    match format {
        "xgboost" | "lightgbm" | "onnx" | "fhec" => {}
        other => {
            return Err(anyhow!("unknown model format `{other}` (supported: xgboost, lightgbm, onnx, fhec)").into())
        }
    }
    // the network-only flags, refused for a tree ensemble
    let trees_only = || -> Result<(), Failure> {
        if rounding_bits.is_some() || windows || output_parts.is_some() {
            return Err(anyhow!(
                "--rounding-bits, --windows and --output-parts are for networks; tree ensembles round nothing"
            )
            .into());
        }
        Ok(())
    };
    if format != "onnx" {
        trees_only()?;
    }
    let (shape, values) = fhec::io::read_npy_f64(Path::new(calibration)).map_err(|e| anyhow!("{e}"))?;
    let ensemble = if format == "onnx" {
        let bytes = std::fs::read(model).map_err(|e| anyhow!("cannot read {model}: {e}"))?;
        if !fhec::onnx::trees::is_tree_ensemble(&bytes) {
            return import_network(
                &bytes,
                model,
                shape,
                values,
                output,
                (n_bits, rounding_bits, windows, output_parts),
            );
        }
        trees_only()?;
        fhec::onnx::trees::import(&bytes, shape.get(1).copied())
    } else {
        let text = crate::read_source(model)?;
        match format {
            "xgboost" => fhec_trees::xgboost::import(&text),
            "lightgbm" => fhec_trees::lightgbm::import(&text),
            _ => Ensemble::from_json(&text),
        }
    }
    .map_err(|e| anyhow!("{model}: {e}"))?;
    let kind = match quantizer {
        "quantile" => QuantizerKind::Quantile,
        "uniform" => QuantizerKind::Uniform,
        other => return Err(anyhow!("--quantizer must be quantile or uniform, not `{other}`").into()),
    };
    let mode = match leaf_mode {
        None => None,
        Some("fused") => Some(LeafMode::Fused),
        Some("indicator") => Some(LeafMode::Indicator),
        Some("collect") => Some(LeafMode::Collect),
        Some(other) => return Err(anyhow!("--leaf-mode must be fused, indicator or collect, not `{other}`").into()),
    };
    if shape.len() != 2 || shape[1] != ensemble.n_features {
        return Err(anyhow!(
            "{calibration}: expected a matrix of samples × {} features, got shape {shape:?}",
            ensemble.n_features
        )
        .into());
    }
    let rows: Vec<Vec<f64>> = values.chunks(shape[1].max(1)).map(|r| r.to_vec()).collect();
    let q = quantize_with(&ensemble, &rows, n_bits.unwrap_or(6), leaf_bits, kind).map_err(|e| anyhow!("{e}"))?;
    let (module, report) = build_module(&q, mode).map_err(|e| anyhow!("{e}"))?;
    let qpath = format!("{}.quantized.json", output.trim_end_matches(".fhe"));
    write(&qpath, q.to_json().as_bytes())?;
    write(output, ir::print_module(&module).as_bytes())?;
    eprintln!(
        "imported {} trees ({} features, {} outputs): {} reachable leaves → {} lookups of {} bits on {} thermometer input bits; wrote {output} and {qpath}",
        q.trees.len(),
        q.n_features,
        q.n_outputs,
        report.leaves,
        report.lookups,
        report.lookup_bits,
        report.input_bits
    );
    Ok(())
}
