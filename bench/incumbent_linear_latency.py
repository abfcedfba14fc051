"""The incumbent's side of `bench/linear_latency.py`: single-row `predict(x, fhe="execute")` of
Concrete ML's linear models on the same datasets and splits (median over the first 150 test rows).
Concrete ML is not a dependency of fhec: install it in a separate virtual environment and run this
there, in the same session as `bench/linear_latency.py`, to compare the two in one run:

    python3 -m venv /tmp/cml && /tmp/cml/bin/pip install concrete-ml
    /tmp/cml/bin/python bench/incumbent_linear_latency.py
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, make_classification, make_regression
from sklearn.model_selection import train_test_split


def main() -> None:
    from concrete.ml.sklearn import LinearRegression, LogisticRegression

    warnings.simplefilter("ignore")
    X, y = load_breast_cancer(return_X_y=True)
    cases = [("breast-cancer LogisticRegression", LogisticRegression(n_bits=8, max_iter=5000),
              train_test_split(X, y, test_size=0.3, random_state=0))]
    X, y = make_classification(n_samples=2000, n_features=20, random_state=1)
    cases.append(("synthetic LogisticRegression", LogisticRegression(n_bits=8), train_test_split(X, y, random_state=1)))
    X, y = make_regression(n_samples=2000, n_features=20, noise=10, random_state=2)
    cases.append(("synthetic LinearRegression", LinearRegression(n_bits=8), train_test_split(X, y, random_state=2)))
    for name, model, (Xtr, Xte, ytr, _) in cases:
        model.fit(Xtr, ytr)
        model.compile(Xtr)
        model.fhe_circuit.keygen()
        n = min(len(Xte), 150)
        model.predict(Xte[:1], fhe="execute")
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            model.predict(Xte[i : i + 1], fhe="execute")
            times.append(time.perf_counter() - t0)
        print(json.dumps({"model": name, "rows": n, "predict_execute_ms": round(1e3 * float(np.median(times)), 3)}))


if __name__ == "__main__":
    main()
