//! Importers against the libraries' own predictions: XGBoost models saved as JSON by xgboost and
//! LightGBM model dumps (`tests/data`, with the raw scores each library computed for 40 rows).

use fhec_trees::{lightgbm, xgboost, Ensemble};

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn check_margins(expected_file: &str, names: &[&str], import: fn(&str) -> Result<Ensemble, fhec_trees::TreeError>) {
    let expected: serde_json::Value = serde_json::from_str(&data(expected_file)).unwrap();
    for &name in names {
        let e = import(&data(&format!("{name}.json"))).unwrap_or_else(|err| panic!("{name}: {err}"));
        let x = expected[name]["X"].as_array().unwrap();
        let margin = expected[name]["margin"].as_array().unwrap();
        for (row, want) in x.iter().zip(margin) {
            let row: Vec<f64> = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let got = e.predict_raw(&row);
            let want: Vec<f64> = match want {
                serde_json::Value::Array(a) => a.iter().map(|v| v.as_f64().unwrap()).collect(),
                v => vec![v.as_f64().unwrap()],
            };
            assert_eq!(got.len(), want.len(), "{name}");
            for (g, w) in got.iter().zip(&want) {
                // xgboost sums in float32
                assert!(
                    (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                    "{name}: {got:?} vs {want:?} on {row:?}"
                );
            }
        }
    }
}

#[test]
fn xgboost_models_predict_the_libraries_margins() {
    check_margins(
        "xgb_expected.json",
        &["xgb_binary", "xgb_multi", "xgb_regression"],
        xgboost::import,
    );
}

#[test]
fn lightgbm_models_predict_the_libraries_raw_scores() {
    check_margins(
        "lgbm_expected.json",
        &["lgbm_binary", "lgbm_multi", "lgbm_regression", "lgbm_rf"],
        lightgbm::import,
    );
}

#[test]
fn lightgbm_dumps_that_are_not_supported_are_refused() {
    let text = data("lgbm_binary.json");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["objective"] = "poisson".into();
    assert!(lightgbm::import(&v.to_string())
        .unwrap_err()
        .to_string()
        .contains("poisson"));
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["tree_info"][0]["tree_structure"]["decision_type"] = "==".into();
    assert!(lightgbm::import(&v.to_string())
        .unwrap_err()
        .to_string()
        .contains("categorical"));
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["tree_info"][0]["tree_structure"]["missing_type"] = "Zero".into();
    assert!(lightgbm::import(&v.to_string())
        .unwrap_err()
        .to_string()
        .contains("Zero"));
    assert!(lightgbm::import("{}")
        .unwrap_err()
        .to_string()
        .contains("not a LightGBM model dump"));
    assert!(lightgbm::import(&data("xgb_binary.json")).is_err());
}

#[test]
fn xgboost_files_that_are_not_supported_are_refused() {
    let text = data("xgb_binary.json");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["learner"]["objective"]["name"] = "survival:cox".into();
    let err = xgboost::import(&v.to_string()).unwrap_err().to_string();
    assert!(err.contains("survival:cox"), "{err}");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["learner"]["gradient_booster"]["model"]["trees"][0]["split_type"][0] = 1.into();
    assert!(xgboost::import(&v.to_string())
        .unwrap_err()
        .to_string()
        .contains("categorical"));
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["learner"]["gradient_booster"]["name"] = "gblinear".into();
    assert!(xgboost::import(&v.to_string())
        .unwrap_err()
        .to_string()
        .contains("gblinear"));
    assert!(xgboost::import("{}")
        .unwrap_err()
        .to_string()
        .contains("not an XGBoost JSON model"));
    assert!(xgboost::import("not json").is_err());
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"][0] = 999.into();
    assert!(xgboost::import(&v.to_string()).is_err());
}
