"""The built-in networks' rows (QAT issue): ``fhec.sklearn.NeuralNetClassifier`` trained in numpy with
the program in the loop, on iris (4→16→16→3, 4-bit weights and activations, 200 epochs) and on the
5 000-image MNIST subset (784→392→10, 4-bit, 7 epochs), both split as the model table splits
(`train_test_split(test_size=0.25, random_state=42)`; MNIST shuffled first). Prints one JSON line per
row: training seconds, the float reference (scikit-learn's MLPClassifier, same layers and epochs),
quantised accuracy on the whole test split, compile and keygen seconds, evaluation-key bytes, lookups
by precision, accumulator bits, seconds per encrypted sample (median over ``--samples``) and
FHE = quantised on those samples.

    target/pyenv/bin/python bench/nn_qat.py [--rows iris,mnist,mnist-default,torch-cnn] [--samples N] [--out FILE]

``mnist-default`` is the estimator's defaults (784 → 3136 → 3136 → 10): minutes to train, about two
minutes per encrypted image. ``torch-cnn`` is a small convolutional network built from ``fhec.torch``'s
QAT layers (needs torch): 1×28×28 → 5×5 convolution of 16 filters, stride 3 → 2×2 sum pooling → ReLU
(4 bits) → 256 → 10, 4-bit weights, trained 15 epochs with Adam (weights averaged over the steps), compiled with ``import_qat=True``; the
float reference is the same network in plain torch layers.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time
import warnings

import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.utils import shuffle

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: the built-in networks' configurations (docs/nn.md; the QAT issue's rows: architecture, 4-bit
#: weights and activations and epochs as the incumbent's, its learning rate on MNIST; fhec's accumulator,
#: rounding and input widths: iris's hidden accumulators 6 bits on 3-bit inputs, its outputs 7;
#: MNIST's hidden accumulators 9 bits, its decrypted outputs 11)
NN_IRIS = dict(n_layers=3, n_hidden_neurons_multiplier=4, n_w_bits=4, n_a_bits=4, n_accum_bits=[6, 6, 7],
               n_input_bits=3, rounding_threshold_bits=4, max_epochs=200, lr=0.01, batch_size=16, random_state=0)
NN_MNIST = dict(n_layers=2, n_hidden_neurons_multiplier=0.5, n_w_bits=4, n_a_bits=4, n_accum_bits=[9, 11],
                rounding_threshold_bits=4, max_epochs=7, lr=0.01, batch_size=128, input_range="tensor",
                random_state=0)

#: the rows: data, the estimator's parameters (the model table's: the issue's architecture and bits;
#: fhec's accumulator and rounding widths), the incumbent's figures measured on this machine (issue text)
ROWS = {
    "iris": (
        "iris",
        NN_IRIS,
        {"s_per_sample": 0.65, "lookups": 144, "keys_mib": 60, "keygen_s": 1.9, "accuracy": 0.974},
    ),
    "mnist": (
        "mnist",
        NN_MNIST,
        {"s_per_sample": 34.9, "lookups": 3136, "keys_mib": 332, "keygen_s": 9.0, "accuracy": 0.918},
    ),
    # the estimator's defaults (the incumbent's: 3 layers, multiplier 4, 3-bit weights and activations,
    # 8-bit accumulators, 10 epochs): 784 → 3136 → 3136 → 10; the incumbent does not execute it here
    "mnist-default": (
        "mnist",
        dict(input_range="tensor", random_state=0),
        {"s_per_sample": None, "lookups": 34496, "keys_mib": None, "keygen_s": None, "accuracy": None},
    ),
}


def data(name: str) -> tuple:
    if name == "iris":
        X, y = load_iris(return_X_y=True)
    else:
        d = np.load(ROOT / "datasets" / "mnist5k.npz")
        X, y = shuffle(d["X"].astype(np.float64), d["y"], random_state=0)
    return train_test_split(X, y, test_size=0.25, random_state=42)


def row(name: str, samples: int) -> dict:
    from fhec.sklearn import NeuralNetClassifier

    kind, params, incumbent = ROWS[name]
    Xtr, Xte, ytr, yte = data(kind)
    full = {**NeuralNetClassifier().get_params(), **params}
    hidden = [max(1, round(full["n_hidden_neurons_multiplier"] * Xtr.shape[1]))] * (full["n_layers"] - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scale = Xtr.max() if full["input_range"] == "tensor" else 1.0
        ref = MLPClassifier(tuple(hidden), max_iter=full["max_epochs"], random_state=0,
                            batch_size=full["batch_size"]).fit(Xtr / scale, ytr)
        fp32 = float(ref.score(Xte / scale, yte))
        t = time.perf_counter()
        model = NeuralNetClassifier(**params).fit(Xtr, ytr)
        fit_s = time.perf_counter() - t
        quantised = float(model.score(Xte, yte))
        t = time.perf_counter()
        circuit = model.compile()
        compile_s = time.perf_counter() - t
        fhe = _fhe(circuit, lambda X, fhe: model.decision_function(X, fhe=fhe), Xte, samples)
    return {
        "row": f"NN {name} QAT (built-in, numpy)",
        "params": {k: v for k, v in params.items()},
        "train_rows": len(Xtr),
        "test_rows": len(Xte),
        "fit_s": round(fit_s, 2),
        "accuracy_fp32": round(fp32, 4),
        "accuracy_quantised": round(quantised, 4),
        "accumulator_bits": model.accumulator_bits_,
        "compile_s": round(compile_s, 2),
        **fhe,
        "incumbent": incumbent,
        "speedup": round(incumbent["s_per_sample"] / fhe["s_per_sample"], 2) if incumbent["s_per_sample"] else None,
        "keygen_speedup": round(incumbent["keygen_s"] / fhe["keygen_s"], 2) if incumbent["keygen_s"] else None,
    }


def _fhe(circuit, predict, Xte: np.ndarray, samples: int) -> dict:
    """Keygen, the circuit's statistics and ``samples`` encrypted predictions against the clear ones."""
    t = time.perf_counter()
    circuit.keygen()
    keygen_s = time.perf_counter() - t
    stats = circuit.statistics
    clear = predict(Xte[:samples], "disable")
    times, exact = [], 0
    for i in range(samples):
        t = time.perf_counter()
        out = predict(Xte[i : i + 1], "execute")
        times.append(time.perf_counter() - t)
        exact += int(np.array_equal(out[0], clear[i]))
    return {
        "lookups": int(stats["pbs_count"]),
        "lookups_by_precision": {str(k): v for k, v in stats["pbs_by_precision"].items()},
        "lookups_by_partition": stats.get("pbs_by_partition"),
        "parameters": stats["parameters"],
        "keygen_s": round(keygen_s, 2),
        "evaluation_key_bytes": int(stats["evaluation_key_bytes"]),
        "estimated_s": round(float(stats["estimated_seconds"]), 3),
        "fhe_samples": samples,
        "s_per_sample": round(statistics.median(times), 3),
        "fhe_equals_quantised": f"{exact}/{samples}",
    }


def _torch_nets(torch, quant: bool):
    from torch import nn

    if quant:
        import fhec.torch as ft

        return nn.Sequential(
            ft.QuantInput(4, input_range=(0.0, 1.0)),
            ft.QuantConv2d(1, 16, 5, stride=3, n_w_bits=4, n_accum_bits=10),
            ft.QuantAvgPool2d(2),
            ft.QuantReLU(4),
            nn.Flatten(),
            ft.QuantLinear(256, 10, n_w_bits=4),
        )
    return nn.Sequential(nn.Conv2d(1, 16, 5, stride=3), nn.AvgPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))


def _torch_fit(torch, net, X, y, epochs: int = 15, lr: float = 0.01, bs: int = 64, ema: float = 0.0) -> float:
    """Adam; with ``ema`` the kept parameters are their moving average over the steps (torch's
    AveragedModel), copied back into ``net`` whose buffers (the QAT layers' activation ranges) stay the
    training's (docs/nn.md)."""
    import torch.nn.functional as F
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr)
    avg = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=False) if ema else None
    Xt, yt = torch.tensor(X), torch.tensor(y)
    t = time.perf_counter()
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(net(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if avg is not None:
                avg.update_parameters(net)
    if avg is not None:
        with torch.no_grad():
            for p, a in zip(net.parameters(), avg.module.parameters()):
                p.copy_(a)
    net.eval()
    return time.perf_counter() - t


def torch_row(samples: int) -> dict:
    import torch

    import fhec.torch as ft

    torch.set_num_threads(2)
    Xtr, Xte, ytr, yte = data("mnist")
    Xtr = (Xtr / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    Xte = (Xte / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    torch.manual_seed(0)
    ref = _torch_nets(torch, False)
    _torch_fit(torch, ref, Xtr, ytr)
    with torch.no_grad():
        fp32 = float((ref(torch.tensor(Xte)).argmax(1).numpy() == yte).mean())
    torch.manual_seed(0)
    net = _torch_nets(torch, True)
    fit_s = _torch_fit(torch, net, Xtr, ytr, ema=0.99)
    with torch.no_grad():
        mine = net(torch.tensor(Xte))
    quantised = float((mine.argmax(1).numpy() == yte).mean())
    t = time.perf_counter()
    qm = ft.compile_torch_model(net, Xtr, import_qat=True)
    compile_s = time.perf_counter() - t
    fhe = _fhe(qm.fhe_circuit, lambda X, fhe: qm.forward(X, fhe=fhe), Xte, samples)
    return {
        "row": "NN MNIST CNN QAT (fhec.torch layers)",
        "params": "conv 16×5×5/3 (n_accum_bits 10) → sum-pool 2 → ReLU 4 bits → dense 256→10; w4, input 4 bits; "
                  "weights averaged over the steps (0.99)",
        "train_rows": len(Xtr),
        "test_rows": len(Xte),
        "fit_s": round(fit_s, 2),
        "accuracy_fp32": round(fp32, 4),
        "accuracy_quantised": round(quantised, 4),
        "accumulator_bits": [r["bits"] for r in qm.bitwidth_report() if r["kind"] == "accumulator"],
        "compile_s": round(compile_s, 2),
        **fhe,
        "incumbent": None,
    }


def _incumbent_rows(path: pathlib.Path) -> dict:
    """The incumbent's rows measured by bench/incumbent_nn_qat.py: per network, the median over its
    seeds of latency, keygen, keys and accuracy (rows without an encrypted run count for accuracy)."""
    by: dict = {}
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            by.setdefault(d["row"].split()[1], []).append(d)
    med = lambda rows, k: statistics.median(r[k] for r in rows if r.get(k) is not None)  # noqa: E731
    return {
        name: {"s_per_sample": med(rows, "s_per_sample"), "keygen_s": med(rows, "keygen_s"),
               "keys_bytes": med(rows, "evaluation_key_bytes"), "accuracy": med(rows, "accuracy_quantised"),
               "seeds": len(rows), "measured": "same session"}
        for name, rows in by.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="iris,mnist")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--out", type=pathlib.Path, default=None, help="also write the rows as a JSON list")
    ap.add_argument("--incumbent", type=pathlib.Path, default=None,
                    help="JSON lines of bench/incumbent_nn_qat.py from the same session: the ratios are then "
                         "against its rows (the median over its seeds) instead of the issue's figures")
    a = ap.parse_args()
    measured = _incumbent_rows(a.incumbent) if a.incumbent else {}
    out = []
    for name in a.rows.split(","):
        r = torch_row(a.samples) if name.strip() == "torch-cnn" else row(name.strip(), a.samples)
        if name.strip() in measured:
            inc = measured[name.strip()]
            r["incumbent"] = inc
            r["speedup"] = round(inc["s_per_sample"] / r["s_per_sample"], 2)
            r["keygen_speedup"] = round(inc["keygen_s"] / r["keygen_s"], 2)
        print(json.dumps(r), flush=True)
        out.append(r)
    if a.out:
        a.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
