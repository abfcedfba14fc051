"""The MNIST-shaped dense layer of issue 13 through the `fhec` CLI: compile, keygen, encrypt, run,
decrypt, checked against `fhec eval`; one JSON line per configuration and a Markdown summary.

    python bench/layer.py                      # 784 × 392, partitions (the default) and one set
    python bench/layer.py --outputs 32         # the 32-output variant (`relu32`)
    python bench/layer.py --configs default    # only the default compile

The layer: `relu(round(x @ W, 9 lsbs))`, x 784 values in [0, 15] (4-bit unsigned input), W 784 × outputs
in [-8, 7] from `numpy.random.default_rng(0)`; the accumulator's range is what the compiler proves from
the input range (16 bits signed for 392 outputs), the rounded value 7 bits, the ReLU a lookup on it.
The sample is `default_rng(1)`'s. Needs a release build of the `fhec` binary (`cargo build --release`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FHEC = os.path.join(ROOT, "target", "release", "fhec")
CONFIGS = {"default": [], "one-set": ["--no-partitions"]}


def module(outputs: int, lsbs: int = 9) -> str:
    """The layer as an `fhe` module (text)."""
    rng = np.random.default_rng(0)
    w = rng.integers(-8, 8, size=(784, outputs))
    rows = ", ".join("[" + ", ".join(str(int(v)) for v in r) + "]" for r in w)
    # the accumulator's proven range, and the rounded value's width
    hi = int(15 * np.clip(w, 0, None).sum(axis=0).max())
    lo = int(15 * np.clip(w, None, 0).sum(axis=0).min())
    acc = max(hi.bit_length(), (-lo - 1).bit_length()) + 1
    rw = acc - lsbs
    relu = [max(v if v < 2 ** (rw - 1) else v - 2**rw, 0) for v in range(2**rw)]
    ow = max(1, max(relu).bit_length())
    t = f"tensor<1x{outputs}x"
    return (
        f"// relu(round(x @ W, {lsbs} lsbs)), W 784 x {outputs} in [-8, 7] (bench/layer.py)\n"
        f"func.func @main(%x: tensor<1x784x!fhe.eint<4>>) -> {t}!fhe.eint<{ow}>> {{\n"
        f'  %w = "fhe.constant"() {{value = dense<[{rows}]> : tensor<784x{outputs}xi4>}} : () -> tensor<784x{outputs}xi4>\n'
        f'  %0 = "fhe.matmul"(%x, %w) : (tensor<1x784x!fhe.eint<4>>, tensor<784x{outputs}xi4>) -> {t}!fhe.esint<{acc}>>\n'
        f'  %1 = "fhe.round"(%0) {{lsbs = {lsbs}}} : ({t}!fhe.esint<{acc}>>) -> {t}!fhe.esint<{rw}>>\n'
        f'  %2 = "fhe.lut"(%1) {{table = dense<{relu}> : tensor<{2**rw}xui{ow}>}} : ({t}!fhe.esint<{rw}>>) -> {t}!fhe.eint<{ow}>>\n'
        f'  "func.return"(%2) : ({t}!fhe.eint<{ow}>>) -> ()\n'
        "}\n"
    )


def sh(*args: str) -> tuple[str, float]:
    """Runs the CLI; (stderr + stdout, seconds). Fails loudly."""
    t0 = time.perf_counter()
    p = subprocess.run([FHEC, *args], capture_output=True, text=True, env={**os.environ, "FHEC_PROGRESS": "0"})
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"fhec {' '.join(args)} failed:\n{p.stderr}")
    return p.stderr + p.stdout, dt


def run(config: str, flags: list[str], d: str, src: str, sample: str, want: str) -> dict:
    prog = os.path.join(d, f"{config}.fhecp")
    out, compile_s = sh("compile", src, "-o", prog, *flags)
    est = float(re.search(r"estimated ([0-9.]+) s per run", out).group(1))
    params = out.split("parameters ", 1)[1].split(", p_error")[0].replace("\n", "; ")
    ck, ek = os.path.join(d, f"{config}.ck"), os.path.join(d, f"{config}.ek")
    out, keygen_s = sh("keygen", prog, "--client-keys", ck, "--eval-keys", ek, "--force")
    ct, res = os.path.join(d, f"{config}.in"), os.path.join(d, f"{config}.out")
    sh("encrypt", prog, "--client-keys", ck, "-i", f"x={sample}", "-o", ct)
    out, _ = sh("run", prog, ct, "--eval-keys", ek, "-o", res)
    m = re.search(r"ran (\d+) lookups in ([0-9.]+) s \(key expansion ([0-9.]+) s\)", out)
    got, _ = sh("decrypt", prog, res, "--client-keys", ck)
    info, _ = sh("info", prog)
    lookups = re.search(r"lookups per run: (.*?); linear", info).group(1)
    return {
        "config": config,
        "flags": flags,
        "parameters": params,
        "lookups": lookups,
        "estimated_s": est,
        "compile_s": compile_s,
        "keygen_s": keygen_s,
        "eval_key_bytes": os.path.getsize(ek),
        "run_s": float(m.group(2)),
        "expansion_s": float(m.group(3)),
        "exact": json.loads(got) == json.loads(want),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outputs", type=int, default=392)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    ap.add_argument("--json", default=None, help="append the results (JSON lines) to this file")
    a = ap.parse_args()
    if not os.access(FHEC, os.X_OK):
        sys.exit(f"{FHEC} not found: cargo build --release -p fhec")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "layer.fhe")
        with open(src, "w") as f:
            f.write(module(a.outputs))
        x = np.random.default_rng(1).integers(0, 16, size=(1, 784)).tolist()
        sample = json.dumps(x)
        want, _ = sh("eval", src, "-i", f"x={sample}")
        rows = []
        for c in a.configs.split(","):
            r = run(c, CONFIGS[c], d, src, sample, want)
            r["outputs"] = a.outputs
            rows.append(r)
            print(json.dumps(r), flush=True)
            if not r["exact"]:
                sys.exit(f"{c}: the decrypted result differs from fhec eval")
    if a.json:
        with open(a.json, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    print("\n| config | lookups | parameters | estimated | run | keygen | evaluation keys | exact |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['lookups']} | {r['parameters']} | {r['estimated_s']:.1f} s | {r['run_s']:.1f} s "
            f"| {r['keygen_s']:.1f} s | {r['eval_key_bytes'] / 1e6:.0f} MB | {'yes' if r['exact'] else 'NO'} |"
        )


if __name__ == "__main__":
    main()
