"""Quantisation of linear models: per-feature affine input quantisers, per-output symmetric weights.

A linear model computes ``y = X @ W + b``. With each feature ``j`` quantised affinely to ``n_in``
unsigned bits, ``x_j ≈ lo_j + s_j·q_j`` with ``q_j ∈ [0, 2^n_in − 1]``, the model becomes

    y_c = Σ_j W_jc·(lo_j + s_j·q_j) + b_c = Σ_j (W_jc·s_j)·q_j + (b_c + Σ_j W_jc·lo_j)

so the feature scales fold into the weights. The folded weights of each output ``c`` are quantised
symmetrically to ``n_w`` signed bits, ``W_jc·s_j ≈ σ_c·w_jc`` with ``|w_jc| ≤ 2^(n_w−1) − 1``. The
encrypted program computes the integer accumulator ``acc_c = Σ_j q_j·w_jc`` (no bootstrap); the client
dequantises it, ``y_c = σ_c·acc_c + β_c``. Every fhe mode shares the quantisation and the
dequantisation, so equal accumulators give equal predictions, bit for bit.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from .. import CompileError

#: The widest encrypted value the compiler supports.
MAX_ACCUMULATOR_BITS = 32


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


@dataclass
class InputQuantizer:
    """Per-feature affine quantiser: ``q = clip(rint((x − lo) / scale), 0, 2^n_bits − 1)``."""

    n_bits: int
    lo: np.ndarray
    scale: np.ndarray

    @classmethod
    def calibrate(cls, X: np.ndarray, n_bits: int) -> "InputQuantizer":
        lo = X.min(axis=0).astype(np.float64)
        hi = X.max(axis=0).astype(np.float64)
        span = hi - lo
        levels = (1 << n_bits) - 1
        scale = np.where(span > 0, span / levels, 1.0)
        return cls(n_bits, lo, scale)

    @property
    def max_q(self) -> int:
        return (1 << self.n_bits) - 1

    def quantize(self, X: np.ndarray) -> np.ndarray:
        q = np.rint((X - self.lo) / self.scale)
        out = (q < 0) | (q > self.max_q)
        if out.any():
            rows = int(out.any(axis=1).sum())
            cols = np.flatnonzero(out.any(axis=0))
            shown = ", ".join(map(str, cols[:8])) + (", …" if len(cols) > 8 else "")
            warnings.warn(
                f"{int(out.sum())} input value(s) in {rows} row(s) are outside the range seen at calibration "
                f"(features {shown}); they were clipped to it",
                InputRangeWarning,
                stacklevel=_caller_level(),
            )
            q = np.clip(q, 0, self.max_q)
        return q.astype(np.int64)

    def to_dict(self) -> dict:
        return {"n_bits": self.n_bits, "lo": self.lo.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "InputQuantizer":
        return cls(int(d["n_bits"]), np.asarray(d["lo"], dtype=np.float64), np.asarray(d["scale"], dtype=np.float64))


@dataclass
class QuantizedLinear:
    """``y ≈ (q @ weights) · w_scale + bias``: integer weights (d, C), float scales and biases (C,)."""

    inputs: InputQuantizer
    weight_bits: int
    weights: np.ndarray
    w_scale: np.ndarray
    bias: np.ndarray

    @classmethod
    def build(cls, W: np.ndarray, b: np.ndarray, inputs: InputQuantizer, weight_bits: int) -> "QuantizedLinear":
        """``W``: float weights (d, C); ``b``: float biases (C,)."""
        folded = W * inputs.scale[:, None]
        bias = b + inputs.lo @ W
        levels = (1 << (weight_bits - 1)) - 1
        top = np.abs(folded).max(axis=0)
        w_scale = np.where(top > 0, top / levels, 1.0)
        weights = np.rint(folded / w_scale).astype(np.int64)
        return cls(inputs, weight_bits, weights, w_scale, bias)

    def accumulator_bits(self) -> int:
        """Bits of the signed accumulator over every input the quantiser can produce."""
        hi = np.maximum(self.weights, 0).sum(axis=0) * self.inputs.max_q
        lo = np.minimum(self.weights, 0).sum(axis=0) * self.inputs.max_q
        m = int(max(hi.max(initial=0), -lo.min(initial=0)))
        return m.bit_length() + 1

    def check_width(self) -> None:
        bits = self.accumulator_bits()
        if bits > MAX_ACCUMULATOR_BITS:
            d = self.weights.shape[0]
            raise CompileError(
                f"the encrypted accumulator needs {bits} bits ({d} features × {self.inputs.n_bits}-bit inputs × "
                f"{self.weight_bits}-bit weights); at most {MAX_ACCUMULATOR_BITS} are supported: lower n_bits"
            )

    def accumulate(self, q: np.ndarray) -> np.ndarray:
        """The integer accumulators of quantised rows, in the clear (what the circuit computes)."""
        return q @ self.weights

    def dequantize(self, acc: np.ndarray) -> np.ndarray:
        return acc.astype(np.float64) * self.w_scale + self.bias

    def to_dict(self) -> dict:
        return {
            "inputs": self.inputs.to_dict(),
            "weight_bits": self.weight_bits,
            "weights": self.weights.tolist(),
            "w_scale": self.w_scale.tolist(),
            "bias": self.bias.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "QuantizedLinear":
        return cls(
            InputQuantizer.from_dict(d["inputs"]),
            int(d["weight_bits"]),
            np.asarray(d["weights"], dtype=np.int64),
            np.asarray(d["w_scale"], dtype=np.float64),
            np.asarray(d["bias"], dtype=np.float64),
        )
