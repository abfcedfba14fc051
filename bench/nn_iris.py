"""The iris network row of the model table (issue: networks from ONNX): fhec's side, and with
``--incumbent`` Concrete ML's on the same ONNX file and split (run that in Concrete ML's own virtual
environment; it is not a dependency of fhec). Prints one JSON line per configuration: compile and
keygen seconds, evaluation-key bytes, seconds per encrypted sample (median), lookups, accuracy of the
float network and of the quantised one on the test split, and FHE = quantised on the executed samples.

    target/pyenv/bin/python bench/nn_iris.py [--samples N]
    /path/to/cml-venv/bin/python bench/nn_iris.py --incumbent [--samples N]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from _encrypted import keygen_and_run

FIX = pathlib.Path(__file__).resolve().parents[1] / "frontends" / "onnx" / "tests" / "fixtures"
PAPER = {"model_inputs": 7, "op_inputs": 3, "op_weights": 4, "model_outputs": 8}
WEIGHTS5 = {**PAPER, "op_weights": 5}


def fhec_rows(samples: int) -> None:
    import fhec.onnx

    d = np.load(FIX / "iris_mlp.npz")
    x, y = d["x"], d["y"]
    fp32 = float((d["ort"].argmax(1) == y).mean())
    five = {"model_inputs": 5, "op_inputs": 3, "op_weights": 4, "model_outputs": 8}
    for name, bits, r, partitions, p_error in [
        ("default (5 bits, rounding 5)", 5, 5, True, None), ("paper bits, rounding 6", PAPER, 6, True, None),
        ("inputs 5, op_inputs 3, weights 4, outputs 8, rounding 5", five, 5, True, None),
        # the fewest keys: one parameter set (two extraction sets cost 28 MB here)
        ("paper bits, rounding 4, one parameter set", PAPER, 4, False, None),
        # the same at the incumbent's default failure probability (2^-40 per lookup, not fhec's 2^-128)
        ("paper bits, rounding 4, one parameter set, p_error 2^-40", PAPER, 4, False, 2.0**-40),
        # one more weight bit: the float network's accuracy (38 of 38 test samples)
        ("paper bits but weights 5, rounding 4, one parameter set", WEIGHTS5, 4, False, None),
        ("paper bits but weights 5, rounding 4", WEIGHTS5, 4, True, None),
        ("paper bits but weights 5, rounding 4, one parameter set, p_error 2^-40", WEIGHTS5, 4, False, 2.0**-40),
    ]:
        t = time.perf_counter()
        qm = fhec.onnx.compile_onnx_model(FIX / "iris_mlp.onnx", d["calib"], n_bits=bits, rounding_threshold_bits=r,
                                          partitions=partitions, p_error=p_error)
        compile_s = time.perf_counter() - t
        clear = qm.forward(x, fhe="disable")
        keygen_s, times, exact = keygen_and_run(qm, x, clear, samples)
        s = qm.fhe_circuit.statistics
        print(json.dumps({
            "tool": "fhec", "config": name, "compile_s": round(compile_s, 2), "keygen_s": round(keygen_s, 2),
            "evaluation_key_bytes": s["evaluation_key_bytes"], "s_per_sample": round(float(np.median(times)), 3),
            "lookups": s["pbs_count"], "by_precision": s["pbs_by_precision"], "fp32_acc": round(fp32, 4),
            "quantised_acc": round(float((clear.argmax(1) == y).mean()), 4), "fhe_equals_quantised": f"{exact}/{samples}",
        }), flush=True)


def incumbent_rows(samples: int) -> None:
    import onnx
    import onnx.version_converter
    from concrete.ml.torch.compile import compile_onnx_model

    d = np.load(FIX / "iris_mlp.npz")
    x, y = d["x"], d["y"]
    fp32 = float((d["ort"].argmax(1) == y).mean())
    # Concrete ML 1.9 reads opset 14 only: the same graph, converted
    model = onnx.version_converter.convert_version(onnx.load(str(FIX / "iris_mlp.onnx")), 14)
    t = time.perf_counter()
    qm = compile_onnx_model(model, d["calib"].astype(np.float32), n_bits=PAPER)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    qm.fhe_circuit.keygen()
    keygen_s = time.perf_counter() - t
    clear = qm.forward(x.astype(np.float32), fhe="disable")
    times, exact = [], 0
    for i in range(samples):
        t = time.perf_counter()
        out = qm.forward(x[i : i + 1].astype(np.float32), fhe="execute")
        times.append(time.perf_counter() - t)
        exact += int(np.array_equal(out, clear[i : i + 1]))
    c = qm.fhe_circuit
    print(json.dumps({
        "tool": "concrete-ml", "config": "paper bits, no rounding", "compile_s": round(compile_s, 2),
        "keygen_s": round(keygen_s, 2), "evaluation_key_bytes": int(c.size_of_keyswitch_keys + c.size_of_bootstrap_keys),
        "s_per_sample": round(float(np.median(times)), 3), "lookups": int(c.programmable_bootstrap_count),
        "fp32_acc": round(fp32, 4), "quantised_acc": round(float((clear.argmax(1) == y).mean()), 4),
        "fhe_equals_quantised": f"{exact}/{samples}",
    }), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--incumbent", action="store_true")
    a = ap.parse_args()
    (incumbent_rows if a.incumbent else fhec_rows)(a.samples)
