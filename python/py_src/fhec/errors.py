"""The exceptions of fhec. Every error the compiler or the runtime reports is one of these, chosen by
its kind; each also subclasses the builtin a Python user would catch (``ValueError`` for bad values
and files, ``TypeError`` for unsupported models and ops, ``OSError`` for file access)::

    FhecError
    ├── CompileError (ValueError)           tracing or compiling failed: shapes, widths, parameters
    │   └── UnsupportedError (TypeError)    an op, a model or an option fhec does not support
    ├── ExecutionError (RuntimeError)       keys, encryption, execution or decryption failed
    │   ├── ShapeError (ValueError)         inputs of the wrong shape or number
    │   ├── RangeError (ValueError)         an input value outside the range its program accepts
    │   ├── FormatError (ValueError)        a damaged file, another kind of file, another format version
    │   ├── KeyMismatchError (ValueError)   keys, ciphertexts or programs that do not belong together
    │   ├── SecurityError (ValueError)      insecure parameters, refused
    │   └── ResourceLimitError              a program or batch above the server's resource limits
    └── FileError (OSError)                 a file could not be read or written
"""

from __future__ import annotations


class FhecError(Exception):
    """Base class of every fhec error."""


class CompileError(FhecError, ValueError):
    """Tracing or compiling failed (shapes, ranges, widths, parameters)."""


class UnsupportedError(CompileError, TypeError):
    """An op, a model feature or an option that fhec does not support."""


class ExecutionError(FhecError, RuntimeError):
    """Keys, encryption, execution or decryption failed."""


class ShapeError(ExecutionError, ValueError):
    """Inputs of the wrong shape or number for the program."""


class RangeError(ExecutionError, ValueError):
    """An input value outside the range its program accepts."""


class FormatError(ExecutionError, ValueError):
    """A damaged file, a file of another kind (keys for a program), or another format version."""


class KeyMismatchError(ExecutionError, ValueError):
    """Keys, ciphertexts or a program that do not belong together: ciphertexts of another keygen,
    evaluation keys for other parameters, results decrypted with another client's keys."""


class SecurityError(ExecutionError, ValueError):
    """Parameters below the security target, refused."""


class ResourceLimitError(ExecutionError):
    """A program or a batch above the server's resource limits (memory per sample, lookups,
    tables, samples per batch); raise the limits or send smaller batches."""


class FileError(FhecError, OSError):
    """A file could not be read or written."""


__all__ = [
    "FhecError",
    "CompileError",
    "UnsupportedError",
    "ExecutionError",
    "ShapeError",
    "RangeError",
    "FormatError",
    "KeyMismatchError",
    "SecurityError",
    "ResourceLimitError",
    "FileError",
]
