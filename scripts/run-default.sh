#!/usr/bin/env bash
# Sets up and builds tilec, then runs the main job on the built-in default model:
# compile it to an engine (tilec), NVRTC-compile its megakernel for sm_90a, and
# generate tokens with it: on the GPU when there is one, else on the host executor
# (tile-run says which), checked against the CPU reference model on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
bin=${TILEC_BUILD_DIR:-build}/bin
out=${TILEC_BUILD_DIR:-build}/default-model
model=$("$bin/tilec" --print-default-model)
rm -rf "$out"

echo "== tilec: $model -> engine $out/engine (IR after every pass in $out/engine/ir)"
"$bin/tilec" "$model" -o "$out/engine"

echo "== NVRTC: the megakernel for sm_90a"
"$bin/tile-run" compile "$out/engine"

echo "== tile-run: tokens from the engine, DFlash speculative decoding (on a GPU if there is one, else on the host executor)"
# Without a GPU the host executor runs it and the tokens and logits are also checked
# against the CPU reference model.
check=--check
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then check=; fi
"$bin/tile-run" run "$out/engine" --executor auto --prompt-ids 1,2,3,4 -n 32 $check
