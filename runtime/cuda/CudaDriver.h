//===- CudaDriver.h - The CUDA driver API, loaded at run time ---*- C++ -*-===//
//
// tilec never links libcuda: binaries must start (and run on the host executor)
// on machines without an NVIDIA driver. CudaDriver dlopen()s libcuda.so.1 (or
// $TILEC_LIBCUDA) once per process, resolves the entry points below by their
// versioned names (the ones <cuda.h> maps each API name to, so every pointer
// has exactly the type the header declares), and calls cuInit.
//
// Only <cuda.h>'s types and declarations are used; nothing of it is linked.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cuda.h>

#include <string>
#include <string_view>

namespace tilec {

// Every driver entry point tilec calls. X(name): the API name as written in
// <cuda.h>; the macro there turns it into the versioned symbol.
#define TILEC_CUDA_DRIVER_FUNCTIONS(X)                                         \
  X(cuInit)                                                                    \
  X(cuDriverGetVersion)                                                        \
  X(cuGetErrorName)                                                            \
  X(cuGetErrorString)                                                          \
  X(cuDeviceGet)                                                               \
  X(cuDeviceGetCount)                                                          \
  X(cuDeviceGetAttribute)                                                      \
  X(cuDeviceGetName)                                                           \
  X(cuDeviceTotalMem)                                                          \
  X(cuDevicePrimaryCtxRetain)                                                  \
  X(cuDevicePrimaryCtxRelease)                                                 \
  X(cuCtxSetCurrent)                                                           \
  X(cuCtxGetCurrent)                                                           \
  X(cuMemGetInfo)                                                              \
  X(cuModuleLoadDataEx)                                                        \
  X(cuModuleUnload)                                                            \
  X(cuModuleGetFunction)                                                       \
  X(cuFuncSetAttribute)                                                        \
  X(cuFuncGetAttribute)                                                        \
  X(cuOccupancyMaxActiveBlocksPerMultiprocessor)                               \
  X(cuMemAlloc)                                                                \
  X(cuMemFree)                                                                 \
  X(cuMemsetD8Async)                                                           \
  X(cuMemcpyHtoD)                                                              \
  X(cuMemcpyDtoH)                                                              \
  X(cuMemcpyHtoDAsync)                                                         \
  X(cuMemcpyDtoHAsync)                                                         \
  X(cuMemcpyDtoDAsync)                                                         \
  X(cuMemHostAlloc)                                                            \
  X(cuMemFreeHost)                                                             \
  X(cuMemHostGetDevicePointer)                                                 \
  X(cuLaunchKernel)                                                            \
  X(cuStreamCreate)                                                            \
  X(cuStreamDestroy)                                                           \
  X(cuStreamSynchronize)                                                       \
  X(cuStreamQuery)                                                             \
  X(cuEventCreate)                                                             \
  X(cuEventDestroy)                                                            \
  X(cuEventRecord)                                                             \
  X(cuEventQuery)                                                              \
  X(cuEventSynchronize)                                                        \
  X(cuEventElapsedTime)

class CudaDriver {
public:
  /// The process's driver, loaded and initialised on first use. Throws
  /// tilec::Error with the reason (no libcuda, a stub library, no GPU, ...)
  /// when there is none; the reason is remembered, later calls throw it again.
  static CudaDriver &get();
  /// Whether get() would succeed; `reason` receives why not. Never throws.
  static bool available(std::string *reason = nullptr);
  /// Loads `library` as get() loads libcuda, into an object of its own that
  /// the process's driver never sees; returns "" when it would serve, else the
  /// reason (tests point it at the toolkit's stub library).
  static std::string probe(const std::string &library);
  /// What get() loads: $TILEC_LIBCUDA, else "libcuda.so.1".
  static std::string defaultLibrary();

  /// "CUDA_ERROR_OUT_OF_MEMORY (out of memory)" or "CUDA error 2".
  std::string errorText(CUresult result) const;
  /// Throws tilec::Error "`what`: CUDA_ERROR_... (text)" unless `result` is
  /// CUDA_SUCCESS.
  void check(CUresult result, std::string_view what) const;

  int version() const { return version_; }     // e.g. 13000
  int deviceCount() const { return devices_; } // >= 1
  const std::string &library() const { return library_; }

#define TILEC_CUDA_DRIVER_POINTER(name) decltype(&::name) name = nullptr;
  TILEC_CUDA_DRIVER_FUNCTIONS(TILEC_CUDA_DRIVER_POINTER)
#undef TILEC_CUDA_DRIVER_POINTER

  CudaDriver(const CudaDriver &) = delete;
  CudaDriver &operator=(const CudaDriver &) = delete;

private:
  CudaDriver() = default;
  /// Fills the driver in from `library`, or returns why it cannot.
  std::string load(const std::string &library);
  void *handle_ = nullptr;
  std::string library_;
  int version_ = 0, devices_ = 0;
};

/// "13.0" from 13000.
std::string cudaVersionText(int version);

} // namespace tilec
