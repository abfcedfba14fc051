//! `fhec-bench pbs`: bootstrap throughput of the fhec executor against a bare tfhe-rs loop at the
//! same parameters, for lookups of 1 to 8 bits, on 1 thread and on all threads; keygen time and key
//! sizes. Writes `bench/results/pbs.json` and `bench/results/pbs.md`.
//!
//! Usage: `cargo run --release -p fhec-bench -- pbs [--min-precision 1] [--max-precision 8] [--seconds 2]`
//!
//! `fhec-bench round`: exact rounding of k bits off a p-bit value by each method (issue 13's
//! microbenchmark), with the executor's efficiency against the bare single-lookup bound; writes
//! `bench/results/round.json` and `bench/results/round.md`.
//!
//! `fhec-bench many-lut [--elements 32] [--max-width 4]`: `K` tables on one `w`-bit input, one
//! blind rotation per table against one per `K` (lanes, docs/crypto.md "Many-LUT"); writes
//! `bench/results/many_lut.{json,md}`.
//!
//! `fhec-bench efficiency FILE.fhecp... [--samples 1,16]`: the executor's efficiency on compiled
//! programs (the model table's: `bench/efficiency.py` writes them and runs this) against the same
//! bound, per batch size; writes `bench/results/efficiency.{json,md}`.
//!
//! `fhec-bench keygen FILE.fhecp... [--runs 3]`: key generation split into its parts (secret keys, each
//! partition's keyswitch and bootstrap keys and packing, the server's expansion); writes
//! `bench/results/keygen.{json,md}`.

use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use fhec_backend_tfhe::{compile, CompileOptions};
use fhec_runtime::bench_support::{bare_pbs_loop, input_list};
use fhec_runtime::program::decode;
use fhec_runtime::{exec, keys, ClearTensor, ClientKeys, Progress};
use ndarray::{ArrayD, IxDyn};
use serde_json::json;

fn table(p: u32) -> Vec<i64> {
    (0..1i64 << p).map(|v| (3 * v + 1) % (1 << p)).collect()
}

fn program_text(p: u32, n: usize) -> String {
    let t: Vec<String> = table(p).iter().map(|v| v.to_string()).collect();
    let ty = format!("tensor<{n}x!fhe.eint<{p}>>");
    format!(
        "func.func @main(%x: {ty}) -> {ty} {{\n  %0 = \"fhe.lut\"(%x) {{table = dense<[{}]> : tensor<{}xui{p}>}} : ({ty}) -> {ty}\n  \"func.return\"(%0) : ({ty}) -> ()\n}}\n",
        t.join(", "),
        1usize << p
    )
}

fn pool(threads: usize) -> anyhow::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| anyhow!("{e}"))
}

fn arg(args: &[String], name: &str, default: f64) -> anyhow::Result<f64> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .ok_or_else(|| anyhow!("{name} needs a value"))?
            .parse()
            .context(name.to_string()),
        None => Ok(default),
    }
}

fn pbs(args: &[String]) -> anyhow::Result<()> {
    let min_p = arg(args, "--min-precision", 1.0)? as u32;
    let max_p = arg(args, "--max-precision", 8.0)? as u32;
    let seconds = arg(args, "--seconds", 2.0)?;
    let all = rayon::current_num_threads();
    let mut rows = Vec::new();
    let mut md = String::from(
        "| bits | n, k, N | keygen s | eval keys (compressed / expanded) | PBS/s bare 1t | PBS/s fhec 1t | ratio 1t | PBS/s bare all | PBS/s fhec all | ratio all |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in min_p..=max_p {
        // size the batch from the cost model so that one measurement lasts about `seconds`
        let probe = program_text(p, 1);
        let m = fhec_ir::parse_module(&probe).map_err(|d| anyhow!("{}", d.message))?;
        let v = fhec_ir::verify(&m).map_err(|d| anyhow!("{d:?}"))?;
        let est = compile(&v, &CompileOptions::default(), None).map_err(|d| anyhow!("{}", d.message))?;
        let per = est.program.noise.estimated_seconds.max(1e-3);
        let n = ((seconds / per).ceil() as usize).clamp(8, 4000) * all.max(1);
        let src = program_text(p, n);
        let m = fhec_ir::parse_module(&src).map_err(|d| anyhow!("{}", d.message))?;
        let v = fhec_ir::verify(&m).map_err(|d| anyhow!("{d:?}"))?;
        let c = compile(&v, &CompileOptions::default(), None).map_err(|d| anyhow!("{}", d.message))?;
        let prog = c.program;
        let params = *prog.input_params();
        eprintln!("{p} bits: {params}, {n} lookups per measurement");

        let t0 = Instant::now();
        let ck = ClientKeys::generate(&[params])?;
        let ek = ck.evaluation_keys(&Progress::silent());
        let keygen = t0.elapsed().as_secs_f64();
        let sk = ek.expand(&Progress::silent())?;

        let xs: Vec<i64> = (0..n as i64).map(|i| (i * 7 + 3) % (1 << p)).collect();
        let want: Vec<i64> = xs.iter().map(|&x| table(p)[x as usize]).collect();
        let batch = vec![vec![ClearTensor::new(vec![n], xs.clone())?]];
        let enc = ck.encrypt(&prog.interface(), &batch)?;
        let list = input_list(&enc);
        let torus_table = &prog.tables[0].values;
        let out_scale = prog.outputs[0].scale;

        let measure = |threads: usize| -> anyhow::Result<(f64, f64)> {
            let pl = pool(threads)?;
            // bare loop
            let (outs, t_bare) = pl.install(|| bare_pbs_loop(&sk, &list, p, torus_table));
            drop(outs);
            // executor (same inputs, re-encrypted seeded form consumed by value)
            let enc = ck.encrypt(&prog.interface(), &batch)?;
            let t1 = Instant::now();
            let out = pl.install(|| exec::run(&prog, &sk, enc, &Progress::silent(), None))?;
            let t_exec = t1.elapsed().as_secs_f64();
            let dec = ck.decrypt(&prog.interface(), &out)?;
            if dec[0][0].values != want {
                bail!("{p} bits: wrong decrypted results");
            }
            let _ = out_scale;
            Ok((n as f64 / t_bare.as_secs_f64(), n as f64 / t_exec))
        };
        let (bare1, exec1) = measure(1)?;
        let (bare_all, exec_all) = measure(all)?;
        let _ = decode;
        let row = json!({
            "bits": p,
            "params": params.to_string(),
            "lookups": n,
            "keygen_seconds": keygen,
            "eval_keys_compressed_bytes": ek_size(&params),
            "eval_keys_expanded_bytes": keys::expanded_key_bytes(&params, params.big_lwe_dimension()),
            "threads_all": all,
            "pbs_per_second": {"bare_1": bare1, "fhec_1": exec1, "bare_all": bare_all, "fhec_all": exec_all},
            "ratio_1": exec1 / bare1,
            "ratio_all": exec_all / bare_all,
        });
        eprintln!("{row}");
        md.push_str(&format!(
            "| {p} | {}, {}, {} | {keygen:.2} | {:.1} / {:.1} MB | {bare1:.1} | {exec1:.1} | {:.2} | {bare_all:.1} | {exec_all:.1} | {:.2} |\n",
            params.lwe_dimension(),
            params.glwe_dimension(),
            params.polynomial_size(),
            ek_size(&params) as f64 / 1e6,
            keys::expanded_key_bytes(&params, params.big_lwe_dimension()) as f64 / 1e6,
            exec1 / bare1,
            exec_all / bare_all
        ));
        rows.push(row);
    }
    write_results("pbs", all, rows, &md)
}

/// Writes `bench/results/NAME.json` (threads and rows) and `NAME.md` (the table), and prints the
/// table.
fn write_results(name: &str, threads: usize, rows: Vec<serde_json::Value>, md: &str) -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&json!({ "threads": threads, "rows": rows }))?,
    )?;
    std::fs::write(dir.join(format!("{name}.md")), md)?;
    println!("{md}");
    Ok(())
}

/// Keys for `prog`: client keys, expanded server keys, keygen seconds (client keys and evaluation
/// keys) and the evaluation-key file's bytes.
fn keygen(prog: &fhec_runtime::Program) -> anyhow::Result<(ClientKeys, fhec_runtime::ServerKeys, f64, usize)> {
    let t0 = Instant::now();
    let ck = ClientKeys::generate(&prog.partitions)?;
    let ek = ck.evaluation_keys_for(&prog.interface(), &Progress::silent());
    let keygen = t0.elapsed().as_secs_f64();
    let ek_bytes = fhec_runtime::io::evaluation_keys_to_bytes(&ek)?.len();
    let sk = ek.expand(&Progress::silent())?;
    Ok((ck, sk, keygen, ek_bytes))
}

fn ek_size(p: &fhec_runtime::ParamSet) -> usize {
    keys::compressed_key_bytes(p, p.big_lwe_dimension())
}

/// Times keyswitch and blind rotation (single, batched) at the parameters the search picks for
/// each precision, next to the cost model's estimate: data to fit `fhec_backend_tfhe::params::cost`.
fn calibrate(args: &[String]) -> anyhow::Result<()> {
    let min_p = arg(args, "--min-precision", 1.0)? as u32;
    let max_p = arg(args, "--max-precision", 6.0)? as u32;
    let n = arg(args, "--lookups", 32.0)? as usize;
    println!("| bits | params | KS ms | KS batched-16 ms | BR ms | BR batched-16 ms | model KS+BR ms |\n|---|---|---|---|---|---|---|");
    for p in min_p..=max_p {
        let src = program_text(p, n);
        let m = fhec_ir::parse_module(&src).map_err(|d| anyhow!("{}", d.message))?;
        let v = fhec_ir::verify(&m).map_err(|d| anyhow!("{d:?}"))?;
        let c = compile(&v, &CompileOptions::default(), None).map_err(|d| anyhow!("{}", d.message))?;
        let prog = c.program;
        let ck = ClientKeys::generate(&prog.partitions)?;
        let sk = ck.evaluation_keys(&Progress::silent()).expand(&Progress::silent())?;
        let xs: Vec<i64> = (0..n as i64).map(|i| i % (1 << p)).collect();
        let enc = ck.encrypt(&prog.interface(), &[vec![ClearTensor::new(vec![n], xs)?]])?;
        let list = input_list(&enc);
        let (ks, ksb, br, brb) = pool(1)?.install(|| fhec_runtime::bench_support::time_parts(&sk, &list, 16));
        println!(
            "| {p} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            prog.input_params(),
            ks * 1e3,
            ksb * 1e3,
            br * 1e3,
            brb * 1e3,
            c.solution.ns_per_pbs * 1e-6
        );
    }
    Ok(())
}

/// Best single-thread seconds of one keyswitch and of one bootstrap at `params`: the executor's own
/// batched keyswitch and blind rotation (`bench_support::time_parts`), or the one-at-a-time ones
/// where faster, over `m` lookups with keys of their own.
fn single_lookup_split(params: &fhec_runtime::ParamSet, m: usize) -> anyhow::Result<(f64, f64)> {
    let src = program_text(1, m);
    let module = fhec_ir::parse_module(&src).map_err(|d| anyhow!("{}", d.message))?;
    let v = fhec_ir::verify(&module).map_err(|d| anyhow!("{d:?}"))?;
    // only timed: any failure probability will do
    let opts = CompileOptions {
        params: Some(vec![*params]),
        p_error: fhec_backend_tfhe::params::PError::PerLookup(0.5),
        ..Default::default()
    };
    let c = compile(&v, &opts, None).map_err(|d| anyhow!("{}", d.message))?;
    let ck = ClientKeys::generate(&[*params])?;
    let sk = ck.evaluation_keys(&Progress::silent()).expand(&Progress::silent())?;
    let xs: Vec<i64> = (0..m as i64).map(|i| i % 2).collect();
    let enc = ck.encrypt(&c.program.interface(), &[vec![ClearTensor::new(vec![m], xs)?]])?;
    let list = input_list(&enc);
    let (ks, ksb, br, brb) = pool(1)?.install(|| fhec_runtime::bench_support::time_parts(&sk, &list, 16));
    Ok((ks.min(ksb), br.min(brb)))
}

/// Σ over partitions of the program's lookups there × the bare single-thread time of one lookup at
/// its parameters (memoised in `cache`): the bound, before dividing by threads, for one sample.
fn bare_seconds(prog: &fhec_runtime::Program, cache: &mut SplitCache) -> anyhow::Result<f64> {
    Ok(bare_split(prog, cache)?
        .iter()
        .map(|&(cnt, ks, br)| cnt as f64 * (ks + br))
        .sum())
}

/// Single-lookup times memoised per parameter set: (parameters, (keyswitch s, blind rotation s)).
type SplitCache = Vec<(fhec_runtime::ParamSet, (f64, f64))>;

/// Per partition: (lookups per sample, bare single-thread keyswitch seconds, blind rotation seconds).
fn bare_split(prog: &fhec_runtime::Program, cache: &mut SplitCache) -> anyhow::Result<Vec<(u64, f64, f64)>> {
    let mut out = Vec::new();
    for (q, &cnt) in prog.lookups_by_partition().iter().enumerate() {
        if cnt == 0 {
            out.push((0, 0.0, 0.0));
            continue;
        }
        let params = prog.partitions[q];
        let (ks, br) = match cache.iter().find(|(p, _)| *p == params) {
            Some(&(_, t)) => t,
            None => {
                let t = single_lookup_split(&params, 64)?;
                cache.push((params, t));
                t
            }
        };
        out.push((cnt, ks, br));
    }
    Ok(out)
}

/// `fhec-bench round`: exact rounding of `k` bits off a `p`-bit encrypted value (`k` from
/// `--min-k` to `--max-k`), `--elements` values per run, by each method: bit extraction on the set
/// a lone `--full-bits`-bit lookup needs (what one parameter set for a circuit with such a lookup
/// gives its extractions), on the parameters the search picks for the rounding alone, and with
/// `--partitions` (split by sensitivity). Per row: lookups, parameters, the cost model, the
/// measured run (all threads), keygen, evaluation keys, and the executor's efficiency against the
/// bound Σ lookups × bare single-lookup time at their partition ÷ threads. Results must decrypt to
/// the interpreter's. Writes `bench/results/round.json` and `bench/results/round.md`.
fn round(args: &[String]) -> anyhow::Result<()> {
    let p = arg(args, "--bits", 13.0)? as u32;
    let min_k = arg(args, "--min-k", 4.0)? as u32;
    let max_k = arg(args, "--max-k", 12.0)? as u32;
    let n = arg(args, "--elements", 16.0)? as usize;
    let full_bits = arg(args, "--full-bits", 7.0)? as u32;
    if !(2..=16).contains(&p) || min_k < 1 || max_k >= p || min_k > max_k {
        bail!("need 2 ≤ --bits ≤ 16 and 1 ≤ --min-k ≤ --max-k < --bits");
    }
    let threads = rayon::current_num_threads();
    // the set a lone `full_bits`-bit lookup gets
    let lone = {
        let src = program_text(full_bits, 1);
        let m = fhec_ir::parse_module(&src).map_err(|d| anyhow!("{}", d.message))?;
        let v = fhec_ir::verify(&m).map_err(|d| anyhow!("{d:?}"))?;
        *compile(&v, &CompileOptions::default(), None)
            .map_err(|d| anyhow!("{}", d.message))?
            .program
            .input_params()
    };
    eprintln!("full size: the set of a lone {full_bits}-bit lookup, {lone}");
    let mut single_cache: SplitCache = Vec::new();
    // (partitions, keyswitch dimensions) → (client keys, server keys, keygen seconds, key bytes)
    type KeysFor = (Vec<fhec_runtime::ParamSet>, Vec<u32>);
    type Cached = (ClientKeys, fhec_runtime::ServerKeys, f64, usize);
    let mut key_cache: Vec<(KeysFor, Cached)> = Vec::new();
    let mut rows = Vec::new();
    let mut md = format!(
        "Rounding k bits off a {p}-bit value, {n} values per run, {threads} threads, one run.\n\n\
         | k | method | lookups (by partition) | parameters | model s | run s | ms per value | keygen s | eval keys MB | bound s | efficiency |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for k in min_k..=max_k {
        let ty_in = format!("tensor<{n}x!fhe.eint<{p}>>");
        let ty_out = format!("tensor<{n}x!fhe.eint<{}>>", p - k + 1);
        let src = format!(
            "func.func @main(%x: {ty_in}) -> {ty_out} {{\n  %0 = \"fhe.round\"(%x) {{lsbs = {k}}} : ({ty_in}) -> {ty_out}\n  \"func.return\"(%0) : ({ty_out}) -> ()\n}}\n"
        );
        let module = fhec_ir::parse_module(&src).map_err(|d| anyhow!("{}", d.message))?;
        let v = fhec_ir::verify(&module).map_err(|d| anyhow!("{d:?}"))?;
        let xs: Vec<i64> = (0..n as i64).map(|i| (i * 2731 + 977) % (1 << p)).collect();
        let input = ArrayD::from_shape_vec(IxDyn(&[n]), xs.clone())?;
        let want = fhec_ir::interp::eval(&v, &[input]).map_err(|e| anyhow!("{e}"))?;
        let want: Vec<i64> = want[0].iter().copied().collect();
        let methods: [(&str, CompileOptions); 3] = [
            (
                "full size",
                CompileOptions {
                    params: Some(vec![lone]),
                    ..Default::default()
                },
            ),
            ("own set", CompileOptions::default()),
            (
                "partitions",
                CompileOptions {
                    partitions: true,
                    ..Default::default()
                },
            ),
        ];
        for (name, opts) in methods {
            let c = match compile(&v, &opts, None) {
                Ok(c) => c,
                Err(d) => {
                    eprintln!("k = {k}, {name}: {}", d.message);
                    continue;
                }
            };
            let prog = c.program;
            // keys once per parameter vector (the full-size set serves every k)
            let key = (prog.partitions.clone(), prog.interface().ksk_dims);
            if !key_cache.iter().any(|(k, _)| *k == key) {
                key_cache.push((key.clone(), keygen(&prog)?));
            }
            let (ck, sk, keygen, ek_bytes) = &key_cache.iter().find(|(k, _)| *k == key).expect("just added").1;
            let (keygen, ek_bytes) = (*keygen, *ek_bytes);
            let batch = vec![vec![ClearTensor::new(vec![n], xs.clone())?]];
            let enc = ck.encrypt(&prog.interface(), &batch)?;
            let t1 = Instant::now();
            let out = exec::run(&prog, sk, enc, &Progress::silent(), None)?;
            let run = t1.elapsed().as_secs_f64();
            let dec = ck.decrypt(&prog.interface(), &out)?;
            if dec[0][0].values != want {
                bail!("k = {k}, {name}: decrypted results differ from the interpreter");
            }
            let counts = prog.lookups_by_partition();
            let bound = bare_seconds(&prog, &mut single_cache)? / threads as f64;
            let row = json!({
                "k": k, "bits": p, "method": name, "lookups_by_partition": counts,
                "parameters": prog.params_summary(), "model_seconds": prog.noise.estimated_seconds,
                "run_seconds": run, "keygen_seconds": keygen, "eval_key_bytes": ek_bytes,
                "bound_seconds": bound, "efficiency": bound / run, "threads": threads,
            });
            eprintln!("{row}");
            md.push_str(&format!(
                "| {k} | {name} | {} ({}) | {} | {:.3} | {run:.3} | {:.1} | {keygen:.2} | {:.1} | {bound:.3} | {:.2} |\n",
                prog.pbs_count(),
                counts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" + "),
                prog.partitions.iter().map(|q| format!("n={} k={} N={} ℓ={}", q.lwe_dimension(), q.glwe_dimension(), q.polynomial_size(), q.raw().pbs_level)).collect::<Vec<_>>().join("; "),
                prog.noise.estimated_seconds,
                run * 1e3 / n as f64,
                ek_bytes as f64 / 1e6,
                bound / run
            ));
            rows.push(row);
        }
    }
    write_results("round", threads, rows, &md)
}

/// `fhec-bench many-lut`: a `multi_lut` of `K` tables (K = 2, 4) on `n` values of `w` bits
/// (w = 1 … `--max-width`), compiled without lanes (one blind rotation per table) and with (one per
/// value), partitions allowed as by default; keygen, one encrypted run (all threads), decrypted
/// results checked against the interpreter.
fn many_lut(args: &[String]) -> anyhow::Result<()> {
    let n = arg(args, "--elements", 32.0)? as usize;
    let max_w = arg(args, "--max-width", 4.0)? as u32;
    if n == 0 || !(1..=6).contains(&max_w) {
        bail!("need --elements ≥ 1 and 1 ≤ --max-width ≤ 6");
    }
    let threads = rayon::current_num_threads();
    let mut rows = Vec::new();
    let mut md = format!(
        "`K` tables on each of {n} values of `w` bits, {threads} threads, one run each.\n\n\
         | w | K | lanes | blind rotations (by precision) | parameters | model s | run s | ms per value | keygen s | eval keys MB |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    for w in 1..=max_w {
        for k in [2usize, 4] {
            let tables: Vec<String> = (0..k)
                .map(|j| {
                    let t: Vec<String> = (0..1i64 << w)
                        .map(|v| ((v * (2 * j as i64 + 3) + j as i64) % (1 << w)).to_string())
                        .collect();
                    format!("[{}]", t.join(", "))
                })
                .collect();
            let (ty_in, ty_out) = (
                format!("tensor<{n}x!fhe.eint<{w}>>"),
                format!("tensor<{n}x{k}x!fhe.eint<{w}>>"),
            );
            let src = format!(
                "func.func @main(%x: {ty_in}) -> {ty_out} {{\n  %0 = \"fhe.multi_lut\"(%x) {{tables = dense<[{}]> : tensor<{k}x{}xui{w}>}} : ({ty_in}) -> {ty_out}\n  \"func.return\"(%0) : ({ty_out}) -> ()\n}}\n",
                tables.join(", "),
                1usize << w
            );
            let module = fhec_ir::parse_module(&src).map_err(|d| anyhow!("{}", d.message))?;
            let v = fhec_ir::verify(&module).map_err(|d| anyhow!("{d:?}"))?;
            let xs: Vec<i64> = (0..n as i64).map(|i| (i * 7 + 3) % (1 << w)).collect();
            let want = fhec_ir::interp::eval(&v, &[ArrayD::from_shape_vec(IxDyn(&[n]), xs.clone())?])
                .map_err(|e| anyhow!("{e}"))?;
            let want: Vec<i64> = want[0].iter().copied().collect();
            for lanes in [false, true] {
                let opts = CompileOptions {
                    partitions: true,
                    many_lut: Some(lanes),
                    ..Default::default()
                };
                let prog = compile(&v, &opts, None).map_err(|d| anyhow!("{}", d.message))?.program;
                let (ck, sk, keygen, ek_bytes) = keygen(&prog)?;
                let batch = vec![vec![ClearTensor::new(vec![n], xs.clone())?]];
                let enc = ck.encrypt(&prog.interface(), &batch)?;
                let t1 = Instant::now();
                let out = exec::run(&prog, &sk, enc, &Progress::silent(), None)?;
                let run = t1.elapsed().as_secs_f64();
                if ck.decrypt(&prog.interface(), &out)?[0][0].values != want {
                    bail!("w = {w}, K = {k}, lanes {lanes}: decrypted results differ from the interpreter");
                }
                let by: Vec<String> = prog
                    .noise
                    .pbs_by_precision
                    .iter()
                    .map(|(p, c)| format!("{c} at {p}"))
                    .collect();
                let params = prog
                    .partitions
                    .iter()
                    .map(|q| {
                        format!(
                            "n={} k={} N={} ℓ={}",
                            q.lwe_dimension(),
                            q.glwe_dimension(),
                            q.polynomial_size(),
                            q.raw().pbs_level
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let row = json!({
                    "width": w, "tables": k, "lanes": lanes, "elements": n, "rotations": prog.pbs_count(),
                    "by_precision": prog.noise.pbs_by_precision, "parameters": params,
                    "model_seconds": prog.noise.estimated_seconds, "run_seconds": run,
                    "keygen_seconds": keygen, "eval_key_bytes": ek_bytes, "threads": threads,
                });
                eprintln!("{row}");
                md.push_str(&format!(
                    "| {w} | {k} | {} | {} ({}) | {params} | {:.3} | {run:.3} | {:.2} | {keygen:.2} | {:.1} |\n",
                    if lanes { "yes" } else { "no" },
                    prog.pbs_count(),
                    by.join(", "),
                    prog.noise.estimated_seconds,
                    run * 1e3 / n as f64,
                    ek_bytes as f64 / 1e6
                ));
                rows.push(row);
            }
        }
    }
    write_results("many_lut", threads, rows, &md)
}

/// `fhec-bench efficiency FILE.fhecp... [--samples 1,16]`: the executor's efficiency on compiled
/// programs (the model table's, written by `bench/efficiency.py`): per program and batch size, the
/// measured run (all threads) against the bound Σ lookups × the bare single-thread time of one lookup
/// at its partition × samples ÷ threads. Inputs are random values of each input's accepted range;
/// every decrypted result must equal the program's exact simulation. Writes
/// `bench/results/efficiency.{json,md}`.
fn efficiency(args: &[String]) -> anyhow::Result<()> {
    let mut sizes: Vec<usize> = vec![1, 16];
    let mut files: Vec<&String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--samples" {
            let v = it.next().ok_or_else(|| anyhow!("--samples needs a value, e.g. 1,16"))?;
            sizes = v
                .split(',')
                .map(|x| x.trim().parse::<usize>().context("--samples"))
                .collect::<anyhow::Result<_>>()?;
            if sizes.contains(&0) {
                bail!("--samples: batch sizes must be at least 1");
            }
        } else if a.starts_with("--") {
            bail!("unknown option {a}");
        } else {
            files.push(a);
        }
    }
    if files.is_empty() {
        bail!("usage: fhec-bench efficiency FILE.fhecp... [--samples 1,16]");
    }
    let threads = rayon::current_num_threads();
    let mut single_cache: SplitCache = Vec::new();
    let mut rows = Vec::new();
    let mut md = format!(
        "Executor efficiency, {threads} threads, one run: bound = Σ lookups × bare single-thread lookup time at its partition × samples ÷ threads.\n\n\
         | program | samples | lookups (by partition) | run s | bound s | efficiency |\n|---|---|---|---|---|---|\n"
    );
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
        let prog = fhec_runtime::io::program_from_bytes(&bytes).map_err(|e| anyhow!("{file}: {e}"))?;
        let iface = prog.interface();
        let ck = ClientKeys::generate(&prog.partitions)?;
        let sk = ck
            .evaluation_keys_for(&iface, &Progress::silent())
            .expand(&Progress::silent())?;
        let counts = prog.lookups_by_partition();
        let split = bare_split(&prog, &mut single_cache)?;
        let per_sample: f64 = split.iter().map(|&(cnt, ks, br)| cnt as f64 * (ks + br)).sum();
        for (q, &(cnt, ks, br)) in split.iter().enumerate() {
            if cnt > 0 {
                eprintln!(
                    "{file}: partition {q} ({}): {cnt} lookups, keyswitch {:.3} ms + blind rotation {:.3} ms each, {:.2} s per sample single-thread",
                    prog.partitions[q],
                    ks * 1e3,
                    br * 1e3,
                    cnt as f64 * (ks + br)
                );
            }
        }
        let name = std::path::Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for &n in &sizes {
            let batch: Vec<Vec<ClearTensor>> = (0..n)
                .map(|_| {
                    prog.inputs
                        .iter()
                        .map(|port| {
                            let (lo, hi) = port.range.unwrap_or_else(|| port.type_range());
                            let span = (hi as i128 - lo as i128 + 1) as u128;
                            let vals = (0..port.len())
                                .map(|_| {
                                    rng ^= rng << 13;
                                    rng ^= rng >> 7;
                                    rng ^= rng << 17;
                                    (lo as i128 + (rng as u128 % span) as i128) as i64
                                })
                                .collect();
                            ClearTensor::new(port.shape.clone(), vals)
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<_, _>>()?;
            let want = prog.simulate(&batch)?;
            let enc = ck.encrypt(&iface, &batch)?;
            let t1 = Instant::now();
            let out = exec::run(&prog, &sk, enc, &Progress::silent(), None)?;
            let run = t1.elapsed().as_secs_f64();
            let dec = ck.decrypt(&iface, &out)?;
            let equal = dec
                .iter()
                .zip(&want)
                .all(|(d, w)| d.iter().zip(w).all(|(a, b)| a.values == b.values));
            if !equal || dec.len() != want.len() {
                bail!("{file}: decrypted results differ from the simulation");
            }
            let bound = per_sample * n as f64 / threads as f64;
            let row = json!({
                "program": name, "samples": n, "lookups_by_partition": counts, "run_seconds": run,
                "bound_seconds": bound, "efficiency": bound / run, "threads": threads,
            });
            eprintln!("{row}");
            md.push_str(&format!(
                "| {name} | {n} | {} ({}) | {run:.3} | {bound:.3} | {:.2} |\n",
                prog.pbs_count(),
                counts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" + "),
                bound / run
            ));
            rows.push(row);
        }
    }
    write_results("efficiency", threads, rows, &md)
}

/// `fhec-bench keygen FILE.fhecp... [--runs 3]`: key generation split into its parts, per program: the
/// secret keys, each partition's keyswitch and bootstrap key generation and the bootstrap key's
/// packing (the client's work), then the server's expansion of each partition (keyswitch masks,
/// unpacking, bootstrap masks, Fourier conversion); the median over `--runs` of each part.
fn keygen_split(args: &[String]) -> anyhow::Result<()> {
    let runs = arg(args, "--runs", 3.0)? as usize;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let mut files: Vec<&String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--runs" {
            it.next();
        } else if a.starts_with("--") {
            bail!("unknown option {a}");
        } else {
            files.push(a);
        }
    }
    if files.is_empty() {
        bail!("usage: fhec-bench keygen FILE.fhecp... [--runs 3]");
    }
    let threads = rayon::current_num_threads();
    let mut rows = Vec::new();
    let mut md = format!(
        "Key generation split, {threads} threads, one run, median of {runs}: the client's secret keys and evaluation keys, then the server's expansion.\n\n\
         | program | part | seconds |\n|---|---|---|\n"
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
        let prog = fhec_runtime::io::program_from_bytes(&bytes).map_err(|e| anyhow!("{file}: {e}"))?;
        let iface = prog.interface();
        let name = std::path::Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // part label → seconds of each run, in the order first seen
        let mut parts: Vec<(String, Vec<f64>)> = Vec::new();
        let mut add = |label: &str, secs: f64| match parts.iter_mut().find(|(l, _)| l == label) {
            Some((_, v)) => v.push(secs),
            None => parts.push((label.to_string(), vec![secs])),
        };
        for _ in 0..runs {
            let t0 = Instant::now();
            let ck = ClientKeys::generate(&prog.partitions)?;
            add("secret keys", t0.elapsed().as_secs_f64());
            let progress = Progress::timed();
            let t1 = Instant::now();
            let ek = ck.evaluation_keys_for(&iface, &progress);
            let client = t1.elapsed().as_secs_f64();
            for (label, secs) in progress.timings() {
                add(&label, secs);
            }
            add("evaluation keys, all", client);
            let progress = Progress::timed();
            let t2 = Instant::now();
            let sk = ek.expand(&progress)?;
            let server = t2.elapsed().as_secs_f64();
            for (label, secs) in progress.timings() {
                add(&label, secs);
            }
            add("expansion, all", server);
            add("total", t0.elapsed().as_secs_f64());
            drop(sk);
        }
        for (label, v) in parts {
            let m = median(v.clone());
            md.push_str(&format!("| {name} | {label} | {m:.3} |\n"));
            rows.push(json!({ "program": name, "part": label, "median_seconds": m, "seconds": v, "threads": threads }));
        }
    }
    write_results("keygen", threads, rows, &md)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("pbs") => pbs(&args[1..]),
        Some("calibrate") => calibrate(&args[1..]),
        Some("round") => round(&args[1..]),
        Some("efficiency") => efficiency(&args[1..]),
        Some("many-lut") => many_lut(&args[1..]),
        Some("keygen") => keygen_split(&args[1..]),
        _ => bail!(
            "usage: fhec-bench pbs [--min-precision 1] [--max-precision 8] [--seconds 2]\n       \
             fhec-bench round [--bits 13] [--min-k 4] [--max-k 12] [--elements 16] [--full-bits 7]\n       \
             fhec-bench efficiency FILE.fhecp... [--samples 1,16]\n       \
             fhec-bench many-lut [--elements 32] [--max-width 4]\n       \
             fhec-bench keygen FILE.fhecp... [--runs 3]"
        ),
    }
}
