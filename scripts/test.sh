#!/usr/bin/env bash
# Sets up and runs every test of fhec: formatting, lints, unit/snapshot/property/end-to-end tests.
# Needs only what a fresh machine of ours has (rustup's cargo); installs the rest through the registries.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Property tests pick modest case counts themselves (PROPTEST_CASES overrides them all).
if [ "${CI:-}" = "true" ]; then
  export INSTA_UPDATE=no   # a snapshot mismatch fails; it is never written in CI
fi

step() { printf '\n=== %s ===\n' "$*"; }

step "toolchain"
cargo --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (release profile, all targets, warnings are errors)"
cargo clippy --release --workspace --all-targets -- -D warnings

step "cargo test (release profile)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# the Python extension module links against the interpreter only when Python loads it: tested below
cargo test --release --workspace --exclude fhec-python 2>&1 | tee "$log"

step "fuzz targets: build, seed, a short run of each (scripts/fuzz.sh)"
bash scripts/fuzz.sh smoke "${FHEC_FUZZ_SECONDS:-10}"

step "nginx (Debian's package, for the scale-out test)"
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "nginx is missing and this is not root: install Debian's nginx (apt-get install nginx)" >&2
    exit 1
  fi
  # install without starting the system service (the test runs its own nginx on loopback)
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx > /dev/null
  if [ -n "$policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
command -v nginx || ls /usr/sbin/nginx

step "python package (maturin wheel in a virtual environment, pytest)"
source scripts/pyenv.sh
pylog=$(mktemp)
trap 'rm -f "$log" "$pylog"' EXIT
"$py" -m pytest -q python/tests 2>&1 | tee "$pylog"
summary=$(tail -1 "$pylog")
py_passed=$(echo "$summary" | sed -nE 's/.*([^0-9]|^)([0-9]+) passed.*/\2/p')
py_failed=$(echo "$summary" | sed -nE 's/.*([^0-9]|^)([0-9]+) failed.*/\2/p')

# One closing line for the whole run (cargo prints one per test binary, the last often a doc-test with 0).
passed=$(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1/p' "$log" | awk '{ s += $1 } END { print s + 0 }')
failed=$(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\2/p' "$log" | awk '{ s += $1 } END { print s + 0 }')
echo
echo "tests: $((${passed:-0} + ${py_passed:-0})) passed, $((${failed:-0} + ${py_failed:-0})) failed"
