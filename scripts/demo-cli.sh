#!/usr/bin/env bash
# The main job, as far as fhec goes today: build the `fhec` CLI, compile two example programs for
# encrypted execution (a small MLP layer: matmul → round → lut, and a depth-2 decision tree), generate
# keys, encrypt inputs, run them on ciphertexts, decrypt, and check every result against the clear
# interpreter. Prints the parameters, accuracy against the reference and the latency.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p fhec
fhec=$PWD/target/release/fhec
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FHEC_PROGRESS=0

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }

echo "== Decision tree (examples/tree.fhe): x → 3 comparisons → path matmul → leaf (1, 5, 9, 13)"
"$fhec" compile examples/tree.fhe -o "$work/tree.fhecp" 2>/dev/null
"$fhec" info "$work/tree.fhecp" | grep -E "^(security|failure|lookups|estimated)" | sed 's/^/   /'
t0=$(now); "$fhec" keygen "$work/tree.fhecp" --client-keys "$work/tree.ck" --eval-keys "$work/tree.ek" 2>/dev/null; t1=$(now)
echo "   keygen: $(ms "$t0" "$t1") ms"
# every input of a 5×6 grid, encrypted as one batch
xs=""; want=()
for x0 in 0 5 8 12 15; do
  for x1 in 0 4 5 11 12 15; do
    xs="$xs[$x0,$x1],"
    if [ "$x0" -lt 8 ]; then
      if [ "$x1" -lt 5 ]; then want+=("[1]"); else want+=("[5]"); fi
    else
      if [ "$x1" -lt 12 ]; then want+=("[9]"); else want+=("[13]"); fi
    fi
  done
done
"$fhec" encrypt "$work/tree.fhecp" --client-keys "$work/tree.ck" --batch -i "x=[${xs%,}]" -o "$work/tree.in" 2>/dev/null
t0=$(now); "$fhec" run "$work/tree.fhecp" "$work/tree.in" --eval-keys "$work/tree.ek" -o "$work/tree.out" 2>"$work/run.log"; t1=$(now)
mapfile -t got < <("$fhec" decrypt "$work/tree.fhecp" "$work/tree.out" --client-keys "$work/tree.ck")
correct=0
for i in "${!want[@]}"; do
  [ "${got[$i]}" = "${want[$i]}" ] && correct=$((correct + 1))
done
echo "   encrypted batch of ${#want[@]}: $correct / ${#want[@]} decrypted leaves equal the reference tree"
echo "   server: $(sed 's/ → .*//' "$work/run.log"); whole command $(ms "$t0" "$t1") ms"

echo
echo "== MLP layer (examples/mlp.fhe): x · W → round 5 bits → ReLU table"
"$fhec" compile examples/mlp.fhe -o "$work/mlp.fhecp" 2>/dev/null
"$fhec" info "$work/mlp.fhecp" | grep -E "^(security|failure|lookups|estimated)" | sed 's/^/   /'
"$fhec" keygen "$work/mlp.fhecp" --client-keys "$work/mlp.ck" --eval-keys "$work/mlp.ek" 2>/dev/null
agree=0; n=0
for x in '[[15,3,9,1]]' '[[0,0,0,15]]' '[[7,7,7,7]]' '[[12,0,15,2]]'; do
  want=$("$fhec" eval examples/mlp.fhe --input "x=$x")
  "$fhec" encrypt "$work/mlp.fhecp" --client-keys "$work/mlp.ck" -i "x=$x" -o "$work/mlp.in" 2>/dev/null
  t0=$(now); "$fhec" run "$work/mlp.fhecp" "$work/mlp.in" --eval-keys "$work/mlp.ek" -o "$work/mlp.out" 2>"$work/run.log"; t1=$(now)
  got=$("$fhec" decrypt "$work/mlp.fhecp" "$work/mlp.out" --client-keys "$work/mlp.ck")
  n=$((n + 1)); [ "$got" = "$want" ] && agree=$((agree + 1))
  printf '   x = %-14s → encrypted %-9s clear %-9s (%s)\n' "$x" "$got" "$want" "$(sed 's/ → .*//' "$work/run.log")"
done
echo "   $agree / $n encrypted results equal the clear interpreter"
[ "$correct" = "${#want[@]}" ] && [ "$agree" = "$n" ]
