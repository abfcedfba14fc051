"""What the network benchmarks share: key generation and encrypted runs of a compiled model, timed."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def keygen_and_run(qm: Any, x: np.ndarray, clear: np.ndarray, samples: int) -> tuple[float, list[float], int]:
    """Generates the keys of ``qm``'s circuit, then runs its first ``samples`` rows of ``x`` encrypted, one
    at a time. Returns the keygen seconds, the seconds of each run, and how many runs equal ``clear``
    (the quantised model's outputs for the same rows)."""
    t = time.perf_counter()
    qm.fhe_circuit.keygen()
    keygen_s = time.perf_counter() - t
    times, exact = [], 0
    for i in range(samples):
        t = time.perf_counter()
        out = qm.forward(x[i : i + 1], fhe="execute")
        times.append(time.perf_counter() - t)
        exact += int(np.array_equal(out, clear[i : i + 1]))
    return keygen_s, times, exact
