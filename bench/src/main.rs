//! `fhec-bench pbs`: bootstrap throughput of the fhec executor against a bare tfhe-rs loop at the
//! same parameters, for lookups of 1 to 8 bits, on 1 thread and on all threads; keygen time and key
//! sizes. Writes `bench/results/pbs.json` and `bench/results/pbs.md`.
//!
//! Usage: `cargo run --release -p fhec-bench -- pbs [--min-precision 1] [--max-precision 8] [--seconds 2]`

use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use fhec_backend_tfhe::{compile, CompileOptions};
use fhec_runtime::bench_support::{bare_pbs_loop, input_list};
use fhec_runtime::program::decode;
use fhec_runtime::{exec, keys, ClearTensor, ClientKeys, Progress};
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
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("pbs.json"),
        serde_json::to_string_pretty(&json!({ "threads": all, "rows": rows }))?,
    )?;
    std::fs::write(dir.join("pbs.md"), &md)?;
    println!("{md}");
    Ok(())
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

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("pbs") => pbs(&args[1..]),
        Some("calibrate") => calibrate(&args[1..]),
        _ => bail!("usage: fhec-bench pbs [--min-precision 1] [--max-precision 8] [--seconds 2]"),
    }
}
