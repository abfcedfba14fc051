"""Tensors across the binding: numpy arrays to and from ``(shape, flat values)`` pairs."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import CompileError


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
