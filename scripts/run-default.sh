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
# The default model: the trained pair in tests/fixtures/code-pair (a 9.9M-parameter
# MiMo-V2-shaped target and its DFlash drafter trained on Python code by
# tools/train/train_pair.py; MXFP4 experts, FP8 attention, a byte-level BPE
# tokenizer), so the tokens decode to code. TILEC_MODEL names another model dir or
# preset (e.g. tiny, or mimo-v2.5-pro --num-layers 1 with synthetic weights).
model=${TILEC_MODEL:-tests/fixtures/code-pair}
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
if [ -f "$model/tokenizer.json" ]; then
  "$bin/tile-run" run "$out/engine" --executor auto --prompt "def fibonacci(n):" -n 64 $check
else
  "$bin/tile-run" run "$out/engine" --executor auto --prompt-ids 1,2,3,4 -n 32 $check
fi
