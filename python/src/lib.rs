//! `fhec._fhec`: the Rust side of the Python package, a thin layer over the `fhec` facade. Python
//! wraps these classes (`py_src/fhec`); tensors cross as numpy arrays (int64 for the DSL's integers). Every facade error becomes one exception of `fhec.errors`, chosen by its kind.

mod circuit;
mod deploy;
mod errors;
mod onnx;
mod quant;
mod trace;
mod trees;

use fhec::runtime::ClearTensor;
use ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::prelude::*;

/// An integer array from Python (int64; the Python side converts).
pub(crate) type Flat<'py> = PyReadonlyArrayDyn<'py, i64>;
/// An integer array for Python.
pub(crate) type Out<'py> = Bound<'py, PyArrayDyn<i64>>;

pub(crate) fn tensor(a: Flat<'_>) -> PyResult<ArrayD<i64>> {
    Ok(a.as_array().to_owned())
}

pub(crate) fn flat<'py>(py: Python<'py>, t: &ArrayD<i64>) -> Out<'py> {
    t.to_owned().into_pyarray(py)
}

fn clear(a: &Flat<'_>) -> ClearTensor {
    let v = a.as_array();
    ClearTensor {
        shape: v.shape().to_vec(),
        values: v.iter().copied().collect(),
    }
}

pub(crate) fn clear_batch(samples: Vec<Vec<Flat<'_>>>) -> Vec<Vec<ClearTensor>> {
    samples.iter().map(|s| s.iter().map(clear).collect()).collect()
}

pub(crate) fn flat_batch(py: Python<'_>, out: Vec<Vec<ClearTensor>>) -> PyResult<Vec<Vec<Out<'_>>>> {
    out.into_iter()
        .map(|s| {
            s.into_iter()
                .map(|t| {
                    ArrayD::from_shape_vec(IxDyn(&t.shape), t.values)
                        .map(|a| a.into_pyarray(py))
                        .map_err(|e| errors::py_err(fhec::Error::new(fhec::ErrorKind::Shape, e.to_string())))
                })
                .collect()
        })
        .collect()
}

#[pymodule]
fn _fhec(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(trees::trees_quantize, m)?)?;
    m.add_function(wrap_pyfunction!(trees::trees_import, m)?)?;
    m.add_function(wrap_pyfunction!(quant::post_process, m)?)?;
    m.add_function(wrap_pyfunction!(onnx::onnx_eval, m)?)?;
    m.add_function(wrap_pyfunction!(onnx::onnx_quantize, m)?)?;
    m.add_function(wrap_pyfunction!(onnx::onnx_compile_auto, m)?)?;
    m.add_function(wrap_pyfunction!(onnx::mlp_network, m)?)?;
    m.add_class::<onnx::QuantizedNetwork>()?;
    m.add("AUTO_OUTPUT_PARTS", fhec::onnx::AUTO_OUTPUT_PARTS.to_vec())?;
    m.add("AUTO_PARTS_GAIN", fhec::onnx::AUTO_PARTS_GAIN)?;
    m.add_class::<trace::Tracer>()?;
    m.add_class::<trace::Value>()?;
    m.add_class::<circuit::Circuit>()?;
    m.add_class::<circuit::Client>()?;
    m.add_class::<circuit::Server>()?;
    m.add_class::<deploy::ClientModel>()?;
    m.add_class::<deploy::ServerModel>()?;
    m.add_class::<quant::QuantizedLinear>()?;
    m.add_class::<quant::QuantizedTrees>()?;
    Ok(())
}
