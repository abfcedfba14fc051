//! One mapping from the facade's error kinds onto the exception classes of `fhec.errors` (defined
//! in Python, where a class can also subclass the builtin a scikit-learn user expects).

use fhec::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::types::PyType;

/// The `fhec.errors` class for a kind.
fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unsupported => "UnsupportedError",
        ErrorKind::Compile => "CompileError",
        ErrorKind::Shape => "ShapeError",
        ErrorKind::Range => "RangeError",
        ErrorKind::Format => "FormatError",
        ErrorKind::Mismatch => "KeyMismatchError",
        ErrorKind::Security => "SecurityError",
        ErrorKind::Limit => "ResourceLimitError",
        ErrorKind::Cancelled => "ExecutionError",
        ErrorKind::Io => "FileError",
    }
}

/// The Python exception for a facade error.
pub(crate) fn py_err(e: Error) -> PyErr {
    Python::attach(|py| {
        let class = py
            .import("fhec.errors")
            .and_then(|m| m.getattr(class_name(e.kind())))
            .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
        match class {
            Ok(c) => PyErr::from_type(c, e.to_string()),
            Err(import_error) => import_error,
        }
    })
}

/// A compile error with a message (bad arguments of a compile call).
pub(crate) fn compile_err(message: impl Into<String>) -> PyErr {
    py_err(Error::new(ErrorKind::Compile, message))
}

/// Maps any error the facade converts.
pub(crate) fn to_py<E: Into<Error>>(e: E) -> PyErr {
    py_err(e.into())
}
