//! Laws of the IR, checked on random programs and random text:
//!
//! - what the builder builds verifies;
//! - print → parse → print is the identity, and the parsed program computes the same thing;
//! - the builder's inferred (widest) result types are sound: evaluating on any inputs in range never
//!   overflows a declared width;
//! - the parser never panics, on random bytes, token soup, truncated or corrupted programs.

use fhec_ir::{eval, parse_module, print_module, verify, Module};
use fhec_tests::{random_function, random_tensor, Rng};
use proptest::prelude::*;

/// Number of cases: `PROPTEST_CASES` when set, otherwise `default`.
fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(n)
}

fn module_of(seed: u64, steps: usize) -> Module {
    Module {
        functions: vec![random_function(seed, steps)],
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn builder_output_verifies_round_trips_and_never_overflows(seed in any::<u64>(), steps in 1usize..14) {
        let m = module_of(seed, steps);
        let text = print_module(&m);
        let proof = verify(&m).map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
        let parsed = parse_module(&text).map_err(|e| TestCaseError::fail(e.render("gen.fhe", &text)))?;
        prop_assert_eq!(print_module(&parsed), text.clone());
        let proof2 = verify(&parsed).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let mut rng = Rng::new(seed ^ 0x5eed);
        for _ in 0..3 {
            let inputs: Vec<_> = m.functions[0].arg_types().iter().map(|t| random_tensor(&mut rng, t)).collect();
            let a = eval(&proof, &inputs).map_err(|e| TestCaseError::fail(format!("{}\n{text}", e.render("gen.fhe", &text))))?;
            let b = eval(&proof2, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(a, b);
        }
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let s = String::from_utf8_lossy(&bytes);
        if let Err(d) = parse_module(&s) {
            let _ = d.render("fuzz.fhe", &s);
        }
    }

    #[test]
    fn parser_never_panics_on_token_soup(tokens in proptest::collection::vec(0usize..TOKENS.len(), 0..80)) {
        let s: String = tokens.iter().map(|&t| TOKENS[t]).collect::<Vec<_>>().join(" ");
        if let Ok(m) = parse_module(&s) {
            // whatever parses must print and parse again, and the verifier must not panic either
            let _ = verify(&m);
            let text = print_module(&m);
            prop_assert!(parse_module(&text).is_ok(), "{}", text);
        }
    }
}

const TOKENS: &[&str] = &[
    "func.func",
    "@main",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "<",
    ">",
    ":",
    ",",
    "=",
    "->",
    "%x",
    "%0",
    "%1",
    "module",
    "\"fhe.add\"",
    "\"fhe.lut\"",
    "\"fhe.round\"",
    "\"func.return\"",
    "\"fhe.sum\"",
    "tensor<2x",
    "tensor<",
    "!fhe.eint<3>",
    "!fhe.esint<",
    "i8",
    "ui4",
    "3",
    "-1",
    "0",
    "99999999999999999999",
    "dense<",
    "dense<[1, 2]>",
    "x",
    "true",
    "{lsbs = 1}",
    "{table = dense<[0, 1]> : tensor<2xui1>}",
    "// c\n",
    "\n",
    "\"",
    "\\",
    "array<i64: 1>",
    "fhe.range",
    "tensor<2x!fhe.eint<1>>",
    "!fhe.eint<1>",
    "tensor<0xi8>",
    "?",
    "*",
];

#[test]
fn parser_never_panics_on_truncated_or_corrupted_programs() {
    let mut sources: Vec<String> = Vec::new();
    for dir in ["../examples", "cases"] {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        collect(&root, &mut sources);
    }
    assert!(sources.len() >= 3, "case files not found");
    let mut n = 0;
    for src in &sources {
        for cut in (0..src.len()).filter(|&i| src.is_char_boundary(i)) {
            if let Err(d) = parse_module(&src[..cut]) {
                let _ = d.render("cut.fhe", &src[..cut]);
            }
            n += 1;
        }
        let bytes = src.as_bytes();
        for (i, replacement) in [b'}', b'%', b'"', b'<', b'9', b' ']
            .iter()
            .cycle()
            .take(bytes.len().min(600))
            .enumerate()
        {
            let mut b = bytes.to_vec();
            let pos = (i * 7919) % b.len();
            b[pos] = *replacement;
            let _ = parse_module(&String::from_utf8_lossy(&b));
            n += 1;
        }
    }
    assert!(n > 1000, "only {n} inputs tried");
}

fn collect(dir: &std::path::Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "fhe") {
            out.push(std::fs::read_to_string(&p).expect("readable case file"));
        }
    }
}

#[test]
fn generated_programs_use_many_ops() {
    let mut seen = std::collections::BTreeSet::new();
    let mut sizes = 0;
    for seed in 0..200 {
        let f = random_function(seed, 12);
        sizes += f.body.len();
        for &o in &f.body {
            seen.insert(f.op(o).kind);
        }
    }
    assert!(seen.len() >= 20, "generator covers only {seen:?}");
    assert!(sizes >= 200 * 10, "programs are too small: {sizes} ops in 200 programs");
}

// ---- regression tests: inputs that once broke a law ----------------------------------------------------

fn reprint(src: &str) -> String {
    let m = parse_module(src).unwrap_or_else(|e| panic!("{}", e.render("t.fhe", src)));
    let text = print_module(&m);
    let again = parse_module(&text).unwrap_or_else(|e| panic!("{}", e.render("t.fhe", &text)));
    assert_eq!(print_module(&again), text);
    text
}

#[test]
fn diagnostic_inside_a_multibyte_character_renders() {
    let src = "func.func @main(%x: é) -> i8 {}";
    let d = parse_module(src).expect_err("é is not a type");
    assert!(d.render("t.fhe", src).contains("t.fhe:1:21"));
}

#[test]
fn empty_dense_of_any_shape_round_trips() {
    let src = "func.func @main(%x: tensor<0x3x!fhe.eint<2>>) -> tensor<0x3x!fhe.esint<5>> {\n  %c = \"fhe.constant\"() {value = dense<[]> : tensor<0x3xi3>} : () -> tensor<0x3xi3>\n  %0 = \"fhe.add\"(%x, %c) : (tensor<0x3x!fhe.eint<2>>, tensor<0x3xi3>) -> tensor<0x3x!fhe.esint<5>>\n  \"func.return\"(%0) : (tensor<0x3x!fhe.esint<5>>) -> ()\n}\n";
    assert_eq!(reprint(src), src);
    assert!(verify(&parse_module(src).expect("parses")).is_ok());
}

#[test]
fn attribute_keys_that_need_quotes_keep_them() {
    let src = "func.func @main(%x: !fhe.eint<2>) -> !fhe.eint<2> {\n  %0 = \"fhe.transpose\"(%x) {\"a b\" = 1} : (!fhe.eint<2>) -> !fhe.eint<2>\n  \"func.return\"(%0) : (!fhe.eint<2>) -> ()\n}\n";
    assert_eq!(reprint(src), src);
}

#[test]
fn unsigned_64_bit_clear_integers_are_rejected() {
    let src = "func.func @main(%x: ui64) -> ui64 {\n  \"func.return\"(%x) : (ui64) -> ()\n}\n";
    let d = parse_module(src).expect_err("ui64 does not fit i64 storage");
    assert!(
        d.message
            .contains("width 64 is out of range for a clear unsigned integer (1 ..= 63)"),
        "{}",
        d.message
    );
}

#[test]
fn huge_dimensions_behind_a_zero_are_rejected() {
    let src = "func.func @main(%x: tensor<0x99999999999x99999999999x!fhe.eint<2>>) -> i8 {}";
    let d = parse_module(src).expect_err("too many elements");
    assert!(d.message.contains("more than"), "{}", d.message);
}
