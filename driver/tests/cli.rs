//! End-to-end tests of the `fhec` binary: exit codes, outputs, rendered diagnostics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fhec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("fhec runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fhec-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

#[test]
fn eval_mlp_matmul_round_lut() {
    // x·W = [83, 37] → round(/32) = [3, 1] → relu clipped at 7
    let o = fhec(&["eval", "examples/mlp.fhe", "--input", "x=[[15, 3, 9, 1]]"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "[[[3,1]]]");
    // negative pre-activations go through the signed half of the table to 0
    let o = fhec(&["eval", "examples/mlp.fhe", "--input", "x=[[0, 0, 0, 15]]"]);
    assert_eq!(stdout(&o).trim(), "[[[0,0]]]", "{}", stderr(&o));
}

#[test]
fn eval_tree_sub_lut_matmul_lut() {
    for (x, leaf) in [
        ("[3,2]", 1),
        ("[3,7]", 5),
        ("[9,11]", 9),
        ("[9,12]", 13),
        ("[0,15]", 5),
        ("[15,0]", 9),
    ] {
        let o = fhec(&["eval", "examples/tree.fhe", "-i", &format!("x={x}")]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o).trim(), format!("[{leaf}]"), "x = {x}");
    }
}

#[test]
fn eval_reads_npy_and_json_files() {
    let npy = tmp("x.npy");
    fhec::io::write_npy(&npy, &ndarray::array![[15i64, 3, 9, 1]].into_dyn()).expect("write npy");
    let o = fhec(&["eval", "examples/mlp.fhe", "--input", &format!("x={}", npy.display())]);
    assert_eq!(stdout(&o).trim(), "[[[3,1]]]", "{}", stderr(&o));
    let json = tmp("x.json");
    std::fs::write(&json, "[[15, 3, 9, 1]]").expect("write json");
    let o = fhec(&["eval", "examples/mlp.fhe", "--input", &format!("x={}", json.display())]);
    assert_eq!(stdout(&o).trim(), "[[[3,1]]]", "{}", stderr(&o));
}

#[test]
fn eval_rejects_bad_inputs_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["eval", "examples/mlp.fhe"], "missing input %x"),
        (&["eval", "examples/mlp.fhe", "-i", "y=[1]"], "has no argument %y"),
        (
            &["eval", "examples/mlp.fhe", "-i", "x=[[1, 2]]"],
            "input %x has shape [1, 2], expected [1, 4]",
        ),
        (
            &["eval", "examples/mlp.fhe", "-i", "x=[[16, 0, 0, 0]]"],
            "outside its declared range 0 ..= 15",
        ),
        (
            &["eval", "examples/mlp.fhe", "-i", "x=[[1.5, 0, 0, 0]]"],
            "not a 64-bit integer",
        ),
        (
            &["eval", "examples/mlp.fhe", "-i", "x=missing.npy"],
            "cannot read missing.npy",
        ),
        (&["eval", "examples/mlp.fhe", "-i", "x"], "must be NAME=PATH"),
        (&["eval", "no/such/file.fhe"], "cannot read no/such/file.fhe"),
    ];
    for (args, msg) in cases {
        let o = fhec(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(msg),
            "{args:?}: expected {msg:?} in\n{}",
            stderr(&o)
        );
        assert!(stdout(&o).is_empty(), "{args:?}: printed {}", stdout(&o));
    }
}

#[test]
fn eval_reports_overflow_with_location() {
    let src = tmp("overflow.fhe");
    std::fs::write(
        &src,
        "func.func @main(%x: !fhe.eint<2>) -> !fhe.eint<2> {\n  %0 = \"fhe.add\"(%x, %x) : (!fhe.eint<2>, !fhe.eint<2>) -> !fhe.eint<2>\n  \"func.return\"(%0) : (!fhe.eint<2>) -> ()\n}\n",
    )
    .expect("write");
    let o = fhec(&["eval", src.to_str().expect("utf8 path"), "-i", "x=3"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("fhe.add produced 6 at index [], which does not fit !fhe.eint<2> (0 ..= 3)"),
        "{e}"
    );
    assert!(e.contains("overflow.fhe:2:8"), "{e}");
    assert!(e.contains("^^^^^^^^^"), "{e}");
}

#[test]
fn fmt_reproduces_every_case_file() {
    for f in [
        "examples/mlp.fhe",
        "tests/cases/ops/arith.fhe",
        "tests/cases/ops/linalg.fhe",
        "tests/cases/ops/lut.fhe",
        "tests/cases/ops/shape.fhe",
    ] {
        let o = fhec(&["fmt", "--split-input-file", f]);
        assert!(o.status.success(), "{f}: {}", stderr(&o));
        let src = std::fs::read_to_string(root().join(f)).expect("read");
        let strip = |s: &str| -> String {
            s.lines()
                .filter(|l| {
                    let t = l.trim();
                    !t.is_empty() && (t == "// -----" || !t.starts_with("//"))
                })
                .map(|l| format!("{l}\n"))
                .collect()
        };
        assert_eq!(strip(&stdout(&o)), strip(&src), "{f}");
    }
    let o = fhec(&["fmt", "--check", "examples/mlp.fhe"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fhec(&["fmt", "--check", "examples/tree.fhe"]);
    assert_eq!(o.status.code(), Some(1), "comments make the file non-canonical");
}

#[test]
fn verify_accepts_valid_and_rejects_every_invalid_case_with_a_location() {
    let o = fhec(&["verify", "examples/tree.fhe"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "ok");
    for (f, n) in [
        ("tests/cases/verify/errors.fhe", 11),
        ("tests/cases/parse/errors.fhe", 11),
    ] {
        let o = fhec(&["verify", "--split-input-file", f]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        let located = e.matches(&format!("--> {f}:")).count();
        assert!(located >= n, "{f}: {located} located errors, expected ≥ {n}:\n{e}");
    }
}

#[test]
fn unknown_op_and_syntax_errors_exit_1() {
    let src = tmp("bad.fhe");
    std::fs::write(&src, "func.func @main(%x: !fhe.eint<2>) -> !fhe.eint<2> {\n  %0 = \"fhe.nope\"(%x) : (!fhe.eint<2>) -> !fhe.eint<2>\n").expect("write");
    let o = fhec(&["verify", src.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown op `fhe.nope`"), "{}", stderr(&o));
    std::fs::write(&src, [0xff, 0xfe, 0x00]).expect("write");
    let o = fhec(&["fmt", src.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not UTF-8"), "{}", stderr(&o));
    let o = fhec(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
}

/// compile → keygen → encrypt → run → decrypt reproduces `fhec eval` on both examples; `info`
/// shows the security and the failure probability; `simulate` agrees.
#[test]
fn encrypted_pipeline_reproduces_eval() {
    for (example, inputs) in [
        (
            "examples/mlp.fhe",
            vec!["[[15, 3, 9, 1]]", "[[0, 0, 0, 15]]", "[[7, 12, 0, 4]]"],
        ),
        ("examples/tree.fhe", vec!["[3,2]", "[9,12]", "[15,0]"]),
    ] {
        let stem = Path::new(example).file_stem().unwrap().to_string_lossy().to_string();
        let prog = tmp(&format!("{stem}.fhecp"));
        let ck = tmp(&format!("{stem}.client.keys"));
        let ek = tmp(&format!("{stem}.eval.keys"));
        let (p, c, e) = (prog.to_str().unwrap(), ck.to_str().unwrap(), ek.to_str().unwrap());
        let o = fhec(&["compile", example, "-o", p]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = fhec(&["info", p]);
        assert!(o.status.success(), "{}", stderr(&o));
        let info = stdout(&o);
        assert!(info.contains("security: ≥ 128 bits"), "{info}");
        // the default target: 2^-128 per lookup
        let worst: f64 = info
            .split("failure probability: 2^")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no failure probability in {info}"));
        assert!((-140.0..=-128.0).contains(&worst), "{info}");
        let o = fhec(&["keygen", p, "--client-keys", c, "--eval-keys", e]);
        assert!(o.status.success(), "{}", stderr(&o));
        for (i, x) in inputs.iter().enumerate() {
            let want = fhec(&["eval", example, "-i", &format!("x={x}")]);
            assert!(want.status.success(), "{}", stderr(&want));
            let cin = tmp(&format!("{stem}.{i}.in.ct"));
            let cout = tmp(&format!("{stem}.{i}.out.ct"));
            let (ci, co) = (cin.to_str().unwrap(), cout.to_str().unwrap());
            let o = fhec(&["encrypt", p, "--client-keys", c, "-i", &format!("x={x}"), "-o", ci]);
            assert!(o.status.success(), "{}", stderr(&o));
            let o = fhec(&["run", p, ci, "--eval-keys", e, "-o", co]);
            assert!(o.status.success(), "{}", stderr(&o));
            let o = fhec(&["decrypt", p, co, "--client-keys", c]);
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(
                stdout(&o),
                stdout(&want),
                "{example} x={x}: decrypted result differs from eval"
            );
            let o = fhec(&["simulate", p, "-i", &format!("x={x}")]);
            assert_eq!(
                stdout(&o),
                stdout(&want),
                "{example} x={x}: simulation differs from eval"
            );
        }
    }
}

/// Damaged or mismatched files are clear errors (exit 1), never a panic or a wrong answer.
#[test]
fn encrypted_pipeline_rejects_mismatched_and_damaged_files() {
    let prog = tmp("m.fhecp");
    let other = tmp("t.fhecp");
    let (p, q) = (prog.to_str().unwrap(), other.to_str().unwrap());
    // one parameter set: `--params-of` below reuses it
    assert!(fhec(&["compile", "examples/mlp.fhe", "-o", p, "--no-partitions"])
        .status
        .success());
    assert!(fhec(&["compile", "examples/tree.fhe", "-o", q]).status.success());
    let (ck, ek) = (tmp("m.client.keys"), tmp("m.eval.keys"));
    let (c, e) = (ck.to_str().unwrap(), ek.to_str().unwrap());
    assert!(fhec(&["keygen", p, "--client-keys", c, "--eval-keys", e])
        .status
        .success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ck).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "secret keys must not be readable by others");
    }
    // keygen does not replace existing key files: ciphertexts under them would no longer decrypt
    let before = std::fs::read(&ck).unwrap();
    let o = fhec(&["keygen", p, "--client-keys", c, "--eval-keys", e]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("exists") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&ck).unwrap(), before, "the secret keys are untouched");
    let (ck2, ek2) = (tmp("m2.client.keys"), tmp("m2.eval.keys"));
    let (c2, e2) = (ck2.to_str().unwrap(), ek2.to_str().unwrap());
    assert!(fhec(&["keygen", p, "--client-keys", c2, "--eval-keys", e2])
        .status
        .success());
    assert!(fhec(&["keygen", p, "--client-keys", c2, "--eval-keys", e2, "--force"])
        .status
        .success());
    assert_ne!(std::fs::read(&ck2).unwrap(), before);
    let cin = tmp("m.in.ct");
    let ci = cin.to_str().unwrap();
    assert!(
        fhec(&["encrypt", p, "--client-keys", c, "-i", "x=[[1,2,3,4]]", "-o", ci])
            .status
            .success()
    );

    let fails = |args: &[&str], needle: &str| {
        let o = fhec(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(needle),
            "{args:?}: expected `{needle}` in: {}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    };
    let out = tmp("x.out.ct");
    let xo = out.to_str().unwrap();
    // ciphertexts made for another program
    fails(&["run", q, ci, "--eval-keys", e, "-o", xo], "other parameters");
    // same parameters and ports (compiled for the same keys), another table
    let src = std::fs::read_to_string(root().join("examples/mlp.fhe")).unwrap();
    let changed = src.replace("dense<[0, 1, 2, 3, 4, 5, 6, 7,", "dense<[0, 1, 2, 2, 4, 5, 6, 7,");
    assert_ne!(src, changed);
    let variant = tmp("variant.fhe");
    std::fs::write(&variant, changed).unwrap();
    let same = tmp("variant.fhecp");
    let sp = same.to_str().unwrap();
    let o = fhec(&["compile", variant.to_str().unwrap(), "--params-of", p, "-o", sp]);
    assert!(o.status.success(), "{}", stderr(&o));
    fails(&["run", sp, ci, "--eval-keys", e, "-o", xo], "made for another program");
    // fixed parameters and a partition search exclude each other (an error, not one of them ignored)
    let o = fhec(&[
        "compile",
        variant.to_str().unwrap(),
        "--params-of",
        p,
        "--partitions",
        "-o",
        sp,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    // the parameters of a program of several partitions: the lookups are assigned to them, and the
    // program runs with that program's keys, exactly. Compiled with whole bootstrap keys, which
    // leaves room; with the default rounding the variant finds none, and the error says why.
    let rounded = tmp("rounded.fhecp");
    assert!(fhec(&["compile", "examples/mlp.fhe", "-o", rounded.to_str().unwrap()])
        .status
        .success());
    fails(
        &[
            "compile",
            variant.to_str().unwrap(),
            "--params-of",
            rounded.to_str().unwrap(),
            "-o",
            sp,
        ],
        "whole bootstrap keys",
    );
    let two = tmp("two.fhecp");
    let tp = two.to_str().unwrap();
    assert!(fhec(&["compile", "examples/mlp.fhe", "-o", tp, "--whole-keys"])
        .status
        .success());
    let o = fhec(&["info", tp]);
    assert!(stdout(&o).contains("partition 1"), "{}", stdout(&o));
    let reuse = tmp("reuse.fhecp");
    let rp = reuse.to_str().unwrap();
    let o = fhec(&["compile", variant.to_str().unwrap(), "--params-of", tp, "-o", rp]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (tck, tek) = (tmp("two.ck"), tmp("two.ek"));
    let (tc, te) = (tck.to_str().unwrap(), tek.to_str().unwrap());
    assert!(fhec(&["keygen", tp, "--client-keys", tc, "--eval-keys", te])
        .status
        .success());
    let (rin, rout) = (tmp("reuse.in"), tmp("reuse.out"));
    let (ri, ro) = (rin.to_str().unwrap(), rout.to_str().unwrap());
    assert!(
        fhec(&["encrypt", rp, "--client-keys", tc, "-i", "x=[[1,2,3,4]]", "-o", ri])
            .status
            .success()
    );
    let o = fhec(&["run", rp, ri, "--eval-keys", te, "-o", ro]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = stdout(&fhec(&["decrypt", rp, ro, "--client-keys", tc]));
    let want = stdout(&fhec(&["eval", variant.to_str().unwrap(), "-i", "x=[[1,2,3,4]]"]));
    assert_eq!(got, want);
    // partitions too small for a program: an error, not a program that would fail
    fails(
        &["compile", "examples/round.fhe", "--params-of", tp, "-o", sp],
        "cannot run this program at the failure-probability target",
    );
    // resource limits: a program above them is refused before the keys are expanded
    fails(
        &["run", p, ci, "--eval-keys", e, "-o", xo, "--limit", "max_lookups=1"],
        "max_lookups",
    );
    fails(
        &["run", p, ci, "--eval-keys", e, "-o", xo, "--limit", "max_lookups"],
        "NAME=VALUE",
    );
    fails(
        &["run", p, ci, "--eval-keys", e, "-o", xo, "--limit", "max_bogus=1"],
        "unknown limit",
    );
    // a file of the wrong kind
    fails(
        &["run", p, e, "--eval-keys", e, "-o", xo],
        "holds evaluation keys, expected ciphertexts",
    );
    fails(&["info", c], "holds secret (client) keys, expected a compiled program");
    // inputs out of range or misnamed
    fails(
        &["encrypt", p, "--client-keys", c, "-i", "x=[[16,2,3,4]]", "-o", xo],
        "outside the range",
    );
    fails(
        &["encrypt", p, "--client-keys", c, "-i", "y=[[1,2,3,4]]", "-o", xo],
        "no input %y",
    );
    fails(
        &["encrypt", p, "--client-keys", c, "-i", "x=[[1,2,3]]", "-o", xo],
        "shape",
    );
    // truncated program, keys and ciphertexts
    for (file, cmd) in [(&prog, "info"), (&ek, "run"), (&cin, "run")] {
        let bytes = std::fs::read(file).unwrap();
        for cut in [0, 3, 7, bytes.len() / 2, bytes.len() - 1] {
            let t = tmp("truncated");
            std::fs::write(&t, &bytes[..cut]).unwrap();
            let ts = t.to_str().unwrap();
            let args: Vec<&str> = match cmd {
                "info" => vec!["info", ts],
                _ if file == &ek => vec!["run", p, ci, "--eval-keys", ts, "-o", xo],
                _ => vec!["run", p, ts, "--eval-keys", e, "-o", xo],
            };
            let o = fhec(&args);
            assert_eq!(o.status.code(), Some(1), "{args:?} cut at {cut}: {}", stderr(&o));
            assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        }
    }
    // a wrong format version
    let mut bytes = std::fs::read(&prog).unwrap();
    bytes[5] = 99;
    let t = tmp("version");
    std::fs::write(&t, &bytes).unwrap();
    fails(&["info", t.to_str().unwrap()], "format version 99");
    // no partial output file was left behind by the failures
    assert!(!out.exists(), "a failed run must not write its output");
}

/// `fhec opt`: runs pipelines, reports statistics and timing, rejects bad pipelines with the list of passes.
#[test]
fn opt_runs_pipelines_and_explains_bad_ones() {
    let o = fhec(&[
        "opt",
        "examples/mlp.fhe",
        "--pipeline",
        "canonicalize,bitwidth",
        "--pass-statistics",
        "--pass-timing",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // the accumulator narrows from 9 to 8 bits ([-105, 120])
    assert!(stdout(&o).contains("-> tensor<1x2x!fhe.esint<8>>"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("widths changed") && stderr(&o).contains("pass timing"),
        "{}",
        stderr(&o)
    );
    let o = fhec(&["opt", "examples/mlp.fhe", "--print-ir-after", "bitwidth"]);
    assert!(stderr(&o).contains("IR after bitwidth"), "{}", stderr(&o));
    for (pipeline, needle) in [
        (
            "canonicalise",
            "unknown pass `canonicalise` (known passes: canonicalize, bitwidth, round-insertion, lut-fusion)",
        ),
        ("canonicalize,", "ends with `,`"),
        ("bitwidth{x=1}", "pass `bitwidth` takes no options"),
        ("canonicalize bitwidth", "expected `,` between passes"),
    ] {
        let o = fhec(&["opt", "examples/mlp.fhe", "--pipeline", pipeline]);
        assert_eq!(o.status.code(), Some(1), "{pipeline}");
        assert!(stderr(&o).contains(needle), "{pipeline}: {}", stderr(&o));
    }
    let o = fhec(&["opt", "--list-passes", "-"]);
    assert!(stdout(&o).contains("default pipeline"), "{}", stdout(&o));
}

/// A float64 `.npy` matrix, as numpy writes it.
fn write_f64_npy(path: &Path, rows: &[Vec<f64>]) {
    let header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}",
        rows.len(),
        rows[0].len()
    );
    let mut h = header.into_bytes();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&h);
    for r in rows {
        for v in r {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn import_xgboost_writes_a_module_that_compiles_and_simulates_the_quantised_scores() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("frontends/trees/tests/data/xgb_expected.json")).unwrap(),
    )
    .unwrap();
    let rows: Vec<Vec<f64>> = expected["xgb_binary"]["X"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
        .collect();
    let calib = tmp("calib.npy");
    write_f64_npy(&calib, &rows);
    let module = tmp("xgb.fhe");
    let o = fhec(&[
        "import",
        "xgboost",
        "frontends/trees/tests/data/xgb_binary.json",
        "--calibration",
        calib.to_str().unwrap(),
        "--n-bits",
        "3",
        "-o",
        module.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("lookups of"), "{}", stderr(&o));
    let q = fhec_trees::Quantized::from_json(&std::fs::read_to_string(tmp("xgb.quantized.json")).unwrap()).unwrap();
    let prog = tmp("xgb.fhecp");
    let o = fhec(&["compile", module.to_str().unwrap(), "-o", prog.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // simulate the compiled program on the thermometer bits of three rows: the quantised scores
    for r in rows.iter().take(3) {
        let qx = q.inputs.quantize_row(r);
        let bits = q.thermometer(&qx);
        let arg = format!("x=[{:?}]", bits);
        let o = fhec(&["simulate", prog.to_str().unwrap(), "-i", &arg]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o).trim(), format!("[[{:?}]]", q.scores(&qx)).replace(' ', ""));
    }
    let o = fhec(&[
        "import",
        "catboost",
        "x.cbm",
        "--calibration",
        calib.to_str().unwrap(),
        "-o",
        "/dev/null",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("unknown model format"));
    // an ONNX export of a scikit-learn forest imports and compiles
    let onnx_module = tmp("rf.fhe");
    let o = fhec(&[
        "import",
        "onnx",
        "frontends/trees/tests/data/onnx_rf_binary.onnx",
        "--calibration",
        calib.to_str().unwrap(),
        "--n-bits",
        "3",
        "-o",
        onnx_module.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fhec(&[
        "compile",
        onnx_module.to_str().unwrap(),
        "-o",
        tmp("rf.fhecp").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let q = fhec_trees::Quantized::from_json(&std::fs::read_to_string(tmp("rf.quantized.json")).unwrap()).unwrap();
    for r in rows.iter().take(3) {
        let qx = q.inputs.quantize_row(r);
        let arg = format!("x=[{:?}]", q.thermometer(&qx));
        let o = fhec(&["simulate", tmp("rf.fhecp").to_str().unwrap(), "-i", &arg]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o).trim(), format!("[[{:?}]]", q.scores(&qx)).replace(' ', ""));
    }
    let o = fhec(&[
        "import",
        "xgboost",
        "frontends/trees/tests/data/xgb_binary.json",
        "--calibration",
        "frontends/trees/tests/data/xgb_binary.json",
        "-o",
        "/dev/null",
    ]);
    assert!(!o.status.success() && stderr(&o).contains(".npy"), "{}", stderr(&o));
}

/// A lookup too wide for any secure parameters is reported at its source location, after the
/// default pass pipeline too (passes keep the locations of the ops they rebuild).
#[test]
fn compile_errors_keep_their_location_through_the_passes() {
    // alternating: no shortcut (a piecewise-linear function would run on bits)
    let table = (0..2048).map(|i| (i % 2).to_string()).collect::<Vec<_>>().join(", ");
    let src = format!(
        "func.func @main(%x: tensor<2x!fhe.eint<11>>) -> tensor<2x!fhe.eint<1>> {{\n  %0 = \"fhe.lut\"(%x) {{table = dense<[{table}]> : tensor<2048xui1>}} : (tensor<2x!fhe.eint<11>>) -> tensor<2x!fhe.eint<1>>\n  \"func.return\"(%0) : (tensor<2x!fhe.eint<1>>) -> ()\n}}\n"
    );
    let file = tmp("lut11.fhe");
    std::fs::write(&file, src).unwrap();
    let out = tmp("lut11.fhecp");
    for pipeline in ["none", "canonicalize,bitwidth,lut-fusion,canonicalize"] {
        let o = fhec(&[
            "compile",
            file.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--pipeline",
            pipeline,
        ]);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(e.contains("fhe.lut %0 (at 2:8) needs 11 bits"), "{pipeline}: {e}");
    }
    assert!(!out.exists(), "no program is written on failure");
}

/// `fhec compile --model-dir` writes a model's server and client files; the client side (keygen,
/// encrypt, decrypt) works from the client file, the server side (run) from the server file, and
/// each refuses the other's file.
#[test]
fn model_files_drive_the_encrypted_pipeline() {
    let dir = tmp("models");
    let d = dir.to_str().unwrap();
    let o = fhec(&["compile", "examples/mlp.fhe", "--model-dir", d, "--name", "layer"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("layer.server.fhec"), "{}", stderr(&o));
    let (server, client) = (dir.join("layer.server.fhec"), dir.join("layer.client.fhec"));
    let (s, c) = (server.to_str().unwrap(), client.to_str().unwrap());
    let o = fhec(&["info", c]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info = stdout(&o);
    assert!(info.starts_with("model layer (program, written by fhec "), "{info}");
    assert!(info.contains("no instruction, no table") && info.contains("as stated by the client file"));
    assert!(info.contains("security: ≥ 128 bits"), "{info}");
    let o = fhec(&["info", s]);
    assert!(
        stdout(&o).contains("server file") && stdout(&o).contains("tables: 6"),
        "{}",
        stdout(&o)
    );
    let (ck, ek) = (tmp("layer.keys"), tmp("layer.eval"));
    let (ck, ek) = (ck.to_str().unwrap(), ek.to_str().unwrap());
    let o = fhec(&["keygen", c, "--client-keys", ck, "--eval-keys", ek, "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (cin, cout) = (tmp("layer.in"), tmp("layer.out"));
    let (cin, cout) = (cin.to_str().unwrap(), cout.to_str().unwrap());
    let o = fhec(&["encrypt", c, "--client-keys", ck, "-i", "x=[[15, 3, 9, 1]]", "-o", cin]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fhec(&["run", s, cin, "--eval-keys", ek, "-o", cout]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fhec(&["decrypt", c, cout, "--client-keys", ck]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "[[[3,1]]]");
    // the server cannot run from a client file: it holds no program
    let o = fhec(&["run", c, cin, "--eval-keys", ek, "-o", cout]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds no program"), "{}", stderr(&o));
    // neither -o nor --model-dir: clap says what is missing
    let o = fhec(&["compile", "examples/mlp.fhe"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// A model's client file quantises float rows (`--features X.npy`) and decrypts to the model's
/// predictions (`--raw`: the integers); a program cannot take float features.
#[test]
fn model_client_files_take_float_features_and_give_predictions() {
    let fixtures = "tests/fixtures/deploy/v1";
    let (c, s) = (
        format!("{fixtures}/logreg.client.fhec"),
        format!("{fixtures}/logreg.server.fhec"),
    );
    // a float64 .npy of 2 rows × 3 features, written by hand
    let mut header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    for v in [0.3f64, -0.7, 1.9, 2.5, 0.0, -1.0] {
        npy.extend_from_slice(&v.to_le_bytes());
    }
    let x = tmp("features.npy");
    std::fs::write(&x, npy).unwrap();
    let (ck, ek, cin, cout) = (tmp("lr.keys"), tmp("lr.eval"), tmp("lr.in"), tmp("lr.out"));
    let p = |p: &PathBuf| p.to_str().unwrap().to_string();
    let (ck, ek, cin, cout, x) = (p(&ck), p(&ek), p(&cin), p(&cout), p(&x));
    let o = fhec(&["keygen", &c, "--client-keys", &ck, "--eval-keys", &ek, "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fhec(&["encrypt", &c, "--client-keys", &ck, "--features", &x, "-o", &cin]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 feature value(s) outside the calibrated range"),
        "{}",
        stderr(&o)
    );
    let o = fhec(&["run", &s, &cin, "--eval-keys", &ek, "-o", &cout]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fhec(&["decrypt", &c, &cout, "--client-keys", &ck]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{}", stdout(&o));
    for l in &lines {
        let probs: Vec<f64> = serde_json::from_value(l["values"].clone()).unwrap();
        assert!((probs[0] + probs[1] - 1.0).abs() < 1e-12, "{l}");
        let want = if probs[1] > probs[0] { "yes" } else { "no" };
        assert_eq!(l["prediction"], want, "{l}");
    }
    let o = fhec(&["decrypt", &c, &cout, "--client-keys", &ck, "--raw"]);
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));
    assert!(stdout(&o).starts_with("[[["), "{}", stdout(&o));
    // a server file (or a program) does not know how to quantise floats
    let o = fhec(&["encrypt", &s, "--client-keys", &ck, "--features", &x, "-o", &cin]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--features needs a model's client file"),
        "{}",
        stderr(&o)
    );
}

/// A program compiled with `--partitions` goes through the deployment files and the encrypted
/// pipeline like any other: `fhec info` lists its partitions, keys come from the client file, the
/// server file runs, and the decrypted result is `fhec eval`'s.
#[test]
fn partitioned_model_files_run_like_eval() {
    let dir = tmp("partitioned");
    let d = dir.to_str().unwrap();
    let o = fhec(&[
        "compile",
        "examples/round.fhe",
        "--partitions",
        "--model-dir",
        d,
        "--name",
        "round",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // the 5-bit lookups; the sensitive extractions; the rest of them (split by sensitivity)
    assert!(stderr(&o).contains("partition 0 (3 lookups)"), "{}", stderr(&o));
    assert!(stderr(&o).contains("partition 2 ("), "{}", stderr(&o));
    let (server, client) = (dir.join("round.server.fhec"), dir.join("round.client.fhec"));
    let (s, c) = (server.to_str().unwrap(), client.to_str().unwrap());
    let info = stdout(&fhec(&["info", c]));
    assert!(
        info.contains("partition 0 (3 lookups, encrypts the inputs;")
            && info.contains("partition 1 (")
            && info.contains("partition 2 ("),
        "{info}"
    );
    assert!(info.contains("security: ≥ 128 bits"), "{info}");
    let (ck, ek) = (tmp("round.keys"), tmp("round.eval"));
    let (ck, ek) = (ck.to_str().unwrap(), ek.to_str().unwrap());
    let o = fhec(&["keygen", c, "--client-keys", ck, "--eval-keys", ek, "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (cin, cout) = (tmp("round.in"), tmp("round.out"));
    let (cin, cout) = (cin.to_str().unwrap(), cout.to_str().unwrap());
    let x = "x=[[63, 40, 7], [5, 5, 5]]";
    let o = fhec(&["encrypt", c, "--client-keys", ck, "-i", x, "--batch", "-o", cin]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fhec(&["run", s, cin, "--eval-keys", ek, "-o", cout]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fhec(&["decrypt", c, cout, "--client-keys", ck, "--raw"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = stdout(&o);
    let mut want = String::new();
    for x in ["x=[63, 40, 7]", "x=[5, 5, 5]"] {
        let e = fhec(&["eval", "examples/round.fhe", "-i", x]);
        assert!(e.status.success(), "{}", stderr(&e));
        want.push_str(&stdout(&e));
    }
    assert_eq!(
        got.split_whitespace().collect::<String>(),
        want.split_whitespace().collect::<String>()
    );
}

/// `fhec import onnx` of a neural network (the iris fixture of frontends/onnx): a module and its client
/// spec; the module compiles, and simulating it on quantised rows gives the module's clear result.
#[test]
fn import_onnx_network_writes_a_module_and_a_client_spec() {
    let rows: Vec<Vec<f64>> = (0..60)
        .map(|i| {
            let t = i as f64 / 60.0;
            vec![4.3 + 3.6 * t, 2.0 + 2.4 * (1.0 - t), 1.0 + 5.9 * t * t, 0.1 + 2.4 * t]
        })
        .collect();
    let calib = tmp("iris_calib.npy");
    write_f64_npy(&calib, &rows);
    let module = tmp("iris_net.fhe");
    let o = fhec(&[
        "import",
        "onnx",
        "frontends/onnx/tests/fixtures/iris_mlp.onnx",
        "--calibration",
        calib.to_str().unwrap(),
        "--n-bits",
        "4",
        "--rounding-bits",
        "4",
        "-o",
        module.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("imported a network") && stderr(&o).contains("3 linear layers"),
        "{}",
        stderr(&o)
    );
    let spec = fhec::ClientSpec::from_json(&std::fs::read_to_string(tmp("iris_net.spec.json")).unwrap()).unwrap();
    let fhec::quant::InputSpec::Features { quantizer, .. } = &spec.inputs[0] else {
        panic!("features")
    };
    let prog = tmp("iris_net.fhecp");
    let o = fhec(&[
        "compile",
        module.to_str().unwrap(),
        "-o",
        prog.to_str().unwrap(),
        "--partitions",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for r in rows.iter().step_by(20) {
        let arg = format!("x=[{:?}]", quantizer.quantize_row(r));
        let sim = fhec(&["simulate", prog.to_str().unwrap(), "-i", &arg]);
        let eval = fhec(&["eval", module.to_str().unwrap(), "-i", &arg]);
        assert!(
            sim.status.success() && eval.status.success(),
            "{}{}",
            stderr(&sim),
            stderr(&eval)
        );
        assert_eq!(stdout(&sim), stdout(&eval));
    }
    // `fhec import FORMAT MODEL --calibration … ARGS… -o OUT`
    let import = |format: &str, model: &str, args: &[&str], out: &str| {
        let mut all = vec!["import", format, model, "--calibration", calib.to_str().unwrap()];
        all.extend_from_slice(args);
        all.extend(["-o", out]);
        fhec(&all)
    };
    let iris = "frontends/onnx/tests/fixtures/iris_mlp.onnx";
    // the rounding chosen automatically, and a bad value refused by the parser
    let auto = tmp("iris_auto.fhe");
    let o = import("onnx", iris, &["--rounding-bits", "auto"], auto.to_str().unwrap());
    assert!(
        o.status.success() && stderr(&o).contains("rounding: ") && stderr(&o).contains("tried 2 bits"),
        "{}",
        stderr(&o)
    );
    let o = import("onnx", iris, &["--rounding-bits", "many"], auto.to_str().unwrap());
    assert!(
        !o.status.success() && stderr(&o).contains("neither a number of bits nor `auto`"),
        "{}",
        stderr(&o)
    );
    // a network option on trees is refused
    let xgb = "frontends/trees/tests/data/xgb_binary.json";
    for flags in [&["--rounding-bits", "4"][..], &["--windows"], &["--output-parts", "2"]] {
        let o = import("xgboost", xgb, flags, "/dev/null");
        assert!(
            !o.status.success() && stderr(&o).contains("--windows and --output-parts are for networks"),
            "{}",
            stderr(&o)
        );
    }
    // --output-parts: the output as two partial sums (concatenated) that add up to the whole one,
    // and the spec says so; out of range is refused
    let parts = tmp("iris_parts.fhe");
    let o = import(
        "onnx",
        iris,
        &["--n-bits", "4", "--rounding-bits", "4", "--output-parts", "2"],
        parts.to_str().unwrap(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let spec = fhec::ClientSpec::from_json(&std::fs::read_to_string(tmp("iris_parts.spec.json")).unwrap()).unwrap();
    assert_eq!(spec.outputs[0].as_ref().unwrap().parts, 2);
    assert!(std::fs::read_to_string(&parts).unwrap().contains("fhe.concat"));
    for r in rows.iter().step_by(7) {
        let arg = format!("x=[{:?}]", quantizer.quantize_row(r));
        let json = |o: &std::process::Output| -> Vec<i64> {
            assert!(o.status.success(), "{}", stderr(o));
            // one output, one row
            serde_json::from_str::<Vec<Vec<Vec<i64>>>>(stdout(o).trim())
                .unwrap()
                .concat()
                .concat()
        };
        let whole = json(&fhec(&["eval", module.to_str().unwrap(), "-i", &arg]));
        let split = json(&fhec(&["eval", parts.to_str().unwrap(), "-i", &arg]));
        assert_eq!(split.len(), 2 * whole.len());
        let c = whole.len();
        let added: Vec<i64> = (0..c).map(|k| split[k] + split[c + k]).collect();
        assert_eq!(added, whole, "{r:?}");
    }
    let o = import("onnx", iris, &["--output-parts", "65"], parts.to_str().unwrap());
    assert!(
        !o.status.success() && stderr(&o).contains("output_parts must be in 1..=64"),
        "{}",
        stderr(&o)
    );
    let o = import("onnx", iris, &["--output-parts", "many"], parts.to_str().unwrap());
    assert!(!o.status.success() && stderr(&o).contains("neither a number of parts nor `auto`"));
    // --output-parts auto: each count compiled, the choice and its estimate reported; iris (a
    // 3-input last layer) gains nothing from parts and keeps its whole output, the same module as
    // without the flag; with the rounding chosen too, each count gets its own choice
    let auto = tmp("iris_auto_parts.fhe");
    let o = import(
        "onnx",
        iris,
        &["--n-bits", "4", "--rounding-bits", "4", "--output-parts", "auto"],
        auto.to_str().unwrap(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("output parts: 1 (estimated") && err.contains("tried 1: ") && err.contains("8: "),
        "{err}"
    );
    let whole = tmp("iris_whole_parts.fhe");
    let o = import(
        "onnx",
        iris,
        &["--n-bits", "4", "--rounding-bits", "4"],
        whole.to_str().unwrap(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&auto).unwrap(),
        std::fs::read_to_string(&whole).unwrap()
    );
    let o = import(
        "onnx",
        iris,
        &["--n-bits", "4", "--rounding-bits", "auto", "--output-parts", "auto"],
        auto.to_str().unwrap(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("rounding (2 output parts)"), "{}", stderr(&o));
    // --windows: the rounding is the resolution inside the calibrated window (another module than
    // without it: its accumulators keep more bits)
    let plain = tmp("iris_plain3.fhe");
    let windowed = tmp("iris_windows3.fhe");
    for (path, flags) in [
        (&plain, &["--rounding-bits", "3"][..]),
        (&windowed, &["--rounding-bits", "3", "--windows"]),
    ] {
        let o = import("onnx", iris, flags, path.to_str().unwrap());
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (a, b) = (
        std::fs::read_to_string(&plain).unwrap(),
        std::fs::read_to_string(&windowed).unwrap(),
    );
    assert_ne!(a, b, "--windows changes the quantised module");
}

/// A reader that closes the pipe early (`fhec fmt big.fhe | head -1`) ends fhec quietly (SIGPIPE),
/// not with a panic from `println!`.
#[cfg(unix)]
#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    // a program whose canonical text is far larger than a pipe's buffer
    let n = 40_000;
    let values: Vec<String> = (0..n).map(|i| (i % 7).to_string()).collect();
    let src = format!(
        "func.func @main(%x: tensor<{n}x!fhe.eint<3>>) -> tensor<{n}x!fhe.eint<4>> {{\n  %c = \"fhe.constant\"() {{value = dense<[{}]> : tensor<{n}xui3>}} : () -> tensor<{n}xui3>\n  %0 = \"fhe.add\"(%x, %c) : (tensor<{n}x!fhe.eint<3>>, tensor<{n}xui3>) -> tensor<{n}x!fhe.eint<4>>\n  \"func.return\"(%0) : (tensor<{n}x!fhe.eint<4>>) -> ()\n}}\n",
        values.join(", ")
    );
    let path = tmp("big_for_pipe.fhe");
    std::fs::write(&path, src).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fhec"))
        .args(["fmt", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then the pipe closes
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    // ended by SIGPIPE (13 on Linux and the BSDs), or done before the pipe closed
    assert!(status.success() || status.signal() == Some(13), "{status:?}: {err}");
}

/// `--many-lut on|off|auto`: a multi_lut's tables in one blind rotation (lanes, listed by `fhec info`
/// and printed by `--emit-tfhe`) or one rotation each (exactness: `tests/fhe.rs`); a bad value is a
/// usage error.
#[test]
fn many_lut_option() {
    let src = tmp("multi.fhe");
    std::fs::write(
        &src,
        "func.func @main(%x: tensor<2x!fhe.eint<2>>) -> tensor<2x2x!fhe.eint<3>> {\n  \
         %0 = \"fhe.multi_lut\"(%x) {tables = dense<[[0, 1, 2, 3], [3, 0, 1, 2]]> : tensor<2x4xui3>} : \
         (tensor<2x!fhe.eint<2>>) -> tensor<2x2x!fhe.eint<3>>\n  \
         \"func.return\"(%0) : (tensor<2x2x!fhe.eint<3>>) -> ()\n}\n",
    )
    .unwrap();
    let s = src.to_str().unwrap();
    let info = |when: &str| {
        let p = tmp(&format!("multi-{when}.fhecp"));
        let o = fhec(&[
            "compile",
            s,
            "-o",
            p.to_str().unwrap(),
            "--many-lut",
            when,
            "--emit-tfhe",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stderr(&o).contains(" and 2 lanes,"), when == "on", "{}", stderr(&o));
        let i = fhec(&["info", p.to_str().unwrap()]);
        assert!(i.status.success(), "{}", stderr(&i));
        (stdout(&o), stdout(&i))
    };
    let (text, on) = info("on");
    assert!(text.contains("\"tfhe.lane\""), "{text}");
    assert!(on.contains("lookups per run: 2 ") && on.contains("and 2 lanes"), "{on}");
    let (text, off) = info("off");
    assert!(!text.contains("\"tfhe.lane\""), "{text}");
    assert!(off.contains("lookups per run: 4 ") && !off.contains("lanes"), "{off}");
    let o = fhec(&[
        "compile",
        s,
        "-o",
        tmp("x.fhecp").to_str().unwrap(),
        "--many-lut",
        "maybe",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `--max-key-bytes`: a budget below the fastest program's keys gives a program within it (slower,
/// and still exact when run), one below the smallest keys the search finds an error naming them;
/// a malformed size is refused; nothing is written when the budget fails.
#[test]
fn compile_within_a_key_budget() {
    let free = tmp("budget-free.fhecp");
    let fp = free.to_str().unwrap();
    assert!(fhec(&["compile", "examples/mlp.fhe", "-o", fp]).status.success());
    let keys = |path: &str| -> f64 {
        let o = fhec(&["info", path]);
        let line = stdout(&o)
            .lines()
            .find(|l| l.starts_with("key sizes"))
            .unwrap_or_default()
            .to_string();
        line.split("evaluation keys ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no key size in: {}", stdout(&o)))
    };
    let budget = keys(fp) * 0.8;
    let bytes = format!("{}", (budget * 1e6) as u64);
    let kept = tmp("budget.fhecp");
    let kp = kept.to_str().unwrap();
    let o = fhec(&["compile", "examples/mlp.fhe", "-o", kp, "--max-key-bytes", &bytes]);
    assert!(o.status.success(), "{}", stderr(&o));
    // the summary line tells the keys and the budget
    assert!(
        stderr(&o).contains(&format!("(budget {:.1} MB)", budget)),
        "{}",
        stderr(&o)
    );
    assert!(keys(kp) <= budget, "{} MB > {budget} MB", keys(kp));
    let (ck, ek) = (tmp("budget.ck"), tmp("budget.ek"));
    let (c, e) = (ck.to_str().unwrap(), ek.to_str().unwrap());
    assert!(fhec(&["keygen", kp, "--client-keys", c, "--eval-keys", e])
        .status
        .success());
    assert!((std::fs::metadata(e).unwrap().len() as f64) <= budget * 1e6 * 1.01);
    let (i, r) = (tmp("budget.in"), tmp("budget.out"));
    let (ip, rp) = (i.to_str().unwrap(), r.to_str().unwrap());
    for x in ["x=[[15,3,9,1]]", "x=[[0,0,0,15]]"] {
        assert!(fhec(&["encrypt", kp, "--client-keys", c, "-i", x, "-o", ip])
            .status
            .success());
        let o = fhec(&["run", kp, ip, "--eval-keys", e, "-o", rp]);
        assert!(o.status.success(), "{}", stderr(&o));
        let got = stdout(&fhec(&["decrypt", kp, rp, "--client-keys", c]));
        assert_eq!(got, stdout(&fhec(&["eval", "examples/mlp.fhe", "-i", x])));
    }
    let none = tmp("budget-none.fhecp");
    let np = none.to_str().unwrap();
    for (size, needle) in [
        (
            "1M",
            "no parameters found with evaluation keys within 1.0 MB: the smallest found need",
        ),
        ("12X", "--max-key-bytes: unknown suffix"),
    ] {
        let o = fhec(&["compile", "examples/mlp.fhe", "-o", np, "--max-key-bytes", size]);
        assert_eq!(o.status.code(), Some(1), "{size}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{size}: {}", stderr(&o));
        assert!(!none.exists());
    }
}
