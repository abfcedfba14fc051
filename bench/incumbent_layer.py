"""The incumbent's side of `bench/layer.py` (issue 13's MNIST-shaped layer): concrete-python on the same
function, `relu(round(x @ W, 9 lsbs))` with W 784 × outputs in [-8, 7] from `default_rng(0)` and x 784
values in [0, 15], its rounding exact (`round_bit_pattern(..., exactness=EXACT)`, which keeps the value
as a multiple of 2^9: the same function up to that scale). Its ranges come from an input set (100 random
rows and the two corners of the input box), not proven: it is exact on inputs inside them. Prints one
JSON line: compile and keygen seconds, lookups, evaluation-key bytes, seconds per sample (the sample
of `bench/layer.py`), and whether the result equals the clear function.

concrete-python is not a dependency of fhec: run this in its own virtual environment (Concrete ML
1.9.0 brings concrete-python 2.10), in the same session as `bench/layer.py`, to compare in one run:

    /tmp/cml/bin/python bench/incumbent_layer.py [--outputs 392]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    from concrete import fhe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outputs", type=int, default=392)
    a = ap.parse_args()
    w = np.random.default_rng(0).integers(-8, 8, size=(784, a.outputs))
    sample = np.random.default_rng(1).integers(0, 16, size=(1, 784))

    def clear(x: np.ndarray) -> np.ndarray:
        y = x @ w
        return np.maximum((y + 256) // 512 * 512, 0)

    @fhe.compiler({"x": "encrypted"})
    def layer(x):
        y = fhe.round_bit_pattern(x @ w, lsbs_to_remove=9, exactness=fhe.Exactness.EXACT)
        return np.maximum(y, 0)

    rng = np.random.default_rng(2)
    inputset = [rng.integers(0, 16, size=(1, 784)) for _ in range(100)]
    inputset += [np.zeros((1, 784), dtype=np.int64), np.full((1, 784), 15)]
    t = time.perf_counter()
    circuit = layer.compile(inputset)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    circuit.keygen()
    keygen_s = time.perf_counter() - t
    t = time.perf_counter()
    got = circuit.encrypt_run_decrypt(sample)
    run_s = time.perf_counter() - t
    keys = circuit.size_of_bootstrap_keys + circuit.size_of_keyswitch_keys
    print(json.dumps({
        "tool": "concrete-python", "outputs": a.outputs, "compile_s": round(compile_s, 2), "keygen_s": round(keygen_s, 2),
        "lookups": int(circuit.programmable_bootstrap_count), "evaluation_key_bytes": int(keys),
        "s_per_sample": round(run_s, 2), "equals_clear": bool(np.array_equal(got, clear(sample))),
        "global_p_error": float(circuit.global_p_error),
    }), flush=True)


if __name__ == "__main__":
    main()
