//! `fhec._fhec`: the Rust side of the Python package. Python wraps these classes (`py_src/fhec`);
//! tensors cross the boundary as `(shape, flat values)` pairs of Python ints.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use fhec_passes::params::PError;
use fhec_runtime::{exec, ClearTensor, Progress};
use fhec_trace::{CompileOptions, TraceError, Traced};
use ndarray::{ArrayD, IxDyn};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

create_exception!(_fhec, FhecError, PyException, "Base class of every fhec error.");
create_exception!(
    _fhec,
    CompileError,
    FhecError,
    "Tracing or compiling failed (shapes, ranges, parameters)."
);
create_exception!(
    _fhec,
    ExecutionError,
    FhecError,
    "Keys, encryption, execution or decryption failed."
);

type Flat = (Vec<usize>, Vec<i64>);

fn tensor((shape, values): Flat) -> PyResult<ArrayD<i64>> {
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| CompileError::new_err(format!("bad tensor: {e}")))
}

fn flat(t: &ArrayD<i64>) -> Flat {
    (t.shape().to_vec(), t.iter().copied().collect())
}

fn trace_err(e: TraceError) -> PyErr {
    match e {
        TraceError::Runtime(r) => ExecutionError::new_err(r.to_string()),
        other => CompileError::new_err(other.to_string()),
    }
}

/// Records a traced computation.
#[pyclass(unsendable, module = "fhec._fhec")]
struct Tracer {
    t: fhec_trace::Tracer,
    /// The first error a Python function raised while a table was computed.
    callback_error: Rc<RefCell<Option<PyErr>>>,
}

/// A traced value.
#[pyclass(unsendable, module = "fhec._fhec")]
struct Value {
    v: Traced,
    callback_error: Rc<RefCell<Option<PyErr>>>,
}

impl Value {
    fn wrap(&self, v: Traced) -> Value {
        Value {
            v,
            callback_error: self.callback_error.clone(),
        }
    }

    /// The other operand: a traced value, an int, or a `(shape, values)` constant.
    fn operand(&self, other: &Bound<'_, PyAny>, t: &fhec_trace::Tracer) -> PyResult<Traced> {
        if let Ok(v) = other.extract::<PyRef<'_, Value>>() {
            return Ok(v.v.clone());
        }
        if let Ok(c) = other.extract::<i64>() {
            return Ok(t.constant(ndarray::arr0(c).into_dyn()));
        }
        if let Ok(f) = other.extract::<Flat>() {
            return Ok(t.constant(tensor(f)?));
        }
        Err(CompileError::new_err(
            "expected a traced value, an int or an integer array",
        ))
    }
}

fn tracer_of(v: &Traced) -> fhec_trace::Tracer {
    v.tracer()
}

#[pymethods]
impl Tracer {
    #[new]
    fn new() -> Tracer {
        Tracer {
            t: fhec_trace::Tracer::new(),
            callback_error: Rc::default(),
        }
    }

    /// An encrypted input.
    fn input(&self, name: &str, shape: Vec<usize>) -> Value {
        Value {
            v: self.t.input(name, &shape),
            callback_error: self.callback_error.clone(),
        }
    }

    /// A clear input: given with each call, unencrypted (weights, a threshold).
    fn clear_input(&self, name: &str, shape: Vec<usize>) -> Value {
        Value {
            v: self.t.clear_input(name, &shape),
            callback_error: self.callback_error.clone(),
        }
    }

    /// Compiles `outputs`, calibrated on `inputset` (samples of `(shape, values)` per input).
    #[pyo3(signature = (outputs, inputset, p_error=None, global_p_error=None, pipeline=None))]
    fn compile(
        &self,
        outputs: Vec<PyRef<'_, Value>>,
        inputset: Vec<Vec<Flat>>,
        p_error: Option<f64>,
        global_p_error: Option<f64>,
        pipeline: Option<String>,
    ) -> PyResult<Circuit> {
        let samples: Vec<Vec<ArrayD<i64>>> = inputset
            .into_iter()
            .map(|s| s.into_iter().map(tensor).collect::<PyResult<Vec<_>>>())
            .collect::<PyResult<_>>()?;
        let outs: Vec<Traced> = outputs.iter().map(|o| o.v.clone()).collect();
        let p_error = p_error_of(p_error, global_p_error)?;
        let result = self.t.compile(&outs, &samples, &CompileOptions { p_error, pipeline });
        if let Some(e) = self.callback_error.borrow_mut().take() {
            return Err(e);
        }
        Ok(Circuit {
            c: result.map_err(trace_err)?,
            n_outputs: outs.len(),
        })
    }
}

#[pymethods]
impl Value {
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.v.shape()
    }
    fn add(&self, o: &Bound<'_, PyAny>) -> PyResult<Value> {
        let o = self.operand(o, &tracer_of(&self.v))?;
        Ok(self.wrap(self.v.try_add(&o).map_err(trace_err)?))
    }
    fn sub(&self, o: &Bound<'_, PyAny>) -> PyResult<Value> {
        let o = self.operand(o, &tracer_of(&self.v))?;
        Ok(self.wrap(self.v.try_sub(&o).map_err(trace_err)?))
    }
    fn mul(&self, o: &Bound<'_, PyAny>) -> PyResult<Value> {
        let o = self.operand(o, &tracer_of(&self.v))?;
        Ok(self.wrap(self.v.try_mul(&o).map_err(trace_err)?))
    }
    fn neg(&self) -> Value {
        self.wrap(self.v.neg())
    }
    /// `self @ w`: `w` a traced value (a clear input) or a `(shape, values)` constant.
    fn matmul(&self, w: &Bound<'_, PyAny>) -> PyResult<Value> {
        let w = self.operand(w, &tracer_of(&self.v))?;
        Ok(self.wrap(self.v.try_matmul_value(&w).map_err(trace_err)?))
    }
    /// `w @ self` with a `(shape, values)` constant or a traced value `w`.
    fn rmatmul(&self, w: &Bound<'_, PyAny>) -> PyResult<Value> {
        let w = self.operand(w, &tracer_of(&self.v))?;
        Ok(self.wrap(w.try_matmul_value(&self.v).map_err(trace_err)?))
    }
    /// Whether the value is encrypted (else: computed from clear inputs and constants only).
    #[getter]
    fn encrypted(&self) -> bool {
        self.v.is_encrypted()
    }
    #[pyo3(signature = (axes, keep_dims=false))]
    fn sum(&self, axes: Vec<usize>, keep_dims: bool) -> PyResult<Value> {
        Ok(self.wrap(self.v.try_sum(&axes, keep_dims).map_err(trace_err)?))
    }
    fn reshape(&self, shape: Vec<usize>) -> PyResult<Value> {
        Ok(self.wrap(self.v.reshape(&shape).map_err(trace_err)?))
    }
    /// numpy `concatenate([self, *others], axis)`.
    /// (`others`: traced values or `(shape, values)` constants).
    fn concat(&self, others: Vec<Bound<'_, PyAny>>, axis: usize) -> PyResult<Value> {
        let t = tracer_of(&self.v);
        let mut parts = vec![self.v.clone()];
        for o in &others {
            parts.push(self.operand(o, &t)?);
        }
        Ok(self.wrap(Traced::concat(&parts, axis).map_err(trace_err)?))
    }
    /// numpy `take(self, indices, axis)`.
    fn take(&self, indices: Flat, axis: usize) -> PyResult<Value> {
        Ok(self.wrap(self.v.try_take(&tensor(indices)?, axis).map_err(trace_err)?))
    }
    /// `x[starts:ends:steps]` per axis.
    fn slice(&self, starts: Vec<usize>, ends: Vec<usize>, steps: Vec<usize>) -> PyResult<Value> {
        Ok(self.wrap(self.v.try_slice(&starts, &ends, &steps).map_err(trace_err)?))
    }
    fn transpose(&self, perm: Vec<usize>) -> PyResult<Value> {
        Ok(self.wrap(self.v.try_transpose(&perm).map_err(trace_err)?))
    }
    fn round_bits(&self, k: u32) -> Value {
        self.wrap(self.v.round_bits(k))
    }
    /// `f(int) -> int` applied elementwise: one table, computed by calling `f` on every value.
    fn univariate(&self, f: Py<PyAny>) -> Value {
        let err = self.callback_error.clone();
        let g = move |v: i64| -> i64 {
            Python::attach(|py| match f.call1(py, (v,)).and_then(|r| r.extract::<i64>(py)) {
                Ok(y) => y,
                Err(e) => {
                    let mut slot = err.borrow_mut();
                    if slot.is_none() {
                        *slot = Some(CompileError::new_err(format!(
                            "the function applied to {v} failed: {e}"
                        )));
                    }
                    0
                }
            })
        };
        self.wrap(self.v.univariate(g))
    }
}

fn clear_batch(samples: Vec<Vec<Flat>>) -> Vec<Vec<ClearTensor>> {
    samples
        .into_iter()
        .map(|s| {
            s.into_iter()
                .map(|(shape, values)| ClearTensor { shape, values })
                .collect()
        })
        .collect()
}

fn flat_batch(out: Vec<Vec<ClearTensor>>) -> Vec<Vec<Flat>> {
    out.into_iter()
        .map(|s| s.into_iter().map(|t| (t.shape, t.values)).collect())
        .collect()
}

/// Runs `f` on a worker thread while this thread waits without the GIL and checks for Ctrl-C
/// (Python's signal handlers run only here); Ctrl-C sets the flag `f` gets, which stops a run at
/// its next lookup, and raises `KeyboardInterrupt`. Wakes as soon as the worker is done (a single
/// row takes well under a millisecond), else every 20 ms.
fn cancellable<T: Send>(
    py: Python<'_>,
    f: impl FnOnce(&AtomicBool) -> Result<T, fhec_runtime::RuntimeError> + Send,
) -> PyResult<T> {
    let cancel = AtomicBool::new(false);
    let done = (Mutex::new(false), Condvar::new());
    let out = std::thread::scope(|scope| -> PyResult<_> {
        let worker = scope.spawn(|| {
            let r = f(&cancel);
            *done.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            done.1.notify_all();
            r
        });
        loop {
            let finished = py.detach(|| {
                let guard = done.0.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) = done
                    .1
                    .wait_timeout_while(guard, Duration::from_millis(20), |f| !*f)
                    .unwrap_or_else(|e| e.into_inner());
                *guard
            });
            if finished {
                break;
            }
            if let Err(e) = py.check_signals() {
                cancel.store(true, Ordering::Relaxed);
                let _ = worker.join();
                return Err(e);
            }
        }
        worker.join().map_err(|_| ExecutionError::new_err("the run panicked"))
    })?;
    out.map_err(|e| ExecutionError::new_err(e.to_string()))
}

/// A compiled circuit.
#[pyclass(unsendable, module = "fhec._fhec")]
struct Circuit {
    c: fhec_trace::Circuit,
    n_outputs: usize,
}

#[pymethods]
impl Circuit {
    /// Generates the keys (once); releases the GIL meanwhile.
    fn keygen(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.c.has_keys() {
            return Ok(());
        }
        let program = self.c.program();
        let keys = py.detach(|| -> Result<_, fhec_runtime::RuntimeError> {
            let ck = fhec_runtime::ClientKeys::generate(&program.params)?;
            let sk = ck
                .evaluation_keys_for(program, &Progress::stderr())
                .expand(&Progress::stderr())?;
            Ok((ck, sk))
        });
        self.c
            .set_keys(keys.map_err(|e| ExecutionError::new_err(e.to_string()))?);
        Ok(())
    }

    /// Encrypts a batch of samples (each: `(shape, values)` per input), runs it on all cores and
    /// decrypts it; releases the GIL meanwhile and stops on Ctrl-C (`KeyboardInterrupt`).
    fn run_batch(&mut self, py: Python<'_>, samples: Vec<Vec<Flat>>) -> PyResult<Vec<Vec<Flat>>> {
        self.keygen(py)?;
        let batch = clear_batch(samples);
        let (program, ck, sk) = self.c.parts().expect("keys generated");
        let out = cancellable(py, |cancel| {
            let enc = ck.encrypt(program, &batch)?;
            let out = exec::run(program, sk, enc, &Progress::stderr(), Some(cancel))?;
            ck.decrypt(program, &out)
        })?;
        Ok(flat_batch(out))
    }

    /// Client: encrypts a batch of samples; returns the ciphertexts as an fhec ciphertext file.
    fn encrypt<'py>(&mut self, py: Python<'py>, samples: Vec<Vec<Flat>>) -> PyResult<Bound<'py, PyBytes>> {
        self.keygen(py)?;
        let batch = clear_batch(samples);
        let (program, ck, _) = self.c.parts().expect("keys generated");
        let bytes = cancellable(py, |_| {
            fhec_runtime::io::ciphertexts_to_bytes(&ck.encrypt(program, &batch)?)
        })?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Server: runs the program on encrypted inputs (an fhec ciphertext file) with the evaluation
    /// keys only; returns the encrypted outputs as a file.
    fn run<'py>(&mut self, py: Python<'py>, inputs: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        self.keygen(py)?;
        let (program, _, sk) = self.c.parts().expect("keys generated");
        let bytes = cancellable(py, |cancel| {
            let cts = fhec_runtime::io::ciphertexts_from_bytes(inputs)?;
            let out = exec::run(program, sk, cts, &Progress::stderr(), Some(cancel))?;
            fhec_runtime::io::ciphertexts_to_bytes(&out)
        })?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Client: decrypts encrypted outputs (an fhec ciphertext file from `run`).
    fn decrypt(&mut self, py: Python<'_>, outputs: &[u8]) -> PyResult<Vec<Vec<Flat>>> {
        self.keygen(py)?;
        let (program, ck, _) = self.c.parts().expect("keys generated");
        let out = cancellable(py, |_| {
            let cts = fhec_runtime::io::ciphertexts_from_bytes(outputs)?;
            ck.decrypt(program, &cts)
        })?;
        Ok(flat_batch(out))
    }

    /// The compiled program on exact values, without keys.
    fn simulate(&self, inputs: Vec<Flat>) -> PyResult<Vec<Flat>> {
        let xs: Vec<ArrayD<i64>> = inputs.into_iter().map(tensor).collect::<PyResult<_>>()?;
        Ok(self.c.simulate(&xs).map_err(trace_err)?.iter().map(flat).collect())
    }

    /// The compiled program on exact values of many samples, without keys.
    fn simulate_batch(&self, samples: Vec<Vec<Flat>>) -> PyResult<Vec<Vec<Flat>>> {
        let out = self
            .c
            .program()
            .simulate(&clear_batch(samples))
            .map_err(|e| ExecutionError::new_err(e.to_string()))?;
        Ok(flat_batch(out))
    }

    /// The traced computation in the clear (the reference).
    fn eval_clear(&self, inputs: Vec<Flat>) -> PyResult<Vec<Flat>> {
        let xs: Vec<ArrayD<i64>> = inputs.into_iter().map(tensor).collect::<PyResult<_>>()?;
        Ok(self.c.eval_clear(&xs).map_err(trace_err)?.iter().map(flat).collect())
    }

    #[getter]
    fn n_outputs(&self) -> usize {
        self.n_outputs
    }
    #[getter]
    fn ir(&self) -> String {
        self.c.ir()
    }
    #[getter]
    fn traced_ir(&self) -> String {
        self.c.traced_ir().to_string()
    }
    #[getter]
    fn tfhe_ir(&self) -> String {
        self.c.tfhe_ir()
    }

    /// Lookups per precision, parameters, failure probability, key sizes, estimated latency.
    #[getter]
    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = self.c.program();
        let d = PyDict::new(py);
        let by = PyDict::new(py);
        for (prec, n) in &p.noise.pbs_by_precision {
            by.set_item(prec, n)?;
        }
        d.set_item("pbs_count", p.pbs_count())?;
        d.set_item("pbs_by_precision", by)?;
        d.set_item("parameters", p.params_summary())?;
        d.set_item("log2_p_error_per_lookup", p.noise.log2_p_error_worst_lookup)?;
        d.set_item("log2_p_error_global", p.noise.log2_p_error_global)?;
        let (compressed, expanded) = fhec_runtime::keys::program_key_bytes(p);
        d.set_item("evaluation_key_bytes", compressed)?;
        d.set_item("server_key_bytes", expanded)?;
        d.set_item("estimated_seconds", p.noise.estimated_seconds)?;
        Ok(d)
    }
}

fn p_error_of(p_error: Option<f64>, global_p_error: Option<f64>) -> PyResult<PError> {
    match (p_error, global_p_error) {
        (Some(p), None) => Ok(PError::PerLookup(p)),
        (None, Some(g)) => Ok(PError::Global(g)),
        (None, None) => Ok(PError::default()),
        _ => Err(CompileError::new_err("give p_error or global_p_error, not both")),
    }
}

fn tree_err(e: fhec_trees::TreeError) -> PyErr {
    CompileError::new_err(e.to_string())
}

/// Quantises a tree ensemble (schema JSON) with input quantisers calibrated on `calibration`
/// (`(shape, row-major floats)`, one row per sample); returns the quantised ensemble as JSON.
#[pyfunction]
#[pyo3(signature = (ensemble, calibration, n_bits, leaf_bits, quantizer="quantile"))]
fn trees_quantize(
    ensemble: &str,
    calibration: (Vec<usize>, Vec<f64>),
    n_bits: u32,
    leaf_bits: u32,
    quantizer: &str,
) -> PyResult<String> {
    let kind = match quantizer {
        "quantile" => fhec_trees::QuantizerKind::Quantile,
        "uniform" => fhec_trees::QuantizerKind::Uniform,
        other => {
            return Err(CompileError::new_err(format!(
                "quantizer must be 'quantile' or 'uniform', got {other:?}"
            )))
        }
    };
    let e = fhec_trees::Ensemble::from_json(ensemble).map_err(tree_err)?;
    let (shape, values) = calibration;
    if shape.len() != 2 || shape[0] * shape[1] != values.len() {
        return Err(CompileError::new_err(
            "the calibration set must be a matrix (samples × features)",
        ));
    }
    let rows: Vec<Vec<f64>> = values.chunks(shape[1].max(1)).map(|r| r.to_vec()).collect();
    let q = fhec_trees::quantize_with(&e, &rows, n_bits, leaf_bits, kind).map_err(tree_err)?;
    Ok(q.to_json())
}

/// Reads a tree-ensemble model file of another library into fhec's schema (JSON): `format` is
/// `"xgboost"` (XGBoost's JSON model), `"lightgbm"` (`Booster.dump_model()` as JSON) or `"fhec"`.
#[pyfunction]
fn trees_import(format: &str, text: &str) -> PyResult<String> {
    let e = match format {
        "xgboost" => fhec_trees::xgboost::import(text),
        "lightgbm" => fhec_trees::lightgbm::import(text),
        "fhec" => fhec_trees::Ensemble::from_json(text),
        other => return Err(CompileError::new_err(format!("unknown model format {other:?}"))),
    }
    .map_err(tree_err)?;
    Ok(e.to_json())
}

/// Builds and compiles the module of a quantised ensemble (JSON from `trees_quantize`); returns
/// the circuit and the builder's report (JSON).
#[pyfunction]
#[pyo3(signature = (quantized, leaf_mode=None, p_error=None, global_p_error=None))]
fn trees_compile(
    py: Python<'_>,
    quantized: &str,
    leaf_mode: Option<&str>,
    p_error: Option<f64>,
    global_p_error: Option<f64>,
) -> PyResult<(Circuit, String)> {
    let q = fhec_trees::Quantized::from_json(quantized).map_err(tree_err)?;
    let mode = match leaf_mode {
        None => None,
        Some("fused") => Some(fhec_trees::LeafMode::Fused),
        Some("indicator") => Some(fhec_trees::LeafMode::Indicator),
        Some(other) => {
            return Err(CompileError::new_err(format!(
                "leaf_mode must be 'fused' or 'indicator', got {other:?}"
            )))
        }
    };
    let p_error = p_error_of(p_error, global_p_error)?;
    let (module, report) = fhec_trees::build_module(&q, mode).map_err(tree_err)?;
    let _ = py;
    let circuit = fhec_trace::Circuit::from_module(
        module,
        &CompileOptions {
            p_error,
            pipeline: None,
        },
    )
    .map_err(trace_err)?;
    let report = format!(
        "{{\"input_bits\": {}, \"leaves\": {}, \"lookups\": {}, \"lookup_bits\": {}, \"max_depth\": {}, \"leaf_mode\": \"{}\"}}",
        report.input_bits,
        report.leaves,
        report.lookups,
        report.lookup_bits,
        report.max_depth,
        match report.leaf_mode {
            fhec_trees::LeafMode::Fused => "fused",
            fhec_trees::LeafMode::Indicator => "indicator",
        }
    );
    Ok((
        Circuit {
            c: circuit,
            n_outputs: 1,
        },
        report,
    ))
}

#[pymodule]
fn _fhec(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(trees_quantize, m)?)?;
    m.add_function(wrap_pyfunction!(trees_import, m)?)?;
    m.add_function(wrap_pyfunction!(trees_compile, m)?)?;
    m.add_class::<Tracer>()?;
    m.add_class::<Value>()?;
    m.add_class::<Circuit>()?;
    m.add("FhecError", m.py().get_type::<FhecError>())?;
    m.add("CompileError", m.py().get_type::<CompileError>())?;
    m.add("ExecutionError", m.py().get_type::<ExecutionError>())?;
    Ok(())
}
