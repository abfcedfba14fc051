//! What compilation gives: a [`Circuit`], and the two roles it serves, [`Client`] and [`Server`].
//!
//! * A [`Client`] holds the program's interface ([`ProgramInterface`]: parameters, ports,
//!   fingerprint; no instruction, no table) and the secret keys: it generates keys, exports the
//!   evaluation keys, encrypts and decrypts.
//! * A [`Server`] is built from a program and evaluation keys, as bytes from outside if need be, and
//!   can only run. It has no field, method or constructor through which a secret key could reach it.
//! * A [`Circuit`] is the convenience that owns the compiled program, its reference module, and one
//!   client and one server made from the same keygen (for tests, notebooks and single-process use).
//!
//! Keys carry a random key id, copied into the evaluation keys and every ciphertext: running or
//! decrypting with keys of another keygen is a [`ErrorKind::Mismatch`] error, never garbage.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fhec_backend_tfhe::Compiled;
use fhec_ir::{Module, Tensor};
use fhec_quant::ClientSpec;
use fhec_runtime::{
    exec, io as rio, Ciphertexts, ClearTensor, ClientKeys, EvaluationKeys, Limits, Program, ProgramInterface, Progress,
    ServerKeys,
};
use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, ErrorKind};

/// The client side: the program's interface and the secret keys.
pub struct Client {
    interface: Arc<ProgramInterface>,
    keys: ClientKeys,
}

impl Client {
    /// Generates fresh secret keys for the program of `interface` ([`Program::interface`], or a
    /// client file's).
    pub fn keygen(interface: impl Into<Arc<ProgramInterface>>) -> Result<Client, Error> {
        let interface = interface.into();
        interface.validate()?;
        let keys = ClientKeys::generate(&interface.partitions)?;
        Ok(Client { interface, keys })
    }

    /// A client from keys generated before (they must be for the program's parameters).
    pub fn from_keys(interface: impl Into<Arc<ProgramInterface>>, keys: ClientKeys) -> Result<Client, Error> {
        let interface = interface.into();
        interface.validate()?;
        if keys.partitions() != interface.partitions {
            return Err(Error::new(
                ErrorKind::Mismatch,
                "these secret keys are for other parameters than the program: generate keys for it",
            ));
        }
        Ok(Client { interface, keys })
    }

    /// A client from a program file or a model's client file, and a secret-key file (bytes, checked).
    pub fn from_bytes(program: &[u8], secret_keys: &[u8]) -> Result<Client, Error> {
        let interface = crate::model::interface_from_bytes(program)?;
        Client::from_keys(interface, rio::client_keys_from_bytes(secret_keys)?)
    }

    /// The program's interface: parameters, ports, fingerprint.
    pub fn interface(&self) -> &ProgramInterface {
        &self.interface
    }

    /// The random id of these keys; evaluation keys and ciphertexts carry it.
    pub fn key_id(&self) -> u64 {
        self.keys.key_id()
    }

    /// The secret keys, serialised: they must stay with the client (a key directory, say).
    pub fn secret_keys_bytes(&self) -> Result<Vec<u8>, Error> {
        Ok(rio::client_keys_to_bytes(&self.keys)?)
    }

    /// The (compressed) evaluation keys the program needs: what a server receives.
    pub fn evaluation_keys(&self, progress: &Progress) -> EvaluationKeys {
        self.keys.evaluation_keys_for(&self.interface, progress)
    }

    /// [`Client::evaluation_keys`] as an fhec file.
    pub fn evaluation_keys_bytes(&self, progress: &Progress) -> Result<Vec<u8>, Error> {
        Ok(rio::evaluation_keys_to_bytes(&self.evaluation_keys(progress))?)
    }

    /// Encrypts a batch of samples (each: one tensor per program input, clear arguments included).
    pub fn encrypt(&self, samples: &[Vec<ClearTensor>]) -> Result<Ciphertexts, Error> {
        Ok(self.keys.encrypt(&self.interface, samples)?)
    }

    /// [`Client::encrypt`] as an fhec ciphertext file.
    pub fn encrypt_bytes(&self, samples: &[Vec<ClearTensor>]) -> Result<Vec<u8>, Error> {
        Ok(rio::ciphertexts_to_bytes(&self.encrypt(samples)?)?)
    }

    /// Decrypts a server's results: per sample, one tensor per program output.
    pub fn decrypt(&self, outputs: &Ciphertexts) -> Result<Vec<Vec<ClearTensor>>, Error> {
        Ok(self.keys.decrypt(&self.interface, outputs)?)
    }

    /// [`Client::decrypt`] of an fhec ciphertext file.
    pub fn decrypt_bytes(&self, outputs: &[u8]) -> Result<Vec<Vec<ClearTensor>>, Error> {
        self.decrypt(&rio::ciphertexts_from_bytes(outputs)?)
    }
}

/// The server side: a program and expanded evaluation keys. It runs; nothing else.
pub struct Server {
    program: Arc<Program>,
    keys: ServerKeys,
    limits: Limits,
}

impl Server {
    /// A server for `program` with a client's evaluation keys (expanded here), under the default
    /// resource [`Limits`].
    pub fn new(program: Arc<Program>, keys: EvaluationKeys, progress: &Progress) -> Result<Server, Error> {
        Server::with_limits(program, keys, Limits::default(), progress)
    }

    /// [`Server::new`] under the given resource limits: the program is checked against them
    /// before the keys are expanded, each batch before it runs.
    pub fn with_limits(
        program: Arc<Program>,
        keys: EvaluationKeys,
        limits: Limits,
        progress: &Progress,
    ) -> Result<Server, Error> {
        limits.check_program(&program)?;
        keys.check_interface(&program.interface())?;
        let keys = keys.expand(progress)?;
        Ok(Server { program, keys, limits })
    }

    /// A server from a program file and an evaluation-key file, as received (checked before use).
    /// `program` is a program file or a model's server file.
    pub fn from_bytes(program: &[u8], evaluation_keys: &[u8], progress: &Progress) -> Result<Server, Error> {
        let program = Arc::new(crate::model::server_program_from_bytes(program)?);
        Server::new(program, rio::evaluation_keys_from_bytes(evaluation_keys)?, progress)
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The id of the client keys the evaluation keys came from.
    pub fn key_id(&self) -> u64 {
        self.keys.key_id()
    }

    /// The resource limits this server runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Size of the expanded evaluation keys in bytes.
    pub fn key_bytes(&self) -> usize {
        self.keys.size_bytes()
    }

    /// Runs the program on a batch of encrypted inputs; `cancel` stops it at the next lookup.
    pub fn run(
        &self,
        inputs: Ciphertexts,
        progress: &Progress,
        cancel: Option<&AtomicBool>,
    ) -> Result<Ciphertexts, Error> {
        Ok(exec::run_with_limits(
            &self.program,
            &self.keys,
            inputs,
            progress,
            cancel,
            &self.limits,
        )?)
    }

    /// [`Server::run`] on an fhec ciphertext file; returns the results as one.
    pub fn run_bytes(&self, inputs: &[u8], progress: &Progress, cancel: Option<&AtomicBool>) -> Result<Vec<u8>, Error> {
        let out = self.run(rio::ciphertexts_from_bytes(inputs)?, progress, cancel)?;
        Ok(rio::ciphertexts_to_bytes(&out)?)
    }
}

/// A compiled computation: the module as given (the reference), the module after passes, the
/// program, and — after [`Circuit::keygen`] — a client and a server from one keygen.
pub struct Circuit {
    spec: ClientSpec,
    reference: Module,
    module: Module,
    program: Arc<Program>,
    interface: Arc<ProgramInterface>,
    keys: Option<(Arc<Client>, Arc<Server>)>,
}

/// A clear tensor as the runtime takes it.
pub fn to_clear(t: &Tensor) -> ClearTensor {
    ClearTensor {
        shape: t.shape().to_vec(),
        values: t.iter().copied().collect(),
    }
}

/// A runtime tensor as an ndarray.
pub fn from_clear(c: &ClearTensor) -> Result<Tensor, Error> {
    ArrayD::from_shape_vec(IxDyn(&c.shape), c.values.clone()).map_err(|e| Error::new(ErrorKind::Shape, e.to_string()))
}

fn from_clear_batch(out: Vec<Vec<ClearTensor>>) -> Result<Vec<Vec<Tensor>>, Error> {
    out.iter().map(|s| s.iter().map(from_clear).collect()).collect()
}

impl Circuit {
    pub(crate) fn new(reference: Module, module: Module, compiled: Compiled, spec: ClientSpec) -> Circuit {
        let program = Arc::new(compiled.program);
        let interface = Arc::new(program.interface());
        Circuit {
            spec,
            reference,
            module,
            program,
            interface,
            keys: None,
        }
    }

    /// The client half: what the client sends (integers, or float features it quantises and
    /// encodes) and how it reads the results (dequantisation, post-processing).
    pub fn client_spec(&self) -> &ClientSpec {
        &self.spec
    }

    /// The module as given to [`crate::compile`], before passes.
    pub fn reference_ir(&self) -> String {
        fhec_ir::print_module(&self.reference)
    }
    /// The module after the pass pipeline (what was lowered).
    pub fn ir(&self) -> String {
        fhec_ir::print_module(&self.module)
    }
    /// The lowered program in the `tfhe` dialect.
    pub fn tfhe_ir(&self) -> String {
        fhec_backend_tfhe::text::print_program(&self.program)
    }
    pub fn program(&self) -> &Program {
        &self.program
    }
    /// The program, shared (to build a [`Server`] of one's own).
    pub fn shared_program(&self) -> Arc<Program> {
        self.program.clone()
    }
    /// The program's interface, shared (to build a [`Client`] of one's own).
    pub fn interface(&self) -> Arc<ProgramInterface> {
        self.interface.clone()
    }
    /// The model's two deployment files (server file, client file) under `name` and `kind`.
    pub fn model_files(&self, name: &str, kind: &str) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let server = crate::model::ServerModel::new(crate::model::ModelInfo::new(name, kind)?, (*self.program).clone());
        let client = server.client_model(self.spec.clone())?;
        Ok((server.to_bytes()?, client.to_bytes()?))
    }
    /// The program as an fhec file: everything a server needs besides evaluation keys.
    pub fn program_bytes(&self) -> Result<Vec<u8>, Error> {
        Ok(rio::program_to_bytes(&self.program)?)
    }

    pub fn has_keys(&self) -> bool {
        self.keys.is_some()
    }

    /// Generates keys (once): a client, and a server built from the client's evaluation keys.
    pub fn keygen(&mut self, progress: &Progress) -> Result<(), Error> {
        if self.keys.is_none() {
            let client = Client::keygen(self.interface.clone())?;
            let server = Server::new(self.program.clone(), client.evaluation_keys(progress), progress)?;
            self.keys = Some((Arc::new(client), Arc::new(server)));
        }
        Ok(())
    }

    /// Installs a client and a server made elsewhere (keys generated without holding the circuit,
    /// say): both must be for this program and of one keygen.
    pub fn set_keys(&mut self, client: Client, server: Server) -> Result<(), Error> {
        let fp = self.program.fingerprint();
        if client.interface().fingerprint != fp || server.program().fingerprint() != fp {
            return Err(Error::new(ErrorKind::Mismatch, "these keys are for another program"));
        }
        if client.key_id() != server.key_id() {
            return Err(Error::new(
                ErrorKind::Mismatch,
                "the client and the server come from different keygens",
            ));
        }
        self.keys = Some((Arc::new(client), Arc::new(server)));
        Ok(())
    }

    /// The client and the server (after [`Circuit::keygen`]).
    pub fn parts(&self) -> Option<(&Client, &Server)> {
        self.keys.as_ref().map(|(c, s)| (&**c, &**s))
    }

    /// The client (after [`Circuit::keygen`]), shared.
    pub fn client(&self) -> Option<&Arc<Client>> {
        self.keys.as_ref().map(|(c, _)| c)
    }

    /// The server (after [`Circuit::keygen`]), shared.
    pub fn server(&self) -> Option<&Arc<Server>> {
        self.keys.as_ref().map(|(_, s)| s)
    }

    /// The reference: the module as given, run by the clear interpreter, which checks every value
    /// against its declared width (inputs against their declared ranges). A traced program's own
    /// evaluation on unbounded integers is [`fhec_trace::Tracer::eval`].
    pub fn eval_clear(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Error> {
        let v = fhec_ir::verify(&self.reference)?;
        Ok(fhec_ir::interp::eval(&v, inputs)?)
    }

    /// The compiled program run on exact values, without keys.
    pub fn simulate(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Error> {
        let mut out = self.simulate_batch(&[inputs.to_vec()])?;
        Ok(out.remove(0))
    }

    pub fn simulate_batch(&self, samples: &[Vec<Tensor>]) -> Result<Vec<Vec<Tensor>>, Error> {
        let batch: Vec<Vec<ClearTensor>> = samples.iter().map(|s| s.iter().map(to_clear).collect()).collect();
        from_clear_batch(self.program.simulate(&batch)?)
    }

    /// Encrypts a batch, runs it, decrypts it (generating keys first if needed).
    pub fn encrypt_run_decrypt_batch(&mut self, samples: &[Vec<Tensor>]) -> Result<Vec<Vec<Tensor>>, Error> {
        let progress = Progress::stderr();
        self.keygen(&progress)?;
        let (client, server) = self.parts().expect("keys generated");
        let batch: Vec<Vec<ClearTensor>> = samples.iter().map(|s| s.iter().map(to_clear).collect()).collect();
        let out = server.run(client.encrypt(&batch)?, &progress, None)?;
        from_clear_batch(client.decrypt(&out)?)
    }

    pub fn encrypt_run_decrypt(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Error> {
        Ok(self.encrypt_run_decrypt_batch(&[inputs.to_vec()])?.remove(0))
    }
}
