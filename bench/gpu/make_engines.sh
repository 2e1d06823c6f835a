#!/usr/bin/env bash
# Compiles the engines bench/gpu/run.sh measures (on a machine with LLVM; the GPU
# host has none). IR dumps are left out so that the folder travels light.
#
# Usage: bench/gpu/make_engines.sh OUT_DIR [TARGET] [TILEC]
set -euo pipefail
out=$1
target=${2:-h100}
repo=$(cd "$(dirname "$0")/../.." && pwd)
tilec=${3:-$repo/build/bin/tilec}
rm -rf "$out"
mkdir -p "$out"
noreuse() { # the default pipeline with tile-plan-memory{reuse=false}
  "$tilec" "$@" --print-pipeline | sed 's/tile-plan-memory)/tile-plan-memory{reuse=false})/'
}
make() { # name tilec-args...
  local name=$1
  shift
  "$tilec" "$@" --target "$target" -o "$out/$name" >/dev/null
  rm -rf "$out/$name/ir"
}
make p-tiny tiny --no-drafter
make d-tiny tiny
# Issue 5's correctness check: every tiny preset against the CPU reference.
for p in tiny-groups tiny-window tiny-pro; do
  make c-$p $p --no-drafter
  make cd-$p $p
done
make ps-plain pro-slice --no-drafter
make ps-plain8 pro-slice --no-drafter --tokens 8
make ps-dflash pro-slice
make ps-ar pro-slice --ar-drafter
# Issue 7's workload (b): one GPU's share of Pro under 8-way tensor parallelism,
# all 70 layers (71.5 GB of weights), DFlash block 8 and plain greedy.
make tp8 pro-tp8
make tp8-plain pro-tp8 --no-drafter
# run.sh's section mma: 8-token steps of every tiny preset (the GEMVs on the
# tensor cores) for --check against the CPU reference.
for p in tiny tiny-groups tiny-window tiny-pro; do
  make p8-$p $p --no-drafter --tokens 8
done
# The fusion tutorial (docs/tutorial-fusion.md, run.sh's section fusion): the
# same plain engines with and without tile-fuse's silu-pair (the dense MLPs'
# gate and up as two linears and SILU_MUL tasks), at tiny and pro-slice shapes,
# pro-slice also with verify blocks of 8 tokens.
for v in on off; do
  off=()
  [ $v = off ] && off=(--disable-fusion silu-pair)
  make tiny-fuse-$v tiny --no-drafter "${off[@]}"
  make ps-fuse-$v pro-slice --no-drafter "${off[@]}"
  make ps8-fuse-$v pro-slice --no-drafter --tokens 8 "${off[@]}"
done
# Issue 5: one full-size MiMo-V2.5-Pro layer (dense layer 0: weights past 2^31
# bytes) and one of V2-Flash (every offset below 2^31).
make pro1 mimo-v2.5-pro --num-layers 1 --no-drafter
make nr-pro1 mimo-v2.5-pro --num-layers 1 --no-drafter \
  --pipeline "$(noreuse mimo-v2.5-pro --num-layers 1 --no-drafter)"
# Layer 1 is the first MoE layer: 384 MXFP4 experts at full size.
make nr-pro2 mimo-v2.5-pro --num-layers 2 --no-drafter \
  --pipeline "$(noreuse mimo-v2.5-pro --num-layers 2 --no-drafter)"
make pro2 mimo-v2.5-pro --num-layers 2 --no-drafter
make flash1 mimo-v2-flash --num-layers 1 --no-drafter
# The transformers oracle's checkpoints (weights far from logit ties).
for c in basic groups long-prompt pro-like; do
  make o-$c "$repo/tests/fixtures/oracle/$c"
done
# PyTorch baseline model (bench/torch_baseline.py saves its weights): bf16.
make flash4l "$repo/bench/models/flash-4l" --no-drafter
du -sh "$out" | tail -1
