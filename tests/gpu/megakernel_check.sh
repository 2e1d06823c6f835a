#!/usr/bin/env bash
# The megakernel on a GPU against the CPU reference model (issue: passes and codegen):
# builds the runtime side, then for every engine directory given (compiled by tilec on
# a machine with LLVM and carried here) runs greedy decoding on the GPU with
# `tile-run run --executor gpu --check` (same tokens and logits as ReferenceModel with
# bf16 activations), runs compute-sanitizer's memcheck and racecheck on the first one,
# and re-runs the transformers oracle on the GPU against the committed fixtures.
# Prints a summary table last; logs and JSON go to $OUT when set.
#
# Usage: tests/gpu/megakernel_check.sh ENGINE_DIR...
# Environment: TILEC_TOKENS (64) new tokens per engine, TILEC_PROMPT (ids),
#              TILEC_BIG_TOKENS (4) for engines whose name contains "full".
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$repo/build-gpu/out}
build=$repo/build-gpu
mkdir -p "$out" "$build"
export TILEC_DEVICE_INCLUDE=$repo
export XDG_CACHE_HOME=$build/xdg-cache
rows=()
status=0
row() { rows+=("$(printf '%-28s %-5s %s' "$1" "$2" "$3")"); if [ "$2" = FAIL ]; then status=1; fi; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
if cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEC_RUNTIME_ONLY=ON \
     -DTILEC_BUILD_FUZZERS=OFF -DTILEC_BUILD_TESTS=OFF >"$out/configure.log" 2>&1 &&
   ninja -C "$build" -j "$(nproc)" tile-run >"$out/build.log" 2>&1; then
  row "build tile-run" PASS "$(grep -c 'warning:' "$out/build.log") warnings"
else
  tail -40 "$out/build.log"
  row "build tile-run" FAIL "see build.log"
fi
run=$build/bin/tile-run

first=""
for engine in "$@"; do
  name=$(basename "$engine")
  [ -z "$first" ] && first=$engine
  n=${TILEC_TOKENS:-64}
  case $name in *full*) n=${TILEC_BIG_TOKENS:-4} ;; esac
  prompt=${TILEC_PROMPT:-3,1,4,1,5,9,2,6}
  if timeout 400 "$run" run "$engine" --executor gpu --check --prompt-ids "$prompt" -n "$n" \
       --json >"$out/$name.json" 2>"$out/$name.log"; then
    verdict=PASS
  else
    verdict=FAIL
  fi
  summary=$(python3 - "$out/$name.json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"no result ({e})"); sys.exit()
c = r.get("check", {})
print(f"{c.get('matching_prefix')}/{len(r['tokens'])} tokens = reference, "
      f"logit rel err {c.get('max_relative_logit_error', float('nan')):.1e}, "
      f"kernel {r.get('kernel_step_ms_median', 0):.3f} ms/step")
PY
)
  row "$name" "$verdict" "$summary"
  tail -3 "$out/$name.log"
done

if [ -n "$first" ] && command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    compute-sanitizer --tool $tool --error-exitcode 9 "$run" run "$first" --executor gpu \
      --prompt-ids 1,2 -n 2 --watchdog-ms 600000 >"$out/sanitizer-$tool.log" 2>&1
    rc=$?
    line=$(grep -m1 "ERROR SUMMARY\|RACECHECK SUMMARY" "$out/sanitizer-$tool.log")
    [ $rc = 0 ] && row "compute-sanitizer $tool" PASS "${line:-clean}" ||
      row "compute-sanitizer $tool" FAIL "rc $rc: ${line:-see log}"
  done
fi

if python3 -c "import torch, transformers" 2>/dev/null; then
  if python3 "$repo/tests/oracle/transformers_oracle.py" --out "$build/oracle-gpu" --device cuda \
       >"$out/oracle.log" 2>&1; then
    same=$(python3 - "$repo/tests/fixtures/oracle" "$build/oracle-gpu" <<'PY'
import json, os, sys
ok = []
for case in sorted(os.listdir(sys.argv[1])):
    a = json.load(open(os.path.join(sys.argv[1], case, "expected.json")))
    b = json.load(open(os.path.join(sys.argv[2], case, "expected.json")))
    ok.append(f"{case}:{'same' if a['tokens'] == b['tokens'] else 'DIFFERENT'}")
print(" ".join(ok))
PY
)
    case $same in *DIFFERENT*) v=FAIL ;; *) v=PASS ;; esac
    row "transformers on GPU" "$v" "tokens vs fixtures: $same"
  else
    row "transformers on GPU" FAIL "see oracle.log"
  fi
fi

echo
echo "== summary ($(head -1 "$out/gpu.txt"))"
printf '%s\n' "${rows[@]}" | tee "$out/summary.txt"
exit $status
