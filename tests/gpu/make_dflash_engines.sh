#!/usr/bin/env bash
# Compiles the engines tests/gpu/dflash_check.sh runs (on a machine with LLVM;
# the GPU host has none): DFlash engines of the tiny presets (two keep their
# draft logits), plain ones for comparison, copies compiled without buffer
# reuse for `tile-run compare`, pro-slice (MiMo-V2.5-Pro's per-layer
# shapes, with and without its drafter), and autoregressive-drafter engines
# (--ar-drafter: the baseline for the gain of block drafting). The IR dumps
# are left out.
#
# Usage: tests/gpu/make_dflash_engines.sh OUT_DIR [TILEC]
set -euo pipefail
out=$1
tilec=${2:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin/tilec}
rm -rf "$out"
mkdir -p "$out"
noreuse() { # the default pipeline of MODEL with tile-plan-memory{reuse=false}
  "$tilec" "$@" --print-pipeline | sed 's/tile-plan-memory)/tile-plan-memory{reuse=false})/'
}
make() { # name tilec-args...
  local name=$1
  shift
  "$tilec" "$@" -o "$out/$name" >/dev/null
  rm -rf "$out/$name/ir"
}
make d-tiny tiny --draft-logits
make d-groups tiny-groups
make d-window tiny-window --draft-logits
make d-pro tiny-pro
make p-tiny tiny --no-drafter
make p-tiny4 tiny --no-drafter --tokens 4
make p-groups tiny-groups --no-drafter
make p-window tiny-window --no-drafter
make p-pro tiny-pro --no-drafter
make nr-d-tiny tiny --pipeline "$(noreuse tiny)"
make nr-d-pro tiny-pro --pipeline "$(noreuse tiny-pro)"
make nr-p-groups tiny-groups --no-drafter --pipeline "$(noreuse tiny-groups --no-drafter)"
make ar-tiny tiny --ar-drafter --draft-logits
make ps-dflash pro-slice
make ps-ar pro-slice --ar-drafter
make ps-plain pro-slice --no-drafter
make ps-plain8 pro-slice --no-drafter --tokens 8
make nr-ps-plain pro-slice --no-drafter --pipeline "$(noreuse pro-slice --no-drafter)"
du -sh "$out"/* | sort -h | tail -3
