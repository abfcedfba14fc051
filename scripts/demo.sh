#!/usr/bin/env bash
# The main job: build the fhec Python package into target/pyenv (with numpy and scikit-learn from the
# registry), train a scikit-learn logistic regression on a dataset bundled with scikit-learn, compile it,
# generate keys, predict the test split on encrypted data, and print the accuracy of the float,
# quantised and encrypted predictions and the latency. Fails if an encrypted prediction differs.
# The CLI demo (IR programs compiled and run with `fhec`) is scripts/demo-cli.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pyenv.sh
export FHEC_PROGRESS=0
"$py" examples/python/sklearn_demo.py
