"""Load test of `fhec serve` on loopback (issue 17): concurrent clients, each with its own keys, send
encrypted single-row predictions to a linear model and a tree model; reports throughput, p50/p99
latency, errors, the server's peak memory and its key cache against the budget. A benchmark, not a
test: results go to bench/results/serve_load.json and the table in docs/benchmarks.md.

    source scripts/pyenv.sh && cargo build --release -p fhec && "$py" bench/serve_load.py
    "$py" bench/serve_load.py --clients 16 --requests 50 --cache-bytes 1G
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from ml_table import spambase, update_docs, write_results  # noqa: E402

from fhec.deploy import ModelDev, RemoteModel  # noqa: E402
from fhec.sklearn import DecisionTreeClassifier, LogisticRegression  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- serve-load:begin -->", "<!-- serve-load:end -->"


def parse_size(v: str) -> int:
    """`fhec serve`'s sizes: digits and an optional K, M, G or T (powers of 1024)."""
    v = v.strip()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(v[:-1]) * mult[v[-1].upper()] if v[-1].isalpha() else int(v)


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
    return int(m.group(1)) / 1024 if m else float("nan")


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, flags=re.M)
    return float(m.group(1)) if m else float("nan")


def run_model(url: str, name: str, X: np.ndarray, want: np.ndarray, clients: int, requests: int) -> dict:
    remotes = [RemoteModel(url, name, retries=50) for _ in range(clients)]
    for r in remotes:
        r.client.keygen()
        r.upload_keys()
    latencies: list[float] = []
    errors: list[str] = []
    wrong = 0
    lock = threading.Lock()

    def work(i: int) -> None:
        nonlocal wrong
        r = remotes[i]
        for j in range(requests):
            k = (i * requests + j) % len(X)
            t0 = time.perf_counter()
            try:
                got = r.predict(X[k : k + 1])
            except Exception as e:  # noqa: BLE001 - counted
                with lock:
                    errors.append(repr(e))
                continue
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                wrong += int(got[0] != want[k])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies)
    return {
        "model": name,
        "clients": clients,
        "requests": clients * requests,
        "ok": len(latencies),
        "errors": len(errors),
        "wrong": wrong,
        "seconds": wall,
        "throughput": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat, 50) * 1e3) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99) * 1e3) if len(lat) else float("nan"),
        "first_errors": errors[:3],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=50, help="requests per client")
    ap.add_argument("--tree-requests", type=int, default=None, help="requests per client for the tree (default: --requests)")
    ap.add_argument("--cache-bytes", default="1G")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--queue", type=int, default=64)
    ap.add_argument("--fhec", default=str(ROOT / "target" / "release" / "fhec"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_load.json"))
    ap.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()

    X_train, X_test, y_train, _ = spambase()
    work = Path(tempfile.mkdtemp(prefix="fhec-load-"))
    models = {
        "linear": LogisticRegression(n_bits=8, max_iter=5000),
        "tree": DecisionTreeClassifier(max_depth=5, n_bits=6, random_state=42),
    }
    wants = {}
    for name, m in models.items():
        m.fit(X_train, y_train)
        m.compile(X_train)
        ModelDev(work / "models", m, name=name).save()
        wants[name] = m.predict(X_test, fhe="simulate")

    proc = subprocess.Popen(
        [args.fhec, "serve", str(work / "models"), "--keys", str(work / "keys"), "--listen", "127.0.0.1:0",
         "--cache-bytes", args.cache_bytes, "--jobs", str(args.jobs), "--queue", str(args.queue)],
        stderr=subprocess.PIPE, text=True,
    )
    line = proc.stderr.readline()
    url = line.split("listening on ")[1].split()[0]
    rows = []
    try:
        for name in ("linear", "tree"):
            n = args.requests if name == "linear" else (args.tree_requests or args.requests)
            r = run_model(url, name, X_test, wants[name], args.clients, n)
            print(json.dumps(r), flush=True)
            rows.append(r)
        with urllib.request.urlopen(url + "/metrics") as resp:
            metrics = resp.read().decode()
        peak = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    budget = parse_size(args.cache_bytes)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} ({os.cpu_count()} CPUs)",
        "command": "python bench/serve_load.py " + " ".join(sys.argv[1:]),
        "peak_rss_mb": peak,
        "cache_bytes_budget": budget,
        "cache_bytes_end": metric(metrics, "fhec_key_cache_bytes"),
        "cache_hits": metric(metrics, "fhec_key_cache_hits_total"),
        "cache_misses": metric(metrics, "fhec_key_cache_misses_total"),
        "jobs": args.jobs,
        "queue": args.queue,
    }
    write_results(args.out, meta, rows)
    table = [
        f"Run {meta['date']} on {meta['machine']}; command `{meta['command']}`; `fhec serve --jobs {args.jobs} "
        f"--queue {args.queue} --cache-bytes {args.cache_bytes}` on loopback; each client has its own keys and "
        "sends single-row `predict` calls (quantise, encrypt, HTTP, run, decrypt) one after another.",
        "",
        "| model | clients × requests | ok | errors | wrong | throughput | p50 | p99 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['model']} | {r['clients']} × {r['requests'] // r['clients']} | {r['ok']} | {r['errors']} | "
            f"{r['wrong']} | {r['throughput']:.1f} req/s | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms |"
        )
    table += [
        "",
        f"Server peak memory {peak:.0f} MB; key cache {meta['cache_bytes_end'] / 2**20:.0f} MiB at the end "
        f"(budget {budget / 2**20:.0f} MiB), {meta['cache_hits']:.0f} hits, {meta['cache_misses']:.0f} misses "
        "(a miss reads and expands a key set).",
    ]
    update_docs(args.docs, "\n".join(table), BEGIN, END, "## Serving: load test")
    bad = sum(r["errors"] + r["wrong"] for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
