//! Tree ensembles: import, quantisation and compilation through the facade.

use fhec::CompileOptions;
use pyo3::prelude::*;

use crate::circuit::{p_error_of, Circuit};
use crate::errors::{compile_err, py_err, to_py};

/// Quantises a tree ensemble (schema JSON) with input quantisers calibrated on `calibration`
/// (`(shape, row-major floats)`, one row per sample); returns the quantised ensemble as JSON.
#[pyfunction]
#[pyo3(signature = (ensemble, calibration, n_bits, leaf_bits, quantizer="quantile"))]
pub(crate) fn trees_quantize(
    ensemble: &str,
    calibration: (Vec<usize>, Vec<f64>),
    n_bits: u32,
    leaf_bits: u32,
    quantizer: &str,
) -> PyResult<String> {
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
    let (shape, values) = calibration;
    if shape.len() != 2 || shape[0] * shape[1] != values.len() {
        return Err(compile_err("the calibration set must be a matrix (samples × features)"));
    }
    let rows: Vec<Vec<f64>> = values.chunks(shape[1].max(1)).map(|r| r.to_vec()).collect();
    let q = fhec::trees::quantize_with(&e, &rows, n_bits, leaf_bits, kind).map_err(to_py)?;
    Ok(q.to_json())
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

/// Builds and compiles the module of a quantised ensemble (JSON from `trees_quantize`); returns
/// the circuit and the builder's report (JSON).
#[pyfunction]
#[pyo3(signature = (quantized, leaf_mode=None, p_error=None, global_p_error=None))]
pub(crate) fn trees_compile(
    py: Python<'_>,
    quantized: &str,
    leaf_mode: Option<&str>,
    p_error: Option<f64>,
    global_p_error: Option<f64>,
) -> PyResult<(Circuit, String)> {
    let q = fhec::trees::Quantized::from_json(quantized).map_err(to_py)?;
    let mode = match leaf_mode {
        None => None,
        Some("fused") => Some(fhec::trees::LeafMode::Fused),
        Some("indicator") => Some(fhec::trees::LeafMode::Indicator),
        Some(other) => {
            return Err(compile_err(format!(
                "leaf_mode must be 'fused' or 'indicator', got {other:?}"
            )))
        }
    };
    let p_error = p_error_of(p_error, global_p_error)?;
    let (module, report) = fhec::trees::build_module(&q, mode).map_err(to_py)?;
    let opts = CompileOptions {
        p_error,
        ..Default::default()
    };
    let circuit = py.detach(|| fhec::compile(module, &opts)).map_err(py_err)?;
    let report = format!(
        "{{\"input_bits\": {}, \"leaves\": {}, \"lookups\": {}, \"lookup_bits\": {}, \"max_depth\": {}, \"leaf_mode\": \"{}\"}}",
        report.input_bits,
        report.leaves,
        report.lookups,
        report.lookup_bits,
        report.max_depth,
        match report.leaf_mode {
            fhec::trees::LeafMode::Fused => "fused",
            fhec::trees::LeafMode::Indicator => "indicator",
        }
    );
    Ok((Circuit::new(circuit, 1), report))
}
