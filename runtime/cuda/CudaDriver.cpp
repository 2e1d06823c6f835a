//===- CudaDriver.cpp - dlopen()ing libcuda and resolving its entry points ===//
#include "runtime/cuda/CudaDriver.h"

#include "models/core/Error.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace tilec {

namespace {

#define TILEC_CUDA_STRINGIFY(x) #x
// Expands the <cuda.h> macro first: cuMemAlloc -> "cuMemAlloc_v2".
#define TILEC_CUDA_SYMBOL(x) TILEC_CUDA_STRINGIFY(x)

struct LoadState {
  std::once_flag once;
  CudaDriver *driver = nullptr;
  std::string reason;
};

LoadState &state() {
  static LoadState s;
  return s;
}

} // namespace

std::string cudaVersionText(int version) {
  return fmt::format("{}.{}", version / 1000, version % 1000 / 10);
}

std::string CudaDriver::defaultLibrary() {
  const char *env = std::getenv("TILEC_LIBCUDA");
  return env && *env ? env : "libcuda.so.1";
}

std::string CudaDriver::probe(const std::string &library) {
  // Leaked on purpose: a driver library is never unloaded once initialised.
  CudaDriver *driver = new CudaDriver();
  return driver->load(library);
}

std::string CudaDriver::load(const std::string &library) {
  library_ = library;
  handle_ = dlopen(library_.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_) {
    const char *why = dlerror();
    return fmt::format("no NVIDIA driver: cannot load {} ({})", library_,
                       why ? why : "dlopen failed");
  }
#define TILEC_CUDA_RESOLVE(name)                                               \
  name = reinterpret_cast<decltype(name)>(                                     \
      dlsym(handle_, TILEC_CUDA_SYMBOL(name)));                                \
  if (!name)                                                                   \
    return fmt::format("{} has no {}: the NVIDIA driver is older than CUDA "   \
                       "{} (this build's toolkit)",                            \
                       library_, TILEC_CUDA_SYMBOL(name),                      \
                       cudaVersionText(CUDA_VERSION));
  TILEC_CUDA_DRIVER_FUNCTIONS(TILEC_CUDA_RESOLVE)
#undef TILEC_CUDA_RESOLVE

  if (CUresult r = cuInit(0); r != CUDA_SUCCESS) {
    if (r == CUDA_ERROR_STUB_LIBRARY)
      return fmt::format("{} is the CUDA toolkit's stub library, not a "
                         "driver (cuInit: {})",
                         library_, errorText(r));
    return fmt::format("cuInit failed: {} (library {})", errorText(r),
                       library_);
  }
  if (CUresult r = cuDriverGetVersion(&version_); r != CUDA_SUCCESS)
    return fmt::format("cuDriverGetVersion failed: {}", errorText(r));
  if (CUresult r = cuDeviceGetCount(&devices_); r != CUDA_SUCCESS)
    return fmt::format("cuDeviceGetCount failed: {}", errorText(r));
  if (devices_ == 0)
    return fmt::format("the NVIDIA driver (CUDA {}) sees no GPU",
                       cudaVersionText(version_));
  if (version_ < CUDA_VERSION)
    return fmt::format("the NVIDIA driver supports CUDA {}, but NVRTC of "
                       "CUDA {} produces the kernels: update the driver",
                       cudaVersionText(version_),
                       cudaVersionText(CUDA_VERSION));
  return "";
}

CudaDriver &CudaDriver::get() {
  LoadState &s = state();
  std::call_once(s.once, [&s] {
    static CudaDriver driver;
    std::string reason = driver.load(defaultLibrary());
    if (reason.empty())
      s.driver = &driver;
    else
      s.reason = reason;
  });
  if (!s.driver)
    throw Error(s.reason);
  return *s.driver;
}

bool CudaDriver::available(std::string *reason) {
  try {
    get();
    return true;
  } catch (const Error &e) {
    if (reason)
      *reason = e.what();
    return false;
  }
}

namespace {

/// Names of the errors a broken or missing driver gives, for when
/// cuGetErrorName itself cannot answer (a stub library, a failed cuInit).
const char *knownErrorName(CUresult result) {
  if (int(result) ==
      35) // gone from CUDA 13's header, still what old drivers say
    return "CUDA_ERROR_INSUFFICIENT_DRIVER";
  switch (result) {
  case CUDA_ERROR_INVALID_VALUE:
    return "CUDA_ERROR_INVALID_VALUE";
  case CUDA_ERROR_OUT_OF_MEMORY:
    return "CUDA_ERROR_OUT_OF_MEMORY";
  case CUDA_ERROR_NOT_INITIALIZED:
    return "CUDA_ERROR_NOT_INITIALIZED";
  case CUDA_ERROR_STUB_LIBRARY:
    return "CUDA_ERROR_STUB_LIBRARY";
  case CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER:
    return "CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER";
  case CUDA_ERROR_DEVICE_UNAVAILABLE:
    return "CUDA_ERROR_DEVICE_UNAVAILABLE";
  case CUDA_ERROR_NO_DEVICE:
    return "CUDA_ERROR_NO_DEVICE";
  case CUDA_ERROR_INVALID_DEVICE:
    return "CUDA_ERROR_INVALID_DEVICE";
  case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
    return "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH";
  case CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
    return "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE";
  case CUDA_ERROR_UNKNOWN:
    return "CUDA_ERROR_UNKNOWN";
  default:
    return nullptr;
  }
}

} // namespace

std::string CudaDriver::errorText(CUresult result) const {
  const char *name = nullptr, *text = nullptr;
  if (cuGetErrorName && cuGetErrorName(result, &name) != CUDA_SUCCESS)
    name = nullptr;
  if (!name)
    name = knownErrorName(result);
  if (cuGetErrorString && cuGetErrorString(result, &text) != CUDA_SUCCESS)
    text = nullptr;
  if (!name)
    return fmt::format("CUDA error {}", int(result));
  if (!text)
    return name;
  return fmt::format("{} ({})", name, text);
}

void CudaDriver::check(CUresult result, std::string_view what) const {
  if (result != CUDA_SUCCESS)
    fail("{}: {}", what, errorText(result));
}

} // namespace tilec
