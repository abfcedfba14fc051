#!/usr/bin/env bash
# The main job, as far as fhec goes today: build the `fhec` CLI, verify two example programs (a small
# MLP layer: matmul → round → lut, and a depth-2 decision tree: sub → lut → matmul → lut), and run them
# with the clear reference interpreter, printing outputs and latency. Encrypted execution replaces the
# interpreter here once the TFHE runtime lands.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p fhec
fhec=target/release/fhec

ms() { date +%s%N; }

for prog in examples/mlp.fhe examples/tree.fhe; do
  printf '%s: ' "$prog"
  "$fhec" verify "$prog"
done

echo
echo "MLP layer (examples/mlp.fhe): x · W → round 5 bits → ReLU table"
for x in '[[15,3,9,1]]' '[[0,0,0,15]]' '[[7,7,7,7]]'; do
  t0=$(ms); out=$("$fhec" eval examples/mlp.fhe --input "x=$x"); t1=$(ms)
  printf '  x = %-14s → %-10s (%d µs, clear interpreter, process included)\n' "$x" "$out" $(( (t1 - t0) / 1000 ))
done

echo
echo "Decision tree (examples/tree.fhe): leaves 1, 5, 9, 13"
correct=0; total=0
for x0 in 0 5 8 12 15; do
  for x1 in 0 4 5 11 12 15; do
    out=$("$fhec" eval examples/tree.fhe --input "x=[$x0,$x1]")
    if [ "$x0" -lt 8 ]; then
      if [ "$x1" -lt 5 ]; then want=1; else want=5; fi
    else
      if [ "$x1" -lt 12 ]; then want=9; else want=13; fi
    fi
    total=$((total + 1))
    [ "$out" = "[$want]" ] && correct=$((correct + 1))
  done
done
echo "  $correct / $total inputs give the reference tree's leaf"
[ "$correct" = "$total" ]
