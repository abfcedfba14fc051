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
TFHE parameters. See ``docs/python.md``.
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from importlib.metadata import PackageNotFoundError, version

from ._fhec import CompileError, ExecutionError, FhecError
from ._fhec import Circuit as _Circuit
from ._fhec import Tracer as _Tracer
from ._fhec import Value as _Value

try:
    __version__ = version("fhec")
except PackageNotFoundError:  # running from a source tree
    __version__ = "dev"

__all__ = [
    "compiler",
    "Compiler",
    "Circuit",
    "Traced",
    "FhecError",
    "CompileError",
    "ExecutionError",
]


def _flat(a: Any) -> tuple[list[int], list[int]]:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise CompileError(f"expected integers, got an array of {arr.dtype}")
    arr = arr.astype(np.int64)
    return list(arr.shape), arr.ravel().tolist()


def _array(flat: tuple[list[int], list[int]]) -> np.ndarray:
    shape, values = flat
    return np.array(values, dtype=np.int64).reshape(shape)


def _operand(o: Any) -> Any:
    if isinstance(o, Traced):
        return o._v
    if isinstance(o, (int, np.integer)):
        return int(o)
    return _flat(o)


class Traced:
    """A traced value — encrypted, or a clear argument (``"clear"``) and what is computed from it:
    use it like an integer numpy array."""

    __array_priority__ = 1000

    def __init__(self, v: _Value):
        self._v = v

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._v.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def encrypted(self) -> bool:
        """Whether the value is encrypted (computed from an encrypted argument)."""
        return bool(self._v.encrypted)

    def __add__(self, o: Any) -> "Traced":
        return Traced(self._v.add(_operand(o)))

    __radd__ = __add__

    def __sub__(self, o: Any) -> "Traced":
        return Traced(self._v.sub(_operand(o)))

    def __rsub__(self, o: Any) -> "Traced":
        return Traced(self._v.neg().add(_operand(o)))

    def __mul__(self, o: Any) -> "Traced":
        return Traced(self._v.mul(_operand(o)))

    __rmul__ = __mul__

    def __neg__(self) -> "Traced":
        return Traced(self._v.neg())

    def __matmul__(self, w: Any) -> "Traced":
        return Traced(self._v.matmul(w._v if isinstance(w, Traced) else _flat(w)))

    def __rmatmul__(self, w: Any) -> "Traced":
        return Traced(self._v.rmatmul(_flat(w)))

    def __floordiv__(self, c: int) -> "Traced":
        c = int(c)
        return self.apply(lambda v: v // c)

    def __mod__(self, c: int) -> "Traced":
        c = int(c)
        return self.apply(lambda v: v % c)

    def __lt__(self, c: int) -> "Traced":  # type: ignore[override]
        c = int(c)
        return self.apply(lambda v: int(v < c))

    def __le__(self, c: int) -> "Traced":  # type: ignore[override]
        c = int(c)
        return self.apply(lambda v: int(v <= c))

    def __gt__(self, c: int) -> "Traced":  # type: ignore[override]
        c = int(c)
        return self.apply(lambda v: int(v > c))

    def __ge__(self, c: int) -> "Traced":  # type: ignore[override]
        c = int(c)
        return self.apply(lambda v: int(v >= c))

    def __eq__(self, c: object) -> "Traced":  # type: ignore[override]
        c2 = int(c)  # type: ignore[arg-type]
        return self.apply(lambda v: int(v == c2))

    __hash__ = None  # type: ignore[assignment]

    def apply(self, f: Callable[[int], int]) -> "Traced":
        """Any function of one value, elementwise: one table lookup."""
        return Traced(self._v.univariate(lambda v: int(f(v))))

    def clip(self, lo: int, hi: int) -> "Traced":
        lo, hi = int(lo), int(hi)
        return self.apply(lambda v: min(max(v, lo), hi))

    def round_bits(self, k: int) -> "Traced":
        """Drops ``k`` low bits with rounding (half up): ``(v + 2**(k-1)) >> k``."""
        return Traced(self._v.round_bits(int(k)))

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Traced":
        axes = [] if axis is None else ([axis] if isinstance(axis, int) else list(axis))
        for a in axes:
            if not -self.ndim <= a < self.ndim:
                raise CompileError(f"axis {a} is out of range for a value of rank {self.ndim}")
        axes = [a % self.ndim for a in axes]
        return Traced(self._v.sum(axes, keepdims))

    def reshape(self, *shape: Any) -> "Traced":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = list(shape)
        if -1 in shape:
            known = int(np.prod([d for d in shape if d != -1]))
            shape[shape.index(-1)] = int(np.prod(self.shape)) // max(known, 1)
        return Traced(self._v.reshape([int(d) for d in shape]))

    def __getitem__(self, key: Any) -> "Traced":
        """numpy basic indexing: integers, slices with a positive step, ``...`` and ``None``
        (``x[0]``, ``x[:, 1:3]``, ``x[::2]``, ``x[..., -1]``, ``x[None]``). No copy happens in FHE: a slice
        only selects ciphertexts."""
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            if sum(k is Ellipsis for k in key) > 1:
                raise IndexError("an index can only have a single ellipsis ('...')")
            used = sum(k is not None and k is not Ellipsis for k in key)
            i = next(j for j, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - used) + key[i + 1 :]
        if sum(k is not None for k in key) > self.ndim:
            raise IndexError(f"too many indices for a value of rank {self.ndim}")
        starts, ends, steps, out_shape = [], [], [], []
        axis = 0
        for k in key:
            if k is None:
                out_shape.append(1)
                continue
            n = self.shape[axis]
            if isinstance(k, slice):
                b, e, st = k.indices(n)
                if st <= 0:
                    raise IndexError("slices with a negative or zero step are not supported")
                if e <= b:
                    raise IndexError(f"slice {k} of axis {axis} (size {n}) selects nothing")
                starts.append(b), ends.append(e), steps.append(st)
                out_shape.append(len(range(b, e, st)))
            elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
                i = int(k) + (n if k < 0 else 0)
                if not 0 <= i < n:
                    raise IndexError(f"index {int(k)} is out of bounds for axis {axis} with size {n}")
                starts.append(i), ends.append(i + 1), steps.append(1)
            else:
                raise IndexError(f"unsupported index {k!r}: integers, slices, ... and None are supported")
            axis += 1
        for n in self.shape[axis:]:
            starts.append(0), ends.append(n), steps.append(1)
            out_shape.append(n)
        v = self._v
        if (starts, ends, steps) != ([0] * self.ndim, list(self.shape), [1] * self.ndim):
            v = v.slice(starts, ends, steps)
        if tuple(out_shape) != tuple(v.shape):
            v = v.reshape(out_shape)
        return Traced(v)

    def transpose(self, *axes: int) -> "Traced":
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return Traced(self._v.transpose(list(axes)))

    @property
    def T(self) -> "Traced":
        return self.transpose()

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """numpy ufuncs on one traced value become one table (``np.abs(x)``, ``np.maximum(x, 0)``)."""
        if method != "__call__":
            return NotImplemented
        traced = [i for i, x in enumerate(inputs) if isinstance(x, Traced)]
        if len(traced) != 1:
            if ufunc in (np.add, np.subtract, np.multiply, np.matmul) and len(inputs) == 2:
                a, b = inputs
                return {np.add: lambda: a + b, np.subtract: lambda: a - b, np.multiply: lambda: a * b,
                        np.matmul: lambda: a @ b}[ufunc]()
            return NotImplemented
        i = traced[0]
        others = [x for j, x in enumerate(inputs) if j != i]
        if any(np.ndim(x) > 0 for x in others):
            return NotImplemented  # per-element constants: use the arithmetic operators

        def f(v: int) -> int:
            args = list(inputs)
            args[i] = np.int64(v)
            return int(ufunc(*args, **kwargs))

        return self.apply(f)

    def __repr__(self) -> str:
        return f"Traced(shape={self.shape})"


class Circuit:
    """A compiled program: keys, encrypted execution, simulation, and the IR at each stage."""

    def __init__(self, c: _Circuit, single: bool):
        self._c = c
        self._single = single

    def keygen(self) -> None:
        """Generates the secret and evaluation keys (once)."""
        self._c.keygen()

    def _out(self, flats: list) -> Any:
        outs = [_array(o) for o in flats]
        return outs[0] if self._single else tuple(outs)

    def encrypt_run_decrypt(self, *args: Any) -> Any:
        """Encrypts the inputs, runs the circuit on ciphertexts, decrypts the result."""
        return self._out(self._c.run_batch([[_flat(a) for a in args]])[0])

    def run_batch(self, samples: Iterable[Sequence[Any]], progress: bool | None = None) -> list[Any]:
        """Encrypted execution of many samples at once (parallel): one result per sample.

        ``progress``: a progress bar. In a terminal the runtime draws one on stderr once a run lasts a
        second; elsewhere (a notebook, a log) a tqdm bar does, per group of samples, when the cost
        model expects more than a second. ``True``/``False`` force it on or off; ``FHEC_PROGRESS=0``
        silences both."""
        batch = [[_flat(a) for a in (s if isinstance(s, (tuple, list)) else (s,))] for s in samples]
        if not self._tqdm_wanted(len(batch), progress):
            return [self._out(r) for r in self._c.run_batch(batch)]
        from tqdm.auto import tqdm

        step = max(1, len(batch) // 50)
        out: list[Any] = []
        with tqdm(total=len(batch), desc="encrypted run", unit="sample", file=sys.stderr) as bar:
            for i in range(0, len(batch), step):
                out.extend(self._out(r) for r in self._c.run_batch(batch[i : i + step]))
                bar.update(min(step, len(batch) - i))
        return out

    def _tqdm_wanted(self, n: int, progress: bool | None) -> bool:
        if progress is False or os.environ.get("FHEC_PROGRESS") == "0" or n < 2:
            return False
        try:
            import tqdm  # noqa: F401
        except ImportError:
            return False
        if progress:
            return True
        if sys.stderr.isatty():
            return False  # the runtime's own bar
        per_sample = float(self._c.statistics["estimated_seconds"]) / max(os.cpu_count() or 1, 1)
        return per_sample * n > 1.0

    def simulate(self, *args: Any) -> Any:
        """The compiled program on clear values, without keys: what encrypted execution returns."""
        return self._out(self._c.simulate([_flat(a) for a in args]))

    def encrypt(self, *args: Any) -> bytes:
        """Client: encrypts one sample's arguments; returns ciphertexts as bytes (an fhec file)."""
        return self._c.encrypt([[_flat(a) for a in args]])

    def encrypt_batch(self, samples: Iterable[Sequence[Any]]) -> bytes:
        """Client: encrypts many samples at once (in parallel) into one ciphertext file."""
        return self._c.encrypt([[_flat(a) for a in (s if isinstance(s, (tuple, list)) else (s,))] for s in samples])

    def run(self, encrypted: bytes) -> bytes:
        """Server: runs the program on ciphertexts from ``encrypt`` with the evaluation keys only."""
        return self._c.run(encrypted)

    def decrypt(self, encrypted: bytes) -> Any:
        """Client: decrypts the output of ``run`` for one sample (what ``encrypt_run_decrypt`` returns)."""
        out = self._c.decrypt(encrypted)
        if len(out) != 1:
            raise ExecutionError(f"these ciphertexts hold {len(out)} samples: use decrypt_batch")
        return self._out(out[0])

    def decrypt_batch(self, encrypted: bytes) -> list[Any]:
        """Client: decrypts the output of ``run`` for a batch: one result per sample."""
        return [self._out(r) for r in self._c.decrypt(encrypted)]

    def simulate_batch(self, samples: Iterable[Sequence[Any]]) -> list[Any]:
        """Simulation of many samples at once: one result per sample."""
        batch = [[_flat(a) for a in (s if isinstance(s, (tuple, list)) else (s,))] for s in samples]
        return [self._out(r) for r in self._c.simulate_batch(batch)]

    def eval_clear(self, *args: Any) -> Any:
        """The traced program itself, in the clear (integer numpy semantics)."""
        return self._out(self._c.eval_clear([_flat(a) for a in args]))

    @property
    def ir(self) -> str:
        """The ``fhe`` module after the passes (what is lowered)."""
        return self._c.ir

    @property
    def traced_ir(self) -> str:
        """The ``fhe`` module as traced."""
        return self._c.traced_ir

    @property
    def tfhe_ir(self) -> str:
        """The lowered TFHE program."""
        return self._c.tfhe_ir

    @property
    def statistics(self) -> dict:
        """Lookups per precision, parameters, failure probabilities, key sizes, estimated latency."""
        return self._c.statistics


class Compiler:
    """A function to trace; ``compile(inputset)`` turns it into a :class:`Circuit`."""

    def __init__(self, fn: Callable[..., Any], parameters: dict[str, str]):
        names = list(inspect.signature(fn).parameters)
        if set(names) != set(parameters):
            raise CompileError(f"parameters {sorted(parameters)} do not match the function's arguments {names}")
        for name, kind in parameters.items():
            if kind not in ("encrypted", "clear"):
                raise CompileError(f"argument `{name}`: expected \"encrypted\" or \"clear\", got {kind!r}")
        self.fn = fn
        self.names = names
        self.kinds = [parameters[n] for n in names]

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def compile(
        self,
        inputset: Iterable[Any],
        p_error: float | None = None,
        global_p_error: float | None = None,
        pipeline: str | None = None,
    ) -> Circuit:
        samples = []
        for s in inputset:
            s = s if isinstance(s, (tuple, list)) and len(self.names) > 1 else (s,)
            if len(s) != len(self.names):
                raise CompileError(f"an input set sample has {len(s)} values, the function takes {len(self.names)}")
            samples.append([_flat(a) for a in s])
        if not samples:
            raise CompileError("the input set is empty")
        t = _Tracer()
        args = [
            Traced(t.input(n, shape) if kind == "encrypted" else t.clear_input(n, shape))
            for n, kind, (shape, _) in zip(self.names, self.kinds, samples[0])
        ]
        out = self.fn(*args)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        for o in outs:
            if not isinstance(o, Traced) or not o.encrypted:
                raise CompileError("the function must return encrypted values (computed from its encrypted arguments)")
        c = t.compile([o._v for o in outs], samples, p_error, global_p_error, pipeline)
        return Circuit(c, single)


def compiler(parameters: dict[str, str]) -> Callable[[Callable[..., Any]], Compiler]:
    """Decorator: ``@fhec.compiler({"x": "encrypted", "w": "clear"})``. Encrypted arguments are
    encrypted by the client; clear arguments travel unencrypted with each call (weights, a bias)
    and may be added to, subtracted from, multiplied with or matrix-multiplied with encrypted
    values, reshaped and transposed."""

    def deco(fn: Callable[..., Any]) -> Compiler:
        return Compiler(fn, parameters)

    return deco
