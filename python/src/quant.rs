//! Quantised models as typed objects: `QuantizedLinear` (the linear family) and `QuantizedTrees`
//! (tree ensembles). The quantisation math is Rust's (`fhec-quant`, `fhec-trees`); Python keeps the
//! scikit-learn contract. Arrays cross as numpy arrays.

use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::circuit::{p_error_of, Circuit};
use crate::errors::{compile_err, py_err, to_py};

/// A row-major matrix from a numpy array (any layout).
fn matrix<T: Copy + numpy::Element>(a: &PyReadonlyArray2<'_, T>) -> (usize, usize, Vec<T>) {
    let v = a.as_array();
    let (r, c) = v.dim();
    (r, c, v.iter().copied().collect())
}

fn to_array2<'py, T: numpy::Element>(py: Python<'py>, rows: usize, cols: usize, v: Vec<T>) -> Bound<'py, PyArray2<T>> {
    ndarray::Array2::from_shape_vec((rows, cols), v)
        .expect("rows × cols values")
        .into_pyarray(py)
}

/// Quantised rows and what was clipped: `(q, clipped values, clipped rows, clipped features)`.
type QuantizedRows<'py> = (Bound<'py, PyArray2<i64>>, usize, usize, Vec<usize>);

fn quantize_rows<'py>(
    py: Python<'py>,
    q: &fhec::quant::InputQuantizer,
    x: &PyReadonlyArray2<'_, f64>,
) -> PyResult<QuantizedRows<'py>> {
    let (r, c, v) = matrix(x);
    if c != q.n_features() {
        return Err(py_err(fhec::Error::new(
            fhec::ErrorKind::Shape,
            format!("X has {c} features, the model {}", q.n_features()),
        )));
    }
    let out = q.quantize(&v).map_err(to_py)?;
    Ok((
        to_array2(py, r, c, out.values),
        out.clipped,
        out.clipped_rows,
        out.clipped_features,
    ))
}

/// Post-processing of dequantised rows (`rows × C`) as a client spec names it (`"identity"`, `"exp"`,
/// `"sigmoid"`, `"softmax"`, `"one_vs_rest"`, `"proba"`, `"modified_huber"`, `"decision"`): predictions
/// or class probabilities, scikit-learn's formulas, computed once for every model family.
#[pyfunction]
pub(crate) fn post_process<'py>(
    py: Python<'py>,
    values: PyReadonlyArray2<'_, f64>,
    post: &str,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let post: fhec::quant::Post = serde_json::from_value(serde_json::Value::String(post.into()))
        .map_err(|e| compile_err(format!("post: {e}")))?;
    let (r, c, v) = matrix(&values);
    let out = fhec::quant::spec::post_process(post, &v, c);
    let cols = out.len().checked_div(r).unwrap_or(c);
    Ok(to_array2(py, r, cols, out))
}

/// A quantised linear model: affine input quantisers, per-output affine weights, the folded bias.
#[pyclass(module = "fhec._fhec", frozen)]
pub(crate) struct QuantizedLinear {
    q: fhec::quant::QuantizedLinear,
}

#[pymethods]
impl QuantizedLinear {
    /// Quantises `W` (d × C) and `b` (C) with input quantisers calibrated on `X` (rows × d).
    #[staticmethod]
    fn build(
        w: PyReadonlyArray2<'_, f64>,
        b: PyReadonlyArray1<'_, f64>,
        x: PyReadonlyArray2<'_, f64>,
        input_bits: u32,
        weight_bits: u32,
    ) -> PyResult<QuantizedLinear> {
        let (d, c, wv) = matrix(&w);
        let (_, xc, xv) = matrix(&x);
        if xc != d {
            return Err(compile_err(format!("X has {xc} features, the weights {d}")));
        }
        let bv: Vec<f64> = b.as_array().iter().copied().collect();
        let q = fhec::quant::QuantizedLinear::build(&wv, d, c, &bv, &xv, input_bits, weight_bits).map_err(to_py)?;
        Ok(QuantizedLinear { q })
    }

    /// A saved model (`to_json`), checked.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<QuantizedLinear> {
        Ok(QuantizedLinear {
            q: fhec::quant::QuantizedLinear::from_json(text).map_err(to_py)?,
        })
    }

    /// Pickling (joblib, copy): rebuilt from its JSON, checked again.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        Ok((slf.get_type().getattr("from_json")?, (slf.get().to_json(),)))
    }

    fn to_json(&self) -> String {
        self.q.to_json()
    }

    #[getter]
    fn input_bits(&self) -> u32 {
        self.q.inputs.n_bits
    }
    #[getter]
    fn weight_bits(&self) -> u32 {
        self.q.weight_bits
    }
    #[getter]
    fn max_q(&self) -> u32 {
        self.q.inputs.levels()
    }
    #[getter]
    fn weights<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i64>> {
        to_array2(py, self.q.n_features(), self.q.n_outputs(), self.q.weights.concat())
    }

    fn accumulator_bits(&self) -> u32 {
        self.q.accumulator_bits()
    }

    /// Raises when the accumulator is wider than the compiler supports.
    fn check_width(&self) -> PyResult<()> {
        self.q.check_width().map_err(to_py)
    }

    /// `(q, clipped values, clipped rows, clipped features)`: the quantised rows the client encrypts.
    fn quantize<'py>(&self, py: Python<'py>, x: PyReadonlyArray2<'_, f64>) -> PyResult<QuantizedRows<'py>> {
        quantize_rows(py, &self.q.inputs, &x)
    }

    /// The integer accumulators of quantised rows (what the encrypted program computes).
    fn accumulate<'py>(&self, py: Python<'py>, q: PyReadonlyArray2<'_, i64>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let (r, c, v) = matrix(&q);
        if c != self.q.n_features() {
            return Err(compile_err(format!(
                "rows of {c} values, the model has {} features",
                self.q.n_features()
            )));
        }
        Ok(to_array2(
            py,
            r,
            self.q.n_outputs(),
            self.q.accumulate(&v).map_err(to_py)?,
        ))
    }

    /// Decision values from accumulators.
    fn dequantize<'py>(&self, py: Python<'py>, acc: PyReadonlyArray2<'_, i64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (r, c, v) = matrix(&acc);
        if c != self.q.n_outputs() {
            return Err(compile_err(format!(
                "accumulators of {c} outputs, the model has {}",
                self.q.n_outputs()
            )));
        }
        Ok(to_array2(py, r, c, self.q.dequantize(&v)))
    }

    /// Compiles the encrypted program (the integer dot product) through the facade; `post` (`"identity"`,
    /// `"exp"`, `"sigmoid"`, `"softmax"`, `"one_vs_rest"`, `"decision"`) and `classes` (JSON values)
    /// complete the client spec.
    #[pyo3(signature = (p_error=None, global_p_error=None, post="identity", classes=None))]
    fn compile(
        &self,
        py: Python<'_>,
        p_error: Option<f64>,
        global_p_error: Option<f64>,
        post: &str,
        classes: Option<&str>,
    ) -> PyResult<Circuit> {
        let opts = fhec::CompileOptions {
            p_error: p_error_of(p_error, global_p_error)?,
            ..Default::default()
        };
        let post: fhec::quant::Post = serde_json::from_value(serde_json::Value::String(post.into()))
            .map_err(|e| compile_err(format!("post: {e}")))?;
        let mut spec = self.q.client_spec(post);
        if let Some(c) = classes {
            let labels: Vec<serde_json::Value> =
                serde_json::from_str(c).map_err(|e| compile_err(format!("classes: {e}")))?;
            spec = spec.with_classes(labels);
        }
        let module = self.q.module().map_err(to_py)?;
        let c = py.detach(|| fhec::compile(module, spec, &opts)).map_err(py_err)?;
        Ok(Circuit::new(c, 1))
    }
}

/// A quantised tree ensemble: input quantisers, thresholds on the grid, integer leaves.
#[pyclass(module = "fhec._fhec", frozen)]
pub(crate) struct QuantizedTrees {
    pub(crate) q: fhec::trees::Quantized,
}

#[pymethods]
impl QuantizedTrees {
    /// A saved ensemble (`to_json`), checked.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<QuantizedTrees> {
        Ok(QuantizedTrees {
            q: fhec::trees::Quantized::from_json(text).map_err(to_py)?,
        })
    }

    /// Pickling (joblib, copy): rebuilt from its JSON, checked again.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        Ok((slf.get_type().getattr("from_json")?, (slf.get().to_json(),)))
    }

    fn to_json(&self) -> String {
        self.q.to_json()
    }

    #[getter]
    fn n_outputs(&self) -> usize {
        self.q.n_outputs
    }
    #[getter]
    fn post(&self) -> String {
        serde_json::to_value(self.q.post)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// `(q, clipped values, clipped rows, clipped features)`: quantised features.
    fn quantize<'py>(&self, py: Python<'py>, x: PyReadonlyArray2<'_, f64>) -> PyResult<QuantizedRows<'py>> {
        quantize_rows(py, &self.q.inputs, &x)
    }

    /// The thermometer bits the client encrypts, one row per sample.
    fn thermometer<'py>(&self, py: Python<'py>, q: PyReadonlyArray2<'_, i64>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let (r, c, v) = matrix(&q);
        self.check_features(c)?;
        let width = c * self.q.levels();
        let bits: Vec<i64> = v.chunks(c.max(1)).flat_map(|row| self.q.thermometer(row)).collect();
        Ok(to_array2(py, r, width, bits))
    }

    /// Integer scores (the sum of the reached leaves) of quantised rows: what the circuit computes.
    fn scores<'py>(&self, py: Python<'py>, q: PyReadonlyArray2<'_, i64>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let (r, c, v) = matrix(&q);
        self.check_features(c)?;
        let out: Vec<i64> = v.chunks(c.max(1)).flat_map(|row| self.q.scores(row)).collect();
        Ok(to_array2(py, r, self.q.n_outputs, out))
    }

    /// Raw scores (aggregation and base score applied; no post-processing).
    fn dequantize<'py>(&self, py: Python<'py>, s: PyReadonlyArray2<'_, i64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (r, c, v) = matrix(&s);
        if c != self.q.n_outputs {
            return Err(compile_err(format!(
                "scores of {c} outputs, the model has {}",
                self.q.n_outputs
            )));
        }
        let out: Vec<f64> = v.chunks(c.max(1)).flat_map(|row| self.q.dequantize(row)).collect();
        Ok(to_array2(py, r, c, out))
    }

    /// Builds and compiles the ensemble's module; returns the circuit and the builder's report.
    /// `classes` (JSON values) completes the client spec of a classifier.
    #[pyo3(signature = (leaf_mode=None, p_error=None, global_p_error=None, classes=None, partitions=true, many_lut=None, max_key_bytes=None))]
    #[allow(clippy::too_many_arguments)]
    fn compile<'py>(
        &self,
        py: Python<'py>,
        leaf_mode: Option<&str>,
        p_error: Option<f64>,
        global_p_error: Option<f64>,
        classes: Option<&str>,
        partitions: bool,
        many_lut: Option<bool>,
        max_key_bytes: Option<u64>,
    ) -> PyResult<(Circuit, Bound<'py, PyDict>)> {
        let mode = match leaf_mode {
            None => None,
            Some("fused") => Some(fhec::trees::LeafMode::Fused),
            Some("indicator") => Some(fhec::trees::LeafMode::Indicator),
            Some("collect") => Some(fhec::trees::LeafMode::Collect),
            Some(other) => {
                return Err(compile_err(format!(
                    "leaf_mode must be 'fused', 'indicator' or 'collect', got {other:?}"
                )))
            }
        };
        let opts = fhec::CompileOptions {
            p_error: p_error_of(p_error, global_p_error)?,
            partitions,
            many_lut,
            max_key_bytes,
            ..Default::default()
        };
        let mut spec = self.q.client_spec();
        if let Some(c) = classes {
            let labels: Vec<serde_json::Value> =
                serde_json::from_str(c).map_err(|e| compile_err(format!("classes: {e}")))?;
            spec = spec.with_classes(labels);
        }
        // with no leaf mode given, the cost model picks one (fhec::compile_trees)
        let q = &self.q;
        let (circuit, report) = py
            .detach(|| fhec::compile_trees(q, mode, spec, &opts))
            .map_err(py_err)?;
        let d = PyDict::new(py);
        d.set_item("input_bits", report.input_bits)?;
        d.set_item("leaves", report.leaves)?;
        d.set_item("lookups", report.lookups)?;
        d.set_item("lookup_bits", report.lookup_bits)?;
        d.set_item("max_depth", report.max_depth)?;
        d.set_item(
            "leaf_mode",
            match report.leaf_mode {
                fhec::trees::LeafMode::Fused => "fused",
                fhec::trees::LeafMode::Indicator => "indicator",
                fhec::trees::LeafMode::Collect => "collect",
            },
        )?;
        Ok((Circuit::new(circuit, 1), d))
    }
}

impl QuantizedTrees {
    fn check_features(&self, c: usize) -> PyResult<()> {
        if c != self.q.n_features {
            return Err(compile_err(format!(
                "rows of {c} features, the model has {}",
                self.q.n_features
            )));
        }
        Ok(())
    }
}
