#!/usr/bin/env bash
# Checks that the runtime side (models/core, runtime/, tile-run) configures and builds with
# LLVM/MLIR absent: in a private mount namespace the LLVM 22 install is hidden under empty
# tmpfs mounts (where unshare is not permitted, find_package(MLIR/LLVM) is disabled instead),
# then no built executable or shared library may link libLLVM or libMLIR.
# Usage: check.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
out=$2
rm -rf "$out"
mkdir -p "$out"

build() {
  cmake -S "$src" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEC_RUNTIME_ONLY=ON \
    -DTILEC_BUILD_TESTS=OFF -DTILEC_BUILD_FUZZERS=OFF \
    -DCMAKE_DISABLE_FIND_PACKAGE_MLIR=ON -DCMAKE_DISABLE_FIND_PACKAGE_LLVM=ON \
    --no-warn-unused-cli >"$out/configure.log" 2>&1 ||
    { tail -40 "$out/configure.log"; return 1; }
  cmake --build "$out" -j "${TILEC_JOBS:-2}" >"$out/build.log" 2>&1 ||
    { grep -m 20 -A 5 'error' "$out/build.log"; return 1; }
}
export -f build
export src out

hidden=(/usr/lib/llvm-22 /usr/include/llvm-22 /usr/include/llvm-c-22)
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
  # shellcheck disable=SC2016
  unshare -m bash -c '
    set -euo pipefail
    for d in "$@"; do [ -d "$d" ] && mount -t tmpfs none "$d"; done
    if [ -e /usr/lib/llvm-22/lib/cmake/mlir/MLIRConfig.cmake ]; then echo "LLVM still visible"; exit 1; fi
    build' _ "${hidden[@]}"
  echo "runtime-only build: OK with ${hidden[*]} hidden"
else
  build
  echo "runtime-only build: OK with find_package(MLIR/LLVM) disabled (no mount namespace here)"
fi

status=0
while IFS= read -r -d '' f; do
  if file -b "$f" | grep -q ELF && ldd "$f" 2>/dev/null | grep -E 'libLLVM|libMLIR'; then
    echo "error: $f links LLVM/MLIR" >&2
    status=1
  fi
done < <(find "$out" -type f \( -perm -u+x -o -name '*.so' \) -not -path '*/CMakeFiles/*' -print0)
[ -n "$(find "$out" -name 'libtilec_models_core.a')" ] || { echo "error: tilec_models_core was not built" >&2; status=1; }
exit $status
