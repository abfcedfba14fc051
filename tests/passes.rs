//! Pass tests: snapshots of `tests/cases/<pass>/*.fhe` after the pass, the pipeline law (clear
//! meaning preserved on random programs), and bitwidth against brute force.

use fhec_ir::module::Module;
use fhec_ir::text::split_cases;
use fhec_ir::{parse_module, print_module, verify, Tensor};
use fhec_passes::manager::{run_text, DEFAULT_PIPELINE};
use fhec_tests::Rng;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

fn inputs(m: &Module, seed: u64, n: usize) -> Vec<Vec<Tensor>> {
    fhec_tests::input_samples(m, seed, n)
}

/// The pipeline keeps the clear meaning: on every input where the original program runs, the
/// optimised one runs and returns the same values.
fn check_law(m: &Module, pipeline: &str, seed: u64) -> Result<(), TestCaseError> {
    let before = verify(m).unwrap();
    let mut after = m.clone();
    let mut ctx = fhec_tests::pass_context();
    run_text(&mut after, pipeline, &mut ctx)
        .map_err(|d| TestCaseError::fail(format!("{}\n{}", d.message, print_module(m))))?;
    let proof = verify(&after).map_err(|d| TestCaseError::fail(format!("{d:?}")))?;
    for x in inputs(m, seed, 6) {
        let Ok(want) = fhec_ir::interp::eval(&before, &x) else {
            continue;
        };
        let got = fhec_ir::interp::eval(&proof, &x).map_err(|d| {
            TestCaseError::fail(format!(
                "{}\nbefore:\n{}\nafter:\n{}",
                d.message,
                print_module(m),
                print_module(&after)
            ))
        })?;
        prop_assert_eq!(
            &got,
            &want,
            "before:\n{}\nafter:\n{}",
            print_module(m),
            print_module(&after)
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Clear result before the default pipeline == after it, on random programs over the whole op set.
    #[test]
    fn default_pipeline_preserves_meaning(seed in any::<u64>(), steps in 1usize..8, narrow in any::<bool>()) {
        let mut f = fhec_tests::random_function(seed, steps);
        if narrow {
            // declared input ranges narrower than the types: what bitwidth narrows from
            let mut rng = Rng::new(seed ^ 0x5eed);
            for i in 0..f.args.len() {
                let (lo, hi) = f.ty(f.args[i].value).elem.range();
                let (lo, hi) = (lo as i64, hi as i64);
                let a = rng.range(lo, hi);
                let b = rng.range(a, hi);
                f.args[i].attrs.insert(fhec_ir::module::RANGE_ATTR.into(), fhec_ir::Attribute::int_array(&[a, b]));
            }
        }
        let mut m = Module::new();
        m.functions.push(f);
        check_law(&m, DEFAULT_PIPELINE, seed)?;
    }
}

/// The pipeline a pass case file runs: its first line, `// RUN: <pipeline>` (as MLIR's lit).
fn run_line(text: &str) -> Option<&str> {
    text.lines().next()?.strip_prefix("// RUN:").map(str::trim)
}

/// Whether every pass of a pipeline keeps the clear meaning (then the law is checked on each case).
fn keeps_meaning(pipeline: &str) -> bool {
    fhec_passes::manager::parse_pipeline(pipeline)
        .unwrap()
        .iter()
        .all(|s| s.info.keeps_meaning)
}

/// Every case of `tests/cases/<pass>/*.fhe`, after the pipeline of its `// RUN:` line: the module
/// text or the error, as a snapshot. Adding a pass's cases is adding a folder; no list here.
#[test]
fn pass_case_snapshots() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/cases");
    let mut n = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    for dir in dirs {
        let pass = dir.file_name().unwrap().to_string_lossy().to_string();
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            // op, parse and verify cases have no pipeline (tests/cases.rs runs them)
            let Some(pipeline) = run_line(&text) else {
                continue;
            };
            assert!(
                pipeline.starts_with(&pass),
                "{}: a case of folder {pass} runs `{pipeline}`",
                path.display()
            );
            let mut out = String::new();
            for (i, case) in split_cases(&text).into_iter().enumerate() {
                let mut m = parse_module(&case.text).unwrap();
                let mut ctx = fhec_tests::pass_context();
                let result = match run_text(&mut m, pipeline, &mut ctx) {
                    Ok(()) => {
                        // the law on the case itself, for passes that keep meaning
                        if keeps_meaning(pipeline) {
                            check_law(&parse_module(&case.text).unwrap(), pipeline, i as u64).unwrap();
                        }
                        let stats: Vec<String> = ctx
                            .statistics()
                            .iter()
                            .map(|(_, w, k)| format!("// {w}: {k}"))
                            .collect();
                        format!("{}\n{}", stats.join("\n"), print_module(&m))
                    }
                    Err(d) => d.render(&path.file_name().unwrap().to_string_lossy(), &case.text),
                };
                out.push_str(&format!("// ----- case {i}\n{result}\n"));
                n += 1;
            }
            let name = format!("{pass}__{}", path.file_stem().unwrap().to_string_lossy());
            insta::assert_snapshot!(name, out);
        }
    }
    assert!(n >= 12, "{n} cases");
}

/// Every registered pass has a case folder whose files run it.
#[test]
fn every_pass_has_cases() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/cases");
    for info in fhec_passes::manager::REGISTRY {
        let dir = std::path::Path::new(root).join(info.name);
        let runs = std::fs::read_dir(&dir)
            .unwrap_or_else(|_| panic!("no case folder tests/cases/{}", info.name))
            .any(|e| run_line(&std::fs::read_to_string(e.unwrap().path()).unwrap()).is_some());
        assert!(runs, "tests/cases/{} has no file with a `// RUN:` line", info.name);
    }
}

/// bitwidth with declared input ranges gives the widths a brute-force evaluation of every input finds.
#[test]
fn bitwidth_matches_brute_force_on_an_mlp() {
    let src = r#"func.func @main(%x: tensor<1x3x!fhe.eint<8>> {fhe.range = [0, 5]}) -> tensor<1x2x!fhe.esint<16>> {
  %w = "fhe.constant"() {value = dense<[[3, -2, 1], [1, 4, -3], [-2, 2, 2]]> : tensor<3x3xi4>} : () -> tensor<3x3xi4>
  %0 = "fhe.matmul"(%x, %w) : (tensor<1x3x!fhe.eint<8>>, tensor<3x3xi4>) -> tensor<1x3x!fhe.esint<16>>
  %1 = "fhe.round"(%0) {lsbs = 2} : (tensor<1x3x!fhe.esint<16>>) -> tensor<1x3x!fhe.esint<16>>
  %c = "fhe.constant"() {value = dense<[1, -1, 0]> : tensor<3xi2>} : () -> tensor<3xi2>
  %2 = "fhe.add"(%1, %c) : (tensor<1x3x!fhe.esint<16>>, tensor<3xi2>) -> tensor<1x3x!fhe.esint<16>>
  %v = "fhe.constant"() {value = dense<[[2, -1], [1, 1], [-3, 2]]> : tensor<3x2xi3>} : () -> tensor<3x2xi3>
  %3 = "fhe.matmul"(%2, %v) : (tensor<1x3x!fhe.esint<16>>, tensor<3x2xi3>) -> tensor<1x2x!fhe.esint<16>>
  "func.return"(%3) : (tensor<1x2x!fhe.esint<16>>) -> ()
}"#;
    let m = parse_module(src).unwrap();
    let f = m.entry().unwrap();
    // brute force: every input in [0, 5]^3, every intermediate value
    let mut lo = vec![i64::MAX; f.num_values()];
    let mut hi = vec![i64::MIN; f.num_values()];
    for a in 0..=5 {
        for b in 0..=5 {
            for c in 0..=5 {
                let mut vals: Vec<Option<Tensor>> = vec![None; f.num_values()];
                vals[f.args[0].value.index()] = Some(ArrayD::from_shape_vec(IxDyn(&[1, 3]), vec![a, b, c]).unwrap());
                for &o in &f.body {
                    let op = f.op(o);
                    let args: Vec<Tensor> = op.operands.iter().map(|v| vals[v.index()].clone().unwrap()).collect();
                    let refs: Vec<&Tensor> = args.iter().collect();
                    let types: Vec<_> = op.operands.iter().map(|&v| f.ty(v).clone()).collect();
                    let out = op
                        .kind
                        .def()
                        .eval(&refs, &types, &op.attrs, f.ty(op.result))
                        .unwrap()
                        .mapv(|v| v as i64);
                    vals[op.result.index()] = Some(out);
                }
                for (i, v) in vals.iter().enumerate() {
                    if let Some(t) = v {
                        lo[i] = lo[i].min(*t.iter().min().unwrap());
                        hi[i] = hi[i].max(*t.iter().max().unwrap());
                    }
                }
            }
        }
    }
    let mut opt = m.clone();
    run_text(&mut opt, "bitwidth", &mut fhec_tests::pass_context()).unwrap();
    let g = opt.entry().unwrap();
    for (&o_old, &o_new) in f.body.iter().zip(&g.body) {
        let (old, new) = (f.op(o_old), g.op(o_new));
        let ty = f.ty(old.result);
        if !ty.is_encrypted() {
            continue;
        }
        let i = old.result.index();
        let want = fhec_ir::types::width_for(lo[i] as i128, hi[i] as i128, ty.is_signed());
        assert_eq!(
            g.ty(new.result).width(),
            want,
            "{} %{i}: brute force [{}, {}]",
            old.kind.name(),
            lo[i],
            hi[i]
        );
    }
    // and the argument: 0..=5 is 3 bits
    assert_eq!(g.ty(g.args[0].value).width(), 3);
}

/// round-insertion computes the documented composite: `T[clamp(round(x, k) · 2^k)]`.
#[test]
fn round_insertion_follows_its_documented_semantics() {
    let table: Vec<i64> = (0..256).map(|v: i64| (v * 7 + 3) % 32).collect();
    let t: Vec<String> = table.iter().map(|v| v.to_string()).collect();
    let src = format!(
        "func.func @main(%x: tensor<256x!fhe.eint<8>>) -> tensor<256x!fhe.eint<5>> {{\n  %0 = \"fhe.lut\"(%x) {{table = dense<[{}]> : tensor<256xui5>}} : (tensor<256x!fhe.eint<8>>) -> tensor<256x!fhe.eint<5>>\n  \"func.return\"(%0) : (tensor<256x!fhe.eint<5>>) -> ()\n}}\n",
        t.join(", ")
    );
    for bits in 1..=7u32 {
        let mut m = parse_module(&src).unwrap();
        run_text(
            &mut m,
            &format!("round-insertion{{max-lut-bits={bits}}}"),
            &mut fhec_tests::pass_context(),
        )
        .unwrap();
        let v = verify(&m).unwrap();
        let x = ArrayD::from_shape_vec(IxDyn(&[256]), (0..256).collect()).unwrap();
        let got = fhec_ir::interp::eval(&v, &[x]).unwrap();
        // the k the pass must pick: the smallest with round(255, k) < 2^bits and 8 − k ≤ bits; with
        // none (1 bit: 255 rounds to 2 at best), the lookup stays as it was
        let Some(k) = (1..8).find(|&k| ((255 + (1 << (k - 1))) >> k) < (1 << bits) && 8 - k <= bits) else {
            assert_eq!(
                got[0].iter().copied().collect::<Vec<_>>(),
                table,
                "max-lut-bits={bits}: unchanged"
            );
            continue;
        };
        for (xv, &y) in got[0].iter().enumerate() {
            let q = (xv as i64 + (1 << (k - 1))) >> k;
            let want = table[((q << k).min(255)) as usize];
            assert_eq!(y, want, "max-lut-bits={bits} x={xv}");
        }
        let f = m.entry().unwrap();
        let lut = f
            .body
            .iter()
            .map(|&o| f.op(o))
            .find(|o| o.kind == fhec_ir::OpKind::Lut)
            .unwrap();
        assert!(f.ty(lut.operands[0]).width() <= bits);
    }
}

/// Random chains of the fusion-relevant ops (lookups, clear add/mul, neg, round) on one or two
/// inputs, with values reused: `lut-fusion` (and the default pipeline) keep their meaning.
fn fusion_chain(seed: u64) -> Module {
    use fhec_ir::{Attribute, Dense, ElemType, FunctionBuilder, OpKind, Type};
    let mut rng = Rng::new(seed);
    let mut b = FunctionBuilder::new("main");
    let w0 = 2 + rng.below(3) as u32;
    let shape = vec![3];
    let mut vals = vec![b.arg("x", Type::new(ElemType::EInt(w0), shape.clone()))];
    if rng.below(2) == 0 {
        vals.push(b.arg("y", Type::new(ElemType::ESInt(w0), shape.clone())));
    }
    let steps = 2 + rng.below(6);
    for _ in 0..steps {
        let x = vals[rng.below(vals.len())];
        let ty = b.ty(x).clone();
        let w = ty.width();
        let v = match rng.below(5) {
            0 if w <= 8 => {
                let n = 1usize << w;
                let signed_out = rng.below(3) == 0;
                let data: Vec<i64> = (0..n)
                    .map(|_| if signed_out { rng.range(-8, 7) } else { rng.range(0, 15) })
                    .collect();
                let elem = if signed_out {
                    ElemType::Int(4)
                } else {
                    ElemType::UInt(4)
                };
                let t = Dense::new(
                    Type::new(elem, vec![n]),
                    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), data).unwrap(),
                )
                .unwrap();
                let out = Type::new(
                    if signed_out {
                        ElemType::ESInt(4)
                    } else {
                        ElemType::EInt(4)
                    },
                    shape.clone(),
                );
                b.op_with_type(OpKind::Lut, &[x], &[("table", Attribute::Dense(t))], Some(out))
            }
            1 | 2 => {
                let c = rng.range(-3, 3);
                let kind = if rng.below(2) == 0 { OpKind::Add } else { OpKind::Mul };
                let cv = b
                    .op(
                        OpKind::Constant,
                        &[],
                        &[(
                            "value",
                            Attribute::Dense(
                                Dense::new(Type::new(ElemType::Int(3), vec![]), ndarray::arr0(c).into_dyn()).unwrap(),
                            ),
                        )],
                    )
                    .unwrap();
                b.op(kind, &[x, cv], &[])
            }
            3 => b.op(OpKind::Neg, &[x], &[]),
            _ if w >= 2 => b.op(OpKind::Round, &[x], &[("lsbs", Attribute::Int(1))]),
            _ => continue,
        };
        if let Ok(v) = v {
            if b.ty(v).width() <= 16 {
                vals.push(v);
            }
        }
    }
    let n = vals.len();
    let rets: Vec<_> = if n > 2 && rng.below(2) == 0 {
        vec![vals[n - 1], vals[n - 2]]
    } else {
        vec![vals[n - 1]]
    };
    let mut m = Module::new();
    m.functions.push(b.ret(&rets));
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn lut_fusion_preserves_meaning(seed in any::<u64>()) {
        let m = fusion_chain(seed);
        check_law(&m, "lut-fusion", seed)?;
        check_law(&m, DEFAULT_PIPELINE, seed)?;
    }
}

/// Runs lut-fusion with one rule only (no multi_lut grouping); returns the op names of the result.
fn fuse_with_rule(src: &str, rule: &str) -> (Module, Vec<&'static str>) {
    use fhec_passes::lut_fusion::LutFusion;
    use fhec_passes::manager::Pass;
    let mut m = parse_module(src).unwrap();
    let pass = LutFusion {
        only: Some(vec![rule.to_string()]),
        multi_lut: false,
        ..Default::default()
    };
    let mut ctx = fhec_tests::pass_context();
    pass.run(&mut m, &mut ctx).unwrap();
    verify(&m).unwrap();
    assert!(
        ctx.statistics()
            .iter()
            .any(|(_, w, n)| w == &format!("rule {rule}") && *n > 0),
        "rule {rule} never applied: {:?}",
        ctx.statistics()
    );
    check_law(&parse_module(src).unwrap(), "canonicalize", 1).unwrap();
    let f = m.entry().unwrap();
    let kinds = f
        .body
        .iter()
        .map(|&o| f.op(o).kind.name())
        .filter(|k| *k != "fhe.constant")
        .collect();
    (m, kinds)
}

fn lut_text(input: &str, table: &[i64], out: &str) -> String {
    let t: Vec<String> = table.iter().map(|v| v.to_string()).collect();
    format!(
        "{{table = dense<[{}]> : tensor<{}xi8>}} : ({input}) -> {out}",
        t.join(", "),
        table.len()
    )
}

/// Each rule alone, on the smallest program where it applies, with the pattern it must leave.
#[test]
fn each_fusion_rule_alone() {
    let t8: Vec<i64> = (0..8).map(|v| (v * 3) % 8).collect();
    let t16: Vec<i64> = (0..16).map(|v| (v * 5) % 16).collect();
    let e3 = "tensor<2x!fhe.eint<3>>";
    let e4 = "tensor<2x!fhe.eint<4>>";
    let e4s = "tensor<2x!fhe.esint<4>>";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "lut-of-lut",
            format!(
                "func.func @main(%x: {e3}) -> {e3} {{\n  %0 = \"fhe.lut\"(%x) {}\n  %1 = \"fhe.lut\"(%0) {}\n  \"func.return\"(%1) : ({e3}) -> ()\n}}\n",
                lut_text(e3, &t8, e3),
                lut_text(e3, &t8, e3)
            ),
            vec!["fhe.lut"],
        ),
        (
            "add-after-lut",
            format!(
                "func.func @main(%x: {e3}) -> {e4} {{\n  %0 = \"fhe.lut\"(%x) {}\n  %c = \"fhe.constant\"() {{value = dense<5> : ui3}} : () -> ui3\n  %1 = \"fhe.add\"(%0, %c) : ({e3}, ui3) -> {e4}\n  \"func.return\"(%1) : ({e4}) -> ()\n}}\n",
                lut_text(e3, &t8, e3)
            ),
            vec!["fhe.lut"],
        ),
        (
            "mul-after-lut",
            format!(
                "func.func @main(%x: {e3}) -> tensor<2x!fhe.eint<5>> {{\n  %0 = \"fhe.lut\"(%x) {}\n  %c = \"fhe.constant\"() {{value = dense<3> : ui2}} : () -> ui2\n  %1 = \"fhe.mul\"(%0, %c) : ({e3}, ui2) -> tensor<2x!fhe.eint<5>>\n  \"func.return\"(%1) : (tensor<2x!fhe.eint<5>>) -> ()\n}}\n",
                lut_text(e3, &t8, e3)
            ),
            vec!["fhe.lut"],
        ),
        (
            "neg-after-lut",
            format!(
                "func.func @main(%x: {e3}) -> tensor<2x!fhe.esint<4>> {{\n  %0 = \"fhe.lut\"(%x) {}\n  %1 = \"fhe.neg\"(%0) : ({e3}) -> tensor<2x!fhe.esint<4>>\n  \"func.return\"(%1) : (tensor<2x!fhe.esint<4>>) -> ()\n}}\n",
                lut_text(e3, &t8, e3)
            ),
            vec!["fhe.lut"],
        ),
        (
            "add-before-lut",
            format!(
                "func.func @main(%x: {e3}) -> {e4} {{\n  %c = \"fhe.constant\"() {{value = dense<5> : ui3}} : () -> ui3\n  %0 = \"fhe.add\"(%x, %c) : ({e3}, ui3) -> {e4}\n  %1 = \"fhe.lut\"(%0) {}\n  \"func.return\"(%1) : ({e4}) -> ()\n}}\n",
                lut_text(e4, &t16, e4)
            ),
            vec!["fhe.lut"],
        ),
        (
            "mul-before-lut",
            format!(
                "func.func @main(%x: {e3}) -> {e4} {{\n  %c = \"fhe.constant\"() {{value = dense<2> : ui2}} : () -> ui2\n  %0 = \"fhe.mul\"(%x, %c) : ({e3}, ui2) -> {e4}\n  %1 = \"fhe.lut\"(%0) {}\n  \"func.return\"(%1) : ({e4}) -> ()\n}}\n",
                lut_text(e4, &t16, e4)
            ),
            vec!["fhe.lut"],
        ),
        (
            "neg-before-lut",
            format!(
                "func.func @main(%x: {e3}) -> {e4} {{\n  %0 = \"fhe.neg\"(%x) : ({e3}) -> tensor<2x!fhe.esint<4>>\n  %1 = \"fhe.lut\"(%0) {}\n  \"func.return\"(%1) : ({e4}) -> ()\n}}\n",
                lut_text("tensor<2x!fhe.esint<4>>", &t16, e4)
            ),
            vec!["fhe.lut"],
        ),
        (
            "round-before-lut",
            // costs decide: at the default 2^-128 a 4-bit lookup (12.2 ms) beats a round (one bit
            // extraction, 5.1) + a 3-bit lookup (9.0); a 5-bit one (28.5) would not
            format!(
                "func.func @main(%x: {e4s}) -> {e3} {{\n  %0 = \"fhe.round\"(%x) {{lsbs = 1}} : ({e4s}) -> tensor<2x!fhe.esint<3>>\n  %1 = \"fhe.lut\"(%0) {}\n  \"func.return\"(%1) : ({e3}) -> ()\n}}\n",
                lut_text("tensor<2x!fhe.esint<3>>", &t8, e3)
            ),
            vec!["fhe.lut"],
        ),
    ];
    for (rule, src, want) in cases {
        let m = parse_module(&src).unwrap_or_else(|d| panic!("{rule}: {}\n{src}", d.render("case", &src)));
        verify(&m).unwrap_or_else(|d| panic!("{rule}: {d:?}\n{src}"));
        let (out, kinds) = fuse_with_rule(&src, rule);
        assert_eq!(kinds, want, "{rule}:\n{}", print_module(&out));
        check_law(&m, "lut-fusion", 3).unwrap();
    }
}

/// The done-when chain: `lut → add const → lut → mul const → lut` becomes one lookup, and two
/// lookups on the same input become one `multi_lut`.
#[test]
fn fusion_chain_and_multi_lut() {
    let t8: Vec<i64> = (0..8).map(|v| (v * 3 + 1) % 8).collect();
    let e3 = "tensor<2x!fhe.eint<3>>";
    let src = format!(
        "func.func @main(%x: {e3}) -> ({e3}, {e3}) {{
  %0 = \"fhe.lut\"(%x) {}
  %c = \"fhe.constant\"() {{value = dense<1> : ui1}} : () -> ui1
  %1 = \"fhe.add\"(%0, %c) : ({e3}, ui1) -> tensor<2x!fhe.eint<4>>
  %2 = \"fhe.lut\"(%1) {}
  %k = \"fhe.constant\"() {{value = dense<2> : ui2}} : () -> ui2
  %3 = \"fhe.mul\"(%2, %k) : ({e3}, ui2) -> tensor<2x!fhe.eint<4>>
  %4 = \"fhe.lut\"(%3) {}
  %5 = \"fhe.lut\"(%x) {}
  \"func.return\"(%4, %5) : ({e3}, {e3}) -> ()
}}\n",
        lut_text(e3, &t8, e3),
        lut_text(
            "tensor<2x!fhe.eint<4>>",
            &(0..16).map(|v| v % 8).collect::<Vec<_>>(),
            e3
        ),
        lut_text(
            "tensor<2x!fhe.eint<4>>",
            &(0..16).map(|v| 7 - v % 8).collect::<Vec<_>>(),
            e3
        ),
        lut_text(e3, &t8.iter().rev().copied().collect::<Vec<_>>(), e3),
    );
    let m = parse_module(&src).unwrap();
    let mut out = m.clone();
    run_text(&mut out, "lut-fusion,canonicalize", &mut fhec_tests::pass_context()).unwrap();
    let f = out.entry().unwrap();
    let kinds: Vec<&str> = f
        .body
        .iter()
        .map(|&o| f.op(o).kind.name())
        .filter(|k| *k != "fhe.constant")
        .collect();
    assert_eq!(
        kinds,
        ["fhe.multi_lut", "fhe.slice", "fhe.reshape", "fhe.slice", "fhe.reshape"],
        "{}",
        print_module(&out)
    );
    check_law(&m, "lut-fusion,canonicalize", 5).unwrap();
    insta::assert_snapshot!("lut_fusion__chain_and_multi_lut", print_module(&out));
}

/// Shrunk proptest failures, kept as named tests.
#[test]
fn regression_bitwidth_keeps_shape_ops_and_casts_typed() {
    // a slice (its type is tied to its operand's) of an empty tensor, after a narrowed lookup
    let a = r#"func.func @main(%in0: tensor<1x2x2x!fhe.esint<1>>, %in1: !fhe.esint<3>) -> (tensor<0x1x1x!fhe.eint<3>>, tensor<1x2x2x!fhe.eint<3>>) {
  %1 = "fhe.mapped_lut"(%in0) {map = dense<[[[2, 2], [0, 0]]]> : tensor<1x2x2xui2>, tables = dense<[[0, 0], [1, 0], [3, 3]]> : tensor<3x2xui2>} : (tensor<1x2x2x!fhe.esint<1>>) -> tensor<1x2x2x!fhe.eint<2>>
  %2 = "fhe.add"(%in1, %1) : (!fhe.esint<3>, tensor<1x2x2x!fhe.eint<2>>) -> tensor<1x2x2x!fhe.esint<4>>
  %3 = "fhe.lut"(%2) {table = dense<[7, 0, 6, 7, 7, 7, 3, 3, 7, 3, 7, 5, 5, 1, 7, 0]> : tensor<16xui3>} : (tensor<1x2x2x!fhe.esint<4>>) -> tensor<1x2x2x!fhe.eint<3>>
  %4 = "fhe.slice"(%3) {ends = [1, 2, 2], starts = [1, 1, 1], steps = [1, 1, 1]} : (tensor<1x2x2x!fhe.eint<3>>) -> tensor<0x1x1x!fhe.eint<3>>
  "func.return"(%4, %3) : (tensor<0x1x1x!fhe.eint<3>>, tensor<1x2x2x!fhe.eint<3>>) -> ()
}"#;
    check_law(&parse_module(a).unwrap(), DEFAULT_PIPELINE, 1).unwrap();
    // to_signed keeps the width: its unsigned input must hold the signed range too
    let b = r#"func.func @main(%in0: tensor<1x2x2x!fhe.eint<4>>) -> tensor<2x2x1x!fhe.esint<4>> {
  %2 = "fhe.transpose"(%in0) : (tensor<1x2x2x!fhe.eint<4>>) -> tensor<2x2x1x!fhe.eint<4>>
  %6 = "fhe.lut"(%2) {table = dense<[0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7]> : tensor<16xui4>} : (tensor<2x2x1x!fhe.eint<4>>) -> tensor<2x2x1x!fhe.eint<4>>
  %7 = "fhe.to_signed"(%6) : (tensor<2x2x1x!fhe.eint<4>>) -> tensor<2x2x1x!fhe.esint<4>>
  "func.return"(%7) : (tensor<2x2x1x!fhe.esint<4>>) -> ()
}"#;
    check_law(&parse_module(b).unwrap(), DEFAULT_PIPELINE, 2).unwrap();
    // `mul(lut, 1)` equals the lookup itself but is declared signed and wider: the e-graph must not
    // merge the two values (a round on each depends on its declared type)
    let c = r#"func.func @main(%x: tensor<3x!fhe.eint<3>>) -> (tensor<3x!fhe.esint<7>>, tensor<3x!fhe.esint<7>>) {
  %0 = "fhe.lut"(%x) {table = dense<[8, 7, 15, 4, 9, 4, 11, 13]> : tensor<8xui4>} : (tensor<3x!fhe.eint<3>>) -> tensor<3x!fhe.eint<4>>
  %1 = "fhe.constant"() {value = dense<1> : i3} : () -> i3
  %2 = "fhe.mul"(%0, %1) : (tensor<3x!fhe.eint<4>>, i3) -> tensor<3x!fhe.esint<7>>
  %3 = "fhe.round"(%0) {lsbs = 1} : (tensor<3x!fhe.eint<4>>) -> tensor<3x!fhe.eint<4>>
  %4 = "fhe.round"(%2) {lsbs = 1} : (tensor<3x!fhe.esint<7>>) -> tensor<3x!fhe.esint<7>>
  %5 = "fhe.constant"() {value = dense<3> : i3} : () -> i3
  %6 = "fhe.mul"(%0, %5) : (tensor<3x!fhe.eint<4>>, i3) -> tensor<3x!fhe.esint<7>>
  "func.return"(%6, %4) : (tensor<3x!fhe.esint<7>>, tensor<3x!fhe.esint<7>>) -> ()
}"#;
    check_law(&parse_module(c).unwrap(), "lut-fusion", 3).unwrap();
    check_law(&parse_module(c).unwrap(), DEFAULT_PIPELINE, 3).unwrap();
}
