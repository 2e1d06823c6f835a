//===- CudaRuntimeTest.cpp - The GPU runtime's host side, without a GPU ---===//
//
// SHA-256 against FIPS 180-4 vectors, the NVRTC cache key and cache, and the
// driver loader's behaviour on a machine without a GPU. Where a GPU is present
// the no-GPU expectations are skipped (tests/gpu covers that case).
//
//===----------------------------------------------------------------------===//
#include "models/core/Error.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/GpuEngine.h"
#include "runtime/cuda/Nvrtc.h"
#include "runtime/cuda/Sha256.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

using namespace tilec;
namespace fs = std::filesystem;

namespace {

//===--- SHA-256 ----------------------------------------------------------===//

TEST(Sha256, FipsVectors) {
  EXPECT_EQ(Sha256::hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256::hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(
      Sha256::hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(
      Sha256::hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijk"
                  "lmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(Sha256::hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PaddingBoundaries) {
  // Messages of 55, 56, 63, 64 and 65 bytes cross the padding cases.
  const char *expected[] = {
      "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
      "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a",
      "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34",
      "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb",
      "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"};
  size_t sizes[] = {55, 56, 63, 64, 65};
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(Sha256::hex(std::string(sizes[i], 'a')), expected[i])
        << sizes[i] << " bytes";
}

TEST(Sha256, IncrementalEqualsOneShot) {
  std::mt19937 rng(7);
  std::string text(10000, '\0');
  for (char &c : text)
    c = char(rng());
  std::string whole = Sha256::hex(text);
  for (size_t step : {1u, 3u, 63u, 64u, 65u, 1000u}) {
    Sha256 h;
    for (size_t at = 0; at < text.size(); at += step)
      h.update(text.data() + at, std::min(step, text.size() - at));
    EXPECT_EQ(h.hex(), whole) << "pieces of " << step;
  }
}

TEST(Sha256, FieldsDoNotCollide) {
  Sha256 a, b;
  a.updateField("ab");
  a.updateField("c");
  b.updateField("a");
  b.updateField("bc");
  EXPECT_NE(a.hex(), b.hex());
}

//===--- NVRTC ------------------------------------------------------------===//

/// A temporary directory removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           fmt::format("tilec-cuda-test-{}-{}", ::getpid(), counter()++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int &counter() {
    static int n = 0;
    return n;
  }
  void write(const std::string &rel, const std::string &text) const {
    fs::create_directories((path / rel).parent_path());
    std::ofstream(path / rel) << text;
  }
};

const char *kSmallKernel = R"(
#include "runtime/abi/TaskAbi.h"
#include <cuda_bf16.h>
extern "C" __global__ void tilec_step(TilecStepParams p) {
  if (threadIdx.x == 0 && blockIdx.x == 0 && p.report)
    p.report[TILEC_REPORT_FLAG] = TILEC_THREADS > 0 ? 0 : 1;
  __nv_bfloat16 x = __float2bfloat16(1.5f);
  if (p.arena) p.arena[threadIdx.x] = (unsigned char)__bfloat162float(x);
}
)";

NvrtcSource smallSource() {
  NvrtcSource s;
  s.name = "small.cu";
  s.text = kSmallKernel;
  s.arch = "sm_90a";
  s.defines = {"TILEC_THREADS=128"};
  return s;
}

TEST(Nvrtc, OptionsNameArchitectureAndIncludes) {
  std::vector<std::string> o = nvrtcOptions(smallSource());
  auto has = [&](const std::string &x) {
    return std::find(o.begin(), o.end(), x) != o.end();
  };
  EXPECT_TRUE(has("--gpu-architecture=sm_90a"));
  EXPECT_TRUE(has("-std=c++17"));
  EXPECT_TRUE(has("-lineinfo"));
  EXPECT_TRUE(has("-DTILEC_THREADS=128"));
  EXPECT_TRUE(has("-I" + deviceIncludeDir()));
  EXPECT_TRUE(has("-I" + cudaIncludeDir() + "/cccl"));
  EXPECT_TRUE(has("-I" + cudaIncludeDir()));
}

TEST(Nvrtc, ArchFromComputeCapability) {
  EXPECT_EQ(archForCapability(9, 0), "sm_90a");
  EXPECT_EQ(archForCapability(10, 0), "sm_100a");
  EXPECT_EQ(archForCapability(8, 0), "sm_80");
  EXPECT_EQ(archForCapability(8, 9), "sm_89");
}

TEST(Nvrtc, CacheKeyCoversSourceOptionsVersionsAndHeaders) {
  TempDir dir;
  dir.write("lib/a.cuh", "#pragma once\n#include \"b.cuh\"\n#define A 1\n");
  dir.write("lib/b.cuh", "#pragma once\n#define B 2\n");
  NvrtcSource s;
  s.text = "#include \"lib/a.cuh\"\n#include <cuda_bf16.h>\n"
           "extern \"C\" __global__ void k() {}\n";
  s.includeDirs = {dir.path.string()};
  std::vector<std::string> headers;
  std::string base = nvrtcCacheKey(s, 13000, &headers);
  EXPECT_EQ(base.size(), 64u);
  EXPECT_EQ(base, nvrtcCacheKey(s, 13000)) << "the key is deterministic";
  // Both headers, the transitive one too; CUDA's are covered by the version.
  ASSERT_EQ(headers.size(), 2u);
  EXPECT_NE(headers[0].find("a.cuh"), std::string::npos);
  EXPECT_NE(headers[1].find("b.cuh"), std::string::npos);

  NvrtcSource t = s;
  t.text += "\n// a comment\n";
  EXPECT_NE(nvrtcCacheKey(t, 13000), base) << "source";
  t = s;
  t.defines = {"TILEC_THREADS=256"};
  EXPECT_NE(nvrtcCacheKey(t, 13000), base) << "defines";
  t = s;
  t.arch = "sm_100a";
  EXPECT_NE(nvrtcCacheKey(t, 13000), base) << "architecture";
  t = s;
  t.extraOptions = {"-G"};
  EXPECT_NE(nvrtcCacheKey(t, 13000), base) << "extra options";
  EXPECT_NE(nvrtcCacheKey(s, 13010), base) << "driver version";

  dir.write("lib/b.cuh", "#pragma once\n#define B 3\n");
  std::string edited = nvrtcCacheKey(s, 13000);
  EXPECT_NE(edited, base) << "editing an included header changes the key";
  dir.write("lib/b.cuh", "#pragma once\n#define B 2\n");
  EXPECT_EQ(nvrtcCacheKey(s, 13000), base);
}

TEST(Nvrtc, CacheKeyCoversTheDeviceLibrary) {
  // kernel.cu includes the ABI header from the device include root; its
  // contents are part of the key.
  NvrtcSource s = smallSource();
  std::vector<std::string> headers;
  nvrtcCacheKey(s, 0, &headers);
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_NE(headers[0].find("runtime/abi/TaskAbi.h"), std::string::npos);
}

/// Points XDG_CACHE_HOME at a temporary directory for one test.
struct ScopedCacheHome {
  TempDir dir;
  std::string old;
  bool had = false;
  ScopedCacheHome() {
    if (const char *v = std::getenv("XDG_CACHE_HOME")) {
      old = v;
      had = true;
    }
    setenv("XDG_CACHE_HOME", dir.path.c_str(), 1);
  }
  ~ScopedCacheHome() {
    if (had)
      setenv("XDG_CACHE_HOME", old.c_str(), 1);
    else
      unsetenv("XDG_CACHE_HOME");
  }
};

TEST(Nvrtc, CompilesForSm90aAndHitsTheCacheTheSecondTime) {
  ScopedCacheHome home;
  EXPECT_EQ(nvrtcCacheDir(), (home.dir.path / "tilec").string());
  NvrtcSettings settings;
  settings.progress = false;
  NvrtcResult first = nvrtcCompile(smallSource(), settings);
  EXPECT_FALSE(first.cacheHit);
  ASSERT_GT(first.cubin.size(), 16u);
  EXPECT_EQ(first.cubin.substr(0, 4), "\x7f"
                                      "ELF");
  EXPECT_GT(first.seconds, 0.0);
  ASSERT_FALSE(first.cachePath.empty());
  EXPECT_TRUE(fs::exists(first.cachePath));
  EXPECT_EQ(fs::path(first.cachePath).parent_path(), home.dir.path / "tilec");
  EXPECT_EQ(fs::path(first.cachePath).stem().string(), first.key);

  NvrtcResult second = nvrtcCompile(smallSource(), settings);
  EXPECT_TRUE(second.cacheHit);
  EXPECT_EQ(second.seconds, 0.0);
  EXPECT_EQ(second.key, first.key);
  EXPECT_EQ(second.cubin, first.cubin);

  settings.useCache = false;
  NvrtcResult third = nvrtcCompile(smallSource(), settings);
  EXPECT_FALSE(third.cacheHit) << "--no-cache compiles again";
  EXPECT_TRUE(third.cachePath.empty());

  // A corrupt cache entry is compiled over, not loaded.
  std::ofstream(first.cachePath, std::ios::trunc) << "garbage";
  settings.useCache = true;
  NvrtcResult fourth = nvrtcCompile(smallSource(), settings);
  EXPECT_FALSE(fourth.cacheHit);
  EXPECT_EQ(fourth.cubin.substr(0, 4), "\x7f"
                                       "ELF");
}

TEST(Nvrtc, CompilesHopperFeaturesThroughCccl) {
  // What the megakernel relies on: <cuda/ptx> (cp.async.bulk, mbarrier) and
  // setmaxnreg for sm_90a, with no glibc headers.
  ScopedCacheHome home;
  NvrtcSource s;
  s.name = "hopper.cu";
  s.arch = "sm_90a";
  s.text = R"(
#include <cuda/ptx>
#include <cuda_bf16.h>
extern "C" __global__ void __launch_bounds__(256, 1) k(const int4 *src) {
  __shared__ alignas(16) int4 buf[64];
  __shared__ alignas(8) unsigned long long bar;
  if (threadIdx.x == 0) {
    cuda::ptx::mbarrier_init(&bar, 1);
    cuda::ptx::fence_proxy_async(cuda::ptx::space_shared);
  }
  __syncthreads();
  if (threadIdx.x >= 128) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    if (threadIdx.x == 0) {
      cuda::ptx::cp_async_bulk(cuda::ptx::space_cluster, cuda::ptx::space_global,
                               buf, src, sizeof buf, &bar);
      cuda::ptx::mbarrier_arrive_expect_tx(cuda::ptx::sem_release,
                                           cuda::ptx::scope_cta,
                                           cuda::ptx::space_shared, &bar,
                                           sizeof buf);
    }
  }
}
)";
  NvrtcSettings settings;
  settings.progress = false;
  NvrtcResult r = nvrtcCompile(s, settings);
  EXPECT_EQ(r.cubin.substr(0, 4), "\x7f"
                                  "ELF");
}

TEST(Nvrtc, CompilesTheDeviceLibrarysSyntheticGenerator) {
  // What GpuEngine compiles to synthesize weights on the GPU.
  if (!fs::exists(deviceIncludeDir() + "/runtime/device/synthetic.cuh"))
    GTEST_SKIP() << "runtime/device/synthetic.cuh is not there yet";
  ScopedCacheHome home;
  NvrtcSource s;
  s.name = "tilec_synthesize.cu";
  s.text = "#include \"runtime/device/synthetic.cuh\"\n";
  NvrtcSettings settings;
  settings.progress = false;
  NvrtcResult r = nvrtcCompile(s, settings);
  EXPECT_EQ(r.cubin.substr(0, 4), "\x7f"
                                  "ELF");
  // Its key covers the generator and the ABI header it includes.
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_NE(r.headers[0].find("synthetic.cuh"), std::string::npos);
  EXPECT_NE(r.headers[1].find("TaskAbi.h"), std::string::npos);
}

TEST(Nvrtc, CompileErrorsNameTheSourceAndCarryTheLog) {
  ScopedCacheHome home;
  NvrtcSource s;
  s.name = "broken.cu";
  s.text = "extern \"C\" __global__ void k() { undefined_thing(); }\n";
  NvrtcSettings settings;
  settings.progress = false;
  try {
    nvrtcCompile(s, settings);
    FAIL() << "expected an error";
  } catch (const Error &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("broken.cu"), std::string::npos) << m;
    EXPECT_NE(m.find("undefined_thing"), std::string::npos) << m;
    EXPECT_NE(m.find("sm_90a"), std::string::npos) << m;
  }
}

TEST(Nvrtc, MissingDeviceHeadersAreAClearError) {
  ScopedCacheHome home;
  TempDir empty;
  setenv("TILEC_DEVICE_INCLUDE", empty.path.c_str(), 1);
  try {
    nvrtcCompile(smallSource(), {});
    unsetenv("TILEC_DEVICE_INCLUDE");
    FAIL() << "expected an error";
  } catch (const Error &e) {
    unsetenv("TILEC_DEVICE_INCLUDE");
    std::string m = e.what();
    EXPECT_NE(m.find("TILEC_DEVICE_INCLUDE"), std::string::npos) << m;
    EXPECT_NE(m.find(empty.path.string()), std::string::npos) << m;
  }
}

//===--- The driver, on a machine without a GPU
//----------------------------===//

TEST(CudaDriver, ProbeOfAMissingLibraryGivesAReason) {
  std::string reason = CudaDriver::probe("/nonexistent/libcuda.so.1");
  EXPECT_NE(reason.find("cannot load /nonexistent/libcuda.so.1"),
            std::string::npos)
      << reason;
}

TEST(CudaDriver, TheToolkitsStubLibraryIsNotADriver) {
  fs::path stub = fs::path(cudaIncludeDir()).parent_path() / "lib64" / "stubs" /
                  "libcuda.so";
  if (!fs::exists(stub))
    GTEST_SKIP() << "no stub library at " << stub;
  std::string reason = CudaDriver::probe(stub.string());
  EXPECT_NE(reason.find("stub"), std::string::npos) << reason;
  EXPECT_NE(reason.find("CUDA_ERROR_STUB_LIBRARY"), std::string::npos)
      << reason;
}

TEST(CudaDriver, UnavailableHereWithAReason) {
  std::string reason;
  if (CudaDriver::available(&reason))
    GTEST_SKIP() << "this machine has a GPU (tests/gpu covers it)";
  EXPECT_FALSE(reason.empty());
  // Asking again gives the same answer and get() throws it.
  std::string again;
  EXPECT_FALSE(CudaDriver::available(&again));
  EXPECT_EQ(again, reason);
  try {
    CudaDriver::get();
    FAIL() << "get() must throw without a driver";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()), reason);
  }
}

TEST(GpuEngine, FailsClearlyWithoutAGpu) {
  if (CudaDriver::available())
    GTEST_SKIP() << "this machine has a GPU (tests/gpu covers it)";
  EngineManifest m;
  m.modelName = "test";
  m.arch = "sm_90a";
  m.sms = 1;
  m.threadsPerBlock = 128;
  m.tokens = 1;
  m.smTasks.resize(1);
  GpuEngineOptions options;
  options.zeroWeights = true;
  try {
    GpuEngine engine(m, kSmallKernel, options);
    FAIL() << "expected an error";
  } catch (const Error &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("no usable GPU here"), std::string::npos) << m;
  }
  EXPECT_THROW(listGpus(), Error);
}

TEST(GpuEngine, MissingEngineDirectoryIsAClearError) {
  try {
    GpuEngine engine("/nonexistent/engine");
    FAIL() << "expected an error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/engine"),
              std::string::npos)
        << e.what();
  }
}

TEST(GpuEngine, FormatsBytes) {
  EXPECT_EQ(formatBytes(640), "640 B");
  EXPECT_EQ(formatBytes(12 << 20), "12.0 MiB");
  EXPECT_EQ(formatBytes(int64_t(3) << 29), "1.50 GiB");
}

} // namespace
