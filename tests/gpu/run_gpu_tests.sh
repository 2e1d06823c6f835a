#!/usr/bin/env bash
# The GPU runtime's tests on a GPU host (CUDA 13 toolkit and driver, cmake, ninja, fmt,
# nlohmann-json, CLI11, GoogleTest; no LLVM): builds the runtime-only side, runs the
# runtime's unit tests and GpuRuntimeTest, optionally compares `tile-run run --executor
# gpu` with `--executor host` on compiled engines, and prints a summary table last.
#
# Usage: tests/gpu/run_gpu_tests.sh [BUILD_DIR]      (default: build-gpu-tests)
# Environment:
#   OUT                summary.txt and gpu-logs.tar.gz (every log) are copied there
#   TILEC_JOBS         build parallelism (default: nproc)
#   TILEC_SKIP_BUILD=1 use the binaries already in BUILD_DIR/bin
#   TILEC_GPU_ENGINES  engine directories (space-separated) to run on both executors
#   TILEC_GPU_PROMPT   prompt ids for them (default 1,2,3,4,5), TILEC_GPU_TOKENS (16)
# Exit status: 0 when every step passed (skips are not failures), 1 otherwise.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$repo/build-gpu-tests}
case $build in /*) ;; *) build=$PWD/$build ;; esac
logs=$build/gpu-logs
rm -rf "$logs"
mkdir -p "$logs" "$build"
jobs=${TILEC_JOBS:-$(nproc)}
# The device headers NVRTC compiles against: this checkout's.
export TILEC_DEVICE_INCLUDE=${TILEC_DEVICE_INCLUDE:-$repo}
# A private cubin cache: the cache tests start cold, runs are reproducible.
export XDG_CACHE_HOME=${XDG_CACHE_HOME_FOR_TESTS:-$build/xdg-cache}

rows=()
status=0
row() { rows+=("$(printf '%-34s %-6s %s' "$1" "$2" "$3")"); if [ "$2" = FAIL ]; then status=1; fi; }

echo "== environment" | tee "$logs/environment.log"
{
  nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  command -v nvcc >/dev/null && nvcc --version | tail -1
  cmake --version | head -1
  echo "TILEC_DEVICE_INCLUDE=$TILEC_DEVICE_INCLUDE XDG_CACHE_HOME=$XDG_CACHE_HOME"
} 2>&1 | tee -a "$logs/environment.log"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
row "environment" "info" "${gpu:-no GPU seen by nvidia-smi}"

if [ "${TILEC_SKIP_BUILD:-0}" != 1 ]; then
  echo "== configure + build (runtime only) in $build"
  if cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DTILEC_RUNTIME_ONLY=ON -DTILEC_BUILD_FUZZERS=OFF >"$logs/configure.log" 2>&1 &&
     ninja -C "$build" -k 0 -j "$jobs" >"$logs/build.log" 2>&1; then
    warnings=$(grep -c 'warning:' "$logs/build.log")
    row "build (runtime only)" "PASS" "$warnings compiler warnings; log build.log"
  else
    tail -30 "$logs/configure.log" 2>/dev/null
    grep -m 20 -B2 -A5 'error' "$logs/build.log" 2>/dev/null
    failed=$(grep -c '^FAILED' "$logs/build.log" 2>/dev/null)
    row "build (runtime only)" "FAIL" "${failed:-?} targets failed (ninja -k 0 built the rest); see build.log"
  fi
fi
bin=$build/bin

# GoogleTest binaries: one row each, from their JSON reports.
gtest() { # name binary [args...]
  local name=$1 exe=$2
  shift 2
  if [ ! -x "$exe" ]; then
    row "$name" "FAIL" "not built: $exe"
    return
  fi
  echo "== $name"
  (cd "$repo/tests/unit" && "$exe" --gtest_output="json:$logs/$name.json" "$@") \
    >"$logs/$name.log" 2>&1
  local rc=$?
  grep -E '^\[ NOTE|FAILED|Failure|error' "$logs/$name.log" | head -40
  local line
  line=$(python3 - "$logs/$name.json" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"no report ({e})"); sys.exit()
tests = [t for s in r["testsuites"] for t in s["testsuite"]]
failed = [t["name"] for t in tests if t.get("failures")]
skipped = [t for t in tests if t.get("result") == "SKIPPED"]
passed = len(tests) - len(failed) - len(skipped)
msg = f"{passed} passed, {len(failed)} failed, {len(skipped)} skipped of {len(tests)}"
if failed:
    msg += "; failed: " + ", ".join(failed[:4])
print(msg)
EOF
)
  if [ $rc -ne 0 ]; then row "$name" "FAIL" "$line (exit $rc; log $name.log)"
  else row "$name" "PASS" "$line"; fi
}

gtest CudaRuntimeTest "$bin/CudaRuntimeTest"
gtest ExecutorTest "$bin/ExecutorTest"
gtest GpuRuntimeTest "$bin/GpuRuntimeTest"
[ -x "$bin/HostExecutorTest" ] && gtest HostExecutorTest "$bin/HostExecutorTest"
[ -x "$bin/WeightPackerTest" ] && gtest WeightPackerTest "$bin/WeightPackerTest"

# The GpuRuntimeTest notes (step latency, refusals, watchdog) as rows.
if [ -f "$logs/GpuRuntimeTest.log" ]; then
  while IFS= read -r note; do
    row "  note" "" "${note:0:140}"
  done < <(grep '^\[ NOTE' "$logs/GpuRuntimeTest.log" | sed 's/^\[ NOTE     \] //' |
           grep -E 'empty step|chain of|host flag read every 20 us|watchdog|GPU 0:|tiny:')
fi

# tile-run's GPU path on a trivial engine (tests/gpu/make_trivial_engine.py): --executor
# auto must pick the GPU, say so, and give the host executor's tokens.
smoke=$build/trivial-engine
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
arch=sm_${cc:-90}
[ "${cc:-90}" -ge 90 ] 2>/dev/null && arch=${arch}a
if [ -x "$bin/tile-run" ] &&
   "$bin/tile-run" synth tiny -o "$build/tiny-config" >/dev/null 2>&1 &&
   python3 "$repo/tests/gpu/make_trivial_engine.py" "$smoke" \
     "$build/tiny-config/config.json" "$arch"; then
  echo "== tile-run run --executor auto (trivial engine, $arch)"
  "$bin/tile-run" run "$smoke" --executor auto -n 3 --json \
    >"$logs/trivial-auto.json" 2>"$logs/trivial-auto.log"
  rc=$?
  "$bin/tile-run" run "$smoke" --executor host -n 3 --json \
    >"$logs/trivial-host.json" 2>"$logs/trivial-host.log"
  notice=$(grep -m1 'executor auto' "$logs/trivial-auto.log")
  want=gpu
  [ -z "$gpu" ] && want=host # no GPU here: auto must say so and take the host
  if [ $rc -eq 0 ] && grep -q 'executor auto' "$logs/trivial-auto.log" &&
     python3 -c 'import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
sys.exit(a["tokens"] != b["tokens"] or a["executor"] != sys.argv[3])' \
       "$logs/trivial-auto.json" "$logs/trivial-host.json" "$want"; then
    row "tile-run run --executor auto" "PASS" "${notice#tile-run: }; tokens = host's"
  else
    cat "$logs/trivial-auto.log" | tail -3
    row "tile-run run --executor auto" "FAIL" "$(tail -1 "$logs/trivial-auto.log" | cut -c1-120)"
  fi
else
  row "tile-run run --executor auto" "FAIL" "could not write the trivial engine"
fi

# Compiled engines: the GPU's tokens must equal the host executor's.
for engine in ${TILEC_GPU_ENGINES:-}; do
  name=$(basename "$engine")
  prompt=${TILEC_GPU_PROMPT:-1,2,3,4,5}
  count=${TILEC_GPU_TOKENS:-16}
  echo "== engine $engine"
  if ! "$bin/tile-run" run "$engine" --executor gpu --prompt-ids "$prompt" -n "$count" \
      --json >"$logs/engine-$name-gpu.json" 2>"$logs/engine-$name-gpu.log"; then
    tail -5 "$logs/engine-$name-gpu.log"
    row "engine $name (gpu)" "FAIL" "$(tail -1 "$logs/engine-$name-gpu.log" | cut -c1-120)"
    continue
  fi
  if ! "$bin/tile-run" run "$engine" --executor host --prompt-ids "$prompt" -n "$count" \
      --json >"$logs/engine-$name-host.json" 2>"$logs/engine-$name-host.log"; then
    row "engine $name (host)" "FAIL" "$(tail -1 "$logs/engine-$name-host.log" | cut -c1-120)"
    continue
  fi
  verdict=$(python3 - "$logs/engine-$name-gpu.json" "$logs/engine-$name-host.json" <<'EOF'
import json, sys
g, h = (json.load(open(p)) for p in sys.argv[1:3])
same = g["tokens"] == h["tokens"]
print(("PASS" if same else "FAIL") +
      f"|tokens {'equal' if same else 'DIFFER'} ({len(g['tokens'])}); gpu "
      f"{g.get('kernel_step_ms_median', 0):.3f} ms/step kernel, "
      f"{g['tokens_per_second']:.1f} tok/s; host {h['step_ms']:.1f} ms/step")
EOF
)
  row "engine $name" "${verdict%%|*}" "${verdict#*|}"
done
[ -z "${TILEC_GPU_ENGINES:-}" ] &&
  row "engines (gpu vs host)" "skip" "set TILEC_GPU_ENGINES to compiled engine dirs"

{
  echo
  echo "== GPU runtime tests: summary (logs in $logs)"
  printf '%-34s %-6s %s\n' "step" "result" "detail"
  printf '%s\n' "${rows[@]}"
} | tee "$logs/summary.txt"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$logs/summary.txt" "$OUT/"
  tar -czf "$OUT/gpu-logs.tar.gz" -C "$build" gpu-logs
fi
exit $status
