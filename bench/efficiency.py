"""The executor's efficiency on the model table's programs (issue 13): trains and compiles each row of
bench/ml_table.py that has table lookups (the trees and the networks), writes its program to
target/tmp/efficiency/, and runs `fhec-bench efficiency` on them, which measures the encrypted run of 1
and 16 random samples against the bound Σ lookups × the bare single-thread time of one lookup at its
partition × samples ÷ threads, and checks every decrypted result against the program's exact simulation.

    cargo build --release -p fhec-bench && source scripts/pyenv.sh
    target/pyenv/bin/python bench/efficiency.py [--rows "DecisionTree,XGBClassifier"] [--samples 1,16]

Writes bench/results/efficiency.{json,md} (through fhec-bench).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import ml_table  # noqa: E402  (the rows, their data and estimators)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="", help="comma-separated substrings of row names (default: every row with lookups)")
    ap.add_argument("--samples", default="1,16", help="batch sizes, comma-separated")
    a = ap.parse_args()
    wanted = [w for w in a.rows.split(",") if w]
    out = ROOT / "target" / "tmp" / "efficiency"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for row in ml_table.ROWS:
        if wanted and not any(w in row.name for w in wanted):
            continue
        X_train, _, y_train, _ = row.data()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = row.make().fit(X_train, y_train)
            circuit = model.compile(X_train)
        if circuit.statistics["pbs_count"] == 0:
            continue  # linear models: no lookup, nothing to bound
        name = re.sub(r"[^A-Za-z0-9]+", "_", f"{row.name} {row.dataset.split()[0]}").strip("_")
        path = out / f"{name}.fhecp"
        path.write_bytes(circuit.program_bytes())
        files.append(str(path))
        print(f"{row.name}: {circuit.statistics['pbs_count']} lookups → {path}", file=sys.stderr, flush=True)
    exe = ROOT / "target" / "release" / "fhec-bench"
    if not exe.exists():
        sys.exit(f"{exe} not found: run `cargo build --release -p fhec-bench` first")
    subprocess.run([str(exe), "efficiency", *files, "--samples", a.samples], check=True, env=dict(os.environ))


if __name__ == "__main__":
    main()
