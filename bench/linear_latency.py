"""Single-row latency of the linear family, and where it goes: one `predict(x, fhe="execute")` per test
row (median over the whole test split), and the client/server steps apart (quantise, encrypt, run,
decrypt, through the bytes API; medians). Prints a JSON line per dataset.

    target/pyenv/bin/python bench/linear_latency.py [--rows N]

Run it against two builds in one session to compare them (the machines are noisy: ratios from one
run only).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, make_classification, make_regression
from sklearn.model_selection import train_test_split

import fhec.sklearn as fs


def datasets():
    X, y = load_breast_cancer(return_X_y=True)
    yield "breast-cancer LogisticRegression", fs.LogisticRegression(n_bits=8, max_iter=5000), train_test_split(
        X, y, test_size=0.3, random_state=0
    )
    X, y = make_classification(n_samples=2000, n_features=20, random_state=1)
    yield "synthetic LogisticRegression", fs.LogisticRegression(n_bits=8), train_test_split(X, y, random_state=1)
    X, y = make_regression(n_samples=2000, n_features=20, noise=10, random_state=2)
    yield "synthetic LinearRegression", fs.LinearRegression(n_bits=8), train_test_split(X, y, random_state=2)


def median_ms(f, n):
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        f(i)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=0, help="test rows to time (0: the whole split)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    for name, model, (Xtr, Xte, ytr, yte) in datasets():
        model.fit(Xtr, ytr)
        model.compile(Xtr)
        c = model.fhe_circuit
        c.keygen()
        n = len(Xte) if args.rows == 0 else min(args.rows, len(Xte))
        rows = [Xte[i : i + 1] for i in range(n)]
        model.predict(rows[0], fhe="execute")  # warm
        total = median_ms(lambda i: model.predict(rows[i], fhe="execute"), n)
        q = [model.quantize_input(r) for r in rows]
        enc = [c.encrypt(x) for x in q]
        out = [c.run(e) for e in enc]
        split = {
            "quantise": median_ms(lambda i: model.quantize_input(rows[i]), n),
            "encrypt": median_ms(lambda i: c.encrypt(q[i]), n),
            "run": median_ms(lambda i: c.run(enc[i]), n),
            "decrypt": median_ms(lambda i: c.decrypt(out[i]), n),
        }
        print(json.dumps({"model": name, "rows": n, "predict_execute_ms": round(total, 4), **{k: round(v, 4) for k, v in split.items()}}))


if __name__ == "__main__":
    main()
