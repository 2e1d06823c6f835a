#!/usr/bin/env bash
# One GPU call of measurements, with engines from bench/gpu/make_engines.sh
# (compiled where LLVM is, carried). Builds tile-run (runtime only), NVRTC-compiles
# every engine in parallel, measures the HBM bandwidth, then runs the sections asked
# for, and prints a table last. Logs, JSON and traces go to $OUT (logs.tar.gz).
#
# Sections:
#   issue5  one full-size MiMo-V2.5-Pro layer (weights past 2^31 bytes) and one
#           V2-Flash layer: tokens, per-task trace, GPU vs host executor buffer by
#           buffer, compute-sanitizer memcheck
#   perop   megakernel against the one-kernel-per-op mode (same engine, same task
#           bodies): tiny and pro-slice, plain and DFlash (random and oracle drafts)
#   torch   PyTorch eager / CUDA graph (bench/torch_baseline.py) against the engine
#           on the same model and weights (bench/models/flash-4l, bf16)
#   race    compute-sanitizer racecheck on the tiny engine
#   ar      DFlash with the autoregressive drafter against the block drafter
#   tinycheck  every tiny preset's engine against the CPU reference (64 steps)
#   code    the trained pair (CODE_MODEL=dir): DFlash, AR drafter and plain, GPU
#   profile tile-run profile of ps-dflash and tp8 (PNGs into $OUT, traces and
#           summaries in logs) and the cost model fitted to each trace
#   sweep   every engine in ENGINES_DIR timed (nr-*: compared with the host executor)
#   bench   tile-run bench: HBM copy bandwidth, then p-tiny, d-tiny, ps-plain,
#           ps-plain8, ps-dflash, tp8-plain, tp8 (DFlash: oracle drafts) in both
#           launch modes (table in $OUT/bench.txt; the torch section adds flash4l's)
#   mma     the tensor-core GEMV (TILEC_GEMV_MMA_MIN_T): bench/gpu/gemv_bench.cu's
#           microbenchmarks (table in $OUT/gemv.txt), --check of the 8-token
#           engines p8-* and code-dflash with the tensor-core path and without it,
#           tile-run bench of ps-plain8, ps-dflash and tp8 both ways
#   fusion  docs/tutorial-fusion.md: engines with and without tile-fuse's silu-pair
#           (tiny, pro-slice, pro-slice T = 8): ms/step, tasks, events, a profile
#           of each (into $OUT/profile-ENGINE), checked against the CPU reference
#
# Usage: bench/gpu/run.sh ENGINES_DIR SECTION...
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
engines=$(cd "$1" && pwd)
shift
sections=" $* "
out=${OUT:-$repo/build-gpu/out}
build=$repo/build-gpu
mkdir -p "$out/logs" "$build"
logs=$out/logs
export TILEC_DEVICE_INCLUDE=$repo
export XDG_CACHE_HOME=$build/xdg-cache
export NCCL_NVLS_ENABLE=0
rows=()
row() { # also appended to $OUT/rows.txt at once: a run cut short keeps its rows
  rows+=("$(printf "%-36s %-5s %s" "$1" "$2" "$3")")
  printf '%s\n' "${rows[-1]}" >>"$out/rows.txt"
}
want() { [[ $sections == *" $1 "* ]]; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
  --format=csv,noheader | tee "$logs/gpu.txt"
start=$(date +%s)
if cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEC_RUNTIME_ONLY=ON \
     -DTILEC_BUILD_FUZZERS=OFF -DTILEC_BUILD_TESTS=OFF >"$logs/configure.log" 2>&1 &&
   ninja -C "$build" -j "$(nproc)" tile-run >"$logs/build.log" 2>&1; then
  row "build tile-run" PASS "$(($(date +%s) - start)) s, $(grep -c 'warning:' "$logs/build.log") warnings"
else
  tail -30 "$logs/build.log"
  row "build tile-run" FAIL "see build.log"
fi
run=$build/bin/tile-run

# NVRTC: every engine at once (the cache then serves tile-run run).
start=$(date +%s)
for e in "$engines"/*/; do
  n=$(basename "$e")
  "$run" compile "$e" >"$logs/nvrtc-$n.log" 2>&1 &
done
wait
row "NVRTC, all engines in parallel" info "$(($(date +%s) - start)) s wall; $(cat "$logs"/nvrtc-*.log | grep -c 'compiled,') compiled"

bw=$(timeout 120 python3 "$repo/bench/hbm_bandwidth.py" 2>"$logs/bandwidth.log")
row "HBM copy bandwidth" info "${bw:-?} GB/s (read + write, torch D2D copy, median)"

# summ JSON: one line (mode, accepted, kernel ms, tokens/s, launches, first tokens).
summ() {
  python3 - "$1" <<'PY'
import json, sys
try:
    r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except Exception as e:
    print(f"no JSON ({e})"); sys.exit()
acc = r.get("mean_accepted", 1.0)
ms = r.get("kernel_step_ms_median", 0)
print(f"{r.get('launch','?')}: {ms:.3f} ms/step ({r.get('launches_per_step', 1)} launches), "
      f"{acc:.2f} acc/step, {1e3 * acc / ms if ms else 0:.0f} tok/s (kernel), "
      f"tokens {' '.join(map(str, r['tokens'][:6]))}...")
PY
}
tokens_of() { python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])['tokens'])" "$1" 2>/dev/null; }
prompt=3,1,4,1,5,9,2,6

if want issue5; then
  for e in pro1 flash1; do
    timeout 240 "$run" run "$engines/$e" --executor gpu --prompt-ids $prompt -n 8 --json \
      --trace-out "$logs/trace-$e.json" >"$logs/run-$e.json" 2>"$logs/run-$e.log"
    rc=$?
    row "issue5 $e (rc $rc)" info "$(summ "$logs/run-$e.json"); $(grep -o '[0-9]* of [0-9]* tasks stamped' "$logs/run-$e.log")"
  done
  for e in nr-pro1 nr-pro2; do
    [ -d "$engines/$e" ] || continue
    start=$(date +%s)
    timeout 400 "$run" compare "$engines/$e" --prompt-ids $prompt --steps 1 \
      >"$logs/compare-$e.log" 2>&1
    row "issue5 compare $e (rc $?)" info "$(grep -c 'WRONG' "$logs/compare-$e.log") of $(grep -c '^step' "$logs/compare-$e.log") buffers differ ($(($(date +%s) - start)) s)"
  done
fi

if want sweep; then
  # Every engine of ENGINES_DIR: nr-* (compiled with tile-plan-memory{reuse=false})
  # compared buffer by buffer with the host executor, the others timed.
  for e in "$engines"/*/; do
    n=$(basename "$e")
    if [[ $n == nr-* ]]; then
      timeout 120 "$run" compare "$e" --prompt-ids $prompt --steps ${COMPARE_STEPS:-2} >"$logs/compare-$n.log" 2>&1
      row "compare $n (rc $?)" info "$(grep -c 'WRONG' "$logs/compare-$n.log") differ; first: $(grep -m1 'WRONG' "$logs/compare-$n.log" | cut -c1-100)"
      continue
    fi
    timeout 120 "$run" run "$e" --executor gpu --prompt-ids $prompt -n 64 --json \
      >"$logs/run-$n.json" 2>"$logs/run-$n.log"
    row "$n (rc $?)" info "$(summ "$logs/run-$n.json")"
  done
fi

if want code; then
  # The trained pair (tools/train/train_pair.py, its checkpoint in $CODE_MODEL):
  # DFlash (block 8), the autoregressive drafter and plain greedy, from a text prompt.
  for e in code-dflash code-ar code-plain; do
    [ -d "$engines/$e" ] || continue
    timeout 120 "$run" run "$engines/$e" --executor gpu --weights "$CODE_MODEL" \
      --prompt "def fibonacci(n):" -n 128 --json >"$logs/run-$e.json" 2>"$logs/run-$e.log"
    row "$e (rc $?)" info "$(summ "$logs/run-$e.json")"
  done
  timeout 120 "$run" run "$engines/code-dflash" --executor gpu --weights "$CODE_MODEL" \
    --prompt "import os" -n 64 --check >"$logs/check-code.log" 2>&1
  row "code-dflash --check (rc $?)" info "$(grep -o '[0-9]* of [0-9]* greedy tokens agree[^;]*' "$logs/check-code.log")"
fi

if want profile; then
  # tile-run profile (trace, PNG, summary; the PNGs come back in $OUT), and the
  # cost model fitted to each trace (bench/fit_cost_model.py).
  for e in ps-dflash tp8; do
    [ -d "$engines/$e" ] || continue
    n=2; [ $e = tp8 ] && n=1
    timeout 240 "$run" profile "$engines/$e" -n $n --out "$logs/profile-$e" --executor gpu \
      >"$logs/profile-$e.txt" 2>&1
    row "profile $e (rc $?)" info "$(grep -m1 '^steps:' "$logs/profile-$e.txt" | cut -c1-150)"
    cp "$logs/profile-$e/timeline.png" "$out/timeline-$e.png" 2>/dev/null
    python3 "$repo/bench/fit_cost_model.py" "$logs/profile-$e/trace.json" >"$logs/fit-$e.txt" 2>&1
    row "fit cost model $e (rc $?)" info "$(head -2 "$logs/fit-$e.txt" | tr '\n' ' ' | cut -c1-220)"
  done
fi

if want bench; then
  list=()
  for e in p-tiny d-tiny ps-plain ps-plain8 ps-dflash tp8; do
    [ -d "$engines/$e" ] && list+=("$engines/$e")
  done
  timeout 500 "$run" bench "${list[@]}" --oracle-draft --prompt-ids $prompt -n 64 \
    >"$out/bench.txt" 2>"$logs/bench.log"
  row "tile-run bench (rc $?)" info "$(grep -c '%$' "$out/bench.txt") rows, $(grep -o 'HBM bandwidth.*GB/s (' "$out/bench.txt")"
fi

if want mma; then
  fma=(--define TILEC_GEMV_MMA_MIN_T=17)
  # The FMA-path kernels too, in parallel (the default ones are compiled above).
  for e in "$engines"/*/; do
    "$run" compile "$e" "${fma[@]}" >"$logs/nvrtc-fma-$(basename "$e").log" 2>&1 &
  done
  gb=$repo/.carry/bin/gemv_bench
  if [ ! -x "$gb" ]; then
    gb=$build/gemv_bench
    nvcc -std=c++17 -O3 -arch=sm_90a -I"$repo" "$repo/bench/gpu/gemv_bench.cu" -o "$gb" \
      >"$logs/gemv-build.log" 2>&1
  fi
  timeout 180 "$gb" --json "$logs/gemv.json" >"$out/gemv.txt" 2>&1
  row "gemv_bench (rc $?)" info "$(grep -c 'mma\|fma' "$out/gemv.txt") rows in gemv.txt"
  timeout 120 "$gb" --verify >>"$out/gemv.txt" 2>&1
  row "gemv_bench --verify (rc $?)" info "$(tail -1 "$out/gemv.txt")"
  wait
  for e in p8-tiny p8-tiny-groups p8-tiny-window p8-tiny-pro code-dflash; do
    [ -d "$engines/$e" ] || continue
    w=(); p=(--prompt-ids $prompt)
    [ $e = code-dflash ] && w=(--weights "$CODE_MODEL") && p=(--prompt "import os")
    for v in mma fma; do
      d=(); [ $v = fma ] && d=("${fma[@]}")
      timeout 180 "$run" run "$engines/$e" --executor gpu "${w[@]}" "${p[@]}" -n 64 --check \
        "${d[@]}" >"$logs/check-$e-$v.log" 2>&1
      row "check $e $v (rc $?)" info "$(grep -o '[0-9]* of [0-9]* greedy tokens agree[^;]*' "$logs/check-$e-$v.log" | head -1); $(grep -o 'max relative error [0-9.e+-]*' "$logs/check-$e-$v.log" | head -1)"
    done
  done
  list=()
  for e in ps-plain8 ps-dflash tp8; do
    [ -d "$engines/$e" ] && list+=("$engines/$e")
  done
  for v in mma fma; do
    d=(); [ $v = fma ] && d=("${fma[@]}")
    timeout 300 "$run" bench "${list[@]}" --oracle-draft --prompt-ids $prompt -n 32 --warmup 4 \
      --launch megakernel "${d[@]}" >"$out/bench-$v.txt" 2>"$logs/bench-$v.log"
    row "bench $v (rc $?)" info "$(grep -c '%$' "$out/bench-$v.txt") rows"
  done
fi

if want fusion; then
  # The same model with and without tile-fuse's silu-pair (make_engines.sh's
  # *-fuse-on / *-fuse-off): kernel ms/step (median of 64 decode steps, the
  # megakernel), the profile's per-family times, and --check on the GPU.
  for s in tiny ps ps8; do
    for v in on off; do
      e=$s-fuse-$v
      [ -d "$engines/$e" ] || continue
      timeout 240 "$run" run "$engines/$e" --executor gpu --prompt-ids $prompt -n 64 --json \
        >"$logs/run-$e.json" 2>"$logs/run-$e.log"
      row "$e (rc $?)" info "$(summ "$logs/run-$e.json")"
      timeout 240 "$run" profile "$engines/$e" --executor gpu -n 16 --out "$logs/profile-$e" \
        --json >"$logs/profile-$e.json" 2>"$logs/profile-$e.log"
      timeout 240 "$run" run "$engines/$e" --executor gpu --prompt-ids $prompt -n 32 --check \
        >"$logs/check-$e.log" 2>&1
      row "check $e (rc $?)" info "$(grep -o '[0-9]* of [0-9]* greedy tokens agree[^;]*; logits.*' "$logs/check-$e.log")"
    done
  done
  # bench/fusion_table.py: tasks, events, estimated bytes, predicted and profiled
  # step, the gate/up part's us per step, kernel ms/step; then on/off ratios.
  args=()
  for s in tiny ps ps8; do
    for v in on off; do
      [ -d "$engines/$s-fuse-$v" ] && args+=("$engines/$s-fuse-$v:$logs/profile-$s-fuse-$v.json:$logs/run-$s-fuse-$v.json")
    done
  done
  python3 "$repo/bench/fusion_table.py" "${args[@]}" | tee "$logs/fusion.txt"
  for s in tiny ps ps8; do
    on=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])['kernel_step_ms_median'])" "$logs/run-$s-fuse-on.json" 2>/dev/null)
    off=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])['kernel_step_ms_median'])" "$logs/run-$s-fuse-off.json" 2>/dev/null)
    [ -n "$on" ] && [ -n "$off" ] &&
      row "fusion $s: silu-pair on / off" info "$(python3 -c "import sys; a, b = map(float, sys.argv[1:]); print(f'{a:.4f} / {b:.4f} ms/step: the fusion saves {1e3 * (b - a):.1f} us ({100 * (b / a - 1):.1f}% of the fused step)')" "$on" "$off")"
  done
  while IFS= read -r line; do row "fusion table" info "$line"; done <"$logs/fusion.txt"
fi

if want tinycheck; then
  # Every tiny preset (synthetic weights) on the GPU against the CPU reference:
  # greedy tokens over 64 steps and the teacher-forced logits.
  for e in p-tiny d-tiny c-tiny-groups cd-tiny-groups c-tiny-window cd-tiny-window \
           c-tiny-pro cd-tiny-pro; do
    [ -d "$engines/$e" ] || continue
    timeout 120 "$run" run "$engines/$e" --executor gpu --prompt-ids $prompt -n 64 --check \
      --json >"$logs/check-$e.json" 2>"$logs/check-$e.log"
    row "check $e (rc $?)" info "$(grep -o '[0-9]* of [0-9]* greedy tokens agree[^;]*; logits.*' "$logs/check-$e.log")"
  done
fi

if want oracle; then
  # The transformers oracle's checkpoints (tests/fixtures/oracle: weights far from
  # ties), compiled as o-CASE: GPU against the CPU reference over 64 tokens, and the
  # first 32 against transformers' own greedy tokens.
  for e in "$engines"/o-*/; do
    c=$(basename "$e"); c=${c#o-}
    fx=$repo/tests/fixtures/oracle/$c
    p=$(python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['prompt'])))" "$fx/expected.json")
    timeout 120 "$run" run "$e" --executor gpu --weights "$fx" --prompt-ids "$p" -n 64 --check --json \
      >"$logs/run-o-$c.json" 2>"$logs/run-o-$c.log"
    rc=$?
    hf=$(python3 - "$fx/expected.json" "$logs/run-o-$c.json" <<'PY'
import json, sys
want = json.load(open(sys.argv[1]))["tokens"]
got = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])["tokens"]
n = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
print(f"{n}/{len(want)} = transformers")
PY
)
    row "oracle $c GPU (rc $rc)" info "$(grep -o '[0-9]* of [0-9]* greedy tokens agree[^;]*; logits.*' "$logs/run-o-$c.log"); $hf"
  done
fi

if want pro2check; then
  # One full-size MoE layer (384 MXFP4 experts) after the dense layer 0: GPU
  # against the CPU reference (which synthesizes only the experts it routes to).
  start=$(date +%s)
  timeout 220 "$run" run "$engines/pro2" --executor gpu --prompt-ids 3,1,4,1 -n 2 --check \
    --json >"$logs/run-pro2.json" 2>"$logs/run-pro2.log"
  row "pro2 GPU --check (rc $?)" info "$(grep -o '[0-9]* of [0-9]* greedy tokens agree[^;]*; logits.*' "$logs/run-pro2.log") ($(($(date +%s) - start)) s); $(grep -o 'median over decode steps: .*' "$logs/run-pro2.log")"
fi

if want gputest; then
  start=$(date +%s)
  cmake -S "$repo" -B "$build" -DTILEC_BUILD_TESTS=ON >>"$logs/configure.log" 2>&1 &&
    ninja -C "$build" -j "$(nproc)" GpuRuntimeTest >"$logs/build-test.log" 2>&1
  (cd "$repo/tests/gpu" && TILEC_SOURCE_DIR=$repo TILEC_BINARY_DIR=$build timeout 300 "$build/bin/GpuRuntimeTest" --gtest_brief=1 \
    --gtest_filter="${TILEC_GPU_TEST_FILTER:-*}") >"$logs/gpu-runtime-test.log" 2>&1
  row "GpuRuntimeTest (rc $?)" info "$(grep -E '^\[  (PASSED|FAILED)' "$logs/gpu-runtime-test.log" | tr '\n' ' ') ($(($(date +%s) - start)) s)"
fi

if want perop; then
  for e in p-tiny d-tiny ps-plain ps-plain8 ps-dflash; do
    [ -d "$engines/$e" ] || continue
    for l in megakernel per-op; do
      timeout 240 "$run" run "$engines/$e" --executor gpu --prompt-ids $prompt -n 64 --json \
        --launch $l >"$logs/run-$e-$l.json" 2>"$logs/run-$e-$l.log"
      row "$e $l (rc $?)" info "$(summ "$logs/run-$e-$l.json")"
    done
    if [ "$(tokens_of "$logs/run-$e-megakernel.json")" = "$(tokens_of "$logs/run-$e-per-op.json")" ] &&
       [ -n "$(tokens_of "$logs/run-$e-per-op.json")" ]; then
      row "$e per-op tokens = megakernel" PASS "64 tokens"
    else
      row "$e per-op tokens = megakernel" FAIL "differ"
    fi
  done
  if [ -d "$engines/ps-dflash" ]; then
    for l in megakernel per-op; do
      timeout 240 "$run" run "$engines/ps-dflash" --executor gpu --prompt-ids $prompt -n 64 \
        --json --oracle-draft --launch $l >"$logs/run-ps-dflash-oracle-$l.json" \
        2>"$logs/run-ps-dflash-oracle-$l.log"
      row "ps-dflash oracle $l (rc $?)" info "$(summ "$logs/run-ps-dflash-oracle-$l.json")"
    done
    timeout 240 "$run" run "$engines/ps-dflash" --executor gpu --prompt-ids $prompt -n 64 \
      --json --trace --trace-out "$logs/trace-ps-dflash.json" >"$logs/run-ps-dflash-trace.json" \
      2>"$logs/run-ps-dflash-trace.log"
    row "ps-dflash phases" info "$(grep -o 'phases overlap): .*' "$logs/run-ps-dflash-trace.log")"
  fi
fi

if want race; then
  timeout 300 compute-sanitizer --tool racecheck "$run" run "$engines/p-tiny" --executor gpu \
    --prompt-ids 3,1 -n 2 --watchdog-ms 0 >"$logs/racecheck-p-tiny.log" 2>&1
  row "racecheck p-tiny (rc $?)" info "$(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$logs/racecheck-p-tiny.log" | head -1)"
fi

if want torch; then
  weights=/tmp/tilec-flash4l
  timeout 400 python3 "$repo/bench/torch_baseline.py" --config "$repo/bench/models/flash-4l/config.json" \
    --save $weights --prompt-ids $prompt -n 64 --json "$logs/torch-flash4l.json" \
    >"$logs/torch-flash4l.log" 2>&1
  row "torch flash4l (rc $?)" info "$(grep '^# ' "$logs/torch-flash4l.log" | tr '\n' ';')"
  for l in megakernel per-op; do
    timeout 300 "$run" run "$engines/flash4l" --executor gpu --weights $weights --prompt-ids $prompt \
      -n 64 --json --launch $l >"$logs/run-flash4l-$l.json" 2>"$logs/run-flash4l-$l.log"
    row "flash4l $l (rc $?)" info "$(summ "$logs/run-flash4l-$l.json")"
  done
  timeout 200 "$run" bench "$engines/flash4l" --weights $weights --prompt-ids $prompt -n 64 \
    >>"$out/bench.txt" 2>>"$logs/bench.log"
  row "tile-run bench flash4l (rc $?)" info "$(tail -2 "$out/bench.txt" | head -1 | cut -c1-150)"
  python3 - "$logs/torch-flash4l.json" "$logs/run-flash4l-megakernel.json" <<'PY' >"$logs/agree.txt" 2>&1
import json, sys
t = json.load(open(sys.argv[1]))["modes"]["eager"]["tokens"]
o = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])["tokens"]
n = next((i for i, (a, b) in enumerate(zip(t, o)) if a != b), min(len(t), len(o)))
print(f"first {n} of {min(len(t), len(o))} greedy tokens equal (torch bf16 eager vs tilec)")
PY
  row "flash4l tokens vs torch" info "$(cat "$logs/agree.txt")"
fi

if want ar; then
  for e in ps-dflash ps-ar; do
    [ -d "$engines/$e" ] || continue
    for mode in "" --oracle-draft; do
      timeout 240 "$run" run "$engines/$e" --executor gpu --prompt-ids $prompt -n 64 --json \
        --trace $mode >"$logs/run-$e$mode.json" 2>"$logs/run-$e$mode.log"
      row "$e ${mode:-random} (rc $?)" info "$(summ "$logs/run-$e$mode.json"); $(grep -o 'phases overlap): .*' "$logs/run-$e$mode.log")"
    done
  done
fi

(cd "$out" && tar czf logs.tar.gz logs && rm -rf logs)
printf '%s\n' "${rows[@]}" | tee "$out/summary.txt"
