//! Tree ensembles: import of other libraries' model files into fhec's schema, and quantisation into
//! a typed `QuantizedTrees` (which compiles through the facade).

use numpy::PyReadonlyArray2;
use pyo3::prelude::*;

use crate::errors::{compile_err, to_py};
use crate::quant::QuantizedTrees;

/// Quantises a tree ensemble (fhec's schema, JSON) with input quantisers calibrated on
/// `calibration` (samples × features).
#[pyfunction]
#[pyo3(signature = (ensemble, calibration, n_bits, leaf_bits, quantizer="quantile"))]
pub(crate) fn trees_quantize(
    ensemble: &str,
    calibration: PyReadonlyArray2<'_, f64>,
    n_bits: u32,
    leaf_bits: u32,
    quantizer: &str,
) -> PyResult<QuantizedTrees> {
    let kind = match quantizer {
        "quantile" => fhec::trees::QuantizerKind::Quantile,
        "uniform" => fhec::trees::QuantizerKind::Uniform,
        other => {
            return Err(compile_err(format!(
                "quantizer must be 'quantile' or 'uniform', got {other:?}"
            )))
        }
    };
    let e = fhec::trees::Ensemble::from_json(ensemble).map_err(to_py)?;
    let rows: Vec<Vec<f64>> = calibration.as_array().rows().into_iter().map(|r| r.to_vec()).collect();
    let q = fhec::trees::quantize_with(&e, &rows, n_bits, leaf_bits, kind).map_err(to_py)?;
    Ok(QuantizedTrees { q })
}

/// Reads a tree-ensemble model file of another library into fhec's schema (JSON): `format` is
/// `"xgboost"` (XGBoost's JSON model), `"lightgbm"` (`Booster.dump_model()` as JSON) or `"fhec"`.
#[pyfunction]
pub(crate) fn trees_import(format: &str, text: &str) -> PyResult<String> {
    let e = match format {
        "xgboost" => fhec::trees::xgboost::import(text),
        "lightgbm" => fhec::trees::lightgbm::import(text),
        "fhec" => fhec::trees::Ensemble::from_json(text),
        other => return Err(compile_err(format!("unknown model format {other:?}"))),
    }
    .map_err(to_py)?;
    Ok(e.to_json())
}
