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
