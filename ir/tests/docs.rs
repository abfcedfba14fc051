//! `docs/ir.md` carries a per-op reference generated from the op table (summary, semantics, operands,
//! attributes, noise class, examples). This test fails when it is stale; regenerate it with
//! `FHEC_BLESS=1 cargo test --release -p fhec-ir --test docs`.

use fhec_ir::ops::{Arity, AttrKind, NoiseClass, OperandRule};
use fhec_ir::OpKind;
use std::fmt::Write;

const BEGIN: &str = "<!-- BEGIN GENERATED OP REFERENCE -->";
const END: &str = "<!-- END GENERATED OP REFERENCE -->";

fn reference() -> String {
    let mut s =
        String::from("\n## Op reference\n\nGenerated from the op table (`ir/src/ops/`); do not edit by hand.\n\n");
    s += "| op | summary |\n|---|---|\n";
    for &k in OpKind::ALL {
        let _ = writeln!(
            s,
            "| [`{}`](#{}) | {} |",
            k.name(),
            k.name().replace('.', ""),
            k.def().doc().summary
        );
    }
    for &k in OpKind::ALL {
        let d = k.def();
        let doc = d.doc();
        let _ = write!(s, "\n### `{}`\n\n{}\n\n{}\n\n", k.name(), doc.summary, doc.semantics);
        let arity = match d.arity() {
            Arity::Exactly(0) => "none".to_string(),
            a => a.describe(),
        };
        let rule = match d.operand_rule() {
            OperandRule::AllEncrypted => "all encrypted",
            OperandRule::SomeEncrypted => "at least one encrypted",
            OperandRule::OneEncrypted => "exactly one encrypted, the other clear",
            OperandRule::FirstEncrypted => "the first encrypted, the others clear",
            OperandRule::SameElem => "encrypted or clear, all of one element type",
            OperandRule::SameSign => "of one signedness, clear or encrypted (widths may differ)",
            OperandRule::None => "—",
        };
        let noise = match d.noise_class() {
            NoiseClass::Zero => "zero (no ciphertext arithmetic)",
            NoiseClass::Linear => "linear (leveled)",
            NoiseClass::Lut => "LUT (programmable bootstrapping)",
        };
        let _ = writeln!(s, "- operands: {arity}; {rule}");
        let _ = writeln!(s, "- noise class: {noise}");
        if d.attrs().is_empty() {
            let _ = writeln!(s, "- attributes: none");
        } else {
            let _ = writeln!(s, "- attributes:");
            for a in d.attrs() {
                let kind = match a.kind {
                    AttrKind::Int => "integer",
                    AttrKind::Bool => "boolean",
                    AttrKind::IntArray => "array of integers",
                    AttrKind::Dense => "dense tensor",
                };
                let req = if a.required { "required" } else { "optional" };
                let _ = writeln!(s, "  - `{}` ({kind}, {req}): {}", a.name, a.doc);
            }
        }
        let _ = write!(
            s,
            "\nValid:\n\n```mlir\n{}\n```\n\nInvalid — the verifier reports “{}”:\n\n```mlir\n{}\n```\n",
            doc.valid, doc.error, doc.invalid
        );
    }
    s
}

#[test]
fn ir_md_op_reference_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ir.md");
    let text = std::fs::read_to_string(&path).expect("docs/ir.md exists");
    let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else {
        panic!("docs/ir.md lacks the {BEGIN} / {END} markers");
    };
    let want = format!("{}{BEGIN}\n{}{END}{}", &text[..a], reference(), &text[b + END.len()..]);
    if want != text {
        if std::env::var_os("FHEC_BLESS").is_some() {
            std::fs::write(&path, &want).expect("write docs/ir.md");
        } else {
            panic!("docs/ir.md's op reference is stale: run FHEC_BLESS=1 cargo test --release -p fhec-ir --test docs");
        }
    }
    for &k in OpKind::ALL {
        assert!(
            want.contains(&format!("### `{}`", k.name())),
            "{k} is missing from the op reference"
        );
    }
}
