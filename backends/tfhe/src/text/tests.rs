use super::*;

fn params() -> ParamSet {
    ParamSet::with_secure_noise(880, 2, 1024, 23, 1, 3, 5).unwrap()
}

/// A small program exercising every construct, including the awkward corners.
fn sample() -> Program {
    let t = |p: u32| Table {
        precision: p,
        values: (0..1u64 << p).map(|v| v.wrapping_mul(0x1000_0000_0000_0001)).collect(),
    };
    Program {
        name: "main".into(),
        partitions: vec![params()],
        inputs: vec![
            Port {
                name: "x".into(),
                shape: vec![1, 4],
                width: 4,
                signed: false,
                scale: 59,
                slots: vec![0],
                clear: false,
                range: Some((2, 11)),
            },
            Port {
                name: "empty".into(),
                shape: vec![0, 3],
                width: 1,
                signed: true,
                scale: 0,
                slots: vec![4],
                clear: false,
                range: None,
            },
            Port {
                name: "s \"q\"\n\tλ\u{1}".into(),
                shape: vec![],
                width: 32,
                signed: true,
                scale: 63,
                slots: vec![4],
                clear: false,
                range: None,
            },
        ],
        outputs: vec![
            Port {
                name: "out0".into(),
                shape: vec![1, 2],
                width: 3,
                signed: false,
                scale: 60,
                slots: vec![7, 9],
                clear: false,
                range: None,
            },
            Port {
                name: "scalar".into(),
                shape: vec![],
                width: 64,
                signed: true,
                scale: 1,
                slots: vec![0],
                clear: false,
                range: None,
            },
            Port {
                name: "none".into(),
                shape: vec![2, 0],
                width: 1,
                signed: false,
                scale: 0,
                slots: vec![],
                clear: false,
                range: None,
            },
        ],
        num_input_slots: 5,
        instrs: vec![
            Instr::Linear {
                terms: vec![(0, 3), (1, -1), (3, 1), (4, i64::MIN), (0, i64::MAX)],
                constant: 0,
            },
            Instr::Linear {
                terms: vec![],
                constant: u64::MAX,
            },
            Instr::Pbs {
                input: 5,
                shift: 5,
                offset: 0x0800_0000_0000_0000,
                table: 1,
                partition: 0,
            },
            Instr::Pbs {
                input: 7,
                shift: 63,
                offset: 0,
                table: 0,
                partition: 0,
            },
            Instr::Linear {
                terms: vec![(8, 0), (6, -7)],
                constant: 1 << 60,
            },
        ],
        tables: vec![t(0), t(4), t(1)],
        instr_origin: vec![1, 1, 2, 2, 3],
        origins: vec![
            Origin {
                op: "inputs".into(),
                location: None,
            },
            Origin {
                op: "fhe.matmul %0".into(),
                location: Some("3:8".into()),
            },
            Origin {
                op: "fhe.lut %2".into(),
                location: Some("".into()),
            },
            Origin {
                op: "output 0 (%2)\\".into(),
                location: Some("6:3".into()),
            },
        ],
        noise: NoiseReport {
            log2_p_error_worst_lookup: -40.44000000000001,
            log2_p_error_global: f64::NEG_INFINITY,
            pbs_by_precision: vec![(0, 1), (4, u64::MAX)],
            estimated_seconds: 5e-324,
        },
    }
}

/// A program with clear inputs interleaved with encrypted ones and `ClearLinear`s of every shape.
/// All ASCII (for the corruption test).
fn clear_sample() -> Program {
    let port = |name: &str, shape: Vec<usize>, width, signed, scale, first, clear| Port {
        name: name.into(),
        shape,
        width,
        signed,
        scale,
        slots: vec![first],
        clear,
        range: if name == "w" { Some((-100, 90)) } else { None },
    };
    Program {
        name: "clear".into(),
        partitions: vec![params()],
        inputs: vec![
            port("x", vec![2], 4, false, 59, 0, false),
            port("w", vec![3, 2], 8, true, 0, 0, true),
            port("y", vec![], 3, true, 58, 2, false),
            port("none", vec![0], 32, false, 0, 6, true),
            port("b", vec![1], 32, false, 0, 6, true),
        ],
        outputs: vec![Port {
            name: "out".into(),
            shape: vec![2],
            width: 8,
            signed: false,
            scale: 60,
            slots: vec![8, 9],
            clear: false,
            range: None,
        }],
        num_input_slots: 3,
        instrs: vec![
            Instr::ClearLinear {
                terms: vec![(0, 1), (1, -3)],
                products: vec![(2, 0, 1), (0, 1, -2), (1, 5, i64::MIN), (2, 0, i64::MAX)],
                clear_constants: vec![(0, 0x800), (6, u64::MAX), (0, 0)],
                constant: 0,
            },
            Instr::ClearLinear {
                terms: vec![],
                products: vec![],
                clear_constants: vec![],
                constant: 5,
            },
            Instr::ClearLinear {
                terms: vec![],
                products: vec![(3, 6, 1)],
                clear_constants: vec![],
                constant: 0,
            },
            Instr::ClearLinear {
                terms: vec![],
                products: vec![],
                clear_constants: vec![(2, 12)],
                constant: 1 << 62,
            },
            Instr::Linear {
                terms: vec![(3, 1), (5, 2)],
                constant: 0,
            },
            Instr::Pbs {
                input: 7,
                shift: 4,
                offset: 0,
                table: 0,
                partition: 0,
            },
            Instr::ClearLinear {
                terms: vec![(8, 1)],
                products: vec![],
                clear_constants: vec![(1, 1)],
                constant: 0,
            },
        ],
        tables: vec![Table {
            precision: 2,
            values: vec![0, 1 << 60, 2 << 60, 3 << 60],
        }],
        instr_origin: vec![1, 1, 1, 1, 1, 2, 1],
        origins: vec![
            Origin {
                op: "inputs".into(),
                location: None,
            },
            Origin {
                op: "fhe.mul %w".into(),
                location: Some("2:3".into()),
            },
            Origin {
                op: "fhe.lut %3".into(),
                location: None,
            },
        ],
        noise: NoiseReport {
            log2_p_error_worst_lookup: -41.5,
            log2_p_error_global: -40.5,
            pbs_by_precision: vec![(2, 1)],
            estimated_seconds: 0.01,
        },
    }
}

fn round_trip(p: &Program) -> String {
    p.validate().expect("the test program is valid");
    let text = print_program(p);
    let back = match parse_program(&text) {
        Ok(b) => b,
        Err(d) => panic!("{}\n{text}", d.render("printed", &text)),
    };
    assert_eq!(&back, p, "{text}");
    assert_eq!(print_program(&back), text);
    text
}

#[test]
fn hand_built_program_round_trips() {
    let text = round_trip(&sample());
    assert!(text.contains("-> %0 ... %3\n"), "{text}");
    assert!(
        text.contains("[0, 3] {width = 1, signed = true, scale = 0} -> ()\n"),
        "{text}"
    );
    assert!(text.contains("} -> %4\n"), "{text}");
    assert!(
        text.contains("%5 = \"tfhe.linear\"(%0 * 3, %1 * -1, %3, %4 * -9223372036854775808, %0 * 9223372036854775807) {constant = 0x0} origin @o1\n"),
        "{text}"
    );
    assert!(text.contains("%6 = \"tfhe.linear\"() {constant = 0xffffffffffffffff} origin @o1\n"));
    assert!(text.contains("%7 = \"tfhe.pbs\"(%5) {shift = 5, offset = 0x800000000000000, table = @t1} origin @o2\n"));
    assert!(text.contains("tfhe.origin @o0 \"inputs\"\n"), "{text}");
    assert!(text.contains("tfhe.origin @o2 \"fhe.lut %2\" at \"\"\n"), "{text}");
    assert!(text.contains("\"s \\\"q\\\"\\n\\tλ\\01\""), "{text}");
    assert!(text.contains("tfhe.table @t0 {precision = 0} = [0x0]\n"), "{text}");
    assert!(text.contains("global_log2 = -inf"), "{text}");
    assert!(text.contains("estimated_seconds = 5e-324"), "{text}");
}

#[test]
fn clear_inputs_and_clear_linear_round_trip() {
    let p = clear_sample();
    let text = round_trip(&p);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1..6],
        [
            "  tfhe.input \"x\" [2] {width = 4, signed = false, scale = 59} -> %0 ... %1",
            "  tfhe.clear_input \"w\" [3, 2] {width = 8, signed = true, min = -100, max = 90} -> $0 ... $5",
            "  tfhe.input \"y\" [] {width = 3, signed = true, scale = 58} -> %2",
            "  tfhe.clear_input \"none\" [0] {width = 32, signed = false} -> ()",
            "  tfhe.clear_input \"b\" [1] {width = 32, signed = false} -> $6",
        ],
        "{text}"
    );
    assert_eq!(
        lines[6],
        "  %3 = \"tfhe.clear_linear\"(%0, %1 * -3, %2 * $0, %0 * $1 * -2, %1 * $5 * -9223372036854775808, \
         %2 * $0 * 9223372036854775807, $0 * 0x800, $6 * 0xffffffffffffffff, $0 * 0x0) {constant = 0x0} origin @o1"
    );
    assert_eq!(lines[7], "  %4 = \"tfhe.clear_linear\"() {constant = 0x5} origin @o1");
    assert_eq!(
        lines[8],
        "  %5 = \"tfhe.clear_linear\"(%3 * $6) {constant = 0x0} origin @o1"
    );
    assert_eq!(
        lines[9],
        "  %6 = \"tfhe.clear_linear\"($2 * 0xc) {constant = 0x4000000000000000} origin @o1"
    );
    assert_eq!(
        lines[12],
        "  %9 = \"tfhe.clear_linear\"(%8, $1 * 0x1) {constant = 0x0} origin @o1"
    );
    // decimal units, an explicit factor 1 and free spacing are accepted; printing normalises them
    let loose = text.replace("$2 * 0xc", "$2*12").replace("(%3 * $6)", "( %3 *$6 * 1 )");
    assert_eq!(parse_program(&loose).unwrap(), p);
    // a program of clear inputs only
    let mut q = p.clone();
    q.inputs.retain(|i| i.clear);
    q.num_input_slots = 0;
    q.instrs = vec![Instr::ClearLinear {
        terms: vec![],
        products: vec![],
        clear_constants: vec![(6, 3), (5, 1)],
        constant: 0,
    }];
    q.instr_origin = vec![0];
    q.outputs[0].slots = vec![0, 0];
    q.tables.clear();
    let text = round_trip(&q);
    assert!(text.contains("  %0 = \"tfhe.clear_linear\"($6 * 0x3, $5 * 0x1) {constant = 0x0} origin @o0\n"));
}

/// The example in the module documentation is a valid program.
#[test]
fn module_doc_example_parses() {
    let src = include_str!("mod.rs");
    let doc: String = src
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    let start = doc.find("```text\n").unwrap() + "```text\n".len();
    let example = &doc[start..start + doc[start..].find("```").unwrap()];
    let p = match parse_program(example) {
        Ok(p) => p,
        Err(d) => panic!("{}", d.render("doc", example)),
    };
    assert_eq!(print_program(&p), example);
    assert_eq!(p.num_clear_values(), 2);
}

#[test]
fn clear_value_mistakes_are_located() {
    let text = print_program(&clear_sample());

    // references to clear values that are not declared
    let (m, at) = error_of(&text, "$6 * 0xffffffffffffffff", "$7 * 0xffffffffffffffff");
    assert_eq!(m, "use of undefined clear value $7 (only $0 ... $6 are declared)");
    assert_eq!(at, "$7");
    let (m, at) = error_of(&text, "(%3 * $6)", "(%3 * $4294967295)");
    assert_eq!(
        m,
        "use of undefined clear value $4294967295 (only $0 ... $6 are declared)"
    );
    assert_eq!(at, "$4294967295");
    let (m, at) = error_of(&print_program(&sample()), "(%0 * 3,", "(%0 * $0,");
    assert_eq!(m, "use of undefined clear value $0 (no clear value is declared)");
    assert_eq!(at, "$0");

    // clear ranges follow on in their own numbering, and match the shape
    let (m, at) = error_of(&text, "-> $0 ... $5", "-> $1 ... $6");
    assert_eq!(
        m,
        "clear input values must follow on: expected the range to start at $0"
    );
    assert_eq!(at, "$1 ... $6");
    let (m, at) = error_of(&text, "-> $6\n", "-> $7\n");
    assert_eq!(
        m,
        "clear input values must follow on: expected the range to start at $6"
    );
    assert_eq!(at, "$7");
    let (m, at) = error_of(&text, "-> $0 ... $5", "-> $0 ... $4");
    assert_eq!(m, "clear input `w` has 6 elements but the range has 5 values");
    assert_eq!(at, "$0 ... $4");
    let (m, _) = error_of(&text, "-> $0 ... $5", "-> $5 ... $0");
    assert_eq!(m, "empty clear value range");
    let (m, at) = error_of(&text, "-> $6\n", "-> %3\n");
    assert_eq!(m, "expected a clear value `$N`, found `%3`");
    assert_eq!(at, "%3");
    let (m, at) = error_of(&text, "-> %2\n", "-> $2\n");
    assert_eq!(m, "expected a slot `%N`, found `$2`");
    assert_eq!(at, "$2");

    // clear ports have no scale, and at most 32 bits
    let w = "{width = 8, signed = true, min = -100, max = 90} -> $0";
    let (m, at) = error_of(&text, w, "{width = 8, signed = true, scale = 0} -> $0");
    assert_eq!(m, "unknown attribute `scale` (expected width, signed)");
    assert_eq!(at, "scale");
    let (m, at) = error_of(&text, w, "{width = 33, signed = true} -> $0");
    assert_eq!(m, "width 33 is not in 1..=32");
    assert_eq!(at, "33");
    // declared ranges: both ends, inside the type
    let (m, _) = error_of(&text, w, "{width = 8, signed = true, min = -100} -> $0");
    assert_eq!(m, "missing attribute `max`");
    let (m, at) = error_of(&text, w, "{width = 8, signed = true, min = -100, max = 128} -> $0");
    assert_eq!(m, "range [-100, 128] is not inside the type's [-128, 127]");
    assert_eq!(at, "-100, max = 128");
    let (m, _) = error_of(&text, w, "{width = 8, signed = true, min = 5, max = 4} -> $0");
    assert_eq!(m, "range [5, 4] is not inside the type's [-128, 127]");

    // only tfhe.clear_linear reads clear values
    let (m, at) = error_of(&text, "\"tfhe.linear\"(%3, %5 * 2)", "\"tfhe.linear\"(%3, %5 * $2)");
    assert_eq!(
        m,
        "\"tfhe.linear\" cannot read clear values (\"tfhe.clear_linear\" can)"
    );
    assert_eq!(at, "$2");
    let (m, at) = error_of(&text, "\"tfhe.linear\"(%3, %5 * 2)", "\"tfhe.linear\"(%3, $1 * 0x1)");
    assert_eq!(
        m,
        "\"tfhe.linear\" cannot read clear values (\"tfhe.clear_linear\" can)"
    );
    assert_eq!(at, "$1");
    let (m, at) = error_of(&text, "\"tfhe.pbs\"(%7)", "\"tfhe.pbs\"(%7 * $0)");
    assert_eq!(m, "a lookup cannot read clear values");
    assert_eq!(at, "$0");
    let (m, at) = error_of(&text, "\"tfhe.pbs\"(%7)", "\"tfhe.pbs\"($3 * 1)");
    assert_eq!(m, "a lookup cannot read clear values");
    assert_eq!(at, "$3");
    let (m, at) = error_of(&text, "= (%8, %9)", "= (%8, $0)");
    assert_eq!(m, "expected a slot `%N`, found `$0`");
    assert_eq!(at, "$0");

    // operand order and shape
    let (m, at) = error_of(&text, "(%8, $1 * 0x1)", "($1 * 0x1, %8)");
    assert!(
        m.starts_with("operands of \"tfhe.clear_linear\" come in order: terms"),
        "{m}"
    );
    assert_eq!(at, "%8");
    let (m, at) = error_of(&text, "$0 * 0x0)", "$0 * 0x0, %1 * $2)");
    assert!(m.starts_with("operands of \"tfhe.clear_linear\" come in order"), "{m}");
    assert_eq!(at, "%1 * $2");
    let (m, at) = error_of(&text, "(%8, $1 * 0x1)", "(%8, $1)");
    assert_eq!(m, "expected `*` and a unit: a clear constant is `$N * unit`, found `)`");
    assert_eq!(at, ")");
    let (m, at) = error_of(&text, "%0 * $1 * -2", "%0 * $1 * -2.5");
    assert_eq!(m, "factor: expected a signed 64-bit integer, found `-2.5`");
    assert_eq!(at, "-2.5");
    let (m, at) = error_of(&text, "$0 * 0x800", "$0 * -0x800");
    assert_eq!(m, "unit: expected an unsigned 64-bit integer, found `-0x800`");
    assert_eq!(at, "-0x800");
    let (m, at) = error_of(&text, "%0 * $1 * -2", "%0 * $1 * $2");
    assert_eq!(m, "expected a factor, found `$2`");
    assert_eq!(at, "$2");
    let (m, at) = error_of(&text, "%0 * $1 * -2", "%0 * @x");
    assert_eq!(m, "expected a coefficient or a clear value `$N`, found `@x`");
    assert_eq!(at, "@x");

    // the lexer
    let (m, at) = error_of(&text, "$6 * 0xffffffffffffffff", "$ * 0xffffffffffffffff");
    assert_eq!(m, "expected a clear value number after `$`");
    assert_eq!(at, "$");
    let (m, at) = error_of(&text, "$6 * 0xffffffffffffffff", "$4294967296 * 0x1");
    assert_eq!(m, "clear value number out of range (at most 2^32 - 1)");
    assert_eq!(at, "$4294967296");

    // statements
    let (m, at) = error_of(&text, "\"tfhe.clear_linear\"(%3 * $6)", "\"tfhe.clear_lin\"(%3 * $6)");
    assert_eq!(
        m,
        "unknown instruction \"tfhe.clear_lin\" (expected \"tfhe.linear\", \"tfhe.clear_linear\", \"tfhe.pbs\" or \"tfhe.lane\")"
    );
    assert_eq!(at, "\"tfhe.clear_lin\"");
    let (m, at) = error_of(&text, "tfhe.clear_input \"b\"", "tfhe.clear_inputs \"b\"");
    assert!(
        m.starts_with("unknown statement `tfhe.clear_inputs` (expected tfhe.partition, tfhe.input, tfhe.clear_input,"),
        "{m}"
    );
    assert_eq!(at, "tfhe.clear_inputs");
    let (m, at) = error_of(
        &text,
        "  tfhe.output",
        "  tfhe.clear_input \"late\" [] {width = 1, signed = false} -> $7\n  tfhe.output",
    );
    assert!(m.starts_with("a clear input cannot follow instructions"), "{m}");
    assert_eq!(at, "tfhe.clear_input");
}

#[test]
fn odd_names_and_empty_programs_round_trip() {
    let mut p = sample();
    for name in ["my prog", "", "a.b$c_1", "1abc", "@\"x\""] {
        p.name = name.into();
        let text = round_trip(&p);
        if name == "a.b$c_1" {
            assert!(text.starts_with("tfhe.program @a.b$c_1 {"), "{text}");
        }
    }
    let empty = Program {
        name: "e".into(),
        partitions: vec![params()],
        inputs: vec![],
        outputs: vec![],
        num_input_slots: 0,
        instrs: vec![],
        tables: vec![],
        instr_origin: vec![],
        origins: vec![],
        noise: NoiseReport::default(),
    };
    let text = round_trip(&empty);
    assert!(text.contains("tfhe.noise {worst_log2 = 0.0, global_log2 = 0.0, estimated_seconds = 0.0, pbs = []}"));
    // the noise report is optional (default when absent); comments and spacing are free
    let r = params().raw().to_owned();
    let loose = format!(
        "// a comment\ntfhe.program @e {{ks_level=5,n=880,k=2,N=1024,lwe_noise_log2={},glwe_noise_log2={},\
         pbs_base_log=23,pbs_level=1,ks_base_log=3}}{{}}",
        r.lwe_noise_bound_log2, r.glwe_noise_bound_log2
    );
    assert_eq!(parse_program(&loose).unwrap(), empty);
}

#[test]
fn floats_round_trip_exactly() {
    let mut p = sample();
    for v in [
        0.1 + 0.2,
        -1e-300,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::INFINITY,
        1e16,
        123_456_789.123_456_79,
        -0.0,
    ] {
        p.noise.log2_p_error_worst_lookup = v;
        p.noise.estimated_seconds = -v;
        let back = parse_program(&print_program(&p)).unwrap();
        assert_eq!(back.noise.log2_p_error_worst_lookup.to_bits(), v.to_bits());
        assert_eq!(back.noise.estimated_seconds.to_bits(), (-v).to_bits());
    }
    // NaN is not equal to itself, but it still reads back as NaN
    p.noise.log2_p_error_global = f64::NAN;
    assert!(parse_program(&print_program(&p))
        .unwrap()
        .noise
        .log2_p_error_global
        .is_nan());
}

fn compiled(src: &str) -> Program {
    let m = fhec_ir::parse_module(src).unwrap();
    let v = fhec_ir::verify(&m).unwrap();
    crate::compile(&v, &Default::default(), Some(src)).unwrap().program
}

fn mlp_text() -> String {
    print_program(&compiled(include_str!("../../../../examples/mlp.fhe")))
}

#[test]
fn compiled_examples_round_trip() {
    for src in [
        include_str!("../../../../examples/mlp.fhe"),
        include_str!("../../../../examples/tree.fhe"),
    ] {
        let p = compiled(src);
        let text = round_trip(&p);
        assert!(text.starts_with("tfhe.program @main {n = "), "{text}");
        assert!(text.contains("\"tfhe.pbs\""), "{text}");
    }
}

/// Parses, and checks what every answer must satisfy: errors point inside the text, accepted texts
/// are valid programs that round trip.
fn check_any(text: &str) -> bool {
    match parse_program(text) {
        Ok(p) => {
            p.validate().unwrap();
            let again = print_program(&p);
            assert_eq!(parse_program(&again).unwrap(), p);
            true
        }
        Err(d) => {
            let s = d.span.expect("parse errors are located");
            assert!(s.start <= s.end && s.end <= text.len(), "{s:?} in {} bytes", text.len());
            assert!(!d.message.is_empty());
            let _ = d.render("t", text);
            false
        }
    }
}

#[test]
fn every_prefix_of_a_program_is_an_error() {
    check_prefixes(&mlp_text());
}

#[test]
fn every_prefix_of_a_clear_program_is_an_error() {
    check_prefixes(&print_program(&clear_sample()));
}

fn check_prefixes(text: &str) {
    for end in 0..text.len() {
        if text.is_char_boundary(end) {
            let prefix = &text[..end];
            // only the whole text (up to its final newline) is a program
            assert_eq!(check_any(prefix), end >= text.trim_end().len(), "prefix of {end} bytes");
        }
    }
    assert!(check_any(text));
}

#[test]
fn random_corruptions_never_panic() {
    check_corruptions(&mlp_text(), 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn random_corruptions_of_a_clear_program_never_panic() {
    check_corruptions(&print_program(&clear_sample()), 0x2545_f491_4f6c_dd1d);
}

/// 600 random one-byte edits of an ASCII `text`: most are rejected, none panics.
fn check_corruptions(text: &str, seed: u64) {
    assert!(text.is_ascii());
    let mut state = seed;
    let mut rng = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    const ALPHABET: &[u8] = b"%$@\"\\{}()[],=:*.->0123456789abcdefxtNo_ \n\t/!~";
    let (mut ok, mut bad) = (0, 0);
    for round in 0..600 {
        let mut b = text.as_bytes().to_vec();
        let pos = (rng() % b.len() as u64) as usize;
        let byte = if rng() % 2 == 0 {
            ALPHABET[(rng() % ALPHABET.len() as u64) as usize]
        } else {
            (rng() % 0x80) as u8
        };
        match round % 3 {
            0 => b[pos] = byte,
            1 => {
                b.remove(pos);
            }
            _ => b.insert(pos, byte),
        }
        // every byte of the text is ASCII, so this is still UTF-8
        let t = String::from_utf8(b).unwrap();
        if check_any(&t) {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    assert!(bad > 300, "{ok} accepted, {bad} rejected");
}

#[test]
fn random_bytes_never_panic() {
    let mut state = 12345u64;
    for _ in 0..300 {
        let len = (state % 200) as usize;
        let mut b = Vec::with_capacity(len);
        for _ in 0..len {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            b.push((state >> 33) as u8);
        }
        let t = String::from_utf8_lossy(&b);
        assert!(!check_any(&t));
    }
}

/// The error for `text` with `from` replaced by `to`: its message, and the text it points at.
fn error_of(text: &str, from: &str, to: &str) -> (String, String) {
    assert!(text.contains(from), "`{from}` not in the text");
    let t = text.replacen(from, to, 1);
    let d = parse_program(&t).expect_err("the edit makes the text invalid");
    let s = d.span.expect("located");
    (d.message, t[s.start..s.end].to_string())
}

#[test]
fn typical_mistakes_are_located() {
    let text = print_program(&sample());

    let (m, at) = error_of(&text, "\"tfhe.pbs\"(%5)", "\"tfhe.pbz\"(%5)");
    assert!(m.starts_with("unknown instruction \"tfhe.pbz\""), "{m}");
    assert_eq!(at, "\"tfhe.pbz\"");

    let (m, at) = error_of(&text, "%7 = ", "%8 = ");
    assert!(m.contains("expected %7 here"), "{m}");
    assert_eq!(at, "%8");

    let (m, at) = error_of(&text, "\"tfhe.pbs\"(%5)", "\"tfhe.pbs\"(%12)");
    assert_eq!(m, "use of undefined slot %12 (only %0 ... %6 are defined here)");
    assert_eq!(at, "%12");

    let (m, at) = error_of(&text, "= (%7, %9)", "= (%7, %10)");
    assert!(m.starts_with("use of undefined slot %10"), "{m}");
    assert_eq!(at, "%10");

    let (m, at) = error_of(&text, "= [0x0, 0x1000000000000001]", "= [0x0]");
    assert_eq!(m, "table @t2 has 1 entries, expected 2 (2^1 for precision 1)");
    assert_eq!(at, "[0x0]");

    let (m, at) = error_of(&text, "table = @t1", "table = @t7");
    assert_eq!(m, "reference to undefined table @t7");
    assert_eq!(at, "@t7");

    let (m, at) = error_of(&text, "origin @o3", "origin @o9");
    assert_eq!(m, "reference to undefined origin @o9");
    assert_eq!(at, "@o9");

    let (m, at) = error_of(&text, "tfhe.noise", "tfhe.nois");
    assert!(m.starts_with("unknown statement `tfhe.nois`"), "{m}");
    assert_eq!(at, "tfhe.nois");

    let (m, at) = error_of(&text, "-> %0 ... %3", "-> %0 ... %2");
    assert_eq!(m, "input `x` has 4 elements but the range has 3 slots");
    assert_eq!(at, "%0 ... %2");

    let (m, at) = error_of(&text, "{constant = 0x0}", "{constant = 0x0, const = 1}");
    assert!(m.starts_with("unknown attribute `const`"), "{m}");
    assert_eq!(at, "const");

    let (m, at) = error_of(&text, "{shift = 5, offset", "{shift = 64, offset");
    assert_eq!(m, "shift 64 is above 63");
    assert_eq!(at, "64");

    let (m, at) = error_of(&text, "\"tfhe.pbs\"(%5)", "\"tfhe.pbs\"(%5 * 2)");
    assert_eq!(m, "a lookup reads its input without a coefficient");
    assert_eq!(at, "2");

    let (m, at) = error_of(&text, "%0 * 3", "%0 * 3.5");
    assert!(m.starts_with("coefficient: expected a signed 64-bit integer"), "{m}");
    assert_eq!(at, "3.5");

    let (m, _) = error_of(&text, "tfhe.table @t1", "tfhe.table @t2");
    assert_eq!(m, "expected @t1 here: tables are numbered in order");

    // a statement out of order
    let first_output = text.find("  tfhe.output").unwrap();
    let line_end = first_output + text[first_output..].find('\n').unwrap() + 1;
    let moved = format!(
        "{}{}",
        &text[..line_end],
        text[line_end..].replacen(
            "  tfhe.table @t0",
            "  %99 = \"tfhe.linear\"() {constant = 0x0} origin @o0\n  tfhe.table @t0",
            1
        )
    );
    let d = parse_program(&moved).unwrap_err();
    assert!(
        d.message.starts_with("an instruction cannot follow outputs"),
        "{}",
        d.message
    );
}

#[test]
fn insecure_parameters_are_rejected() {
    let text = print_program(&sample());
    let r = *params().raw();
    let from = format!("lwe_noise_log2 = {}", r.lwe_noise_bound_log2);
    let to = format!("lwe_noise_log2 = {}", r.lwe_noise_bound_log2 - 10);
    let (m, at) = error_of(&text, &from, &to);
    assert!(m.starts_with("parameters: insecure: LWE noise bound"), "{m}");
    assert!(at.starts_with("{n = 880") && at.ends_with('}'), "{at}");

    let (m, _) = error_of(&text, "N = 1024", "N = 1000");
    assert!(m.contains("not a power of two"), "{m}");

    // a decomposition whose product would overflow is refused before the security check
    let (m, at) = error_of(&text, "pbs_base_log = 23", "pbs_base_log = 9223372036854775808");
    assert_eq!(m, "`pbs_base_log` = 9223372036854775808 is above 64");
    assert_eq!(at, "9223372036854775808");

    // rounded bootstrap keys: read when given, refused past the limit at the dictionary
    let rounded =
        parse_program(&text.replacen(", ks_level = 5}", ", ks_level = 5, bsk_rounding_log2 = 17}", 1)).unwrap();
    assert_eq!(rounded.partitions[0].raw().bsk_rounding_log2, 17);
    let (m, at) = error_of(&text, ", ks_level = 5}", ", ks_level = 5, bsk_rounding_log2 = 49}");
    assert!(m.contains("bootstrap key bodies rounded to 2^49"), "{m}");
    assert!(at.starts_with("{n = 880") && at.ends_with('}'), "{at}");

    let (m, at) = error_of(&text, ", ks_level = 5}", "}");
    assert_eq!(m, "missing attribute `ks_level`");
    assert!(at.starts_with("{n = "), "{at}");
}

/// The sample with a second partition (a smaller key, prefix of partition 0's) running its lookup.
fn partitioned_sample() -> Program {
    let mut p = sample();
    // sharing its first 256 coefficients, partition 0's key needs the noise that secures the
    // other 1792 alone (docs/crypto.md)
    let shared = fhec_runtime::RawParamSet {
        glwe_noise_bound_log2: 24,
        ..*params().raw()
    };
    p.partitions[0] = ParamSet::new(shared).unwrap();
    p.partitions
        .push(ParamSet::with_secure_noise(600, 1, 256, 15, 2, 2, 6).unwrap());
    let insecure = vec![params(), p.partitions[1]];
    let m = fhec_runtime::params::partitions_problem(&insecure).unwrap();
    assert!(m.contains("2^17 < 2^24") && m.contains("1792 coefficients"), "{m}");
    for ins in &mut p.instrs {
        if let Instr::Pbs { table, partition, .. } = ins {
            if p.tables[*table as usize].precision <= 8 {
                *partition = 1;
            }
        }
    }
    p
}

#[test]
fn partitions_round_trip_and_mistakes_are_located() {
    let p = partitioned_sample();
    assert!(p.instrs.iter().any(|i| matches!(i, Instr::Pbs { partition: 1, .. })));
    let text = round_trip(&p);
    assert!(
        text.contains("  tfhe.partition @p1 {n = 600, k = 1, N = 256, "),
        "{text}"
    );
    assert!(text.contains(", table = @t1, partition = @p1}"), "{text}");
    let (m, at) = error_of(&text, "partition = @p1}", "partition = @p2}");
    assert_eq!(m, "no partition `@p2` is declared");
    assert_eq!(at, "@p2");
    let (m, at) = error_of(&text, "tfhe.partition @p1", "tfhe.partition @p3");
    assert_eq!(m, "expected partition `@p1` next, found `@p3`");
    assert_eq!(at, "@p3");
    let (m, _) = error_of(&text, "partition = @p1}", "partition = @t1}");
    assert_eq!(m, "expected a partition `@pN`, found `@t1`");
    // a partition after the inputs is out of order
    let moved = text.replacen("  tfhe.partition @p1", "  tfhe.partitionX @p1", 1);
    assert!(parse_program(&moved).is_err());
}

#[test]
fn lanes_round_trip_and_their_mistakes_are_located() {
    let mut p = sample();
    p.instrs.push(Instr::Lane { pbs: 7, boxes: 3 });
    p.instr_origin.push(2);
    let text = round_trip(&p);
    assert!(
        text.contains("%10 = \"tfhe.lane\"(%7) {boxes = 3} origin @o2\n"),
        "{text}"
    );
    let lane = "\"tfhe.lane\"(%7) {boxes = 3}";
    let (m, at) = error_of(&text, lane, "\"tfhe.lane\"(%5) {boxes = 3}");
    assert_eq!(
        m,
        "%5 is not a lookup (\"tfhe.pbs\"): a lane reads a lookup's blind rotation"
    );
    assert_eq!(at, "(%5)");
    let (m, _) = error_of(&text, lane, "\"tfhe.lane\"(%7, %5) {boxes = 3}");
    assert!(m.starts_with("a lane takes exactly one operand"), "{m}");
    let (m, _) = error_of(&text, lane, "\"tfhe.lane\"(%7) {}");
    assert!(m.contains("boxes"), "{m}");
    let (m, _) = error_of(&text, lane, "\"tfhe.lane\"(%7) {boxes = 3, shift = 1}");
    assert!(m.contains("shift"), "{m}");
    let (m, _) = error_of(&text, lane, "\"tfhe.lane\"(%7) {boxes = 16}");
    assert!(m.contains("outside its lookup's 16 boxes"), "{m}");
}
