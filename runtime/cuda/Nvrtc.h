//===- Nvrtc.h - NVRTC compilation, cached by content -----------*- C++ -*-===//
//
// The runtime compiles an engine's kernel.cu (and the device library's own
// kernels, such as the synthetic weight generator) when it loads, for the
// device's architecture. Cubins are cached under $XDG_CACHE_HOME/tilec/
// (fallback ~/.cache/tilec/), keyed by the SHA-256 of the source, every
// option, the NVRTC and driver versions and the contents of every header of
// the device library that the source includes (so editing a .cuh recompiles).
//
// The device headers (runtime/device/*.cuh, runtime/abi/TaskAbi.h) are found
// under $TILEC_DEVICE_INCLUDE, else under the source tree this runtime was
// built from; CUDA's under $TILEC_CUDA_INCLUDE, else $CUDA_HOME/include, else
// the toolkit this runtime was built with.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string>
#include <vector>

namespace tilec {

/// The directory holding runtime/device/ and runtime/abi/ (what kernel.cu's
/// #include "runtime/device/..." lines are relative to).
std::string deviceIncludeDir();
/// The CUDA toolkit's include directory (holding cuda_bf16.h and cccl/).
std::string cudaIncludeDir();
/// "sm_90a" for compute capability 9.0: architectures from 9.0 on get the
/// arch-specific "a" variant (wgmma, setmaxnreg), older ones plain sm_XY.
std::string archForCapability(int major, int minor);
/// NVRTC's version, e.g. "13.0".
std::string nvrtcVersion();
/// $XDG_CACHE_HOME/tilec, else $HOME/.cache/tilec ("" when neither is set).
std::string nvrtcCacheDir();

struct NvrtcSource {
  std::string name = "kernel.cu"; // for messages and NVRTC's program name
  std::string text;
  std::string arch = "sm_90a";
  std::vector<std::string>
      defines; // "TILEC_THREADS=384" -> -DTILEC_THREADS=384
  std::vector<std::string> extraOptions;
  /// Include roots searched before the device and CUDA ones.
  std::vector<std::string> includeDirs;
};

struct NvrtcSettings {
  bool useCache = true;
  /// Progress on stderr ("NVRTC: compiling kernel.cu for sm_90a ... 12.3 s")
  /// when stderr is a terminal.
  bool progress = true;
  /// The driver's version goes into the cache key (0: no driver).
  int driverVersion = 0;
  /// Overrides nvrtcCacheDir() (tests).
  std::string cacheDir;
};

struct NvrtcResult {
  std::string cubin;
  std::string log; // NVRTC's log (warnings); empty on a cache hit
  std::string key; // the cache key (hex SHA-256)
  bool cacheHit = false;
  std::string cachePath; // where the cubin is (or would be) cached; "" if none
  double seconds = 0;    // compile time (0 on a hit)
  /// The device-library headers the key covers (resolved paths).
  std::vector<std::string> headers;
};

/// Every NVRTC option used for `source`, in order.
std::vector<std::string> nvrtcOptions(const NvrtcSource &source);

/// The cache key of `source` with these options, versions and included
/// headers; fills `headers` (if given) with the headers hashed.
std::string nvrtcCacheKey(const NvrtcSource &source, int driverVersion,
                          std::vector<std::string> *headers = nullptr);

/// Compiles `source` to a cubin, or takes it from the cache. Throws
/// tilec::Error with NVRTC's log when compilation fails, naming the source.
NvrtcResult nvrtcCompile(const NvrtcSource &source,
                         const NvrtcSettings &settings = {});

} // namespace tilec
