"""README command 1 (`scripts/seed-table.sh` → `bench/ml_table.py --seed`) keeps working: every row of the
seed table trains, compiles and runs encrypted (one encrypted row each here, to keep CI short), FHE equal to
the quantised model."""

import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_the_seed_table_runs(tmp_path):
    out = tmp_path / "seed.json"
    env = {**os.environ, "FHEC_PROGRESS": "0"}
    p = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "ml_table.py"), "--seed", "--rows", "1", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"].split()[0] for r in rows] == [
        "LinearRegression", "LogisticRegression", "DecisionTreeClassifier", "NeuralNetClassifier", "NeuralNetClassifier"
    ]
    assert all(r["fhe_quantized_agreement"] == 1.0 and r["fhe_rows"] == 1 for r in rows)
    assert "incumbent latency" in p.stdout and "MNIST" in p.stdout
