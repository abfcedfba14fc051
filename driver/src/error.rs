//! One error type for everything the facade does: a [`ErrorKind`] a program can match on, a message
//! for people, and the located diagnostics of compilation (the CLI renders them with the source).

use fhec_ir::Diagnostic;
use fhec_runtime::RuntimeError;

/// What went wrong, for callers that react differently (the Python package maps each kind onto an
/// exception class; `fhec serve` onto an HTTP status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An op, a model feature or an option fhec does not support.
    Unsupported,
    /// Shapes, ranks or numbers of inputs that do not fit.
    Shape,
    /// A value outside its type or calibrated range, or an accumulator too wide for a lookup.
    Range,
    /// A program that does not verify, or for which no parameters meet the target.
    Compile,
    /// A damaged file, another kind of file, or another format version.
    Format,
    /// Keys, ciphertexts or a program that belong together but do not (another keygen, another
    /// program, other parameters).
    Mismatch,
    /// Insecure parameters, refused.
    Security,
    /// A program or batch above a server's resource limits (`fhec::runtime::Limits`).
    Limit,
    /// Stopped by the caller (Ctrl-C).
    Cancelled,
    /// Reading or writing a file.
    Io,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Shape => "shape",
            ErrorKind::Range => "range",
            ErrorKind::Compile => "compile",
            ErrorKind::Format => "format",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Security => "security",
            ErrorKind::Limit => "limit",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Io => "io",
        }
    }
}

/// How the parameter search's refusal begins (`fhec_backend_tfhe::params`).
const NO_SECURE_PARAMETERS: &str = "no secure TFHE parameters";

/// The error of every facade call.
#[derive(Clone, Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    diagnostics: Vec<Diagnostic>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            diagnostics: Vec::new(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether this is the parameter search's refusal: no secure parameters meet the failure
    /// target for the program's lookups (its accumulators are too wide to round exactly). A
    /// narrower program may compile; any other error stays an error.
    pub fn no_secure_parameters(&self) -> bool {
        self.kind == ErrorKind::Compile && self.message.contains(NO_SECURE_PARAMETERS)
    }

    /// Whether no parameters found fit the key budget (`CompileOptions::max_key_bytes`): a
    /// narrower or smaller program may.
    pub fn over_key_budget(&self) -> bool {
        self.kind == ErrorKind::Compile && self.message.contains(fhec_backend_tfhe::KEY_BUDGET_NOT_MET)
    }

    /// This compile error as the automatic rounding's build sees it
    /// ([`fhec_onnx::OnnxModel::choose_rounding_bits_with`]): the parameter search's refusal, or
    /// keys over the budget, make the candidate infeasible (a narrower one may compile), any other
    /// error stops the choice.
    pub fn rounding_failure(self) -> fhec_onnx::BuildFailure<Error> {
        if self.no_secure_parameters() || self.over_key_budget() {
            fhec_onnx::BuildFailure::Infeasible(self.message)
        } else {
            fhec_onnx::BuildFailure::Failed(self)
        }
    }

    /// The located diagnostics behind a compile error (empty for other kinds): render them with
    /// the module's source ([`Diagnostic::render`]).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Compile errors from diagnostics; the message joins theirs.
    pub fn from_diagnostics(diagnostics: Vec<Diagnostic>) -> Error {
        let message = diagnostics
            .iter()
            .map(|d| d.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Error {
            kind: ErrorKind::Compile,
            message,
            diagnostics,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Diagnostic> for Error {
    fn from(d: Diagnostic) -> Error {
        Error::from_diagnostics(vec![d])
    }
}

impl From<Vec<Diagnostic>> for Error {
    fn from(d: Vec<Diagnostic>) -> Error {
        Error::from_diagnostics(d)
    }
}

impl From<RuntimeError> for Error {
    fn from(e: RuntimeError) -> Error {
        let kind = match &e {
            RuntimeError::Params(_) => ErrorKind::Security,
            RuntimeError::Format(_) => ErrorKind::Format,
            RuntimeError::Mismatch(_) | RuntimeError::KeyMismatch(_) => ErrorKind::Mismatch,
            RuntimeError::Shape(_) => ErrorKind::Shape,
            RuntimeError::Range(_) => ErrorKind::Range,
            RuntimeError::Limit(_) => ErrorKind::Limit,
            RuntimeError::Cancelled => ErrorKind::Cancelled,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<fhec_trace::TraceError> for Error {
    fn from(e: fhec_trace::TraceError) -> Error {
        // a misuse of the DSL (shapes, axes, clear-only arithmetic) is found while compiling
        match e {
            fhec_trace::TraceError::Trace(m) | fhec_trace::TraceError::Compile(m) => Error::new(ErrorKind::Compile, m),
        }
    }
}

impl From<fhec_trees::TreeError> for Error {
    fn from(e: fhec_trees::TreeError) -> Error {
        match e {
            fhec_trees::TreeError::Model(m) => Error::new(ErrorKind::Unsupported, m),
            fhec_trees::TreeError::Options(m) => Error::new(ErrorKind::Range, m),
            fhec_trees::TreeError::Build(m) => Error::new(ErrorKind::Compile, m),
        }
    }
}

impl From<fhec_quant::QuantError> for Error {
    fn from(e: fhec_quant::QuantError) -> Error {
        match e {
            fhec_quant::QuantError::Options(m) | fhec_quant::QuantError::Calibration(m) => {
                Error::new(ErrorKind::Range, m)
            }
            fhec_quant::QuantError::Unsupported(m) => Error::new(ErrorKind::Unsupported, m),
        }
    }
}

impl From<fhec_onnx::OnnxError> for Error {
    fn from(e: fhec_onnx::OnnxError) -> Error {
        use fhec_onnx::OnnxError as O;
        let kind = match &e {
            O::Format(_) => ErrorKind::Format,
            O::Unsupported(_) => ErrorKind::Unsupported,
            O::Shape(_) => ErrorKind::Shape,
            O::Calibration(_) | O::Options(_) => ErrorKind::Range,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, e.to_string())
    }
}
