//! The tracing DSL: `Tracer` records, `Value` is a traced value; `Tracer.compile` builds the
//! module (calling Python functions for tables) and hands it to the facade.

use std::cell::RefCell;
use std::rc::Rc;

use fhec::trace::Traced;
use fhec::CompileOptions;
use ndarray::ArrayD;
use pyo3::prelude::*;

use crate::circuit::{p_error_of, Circuit};
use crate::errors::{compile_err, py_err, to_py};
use crate::{tensor, Flat};

/// Records a traced computation.
#[pyclass(unsendable, module = "fhec._fhec")]
pub(crate) struct Tracer {
    t: fhec::trace::Tracer,
    /// The first error a Python function raised while a table was computed.
    callback_error: Rc<RefCell<Option<PyErr>>>,
}

/// A traced value.
#[pyclass(unsendable, module = "fhec._fhec")]
pub(crate) struct Value {
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
    fn operand(&self, other: &Bound<'_, PyAny>, t: &fhec::trace::Tracer) -> PyResult<Traced> {
        if let Ok(v) = other.extract::<PyRef<'_, Value>>() {
            return Ok(v.v.clone());
        }
        if let Ok(c) = other.extract::<i64>() {
            return Ok(t.constant(ndarray::arr0(c).into_dyn()));
        }
        if let Ok(f) = other.extract::<Flat<'_>>() {
            return Ok(t.constant(tensor(f)?));
        }
        Err(compile_err("expected a traced value, an int or an integer array"))
    }
}

fn tracer_of(v: &Traced) -> fhec::trace::Tracer {
    v.tracer()
}

#[pymethods]
impl Tracer {
    #[new]
    fn new() -> Tracer {
        Tracer {
            t: fhec::trace::Tracer::new(),
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

    /// Compiles `outputs`, calibrated on `inputset` (samples of `(shape, values)` per input), with
    /// the facade's one pipeline.
    #[pyo3(signature = (outputs, inputset, p_error=None, global_p_error=None, pipeline=None, margin=0.0, partitions=true, many_lut=None, max_key_bytes=None))]
    #[allow(clippy::too_many_arguments)] // one Python call with keyword arguments
    fn compile(
        &self,
        py: Python<'_>,
        outputs: Vec<PyRef<'_, Value>>,
        inputset: Vec<Vec<Flat<'_>>>,
        p_error: Option<f64>,
        global_p_error: Option<f64>,
        pipeline: Option<String>,
        margin: f64,
        partitions: bool,
        many_lut: Option<bool>,
        max_key_bytes: Option<u64>,
    ) -> PyResult<Circuit> {
        let samples: Vec<Vec<ArrayD<i64>>> = inputset
            .into_iter()
            .map(|s| s.into_iter().map(tensor).collect::<PyResult<Vec<_>>>())
            .collect::<PyResult<_>>()?;
        let outs: Vec<Traced> = outputs.iter().map(|o| o.v.clone()).collect();
        let p_error = p_error_of(p_error, global_p_error)?;
        // the module is built here, with the GIL: user functions are called to fill tables
        let module = self.t.module_with_margin(&outs, &samples, margin);
        if let Some(e) = self.callback_error.borrow_mut().take() {
            return Err(e);
        }
        let module = module.map_err(to_py)?;
        let opts = CompileOptions {
            p_error,
            pipeline,
            partitions,
            many_lut,
            max_key_bytes,
            ..Default::default()
        };
        let spec = fhec::integer_spec(&module).map_err(py_err)?;
        let c = py.detach(|| fhec::compile(module, spec, &opts)).map_err(py_err)?;
        Ok(Circuit::traced(c, self.t.clone(), outs))
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
        Ok(self.wrap(self.v.try_add(&o).map_err(to_py)?))
    }
    fn sub(&self, o: &Bound<'_, PyAny>) -> PyResult<Value> {
        let o = self.operand(o, &tracer_of(&self.v))?;
        Ok(self.wrap(self.v.try_sub(&o).map_err(to_py)?))
    }
    fn mul(&self, o: &Bound<'_, PyAny>) -> PyResult<Value> {
        let o = self.operand(o, &tracer_of(&self.v))?;
        Ok(self.wrap(self.v.try_mul(&o).map_err(to_py)?))
    }
    fn neg(&self) -> Value {
        self.wrap(self.v.neg())
    }
    /// `self @ w`: `w` a traced value (a clear input) or a `(shape, values)` constant.
    fn matmul(&self, w: &Bound<'_, PyAny>) -> PyResult<Value> {
        let w = self.operand(w, &tracer_of(&self.v))?;
        Ok(self.wrap(self.v.try_matmul_value(&w).map_err(to_py)?))
    }
    /// `w @ self` with a `(shape, values)` constant or a traced value `w`.
    fn rmatmul(&self, w: &Bound<'_, PyAny>) -> PyResult<Value> {
        let w = self.operand(w, &tracer_of(&self.v))?;
        Ok(self.wrap(w.try_matmul_value(&self.v).map_err(to_py)?))
    }
    /// Whether the value is encrypted (else: computed from clear inputs and constants only).
    #[getter]
    fn encrypted(&self) -> bool {
        self.v.is_encrypted()
    }
    #[pyo3(signature = (axes, keep_dims=false))]
    fn sum(&self, axes: Vec<usize>, keep_dims: bool) -> PyResult<Value> {
        Ok(self.wrap(self.v.try_sum(&axes, keep_dims).map_err(to_py)?))
    }
    fn reshape(&self, shape: Vec<usize>) -> PyResult<Value> {
        Ok(self.wrap(self.v.reshape(&shape).map_err(to_py)?))
    }
    /// numpy `concatenate([self, *others], axis)`.
    /// (`others`: traced values or `(shape, values)` constants).
    fn concat(&self, others: Vec<Bound<'_, PyAny>>, axis: usize) -> PyResult<Value> {
        let t = tracer_of(&self.v);
        let mut parts = vec![self.v.clone()];
        for o in &others {
            parts.push(self.operand(o, &t)?);
        }
        Ok(self.wrap(Traced::concat(&parts, axis).map_err(to_py)?))
    }
    /// numpy `take(self, indices, axis)`.
    fn take(&self, indices: Flat<'_>, axis: usize) -> PyResult<Value> {
        Ok(self.wrap(self.v.try_take(&tensor(indices)?, axis).map_err(to_py)?))
    }
    /// `x[starts:ends:steps]` per axis.
    fn slice(&self, starts: Vec<usize>, ends: Vec<usize>, steps: Vec<usize>) -> PyResult<Value> {
        Ok(self.wrap(self.v.try_slice(&starts, &ends, &steps).map_err(to_py)?))
    }
    fn transpose(&self, perm: Vec<usize>) -> PyResult<Value> {
        Ok(self.wrap(self.v.try_transpose(&perm).map_err(to_py)?))
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
                        *slot = Some(compile_err(format!("the function applied to {v} failed: {e}")));
                    }
                    0
                }
            })
        };
        self.wrap(self.v.univariate(g))
    }
}
