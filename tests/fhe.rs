//! End to end with real, secure keys: FHE == simulation == the clear interpreter.
//!
//! Keys are generated once per parameter set and cached for the whole binary. Most programs are
//! compiled against one shared parameter set (searched for the union of their noise constraints),
//! so one keygen serves them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use fhec_backend_tfhe::params::{self, NoiseDag, PError};
use fhec_backend_tfhe::{compile, CompileOptions, Compiled};
use fhec_ir::module::Module;
use fhec_ir::text::split_cases;
use fhec_ir::{parse_module, verify, Function, OpKind, Tensor};
use fhec_runtime::{exec, ClearTensor, ClientKeys, ParamSet, Progress, ServerKeys};
use ndarray::{ArrayD, IxDyn};

type Keys = Arc<(ClientKeys, ServerKeys)>;

/// Keys per parameter set, generated on first use.
fn keys(p: &[ParamSet]) -> Keys {
    static CACHE: OnceLock<Mutex<HashMap<u64, Keys>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(p.iter().fold(0u64, |h, q| h.rotate_left(7) ^ q.fingerprint()))
        .or_insert_with(|| {
            let ck = ClientKeys::generate(p).expect("secure parameters");
            let sk = ck
                .evaluation_keys(&Progress::silent())
                .expand(&Progress::silent())
                .expect("keys match");
            Arc::new((ck, sk))
        })
        .clone()
}

fn to_clear(t: &Tensor) -> ClearTensor {
    ClearTensor::new(t.shape().to_vec(), t.iter().copied().collect()).unwrap()
}

fn from_clear(c: &ClearTensor) -> Tensor {
    ArrayD::from_shape_vec(IxDyn(&c.shape), c.values.clone()).unwrap()
}

/// The entries of a table over every `w`-bit value (two's complement when `signed`), as the text
/// of a `dense<[…]>` attribute.
fn table(w: u32, signed: bool, f: &dyn Fn(i64) -> i64) -> String {
    let vals: Vec<String> = (0..1i64 << w)
        .map(|i| {
            let v = if signed && i >= 1 << (w - 1) { i - (1 << w) } else { i };
            f(v).to_string()
        })
        .collect();
    vals.join(", ")
}

fn root(rel: &str) -> String {
    format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// Every runnable program of the suite: examples, op case files, each op's documented example.
/// (name, source)
fn corpus() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in ["examples/mlp.fhe", "examples/tree.fhe"] {
        out.push((f.to_string(), std::fs::read_to_string(root(f)).unwrap()));
    }
    let mut files: Vec<_> = ["tests/cases/ops", "tests/cases/lut-fusion"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root(d)).unwrap().map(|e| e.unwrap().path()))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, c) in split_cases(&text).into_iter().enumerate() {
            out.push((format!("{}#{i}", path.file_name().unwrap().to_string_lossy()), c.text));
        }
    }
    for k in OpKind::ALL {
        out.push((format!("doc example of {}", k.name()), k.def().doc().valid.to_string()));
    }
    out
}

/// Whether the backend takes this function: encrypted results, and clear arguments only where a
/// clear argument may go (`tests/cases/ops/clear_args.fhe`; the op examples with a clear argument
/// elsewhere, e.g. conv2d weights, are not lowered).
fn runnable(f: &Function) -> bool {
    let clear_ok = f.args.iter().all(|a| f.ty(a.value).is_encrypted())
        || f.body.iter().all(|&o| {
            let op = f.op(o);
            !op.operands
                .iter()
                .any(|&v| f.args.iter().any(|a| a.value == v && !f.ty(v).is_encrypted()))
                || matches!(
                    op.kind,
                    OpKind::Add | OpKind::Sub | OpKind::Mul | OpKind::Matmul | OpKind::Dot | OpKind::Transpose
                )
        });
    clear_ok && f.returns.iter().all(|&v| f.ty(v).is_encrypted())
}

fn parse(src: &str) -> Module {
    parse_module(src).unwrap_or_else(|d| panic!("{}", d.render("case", src)))
}

fn compile_with(src: &str, params: Option<ParamSet>) -> Result<Compiled, String> {
    let m = parse(src);
    let v = verify(&m).map_err(|d| format!("{d:?}"))?;
    let opts = CompileOptions {
        params: params.map(|p| vec![p]),
        ..Default::default()
    };
    compile(&v, &opts, Some(src)).map_err(|d| d.render("case", src))
}

/// One parameter set for the whole corpus: the search run on the union of all noise constraints.
fn shared_params() -> ParamSet {
    static P: OnceLock<ParamSet> = OnceLock::new();
    *P.get_or_init(|| {
        let mut dag = NoiseDag::default();
        for (_, src) in corpus() {
            let m = parse(&src);
            if !runnable(m.entry().unwrap()) {
                continue;
            }
            let c = compile_with(&src, None).unwrap();
            dag.constraints.extend(c.dag.constraints);
        }
        params::search(&dag, PError::default())
            .expect("one parameter set fits the corpus")
            .params
    })
}

/// Input samples for a function: all minima, all maxima, and random values (extremes included);
/// samples the interpreter rejects (a width promise broken by these inputs) are dropped.
fn samples(m: &Module, seed: u64, n_random: usize) -> Vec<(Vec<Tensor>, Vec<Tensor>)> {
    let v = verify(m).unwrap();
    fhec_tests::input_samples(m, seed, n_random)
        .into_iter()
        .filter_map(|inputs| fhec_ir::interp::eval(&v, &inputs).ok().map(|want| (inputs, want)))
        .collect()
}

/// Runs `c` encrypted (one batch) and simulated on `cases`; both must equal the interpreter.
/// Simulates every case and checks it against the interpreter's outputs.
fn check_simulated(c: &Compiled, cases: &[(Vec<Tensor>, Vec<Tensor>)]) {
    let batch: Vec<Vec<ClearTensor>> = cases.iter().map(|(x, _)| x.iter().map(to_clear).collect()).collect();
    let sim = c.program.simulate(&batch).unwrap();
    for (s, (_, want)) in cases.iter().enumerate() {
        let got: Vec<Tensor> = sim[s].iter().map(from_clear).collect();
        assert_eq!(&got, want, "simulation differs from the interpreter");
    }
}

fn check_encrypted(name: &str, c: &Compiled, cases: &[(Vec<Tensor>, Vec<Tensor>)]) {
    if cases.is_empty() {
        return;
    }
    let k = keys(&c.program.partitions);
    let batch: Vec<Vec<ClearTensor>> = cases.iter().map(|(x, _)| x.iter().map(to_clear).collect()).collect();
    let sim = c.program.simulate(&batch).unwrap();
    let enc = k.0.encrypt(&c.program.interface(), &batch).unwrap();
    let out = exec::run(&c.program, &k.1, enc, &Progress::silent(), None).unwrap();
    let dec = k.0.decrypt(&c.program.interface(), &out).unwrap();
    for (s, (inputs, want)) in cases.iter().enumerate() {
        let got_sim: Vec<Tensor> = sim[s].iter().map(from_clear).collect();
        let got: Vec<Tensor> = dec[s].iter().map(from_clear).collect();
        assert_eq!(
            &got_sim, want,
            "{name}: simulation differs from the interpreter on {inputs:?}"
        );
        assert_eq!(&got, want, "{name}: FHE differs from the interpreter on {inputs:?}");
    }
}

/// Every op — its documented example, the op case files and the examples — runs encrypted with
/// secure parameters and equals the interpreter, on minima, maxima and random inputs.
#[test]
fn every_op_runs_encrypted_exactly() {
    let params = shared_params();
    let mut covered = std::collections::BTreeSet::new();
    let mut with_clear_args = 0;
    for (i, (name, src)) in corpus().into_iter().enumerate() {
        let m = parse(&src);
        let f = m.entry().unwrap();
        if !runnable(f) {
            continue;
        }
        for &o in &f.body {
            covered.insert(f.op(o).kind);
        }
        let c = compile_with(&src, Some(params)).unwrap_or_else(|e| panic!("{name}: {e}"));
        with_clear_args += usize::from(c.program.num_clear_values() > 0);
        check_encrypted(&name, &c, &samples(&m, i as u64, 3));
    }
    assert!(with_clear_args >= 4, "the clear-argument cases ran: {with_clear_args}");
    let missing: Vec<&str> = OpKind::ALL
        .iter()
        .filter(|k| !covered.contains(k))
        .map(|k| k.name())
        .collect();
    assert!(missing.is_empty(), "ops never run encrypted: {missing:?}");
}

/// Signed and unsigned lookups, roundings and sign changes at their extremes.
#[test]
fn signed_and_unsigned_edges() {
    let src = r#"func.func @main(%x: tensor<4x!fhe.esint<4>>, %y: tensor<4x!fhe.eint<4>>) -> (tensor<4x!fhe.esint<3>>, tensor<4x!fhe.esint<3>>, tensor<4x!fhe.eint<3>>, tensor<4x!fhe.esint<8>>) {
  %0 = "fhe.round"(%x) {lsbs = 2} : (tensor<4x!fhe.esint<4>>) -> tensor<4x!fhe.esint<3>>
  %1 = "fhe.truncate"(%x) {lsbs = 2} : (tensor<4x!fhe.esint<4>>) -> tensor<4x!fhe.esint<3>>
  %2 = "fhe.truncate"(%y) {lsbs = 1} : (tensor<4x!fhe.eint<4>>) -> tensor<4x!fhe.eint<3>>
  %3 = "fhe.to_signed"(%y) : (tensor<4x!fhe.eint<4>>) -> tensor<4x!fhe.esint<4>>
  %4 = "fhe.mul_eint"(%x, %3) : (tensor<4x!fhe.esint<4>>, tensor<4x!fhe.esint<4>>) -> tensor<4x!fhe.esint<8>>
  "func.return"(%0, %1, %2, %4) : (tensor<4x!fhe.esint<3>>, tensor<4x!fhe.esint<3>>, tensor<4x!fhe.eint<3>>, tensor<4x!fhe.esint<8>>) -> ()
}"#;
    let m = parse(src);
    let c = compile_with(src, Some(shared_params())).unwrap();
    let v = verify(&m).unwrap();
    let mut cases = Vec::new();
    // extremes of both operands, in every position
    for (a, b) in [(-8, 0), (-8, 7), (7, 0), (7, 7), (-1, 1), (0, 0), (-8, 5), (6, 3)] {
        let x = ArrayD::from_shape_vec(IxDyn(&[4]), vec![a, -a - 1, b - 8, 7 - b]).unwrap();
        let y = ArrayD::from_shape_vec(IxDyn(&[4]), vec![b, 7 - b, 0, 7]).unwrap();
        let inputs = vec![x, y];
        let want = fhec_ir::interp::eval(&v, &inputs).expect("inputs in range");
        cases.push((inputs, want));
    }
    check_encrypted("signed/unsigned edges", &c, &cases);
}

/// Rounding of a wide accumulator by bit extraction (no lookup as wide as it exists).
#[test]
fn wide_rounding_by_bit_extraction() {
    let src = r#"func.func @main(%x: tensor<3x!fhe.eint<6>>) -> tensor<3x!fhe.esint<5>> {
  %c = "fhe.constant"() {value = dense<[100, -90, 77]> : tensor<3xi8>} : () -> tensor<3xi8>
  %0 = "fhe.mul"(%x, %c) : (tensor<3x!fhe.eint<6>>, tensor<3xi8>) -> tensor<3x!fhe.esint<14>>
  %1 = "fhe.round"(%0) {lsbs = 9} : (tensor<3x!fhe.esint<14>>) -> tensor<3x!fhe.esint<5>>
  "func.return"(%1) : (tensor<3x!fhe.esint<5>>) -> ()
}"#;
    let m = parse(src);
    let c = compile_with(src, None).unwrap();
    let max_prec = c.program.tables.iter().map(|t| t.precision).max().unwrap();
    assert_eq!(max_prec, 0, "expected bit extraction only");
    check_encrypted("wide rounding", &c, &samples(&m, 3, 4));
}

/// A program of two partitions: the one-bit extractions of an exact rounding run on a small
/// parameter set (partition 1, its GLWE key a prefix of partition 0's), the final lookup and the
/// inputs on the compiled set (partition 0). Values of both partitions mix in linear instructions
/// (the accumulator minus extracted bits), each partition keyswitches from the other's outputs, and
/// outputs are padded to the widest key. Encrypted = simulated = interpreter; the noise analysis
/// of both partitions stays below 2^-40; keys of the one-partition program are refused.
#[test]
fn two_partitions_run_exactly() {
    use fhec_backend_tfhe::params::Constraint;
    use fhec_runtime::{io as rio, Instr, RawParamSet};
    let src = r#"func.func @main(%x: tensor<3x!fhe.eint<6>>) -> tensor<3x!fhe.eint<1>> {
  %c = "fhe.constant"() {value = dense<[100, -90, 77]> : tensor<3xi8>} : () -> tensor<3xi8>
  %0 = "fhe.mul"(%x, %c) : (tensor<3x!fhe.eint<6>>, tensor<3xi8>) -> tensor<3x!fhe.esint<14>>
  %1 = "fhe.round"(%0) {lsbs = 9} : (tensor<3x!fhe.esint<14>>) -> tensor<3x!fhe.esint<5>>
  %2 = "fhe.lut"(%1) {table = dense<[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]> : tensor<32xui1>} : (tensor<3x!fhe.esint<5>>) -> tensor<3x!fhe.eint<1>>
  "func.return"(%2) : (tensor<3x!fhe.eint<1>>) -> ()
}"#;
    let m = parse(src);
    let c = compile_with(src, None).unwrap();
    let single = c.program.clone();
    let big = *single.input_params();
    // a set for the extractions alone: their constraints (the bit to extract is shifted to the top,
    // which amplifies the noise of the accumulator and of the bits extracted before it)
    let extractions: Vec<Constraint> = c
        .dag
        .constraints
        .iter()
        .filter(|k| k.lookup && k.precision == 0)
        .cloned()
        .collect();
    let small = params::search(
        &NoiseDag {
            constraints: extractions,
        },
        PError::default(),
    )
    .unwrap()
    .params;
    assert!(small.big_lwe_dimension() < big.big_lwe_dimension(), "{small} / {big}");
    // sharing the small key as its prefix, the big key needs the noise that secures the rest alone
    let rest = fhec_runtime::params::secure_lwe_bound(big.big_lwe_dimension() - small.big_lwe_dimension())
        .max(big.raw().glwe_noise_bound_log2);
    let big = ParamSet::new(RawParamSet {
        glwe_noise_bound_log2: rest,
        ..*big.raw()
    })
    .unwrap();
    let mut p = single.clone();
    p.partitions = vec![big, small];
    let mut moved = 0;
    for ins in &mut p.instrs {
        if let Instr::Pbs { table, partition, .. } = ins {
            if p.tables[*table as usize].precision == 0 {
                *partition = 1;
                moved += 1;
            }
        }
    }
    assert_eq!(moved, 27, "3 × 9 extractions");
    p.validate().unwrap();
    let a = fhec_backend_tfhe::rederive::analyze_program(&p);
    assert!(a.log2_worst < -40.0, "worst lookup 2^{}", a.log2_worst);
    assert_ne!(p.fingerprint(), single.fingerprint());
    let iface = p.interface();
    assert_eq!(iface.partition_lookups, vec![3, 27]);
    assert_eq!(
        iface.ksk_dims,
        vec![big.big_lwe_dimension() as u32, big.big_lwe_dimension() as u32]
    );
    assert_eq!(iface.output_dim as usize, big.big_lwe_dimension());
    // the program file round trip keeps the partitions
    let back = rio::program_from_bytes(&rio::program_to_bytes(&p).unwrap()).unwrap();
    assert_eq!(back, p);

    let silent = Progress::silent();
    let ck = ClientKeys::generate(&p.partitions).unwrap();
    let ek = ck.evaluation_keys_for(&iface, &silent);
    let ek = rio::evaluation_keys_from_bytes(&rio::evaluation_keys_to_bytes(&ek).unwrap()).unwrap();
    let sk = ek.expand(&silent).unwrap();
    let cases = samples(&m, 5, 6);
    let batch: Vec<Vec<ClearTensor>> = cases.iter().map(|(x, _)| x.iter().map(to_clear).collect()).collect();
    let sim = p.simulate(&batch).unwrap();
    let enc = ck.encrypt(&iface, &batch).unwrap();
    let out = exec::run(&p, &sk, enc, &silent, None).unwrap();
    let dec = ck.decrypt(&iface, &out).unwrap();
    for (s, (inputs, want)) in cases.iter().enumerate() {
        let got_sim: Vec<Tensor> = sim[s].iter().map(from_clear).collect();
        let got: Vec<Tensor> = dec[s].iter().map(from_clear).collect();
        assert_eq!(&got_sim, want, "simulation differs from the interpreter on {inputs:?}");
        assert_eq!(&got, want, "FHE differs from the interpreter on {inputs:?}");
    }

    // the one-partition program's keys do not run the partitioned program, nor the reverse
    let k1 = keys(&single.partitions);
    let enc = k1.0.encrypt(&single.interface(), &batch[..1]).unwrap();
    let e = exec::run(&p, &k1.1, enc, &silent, None).err().unwrap();
    assert!(e.to_string().contains("other parameters"), "{e}");
    let enc = ck.encrypt(&iface, &batch[..1]).unwrap();
    assert!(exec::run(&single, &sk, enc, &silent, None).is_err());
}

/// The search's partitions on the whole corpus: every program compiled with partitions allowed is
/// valid, meets the failure target by its own re-derived analysis, and simulates exactly; each one
/// split into two partitions is estimated cheaper than with one set, and the first few of them run
/// encrypted and equal the interpreter (keys per partition vector: each is generated once).
#[test]
fn searched_partitions_run_exactly() {
    let mut split = 0;
    let mut ran = 0;
    let t0 = std::time::Instant::now();
    for (name, src) in corpus() {
        let m = parse(&src);
        if !runnable(m.entry().unwrap()) {
            continue;
        }
        let v = verify(&m).unwrap();
        let one = compile(&v, &CompileOptions::default(), Some(&src)).unwrap();
        let opts = CompileOptions {
            partitions: true,
            ..Default::default()
        };
        let c = compile(&v, &opts, Some(&src)).unwrap_or_else(|d| panic!("{name}: {}", d.message));
        c.program.validate().unwrap();
        let a = fhec_backend_tfhe::rederive::analyze_program(&c.program);
        let (PError::PerLookup(t) | PError::Global(t)) = PError::default();
        assert!(a.log2_worst <= t.log2() + 1e-9, "{name}: 2^{}", a.log2_worst);
        let cases = samples(&m, 3, 3);
        let batch: Vec<Vec<ClearTensor>> = cases.iter().map(|(x, _)| x.iter().map(to_clear).collect()).collect();
        let sim = c.program.simulate(&batch).unwrap();
        for (s, (inputs, want)) in cases.iter().enumerate() {
            let got: Vec<Tensor> = sim[s].iter().map(from_clear).collect();
            assert_eq!(&got, want, "{name}: simulation differs on {inputs:?}");
        }
        if c.program.partitions.len() < 2 {
            assert_eq!(c.program, one.program, "{name}: one partition is the plain compile");
            continue;
        }
        split += 1;
        assert!(
            c.program.noise.estimated_seconds < one.program.noise.estimated_seconds,
            "{name}: split into partitions but not cheaper"
        );
        if ran < 3 {
            ran += 1;
            check_encrypted(&format!("{name} (partitioned)"), &c, &cases);
        }
    }
    eprintln!(
        "{split} programs split into partitions, {ran} run encrypted, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        split >= 2,
        "the corpus has programs worth splitting (lookups of 0 and 4+ bits)"
    );
}

/// Random programs over the whole op set: the simulation of the lowered program equals the
/// interpreter (no keys: this checks the lowering and encodings on many programs), and so does the
/// program with many-LUT lanes wherever lookups share an input (`lanes::room`, `lanes::group`).
#[test]
fn random_programs_simulate_exactly() {
    let (mut run, mut with_lanes) = (0, 0);
    for seed in 0..160u64 {
        let f = fhec_tests::random_function(seed, 6);
        let mut m = Module::new();
        m.functions.push(f);
        verify(&m).unwrap();
        let lowered = match fhec_backend_tfhe::lower::lower_function(m.entry().unwrap(), None) {
            Ok(l) => l,
            // a lookup wider than 16 bits or a component wider than 62 bits: a clear error
            Err(d) => {
                assert!(d.message.contains("bits"), "seed {seed}: {}", d.message);
                continue;
            }
        };
        // with many-LUT lanes where lookups share an input (lowered again with room for them)
        let room = fhec_backend_tfhe::lanes::room(&lowered);
        let grouped = (!room.is_empty())
            .then(|| fhec_backend_tfhe::lower::lower_function_with(m.entry().unwrap(), None, &room).ok())
            .flatten()
            .and_then(|l| fhec_backend_tfhe::lanes::group(&l));
        let mut programs = vec![lowered.into_program(shared_params(), Default::default())];
        if let Some(g) = grouped {
            programs.push(g.into_program(shared_params(), Default::default()));
            with_lanes += 1;
        }
        for program in &programs {
            program.validate().unwrap();
            for (inputs, want) in samples(&m, seed, 4) {
                let got = program.simulate(&[inputs.iter().map(to_clear).collect()]).unwrap();
                let got: Vec<Tensor> = got[0].iter().map(from_clear).collect();
                assert_eq!(
                    got,
                    want,
                    "seed {seed} ({} lanes): simulation differs on {inputs:?}\n{}",
                    program.lane_count(),
                    fhec_ir::print_module(&m)
                );
            }
        }
        run += 1;
    }
    eprintln!("{run} random programs lowered, {with_lanes} also with lanes");
    assert!(run >= 100, "only {run} random programs lowered");
    assert!(
        with_lanes >= 20,
        "only {with_lanes} random programs have lookups sharing an input"
    );
}

/// A few small random programs run encrypted (each with its own searched parameters).
#[test]
fn random_programs_run_encrypted() {
    let mut run = 0;
    for seed in 1000..1200u64 {
        if run == 6 {
            break;
        }
        let f = fhec_tests::random_function(seed, 4);
        let mut m = Module::new();
        m.functions.push(f);
        let src = fhec_ir::print_module(&m);
        let Ok(c) = compile_with(&src, None) else { continue };
        // keep CI fast: lookups of at most 5 bits
        if c.program.tables.iter().any(|t| t.precision > 5) || c.program.pbs_count() > 400 {
            continue;
        }
        check_encrypted(&format!("random program {seed}"), &c, &samples(&m, seed, 2));
        run += 1;
    }
    assert!(run >= 4, "only {run} random programs ran");
}

/// The whole compiler: every corpus program after the default pass pipeline (bitwidth narrowing,
/// lookup fusion, multi_lut grouping) runs encrypted and equals the original program's interpreter.
#[test]
fn default_pipeline_then_encrypted_equals_original() {
    use fhec_passes::manager::{run_text, DEFAULT_PIPELINE};
    let params = shared_params();
    let mut fused = 0;
    for (i, (name, src)) in corpus().into_iter().enumerate() {
        let m = parse(&src);
        if !runnable(m.entry().unwrap()) {
            continue;
        }
        let mut opt = m.clone();
        run_text(&mut opt, DEFAULT_PIPELINE, &mut fhec_tests::pass_context())
            .unwrap_or_else(|d| panic!("{name}: {}", d.message));
        let text = fhec_ir::print_module(&opt);
        if text.contains("fhe.multi_lut") && !src.contains("fhe.multi_lut") {
            fused += 1;
        }
        let c = compile_with(&text, Some(params))
            .or_else(|_| compile_with(&text, None))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // expected values from the original program, on its own inputs
        check_encrypted(&format!("{name} (optimised)"), &c, &samples(&m, 1000 + i as u64, 2));
    }
    let _ = fused;
}

/// A linear model: no lookups, so the parameters are the smallest secure GLWE key that decrypts the
/// accumulator and there are no evaluation keys. The 300 inputs span three packed GLWE ciphertexts
/// (N = 128): every element, the last zero-padded ciphertext included, extracts correctly.
#[test]
fn linear_program_runs_packed_without_evaluation_keys() {
    let n = 300;
    let w: Vec<String> = (0..n)
        .map(|i| format!("[{}, {}]", (i * 37 % 255) as i64 - 127, (i % 7) as i64 - 3))
        .collect();
    let src = format!(
        r#"func.func @main(%x: tensor<1x{n}x!fhe.eint<8>>) -> tensor<1x2x!fhe.esint<26>> {{
  %w = "fhe.constant"() {{value = dense<[{}]> : tensor<{n}x2xi8>}} : () -> tensor<{n}x2xi8>
  %0 = "fhe.matmul"(%x, %w) : (tensor<1x{n}x!fhe.eint<8>>, tensor<{n}x2xi8>) -> tensor<1x2x!fhe.esint<26>>
  "func.return"(%0) : (tensor<1x2x!fhe.esint<26>>) -> ()
}}"#,
        w.join(", ")
    );
    let c = compile_with(&src, None).unwrap();
    assert_eq!(c.program.pbs_count(), 0);
    assert!(
        c.program.input_params().polynomial_size() < n,
        "{}",
        c.program.input_params()
    );
    assert!(c.solution.analysis.log2_worst <= -40.0);
    let ck = ClientKeys::generate(&c.program.partitions).unwrap();
    let ek = ck.evaluation_keys_for(&c.program.interface(), &Progress::silent());
    assert_eq!(ek.size_bytes(), 0);
    assert!(!ek.has_bootstrap());
    let sk = ek.expand(&Progress::silent()).unwrap();
    let m = parse(&src);
    // more samples than one chunk of the executor (64): chunks reuse their slot memory
    let cases: Vec<_> = samples(&m, 11, 6).into_iter().cycle().take(150).collect();
    let batch: Vec<Vec<ClearTensor>> = cases.iter().map(|(x, _)| x.iter().map(to_clear).collect()).collect();
    let enc = ck.encrypt(&c.program.interface(), &batch).unwrap();
    let out = exec::run(&c.program, &sk, enc, &Progress::silent(), None).unwrap();
    let dec = ck.decrypt(&c.program.interface(), &out).unwrap();
    for (s, (inputs, want)) in cases.iter().enumerate() {
        let got: Vec<Tensor> = dec[s].iter().map(from_clear).collect();
        assert_eq!(&got, want, "FHE differs from the interpreter on {inputs:?}");
    }

    // keys made for a program without lookups cannot run one with lookups
    let tree = std::fs::read_to_string(root("examples/tree.fhe")).unwrap();
    let t = compile_with(&tree, None).unwrap_or_else(|e| panic!("{e}"));
    let tk = keys(&t.program.partitions);
    let mut no_lookups = t.program.clone();
    no_lookups.instrs.clear();
    let bare =
        tk.0.evaluation_keys_for(&no_lookups.interface(), &Progress::silent())
            .expand(&Progress::silent())
            .unwrap();
    let x = vec![vec![ClearTensor::new(vec![2], vec![3, 4]).unwrap()]];
    let enc = tk.0.encrypt(&t.program.interface(), &x).unwrap();
    let err = exec::run(&t.program, &bare, enc, &Progress::silent(), None)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("no bootstrap key"), "{err}");
}

/// A tree ensemble (two trees, three features, 3-bit inputs; docs/trees.md): the module built from
/// its quantised form, after the default pipeline, runs encrypted on thermometer-encoded inputs and
/// returns the quantised scores, with one lookup per pair of sibling leaves at the path-sum width.
#[test]
fn tree_ensemble_runs_encrypted_exactly() {
    use fhec_trees::{build_module, quantize, Cmp, Ensemble, Node, Tree};
    let split = |feature, threshold, left, right| Node::Split {
        feature,
        threshold,
        cmp: Cmp::Le,
        left,
        right,
        missing_left: false,
    };
    let leaf = |v: f64| Node::Leaf { value: vec![v] };
    let e = Ensemble {
        n_features: 3,
        n_outputs: 1,
        trees: vec![
            Tree {
                nodes: vec![
                    split(0, 0.1, 1, 2),
                    split(1, -0.5, 3, 4),
                    split(2, 0.7, 5, 6),
                    leaf(1.0),
                    leaf(-2.0),
                    leaf(0.5),
                    leaf(3.0),
                ],
            },
            Tree {
                nodes: vec![split(1, 0.2, 1, 2), leaf(-1.0), leaf(2.5)],
            },
        ],
        base_score: vec![],
        aggregation: Default::default(),
        post: Default::default(),
        float: Default::default(),
    };
    let calib = vec![vec![-1.0, -1.0, -1.0], vec![1.0, 1.0, 1.0]];
    let q = quantize(&e, &calib, 3, 6).unwrap();
    let (mut m, report) = build_module(&q, None).unwrap();
    // three pairs of sibling leaves: one lookup each
    assert_eq!((report.leaves, report.lookups, report.lookup_bits), (6, 3, 2));
    fhec_passes::manager::run_text(
        &mut m,
        fhec_passes::manager::DEFAULT_PIPELINE,
        &mut fhec_tests::pass_context(),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let v = verify(&m).unwrap();
    let c = compile(&v, &CompileOptions::default(), None).unwrap_or_else(|d| panic!("{}", d.message));
    assert_eq!(c.program.pbs_count(), 3);
    assert!(
        c.program.tables.iter().all(|t| t.precision == 2),
        "{:?}",
        c.program.tables.iter().map(|t| t.precision).collect::<Vec<_>>()
    );
    let mut cases = Vec::new();
    for a in 0..8i64 {
        for b in [0i64, 2, 5, 7] {
            for cc in [0i64, 6] {
                let qx = [a, b, cc];
                let bits = q.thermometer(&qx);
                let x = ArrayD::from_shape_vec(IxDyn(&[1, bits.len()]), bits).unwrap();
                let want = ArrayD::from_shape_vec(IxDyn(&[1, 1]), q.scores(&qx)).unwrap();
                cases.push((vec![x], vec![want]));
            }
        }
    }
    check_encrypted("tree ensemble", &c, &cases);
}

/// Trees in `collect` mode (docs/trees.md, 5d): a tree of 16 distinct positive leaf values (summed
/// by base-4 digit, 2-bit lookups) and a pure tree (summed by value, a 1-bit lookup) run encrypted and
/// simulated equal to the interpreter — on thermometer codes, and on the edges of what the program
/// accepts: all bits 0, all bits 1, and random bit vectors that no row encodes (one leaf per tree is
/// reached whatever the bits, so the declared 0/1 and 0–3 sums hold there too).
#[test]
fn trees_in_collect_mode_run_encrypted_exactly() {
    use fhec_trees::{build_module, quantize, Cmp, Ensemble, LeafMode, Node, Tree};
    let split = |feature, threshold, left, right| Node::Split {
        feature,
        threshold,
        cmp: Cmp::Le,
        left,
        right,
        missing_left: false,
    };
    // a full tree of depth 4 on two features, leaves 1.0 ..= 16.0
    let mut nodes = Vec::new();
    let mut next = 1.0;
    let mut stack = vec![(usize::MAX, false, 4u32, -1.0f64, 1.0f64, 0usize)];
    while let Some((parent, right, depth, lo, hi, f)) = stack.pop() {
        let at = nodes.len();
        if parent != usize::MAX {
            if let Node::Split { left, right: r, .. } = &mut nodes[parent] {
                if right {
                    *r = at;
                } else {
                    *left = at;
                }
            }
        }
        if depth == 0 {
            nodes.push(Node::Leaf { value: vec![next] });
            next += 1.0;
        } else {
            let mid = (lo + hi) / 2.0;
            nodes.push(split(f, mid, 0, 0));
            stack.push((at, true, depth - 1, mid, hi, 1 - f));
            stack.push((at, false, depth - 1, lo, mid, 1 - f));
        }
    }
    let leaf = |v: f64| Node::Leaf { value: vec![v] };
    let pure = Tree {
        nodes: vec![
            split(1, 0.1, 1, 2),
            leaf(0.0),
            split(0, -0.4, 3, 4),
            leaf(5.0),
            leaf(0.0),
        ],
    };
    let e = Ensemble {
        n_features: 2,
        n_outputs: 1,
        trees: vec![Tree { nodes }, pure],
        base_score: vec![],
        aggregation: Default::default(),
        post: Default::default(),
        float: Default::default(),
    };
    let q = quantize(&e, &[vec![-1.0, -1.0], vec![1.0, 1.0]], 3, 8).unwrap();
    let (mut m, report) = build_module(&q, Some(LeafMode::Collect)).unwrap();
    assert_eq!(report.leaf_mode, LeafMode::Collect);
    fhec_passes::manager::run_text(
        &mut m,
        fhec_passes::manager::DEFAULT_PIPELINE,
        &mut fhec_tests::pass_context(),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let v = verify(&m).unwrap();
    let c = compile(&v, &CompileOptions::default(), None).unwrap_or_else(|d| panic!("{}", d.message));
    let precisions: std::collections::BTreeSet<u32> = c.program.tables.iter().map(|t| t.precision).collect();
    assert!(precisions.contains(&1) && precisions.contains(&2), "{precisions:?}");
    let bits = q.n_features * q.levels();
    let mut inputs: Vec<Vec<i64>> = vec![vec![0; bits], vec![1; bits]];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..4 {
        inputs.push(
            (0..bits)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng & 1) as i64
                })
                .collect(),
        );
    }
    for qx in [[0i64, 0], [7, 7], [3, 5], [6, 1]] {
        inputs.push(q.thermometer(&qx));
    }
    let cases: Vec<(Vec<Tensor>, Vec<Tensor>)> = inputs
        .into_iter()
        .map(|b| {
            let x = ArrayD::from_shape_vec(IxDyn(&[1, bits]), b).unwrap();
            let want = fhec_ir::interp::eval(&v, std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{e:?}"));
            (vec![x], want)
        })
        .collect();
    check_encrypted("trees in collect mode", &c, &cases);
}

/// Clear arguments: values sent unencrypted with each call. Every allowed position runs encrypted
/// and simulated exactly (the case file is in the corpus above); here, random weights over their
/// whole range on a clear-weight layer, the server's refusal of clear values outside their type,
/// and the compile errors for the positions a clear argument may not take.
#[test]
fn clear_arguments_run_exactly_and_are_checked() {
    let src = r#"func.func @main(%x: tensor<2x3x!fhe.esint<4>>, %w: tensor<3x2xi6>, %b: tensor<2xi8>) -> (tensor<2x2x!fhe.esint<12>>, tensor<2x2x!fhe.eint<3>>) {
  %0 = "fhe.matmul"(%x, %w) : (tensor<2x3x!fhe.esint<4>>, tensor<3x2xi6>) -> tensor<2x2x!fhe.esint<11>>
  %1 = "fhe.add"(%0, %b) : (tensor<2x2x!fhe.esint<11>>, tensor<2xi8>) -> tensor<2x2x!fhe.esint<12>>
  %2 = "fhe.round"(%1) {lsbs = 9} : (tensor<2x2x!fhe.esint<12>>) -> tensor<2x2x!fhe.esint<3>>
  %3 = "fhe.lut"(%2) {table = dense<[0, 1, 2, 3, 0, 0, 0, 0]> : tensor<8xi64>} : (tensor<2x2x!fhe.esint<3>>) -> tensor<2x2x!fhe.eint<3>>
  "func.return"(%1, %3) : (tensor<2x2x!fhe.esint<12>>, tensor<2x2x!fhe.eint<3>>) -> ()
}"#;
    let m = parse(src);
    let c = compile_with(src, None).unwrap_or_else(|e| panic!("{e}"));
    let ports: Vec<(&str, bool)> = c.program.inputs.iter().map(|p| (p.name.as_str(), p.clear)).collect();
    assert_eq!(ports, [("x", false), ("w", true), ("b", true)]);
    assert_eq!(c.program.num_input_slots, 6, "clear arguments take no slots");
    assert_eq!(c.program.num_clear_values(), 8);
    assert!(c
        .program
        .instrs
        .iter()
        .any(|i| matches!(i, fhec_runtime::Instr::ClearLinear { .. })));
    let mut cases = samples(&m, 5, 12);
    // the weights' extremes against the input's extremes
    let v = verify(&m).unwrap();
    for (xv, wv, bv) in [(-8, -32, -128), (-8, 31, 127), (7, -32, 127), (7, 31, -128)] {
        let inputs = vec![
            ArrayD::from_elem(IxDyn(&[2, 3]), xv),
            ArrayD::from_elem(IxDyn(&[3, 2]), wv),
            ArrayD::from_elem(IxDyn(&[2]), bv),
        ];
        let want = fhec_ir::interp::eval(&v, &inputs).unwrap();
        cases.push((inputs, want));
    }
    check_encrypted("clear-weight layer", &c, &cases);

    // a clear value outside its type: refused by the client and by the server
    let k = keys(&c.program.partitions);
    let mut bad: Vec<ClearTensor> = cases[0].0.iter().map(to_clear).collect();
    bad[1].values[0] = 32;
    let e =
        k.0.encrypt(&c.program.interface(), &[bad.clone()])
            .err()
            .expect("refused");
    assert!(
        e.to_string().contains("input `w`") && e.to_string().contains("outside the range"),
        "{e}"
    );
    let e = c.program.simulate(&[bad]).expect_err("refused");
    assert!(e.to_string().contains("outside the range"), "{e}");

    // positions a clear argument may not take: clear-only arithmetic and lookups are the
    // verifier's errors, the others the backend's
    let sig = "func.func @main(%x: tensor<3x!fhe.eint<3>>, %w: tensor<3xui2>) -> tensor<3x!fhe.eint<4>> {";
    let ret = r#""func.return"(%0) : (tensor<3x!fhe.eint<4>>) -> ()
}"#;
    for (src, want) in [
        (
            format!(
                r#"{sig}
  %0 = "fhe.lut"(%w) {{table = dense<[0, 1, 2, 15]> : tensor<4xi64>}} : (tensor<3xui2>) -> tensor<3x!fhe.eint<4>>
  {ret}"#
            ),
            None,
        ),
        (
            format!(
                r#"{sig}
  %c = "fhe.constant"() {{value = dense<1> : tensor<3xui1>}} : () -> tensor<3xui1>
  %s = "fhe.add"(%w, %c) : (tensor<3xui2>, tensor<3xui1>) -> tensor<3xui3>
  %0 = "fhe.add"(%x, %s) : (tensor<3x!fhe.eint<3>>, tensor<3xui3>) -> tensor<3x!fhe.eint<4>>
  {ret}"#
            ),
            None,
        ),
        (
            r#"func.func @main(%x: tensor<1x1x3x3x!fhe.eint<4>>, %w: tensor<2x1x2x2xi3>) -> tensor<1x2x2x2x!fhe.esint<9>> {
  %0 = "fhe.conv2d"(%x, %w) : (tensor<1x1x3x3x!fhe.eint<4>>, tensor<2x1x2x2xi3>) -> tensor<1x2x2x2x!fhe.esint<9>>
  "func.return"(%0) : (tensor<1x2x2x2x!fhe.esint<9>>) -> ()
}"#
            .to_string(),
            Some("fhe.conv2d: a clear argument cannot be an operand here: a clear argument may be added to"),
        ),
        (
            r#"func.func @main(%x: tensor<2x1x3x!fhe.eint<4>>, %w: tensor<2x3x1xi3>) -> tensor<2x1x1x!fhe.esint<9>> {
  %0 = "fhe.matmul"(%x, %w) : (tensor<2x1x3x!fhe.eint<4>>, tensor<2x3x1xi3>) -> tensor<2x1x1x!fhe.esint<9>>
  "func.return"(%0) : (tensor<2x1x1x!fhe.esint<9>>) -> ()
}"#
            .to_string(),
            Some("takes operands of rank 1 or 2"),
        ),
    ] {
        let m = parse(&src);
        match (verify(&m), want) {
            (Err(_), None) => {}
            (Ok(v), Some(want)) => {
                let e = compile(&v, &CompileOptions::default(), Some(&src)).err().expect("refused");
                assert!(e.message.contains(want), "{}", e.render("case", &src));
            }
            (r, _) => panic!("{src}: unexpected verification result {:?}", r.err()),
        }
    }
}

/// The failure probability of a program is re-derived from its instructions and parameters
/// (`backend::rederive`), not trusted from its file: for every program of the corpus the re-derived
/// worst lookup equals the compiler's, and the union bound is no looser.
#[test]
fn rederived_noise_equals_the_compilers() {
    for (name, src) in corpus() {
        let m = parse(&src);
        if !runnable(m.entry().unwrap()) {
            continue;
        }
        let c = compile_with(&src, None).unwrap();
        let a = fhec_backend_tfhe::rederive::analyze_program(&c.program);
        let n = &c.program.noise;
        let same = |x: f64, y: f64| x == y || (x - y).abs() < 1e-9;
        assert!(
            same(a.log2_worst, n.log2_p_error_worst_lookup),
            "{name}: worst {} re-derived, {} compiled",
            a.log2_worst,
            n.log2_p_error_worst_lookup
        );
        assert!(
            a.log2_global <= n.log2_p_error_global + 1e-9,
            "{name}: global {} re-derived, {} compiled",
            a.log2_global,
            n.log2_p_error_global
        );
        // a file that claims better than its instructions give is corrected on load
        let mut lying = c.program.clone();
        lying.noise.log2_p_error_worst_lookup = -1000.0;
        lying.noise.log2_p_error_global = -1000.0;
        let stated = fhec_backend_tfhe::rederive::rederive(&mut lying);
        assert_eq!(stated, (-1000.0, -1000.0));
        assert_eq!(lying.noise.log2_p_error_worst_lookup, a.log2_worst, "{name}");
    }
}

/// Wide lookups whose function is linear on each side of 0 (ReLU, abs, integer slopes, unsigned
/// affine maps) are computed from the input's bits: one-bit extractions and small chunk lookups
/// (the sign in the padding position where the result's scale allows — %x shares a component
/// with 2·x, so ReLU and abs take it — and the padded form otherwise), never a 7-bit table. Exhaustive over every
/// input value in simulation, encrypted on the extremes and a spread of values; a function that is
/// not piecewise linear keeps its table, and a table that is ReLU only on its operand's declared
/// range runs on bits (the lowering reads the proven range), exact on every accepted value.
#[test]
fn wide_piecewise_linear_lookups_run_on_bits() {
    let relu = table(7, true, &|v| v.max(0));
    let slopes = table(7, true, &|v| if v >= 0 { 3 * v - 5 } else { v - 5 });
    let abs = table(7, true, &|v| v.abs());
    let affine = table(6, false, &|v| 2 * v + 1);
    let program = |n: usize| {
        format!(
            r#"func.func @main(%x: tensor<{n}x!fhe.esint<7>>, %y: tensor<{n}x!fhe.eint<6>>) -> (tensor<{n}x!fhe.eint<6>>, tensor<{n}x!fhe.esint<9>>, tensor<{n}x!fhe.eint<7>>, tensor<{n}x!fhe.eint<7>>, tensor<{n}x!fhe.esint<8>>) {{
  %0 = "fhe.lut"(%x) {{table = dense<[{relu}]> : tensor<128xi64>}} : (tensor<{n}x!fhe.esint<7>>) -> tensor<{n}x!fhe.eint<6>>
  %1 = "fhe.lut"(%x) {{table = dense<[{slopes}]> : tensor<128xi64>}} : (tensor<{n}x!fhe.esint<7>>) -> tensor<{n}x!fhe.esint<9>>
  %2 = "fhe.lut"(%x) {{table = dense<[{abs}]> : tensor<128xi64>}} : (tensor<{n}x!fhe.esint<7>>) -> tensor<{n}x!fhe.eint<7>>
  %3 = "fhe.lut"(%y) {{table = dense<[{affine}]> : tensor<64xi64>}} : (tensor<{n}x!fhe.eint<6>>) -> tensor<{n}x!fhe.eint<7>>
  %4 = "fhe.add"(%x, %x) : (tensor<{n}x!fhe.esint<7>>, tensor<{n}x!fhe.esint<7>>) -> tensor<{n}x!fhe.esint<8>>
  "func.return"(%0, %1, %2, %3, %4) : (tensor<{n}x!fhe.eint<6>>, tensor<{n}x!fhe.esint<9>>, tensor<{n}x!fhe.eint<7>>, tensor<{n}x!fhe.eint<7>>, tensor<{n}x!fhe.esint<8>>) -> ()
}}"#
        )
    };
    let src = program(128);
    let m = parse(&src);
    let v = verify(&m).unwrap();
    let c = compile_with(&src, None).unwrap();
    let widest = c.program.tables.iter().map(|t| t.precision).max().unwrap();
    assert!(widest <= 4, "a wide table remained: {widest} bits");
    // every value of x and y, forwards and backwards
    let all_x: Vec<i64> = (-64..64).collect();
    let all_y: Vec<i64> = (0..128).map(|i| i % 64).collect();
    let mut cases = Vec::new();
    for rev in [false, true] {
        let (mut x, mut y) = (all_x.clone(), all_y.clone());
        if rev {
            x.reverse();
            y.reverse();
        }
        let inputs = vec![
            ArrayD::from_shape_vec(IxDyn(&[128]), x).unwrap(),
            ArrayD::from_shape_vec(IxDyn(&[128]), y).unwrap(),
        ];
        let want = fhec_ir::interp::eval(&v, &inputs).unwrap();
        cases.push((inputs, want));
    }
    check_simulated(&c, &cases);
    // encrypted: 16 elements, the extremes among them
    let small = program(16);
    let c16 = compile_with(&small, None).unwrap();
    let m16 = parse(&small);
    let v16 = verify(&m16).unwrap();
    let x: Vec<i64> = vec![-64, -63, -33, -32, -31, -2, -1, 0, 1, 2, 31, 32, 33, 61, 62, 63];
    let y: Vec<i64> = vec![0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 33, 47, 48, 61, 62, 63];
    let inputs = vec![
        ArrayD::from_shape_vec(IxDyn(&[16]), x).unwrap(),
        ArrayD::from_shape_vec(IxDyn(&[16]), y).unwrap(),
    ];
    let want = fhec_ir::interp::eval(&v16, &inputs).unwrap();
    check_encrypted("piecewise-linear lookups on bits", &c16, &[(inputs, want)]);
    // a type wider than the operand can be: the table is ReLU where the declared range reaches
    // ([-40, 40]) and anything elsewhere; the lowering reads the proven range, so bits still apply
    let partial = table(7, true, &|v| if (-40..=40).contains(&v) { v.max(0) } else { 5 });
    let src = format!(
        r#"func.func @main(%x: tensor<81x!fhe.esint<7>> {{fhe.range = [-40, 40]}}) -> tensor<81x!fhe.eint<6>> {{
  %0 = "fhe.lut"(%x) {{table = dense<[{partial}]> : tensor<128xi64>}} : (tensor<81x!fhe.esint<7>>) -> tensor<81x!fhe.eint<6>>
  "func.return"(%0) : (tensor<81x!fhe.eint<6>>) -> ()
}}"#
    );
    let c = compile_with(&src, None).unwrap();
    assert!(
        c.program.tables.iter().all(|t| t.precision <= 4),
        "a wide table remained"
    );
    let m = parse(&src);
    let v = verify(&m).unwrap();
    // every value the program accepts, encrypted and simulated
    let inputs = vec![ArrayD::from_shape_vec(IxDyn(&[81]), (-40..=40).collect()).unwrap()];
    let want = fhec_ir::interp::eval(&v, &inputs).unwrap();
    check_encrypted("ReLU on its proven range", &c, &[(inputs, want)]);
    // not linear on either side of 0: a table
    let square = table(7, true, &|v| v * v / 65);
    let src = format!(
        r#"func.func @main(%x: tensor<4x!fhe.esint<7>>) -> tensor<4x!fhe.eint<6>> {{
  %0 = "fhe.lut"(%x) {{table = dense<[{square}]> : tensor<128xi64>}} : (tensor<4x!fhe.esint<7>>) -> tensor<4x!fhe.eint<6>>
  "func.return"(%0) : (tensor<4x!fhe.eint<6>>) -> ()
}}"#
    );
    let c = compile_with(&src, None).unwrap();
    assert_eq!(c.program.tables.iter().map(|t| t.precision).max(), Some(7));
}

/// Lookups whose table is constant below and above a window (a requantised activation that
/// saturates) run on the window: the low bits of `v − base` by one-bit extractions, the rest read by
/// small lookups, and two reads of the window's bits (docs/crypto.md, "Saturating lookups on a
/// window"). Four shapes: a window inside the range (both constants), a sigmoid-like one on a
/// signed operand, a bump (the same constant on both sides), and windows at either end of the
/// range (no value below / above it); windows of at most 8 values (the class read: the bump, one at
/// each end of a 7-bit range, one around 0 of a 6-bit signed one) and wider ones (the pairs).
/// Every input value in simulation, the windows' edges encrypted.
#[test]
fn saturating_lookups_run_on_a_window() {
    let requant = table(7, false, &|v| (((v - 40) as f64 * 0.7).round() as i64).clamp(0, 15));
    let sigmoid = table(8, true, &|v| {
        (8.0 / (1.0 + (-(v - 10) as f64 / 6.0).exp())).round().min(7.0) as i64
    });
    let bump = table(6, false, &|v| if (20..28).contains(&v) { 3 + (v - 20) % 5 } else { 3 });
    let low = table(7, false, &|v| v.min(9));
    let high = table(7, false, &|v| (v - 115).max(0) * 2 % 7);
    let low3 = table(7, false, &|v| v.min(5));
    let high3 = table(7, false, &|v| (v - 121).max(0));
    let mid3 = table(6, true, &|v| (v + 3).clamp(0, 7));
    let program = |n: usize| {
        format!(
            r#"func.func @main(%x: tensor<{n}x!fhe.eint<7>>, %y: tensor<{n}x!fhe.esint<8>>, %z: tensor<{n}x!fhe.eint<6>>, %s: tensor<{n}x!fhe.esint<6>>) -> (tensor<{n}x!fhe.eint<4>>, tensor<{n}x!fhe.eint<3>>, tensor<{n}x!fhe.eint<3>>, tensor<{n}x!fhe.eint<4>>, tensor<{n}x!fhe.eint<3>>, tensor<{n}x!fhe.eint<3>>, tensor<{n}x!fhe.eint<3>>, tensor<{n}x!fhe.eint<3>>) {{
  %0 = "fhe.lut"(%x) {{table = dense<[{requant}]> : tensor<128xi64>}} : (tensor<{n}x!fhe.eint<7>>) -> tensor<{n}x!fhe.eint<4>>
  %1 = "fhe.lut"(%y) {{table = dense<[{sigmoid}]> : tensor<256xi64>}} : (tensor<{n}x!fhe.esint<8>>) -> tensor<{n}x!fhe.eint<3>>
  %2 = "fhe.lut"(%z) {{table = dense<[{bump}]> : tensor<64xi64>}} : (tensor<{n}x!fhe.eint<6>>) -> tensor<{n}x!fhe.eint<3>>
  %3 = "fhe.lut"(%x) {{table = dense<[{low}]> : tensor<128xi64>}} : (tensor<{n}x!fhe.eint<7>>) -> tensor<{n}x!fhe.eint<4>>
  %4 = "fhe.lut"(%x) {{table = dense<[{high}]> : tensor<128xi64>}} : (tensor<{n}x!fhe.eint<7>>) -> tensor<{n}x!fhe.eint<3>>
  %5 = "fhe.lut"(%x) {{table = dense<[{low3}]> : tensor<128xi64>}} : (tensor<{n}x!fhe.eint<7>>) -> tensor<{n}x!fhe.eint<3>>
  %6 = "fhe.lut"(%x) {{table = dense<[{high3}]> : tensor<128xi64>}} : (tensor<{n}x!fhe.eint<7>>) -> tensor<{n}x!fhe.eint<3>>
  %7 = "fhe.lut"(%s) {{table = dense<[{mid3}]> : tensor<64xi64>}} : (tensor<{n}x!fhe.esint<6>>) -> tensor<{n}x!fhe.eint<3>>
  "func.return"(%0, %1, %2, %3, %4, %5, %6, %7) : (tensor<{n}x!fhe.eint<4>>, tensor<{n}x!fhe.eint<3>>, tensor<{n}x!fhe.eint<3>>, tensor<{n}x!fhe.eint<4>>, tensor<{n}x!fhe.eint<3>>, tensor<{n}x!fhe.eint<3>>, tensor<{n}x!fhe.eint<3>>, tensor<{n}x!fhe.eint<3>>) -> ()
}}"#
        )
    };
    let src = program(256);
    let m = parse(&src);
    let v = verify(&m).unwrap();
    let c = compile_with(&src, None).unwrap();
    let widest = c.program.tables.iter().map(|t| t.precision).max().unwrap();
    assert!(widest <= 5, "a wide table remained: {widest} bits");
    // every value of each operand, forwards and backwards
    let mut cases = Vec::new();
    for rev in [false, true] {
        let mut x: Vec<i64> = (0..256).map(|i| i % 128).collect();
        let mut y: Vec<i64> = (-128..128).collect();
        let mut z: Vec<i64> = (0..256).map(|i| i % 64).collect();
        let mut w: Vec<i64> = (0..256).map(|i| i % 64 - 32).collect();
        if rev {
            x.reverse();
            y.reverse();
            z.reverse();
            w.reverse();
        }
        let inputs: Vec<Tensor> = [x, y, z, w]
            .into_iter()
            .map(|v| ArrayD::from_shape_vec(IxDyn(&[256]), v).unwrap())
            .collect();
        let want = fhec_ir::interp::eval(&v, &inputs).unwrap();
        cases.push((inputs, want));
    }
    check_simulated(&c, &cases);
    // encrypted: the windows' edges and the range's ends
    let small = program(16);
    let c16 = compile_with(&small, None).unwrap();
    let m16 = parse(&small);
    let v16 = verify(&m16).unwrap();
    let x: Vec<i64> = vec![0, 5, 6, 9, 10, 39, 40, 41, 61, 62, 115, 116, 121, 122, 126, 127];
    let y: Vec<i64> = vec![-128, -127, -4, -3, -1, 0, 4, 5, 9, 10, 11, 25, 30, 31, 126, 127];
    let z: Vec<i64> = vec![0, 1, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 29, 40, 62, 63];
    let w: Vec<i64> = vec![-32, -31, -5, -4, -3, -2, -1, 0, 3, 4, 5, 6, 7, 20, 30, 31];
    let inputs: Vec<Tensor> = [x, y, z, w]
        .into_iter()
        .map(|v| ArrayD::from_shape_vec(IxDyn(&[16]), v).unwrap())
        .collect();
    let want = fhec_ir::interp::eval(&v16, &inputs).unwrap();
    check_encrypted("saturating lookups on a window", &c16, &[(inputs, want)]);
}

/// Many-LUT forced on over the corpus: every program whose plain lookups share an input gets lanes
/// (one blind rotation for up to `2^κ` tables); each meets the failure-probability target by the
/// re-derived analysis, simulates equal to the interpreter, and the first few run encrypted equal
/// to it (each with its own searched parameters, partitions allowed). The default compile keeps
/// lanes where the cost model rates them at least 10 % faster, keys at most 2.5× (`lanes_pay`).
#[test]
fn many_lut_lanes_run_exactly() {
    let (mut grouped, mut ran, mut chosen) = (0, 0, 0);
    for (i, (name, src)) in corpus().into_iter().enumerate() {
        let m = parse(&src);
        if !runnable(m.entry().unwrap()) {
            continue;
        }
        let v = verify(&m).unwrap();
        let with = |many_lut| CompileOptions {
            partitions: true,
            many_lut,
            ..Default::default()
        };
        let c = compile(&v, &with(Some(true)), Some(&src)).unwrap_or_else(|d| panic!("{name}: {}", d.message));
        let lanes = c.program.lane_count();
        if lanes == 0 {
            continue;
        }
        grouped += 1;
        c.program.validate().unwrap();
        let a = fhec_backend_tfhe::rederive::analyze_program(&c.program);
        let (PError::PerLookup(t) | PError::Global(t)) = PError::default();
        assert!(a.log2_worst <= t.log2() + 1e-9, "{name}: 2^{}", a.log2_worst);
        let off = compile(&v, &with(Some(false)), Some(&src)).unwrap();
        assert_eq!(
            c.program.pbs_count() + lanes,
            off.program.pbs_count(),
            "{name}: each lane replaces one lookup"
        );
        let cases = samples(&m, i as u64, 3);
        let batch: Vec<Vec<ClearTensor>> = cases.iter().map(|(x, _)| x.iter().map(to_clear).collect()).collect();
        let sim = c.program.simulate(&batch).unwrap();
        for (s, (inputs, want)) in cases.iter().enumerate() {
            let got: Vec<Tensor> = sim[s].iter().map(from_clear).collect();
            assert_eq!(&got, want, "{name}: simulation with lanes differs on {inputs:?}");
        }
        if ran < 4 {
            ran += 1;
            check_encrypted(&format!("{name} (lanes)"), &c, &cases);
        }
        let auto = compile(&v, &with(None), Some(&src)).unwrap();
        let keep = fhec_backend_tfhe::lanes_pay(&c.program, &off.program);
        let kept = if keep { &c } else { &off };
        assert_eq!(
            auto.program, kept.program,
            "{name}: the default keeps lanes where they pay"
        );
        chosen += usize::from(keep);
    }
    eprintln!("{grouped} programs with lanes, {ran} run encrypted, {chosen} kept by the cost model");
    assert!(
        grouped >= 3,
        "the corpus has lookups sharing an input (multi_lut, lut-fusion)"
    );
}
