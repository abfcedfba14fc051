#!/usr/bin/env bash
# The model benchmark table: builds the package into target/pyenv, then trains, compiles and runs
# every row of bench/ml_table.py encrypted; writes bench/results/ml_table.json and the table in
# docs/benchmarks.md. Arguments go to bench/ml_table.py (e.g. --rows 200).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pyenv.sh
export FHEC_PROGRESS=0
"$py" bench/ml_table.py "$@"
