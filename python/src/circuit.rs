//! Circuits and the two roles: `Client` (secret keys: keygen, evaluation keys, encrypt, decrypt) and
//! `Server` (a program and evaluation keys, from bytes: it runs, nothing else). Long calls run on a
//! worker thread without the GIL and stop on Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use fhec::runtime::Progress;
use fhec::{Error, ErrorKind, PError};
use ndarray::ArrayD;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::{compile_err, py_err};
use crate::{clear_batch, flat, flat_batch, tensor, Flat, Out};

/// Runs `f` on a worker thread while this thread waits without the GIL and checks for Ctrl-C
/// (Python's signal handlers run only here); Ctrl-C sets the flag `f` gets, which stops a run at
/// its next lookup, and raises `KeyboardInterrupt`. Wakes as soon as the worker is done, else
/// every 20 ms. `quick` work (a few milliseconds at most: a linear model's rows, a small batch's
/// encryption) runs on this thread without the GIL instead: a thread start would cost more than
/// the work (a linear model's row takes ~0.1 ms).
fn cancellable<T: Send>(
    py: Python<'_>,
    quick: bool,
    f: impl FnOnce(&AtomicBool) -> Result<T, Error> + Send,
) -> PyResult<T> {
    let cancel = AtomicBool::new(false);
    if quick {
        return py.detach(|| f(&cancel)).map_err(py_err);
    }
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
        worker
            .join()
            .map_err(|_| py_err(Error::new(ErrorKind::Cancelled, "the run panicked")))
    })?;
    out.map_err(py_err)
}

/// Batches this small are encrypted (and, without lookups, run) on the calling thread.
const QUICK_SAMPLES: usize = 16;
/// Ciphertext files this small are decrypted (and, without lookups, run) on the calling thread.
const QUICK_BYTES: usize = 1 << 20;

pub(crate) fn p_error_of(p_error: Option<f64>, global_p_error: Option<f64>) -> PyResult<PError> {
    match (p_error, global_p_error) {
        (Some(p), None) => Ok(PError::PerLookup(p)),
        (None, Some(g)) => Ok(PError::Global(g)),
        (None, None) => Ok(PError::default()),
        _ => Err(compile_err("give p_error or global_p_error, not both")),
    }
}

fn bytes<'py>(py: Python<'py>, b: Result<Vec<u8>, Error>) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &b.map_err(py_err)?))
}

/// The client side: a program's description and the secret keys.
#[pyclass(module = "fhec._fhec", frozen)]
pub(crate) struct Client {
    pub(crate) c: Arc<fhec::Client>,
}

#[pymethods]
impl Client {
    /// A client from a program file (or a model's client file) and secret keys saved before
    /// (`secret_keys()`).
    #[new]
    fn new(py: Python<'_>, program: &[u8], secret_keys: &[u8]) -> PyResult<Client> {
        let c = py
            .detach(|| fhec::Client::from_bytes(program, secret_keys))
            .map_err(py_err)?;
        Ok(Client { c: Arc::new(c) })
    }

    /// Fresh secret keys for a program file (or a model's client file).
    #[staticmethod]
    fn keygen(py: Python<'_>, program: &[u8]) -> PyResult<Client> {
        let c = py
            .detach(|| -> Result<_, Error> {
                let p = fhec::model::interface_from_bytes(program)?;
                fhec::Client::keygen(p)
            })
            .map_err(py_err)?;
        Ok(Client { c: Arc::new(c) })
    }

    /// The random id of these keys (evaluation keys and ciphertexts carry it).
    #[getter]
    fn key_id(&self) -> u64 {
        self.c.key_id()
    }

    #[getter]
    fn n_outputs(&self) -> usize {
        self.c.interface().outputs.len()
    }

    /// The fingerprint of the program these keys are for.
    #[getter]
    fn fingerprint(&self) -> u64 {
        self.c.interface().fingerprint
    }

    /// The evaluation keys (compressed), for a server.
    fn evaluation_keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let c = self.c.clone();
        let b = py.detach(move || c.evaluation_keys_bytes(&Progress::stderr()));
        bytes(py, b)
    }

    /// The secret keys as bytes: keep them private (they never go to a server).
    fn secret_keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        bytes(py, self.c.secret_keys_bytes())
    }

    /// Encrypts a batch of samples (each: `(shape, values)` per input); an fhec ciphertext file.
    fn encrypt<'py>(&self, py: Python<'py>, samples: Vec<Vec<Flat<'py>>>) -> PyResult<Bound<'py, PyBytes>> {
        let batch = clear_batch(samples);
        let c = &self.c;
        let b = cancellable(py, batch.len() <= QUICK_SAMPLES, |_| c.encrypt_bytes(&batch))?;
        Ok(PyBytes::new(py, &b))
    }

    /// Decrypts a server's results (an fhec ciphertext file).
    fn decrypt<'py>(&self, py: Python<'py>, outputs: &[u8]) -> PyResult<Vec<Vec<Out<'py>>>> {
        let c = &self.c;
        flat_batch(
            py,
            cancellable(py, outputs.len() <= QUICK_BYTES, |_| c.decrypt_bytes(outputs))?,
        )
    }
}

/// The server side: a program and expanded evaluation keys. It runs ciphertexts; it has no secret
/// key and no way to get one.
#[pyclass(module = "fhec._fhec", frozen)]
pub(crate) struct Server {
    pub(crate) s: Arc<fhec::Server>,
}

#[pymethods]
impl Server {
    /// A server from a program file (or a model's server file) and evaluation keys (bytes received
    /// from a client).
    #[new]
    fn new(py: Python<'_>, program: &[u8], evaluation_keys: &[u8]) -> PyResult<Server> {
        let s = py
            .detach(|| fhec::Server::from_bytes(program, evaluation_keys, &Progress::stderr()))
            .map_err(py_err)?;
        Ok(Server { s: Arc::new(s) })
    }

    /// The id of the client keys the evaluation keys came from.
    #[getter]
    fn key_id(&self) -> u64 {
        self.s.key_id()
    }

    #[getter]
    fn n_outputs(&self) -> usize {
        self.s.program().outputs.len()
    }

    /// Runs the program on encrypted inputs (an fhec ciphertext file); returns the encrypted
    /// outputs as one. Releases the GIL; Ctrl-C stops it.
    fn run<'py>(&self, py: Python<'py>, inputs: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let s = &self.s;
        let quick = s.program().pbs_count() == 0 && inputs.len() <= QUICK_BYTES;
        let b = cancellable(py, quick, |cancel| {
            s.run_bytes(inputs, &Progress::stderr(), Some(cancel))
        })?;
        Ok(PyBytes::new(py, &b))
    }
}

/// A compiled circuit: the program, its reference, and one client and server of one keygen.
#[pyclass(module = "fhec._fhec", unsendable)]
pub(crate) struct Circuit {
    c: fhec::Circuit,
    n_outputs: usize,
    /// A traced program's own evaluation (numpy semantics on unbounded integers, each op by its
    /// declared semantics); without it, the module's interpreter.
    traced: Option<(fhec::trace::Tracer, Vec<fhec::trace::Traced>)>,
}

impl Circuit {
    pub(crate) fn new(c: fhec::Circuit, n_outputs: usize) -> Circuit {
        Circuit {
            c,
            n_outputs,
            traced: None,
        }
    }

    pub(crate) fn traced(c: fhec::Circuit, tracer: fhec::trace::Tracer, outputs: Vec<fhec::trace::Traced>) -> Circuit {
        Circuit {
            n_outputs: outputs.len(),
            c,
            traced: Some((tracer, outputs)),
        }
    }

    /// The client and the server, after generating keys if needed (without the GIL).
    fn roles(&mut self, py: Python<'_>) -> PyResult<(Arc<fhec::Client>, Arc<fhec::Server>)> {
        if !self.c.has_keys() {
            let program = self.c.shared_program();
            let interface = self.c.interface();
            let (client, server) = py
                .detach(move || -> Result<_, Error> {
                    let progress = Progress::stderr();
                    let client = fhec::Client::keygen(interface)?;
                    let server = fhec::Server::new(program, client.evaluation_keys(&progress), &progress)?;
                    Ok((client, server))
                })
                .map_err(py_err)?;
            self.c.set_keys(client, server).map_err(py_err)?;
        }
        let client = self.c.client().expect("keys generated").clone();
        let server = self.c.server().expect("keys generated").clone();
        Ok((client, server))
    }
}

#[pymethods]
impl Circuit {
    /// Generates the keys (once); releases the GIL meanwhile.
    fn keygen(&mut self, py: Python<'_>) -> PyResult<()> {
        self.roles(py).map(|_| ())
    }

    /// The client of this circuit's keys.
    fn client(&mut self, py: Python<'_>) -> PyResult<Client> {
        Ok(Client { c: self.roles(py)?.0 })
    }

    /// The server of this circuit's keys (built from the client's evaluation keys).
    fn server(&mut self, py: Python<'_>) -> PyResult<Server> {
        Ok(Server { s: self.roles(py)?.1 })
    }

    /// The program as an fhec file: what a server needs besides evaluation keys.
    fn program_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        bytes(py, self.c.program_bytes())
    }

    /// The model's deployment files, `(server file, client file)`, under `name` and `kind`.
    fn model_files<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        kind: &str,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let (s, c) = self.c.model_files(name, kind).map_err(py_err)?;
        Ok((PyBytes::new(py, &s), PyBytes::new(py, &c)))
    }

    /// Encrypts a batch of samples (each: `(shape, values)` per input), runs it on all cores and
    /// decrypts it; releases the GIL meanwhile and stops on Ctrl-C (`KeyboardInterrupt`).
    fn run_batch<'py>(&mut self, py: Python<'py>, samples: Vec<Vec<Flat<'py>>>) -> PyResult<Vec<Vec<Out<'py>>>> {
        let (client, server) = self.roles(py)?;
        let batch = clear_batch(samples);
        let quick = batch.len() <= QUICK_SAMPLES && server.program().pbs_count() == 0;
        let out = cancellable(py, quick, |cancel| {
            let enc = client.encrypt(&batch)?;
            let out = server.run(enc, &Progress::stderr(), Some(cancel))?;
            client.decrypt(&out)
        })?;
        flat_batch(py, out)
    }

    /// The compiled program on exact values, without keys.
    fn simulate<'py>(&self, py: Python<'py>, inputs: Vec<Flat<'py>>) -> PyResult<Vec<Out<'py>>> {
        let xs: Vec<ArrayD<i64>> = inputs.into_iter().map(tensor).collect::<PyResult<_>>()?;
        Ok(self
            .c
            .simulate(&xs)
            .map_err(py_err)?
            .iter()
            .map(|t| flat(py, t))
            .collect())
    }

    /// The compiled program on exact values of many samples, without keys.
    fn simulate_batch<'py>(&self, py: Python<'py>, samples: Vec<Vec<Flat<'py>>>) -> PyResult<Vec<Vec<Out<'py>>>> {
        let out = self.c.program().simulate(&clear_batch(samples)).map_err(Error::from);
        flat_batch(py, out.map_err(py_err)?)
    }

    /// The reference: a traced program's own evaluation, else the module's clear interpreter.
    fn eval_clear<'py>(&self, py: Python<'py>, inputs: Vec<Flat<'py>>) -> PyResult<Vec<Out<'py>>> {
        let xs: Vec<ArrayD<i64>> = inputs.into_iter().map(tensor).collect::<PyResult<_>>()?;
        let out = match &self.traced {
            Some((t, outs)) => t.eval(outs, &xs).map_err(Error::from),
            None => self.c.eval_clear(&xs),
        };
        Ok(out.map_err(py_err)?.iter().map(|t| flat(py, t)).collect())
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
        self.c.reference_ir()
    }
    #[getter]
    fn tfhe_ir(&self) -> String {
        self.c.tfhe_ir()
    }
    /// The client half as JSON: input quantisers and encodings, output dequantisation,
    /// post-processing, class labels (what a client file holds besides keys).
    #[getter]
    fn client_spec(&self) -> String {
        self.c.client_spec().to_json()
    }

    /// Lookups per precision and per partition, parameters, failure probability, key sizes,
    /// estimated latency.
    #[getter]
    fn statistics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = self.c.program();
        let d = PyDict::new(py);
        let by = PyDict::new(py);
        for (prec, n) in &p.noise.pbs_by_precision {
            by.set_item(prec, n)?;
        }
        d.set_item("pbs_count", p.pbs_count())?;
        d.set_item("lanes", p.lane_count())?;
        d.set_item("pbs_by_precision", by)?;
        d.set_item("pbs_by_partition", p.lookups_by_partition())?;
        d.set_item("parameters", p.params_summary())?;
        d.set_item("log2_p_error_per_lookup", p.noise.log2_p_error_worst_lookup)?;
        d.set_item("log2_p_error_global", p.noise.log2_p_error_global)?;
        let (compressed, expanded) = fhec::runtime::keys::program_key_bytes(p);
        d.set_item("evaluation_key_bytes", compressed)?;
        d.set_item("server_key_bytes", expanded)?;
        d.set_item("estimated_seconds", p.noise.estimated_seconds)?;
        Ok(d)
    }
}
