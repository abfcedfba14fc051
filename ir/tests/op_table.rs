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
