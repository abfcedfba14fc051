"""The deep decision trees of issue 13 (item 5) on spambase, n_bits 6: fully grown (`max_depth=None`,
`random_state=42`) and the incumbent's notebook-tuned one (`min_samples_leaf=10,
min_samples_split=100`). Per tree: depth, leaves, lookups by precision and per partition, parameters,
compile and keygen seconds, evaluation-key bytes, seconds per encrypted row (median of `--rows`), and
FHE == quantised on those rows. One JSON line per tree.

    target/pyenv/bin/python bench/deep_trees.py [--rows 3] [--no-partitions]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
from sklearn.model_selection import train_test_split

import fhec.sklearn as fs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = os.path.join(ROOT, "datasets")  # shipped with the repository
TREES = {
    "fully grown": {"max_depth": None, "random_state": 42},
    "notebook-tuned": {"min_samples_leaf": 10, "min_samples_split": 100, "random_state": 42},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--no-partitions", action="store_true", help="one parameter set per program")
    a = ap.parse_args()
    d = np.load(os.environ.get("FHEC_SPAMBASE", os.path.join(DATASETS, "spambase.npz")))
    X_train, X_test, y_train, y_test = train_test_split(d["X"], d["y"], test_size=0.25, random_state=42)
    for name, kw in TREES.items():
        model = fs.DecisionTreeClassifier(n_bits=6, **kw)
        model.fit(X_train, y_train)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fs.InputRangeWarning)
            quant = model.predict(X_test, fhe="disable")
            t = time.perf_counter()
            circuit = model.compile(X_train, partitions=not a.no_partitions)
            compile_s = time.perf_counter() - t
            t = time.perf_counter()
            circuit.keygen()
            keygen_s = time.perf_counter() - t
            times, equal = [], 0
            for i in range(a.rows):
                t = time.perf_counter()
                got = model.predict(X_test[i : i + 1], fhe="execute")
                times.append(time.perf_counter() - t)
                equal += int(got[0] == quant[i])
        st = circuit.statistics
        print(json.dumps({
            "tree": name, "depth": model.compile_report_.get("max_depth"), "leaves": model.compile_report_.get("leaves"),
            "quantised_accuracy": float((quant == y_test).mean()), "pbs_by_precision": st["pbs_by_precision"],
            "pbs_by_partition": st["pbs_by_partition"], "parameters": st["parameters"].replace("\n", "; "),
            "compile_s": round(compile_s, 2), "keygen_s": round(keygen_s, 2),
            "evaluation_key_bytes": st["evaluation_key_bytes"], "s_per_row": round(float(np.median(times)), 3),
            "fhe_equals_quantised": f"{equal}/{a.rows}",
        }), flush=True)


if __name__ == "__main__":
    main()
