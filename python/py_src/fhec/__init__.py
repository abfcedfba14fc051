"""fhec: compile numpy-like integer programs (and, later, machine-learning models) to TFHE and run
them on encrypted data, with exactly the results of the clear program.

    import numpy as np, fhec

    W = np.array([[3, -1], [0, 2], [5, 5], [-7, 1]])

    @fhec.compiler({"x": "encrypted"})
    def f(x):
        return np.abs((x @ W).round_bits(3))

    circuit = f.compile([np.random.randint(0, 16, size=(1, 4)) for _ in range(50)])
    circuit.encrypt_run_decrypt(np.array([[15, 3, 9, 1]]))

Tracing records the operations on the arguments; numpy ufuncs and any Python function applied to
one traced value (``x.apply(f)``) become one table lookup, computed by evaluating the function on every
value the input can take. ``compile`` evaluates the program on the input set to learn every value's
range (inputs outside those ranges are refused later), runs the compiler's passes, and picks secure
TFHE parameters. A circuit's :meth:`Circuit.client` holds the secret keys; a :class:`Server` is built
from the program and evaluation keys as bytes and can only run. See ``docs/python.md``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._circuit import Circuit, Client, Server
from ._dsl import Compiler, Traced, compiler
from .errors import (
    CompileError,
    ExecutionError,
    FhecError,
    FileError,
    FormatError,
    KeyMismatchError,
    RangeError,
    SecurityError,
    ShapeError,
    UnsupportedError,
)

try:
    __version__ = version("fhec")
except PackageNotFoundError:  # running from a source tree
    __version__ = "dev"

__all__ = [
    "compiler",
    "Compiler",
    "Circuit",
    "Client",
    "Server",
    "Traced",
    "FhecError",
    "CompileError",
    "UnsupportedError",
    "ExecutionError",
    "ShapeError",
    "RangeError",
    "FormatError",
    "KeyMismatchError",
    "SecurityError",
    "FileError",
]
