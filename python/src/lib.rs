//! `fhec._fhec`: the Rust side of the Python package, a thin layer over the `fhec` facade. Python
//! wraps these classes (`py_src/fhec`); the DSL's tensors cross as `(shape, flat values)` pairs of Python
//! ints, the models' data as numpy arrays. Every facade error becomes one exception of `fhec.errors`, chosen by its kind.

mod circuit;
mod errors;
mod quant;
mod trace;
mod trees;

use fhec::runtime::ClearTensor;
use ndarray::{ArrayD, IxDyn};
use pyo3::prelude::*;

pub(crate) type Flat = (Vec<usize>, Vec<i64>);

pub(crate) fn tensor((shape, values): Flat) -> PyResult<ArrayD<i64>> {
    ArrayD::from_shape_vec(IxDyn(&shape), values)
        .map_err(|e| errors::py_err(fhec::Error::new(fhec::ErrorKind::Shape, format!("bad tensor: {e}"))))
}

pub(crate) fn flat(t: &ArrayD<i64>) -> Flat {
    (t.shape().to_vec(), t.iter().copied().collect())
}

pub(crate) fn clear_batch(samples: Vec<Vec<Flat>>) -> Vec<Vec<ClearTensor>> {
    samples
        .into_iter()
        .map(|s| {
            s.into_iter()
                .map(|(shape, values)| ClearTensor { shape, values })
                .collect()
        })
        .collect()
}

pub(crate) fn flat_batch(out: Vec<Vec<ClearTensor>>) -> Vec<Vec<Flat>> {
    out.into_iter()
        .map(|s| s.into_iter().map(|t| (t.shape, t.values)).collect())
        .collect()
}

#[pymodule]
fn _fhec(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(trees::trees_quantize, m)?)?;
    m.add_function(wrap_pyfunction!(trees::trees_import, m)?)?;
    m.add_class::<trace::Tracer>()?;
    m.add_class::<trace::Value>()?;
    m.add_class::<circuit::Circuit>()?;
    m.add_class::<circuit::Client>()?;
    m.add_class::<circuit::Server>()?;
    m.add_class::<quant::QuantizedLinear>()?;
    m.add_class::<quant::QuantizedTrees>()?;
    Ok(())
}
