"""The MNIST network rows of the model table (issue: networks from ONNX): the fully connected net
(784 → 392 → 10, fixture ``mnist_fc``) and the convolutional one (fixture ``mnist_cnn``: two stride-2
convolutions, an average pool, a linear layer), on mnist5k's test split; and ``qdq``, the fully connected
net quantised to 4 bits by onnxruntime's static quantiser (fixture ``mnist_fc_qdq4``: its own integers,
its accumulators rounded exactly before each requantisation; "fp32" is then onnxruntime's run of the
QDQ graph). Prints one JSON line per
configuration: compile and keygen seconds, evaluation-key bytes, the cost model's seconds per image,
measured seconds per encrypted image (median of ``--samples``; 0 skips execution), lookups by
precision, accuracy of the float network and of the quantised one on the whole test split,
simulate = quantised on it, and FHE = quantised on the executed images.

    target/pyenv/bin/python bench/nn_mnist.py [--model fc|cnn|qdq|both] [--samples N] [--first-only]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from _encrypted import keygen_and_run

FIX = pathlib.Path(__file__).resolve().parents[1] / "frontends" / "onnx" / "tests" / "fixtures"
# (name, n_bits, rounding, output parts)
CONFIGS = {
    "fc": [("inputs 2, activations 4, weights 3, rounding 6",
            {"model_inputs": 2, "op_inputs": 4, "op_weights": 3, "model_outputs": 8}, 6, 1),
           ("inputs 2, activations 4, weights 3, rounding 6, output in 4 parts",
            {"model_inputs": 2, "op_inputs": 4, "op_weights": 3, "model_outputs": 8}, 6, 4)],
    # 6-bit activations: within a point of fp32; their 18-bit output has secure parameters in parts only
    "cnn": [("inputs 2, activations 6, weights 5, rounding 6, output in 4 parts",
             {"model_inputs": 2, "op_inputs": 6, "op_weights": 5, "model_outputs": 8}, 6, 4),
            ("inputs 3, activations 5, weights 5, rounding 6",
             {"model_inputs": 3, "op_inputs": 5, "op_weights": 5, "model_outputs": 8}, 6, 1),
            ("inputs 2, activations 4, weights 4, rounding 6",
             {"model_inputs": 2, "op_inputs": 4, "op_weights": 4, "model_outputs": 8}, 6, 1)],
    # the graph's own 4-bit integers (n_bits does not apply to them)
    "qdq": [("onnxruntime 4-bit QDQ, rounding 6", None, 6, 1), ("onnxruntime 4-bit QDQ, rounding 7", None, 7, 1)],
}
FIXTURE = {"fc": "mnist_fc", "cnn": "mnist_cnn", "qdq": "mnist_fc_qdq4"}


def rows(model: str, samples: int, first_only: bool) -> None:
    import fhec.onnx

    d = dict(np.load(FIX / f"{FIXTURE[model]}.npz"))
    if model == "qdq":  # its inputs are mnist_fc's
        fc = np.load(FIX / "mnist_fc.npz")
        d["x"], d["calib"] = fc["x"], fc["calib"]
    x, y = d["x"], d["y"]
    fp32 = float((d["ort"].argmax(1) == y).mean())
    for name, bits, r, parts in CONFIGS[model][: 1 if first_only else None]:
        t = time.perf_counter()
        qm = fhec.onnx.compile_onnx_model(FIX / f"{FIXTURE[model]}.onnx", d["calib"][:1000],
                                          rounding_threshold_bits=r, output_parts=parts,
                                          **({} if bits is None else {"n_bits": bits}))
        compile_s = time.perf_counter() - t
        clear = qm.forward(x, fhe="disable")
        simulate_equal = bool(np.array_equal(qm.forward(x, fhe="simulate"), clear))
        keygen_s, times, exact = None, [], 0
        if samples:
            keygen_s, times, exact = keygen_and_run(qm, x, clear, samples)
            keygen_s = round(keygen_s, 2)
        s = qm.fhe_circuit.statistics
        print(json.dumps({
            "tool": "fhec", "model": model, "config": name, "compile_s": round(compile_s, 2), "keygen_s": keygen_s,
            "evaluation_key_bytes": s["evaluation_key_bytes"], "estimated_s": round(s["estimated_seconds"], 1),
            "s_per_image": round(float(np.median(times)), 2) if times else None,
            "lookups": s["pbs_count"], "by_precision": s["pbs_by_precision"], "parameters": s["parameters"],
            "fp32_acc": round(fp32, 4), "quantised_acc": round(float((clear.argmax(1) == y).mean()), 4),
            "test_images": len(y), "simulate_equals_quantised": simulate_equal,
            "fhe_equals_quantised": f"{exact}/{samples}",
        }), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["fc", "cnn", "qdq", "both"], default="both")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--first-only", action="store_true", help="only the first configuration of each model")
    a = ap.parse_args()
    for m in ["fc", "cnn"] if a.model == "both" else [a.model]:
        rows(m, a.samples, a.first_only)
