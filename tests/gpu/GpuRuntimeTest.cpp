//===- GpuRuntimeTest.cpp - The GPU runtime on a real GPU
//------------------===//
//
// Runs where a GPU is (tests/gpu/run_gpu_tests.sh); skipped with a message
// elsewhere. The engines here are built in memory around a small test kernel
// (the same NVRTC path, launch contract, event protocol and report words as a
// compiled megakernel), so the runtime is tested without the compiler:
// device properties, module load and launch, cross-SM events over many
// steps, co-residency of a chain through every SM, the cubin cache, every
// load-time refusal, the watchdog report, the host timeout, bad-input
// reports, traces, and the weight region (synthesized on the GPU and uploaded
// from the host) against WeightPacker's bytes.
//
//===----------------------------------------------------------------------===//
#include "models/core/Config.h"
#include "models/core/Error.h"
#include "models/core/WeightList.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/GpuEngine.h"
#include "runtime/cuda/Nvrtc.h"
#include "runtime/engine/Executor.h"
#include "runtime/engine/WeightPacker.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <numeric>

#include <unistd.h>

using namespace tilec;
namespace fs = std::filesystem;

namespace {

#define REQUIRE_GPU()                                                          \
  do {                                                                         \
    std::string reason;                                                        \
    if (!CudaDriver::available(&reason))                                       \
      GTEST_SKIP() << "no GPU: " << reason;                                    \
  } while (0)

/// One row of the summary the script prints (key numbers per test).
void note(const std::string &text) {
  std::cout << "[ NOTE     ] " << text << std::endl;
}

// The test megakernel. Families (argument words are arena byte offsets):
//   0: out[t] = in[t] + A for t < T; an input < 0 sets report flag 2
//      (args: in, out, A, T)
//   1: out[t] = 2 * in[t] + pos[t]; logits[t] = {out, -1} when given
//      (args: in, out, pos, T, logits or -1)
// Waits follow docs/engine.md (targets step * per + count, acquire) and the
// device library's stop protocol (report flag 1 stops every wait).
const char *kTestKernel = R"(
#include "runtime/abi/TaskAbi.h"
typedef unsigned long long u64;
/* How often a waiting CTA reads the host-mapped report flag (ns; 0: never).
   Every 20 us from ~130 waiting CTAs saturates PCIe reads and made each
   cross-SM event ~120 us slower on an H100; every 200 us costs nothing. */
#ifndef TEST_HOST_POLL_NS
#define TEST_HOST_POLL_NS 200000
#endif

__device__ __forceinline__ u64 gtimer() {
  u64 t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ u64 ld_acquire(const u64 *p) {
  u64 v;
  asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

// Polls the host-mapped report flag only every TEST_HOST_POLL_NS of waiting.
__device__ bool wait_events(const TilecStepParams &p, int sm, int task,
                            const TilecTask &t) {
  volatile int *report = p.report;
  for (int w = 0; w < 2; ++w) {
    long long e = t.w[TILEC_W_WAIT0 + 2 * w];
    if (e < 0)
      continue;
    u64 target = p.step * p.signals_per_step[e] + (u64)t.w[TILEC_W_COUNT0 + 2 * w];
    u64 start = gtimer(), checked = start;
    for (;;) {
      u64 have = ld_acquire(p.events + e);
      if (have >= target)
        break;
      u64 now = gtimer();
      if (TEST_HOST_POLL_NS && now - checked > TEST_HOST_POLL_NS) {
        checked = now;
        if (report[TILEC_REPORT_FLAG] == 1)
          return false; // stop request: another CTA's watchdog or the host
      }
      if (p.watchdog_ns && now - start > p.watchdog_ns) {
        if (report[TILEC_REPORT_FLAG] == 0) {
          report[TILEC_REPORT_SM] = sm;
          report[TILEC_REPORT_TASK] = task;
          report[TILEC_REPORT_OP] = (int)t.w[TILEC_W_OP];
          report[TILEC_REPORT_EVENT] = (int)e;
          report[TILEC_REPORT_HAVE] = (int)(unsigned)have;
          report[TILEC_REPORT_WANT] = (int)(unsigned)target;
          __threadfence_system();
          report[TILEC_REPORT_FLAG] = 1;
        }
        return false;
      }
      __nanosleep(64);
    }
  }
  return true;
}

extern "C" __global__ void __launch_bounds__(TILEC_THREADS, 1)
tilec_step(const TilecStepParams p) {
  extern __shared__ unsigned char smem[];
  __shared__ int go;
  const int sm = blockIdx.x;
  const int begin = p.sm_begin[sm], end = p.sm_begin[sm + 1];
  if (threadIdx.x == 0 && TILEC_SMEM_BYTES > 0)
    smem[TILEC_SMEM_BYTES - 1] = 0; // the dynamic smem is really there
  for (int i = begin; i < end; ++i) {
    const TilecTask &t = p.tasks[i];
    u64 *trace = p.trace ? p.trace + ((u64)sm * TILEC_MAX_TASKS + (i - begin)) *
                                         TILEC_TRACE_WORDS : 0;
    if (threadIdx.x == 0) {
      if (trace)
        trace[TILEC_TRACE_WAIT_BEGIN] = gtimer();
      go = wait_events(p, sm, i - begin, t);
      if (trace && go) {
        trace[TILEC_TRACE_WAIT_END] = gtimer();
        trace[TILEC_TRACE_COMPUTE_BEGIN] = gtimer();
      }
    }
    __syncthreads();
    if (!go)
      return;
    const long long *a = t.w + TILEC_TASK_WORDS - TILEC_TASK_ARGS;
    int *in = (int *)(p.arena + a[0]);
    int *out = (int *)(p.arena + a[1]);
    const int T = (int)a[3];
    if (t.w[TILEC_W_FAMILY] == 0) {
      for (int k = threadIdx.x; k < T; k += blockDim.x) {
        if (in[k] < 0 && p.report[TILEC_REPORT_FLAG] == 0) {
          p.report[TILEC_REPORT_SM] = sm;
          p.report[TILEC_REPORT_TASK] = i - begin;
          p.report[TILEC_REPORT_OP] = (int)t.w[TILEC_W_OP];
          __threadfence_system();
          p.report[TILEC_REPORT_FLAG] = 2;
        }
        out[k] = in[k] + (int)a[2];
      }
    } else {
      const int *pos = (const int *)(p.arena + a[2]);
      for (int k = threadIdx.x; k < T; k += blockDim.x) {
        out[k] = 2 * in[k] + pos[k];
        if (a[4] >= 0) {
          float *logits = (float *)(p.arena + a[4]);
          logits[2 * k] = (float)out[k];
          logits[2 * k + 1] = -1.0f;
        }
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      long long e = t.w[TILEC_W_SIGNAL];
      if (e >= 0) {
        __threadfence();
        asm volatile("red.release.gpu.global.add.u64 [%0], 1;" ::"l"(p.events + e)
                     : "memory");
      }
      if (trace)
        trace[TILEC_TRACE_COMPUTE_END] = gtimer();
    }
  }
}
)";

constexpr int64_t kT = 4;
constexpr int64_t kTokens = 0, kPositions = 256, kArgmax = 512, kLogits = 768,
                  kScratch = 1024;

TilecTask task(int family, int op, std::vector<int64_t> args, int64_t wait = -1,
               int64_t count = 0, int64_t signal = -1) {
  TilecTask t{};
  for (long long &w : t.w)
    w = 0;
  t.w[TILEC_W_INSTANCE] = family;
  t.w[TILEC_W_FAMILY] = family;
  t.w[TILEC_W_OP] = op;
  t.w[TILEC_W_WAIT0] = wait;
  t.w[TILEC_W_COUNT0] = count;
  t.w[TILEC_W_WAIT1] = -1;
  t.w[TILEC_W_COUNT1] = 0;
  t.w[TILEC_W_SIGNAL] = signal;
  for (size_t i = 0; i < args.size(); ++i)
    t.w[TILEC_TASK_WORDS - TILEC_TASK_ARGS + i] = args[i];
  return t;
}

/// An engine of the test kernel on `sms` SMs with empty task lists.
EngineManifest baseManifest(int sms) {
  const GpuDeviceInfo dev = listGpus().at(0);
  EngineManifest m;
  m.modelName = "gpu-runtime-test";
  m.targetName = "test";
  m.arch = dev.arch;
  m.sms = sms;
  m.smemPerBlock = dev.smemPerBlockOptin;
  m.threadsPerBlock = 128;
  m.dynamicSmem = 48 * 1024; // above the 48 KiB default: needs the attribute
  m.tokens = kT;
  m.tokensBuffer = "tokens";
  m.positionsBuffer = "positions";
  m.argmaxBuffer = "argmax";
  m.logitsBuffer = "logits";
  m.arenaBytes = kScratch + 4 * kT * (sms + 1);
  m.buffers = {{"tokens", "i32", {kT}, kTokens, 4 * kT},
               {"positions", "i32", {kT}, kPositions, 4 * kT},
               {"argmax", "i32", {kT}, kArgmax, 4 * kT},
               {"logits", "f32", {kT, 2}, kLogits, 8 * kT}};
  m.instances = {{0, TILEC_TASK_EMBED, {}, "add"},
                 {1, TILEC_TASK_LINEAR, {}, "double_plus_pos"}};
  m.smTasks.resize(size_t(sms));
  m.kernelFile = "test_kernel.cu";
  KVCacheInfo cache;
  cache.name = "full";
  cache.capacity = 4096;
  m.caches = {cache};
  return m;
}

/// tokens + 1 on the first SM, then 2 x that + position on the last.
EngineManifest twoSmManifest(int sms) {
  EngineManifest m = baseManifest(sms);
  m.ops = {"add_one", "double_plus_pos"};
  m.events = {{"add_one", 1}, {"double_plus_pos", 1}};
  m.smTasks[0].push_back(task(0, 0, {kTokens, kScratch, 1, kT}, -1, 0, 0));
  m.smTasks[size_t(sms - 1)].push_back(
      task(1, 1, {kScratch, kArgmax, kPositions, kT, kLogits}, 0, 1, 1));
  return m;
}

GpuEngineOptions testOptions() {
  GpuEngineOptions o;
  o.zeroWeights = true;
  o.progress = false;
  o.watchdogMs = 2000;
  return o;
}

std::vector<int32_t> consecutive(int32_t pos0) {
  std::vector<int32_t> p(kT);
  std::iota(p.begin(), p.end(), pos0);
  return p;
}

/// Runs `body` and returns the tilec::Error's message ("" if none).
template <typename F> std::string errorOf(F body) {
  try {
    body();
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

#define EXPECT_CONTAINS(text, part)                                            \
  EXPECT_NE(std::string(text).find(part), std::string::npos)                   \
      << "expected \"" << (part) << "\" in:\n"                                 \
      << (text)

//===--- The device
//---------------------------------------------------------===//

TEST(GpuRuntime, DriverAndDeviceProperties) {
  REQUIRE_GPU();
  CudaDriver &d = CudaDriver::get();
  EXPECT_GE(d.version(), CUDA_VERSION);
  std::vector<GpuDeviceInfo> gpus = listGpus();
  ASSERT_FALSE(gpus.empty());
  for (const GpuDeviceInfo &g : gpus) {
    note(g.describe());
    EXPECT_GT(g.sms, 0);
    EXPECT_GT(g.totalMemory, int64_t(1) << 30);
    EXPECT_GE(g.smemPerBlockOptin, 48 * 1024);
    if (g.major == 9 && g.minor == 0) {
      EXPECT_EQ(g.arch, "sm_90a");
      EXPECT_EQ(g.smemPerBlockOptin, 227 * 1024);
    }
  }
  EXPECT_THROW(GpuEngine(baseManifest(1), kTestKernel,
                         [] {
                           GpuEngineOptions o = testOptions();
                           o.device = 1000;
                           return o;
                         }()),
               Error);
}

//===--- Steps
//----------------------------------------------------------------===//

TEST(GpuRuntime, StepsRunAcrossSmsWithEventEpochs) {
  REQUIRE_GPU();
  const int sms = listGpus().at(0).sms;
  GpuEngine engine(twoSmManifest(sms), kTestKernel, testOptions());
  const GpuLoadInfo &info = engine.loadInfo();
  note(fmt::format("test engine on {} SMs: {} registers/thread, {} CTA/SM, "
                   "NVRTC {:.2f} s (cache hit: {})",
                   sms, info.registers, info.blocksPerSm, info.compileSeconds,
                   info.cacheHit));
  EXPECT_GE(info.blocksPerSm, 1);
  auto wallStart = std::chrono::steady_clock::now();
  for (int s = 0; s < 200; ++s) {
    if (s == 10)
      wallStart = std::chrono::steady_clock::now();
    std::vector<int32_t> tokens = {s, 7 * s, 3, 100 + s};
    StepOutput o = engine.step(tokens, consecutive(5 * s), s % 10 == 0);
    ASSERT_EQ(o.argmax.size(), size_t(kT));
    for (int64_t t = 0; t < kT; ++t)
      ASSERT_EQ(o.argmax[size_t(t)], 2 * (tokens[size_t(t)] + 1) + 5 * s + t)
          << "step " << s << " token " << t;
    if (s % 10 == 0) {
      ASSERT_EQ(o.logits.size(), size_t(2 * kT));
      EXPECT_EQ(o.logits[0], float(o.argmax[0]));
      EXPECT_EQ(o.logits[1], -1.0f);
    } else {
      EXPECT_TRUE(o.logits.empty());
    }
  }
  double wallUs = 1e6 *
                  std::chrono::duration<double>(
                      std::chrono::steady_clock::now() - wallStart)
                      .count() /
                  190;
  EXPECT_EQ(engine.stepsRun(), 200u);
  std::vector<float> ms = engine.stepMillis();
  ASSERT_EQ(ms.size(), 200u);
  std::sort(ms.begin() + 10, ms.end());
  note(fmt::format("empty step of {} CTAs (2 tasks, 1 cross-SM event): "
                   "kernel median {:.1f} us, min {:.1f} us; step() on the "
                   "host {:.1f} us per call (copies, launch, wait; logits "
                   "every 10th)",
                   sms, 1000 * ms[10 + 95], 1000 * ms[10], wallUs));
}

/// SM s-1 -> s-2 -> ... -> 0, then a final task on SM 0: the CTA launched
/// first waits for the last one.
EngineManifest chainManifest(int sms) {
  EngineManifest m = baseManifest(sms);
  for (int i = 0; i < sms; ++i) {
    int sm = sms - 1 - i;
    m.ops.push_back(fmt::format("link_{}", i));
    m.events.push_back({fmt::format("link_{}", i), 1});
    int64_t in = i == 0 ? kTokens : kScratch + 4 * kT * (i - 1);
    int64_t out = kScratch + 4 * kT * i;
    m.smTasks[size_t(sm)].push_back(
        task(0, i, {in, out, 1, kT}, i == 0 ? -1 : i - 1, 1, i));
  }
  m.ops.push_back("final");
  m.events.push_back({"final", 1});
  m.smTasks[0].push_back(
      task(1, sms, {kScratch + 4 * kT * (sms - 1), kArgmax, kPositions, kT, -1},
           sms - 1, 1, sms));
  return m;
}

/// Median kernel time of `steps` steps of the chain (checking every result).
double chainMedianMs(GpuEngine &engine, int sms, int steps) {
  for (int s = 0; s < steps; ++s) {
    std::vector<int32_t> tokens = {s, 1, 2, 3};
    StepOutput o = engine.step(tokens, consecutive(s));
    for (int64_t t = 0; t < kT; ++t)
      EXPECT_EQ(o.argmax[size_t(t)], 2 * (tokens[size_t(t)] + sms) + s + t)
          << "step " << s;
  }
  std::vector<float> ms = engine.stepMillis();
  ms.erase(ms.begin(), ms.end() - steps);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Regression: alloc() zeroes each region on the engine's non-blocking stream
// and the task table was copied with a synchronous (legacy-stream) copy, which
// does not wait for it: behind the memset of a large weight region, the table's
// own memset landed after the copy and every task became all zeros (a 4.4 GB
// MiMo-V2.5-Pro layer ran every task as a no-op in 19 us and gave token 0).
TEST(GpuRuntime, TaskTableSurvivesZeroingALargeWeightRegion) {
  REQUIRE_GPU();
  const GpuDeviceInfo gpu = listGpus().at(0);
  const int64_t weights = int64_t(16) << 30;
  if (gpu.totalMemory < weights + (int64_t(8) << 30))
    GTEST_SKIP() << "needs a GPU of 24 GiB or more";
  for (int attempt = 0; attempt < 3; ++attempt) {
    EngineManifest m = twoSmManifest(gpu.sms);
    m.weightBytes = weights;
    GpuEngine engine(m, kTestKernel, testOptions());
    std::vector<int32_t> tokens = {1, 2, 3, 4};
    StepOutput o = engine.step(tokens, consecutive(0));
    ASSERT_EQ(o.argmax.size(), size_t(kT));
    for (int64_t t = 0; t < kT; ++t)
      EXPECT_EQ(o.argmax[size_t(t)], 2 * (tokens[size_t(t)] + 1) + t)
          << "attempt " << attempt << " token " << t;
  }
}

TEST(GpuRuntime, ChainThroughEverySmNeedsEveryCtaResident) {
  REQUIRE_GPU();
  const int sms = listGpus().at(0).sms;
  GpuEngine engine(chainManifest(sms), kTestKernel, testOptions());
  double ms = chainMedianMs(engine, sms, 50);
  note(fmt::format("chain of {} cross-SM events: median step {:.1f} us "
                   "({:.2f} us per hop)",
                   sms, 1000 * ms, 1000 * ms / sms));
}

TEST(GpuRuntime, ChainLatencyAgainstHostFlagPolling) {
  REQUIRE_GPU();
  // Waiting CTAs that read the host-mapped report flag share PCIe: how much
  // does that slow the events down? (Informative: no timing is asserted.)
  const int sms = listGpus().at(0).sms;
  for (int pollNs : {0, 20000, 200000, 2000000}) {
    GpuEngineOptions o = testOptions();
    o.nvrtcOptions = {fmt::format("-DTEST_HOST_POLL_NS={}", pollNs)};
    GpuEngine engine(chainManifest(sms), kTestKernel, o);
    double ms = chainMedianMs(engine, sms, 30);
    note(fmt::format("chain, host flag read every {}: {:.2f} us per hop",
                     pollNs ? fmt::format("{} us", pollNs / 1000)
                            : std::string("never"),
                     1000 * ms / sms));
  }
}

TEST(GpuRuntime, LoadsAnEngineDirectory) {
  REQUIRE_GPU();
  fs::path dir = fs::temp_directory_path() /
                 fmt::format("tilec-gpu-engine-{}", ::getpid());
  EngineManifest m = twoSmManifest(listGpus().at(0).sms);
  m.instances[0].params = {{"T", kT}, {"V", 1000}, {"H", 1}};
  ASSERT_EQ(writeEngine(dir.string(), m, kTestKernel), "");
  {
    GpuEngine engine(dir.string(), testOptions());
    EXPECT_EQ(engine.manifest().taskCount(), 2);
    EXPECT_EQ(engine.step({5, 6, 7, 8}, consecutive(10)).argmax,
              (std::vector<int32_t>{12 + 10, 14 + 11, 16 + 12, 18 + 13}));
  }
  fs::remove_all(dir);
}

TEST(GpuRuntime, GenerateGreedyOverTheGpuExecutor) {
  REQUIRE_GPU();
  GpuEngine engine(twoSmManifest(2), kTestKernel, testOptions());
  std::vector<int32_t> prompt = {3, 1, 4, 1, 5, 9};
  std::vector<int32_t> out = generateGreedy(engine, prompt, 5);
  // The "model": next = 2 * (token + 1) + position.
  std::vector<int32_t> expected;
  int32_t next = 2 * (prompt.back() + 1) + int32_t(prompt.size() - 1);
  for (int i = 0; i < 5; ++i) {
    expected.push_back(next);
    next = 2 * (next + 1) + int32_t(prompt.size()) + i;
  }
  EXPECT_EQ(out, expected);
}

TEST(GpuRuntime, TraceStampsEveryTask) {
  REQUIRE_GPU();
  GpuEngineOptions o = testOptions();
  o.trace = true;
  GpuEngine engine(twoSmManifest(2), kTestKernel, o);
  engine.step({1, 2, 3, 4}, consecutive(0));
  std::vector<uint64_t> trace = engine.readTrace();
  constexpr size_t W = TILEC_TRACE_WORDS;
  ASSERT_EQ(trace.size(), 2u * 1 * W); // [sms, max tasks, TILEC_TRACE_WORDS]
  for (size_t sm = 0; sm < 2; ++sm) {
    const uint64_t *t = &trace[sm * W];
    EXPECT_GT(t[TILEC_TRACE_COMPUTE_BEGIN], 0u);
    EXPECT_GE(t[TILEC_TRACE_COMPUTE_END], t[TILEC_TRACE_COMPUTE_BEGIN]);
    // The test kernel's waits (thread 0) before the task; no load role.
    EXPECT_GT(t[TILEC_TRACE_WAIT_BEGIN], 0u);
    EXPECT_GE(t[TILEC_TRACE_WAIT_END], t[TILEC_TRACE_WAIT_BEGIN]);
    EXPECT_LE(t[TILEC_TRACE_WAIT_END], t[TILEC_TRACE_COMPUTE_BEGIN]);
    EXPECT_EQ(t[TILEC_TRACE_LOAD_BEGIN], 0u);
  }
  // The consumer on SM 1 ends after the producer on SM 0 ended.
  EXPECT_GE(trace[W + TILEC_TRACE_COMPUTE_END], trace[TILEC_TRACE_COMPUTE_END]);
}

//===--- The cubin cache
//--------------------------------------------------------===//

TEST(GpuRuntime, SecondLoadTakesTheCubinFromTheCache) {
  REQUIRE_GPU();
  fs::path home =
      fs::temp_directory_path() / fmt::format("tilec-gpu-cache-{}", ::getpid());
  fs::remove_all(home);
  std::string old =
      std::getenv("XDG_CACHE_HOME") ? std::getenv("XDG_CACHE_HOME") : "";
  setenv("XDG_CACHE_HOME", home.c_str(), 1);
  bool first, second, third;
  {
    GpuEngine a(twoSmManifest(2), kTestKernel, testOptions());
    first = a.loadInfo().cacheHit;
    EXPECT_EQ(fs::path(a.loadInfo().cubinPath).parent_path(), home / "tilec");
  }
  {
    GpuEngine b(twoSmManifest(2), kTestKernel, testOptions());
    second = b.loadInfo().cacheHit;
    EXPECT_EQ(b.step({1, 2, 3, 4}, consecutive(0)).argmax[0], 4);
  }
  {
    GpuEngineOptions o = testOptions();
    o.useCache = false;
    GpuEngine c(twoSmManifest(2), kTestKernel, o);
    third = c.loadInfo().cacheHit;
  }
  if (old.empty())
    unsetenv("XDG_CACHE_HOME");
  else
    setenv("XDG_CACHE_HOME", old.c_str(), 1);
  fs::remove_all(home);
  EXPECT_FALSE(first);
  EXPECT_TRUE(second);
  EXPECT_FALSE(third);
}

//===--- Refusals
//---------------------------------------------------------------===//

TEST(GpuRuntime, RefusesEnginesThisGpuCannotRun) {
  REQUIRE_GPU();
  const GpuDeviceInfo dev = listGpus().at(0);
  auto load = [&](EngineManifest m) {
    return errorOf([&] { GpuEngine engine(m, kTestKernel, testOptions()); });
  };
  EngineManifest m = twoSmManifest(2);
  m.dynamicSmem = dev.smemPerBlockOptin + 1024;
  std::string e = load(m);
  EXPECT_CONTAINS(e, "dynamic shared memory");
  note("refused: " + e.substr(0, 160));

  m = baseManifest(dev.sms + 1);
  e = load(m);
  EXPECT_CONTAINS(e, fmt::format("engine compiled for {} SMs, this GPU ({}) "
                                 "has {}",
                                 dev.sms + 1, dev.name, dev.sms));
  EXPECT_CONTAINS(e, "--target");
  note("refused: " + e.substr(0, 160));

  m = twoSmManifest(2);
  m.arch = dev.arch == "sm_80" ? "sm_90a" : "sm_80";
  e = load(m);
  EXPECT_CONTAINS(e, "was compiled for " + m.arch);
  EXPECT_CONTAINS(e, dev.arch);

  m = twoSmManifest(2);
  m.threadsPerBlock = 2048;
  EXPECT_CONTAINS(load(m), "2048 threads per block");

  m = twoSmManifest(2);
  m.weightBytes = dev.totalMemory * 2;
  e = load(m);
  EXPECT_CONTAINS(e, "needs");
  EXPECT_CONTAINS(e, "free of");
  EXPECT_CONTAINS(e, "weights " + formatBytes(m.weightBytes));
  note("refused: " + e.substr(0, 160));

  // Static + dynamic shared memory past the limit: the module's own check.
  m = twoSmManifest(2);
  m.dynamicSmem = dev.smemPerBlockOptin - 8 * 1024;
  std::string bigStatic = R"(
extern "C" __global__ void tilec_step(const TilecStepParams p) {
  __shared__ int big[8192];
  big[threadIdx.x] = threadIdx.x;
  __syncthreads();
  if (p.arena) p.arena[threadIdx.x] = (unsigned char)big[(threadIdx.x + 1) % 128];
}
)";
  e = errorOf([&] {
    GpuEngine engine(m, "#include \"runtime/abi/TaskAbi.h\"\n" + bigStatic,
                     testOptions());
  });
  EXPECT_CONTAINS(e, "static");
  note("refused: " + e.substr(0, 160));

  // A source without tilec_step.
  e = errorOf([&] {
    GpuEngine engine(twoSmManifest(2),
                     "extern \"C\" __global__ void other() {}\n",
                     testOptions());
  });
  EXPECT_CONTAINS(e, "no kernel named tilec_step");
}

//===--- Hangs, timeouts, bad input
//----------------------------------------------===//

TEST(GpuRuntime, WatchdogReportNamesSmTaskOpAndEvent) {
  REQUIRE_GPU();
  EngineManifest m = baseManifest(2);
  m.ops = {"producer_that_never_runs", "stuck_consumer"};
  m.events = {{"never_signalled", 1}, {"done", 1}};
  // SM 1, task 1 waits for an event no task signals.
  m.smTasks[1].push_back(task(0, 0, {kTokens, kScratch, 0, kT}));
  m.smTasks[1].push_back(
      task(1, 1, {kScratch, kArgmax, kPositions, kT, -1}, 0, 1, 1));
  GpuEngineOptions o = testOptions();
  o.watchdogMs = 200;
  GpuEngine engine(m, kTestKernel, o);
  auto start = std::chrono::steady_clock::now();
  std::string e = errorOf([&] { engine.step({1, 2, 3, 4}, consecutive(0)); });
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  EXPECT_CONTAINS(e, "step 0: the megakernel hung");
  EXPECT_CONTAINS(e, "SM 1 task 1");
  EXPECT_CONTAINS(e, "op 1 'stuck_consumer'");
  EXPECT_CONTAINS(e, "instance 1 double_plus_pos");
  EXPECT_CONTAINS(e, "event 0 'never_signalled' to reach 1");
  EXPECT_CONTAINS(e, "stayed at 0");
  EXPECT_CONTAINS(e, "200 ms");
  EXPECT_LT(seconds, 5.0);
  note(fmt::format("watchdog ({:.2f} s): {}", seconds, e));
  // The kernel returned: the engine starts the next step from epoch 0 and
  // reports the same hang again rather than anything stale.
  EXPECT_EQ(engine.stepsRun(), 0u);
  EXPECT_CONTAINS(errorOf([&] {
                    engine.step({1, 2, 3, 4}, consecutive(0));
                  }),
                  "SM 1 task 1");
}

TEST(GpuRuntime, HostTimeoutStopsAKernelWithoutWatchdog) {
  REQUIRE_GPU();
  EngineManifest m = baseManifest(2);
  m.ops = {"stuck"};
  m.events = {{"never_signalled", 1}};
  m.smTasks[0].push_back(task(0, 0, {kTokens, kArgmax, 0, kT}, 0, 1, -1));
  GpuEngineOptions o = testOptions();
  o.watchdogMs = 0;
  o.timeoutMs = 500;
  GpuEngine engine(m, kTestKernel, o);
  std::string e = errorOf([&] { engine.step({1, 2, 3, 4}, consecutive(0)); });
  EXPECT_CONTAINS(e, "did not finish within 500 ms (host timeout)");
  EXPECT_CONTAINS(e, "watchdog (off) reported nothing");
  EXPECT_CONTAINS(e, "stopped on the host's stop request");
  note("host timeout: " + e);
  // Still usable: the same hang is caught again.
  EXPECT_CONTAINS(errorOf([&] {
                    engine.step({1, 2, 3, 4}, consecutive(0));
                  }),
                  "host timeout");
}

TEST(GpuRuntime, BadInputIsReported) {
  REQUIRE_GPU();
  GpuEngine engine(twoSmManifest(2), kTestKernel, testOptions());
  std::string e = errorOf([&] { engine.step({1, -5, 3, 4}, consecutive(0)); });
  EXPECT_CONTAINS(e, "outside the vocabulary");
  EXPECT_CONTAINS(e, "1,-5,3,4");
  // And the engine goes on.
  EXPECT_EQ(engine.step({1, 2, 3, 4}, consecutive(0)).argmax[1], 2 * 3 + 1);
  EXPECT_CONTAINS(errorOf([&] {
                    engine.step({1, 2, 3}, consecutive(0));
                  }),
                  "4 tokens per step");
  EXPECT_CONTAINS(errorOf([&] {
                    engine.step({1, 2, 3, 4}, {0, 1, 3, 4});
                  }),
                  "consecutive");
}

//===--- Weights
//---------------------------------------------------------------===//

/// An engine of the test kernel whose weight region holds every tensor of
/// `model` (plus row-concatenated parts: layer 0's q/k/v and, for dense
/// layers, gate/up), laid out as docs/engine.md says.
EngineManifest weightManifest(const Model &model,
                              std::vector<WeightSpec> specs = {}) {
  EngineManifest m = twoSmManifest(2);
  m.modelName = model.target.name;
  // The weight sources get the Model itself; the texts are for realism only
  // (a drafter the DFlash format cannot express is left out of them).
  m.modelConfig = toHubJson(model.target).dump();
  try {
    if (model.drafter)
      m.drafterConfig = toDrafterJson(*model.drafter, model.target).dump();
  } catch (const Error &) {
  }
  if (specs.empty())
    specs = modelWeights(model);
  int64_t at = 0;
  auto place = [&](WeightInfo w, WeightFormat format, bool f32) {
    w.format = f32 ? "f32" : weightFormatName(format);
    int64_t matrices = w.shape.size() == 3 ? w.shape[0] : 1;
    int64_t rows = w.shape.size() >= 2 ? w.shape[w.shape.size() - 2] : 1;
    int64_t cols = w.shape.back();
    int64_t n = rows * cols, data = 0, scales = 0;
    if (f32)
      data = 4 * n;
    else if (format == WeightFormat::BF16)
      data = 2 * n;
    else if (format == WeightFormat::FP8Block)
      data = n, scales = ((rows + 127) / 128) * ((cols + 127) / 128) * 4;
    else
      data = n / 2, scales = n / 32;
    w.offset = at;
    w.bytes = matrices * data;
    at = (at + w.bytes + 255) / 256 * 256;
    if (scales) {
      w.scaleOffset = at;
      w.scaleBytes = matrices * scales;
      at = (at + w.scaleBytes + 255) / 256 * 256;
    }
    m.weights.push_back(w);
  };
  for (const WeightSpec &s : specs) {
    WeightInfo w;
    w.name = s.name;
    w.shape = s.shape;
    place(w, s.format, s.role == WeightRole::RouterBias);
  }
  auto find = [&](const std::string &suffix) -> const WeightSpec * {
    for (const WeightSpec &s : specs)
      if (s.name.rfind("model.layers.0.", 0) == 0 &&
          s.name.size() > suffix.size() &&
          s.name.compare(s.name.size() - suffix.size(), suffix.size(),
                         suffix) == 0)
        return &s;
    return nullptr;
  };
  auto concat = [&](const std::string &name,
                    std::vector<const WeightSpec *> parts) {
    for (const WeightSpec *p : parts)
      if (!p)
        return;
    WeightInfo w;
    w.name = name;
    int64_t rows = 0;
    for (const WeightSpec *p : parts) {
      rows += p->shape[0];
      w.parts.push_back(p->name);
    }
    w.shape = {rows, parts[0]->shape[1]};
    place(w, parts[0]->format, false);
  };
  concat("model.layers.0.self_attn.qkv_proj.weight",
         {find("self_attn.q_proj.weight"), find("self_attn.k_proj.weight"),
          find("self_attn.v_proj.weight")});
  concat("model.layers.0.mlp.gate_up_proj.weight",
         {find("mlp.gate_proj.weight"), find("mlp.up_proj.weight")});
  m.weightBytes = at;
  return m;
}

/// Compares the GPU's weight region with WeightPacker's, weight by weight.
void expectWeightsEqual(GpuEngine &engine, const EngineManifest &m,
                        const std::vector<uint8_t> &host) {
  std::vector<uint8_t> gpu = engine.readWeights(0, m.weightBytes);
  ASSERT_EQ(gpu.size(), host.size());
  int bad = 0;
  for (const WeightInfo &w : m.weights)
    for (auto [offset, bytes, what] :
         {std::tuple<int64_t, int64_t, const char *>{w.offset, w.bytes, "data"},
          {w.scaleOffset, w.scaleBytes, "scales"}}) {
      if (bytes <= 0)
        continue;
      auto g = gpu.cbegin() + offset;
      auto h = host.cbegin() + offset;
      auto diff = std::mismatch(g, g + bytes, h);
      if (diff.first != g + bytes && ++bad <= 10)
        ADD_FAILURE() << w.name << " (" << w.format << ") " << what
                      << " differ first at byte " << (diff.first - g) << " of "
                      << bytes << ": gpu " << int(*diff.first) << ", host "
                      << int(*diff.second);
    }
  EXPECT_EQ(bad, 0) << "weights differing from WeightPacker's";
  EXPECT_TRUE(gpu == host) << "bytes between weights differ";
}

class GpuWeights : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuWeights, SynthesizedOnTheGpuEqualWeightPacker) {
  REQUIRE_GPU();
  if (!fs::exists(deviceIncludeDir() + "/runtime/device/synthetic.cuh"))
    GTEST_SKIP() << "runtime/device/synthetic.cuh is not there yet";
  Model model = *findPreset(GetParam());
  EngineManifest m = weightManifest(model);
  GpuEngineOptions o = testOptions();
  o.zeroWeights = false;
  o.weights = WeightSourceSpec::synthetic(11);
  o.weights.model = model;
  GpuEngine engine(m, kTestKernel, o);
  std::vector<uint8_t> host(size_t(m.weightBytes));
  packWeights(m, o.weights, host.data());
  expectWeightsEqual(engine, m, host);
  note(fmt::format("{}: {} weights, {}, {} in {:.2f} s", GetParam(),
                   m.weights.size(), formatBytes(m.weightBytes),
                   engine.loadInfo().weightMethod,
                   engine.loadInfo().weightSeconds));
}

TEST_P(GpuWeights, UploadedFromTheHostEqualWeightPacker) {
  REQUIRE_GPU();
  Model model = *findPreset(GetParam());
  EngineManifest m = weightManifest(model);
  GpuEngineOptions o = testOptions();
  o.zeroWeights = false;
  o.weights = WeightSourceSpec::synthetic(12);
  o.weights.model = model;
  o.synthesizeOnDevice = false;
  o.stagingBytes = 4096; // most matrices take the large-piece path
  GpuEngine engine(m, kTestKernel, o);
  std::vector<uint8_t> host(size_t(m.weightBytes));
  packWeights(m, o.weights, host.data());
  expectWeightsEqual(engine, m, host);
}

TEST(GpuRuntime, SynthesisAtFullSizeShapes) {
  REQUIRE_GPU();
  if (!fs::exists(deviceIncludeDir() + "/runtime/device/synthetic.cuh"))
    GTEST_SKIP() << "runtime/device/synthetic.cuh is not there yet";
  // One tensor of each role of a full-size model: element indices in the
  // billions, every storage format, expert stacks of GiB.
  Model model = *findPreset("mimo-v2-flash");
  std::vector<WeightSpec> picked;
  for (WeightRole role : {WeightRole::Embedding, WeightRole::ExpertsGateUp,
                          WeightRole::ExpertsDown, WeightRole::Linear,
                          WeightRole::RouterBias, WeightRole::Norm})
    for (const WeightSpec &s : modelWeights(model))
      if (s.role == role && !s.isDrafter() &&
          (role != WeightRole::Linear || s.format == WeightFormat::FP8Block)) {
        picked.push_back(s);
        break;
      }
  EngineManifest m = weightManifest(model, picked);
  GpuEngineOptions o = testOptions();
  o.zeroWeights = false;
  o.weights = WeightSourceSpec::synthetic(3);
  o.weights.model = model;
  GpuEngine engine(m, kTestKernel, o);
  const GpuLoadInfo &info = engine.loadInfo();
  note(fmt::format("full-size synthesis: {} in {:.2f} s ({:.1f} GB/s): {}",
                   formatBytes(m.weightBytes), info.weightSeconds,
                   double(m.weightBytes) / info.weightSeconds / 1e9,
                   info.weightMethod));
  // The last and a middle matrix of every stack, against the host.
  WeightPacker packer(m, o.weights);
  for (const WeightInfo &w : m.weights) {
    WeightLayout l = weightLayout(w);
    for (int64_t i : {l.matrices - 1, l.matrices / 2}) {
      std::vector<uint8_t> host(size_t(l.matrixBytes + l.matrixScaleBytes));
      packer.packMatrix(w, i, host.data(),
                        l.matrixScaleBytes ? host.data() + l.matrixBytes
                                           : nullptr);
      std::vector<uint8_t> gpu =
          engine.readWeights(w.offset + i * l.matrixBytes, l.matrixBytes);
      if (l.matrixScaleBytes) {
        std::vector<uint8_t> sc = engine.readWeights(
            w.scaleOffset + i * l.matrixScaleBytes, l.matrixScaleBytes);
        gpu.insert(gpu.end(), sc.begin(), sc.end());
      }
      EXPECT_TRUE(gpu == host) << w.name << " matrix " << i << " of "
                               << l.matrices << " (" << w.format << ")";
      if (l.matrices == 1)
        break;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Presets, GpuWeights,
                         ::testing::Values("tiny", "tiny-groups", "tiny-window",
                                           "tiny-pro"),
                         [](const auto &info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

} // namespace
