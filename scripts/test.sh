#!/usr/bin/env bash
# Sets up and builds tilec (scripts/setup.sh), then runs every test through ctest:
# GoogleTest, lit + FileCheck, bounded fuzzing, and the runtime-only (no LLVM) build check.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir "${TILEC_BUILD_DIR:-build}" --output-on-failure -j "${TILEC_JOBS:-2}" "$@"
