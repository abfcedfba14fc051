"""What a negligible failure probability costs: every row of the model table compiled at 2^-40 and at
2^-128 per lookup, in one run on this machine (parameters, keygen, evaluation keys, single-row latency,
FHE = quantised on a few rows). Writes bench/results/p_error_table.json and the table of
docs/benchmarks.md between the `p-error-table` markers.

    source scripts/pyenv.sh && "$py" bench/p_error_table.py            # or: --latency-runs 5 --rows 8

Why it matters: decrypted results that reach the party that chose the ciphertexts expose TFHE to
IND-CPA^D key recovery from lookup failures (docs/security.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

import fhec
import fhec.sklearn as fs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ml_table import ROOT, ROWS, ms, update_docs, write_results  # noqa: E402

BEGIN, END = "<!-- p-error-table:begin -->", "<!-- p-error-table:end -->"
TARGETS = [("2^-40", 2.0**-40), ("2^-128", 2.0**-128)]


def measure(row, latency_runs: int, check_rows: int) -> dict:
    X_train, X_test, y_train, _ = row.data()
    model = row.make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_train, y_train)
    out = {"model": row.name, "dataset": row.dataset, "n_bits": model.n_bits, "targets": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fs.InputRangeWarning)
        quant = model.predict(X_test[:check_rows], fhe="disable")
        for label, p in TARGETS:
            circuit = model.compile(X_train, p_error=p)
            t0 = time.perf_counter()
            circuit.keygen()
            keygen_s = time.perf_counter() - t0
            fhe = model.predict(X_test[:check_rows], fhe="execute")
            single = []
            for i in range(latency_runs):
                x = X_test[i % len(X_test) : i % len(X_test) + 1]
                t0 = time.perf_counter()
                model.predict(x, fhe="execute")
                single.append(time.perf_counter() - t0)
            st = circuit.statistics
            out["targets"][label] = {
                "parameters": st["parameters"],
                "log2_p_error_worst_lookup": st["log2_p_error_per_lookup"],
                "log2_p_error_global": st["log2_p_error_global"],
                "keygen_s": keygen_s,
                "eval_key_bytes": st["evaluation_key_bytes"],
                "pbs_count": st["pbs_count"],
                "latency_ms_median": float(np.median(single) * 1e3),
                "fhe_equals_quantized": bool(np.array_equal(fhe, quant)),
                "checked_rows": int(len(quant)),
            }
    return out


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        f"Run {meta['date']} on {meta['machine']} ({meta['cpus']} CPUs), fhec {meta['fhec']}; command "
        f"`{meta['command']}`. Per-lookup failure probability 2^-40 (the default) against 2^-128; latency is "
        "the median of single-row encrypted predictions (encryption to decryption).",
        "",
        "| model | dataset | PBS / row | parameters 2^-40 → 2^-128 | keygen | eval keys | latency (1 row) "
        "| latency ratio | FHE = quantised |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    for r in results:
        a, b = r["targets"]["2^-40"], r["targets"]["2^-128"]
        short = lambda s: s.split(" noise")[0].split(", leveled")[0]  # noqa: E731
        same = a["fhe_equals_quantized"] and b["fhe_equals_quantized"]
        lines.append(
            f"| {r['model']} | {r['dataset']} | {a['pbs_count']} | {short(a['parameters'])} → {short(b['parameters'])} "
            f"| {a['keygen_s']:.2f} s → {b['keygen_s']:.2f} s "
            f"| {a['eval_key_bytes'] / 1e6:.1f} → {b['eval_key_bytes'] / 1e6:.1f} MB "
            f"| {ms(a['latency_ms_median'])} → {ms(b['latency_ms_median'])} "
            f"| {b['latency_ms_median'] / a['latency_ms_median']:.2f} "
            f"| {'yes' if same else 'NO'} ({a['checked_rows']} rows) |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency-runs", type=int, default=100, help="single-row runs (rows with their own count in ml_table keep it)")
    ap.add_argument("--rows", type=int, default=8, help="test rows checked encrypted against the quantised model")
    ap.add_argument("--only", default="", help="rows whose model name contains this text (default: every row)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "p_error_table.json"))
    ap.add_argument("--docs", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = ap.parse_args()
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "fhec": fhec.__version__,
        "command": "python bench/p_error_table.py",
    }
    results = []
    for row in [r for r in ROWS if args.only in r.name]:
        print(f"{row.name} on {row.dataset} …", file=sys.stderr, flush=True)
        results.append(measure(row, row.latency_runs or args.latency_runs, args.rows))
        print(json.dumps(results[-1]["targets"]), file=sys.stderr)
    write_results(args.out, meta, results)
    table = markdown(results, meta)
    print(table)
    if args.docs:
        update_docs(args.docs, table, BEGIN, END, "## Failure probability: 2^-40 against 2^-128")
    return 0 if all(t["fhe_equals_quantized"] for r in results for t in r["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
