#!/usr/bin/env bash
# Sets up and builds tilec, then runs the main job on the built-in default model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
bin=${TILEC_BUILD_DIR:-build}/bin
echo "== tile IR of one MoE decoder layer, parsed, verified and printed by tile-opt"
"$bin/tile-opt" tests/lit/dialect/ops.mlir
