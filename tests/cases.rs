//! Snapshot tests of `tests/cases/**/*.fhe`.
//!
//! Each file holds one or more programs separated by `// -----`. A program either verifies — then the
//! snapshot holds its canonical print, and printing must reproduce the case (comments aside) — or it
//! carries `// expected-error` annotations — then the snapshot holds the rendered diagnostics, and each
//! annotation must match a diagnostic on its line. Review changed snapshots with `cargo insta review`.

use fhec_ir::text::split_cases;
use fhec_ir::{parse_module, print_module, verify, Diagnostic};
use fhec_tests::expected_errors;

fn without_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with("//") && !l.trim().is_empty())
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

fn check_case(file: &str, text: &str) -> String {
    let expected = expected_errors(text);
    let diags: Vec<Diagnostic> = match parse_module(text) {
        Err(d) => vec![d],
        Ok(m) => match verify(&m) {
            Ok(_) => {
                assert!(
                    expected.is_empty(),
                    "{file}: case verifies but expects errors {expected:?}"
                );
                let printed = print_module(&m);
                assert_eq!(
                    without_comments(&printed),
                    without_comments(text),
                    "{file}: case is not in canonical form; `fhec fmt` would change it"
                );
                let again = parse_module(&printed).expect("printed text parses");
                assert_eq!(
                    print_module(&again),
                    printed,
                    "{file}: print → parse → print changed the text"
                );
                return printed;
            }
            Err(ds) => ds,
        },
    };
    assert!(
        !expected.is_empty(),
        "{file}: case fails without an expected-error annotation:\n{}",
        diags.iter().map(|d| d.render(file, text)).collect::<String>()
    );
    for e in &expected {
        let hit = diags
            .iter()
            .any(|d| d.line_col(text).map(|(l, _)| l) == Some(e.line) && d.message.contains(&e.text));
        assert!(
            hit,
            "{file}: no diagnostic on line {} containing {:?}; got:\n{}",
            e.line,
            e.text,
            diags.iter().map(|d| d.render(file, text)).collect::<String>()
        );
    }
    diags
        .iter()
        .map(|d| d.render(file, text))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn case_files() {
    insta::glob!("cases/**/*.fhe", |path| {
        let src = std::fs::read_to_string(path).expect("readable case file");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let rel = path.strip_prefix(root).unwrap_or(path).display().to_string();
        let outputs: Vec<String> = split_cases(&src).iter().map(|c| check_case(&rel, &c.text)).collect();
        insta::assert_snapshot!(outputs.join("\n// -----\n\n"));
    });
}
