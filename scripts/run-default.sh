#!/usr/bin/env bash
# Sets up and builds tilec, then runs the main job on the built-in default model:
# compile it to tile IR and generate tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
bin=${TILEC_BUILD_DIR:-build}/bin
out=${TILEC_BUILD_DIR:-build}/default-model
mkdir -p "$out"
model=$("$bin/tilec" --print-default-model)

echo "== tilec: $model -> tile graph IR ($out/graph.mlir)"
"$bin/tilec" "$model" --emit=graph -o "$out/graph.mlir"
grep -c "tile\.weight" "$out/graph.mlir" | xargs printf '   %s weights, '
grep -c "tile\.kv_cache" "$out/graph.mlir" | xargs printf '%s KV caches, '
grep -c "^  func.func" "$out/graph.mlir" | xargs printf '%s functions\n'

echo "== tile-run: greedy tokens of $model (CPU reference model; no engine runtime yet)"
"$bin/tile-run" reference "$model" --prompt-ids 1,2,3,4 -n 32
