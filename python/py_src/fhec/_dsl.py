"""The tracing DSL: :class:`Traced` values with the numpy surface, :class:`Compiler` and the
``@fhec.compiler`` decorator. Tracing records ops; ``compile`` hands the traced module to the
compiler and returns a :class:`fhec.Circuit`."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ._circuit import Circuit, _key_budget
from ._fhec import Tracer as _Tracer
from ._fhec import Value as _Value
from ._tensors import _flat
from .errors import CompileError



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

    def __floordiv__(self, c: Any) -> "Traced":
        c = _scalar(c, "a floor division")
        if c == 0:
            raise CompileError("integer division by zero")
        return self.apply(lambda v: v // c)

    def __mod__(self, c: Any) -> "Traced":
        c = _scalar(c, "a modulo")
        if c == 0:
            raise CompileError("integer modulo by zero")
        return self.apply(lambda v: v % c)

    def _compare(self, c: Any, op: Callable[[int, int], bool]) -> "Traced":
        """``x < c`` etc.: one table on ``x`` for a scalar ``c``; for a traced or array ``c``, one table
        on the difference ``x - c`` (compared with 0)."""
        if isinstance(c, Traced) or np.ndim(c) > 0:
            return (self - c).apply(lambda v: int(op(v, 0)))
        c = _scalar(c, "a comparison")
        return self.apply(lambda v: int(op(v, c)))

    def __lt__(self, c: Any) -> "Traced":  # type: ignore[override]
        return self._compare(c, lambda a, b: a < b)

    def __le__(self, c: Any) -> "Traced":  # type: ignore[override]
        return self._compare(c, lambda a, b: a <= b)

    def __gt__(self, c: Any) -> "Traced":  # type: ignore[override]
        return self._compare(c, lambda a, b: a > b)

    def __ge__(self, c: Any) -> "Traced":  # type: ignore[override]
        return self._compare(c, lambda a, b: a >= b)

    def __eq__(self, c: object) -> "Traced":  # type: ignore[override]
        return self._compare(c, lambda a, b: a == b)

    def __ne__(self, c: object) -> "Traced":  # type: ignore[override]
        return self._compare(c, lambda a, b: a != b)

    # integer operators with a scalar: one table each
    def __abs__(self) -> "Traced":
        return self.apply(abs)

    def __invert__(self) -> "Traced":
        return self.apply(lambda v: ~v)

    def __pow__(self, k: Any) -> "Traced":
        k = _scalar(k, "an exponent")
        if k < 0:
            raise CompileError("negative integer powers are not integers")
        return self.apply(lambda v: v**k)

    def __rshift__(self, k: Any) -> "Traced":
        k = _scalar(k, "a shift")
        return self.apply(lambda v: v >> k)

    def __lshift__(self, k: Any) -> "Traced":
        k = _scalar(k, "a shift")
        return self.apply(lambda v: v << k)

    def __and__(self, c: Any) -> "Traced":
        c = _scalar(c, "a bitwise and")
        return self.apply(lambda v: v & c)

    def __or__(self, c: Any) -> "Traced":
        c = _scalar(c, "a bitwise or")
        return self.apply(lambda v: v | c)

    def __xor__(self, c: Any) -> "Traced":
        c = _scalar(c, "a bitwise xor")
        return self.apply(lambda v: v ^ c)

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    __hash__ = None  # type: ignore[assignment]

    def apply(self, f: Callable[[int], int]) -> "Traced":
        """Any function of one value, elementwise: one table lookup."""
        return Traced(self._v.univariate(lambda v: int(f(v))))

    def clip(self, lo: Any = None, hi: Any = None, out: Any = None, **kwargs: Any) -> "Traced":
        """``np.clip``: one table (``lo``/``hi`` scalars; ``None`` leaves that side open)."""
        _no_out(out, kwargs)
        lo = None if lo is None else _scalar(lo, "a clip bound")
        hi = None if hi is None else _scalar(hi, "a clip bound")

        def f(v: int) -> int:  # numpy: minimum(maximum(v, lo), hi)
            v = v if lo is None else max(v, lo)
            return v if hi is None else min(v, hi)

        return self.apply(f)

    def round_bits(self, k: int) -> "Traced":
        """Drops ``k`` low bits with rounding (half up): ``(v + 2**(k-1)) >> k``."""
        return Traced(self._v.round_bits(int(k)))

    def sum(
        self, axis: int | Sequence[int] | None = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kwargs: Any
    ) -> "Traced":
        _no_out(out, kwargs)
        _int_dtype(dtype)
        axes = [] if axis is None else ([axis] if isinstance(axis, (int, np.integer)) else list(axis))
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
        """numpy indexing: integers, slices (any step), ``...``, ``None`` and one integer array
        (``x[0]``, ``x[:, 1:3]``, ``x[::-1]``, ``x[..., -1]``, ``x[None]``, ``x[:, [2, 0, 2]]``). No FHE work:
        indexing only selects ciphertexts (``fhe.slice``, ``fhe.gather``, ``fhe.reshape``)."""
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
        takes: list[tuple[int, np.ndarray]] = []  # (axis of the sliced value, indices)
        arrays = 0
        axis = 0
        for k in key:
            if k is None:
                out_shape.append(1)
                continue
            n = self.shape[axis]
            if isinstance(k, slice):
                b, e, st = k.indices(n)
                sel = range(b, e, st)
                if len(sel) == 0:
                    raise IndexError(f"slice {k} of axis {axis} (size {n}) selects nothing")
                if st > 0:
                    starts.append(b), ends.append(e), steps.append(st)
                else:  # a reversed selection: the whole axis, then a gather
                    starts.append(0), ends.append(n), steps.append(1)
                    takes.append((axis, np.array(list(sel), dtype=np.int64)))
                out_shape.append(len(sel))
            elif isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
                i = int(k) + (n if k < 0 else 0)
                if not 0 <= i < n:
                    raise IndexError(f"index {int(k)} is out of bounds for axis {axis} with size {n}")
                starts.append(i), ends.append(i + 1), steps.append(1)
            elif isinstance(k, (list, np.ndarray)) and np.asarray(k).dtype.kind in "iu" and np.asarray(k).size > 0:
                arrays += 1
                if arrays > 1:
                    raise IndexError("only one integer-array index is supported (numpy's advanced indexing of several axes is not)")
                idx = np.asarray(k, dtype=np.int64)
                if ((idx < -n) | (idx >= n)).any():
                    raise IndexError(f"an index of {k!r} is out of bounds for axis {axis} with size {n}")
                starts.append(0), ends.append(n), steps.append(1)
                takes.append((axis, np.where(idx < 0, idx + n, idx)))
                out_shape.extend(idx.shape)
            else:
                raise IndexError(
                    f"unsupported index {k!r}: integers, slices, ..., None and one integer array are supported"
                )
            axis += 1
        for n in self.shape[axis:]:
            starts.append(0), ends.append(n), steps.append(1)
            out_shape.append(n)
        v = self._v
        if (starts, ends, steps) != ([0] * self.ndim, list(self.shape), [1] * self.ndim):
            v = v.slice(starts, ends, steps)
        # gathers from the last axis back, so that earlier axes keep their positions
        for ax, idx in sorted(takes, key=lambda t: -t[0]):
            v = v.take(_flat(idx), ax)
        if tuple(out_shape) != tuple(v.shape):
            v = v.reshape(out_shape)
        return Traced(v)

    def _reduce(self, axis: Any, keepdims: bool, pick: Callable[["Traced", "Traced"], "Traced"]) -> "Traced":
        """Pairwise reduction along axes (a balanced tree: ⌈log2 n⌉ rounds of lookups)."""
        axes = list(range(self.ndim)) if axis is None else ([axis] if isinstance(axis, (int, np.integer)) else list(axis))
        out = self
        for a in sorted((int(a) % self.ndim for a in axes), reverse=True):
            while out.shape[a] > 1:
                n = out.shape[a]
                half = n // 2
                lead = (slice(None),) * a
                # halves of ⌈n/2⌉ that overlap in the middle element when n is odd (max and min are
                # idempotent), so no concatenation is needed
                h = n - half
                out = pick(out[lead + (slice(0, h),)], out[lead + (slice(half, n),)])
            if not keepdims:
                out = out.reshape([d for i, d in enumerate(out.shape) if i != a])
        return out

    def max(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kwargs: Any) -> "Traced":
        """Largest element (along ``axis``): ``max(a, b) = b + relu(a − b)``, one lookup per pair."""
        _no_out(out, kwargs)
        return self._reduce(axis, keepdims, _maximum)

    def min(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kwargs: Any) -> "Traced":
        """Smallest element (along ``axis``): ``min(a, b) = a − relu(a − b)``."""
        _no_out(out, kwargs)
        return self._reduce(axis, keepdims, _minimum)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def dtype(self) -> np.dtype:
        """Traced values are integers (their width comes from the input set, not from a dtype)."""
        return np.dtype(np.int64)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d traced value")
        return self.shape[0]

    def flatten(self, order: str = "C") -> "Traced":
        if order not in ("C", "A", "K"):
            raise CompileError("only row-major (order='C') flattening is supported")
        return self.reshape(-1)

    ravel = flatten

    def astype(self, dtype: Any, *args: Any, **kwargs: Any) -> "Traced":
        """Integer dtypes only, and a no-op: values are exact integers of the width the input set needs
        (numpy's wrap-around at the dtype's width is not modelled)."""
        _int_dtype(dtype)
        return self

    def squeeze(self, axis: Any = None) -> "Traced":
        axes = [i for i, d in enumerate(self.shape) if d == 1] if axis is None else (
            [int(axis) % self.ndim] if isinstance(axis, (int, np.integer)) else [int(a) % self.ndim for a in axis])
        if any(self.shape[a] != 1 for a in axes):
            raise CompileError(f"cannot squeeze axes {axes} of shape {self.shape}")
        return self.reshape([d for i, d in enumerate(self.shape) if i not in axes])

    def dot(self, w: Any) -> "Traced":
        return self @ w

    def transpose(self, *axes: int) -> "Traced":
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return Traced(self._v.transpose(list(axes)))

    @property
    def T(self) -> "Traced":
        return self.transpose()

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """numpy ufuncs on one traced value (and scalars) become one table (``np.abs(x)``,
        ``np.maximum(x, 0)``); arithmetic, ``matmul``, comparisons, ``maximum`` and ``minimum`` of two
        operands go through the operators."""
        if method != "__call__":
            raise CompileError(f"numpy.{ufunc.__name__}.{method} is not supported on traced values")
        _no_out(kwargs.pop("out", None), {k: v for k, v in kwargs.items() if k not in ("dtype", "casting")})
        _int_dtype(kwargs.pop("dtype", None))
        kwargs.pop("casting", None)
        traced = [i for i, x in enumerate(inputs) if isinstance(x, Traced)]
        binary = {
            np.add: lambda a, b: a + b,
            np.subtract: lambda a, b: a - b,
            np.multiply: lambda a, b: a * b,
            np.matmul: lambda a, b: a @ b,
            np.maximum: _maximum,
            np.minimum: _minimum,
            np.greater: lambda a, b: _traced_left(a, b, "__gt__", "__lt__"),
            np.greater_equal: lambda a, b: _traced_left(a, b, "__ge__", "__le__"),
            np.less: lambda a, b: _traced_left(a, b, "__lt__", "__gt__"),
            np.less_equal: lambda a, b: _traced_left(a, b, "__le__", "__ge__"),
            np.equal: lambda a, b: _traced_left(a, b, "__eq__", "__eq__"),
            np.not_equal: lambda a, b: _traced_left(a, b, "__ne__", "__ne__"),
        }
        if len(inputs) == 2 and ufunc in binary and (len(traced) == 2 or np.ndim(inputs[1 - traced[0]]) > 0):
            a, b = (Traced._lift(x) for x in inputs)
            return binary[ufunc](a, b)
        if len(traced) != 1:
            raise CompileError(
                f"numpy.{ufunc.__name__} of {len(traced)} traced values is not supported (one traced value and "
                "scalars become a table; +, -, *, @, comparisons, maximum and minimum take two)"
            )
        i = traced[0]
        others = [x for j, x in enumerate(inputs) if j != i]
        if any(np.ndim(x) > 0 for x in others):
            raise CompileError(
                f"numpy.{ufunc.__name__} of a traced value with a constant array: one table per element is "
                "not supported (use scalars, or the arithmetic operators)"
            )

        def f(v: int) -> int:
            args = list(inputs)
            args[i] = np.int64(v)
            r = ufunc(*args, **kwargs)
            if r != np.round(r):
                raise ValueError(
                    f"numpy.{ufunc.__name__} gives {r}, not an integer: tables hold integers (round it yourself, "
                    f"e.g. x.apply(lambda v: round(...)))"
                )
            return int(r)

        return self.apply(f)

    def __repr__(self) -> str:
        return f"Traced(shape={self.shape}, {'encrypted' if self.encrypted else 'clear'})"

    @staticmethod
    def _lift(x: Any) -> Any:
        """An operand as is (traced), or as an integer array."""
        return x if isinstance(x, Traced) else np.asarray(x)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        """numpy functions on traced values (``np.sum``, ``np.dot``, ``np.clip``, ``np.where``, …)."""
        impl = _NUMPY_FUNCTIONS.get(func)
        if impl is None:
            names = ", ".join(sorted(f"np.{f.__name__}" for f in _NUMPY_FUNCTIONS))
            raise CompileError(f"numpy.{func.__name__} is not supported on traced values (supported: {names})")
        return impl(*args, **kwargs)


def _scalar(c: Any, what: str) -> int:
    if isinstance(c, Traced) or np.ndim(c) != 0:
        raise CompileError(f"{what} takes an integer scalar here, got {c!r}")
    f = float(c)
    if f != int(f):
        raise CompileError(f"{what} takes an integer, got {c!r}")
    return int(c)


def _no_out(out: Any, kwargs: dict) -> None:
    if out is not None:
        raise CompileError("out= is not supported on traced values (they are immutable)")
    bad = [k for k, v in kwargs.items() if v is not None and not (k == "where" and v is True)]
    if bad:
        raise CompileError(f"unsupported keyword argument(s) on a traced value: {', '.join(bad)}")


def _int_dtype(dtype: Any) -> None:
    if dtype is not None and not np.issubdtype(np.dtype(dtype), np.integer):
        raise CompileError(f"traced values are integers; dtype {np.dtype(dtype)} is not supported")


def _maximum(a: Any, b: Any) -> Traced:
    """``max(a, b) = b + relu(a − b)``: one lookup on the difference (``a`` or ``b`` traced)."""
    if not isinstance(a, Traced):
        a, b = b, a
    if not isinstance(b, Traced) and np.ndim(b) == 0:
        c = _scalar(b, "np.maximum")
        return a.apply(lambda v: max(v, c))
    return b + (a - b).apply(lambda v: max(v, 0))


def _minimum(a: Any, b: Any) -> Traced:
    """``min(a, b) = a − relu(a − b)``."""
    if not isinstance(a, Traced):
        a, b = b, a
    if not isinstance(b, Traced) and np.ndim(b) == 0:
        c = _scalar(b, "np.minimum")
        return a.apply(lambda v: min(v, c))
    return a - (a - b).apply(lambda v: max(v, 0))


def _traced_left(a: Any, b: Any, op: str, flipped: str) -> Traced:
    """A comparison with the traced operand on the left (``c < x`` is ``x > c``)."""
    if isinstance(a, Traced):
        return getattr(a, op)(b)
    return _traced_left(b, a, flipped, op)


def _where(cond: Any, a: Any = None, b: Any = None) -> Traced:
    """``np.where(c, a, b) = b + c·(a − b)`` for a 0/1 traced condition (a comparison's result)."""
    if a is None or b is None:
        raise CompileError("np.where(c) without values (the indices of c) is not supported")
    if not isinstance(cond, Traced):
        raise CompileError("np.where with a clear condition: compute it with numpy before the call")
    a, b = Traced._lift(a), Traced._lift(b)
    return cond * (a - b) + b


def _expand_dims(x: Traced, axis: Any) -> Traced:
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    nd = x.ndim + len(axes)
    axes = sorted(int(a) % nd for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return x.reshape(shape)


def _concatenate(parts: Sequence[Any], axis: int | None = 0, out: Any = None, **kwargs: Any) -> Traced:
    """numpy ``concatenate``: every part traced (all encrypted, or all clear arguments)."""
    _no_out(out, {k: v for k, v in kwargs.items() if k != "dtype"})
    _int_dtype(kwargs.get("dtype"))
    parts = [p if isinstance(p, Traced) else np.asarray(p) for p in parts]
    if axis is None:
        parts, axis = [p.reshape(-1) for p in parts], 0
    first = next((p for p in parts if isinstance(p, Traced)), None)
    if first is None:
        raise CompileError("np.concatenate of constants only: compute it with numpy")
    nd = first.ndim
    if not -nd <= axis < nd:
        raise CompileError(f"axis {axis} is out of range for values of rank {nd}")
    # the first part is traced (a constant first part: concatenate, then rotate along the axis)
    k = next(i for i, p in enumerate(parts) if isinstance(p, Traced))
    ops = [p._v if isinstance(p, Traced) else _flat(p) for p in parts[k:] + parts[:k]]
    out = Traced(first._v.concat(ops[1:], int(axis) % nd))
    if k == 0:
        return out
    ax = int(axis) % nd
    lead = sum(p.shape[ax] for p in parts[:k])
    total = out.shape[ax]
    order = list(range(total - lead, total)) + list(range(total - lead))
    return out[(slice(None),) * ax + (order,)]


def _stack(parts: Sequence[Any], axis: int = 0, out: Any = None, **kwargs: Any) -> Traced:
    parts = [p if isinstance(p, Traced) else np.asarray(p) for p in parts]
    if not parts:
        raise CompileError("np.stack of nothing")
    nd = parts[0].ndim + 1
    if not -nd <= axis < nd:
        raise CompileError(f"axis {axis} is out of range for the stacked rank {nd}")
    ax = int(axis) % nd
    return _concatenate([_expand_dims(p, ax) if isinstance(p, Traced) else np.expand_dims(p, ax) for p in parts], ax, out, **kwargs)


def _take(x: Traced, indices: Any, axis: int | None = None, out: Any = None, mode: str = "raise") -> Traced:
    _no_out(out, {})
    if mode != "raise":
        raise CompileError(f"np.take with mode={mode!r} is not supported")
    idx = np.asarray(indices)
    if axis is None:
        return x.reshape(-1)[idx]
    return x[(slice(None),) * (int(axis) % x.ndim) + (idx,)]


def _dot(a: Any, b: Any, out: Any = None) -> Traced:
    _no_out(out, {})
    return a @ b


def _round(x: Traced, decimals: int = 0, out: Any = None) -> Traced:
    """Integers are already rounded; negative ``decimals`` round to tens, hundreds…: one table."""
    _no_out(out, {})
    return x if decimals >= 0 else x.apply(lambda v: int(np.round(v, decimals)))


def _method(name: str) -> Callable[..., Any]:
    def call(x: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(x, Traced):
            raise CompileError(f"np.{name} expects a traced value first here")
        return getattr(x, name)(*args, **kwargs)

    return call


_NUMPY_FUNCTIONS: dict[Any, Callable[..., Any]] = {
    np.sum: _method("sum"),
    np.max: _method("max"),
    np.min: _method("min"),
    np.amax: _method("max"),
    np.amin: _method("min"),
    np.clip: _method("clip"),
    np.transpose: lambda x, axes=None: x.transpose(*(() if axes is None else (axes,))),
    np.reshape: lambda x, shape=None, *a, **k: x.reshape(shape if shape is not None else k["newshape"]),
    np.ravel: lambda x, order="C": x.ravel(order),
    np.squeeze: _method("squeeze"),
    np.expand_dims: _expand_dims,
    np.take: _take,
    np.concatenate: _concatenate,
    np.stack: _stack,
    np.hstack: lambda parts, **k: _concatenate(parts, 0 if parts[0].ndim == 1 else 1, **k),
    np.vstack: lambda parts, **k: _concatenate([p.reshape(1, -1) if p.ndim == 1 else p for p in parts], 0, **k),
    np.dot: _dot,
    np.where: _where,
    np.shape: lambda x: x.shape,
    np.ndim: lambda x: x.ndim,
    np.size: lambda x, axis=None: x.size if axis is None else x.shape[axis],
    np.round: _round,
    np.around: _round,
}



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
        margin: float = 0.0,
        partitions: bool = True,
        many_lut: bool | None = None,
        max_key_bytes: int | None = None,
    ) -> Circuit:
        """Traces the function on ``inputset`` and compiles it. Every value gets the range the input
        set gave it; inputs outside their calibrated ranges are refused at encryption. ``margin``
        widens every calibrated range by that fraction of its width on each side (0.1: 10 %), so that
        inputs and intermediate values a little beyond the input set still fit. ``partitions``
        (default on) lets lookups of low precision or sensitivity run on parameters of their own
        where the cost model says it pays (docs/crypto.md, "Partitions"); ``False``: one parameter
        set for every lookup. ``many_lut``: lookups on one input in one blind rotation
        (docs/crypto.md, "Many-LUT"): ``None`` (default) where the cost model says it pays, ``True``
        wherever possible, ``False`` never. ``max_key_bytes``: the most bytes of evaluation keys (as sent) the program may need; the fastest
        program within them is kept, or ``CompileError`` names the smallest keys found (docs/crypto.md,
        "Key budget"); default: the fastest, whatever its keys."""
        budget = _key_budget(max_key_bytes)
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
            for n, kind, shape in zip(self.names, self.kinds, [list(x.shape) for x in samples[0]])
        ]
        out = self.fn(*args)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        for o in outs:
            if not isinstance(o, Traced) or not o.encrypted:
                raise CompileError("the function must return encrypted values (computed from its encrypted arguments)")
        c = t.compile([o._v for o in outs], samples, p_error, global_p_error, pipeline, margin, partitions, many_lut,
                      budget)
        return Circuit(c, single)


def compiler(parameters: dict[str, str]) -> Callable[[Callable[..., Any]], Compiler]:
    """Decorator: ``@fhec.compiler({"x": "encrypted", "w": "clear"})``. Encrypted arguments are
    encrypted by the client; clear arguments travel unencrypted with each call (weights, a bias)
    and may be added to, subtracted from, multiplied with or matrix-multiplied with encrypted
    values, reshaped and transposed."""

    def deco(fn: Callable[..., Any]) -> Compiler:
        return Compiler(fn, parameters)

    return deco
