//! Neural networks from ONNX (`fhec-onnx`): the float reference and post-training quantisation; the
//! Python side (`fhec.onnx`, `fhec.torch`) keeps the incumbent-like API.

use numpy::{IntoPyArray, PyArray2, PyArrayDyn, PyReadonlyArray2, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::circuit::{p_error_of, Circuit};
use crate::errors::{py_err, to_py};

fn model(bytes: &[u8]) -> PyResult<fhec::onnx::OnnxModel> {
    fhec::onnx::OnnxModel::from_bytes(bytes).map_err(to_py)
}

/// The float reference: the network's first output on `x` (a batch, first axis the samples).
#[pyfunction]
pub(crate) fn onnx_eval<'py>(
    py: Python<'py>,
    onnx: &[u8],
    x: PyReadonlyArrayDyn<'_, f64>,
) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let m = model(onnx)?;
    let x = x.as_array().to_owned();
    let out = py.detach(|| m.eval(&[x])).map_err(to_py)?;
    Ok(out.into_iter().next().expect("one output at least").into_pyarray(py))
}

/// An ONNX network quantised after training (see `fhec.onnx.compile_onnx_model`).
#[pyclass(module = "fhec._fhec", frozen)]
pub(crate) struct QuantizedNetwork {
    q: fhec::onnx::QuantizedNetwork,
}

/// `n_bits` = (model_inputs, op_inputs, op_weights, model_outputs).
fn options(
    n_bits: (u32, u32, u32, u32),
    rounding_bits: u32,
    windows: bool,
    output_parts: u32,
) -> fhec::onnx::PtqOptions {
    fhec::onnx::PtqOptions {
        n_bits: fhec::onnx::NBits {
            model_inputs: n_bits.0,
            op_inputs: n_bits.1,
            op_weights: n_bits.2,
            model_outputs: n_bits.3,
        },
        rounding_bits,
        windows,
        output_parts,
    }
}

/// Quantises an ONNX network: `n_bits` = (model_inputs, op_inputs, op_weights, model_outputs).
#[pyfunction]
#[pyo3(signature = (onnx, calibration, n_bits, rounding_bits, windows = false, output_parts = 1))]
pub(crate) fn onnx_quantize(
    py: Python<'_>,
    onnx: &[u8],
    calibration: PyReadonlyArrayDyn<'_, f64>,
    n_bits: (u32, u32, u32, u32),
    rounding_bits: u32,
    windows: bool,
    output_parts: u32,
) -> PyResult<QuantizedNetwork> {
    let m = model(onnx)?;
    let x = calibration.as_array().to_owned();
    let opts = options(n_bits, rounding_bits, windows, output_parts);
    let q = py.detach(|| m.quantize(&x, &opts)).map_err(to_py)?;
    Ok(QuantizedNetwork { q })
}

/// An integer network described by its trainer (`fhec.sklearn`'s NeuralNet estimators): the JSON
/// of `fhec::onnx::IntegerNetwork`, checked, as a quantised network.
#[pyfunction]
pub(crate) fn mlp_network(spec: &str) -> PyResult<QuantizedNetwork> {
    let m = fhec::onnx::IntegerNetwork::from_json(spec).map_err(to_py)?;
    let q = m.build().map_err(to_py)?;
    Ok(QuantizedNetwork { q })
}

/// A rounding choice as a dict: `bits`, `tolerance`, `reference_bits`, `rows`, `met`, `trials`
/// (`(bits, error or None)` each) and `infeasible` (`{bits: why}`: candidates that did not compile).
fn choice_dict<'py>(py: Python<'py>, c: &fhec::onnx::RoundingChoice) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("bits", c.bits)?;
    d.set_item("tolerance", c.tolerance)?;
    d.set_item("reference_bits", c.reference_bits)?;
    d.set_item("rows", c.rows)?;
    d.set_item("met", c.met)?;
    let trials: Vec<(u32, Option<f64>)> = c.trials.iter().map(|t| (t.bits, t.error)).collect();
    d.set_item("trials", trials)?;
    let infeasible = PyDict::new(py);
    for t in &c.trials {
        if let Some(why) = &t.infeasible {
            infeasible.set_item(t.bits, why)?;
        }
    }
    d.set_item("infeasible", infeasible)?;
    Ok(d)
}

/// What [`onnx_compile_auto`] returns: the choice's dict, its network, its circuit or compile error.
type AutoCompiled<'py> = (Bound<'py, PyDict>, QuantizedNetwork, Option<Circuit>, Option<String>);

/// Chooses the rounding bits automatically and compiles the choice
/// (`OnnxModel::choose_rounding_bits_with`): a candidate counts when it has secure parameters with
/// these options. Returns the choice's dict, its quantised network, and its circuit or, when no
/// candidate has, the parameter search's refusal of the choice (the one of least error); any other
/// compile error is raised as it is.
#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(signature = (onnx, calibration, n_bits, tolerance, windows = false, p_error = None, global_p_error = None, partitions = true, output_parts = 1, max_key_bytes = None))]
pub(crate) fn onnx_compile_auto<'py>(
    py: Python<'py>,
    onnx: &[u8],
    calibration: PyReadonlyArrayDyn<'_, f64>,
    n_bits: (u32, u32, u32, u32),
    tolerance: f64,
    windows: bool,
    p_error: Option<f64>,
    global_p_error: Option<f64>,
    partitions: bool,
    output_parts: u32,
    max_key_bytes: Option<u64>,
) -> PyResult<AutoCompiled<'py>> {
    let m = model(onnx)?;
    let x = calibration.as_array().to_owned();
    let opts = options(n_bits, fhec::onnx::DEFAULT_ROUNDING_BITS, windows, output_parts);
    let compile_opts = fhec::CompileOptions {
        p_error: p_error_of(p_error, global_p_error)?,
        partitions,
        max_key_bytes,
        ..Default::default()
    };
    let (c, built) = py
        .detach(|| {
            m.choose_rounding_bits_with(&x, &opts, tolerance, |q| {
                fhec::compile(q.module.clone(), q.spec.clone(), &compile_opts)
                    .map(|compiled| (compiled, q.clone()))
                    .map_err(fhec::Error::rounding_failure)
            })
        })
        .map_err(to_py)?;
    let (q, circuit, error) = match built {
        Ok((compiled, q)) => (q, Some(Circuit::new(compiled, 1)), None),
        // another failure than the parameters: raised as the non-automatic path raises it
        Err(fhec::onnx::BuildFailure::Failed(e)) => return Err(py_err(e)),
        // nothing has secure parameters: the choice's network, for the error's report
        Err(fhec::onnx::BuildFailure::Infeasible(why)) => (
            py.detach(|| m.quantize(&x, &options(n_bits, c.bits, windows, output_parts)))
                .map_err(to_py)?,
            None,
            Some(why),
        ),
    };
    Ok((choice_dict(py, &c)?, QuantizedNetwork { q }, circuit, error))
}

fn quantizer(q: &fhec::onnx::QuantizedNetwork) -> &fhec::quant::InputQuantizer {
    match &q.spec.inputs[0] {
        fhec::quant::InputSpec::Features { quantizer, .. } => quantizer,
        fhec::quant::InputSpec::Integers => unreachable!("a network's input is features"),
    }
}

#[pymethods]
impl QuantizedNetwork {
    /// The graph input's shape without the batch axis.
    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        self.q.input_shape.clone()
    }

    /// The shape the program returns, without the batch axis (before a client-side tail).
    #[getter]
    fn output_shape(&self) -> Vec<usize> {
        self.q.output_shape.clone()
    }

    /// What runs on the client after decryption: `"softmax"`, `"log_softmax"`, `"arg_max"` or None.
    #[getter]
    fn tail(&self) -> Option<&'static str> {
        self.q.tail.map(|t| match t {
            fhec::onnx::Tail::Softmax => "softmax",
            fhec::onnx::Tail::LogSoftmax => "log_softmax",
            fhec::onnx::Tail::ArgMax => "arg_max",
        })
    }

    /// The quantised module in the IR's text form.
    #[getter]
    fn ir(&self) -> String {
        fhec::ir::print_module(&self.q.module)
    }

    /// One dict per encrypted step: node, kind (accumulator / lookup), elements, range, bits,
    /// rounded_lsbs, tables.
    fn layers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for l in &self.q.layers {
            let d = PyDict::new(py);
            d.set_item("node", &l.node)?;
            d.set_item("kind", &l.kind)?;
            d.set_item("elements", l.elements)?;
            d.set_item("range", l.range)?;
            d.set_item("bits", l.bits)?;
            d.set_item("rounded_lsbs", l.rounded_lsbs)?;
            d.set_item("tables", l.tables)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Quantises rows of flattened features (`rows × features`) to the program's input integers.
    fn quantize<'py>(&self, py: Python<'py>, x: PyReadonlyArray2<'_, f64>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let q = quantizer(&self.q);
        let v = x.as_array();
        let (r, c) = v.dim();
        if c != q.n_features() {
            return Err(py_err(fhec::Error::new(
                fhec::ErrorKind::Shape,
                format!("X has {c} features per sample, the network {}", q.n_features()),
            )));
        }
        let flat: Vec<f64> = v.iter().copied().collect();
        let out = q.quantize(&flat).map_err(to_py)?;
        Ok(ndarray::Array2::from_shape_vec((r, c), out.values)
            .expect("rows × features")
            .into_pyarray(py))
    }

    /// Dequantises the program's outputs to floats (`rows × values`): per row, the program's integers
    /// (the partial sums of each value when the output is in parts), or the values they add up to
    /// (what a model client's `decrypt_ints` returns).
    fn dequantize<'py>(&self, py: Python<'py>, y: PyReadonlyArray2<'_, i64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let d = self.q.spec.outputs[0]
            .as_ref()
            .expect("a network's output is dequantised");
        let v = y.as_array();
        let (c, parts) = (d.scale.len(), d.parts as usize);
        if v.ncols() != c * parts && v.ncols() != c {
            return Err(py_err(fhec::Error::new(
                fhec::ErrorKind::Shape,
                format!("{} outputs per row, the network has {}", v.ncols(), c * parts),
            )));
        }
        let ints: Vec<i64> = v.iter().copied().collect();
        let (values, _) = if v.ncols() == c {
            (ints, c)
        } else {
            self.q
                .spec
                .output_values(0, &ints, c * parts)
                .map_err(|e| py_err(e.into()))?
        };
        let out = ndarray::Array2::from_shape_fn((v.nrows(), c), |(r, k)| {
            d.scale[k] * values[r * c + k] as f64 + d.offset[k]
        });
        Ok(out.into_pyarray(py))
    }

    /// Compiles the quantised module (the facade's one pipeline).
    #[pyo3(signature = (p_error=None, global_p_error=None, partitions=true, many_lut=None, max_key_bytes=None))]
    fn compile(
        &self,
        py: Python<'_>,
        p_error: Option<f64>,
        global_p_error: Option<f64>,
        partitions: bool,
        many_lut: Option<bool>,
        max_key_bytes: Option<u64>,
    ) -> PyResult<Circuit> {
        let opts = fhec::CompileOptions {
            p_error: p_error_of(p_error, global_p_error)?,
            partitions,
            many_lut,
            max_key_bytes,
            ..Default::default()
        };
        let module = self.q.module.clone();
        let spec = self.q.spec.clone();
        let c = py.detach(|| fhec::compile(module, spec, &opts)).map_err(py_err)?;
        Ok(Circuit::new(c, 1))
    }
}
