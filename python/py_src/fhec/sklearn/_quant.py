"""Quantisation of the estimators, computed in Rust (``fhec-quant``; see its ``linear`` module for the
linear family's math: per-feature affine inputs folded into per-output affine weights, the integer
accumulator as the encrypted program). Python keeps the bit-width options, the warning for values
outside the calibrated range, and thin views of the Rust objects.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any
import numpy as np

from .._circuit import Circuit
from .._fhec import QuantizedLinear as _QuantizedLinear

def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside the fhec package."""
    import sys

    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(pkg + os.sep):
        frame = frame.f_back
        level += 1
    return level


class InputRangeWarning(UserWarning):
    """Inputs outside the range seen at calibration were clipped to it.

    Turn it into an error with ``warnings.simplefilter("error", fhec.sklearn.InputRangeWarning)``.
    """


def parse_n_bits(n_bits: object) -> tuple[int, int]:
    """``n_bits``: an int for inputs and weights, or a dict with ``inputs``/``weights`` keys
    (Concrete ML's ``op_inputs``/``op_weights`` are accepted too)."""
    if isinstance(n_bits, (int, np.integer)) and not isinstance(n_bits, bool):
        n_in = n_w = int(n_bits)
    elif isinstance(n_bits, dict):
        aliases = {"inputs": "inputs", "op_inputs": "inputs", "weights": "weights", "op_weights": "weights"}
        unknown = set(n_bits) - set(aliases)
        if unknown:
            raise ValueError(
                f"n_bits: unknown keys {sorted(map(str, unknown))}; use 'inputs' and 'weights'"
            )
        got = {aliases[k]: v for k, v in n_bits.items()}
        if set(got) != {"inputs", "weights"}:
            raise ValueError("n_bits as a dict needs both 'inputs' and 'weights' bit widths")
        n_in, n_w = got["inputs"], got["weights"]
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (n_in, n_w)):
            raise ValueError(f"n_bits: bit widths must be integers, got {n_bits!r}")
        n_in, n_w = int(n_in), int(n_w)
    else:
        raise ValueError(f"n_bits must be an int or a dict {{'inputs': int, 'weights': int}}, got {n_bits!r}")
    if not 1 <= n_in <= 16:
        raise ValueError(f"n_bits: inputs need 1 to 16 bits, got {n_in}")
    if not 2 <= n_w <= 16:
        raise ValueError(f"n_bits: weights need 2 to 16 bits, got {n_w}")
    return n_in, n_w


def warn_clipped(clipped: int, rows: int, features: list[int]) -> None:
    """The warning for values outside the calibrated range (they were clipped to it)."""
    if clipped:
        shown = ", ".join(map(str, features[:8])) + (", …" if len(features) > 8 else "")
        warnings.warn(
            f"{clipped} input value(s) in {rows} row(s) are outside the range seen at calibration "
            f"(features {shown}); they were clipped to it",
            InputRangeWarning,
            stacklevel=_caller_level(),
        )


def quantize_rows(q: Any, X: np.ndarray) -> np.ndarray:
    """Quantised rows from a Rust model's input quantisers, warning about clipped values."""
    rows, clipped, clipped_rows, features = q.quantize(np.ascontiguousarray(X, dtype=np.float64))
    warn_clipped(clipped, clipped_rows, list(features))
    return rows


class _Inputs:
    """The input quantisers of a quantised linear model."""

    def __init__(self, q: _QuantizedLinear):
        self._q = q

    @property
    def n_bits(self) -> int:
        return self._q.input_bits

    @property
    def max_q(self) -> int:
        return self._q.max_q

    def quantize(self, X: np.ndarray) -> np.ndarray:
        return quantize_rows(self._q, X)


class QuantizedLinear:
    """``y ≈ (q @ weights) · w_scale + bias``: a view of the Rust model (``fhec._fhec.QuantizedLinear``)."""

    def __init__(self, q: _QuantizedLinear):
        self._q = q
        self.inputs = _Inputs(q)

    @classmethod
    def build(cls, W: np.ndarray, b: np.ndarray, X: np.ndarray, input_bits: int, weight_bits: int) -> "QuantizedLinear":
        """``W``: float weights (d, C); ``b``: float biases (C,); ``X`` calibrates the inputs."""
        f64 = np.float64
        return cls(
            _QuantizedLinear.build(
                np.ascontiguousarray(W, dtype=f64),
                np.ascontiguousarray(b, dtype=f64),
                np.ascontiguousarray(X, dtype=f64),
                input_bits,
                weight_bits,
            )
        )

    @property
    def weight_bits(self) -> int:
        return self._q.weight_bits

    @property
    def weights(self) -> np.ndarray:
        return self._q.weights

    def accumulator_bits(self) -> int:
        return self._q.accumulator_bits()

    def check_width(self) -> None:
        self._q.check_width()

    def accumulate(self, q: np.ndarray) -> np.ndarray:
        """The integer accumulators of quantised rows, in the clear (what the circuit computes)."""
        return self._q.accumulate(np.ascontiguousarray(q, dtype=np.int64))

    def dequantize(self, acc: np.ndarray) -> np.ndarray:
        return self._q.dequantize(np.ascontiguousarray(acc, dtype=np.int64))

    def compile(
        self,
        p_error: float | None = None,
        global_p_error: float | None = None,
        post: str = "identity",
        classes: str | None = None,
    ) -> Circuit:
        """The encrypted program (the integer dot product, no lookup), compiled, with the client spec's
        post-processing (``post``) and class labels (``classes``, JSON)."""
        return Circuit(self._q.compile(p_error, global_p_error, post, classes), True)

    def to_dict(self) -> dict:
        return json.loads(self._q.to_json())

    @classmethod
    def from_dict(cls, d: dict) -> "QuantizedLinear":
        return cls(_QuantizedLinear.from_json(json.dumps(d)))
