"""Tensors across the binding: integer numpy arrays (int64, C order) in both directions."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import CompileError


def _flat(a: Any) -> np.ndarray:
    """An integer array (int64, C order) for the binding; integral floats are accepted."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise CompileError(f"expected integers, got an array of {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _array(a: np.ndarray) -> np.ndarray:
    """An array from the binding (already int64)."""
    return a
