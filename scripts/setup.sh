#!/usr/bin/env bash
# Installs what a fresh Debian 12 + CUDA 13 machine lacks, then configures and builds tilec.
# On a machine that has everything it only builds. Usage:
#   scripts/setup.sh                 # compiler + runtime into build/
#   scripts/setup.sh --runtime-only  # runtime side only (no LLVM/MLIR) into build-runtime/
# Environment: TILEC_JOBS (default 2), TILEC_BUILD_DIR, TILEC_BUILD_TYPE (default Release).
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_only=0
for arg in "$@"; do
  case "$arg" in
    --runtime-only) runtime_only=1 ;;
    *) echo "setup.sh: unknown option '$arg' (expected --runtime-only)" >&2; exit 2 ;;
  esac
done

# Debian packages: the runtime side needs no LLVM; the compiler side needs LLVM/MLIR 22.
packages=(cmake ninja-build g++ python3 libfmt-dev nlohmann-json3-dev libcli11-dev libgtest-dev
          clang libclang-rt-dev)
if [ "$runtime_only" = 0 ]; then
  packages+=(libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing missing packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The CUDA toolkit (NVRTC, nvJitLink, NCCL headers) comes with the machine, not from apt.
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
command -v nvcc >/dev/null || { echo "setup.sh: the CUDA 13 toolkit is missing (no nvcc in PATH or /usr/local/cuda/bin)" >&2; exit 1; }

if [ "$runtime_only" = 1 ]; then
  build=${TILEC_BUILD_DIR:-build-runtime}
  options=(-DTILEC_RUNTIME_ONLY=ON)
else
  build=${TILEC_BUILD_DIR:-build}
  options=(-DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit)
fi
if [ ! -f "$build/build.ninja" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${TILEC_BUILD_TYPE:-Release}" "${options[@]}"
fi
cmake --build "$build" -j "${TILEC_JOBS:-2}"
