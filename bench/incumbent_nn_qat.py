"""The incumbent's side of `bench/nn_qat.py`: Concrete ML's built-in ``NeuralNetClassifier`` (QAT through
brevitas and skorch) on the same data and splits, in the configurations the QAT issue names (iris
4→16→16→3, 4-bit weights and activations, 200 epochs; MNIST 784→392→10, 4-bit, 7 epochs; its other
parameters at their defaults). Prints one JSON line per row: training, compile and keygen seconds,
quantised accuracy on the whole test split, lookups, evaluation-key bytes, seconds per encrypted sample
(median over ``--samples``) and FHE = quantised on those samples; ``--seeds`` trains once per torch
seed (the incumbent takes no ``random_state``; accuracy and the circuit vary with the seed).

Concrete ML is not a dependency of fhec: install it in a separate virtual environment and run this
there, in the same session as `bench/nn_qat.py`, to compare the two in one run:

    python3 -m venv /tmp/cml && /tmp/cml/bin/pip install concrete-ml==1.9.0
    /tmp/cml/bin/python bench/incumbent_nn_qat.py [--rows iris,mnist] [--samples N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
import pathlib

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from nn_qat import data  # noqa: E402  (the same splits; nn_qat imports only numpy and scikit-learn)

ROWS = {
    "iris": dict(module__n_layers=3, module__n_hidden_neurons_multiplier=4, module__n_w_bits=4,
                 module__n_a_bits=4, max_epochs=200),
    "mnist": dict(module__n_layers=2, module__n_hidden_neurons_multiplier=0.5, module__n_w_bits=4,
                  module__n_a_bits=4, max_epochs=7),
}


def row(name: str, samples: int, seed: int) -> dict:
    import torch
    from concrete.ml.sklearn import NeuralNetClassifier

    torch.manual_seed(seed)
    np.random.seed(seed)
    Xtr, Xte, ytr, yte = data(name)
    if name == "mnist":
        Xtr, Xte = Xtr / 255.0, Xte / 255.0
    Xtr, Xte = Xtr.astype(np.float32), Xte.astype(np.float32)
    ytr, yte = ytr.astype(np.int64), yte.astype(np.int64)
    model = NeuralNetClassifier(**ROWS[name], verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        model.fit(Xtr, ytr)
        fit_s = time.perf_counter() - t
        quantised = float((model.predict(Xte) == yte).mean())
        t = time.perf_counter()
        circuit = model.compile(Xtr)
        compile_s = time.perf_counter() - t
        keygen_s = None
        if samples > 0:  # --samples 0: training, accuracy and compilation only
            t = time.perf_counter()
            circuit.keygen(force=True)
            keygen_s = round(time.perf_counter() - t, 2)
        clear = model.predict_proba(Xte[: max(samples, 1)], fhe="disable")
        times, exact = [], 0
        for i in range(samples):
            t = time.perf_counter()
            out = model.predict_proba(Xte[i : i + 1], fhe="execute")
            times.append(time.perf_counter() - t)
            exact += int(np.array_equal(out[0], clear[i]))
    stats = circuit.statistics if hasattr(circuit, "statistics") else {}
    return {
        "row": f"NN {name} QAT (concrete-ml NeuralNetClassifier)",
        "params": ROWS[name],
        "torch_seed": seed,
        "fit_s": round(fit_s, 2),
        "accuracy_quantised": round(quantised, 4),
        "compile_s": round(compile_s, 2),
        "keygen_s": keygen_s,
        "lookups": int(circuit.programmable_bootstrap_count),
        # as sent (compressed, seeded: `compress_evaluation_keys` is on by default), and the server's
        # expanded bootstrap + keyswitch keys as the circuit's statistics count them
        "evaluation_key_bytes": len(circuit.keys.evaluation.serialize()) if samples > 0 else None,
        "expanded_key_bytes": int(circuit.size_of_bootstrap_keys + circuit.size_of_keyswitch_keys),
        "lookups_by_parameters": {str(k): v for k, v in circuit.programmable_bootstrap_count_per_parameter.items()},
        "global_p_error": stats.get("global_p_error", getattr(circuit, "global_p_error", None)),
        "fhe_samples": samples,
        "s_per_sample": round(statistics.median(times), 3) if times else None,
        "fhe_equals_quantised": f"{exact}/{samples}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="iris,mnist")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--seeds", default="0", help="torch seeds, one row each (training varies with the seed)")
    args = ap.parse_args()
    for name in args.rows.split(","):
        for seed in map(int, args.seeds.split(",")):
            print(json.dumps(row(name, args.samples, seed)), flush=True)


if __name__ == "__main__":
    main()
