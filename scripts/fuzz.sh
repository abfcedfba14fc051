#!/usr/bin/env bash
# Fuzzing of every reader of outside data (cargo-fuzz / libFuzzer targets in fuzz/; list: `fuzz/Cargo.toml`).
#   scripts/fuzz.sh smoke [SECONDS]   build, seed, run each target SECONDS (default 10) — part of .ci/run
#   scripts/fuzz.sh long [SECONDS]    each target SECONDS (default 600); prints execs and coverage per target
#   scripts/fuzz.sh run TARGET SECS   one target
# Seeds come from the repository's test files and from files the CLI writes (fuzz/corpus/, not committed).
# A crash leaves its input in fuzz/artifacts/TARGET/; reproduce with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-…
# and turn it into a named regression test in the crate that owns the reader.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-smoke}
# cargo-fuzz passes unstable (-Z) flags to rustc; the stable toolchain accepts them with this
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$PWD/target/fuzz"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
# no sanitizer: the readers are safe Rust (panics, overflows with debug assertions, timeouts and
# memory blow-ups are what we look for: -rss_limit_mb / -malloc_limit_mb below)
flags=(-s none --debug-assertions)
targets=$(sed -nE 's/^name = "([a-z_]+)"$/\1/p' fuzz/Cargo.toml | grep -v '^fhec-fuzz$')
cargo fuzz build "${flags[@]}"

# ---- seed corpora ---------------------------------------------------------------------------------
corpus=fuzz/corpus
mkdir -p "$corpus"
for t in $targets; do mkdir -p "$corpus/$t"; done
for f in tests/cases/*/*.fhe examples/*.fhe fuzz/fixtures/linear.fhe; do
  cp "$f" "$corpus/ir_text/$(echo "$f" | tr / _)"
done
cp fuzz/fixtures/linear.tfhe "$corpus/tfhe_text/"
cp fuzz/fixtures/integer_mlp.json fuzz/fixtures/integer_conv.json fuzz/fixtures/integer_residual.json "$corpus/integer_mlp/"
cp frontends/trees/tests/data/xgb_*.json "$corpus/xgboost/"
cp frontends/trees/tests/data/lgbm_*.json "$corpus/lightgbm/"
cp frontends/trees/tests/data/*.onnx "$corpus/onnx_trees/"
cp frontends/onnx/tests/fixtures/{iris_mlp,ops_mlp,cnn_ops,keras_cnn,iris_qdq,iris_qop,mnist_cnn_qop,qonnx_mlp,mnist_fc_qdq4}.onnx "$corpus/onnx_networks/"
cargo build --release -q -p fhec
fhec=$PWD/target/release/fhec
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FHEC_PROGRESS=0
"$fhec" compile examples/mlp.fhe -o "$work/mlp.fhecp" --emit-tfhe > "$corpus/tfhe_text/mlp.tfhe" 2>/dev/null
"$fhec" compile fuzz/fixtures/linear.fhe -o "$work/lin.fhecp" 2>/dev/null
cp "$work/mlp.fhecp" "$work/lin.fhecp" "$corpus/program_file/"
"$fhec" keygen "$work/lin.fhecp" --client-keys "$work/lin.ck" --eval-keys "$work/lin.ek" >/dev/null 2>&1
cp "$work/lin.ck" "$corpus/client_keys/"
cp "$work/lin.ek" "$corpus/evaluation_keys/"
# the smallest keys with a bootstrap and a (32-bit) keyswitch key: one 1-bit lookup at p_error 1e-3
"$fhec" compile fuzz/fixtures/tiny_lut.fhe -o "$work/tiny.fhecp" --p-error 1e-3 2>/dev/null
"$fhec" keygen "$work/tiny.fhecp" --client-keys "$work/tiny.ck" --eval-keys "$work/tiny.ek" >/dev/null 2>&1
cp "$work/tiny.ek" "$corpus/evaluation_keys/"
# many-LUT lanes ("tfhe.lane", `Instr::Lane`)
"$fhec" compile fuzz/fixtures/multi_lut.fhe -o "$work/lanes.fhecp" --many-lut on --emit-tfhe > "$corpus/tfhe_text/lanes.tfhe" 2>/dev/null
cp "$work/lanes.fhecp" "$corpus/program_file/"
"$fhec" encrypt "$work/lin.fhecp" --client-keys "$work/lin.ck" --batch -i "x=[[[1,2,3,4]],[[12,0,5,7]]]" -o "$work/lin.in" 2>/dev/null
"$fhec" run "$work/lin.fhecp" "$work/lin.in" --eval-keys "$work/lin.ek" -o "$work/lin.out" 2>/dev/null
cp "$work/lin.in" "$work/lin.out" "$corpus/ciphertexts/"
# .npy (int64 and float64) and JSON specs/models, written without numpy
python3 - "$corpus" <<'PY'
import json, struct, sys
root = sys.argv[1]
def npy(descr, shape, data):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    h += " " * (63 - (10 + len(h)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data
open(f"{root}/npy/i8.npy", "wb").write(npy("<i8", "(2, 3)", struct.pack("<6q", 1, -2, 3, 4, 5, 6)))
open(f"{root}/npy/f8.npy", "wb").write(npy("<f8", "(3,)", struct.pack("<3d", 0.5, -1.25, 3.0)))
open(f"{root}/npy/u1.npy", "wb").write(npy("|u1", "(4,)", bytes([0, 1, 2, 255])))
PY
cp fuzz/fixtures/spec_*.json "$corpus/client_spec/"
cp fuzz/fixtures/linear_model.json "$corpus/linear_model/"
cp fuzz/fixtures/ensemble_*.json "$corpus/ensemble_json/"
# the inputs of past crashes (their regression tests are in runtime/src/tests.rs): replayed by every run,
# in this build with overflow checks
cp runtime/tests/fixtures/fuzz-client-keys-*.bin "$corpus/client_keys/"
cp runtime/tests/fixtures/fuzz-evaluation-keys-*.bin "$corpus/evaluation_keys/"
cp runtime/tests/fixtures/fuzz-program-*.bin "$corpus/program_file/"
# files of format 6 (before KS32): the readers' upgrade paths
cp runtime/tests/fixtures/format6/lin.fhecp "$corpus/program_file/v6-lin.fhecp"
cp runtime/tests/fixtures/format6/lin.ck "$corpus/client_keys/v6-lin.ck"
cp runtime/tests/fixtures/format6/lin.ek "$corpus/evaluation_keys/v6-lin.ek"
cp runtime/tests/fixtures/format6/lin.in runtime/tests/fixtures/format6/lin.out "$corpus/ciphertexts/"
for d in tests/fixtures/deploy/v*/; do  # every model-format version's fixtures, named apart
  for f in "$d"*.fhec; do cp "$f" "$corpus/model_files/$(basename "$d")-$(basename "$f")"; done
done

# ---- run --------------------------------------------------------------------------------------------
run() {  # target seconds
  local t=$1 secs=$2
  cargo fuzz run "${flags[@]}" "$t" "$corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 \
    -malloc_limit_mb=2048 -timeout=20 -print_final_stats=1 2> "$work/$t.log" || {
    tail -40 "$work/$t.log"; echo "fuzz target $t FAILED (input saved under fuzz/artifacts/$t/)"; return 1; }
  local execs cov
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$work/$t.log")
  cov=$(grep -E '^#[0-9]+' "$work/$t.log" | tail -1 | sed -nE 's/.*cov: ([0-9]+).*ft: ([0-9]+).*/cov \1, ft \2/p')
  printf '%-16s %6ss  %10s execs  %s  0 crashes\n' "$t" "$secs" "${execs:-?}" "${cov:-}"
}
case "$mode" in
  smoke) for t in $targets; do run "$t" "${2:-10}"; done ;;
  long) for t in $targets; do run "$t" "${2:-600}"; done ;;
  run) run "$2" "${3:-60}" ;;
  *) echo "usage: $0 smoke [SECONDS] | long [SECONDS] | run TARGET SECONDS" >&2; exit 2 ;;
esac
