"""Neural networks from ONNX, quantised after training and compiled (docs/onnx.md).

    import fhec.onnx
    qm = fhec.onnx.compile_onnx_model("net.onnx", X_train, n_bits=8)
    y = qm.forward(X_test, fhe="execute")      # or "disable" (quantised, clear), "simulate"

The names follow Concrete ML's (``compile_onnx_model``, ``forward``, ``quantize_input``,
``dequantize_output``, ``fhe_circuit``), so its users switch by changing the import. The three modes
return identical results: the quantised network's, exactly, on every input the program accepts.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, NoReturn

import numpy as np

from . import _fhec
from ._circuit import KEY_BUDGET_NOT_MET, Circuit, Client, Server, _key_budget
from .errors import CompileError, UnsupportedError
from ._modes import check_mode

__all__ = ["QuantizedModule", "compile_onnx_model", "onnx_reference"]

_ROLES = ("model_inputs", "op_inputs", "op_weights", "model_outputs")


def _bytes(model: Any) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            return f.read()
    if hasattr(model, "SerializeToString"):  # onnx.ModelProto
        return model.SerializeToString()
    raise TypeError(f"model must be an ONNX file path, bytes or an onnx.ModelProto, not {type(model).__name__}")


def _n_bits(n_bits: int | Mapping[str, int]) -> tuple[int, int, int, int]:
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer, Mapping)):
        raise TypeError(f"n_bits must be an int or a dict of {', '.join(_ROLES)}, not {type(n_bits).__name__}")
    if not isinstance(n_bits, Mapping):
        return (int(n_bits),) * 4  # type: ignore[return-value]
    unknown = set(n_bits) - set(_ROLES)
    if unknown:
        raise ValueError(f"unknown n_bits keys {sorted(unknown)}; known: {', '.join(_ROLES)}")
    for k in ("model_inputs", "model_outputs"):
        if k not in n_bits:
            raise ValueError(f"n_bits as a dict needs {k!r} (and may give op_inputs, op_weights; default 5)")
    return tuple(int(n_bits.get(k, DEFAULT_N_BITS)) for k in _ROLES)  # type: ignore[return-value]


#: Defaults (docs/onnx.md, "Choosing n_bits"): exact results on every input size accumulators by their
#: worst case, so fewer bits than the incumbent's 8 keep them cheap to round.
DEFAULT_N_BITS = 5
DEFAULT_ROUNDING_BITS = 5


#: The automatic rounding's default tolerance: 1 % of the calibration rows may change their top class
#: against the finely rounded network (one output: a mean error of 1 % of its range).
DEFAULT_ROUNDING_TOLERANCE = 0.01


def _rounding(r: int | str | Mapping[str, Any] | None) -> int | float:
    """The rounding bits, or the tolerance (a float) of the automatic choice."""
    if r is None:
        return DEFAULT_ROUNDING_BITS
    tolerance = DEFAULT_ROUNDING_TOLERANCE
    if isinstance(r, Mapping):
        unknown = set(r) - {"n_bits", "method", "tolerance"}
        if unknown:
            raise ValueError(f"unknown rounding_threshold_bits keys {sorted(unknown)}; known: n_bits, method, tolerance")
        if r.get("method", "exact") not in ("exact", "EXACT"):
            raise ValueError(
                f"rounding method {r['method']!r}: fhec rounds exactly (approximate rounding is not offered)"
            )
        if "n_bits" not in r:
            raise ValueError("rounding_threshold_bits as a dict needs 'n_bits' (an int or 'auto')")
        tolerance = float(r.get("tolerance", tolerance))
        r = r["n_bits"]
    if isinstance(r, str):
        if r != "auto":
            raise ValueError(f"rounding_threshold_bits={r!r}: give the number of bits or 'auto'")
        if not 0.0 <= tolerance <= 1.0:
            raise ValueError(f"the rounding tolerance must be in [0, 1], got {tolerance}")
        return tolerance
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)):
        raise TypeError(f"rounding_threshold_bits must be an int, 'auto' or a dict, not {type(r).__name__}")
    return int(r)


def onnx_reference(model: Any, X: Any) -> np.ndarray:
    """fhec's float (f64) evaluation of an ONNX network: the reference calibration reads."""
    return _fhec.onnx_eval(_bytes(model), np.ascontiguousarray(X, dtype=np.float64))


class QuantizedModule:
    """A network quantised after training and compiled. ``forward(X, fhe=...)`` returns what the ONNX
    graph returns (a trailing Softmax / LogSoftmax / ArgMax runs on the client, after decryption)."""

    def __init__(self, q: Any, circuit: Circuit) -> None:
        self._q = q
        self.fhe_circuit = circuit
        self.input_shape = tuple(q.input_shape)
        self.output_shape = tuple(q.output_shape)
        self.tail = q.tail
        #: the rounding bits used, and (``rounding_threshold_bits="auto"``) what the choice tried
        self.rounding_threshold_bits: int | None = None
        self.rounding_report: dict | None = None
        #: the parts the output is returned in (``output_parts``; ``"auto"``: its choice)
        self.output_parts: int = 1

    # -- client side ----------------------------------------------------------------------------

    def _rows(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1:] != self.input_shape:
            raise ValueError(f"X has samples of shape {X.shape[1:]}, the network takes {self.input_shape}")
        if X.shape[0] == 0:
            raise ValueError("X has no sample")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinity")
        return np.ascontiguousarray(X.reshape(X.shape[0], -1))

    def quantize_input(self, X: Any) -> np.ndarray:
        """The program's input integers for ``X`` (one row of flattened features per sample)."""
        return self._q.quantize(self._rows(X))

    def dequantize_output(self, q: Any) -> np.ndarray:
        """The program's output integers as floats, ``(samples, *output_shape)`` (before the tail)."""
        q = np.asarray(q, dtype=np.int64)
        out = self._q.dequantize(np.ascontiguousarray(q.reshape(q.shape[0], -1)))
        return out.reshape((q.shape[0],) + self.output_shape)

    def post_process(self, y: np.ndarray) -> np.ndarray:
        """The graph's tail on dequantised outputs (softmax, log-softmax or argmax over the last axis)."""
        if self.tail == "softmax":
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        if self.tail == "log_softmax":
            m = y.max(axis=-1, keepdims=True)
            return y - m - np.log(np.exp(y - m).sum(axis=-1, keepdims=True))
        if self.tail == "arg_max":
            return y.argmax(axis=-1)
        return y

    # -- execution ----------------------------------------------------------------------------------

    def _integers(self, rows: np.ndarray, fhe: str) -> np.ndarray:
        samples = [[rows[i : i + 1]] for i in range(rows.shape[0])]
        c = self.fhe_circuit
        if fhe == "disable":
            out = [c.eval_clear(*s) for s in samples]
        elif fhe == "simulate":
            out = c.simulate_batch(samples)
        else:
            out = c.run_batch(samples)
        return np.concatenate([np.asarray(o).reshape(1, -1) for o in out], axis=0)

    def forward(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """The network on ``X``: ``"disable"`` (the quantised network in the clear), ``"simulate"``
        (the compiled program without encryption) or ``"execute"`` (encrypted)."""
        check_mode(fhe)
        q = self._q.quantize(self._rows(X))
        return self.post_process(self.dequantize_output(self._integers(q, fhe)))

    def client(self) -> Client:
        """The client (secret keys; generated on first use)."""
        return self.fhe_circuit.client()

    def server(self) -> Server:
        """A server for this client's keys (evaluation keys only)."""
        return self.fhe_circuit.server()

    def bitwidth_report(self) -> list[dict]:
        """One dict per encrypted step: the ONNX node, accumulator or lookup, elements, integer range,
        bits, low bits dropped by rounding, distinct tables."""
        return self._q.layers()

    @property
    def ir(self) -> str:
        """The quantised module (IR text), before the compiler's passes."""
        return self._q.ir


#: ``output_parts="auto"`` tries these, and keeps more parts only for this share of the estimated time
#: (``fhec::onnx::AUTO_OUTPUT_PARTS``, ``AUTO_PARTS_GAIN``: the CLI's ``--output-parts auto`` takes the same)
AUTO_OUTPUT_PARTS = tuple(_fhec.AUTO_OUTPUT_PARTS)
AUTO_PARTS_GAIN = float(_fhec.AUTO_PARTS_GAIN)


def _too_wide(q: Any, e: CompileError) -> NoReturn:
    """Raises the compile error ``e`` of the quantised network ``q``, with its accumulators' widths
    when it found no secure parameters."""
    if "no secure TFHE parameters" not in str(e):
        raise e
    widths = ", ".join(f"{r['node']}: {r['bits']} bits" for r in q.layers() if r["kind"] == "accumulator")
    # the output's decryption is what failed: parts are narrower and less noisy
    parts = " or output_parts=4 (the output as partial sums)," if "output " in str(e) else ""
    raise CompileError(
        f"{e}\n(the accumulators are too wide to round exactly with secure parameters — {widths}; "
        f"use fewer n_bits for model_inputs or op_weights,{parts} or fewer rounding_threshold_bits: docs/onnx.md)"
    ) from None


def compile_onnx_model(
    model: Any,
    X_calib: Any,
    n_bits: int | Mapping[str, int] = DEFAULT_N_BITS,
    rounding_threshold_bits: int | str | Mapping[str, Any] | None = None,
    p_error: float | None = None,
    global_p_error: float | None = None,
    partitions: bool = True,
    windows: bool = False,
    output_parts: int | str = 1,
    max_key_bytes: int | None = None,
) -> QuantizedModule:
    """Quantises an ONNX network after training and compiles it.

    ``model``: a path, the file's bytes or an ``onnx.ModelProto``. ``X_calib``: calibration inputs (a
    batch, first axis the samples; the training set is a good choice): the input quantisers and the
    activations' ranges come from them. ``n_bits``: an int, or a dict with ``model_inputs``,
    ``op_inputs``, ``op_weights``, ``model_outputs`` (default 5 each; missing op_* keys: 5).
    ``rounding_threshold_bits``: the bits an accumulator keeps before a lookup (default 5), or
    ``"auto"`` / ``{"n_bits": "auto", "tolerance": t}``: the fewest bits (2 to 8) whose network stays
    within ``t`` (default 0.01) of the network rounded finely on the calibration set (top-class changes;
    one output: mean error over its range) and compile with these options (a choice without secure
    parameters falls back to the closest that has them); ``rounding_report`` tells what was tried.
    ``p_error`` / ``global_p_error``: the failure probability per lookup / per run (default 2^-128 per
    lookup). ``partitions``: several parameter sets (on by default: the roundings' one-bit lookups
    get cheaper parameters than the activations'). ``windows``: where a layer's tables change only
    inside a window of ``2^rounding_threshold_bits`` entries (an activation requantised to its
    calibrated range saturates outside it), round finer and let the lookups read that window
    (docs/onnx.md, "Windows"): more accurate at few bits, not always cheaper. Off by default: every
    accumulator is rounded to ``rounding_threshold_bits``. ``output_parts``: a network ending in a
    linear layer returns its output as this many partial sums (over runs of the layer's inputs), which
    the client adds after decryption: each part is narrower and less noisy than the whole, so the last
    lookups take cheaper parameters, or secure ones where the whole output had none (docs/onnx.md,
    "Output parts"). The client then sees the parts, not only their sums. Default 1: the output whole;
    ``"auto"``: 1, 2, 4 or 8 parts, the fastest by the cost model among those that compile (more parts
    only for a 5 % gain; ``qm.output_parts`` tells the choice). ``max_key_bytes``: the most bytes of
    evaluation keys (as sent) the network may need; the fastest program within them is kept, or
    ``CompileError`` names the smallest keys found (docs/crypto.md, "Key budget"). Default: the fastest
    program, whatever its keys."""
    onnx = _bytes(model)
    max_key_bytes = _key_budget(max_key_bytes)
    X = np.asarray(X_calib, dtype=np.float64)
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError("X_calib must be a batch of samples (first axis: samples)")
    bits = _n_bits(n_bits)
    rounding = _rounding(rounding_threshold_bits)
    if output_parts == "auto":
        candidates = AUTO_OUTPUT_PARTS
    elif isinstance(output_parts, bool) or not isinstance(output_parts, (int, np.integer)) or not 1 <= output_parts <= 64:
        raise ValueError(f"output_parts must be an int in 1..=64 or \"auto\", got {output_parts!r}")
    else:
        candidates = (int(output_parts),)
    best = None  # (key, parts, q, raw, report, rounding)
    first_error = budget_error = None
    for parts in candidates:
        report, raw, bits_used, failure = None, None, rounding, None
        try:
            if isinstance(rounding, float):
                # the fewest bits within the tolerance that compile with these options (a wider choice with
                # no secure parameters falls back to the closest that compiles: report["met"] is then False)
                report, q, raw, error = _fhec.onnx_compile_auto(
                    onnx, np.ascontiguousarray(X), bits, rounding, windows, p_error, global_p_error, partitions,
                    parts, max_key_bytes,
                )
                bits_used = report["bits"]
                failure = None if raw is not None else CompileError(error)
            else:
                q = _fhec.onnx_quantize(onnx, np.ascontiguousarray(X), bits, rounding, windows, parts)
        except UnsupportedError:
            if parts == 1 or len(candidates) == 1:
                raise
            break  # the output takes no parts ("auto"): the whole one stands
        if raw is None and failure is None:
            try:
                raw = q.compile(p_error, global_p_error, partitions, None, max_key_bytes)
            except CompileError as e:
                failure = e
        if failure is not None:
            over_budget = KEY_BUDGET_NOT_MET in str(failure)
            if over_budget and len(candidates) == 1:
                raise failure
            if not over_budget and ("no secure TFHE parameters" not in str(failure) or len(candidates) == 1):
                _too_wide(q, failure)
            first_error = first_error or (q, failure)
            budget_error = budget_error or (failure if over_budget else None)
            continue
        seconds = Circuit(raw, True).statistics["estimated_seconds"]
        # more parts show the client more: taken only for AUTO_PARTS_GAIN of the estimate
        met = report is None or report["met"]
        if best is None or (met, -seconds) > (best[0][0], -best[0][1] * (1 - AUTO_PARTS_GAIN)):
            best = ((met, seconds), parts, q, raw, report, bits_used)
    if best is None:
        # a part count over the budget says more than one without secure parameters
        if budget_error is not None:
            raise budget_error
        _too_wide(*first_error)
    _, parts, q, raw, report, rounding = best
    qm = QuantizedModule(q, Circuit(raw, True))
    qm.rounding_threshold_bits = rounding
    qm.rounding_report = report
    qm.output_parts = parts
    return qm
