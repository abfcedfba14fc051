//! Deployment files from Python: `ClientModel` (a model's client file: quantise, encrypt, decrypt,
//! dequantise, post-process with the client spec and the program's interface) and `ServerModel` (a
//! model's server file: the program; servers are made from it and evaluation keys).

use std::sync::Arc;

use fhec::runtime::Progress;
use fhec::{Error, ErrorKind};
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::circuit::{Client, Server};
use crate::errors::py_err;

/// A model's client file: what a client needs, without the program's instructions or tables.
#[pyclass(module = "fhec._fhec", frozen)]
pub(crate) struct ClientModel {
    m: Arc<fhec::ClientModel>,
}

impl ClientModel {
    fn check_client(&self, client: &Client) -> PyResult<()> {
        if client.c.interface().fingerprint != self.m.interface.fingerprint {
            return Err(py_err(Error::new(
                ErrorKind::Mismatch,
                "these keys are for another program than this client file",
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl ClientModel {
    /// Reads a client file (checked: header, version, secure parameters, spec and interface).
    #[new]
    fn new(py: Python<'_>, data: &[u8]) -> PyResult<ClientModel> {
        let m = py.detach(|| fhec::ClientModel::from_bytes(data)).map_err(py_err)?;
        Ok(ClientModel { m: Arc::new(m) })
    }

    #[getter]
    fn name(&self) -> String {
        self.m.info.name.clone()
    }
    #[getter]
    fn kind(&self) -> String {
        self.m.info.kind.clone()
    }
    #[getter]
    fn fhec_version(&self) -> String {
        self.m.info.fhec_version.clone()
    }
    /// The program's fingerprint (every ciphertext of this model carries it).
    #[getter]
    fn fingerprint(&self) -> u64 {
        self.m.interface.fingerprint
    }
    /// The client spec as JSON.
    #[getter]
    fn client_spec(&self) -> String {
        self.m.spec.to_json()
    }
    /// Whether the model takes rows of float features (else integer inputs, as a traced function).
    #[getter]
    fn takes_features(&self) -> bool {
        matches!(self.m.spec.inputs.as_slice(), [fhec::quant::InputSpec::Features { .. }])
    }
    #[getter]
    fn n_outputs(&self) -> usize {
        self.m.interface.outputs.len()
    }
    /// Lookups per run (0: the model needs no evaluation keys).
    #[getter]
    fn lookups(&self) -> u64 {
        self.m.interface.lookups
    }

    /// Fresh secret keys for this model.
    fn keygen(&self, py: Python<'_>) -> PyResult<Client> {
        let iface = self.m.interface.clone();
        let c = py.detach(move || fhec::Client::keygen(iface)).map_err(py_err)?;
        Ok(Client { c: Arc::new(c) })
    }

    /// A client of this model from secret keys saved before.
    fn client(&self, py: Python<'_>, secret_keys: &[u8]) -> PyResult<Client> {
        let iface = self.m.interface.clone();
        let c = py
            .detach(move || -> Result<_, Error> {
                let keys = fhec::runtime::io::client_keys_from_bytes(secret_keys)?;
                fhec::Client::from_keys(iface, keys)
            })
            .map_err(py_err)?;
        Ok(Client { c: Arc::new(c) })
    }

    /// Quantises and encodes rows of float features (`rows × features`) and encrypts them with
    /// `client`, one sample per row; returns a ciphertext file and the number of clipped values.
    fn encrypt_rows<'py>(
        &self,
        py: Python<'py>,
        client: &Client,
        x: PyReadonlyArray2<'_, f64>,
    ) -> PyResult<(Bound<'py, PyBytes>, usize)> {
        self.check_client(client)?;
        let v = x.as_array();
        let rows = v.nrows();
        let values: Vec<f64> = v.iter().copied().collect();
        let (m, c) = (&self.m, &client.c);
        let (bytes, clipped) = py
            .detach(move || -> Result<_, Error> {
                let (samples, clipped) = m.encode_rows(&values, rows)?;
                Ok((c.encrypt_bytes(&samples)?, clipped))
            })
            .map_err(py_err)?;
        Ok((PyBytes::new(py, &bytes), clipped))
    }

    /// Decrypts a server's results with `client`: the integers of output 0 (`rows × columns`).
    fn decrypt_ints<'py>(&self, py: Python<'py>, client: &Client, data: &[u8]) -> PyResult<Bound<'py, PyArray2<i64>>> {
        self.check_client(client)?;
        let c = &client.c;
        let m = &self.m;
        let (rows, (ints, cols)) = py
            .detach(|| -> Result<_, Error> {
                let out = c.decrypt_bytes(data)?;
                Ok((out.len(), m.output_ints(&out)?))
            })
            .map_err(py_err)?;
        array2(py, rows, cols, ints)
    }

    /// Decrypts a server's results with `client`, dequantises and post-processes them: predictions
    /// for regressions, class probabilities (or decision values) for classifiers, `rows × columns`.
    fn decrypt_values<'py>(
        &self,
        py: Python<'py>,
        client: &Client,
        data: &[u8],
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        self.check_client(client)?;
        let (m, c) = (&self.m, &client.c);
        let (rows, (values, cols)) = py
            .detach(|| -> Result<_, Error> {
                let out = c.decrypt_bytes(data)?;
                Ok((out.len(), m.decode_rows(&out)?))
            })
            .map_err(py_err)?;
        array2(py, rows, cols, values)
    }

    /// Decrypts a server's results with `client`: the predicted class index of each row.
    fn decrypt_classes(&self, py: Python<'_>, client: &Client, data: &[u8]) -> PyResult<Vec<usize>> {
        self.check_client(client)?;
        let (m, c) = (&self.m, &client.c);
        py.detach(|| -> Result<_, Error> { m.class_indices(&c.decrypt_bytes(data)?) })
            .map_err(py_err)
    }
}

fn array2<'py, T: numpy::Element>(
    py: Python<'py>,
    rows: usize,
    cols: usize,
    v: Vec<T>,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    ndarray::Array2::from_shape_vec((rows, cols), v)
        .map(|a| a.into_pyarray(py))
        .map_err(|e| py_err(Error::new(ErrorKind::Shape, e.to_string())))
}

/// A model's server file: the program a server runs.
#[pyclass(module = "fhec._fhec", frozen)]
pub(crate) struct ServerModel {
    info: fhec::ModelInfo,
    program: Arc<fhec::runtime::Program>,
}

#[pymethods]
impl ServerModel {
    /// Reads a server file (checked; the failure probabilities are re-derived from the program).
    #[new]
    fn new(py: Python<'_>, data: &[u8]) -> PyResult<ServerModel> {
        let m = py.detach(|| fhec::ServerModel::from_bytes(data)).map_err(py_err)?;
        Ok(ServerModel {
            info: m.info,
            program: Arc::new(m.program),
        })
    }

    #[getter]
    fn name(&self) -> String {
        self.info.name.clone()
    }
    #[getter]
    fn kind(&self) -> String {
        self.info.kind.clone()
    }
    #[getter]
    fn fhec_version(&self) -> String {
        self.info.fhec_version.clone()
    }
    #[getter]
    fn fingerprint(&self) -> u64 {
        self.program.fingerprint()
    }
    /// Lookups per run (0: the model needs no evaluation keys).
    #[getter]
    fn lookups(&self) -> usize {
        self.program.pbs_count()
    }

    /// A server of this model for a client's evaluation keys (checked, then expanded).
    fn server(&self, py: Python<'_>, evaluation_keys: &[u8]) -> PyResult<Server> {
        let program = self.program.clone();
        let s = py
            .detach(move || -> Result<_, Error> {
                let keys = fhec::runtime::io::evaluation_keys_from_bytes(evaluation_keys)?;
                fhec::Server::new(program, keys, &Progress::stderr())
            })
            .map_err(py_err)?;
        Ok(Server { s: Arc::new(s) })
    }
}
