//! The JSON seeds of the fuzz targets (`fuzz/fixtures/`): files each reader accepts, made by the
//! writers of this version. Checked here (they parse, and equal what the writers give today);
//! `FHEC_BLESS=1 cargo test --release -p fhec --test fuzz_fixtures` rewrites them.

use std::path::PathBuf;

use fhec::quant::{Post, QuantizedLinear};
use fhec::trees::Ensemble;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/fixtures")
        .join(name)
}

fn check(name: &str, text: &str) {
    let path = fixture(name);
    if std::env::var("FHEC_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(committed, text, "{name} is stale: rerun with FHEC_BLESS=1");
}

#[test]
fn fuzz_seed_files_parse_and_are_current() {
    let w = [1.0, -2.0, 0.5, 3.0, -0.25, 1.5];
    let calib = [0.0, -1.0, 2.0, 1.0, 1.0, 0.0, 0.5, 0.5];
    let linear = QuantizedLinear::build(&w, 2, 3, &[0.25, -1.0, 0.0], &calib, 4, 5).unwrap();
    let text = linear.to_json();
    assert_eq!(QuantizedLinear::from_json(&text).unwrap().to_json(), text);
    check("linear_model.json", &text);
    for (name, post) in [
        ("spec_softmax.json", Post::Softmax),
        ("spec_identity.json", Post::Identity),
    ] {
        let spec = linear.client_spec(post);
        let text = spec.to_json();
        assert_eq!(fhec::ClientSpec::from_json(&text).unwrap(), spec);
        check(name, &text);
    }
    let xgb = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../frontends/trees/tests/data/xgb_binary.json"),
    )
    .unwrap();
    let ensemble = fhec::trees::xgboost::import(&xgb).unwrap();
    let text = ensemble.to_json();
    assert_eq!(Ensemble::from_json(&text).unwrap(), ensemble);
    check("ensemble_xgb_binary.json", &text);
}
