#!/usr/bin/env bash
# README command 1: the seed paper's experiment table on this machine — Linear Regression and Logistic
# Regression (synthetic), a decision tree (spambase), fully connected networks on iris and MNIST — each
# trained, quantised, compiled and run encrypted, with fp32 / quantised / FHE columns, latency per
# sample and the incumbent's figures beside ours. Builds the package into target/pyenv first (a few
# minutes on a cold machine), then takes ~3 minutes. Prints the table; the JSON goes to
# bench/results/seed_table.json. The datasets ship in datasets/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pyenv.sh
export FHEC_PROGRESS=0
"$py" bench/ml_table.py --seed "$@"
