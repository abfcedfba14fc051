"""The key budget (docs/crypto.md, "Key budget"): the fastest program and the programs within budgets
of evaluation keys, compiled, keyed and run encrypted in one run. Iris at the paper's bits (rounding 4,
5 samples) within 40 MB; the MNIST FC net (2/4/3 bits, rounding 6, output in 4 parts, one image) within
60 and 50 MB. Prints one JSON line per row: compile and keygen seconds, keys as sent, the cost model's
estimate, the measured seconds per sample (median), lookups per partition, FHE = quantised.

    target/pyenv/bin/python bench/key_budget.py
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _encrypted import keygen_and_run  # noqa: E402
from nn_iris import FIX, PAPER  # noqa: E402


def row(label: str, path: pathlib.Path, calib: np.ndarray, x: np.ndarray, samples: int, **kw) -> None:
    import fhec.onnx

    t = time.perf_counter()
    qm = fhec.onnx.compile_onnx_model(path, calib, **kw)
    compile_s = time.perf_counter() - t
    clear = qm.forward(x[:samples], fhe="disable")
    keygen_s, times, exact = keygen_and_run(qm, x, clear, samples)
    s = qm.fhe_circuit.statistics
    print(json.dumps({
        "row": label, "compile_s": round(compile_s, 2), "keygen_s": round(keygen_s, 2),
        "keys_mb": round(s["evaluation_key_bytes"] / 1e6, 1), "est_s": round(s["estimated_seconds"], 3),
        "s_per_sample": round(float(np.median(times)), 3), "by_partition": s["pbs_by_partition"],
        "exact": f"{exact}/{samples}",
    }), flush=True)


def main() -> None:
    d = np.load(FIX / "iris_mlp.npz")
    for b in [None, 40_000_000]:
        row(f"iris paper bits, rounding 4, budget {b}", FIX / "iris_mlp.onnx", d["calib"], d["x"], 5, n_bits=PAPER,
            rounding_threshold_bits=4, max_key_bytes=b)
    m = np.load(FIX / "mnist_fc.npz")
    bits = {"model_inputs": 2, "op_inputs": 4, "op_weights": 3, "model_outputs": 8}
    for b in [None, 60_000_000, 50_000_000]:
        row(f"mnist fc 2/4/3, rounding 6, 4 parts, budget {b}", FIX / "mnist_fc.onnx", m["calib"][:1000], m["x"], 1,
            n_bits=bits, rounding_threshold_bits=6, output_parts=4, max_key_bytes=b)


if __name__ == "__main__":
    main()
