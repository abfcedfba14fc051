//! Every op's documented examples: the valid one parses, verifies, prints back to itself; the invalid one
//! is rejected by the verifier with the documented message.

use fhec_ir::{parse_module, print_module, verify, OpKind};

#[test]
fn valid_examples_verify_and_round_trip() {
    for &k in OpKind::ALL {
        let doc = k.def().doc();
        let m = parse_module(doc.valid).unwrap_or_else(|e| panic!("{k}: valid example does not parse: {e}"));
        if let Err(errs) = verify(&m) {
            panic!("{k}: valid example does not verify: {errs:?}");
        }
        assert!(
            m.functions[0].body.iter().any(|&o| m.functions[0].op(o).kind == k),
            "{k}: valid example does not use the op"
        );
        assert_eq!(
            print_module(&m),
            format!("{}\n", doc.valid),
            "{k}: valid example is not canonical"
        );
    }
}

#[test]
fn invalid_examples_are_rejected_with_their_message() {
    for &k in OpKind::ALL {
        let doc = k.def().doc();
        let m = parse_module(doc.invalid).unwrap_or_else(|e| panic!("{k}: invalid example does not parse: {e}"));
        assert!(
            m.functions[0].body.iter().any(|&o| m.functions[0].op(o).kind == k),
            "{k}: example lacks the op"
        );
        let errs = verify(&m)
            .err()
            .unwrap_or_else(|| panic!("{k}: invalid example verifies"));
        assert!(
            errs.iter().any(|e| e.message.contains(doc.error)),
            "{k}: expected an error containing {:?}, got {errs:?}",
            doc.error
        );
        assert!(
            errs.iter().all(|e| e.span.is_some()),
            "{k}: error without a location: {errs:?}"
        );
    }
}

#[test]
fn names_round_trip() {
    for &k in OpKind::ALL {
        assert_eq!(OpKind::from_name(k.name()), Some(k));
        assert!(k.name().starts_with("fhe."));
        assert!(!k.def().doc().summary.is_empty());
    }
}

#[test]
fn costs_add_up_over_a_function() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mlp.fhe")).expect("example");
    let m = parse_module(&src).expect("parses");
    let c = m.functions[0].cost();
    // matmul: 2 outputs × 4 terms; round lsbs=5 on 2 elements: 10 one-bit PBS and 20 leveled ops; lut: 2 PBS at 4 bits
    assert_eq!(c.pbs.get(&1), Some(&10));
    assert_eq!(c.pbs.get(&4), Some(&2));
    assert_eq!(c.pbs_count(), 12);
    assert_eq!(c.leveled, 8 + 20);
}

#[test]
fn noise_classes_follow_the_op_kind() {
    use fhec_ir::NoiseClass;
    for &k in OpKind::ALL {
        let class = k.def().noise_class();
        let doc = k.def().doc().semantics.to_lowercase();
        match class {
            NoiseClass::Lut => assert!(
                doc.contains("pbs") || doc.contains("lookup") || doc.contains("bootstrap"),
                "{k}: {doc}"
            ),
            NoiseClass::Linear => assert!(doc.contains("leveled"), "{k}: {doc}"),
            NoiseClass::Zero => {}
        }
    }
}
