//===- GpuEngine.cpp - Loading an engine onto a GPU and running its steps -===//
#include "runtime/cuda/GpuEngine.h"

#include "models/core/Error.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/DeviceSynthesizer.h"
#include "runtime/cuda/Nvrtc.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace tilec {

std::string GpuDeviceInfo::describe() const {
  return fmt::format("GPU {}: {} ({}, {} SMs, {} of memory, {} smem per "
                     "block, driver CUDA {})",
                     ordinal, name, arch, sms, formatBytes(totalMemory),
                     formatBytes(smemPerBlockOptin),
                     cudaVersionText(driverVersion));
}

namespace {

CudaDriver &driverOrFail(const char *what) {
  std::string reason;
  if (!CudaDriver::available(&reason))
    fail("{}: no usable GPU here: {}", what, reason);
  return CudaDriver::get();
}

GpuDeviceInfo queryDevice(CudaDriver &d, int ordinal) {
  if (ordinal < 0 || ordinal >= d.deviceCount())
    fail("GPU {} does not exist: the driver sees {} GPU{} (0..{})", ordinal,
         d.deviceCount(), d.deviceCount() == 1 ? "" : "s", d.deviceCount() - 1);
  CUdevice dev = 0;
  d.check(d.cuDeviceGet(&dev, ordinal),
          fmt::format("cuDeviceGet({})", ordinal));
  GpuDeviceInfo info;
  info.ordinal = ordinal;
  char name[256] = {};
  d.check(d.cuDeviceGetName(name, sizeof name - 1, dev), "cuDeviceGetName");
  info.name = name;
  auto attr = [&](CUdevice_attribute a, const char *what) {
    int value = 0;
    d.check(d.cuDeviceGetAttribute(&value, a, dev),
            fmt::format("reading {} of GPU {}", what, ordinal));
    return value;
  };
  info.major = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                    "the compute capability");
  info.minor = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                    "the compute capability");
  info.arch = archForCapability(info.major, info.minor);
  info.sms = attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                  "the multiprocessor count");
  info.smemPerBlockOptin =
      attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
           "the shared memory per block");
  info.smemPerSm =
      attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
           "the shared memory per SM");
  info.l2Bytes = attr(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, "the L2 size");
  info.maxThreadsPerBlock =
      attr(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, "the threads per block");
  size_t total = 0;
  d.check(d.cuDeviceTotalMem(&total, dev), "cuDeviceTotalMem");
  info.totalMemory = int64_t(total);
  info.driverVersion = d.version();
  return info;
}

} // namespace

CopyBandwidth measureCopyBandwidth(int ordinal, int64_t bytes, int reps,
                                   int trials) {
  if (bytes < (int64_t(1) << 20) || reps < 1 || trials < 1)
    fail("HBM bandwidth: copy at least 1 MiB, at least once (got {} bytes, "
         "{} reps, {} trials)",
         bytes, reps, trials);
  CudaDriver &d = driverOrFail("measuring HBM bandwidth");
  CopyBandwidth out;
  out.device = queryDevice(d, ordinal);
  out.bytes = bytes;
  out.reps = reps;
  out.trials = trials;
  CUdevice device = 0;
  d.check(d.cuDeviceGet(&device, ordinal), "cuDeviceGet");
  CUcontext ctx = nullptr;
  d.check(d.cuDevicePrimaryCtxRetain(&ctx, device),
          fmt::format("creating a CUDA context on GPU {}", ordinal));
  CUdeviceptr a = 0, b = 0;
  CUstream stream = nullptr;
  CUevent start = nullptr, end = nullptr;
  // Frees everything on every path (errors throw).
  struct Cleanup {
    CudaDriver &d;
    CUdevice device;
    CUdeviceptr &a, &b;
    CUstream &stream;
    CUevent &start, &end;
    ~Cleanup() {
      if (stream)
        d.cuStreamSynchronize(stream);
      for (CUdeviceptr p : {a, b})
        if (p)
          d.cuMemFree(p);
      for (CUevent e : {start, end})
        if (e)
          d.cuEventDestroy(e);
      if (stream)
        d.cuStreamDestroy(stream);
      d.cuDevicePrimaryCtxRelease(device);
    }
  } cleanup{d, device, a, b, stream, start, end};
  d.check(d.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  size_t freeBytes = 0, totalBytes = 0;
  d.check(d.cuMemGetInfo(&freeBytes, &totalBytes), "cuMemGetInfo");
  if (2 * bytes > int64_t(freeBytes))
    fail("HBM bandwidth: two buffers of {} do not fit in GPU {}'s free {}",
         formatBytes(bytes), ordinal, formatBytes(int64_t(freeBytes)));
  d.check(d.cuMemAlloc(&a, size_t(bytes)), "HBM bandwidth: cuMemAlloc");
  d.check(d.cuMemAlloc(&b, size_t(bytes)), "HBM bandwidth: cuMemAlloc");
  d.check(d.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  d.check(d.cuEventCreate(&start, CU_EVENT_DEFAULT), "cuEventCreate");
  d.check(d.cuEventCreate(&end, CU_EVENT_DEFAULT), "cuEventCreate");
  d.check(d.cuMemsetD8Async(a, 1, size_t(bytes), stream), "cuMemsetD8Async");
  for (int trial = -1; trial < trials; ++trial) { // trial -1: warm-up
    d.check(d.cuEventRecord(start, stream), "cuEventRecord");
    for (int r = 0; r < reps; ++r)
      d.check(d.cuMemcpyDtoDAsync(r % 2 ? a : b, r % 2 ? b : a, size_t(bytes),
                                  stream),
              "HBM bandwidth: cuMemcpyDtoDAsync");
    d.check(d.cuEventRecord(end, stream), "cuEventRecord");
    d.check(d.cuEventSynchronize(end), "cuEventSynchronize");
    float ms = 0;
    d.check(d.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime");
    if (trial < 0 || ms <= 0)
      continue;
    double gbps = 2.0 * double(bytes) * reps / (double(ms) * 1e6);
    out.trialsGbps.push_back(gbps);
    out.gbps = std::max(out.gbps, gbps);
  }
  return out;
}

std::vector<GpuDeviceInfo> listGpus() {
  CudaDriver &d = driverOrFail("listing GPUs");
  std::vector<GpuDeviceInfo> out;
  for (int i = 0; i < d.deviceCount(); ++i)
    out.push_back(queryDevice(d, i));
  return out;
}

//===----------------------------------------------------------------------===//
// The engine
//===----------------------------------------------------------------------===//

struct GpuEngine::Impl {
  EngineManifest m;
  std::string source;
  GpuEngineOptions opt;
  CudaDriver *d = nullptr;
  GpuDeviceInfo dev;
  GpuLoadInfo info;

  CUdevice device = 0;
  CUcontext ctx = nullptr;
  CUmodule module = nullptr;
  CUfunction fn = nullptr;
  CUfunction groupFn = nullptr; // tilec_task_group (options.perOpLaunch)
  CUstream stream = nullptr;
  CUevent start = nullptr, end = nullptr, done = nullptr;

  CUdeviceptr arena = 0, weights = 0, kv = 0, events = 0, signals = 0,
              tasks = 0, smBegin = 0, trace = 0, groupTasks = 0;
  /// perOpLaunch: [first task, count] of each launch in groupTasks.
  std::vector<std::pair<int32_t, int32_t>> groups;
  int *report = nullptr; // pinned, mapped
  CUdeviceptr reportDev = 0;
  void *io = nullptr; // pinned: tokens + positions in, argmax out
  int64_t maxTasks = 0;
  int64_t tokensOffset = 0, positionsOffset = 0, argmaxOffset = 0;
  int64_t logitsOffset = -1, logitsCount = 0;

  uint64_t step = 0;
  std::vector<float> millis;
  /// Set when the GPU is in a state we cannot recover from (a kernel that
  /// never returned, a sticky CUDA error): later calls fail with it, and the
  /// destructor releases nothing that would wait for the device.
  std::string poisoned;

  void load();
  void checkDevice();
  void compile();
  void allocate();
  void uploadTables();
  void fillWeights();
  void uploadPacked();
  CUdeviceptr alloc(int64_t bytes, const char *what);
  void current() const;
  void check(CUresult r, std::string_view what) const { d->check(r, what); }
  uint64_t timeoutMs() const;
  std::string hangReport(uint64_t stepIndex) const;
  void resetEvents();
  void release();
  /// One launch: `in` copied to the arena first, `out` back after it, all on
  /// the stream; waits with the watchdog and timeout rules of GpuEngine.h.
  struct Copy {
    int64_t offset;
    void *host;
    size_t bytes;
  };
  void launchStep(const std::vector<Copy> &in, const std::vector<Copy> &out,
                  const std::string &inputs);
};

void GpuEngine::Impl::current() const {
  if (!poisoned.empty())
    fail("GPU engine: unusable after an earlier failure ({})", poisoned);
  check(d->cuCtxSetCurrent(ctx), "making the engine's CUDA context current");
}

CUdeviceptr GpuEngine::Impl::alloc(int64_t bytes, const char *what) {
  CUdeviceptr p = 0;
  // Never zero bytes: every region gets a valid, distinct address.
  size_t size = size_t(std::max<int64_t>(bytes, 256));
  CUresult r = d->cuMemAlloc(&p, size);
  if (r != CUDA_SUCCESS)
    fail("GPU {}: allocating the {} ({}) failed: {}", dev.ordinal, what,
         formatBytes(int64_t(size)), d->errorText(r));
  info.deviceBytes += int64_t(size);
  check(d->cuMemsetD8Async(p, 0, size, stream),
        fmt::format("zeroing the {}", what));
  return p;
}

uint64_t GpuEngine::Impl::timeoutMs() const {
  if (opt.timeoutMs)
    return opt.timeoutMs;
  return opt.watchdogMs ? 2 * opt.watchdogMs + 5000 : 60000;
}

void GpuEngine::Impl::checkDevice() {
  const std::string what =
      fmt::format("engine '{}' ({})", m.modelName, m.targetName);
  if (m.arch != dev.arch)
    fail("{} was compiled for {}, but GPU {} ({}) is {} (compute capability "
         "{}.{}); recompile the engine for this GPU (tilec --target)",
         what, m.arch, dev.ordinal, dev.name, dev.arch, dev.major, dev.minor);
  if (m.sms > dev.sms)
    fail("{}: engine compiled for {} SMs, this GPU ({}) has {} — recompile "
         "with --target for this GPU (its task lists need one co-resident CTA "
         "per SM)",
         what, m.sms, dev.name, dev.sms);
  if (m.sms <= 0)
    fail("{}: the manifest has {} SMs", what, m.sms);
  if (m.threadsPerBlock <= 0 || m.threadsPerBlock > dev.maxThreadsPerBlock ||
      m.threadsPerBlock % 32 != 0)
    fail("{}: {} threads per block; GPU {} allows multiples of 32 up to {}",
         what, m.threadsPerBlock, dev.ordinal, dev.maxThreadsPerBlock);
  if (m.dynamicSmem < 0 || m.dynamicSmem > dev.smemPerBlockOptin)
    fail("{}: needs {} bytes of dynamic shared memory per block, GPU {} ({}) "
         "gives at most {}; recompile for this GPU",
         what, m.dynamicSmem, dev.ordinal, dev.name, dev.smemPerBlockOptin);
  if (m.tokens <= 0)
    fail("{}: the manifest runs {} tokens per step", what, m.tokens);

  // Free memory: every region at once.
  int64_t tables = m.taskCount() * int64_t(sizeof(TilecTask)) +
                   (m.sms + 1) * 4 + int64_t(m.events.size()) * 12;
  int64_t traceBytes = 0;
  for (const auto &list : m.smTasks)
    maxTasks = std::max<int64_t>(maxTasks, int64_t(list.size()));
  if (opt.trace)
    traceBytes = m.sms * maxTasks * TILEC_TRACE_WORDS * 8;
  int64_t need = m.weightBytes + m.kvBytes + m.arenaBytes + tables + traceBytes;
  size_t freeBytes = 0, totalBytes = 0;
  check(d->cuMemGetInfo(&freeBytes, &totalBytes), "cuMemGetInfo");
  dev.freeMemory = int64_t(freeBytes);
  // Keep a margin for the module, the context's own heaps and the synthetic
  // generator's scratch.
  const int64_t margin = int64_t(256) << 20;
  if (need + margin > int64_t(freeBytes))
    fail("{} needs {} on the GPU (weights {}, KV cache {}, arena {}, tables "
         "{}{}) plus a {} margin, but GPU {} ({}) has {} free of {}; use a "
         "larger GPU or shard the model over more",
         what, formatBytes(need), formatBytes(m.weightBytes),
         formatBytes(m.kvBytes), formatBytes(m.arenaBytes), formatBytes(tables),
         traceBytes ? ", trace " + formatBytes(traceBytes) : std::string(),
         formatBytes(margin), dev.ordinal, dev.name,
         formatBytes(int64_t(freeBytes)), formatBytes(int64_t(totalBytes)));

  // The step's inputs and outputs.
  auto buffer = [&](const std::string &name, int64_t bytes, const char *role,
                    bool optional) -> int64_t {
    if (name.empty()) {
      if (optional)
        return -1;
      fail("{}: the manifest names no {} buffer", what, role);
    }
    const BufferInfo &b = m.buffer(name);
    if (b.offset < 0 || b.offset + b.bytes > m.arenaBytes)
      fail("{}: buffer '{}' [{}, {}) lies outside the arena of {} bytes", what,
           name, b.offset, b.offset + b.bytes, m.arenaBytes);
    if (bytes >= 0 && b.bytes < bytes)
      fail("{}: the {} buffer '{}' has {} bytes, a step needs {}", what, role,
           name, b.bytes, bytes);
    return b.offset;
  };
  // A DFlash step reads its block from the step state and writes [count,
  // tokens...]; a plain one takes tokens and positions and gives the argmax.
  bool spec = m.spec.enabled();
  if (spec) {
    buffer(m.spec.tokensBuffer, m.tokens * 4, "DFlash tokens", false);
    buffer(m.spec.positionsBuffer, m.tokens * 4, "DFlash positions", false);
    buffer(m.spec.forcedBuffer, 4, "DFlash forced", false);
    buffer(m.spec.outBuffer, (m.tokens + 1) * 4, "DFlash output", false);
  }
  tokensOffset = buffer(m.tokensBuffer, m.tokens * 4, "tokens", spec);
  positionsOffset = buffer(m.positionsBuffer, m.tokens * 4, "positions", spec);
  argmaxOffset = buffer(m.argmaxBuffer, m.tokens * 4, "argmax", spec);
  logitsOffset = buffer(m.logitsBuffer, -1, "logits", true);
  if (logitsOffset >= 0)
    logitsCount = m.buffer(m.logitsBuffer).bytes / 4;
}

NvrtcSource engineKernelSource(const EngineManifest &m, const std::string &text,
                               const std::string &arch) {
  int64_t maxTasks = 0;
  for (const auto &list : m.smTasks)
    maxTasks = std::max<int64_t>(maxTasks, int64_t(list.size()));
  NvrtcSource src;
  src.name = m.kernelFile;
  src.text = text;
  src.arch = arch;
  src.defines = {fmt::format("TILEC_THREADS={}", m.threadsPerBlock),
                 fmt::format("TILEC_SMS={}", m.sms),
                 fmt::format("TILEC_SMEM_BYTES={}", m.dynamicSmem),
                 fmt::format("TILEC_MAX_TASKS={}", maxTasks)};
  return src;
}

void GpuEngine::Impl::compile() {
  NvrtcSource src = engineKernelSource(m, source, dev.arch);
  src.extraOptions = opt.nvrtcOptions;
  NvrtcSettings settings;
  settings.useCache = opt.useCache;
  settings.progress = opt.progress;
  settings.driverVersion = dev.driverVersion;
  NvrtcResult cubin = nvrtcCompile(src, settings);
  info.compileSeconds = cubin.seconds;
  info.cacheHit = cubin.cacheHit;
  info.cubinPath = cubin.cachePath;

  char errorLog[8192] = {};
  CUjit_option keys[] = {CU_JIT_ERROR_LOG_BUFFER,
                         CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {errorLog, reinterpret_cast<void *>(sizeof errorLog - 1)};
  CUresult r =
      d->cuModuleLoadDataEx(&module, cubin.cubin.data(), 2, keys, values);
  if (r != CUDA_SUCCESS)
    fail("GPU {}: loading the cubin of {} ({}) failed: {}{}{}", dev.ordinal,
         m.kernelFile, dev.arch, d->errorText(r), errorLog[0] ? "\n" : "",
         errorLog);
  r = d->cuModuleGetFunction(&fn, module, "tilec_step");
  if (r != CUDA_SUCCESS)
    fail("{}: no kernel named tilec_step (it must be extern \"C\" "
         "__global__): {}",
         m.kernelFile, d->errorText(r));

  if (opt.perOpLaunch) {
    r = d->cuModuleGetFunction(&groupFn, module, "tilec_task_group");
    if (r != CUDA_SUCCESS)
      fail("{}: no kernel named tilec_task_group, which the one-kernel-per-op "
           "mode launches (an engine from an older tilec: recompile it): {}",
           m.kernelFile, d->errorText(r));
    check(d->cuFuncSetAttribute(groupFn,
                                CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                int(m.dynamicSmem)),
          "raising tilec_task_group's dynamic shared memory");
  }

  auto attr = [&](CUfunction_attribute a, const char *what) {
    int value = 0;
    check(d->cuFuncGetAttribute(&value, a, fn),
          fmt::format("reading the {} of tilec_step", what));
    return value;
  };
  info.registers = attr(CU_FUNC_ATTRIBUTE_NUM_REGS, "registers");
  info.staticSmem = attr(CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, "static smem");
  info.localBytes = attr(CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, "local memory");
  int maxThreads =
      attr(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, "max threads per block");
  if (m.threadsPerBlock > maxThreads)
    fail("tilec_step uses {} registers per thread, so a block holds at most {} "
         "threads on {}, but the engine launches {}; recompile with fewer "
         "threads or a register budget",
         info.registers, maxThreads, dev.name, m.threadsPerBlock);
  if (info.staticSmem + m.dynamicSmem > dev.smemPerBlockOptin)
    fail("tilec_step needs {} bytes of static + {} of dynamic shared memory, "
         "GPU {} gives a block at most {}",
         info.staticSmem, m.dynamicSmem, dev.ordinal, dev.smemPerBlockOptin);
  check(d->cuFuncSetAttribute(fn,
                              CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                              int(m.dynamicSmem)),
        fmt::format("raising tilec_step's dynamic shared memory to {} bytes",
                    m.dynamicSmem));
  // Co-residency: the task lists spin on each other's events, so every CTA
  // must be resident at once: one per SM, on no more SMs than there are.
  int blocks = 0;
  check(d->cuOccupancyMaxActiveBlocksPerMultiprocessor(
            &blocks, fn, int(m.threadsPerBlock), size_t(m.dynamicSmem)),
        "cuOccupancyMaxActiveBlocksPerMultiprocessor");
  info.blocksPerSm = blocks;
  if (blocks < 1)
    fail("tilec_step cannot be resident on an SM of GPU {} ({}) with {} "
         "threads ({} registers each) and {} + {} bytes of shared memory: the "
         "persistent kernel's CTAs would not be co-resident; recompile with "
         "fewer threads, registers or shared memory",
         dev.ordinal, dev.name, m.threadsPerBlock, info.registers,
         info.staticSmem, m.dynamicSmem);
  if (int64_t(blocks) * dev.sms < m.sms)
    fail("tilec_step: {} CTAs cannot be co-resident on GPU {} ({} per SM x {} "
         "SMs)",
         m.sms, dev.ordinal, blocks, dev.sms);
}

void GpuEngine::Impl::allocate() {
  arena = alloc(m.arenaBytes, "activation arena");
  weights = alloc(m.weightBytes, "weight region");
  kv = alloc(m.kvBytes, "KV cache");
  events = alloc(int64_t(m.events.size()) * 8, "event counters");
  signals = alloc(int64_t(m.events.size()) * 4, "signals-per-step table");
  tasks = alloc(m.taskCount() * int64_t(sizeof(TilecTask)), "task table");
  smBegin = alloc((m.sms + 1) * 4, "per-SM task index");
  if (opt.trace)
    trace = alloc(m.sms * maxTasks * TILEC_TRACE_WORDS * 8, "trace buffer");
  if (opt.perOpLaunch)
    groupTasks =
        alloc(m.taskCount() * int64_t(sizeof(TilecTask)), "per-op task table");

  check(d->cuMemHostAlloc(reinterpret_cast<void **>(&report),
                          TILEC_REPORT_WORDS * sizeof(int),
                          CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_PORTABLE),
        "allocating the mapped hang-report buffer");
  std::memset(report, 0, TILEC_REPORT_WORDS * sizeof(int));
  check(d->cuMemHostGetDevicePointer(&reportDev, report, 0),
        "mapping the hang-report buffer");
  size_t ioBytes = size_t(m.tokens + 1) * 3 * sizeof(int32_t);
  check(d->cuMemHostAlloc(&io, ioBytes, 0), "allocating pinned step buffers");
  // alloc() zeroes on the engine's non-blocking stream, which synchronous
  // copies (the legacy stream) do not wait for: without this, zeroing a large
  // weight region could still be running when uploadTables() copies the task
  // table, and the table's own memset then lands after the copy (every task
  // all zeros: an engine of 4 GB ran every task as a no-op embed).
  check(d->cuStreamSynchronize(stream), "zeroing the engine's regions");
}

void GpuEngine::Impl::uploadTables() {
  std::vector<TilecTask> all;
  all.reserve(size_t(m.taskCount()));
  std::vector<int32_t> begin;
  for (const auto &list : m.smTasks) {
    begin.push_back(int32_t(all.size()));
    all.insert(all.end(), list.begin(), list.end());
  }
  if (all.size() > size_t(INT32_MAX))
    fail("engine: {} tasks do not fit the int32 per-SM index", all.size());
  begin.push_back(int32_t(all.size()));
  std::vector<uint32_t> perStep;
  for (const EventInfo &e : m.events)
    perStep.push_back(e.signalsPerStep);
  if (!all.empty())
    check(d->cuMemcpyHtoD(tasks, all.data(), all.size() * sizeof(TilecTask)),
          "uploading the task table");
  check(d->cuMemcpyHtoD(smBegin, begin.data(), begin.size() * 4),
        "uploading the per-SM task index");
  if (!perStep.empty())
    check(d->cuMemcpyHtoD(signals, perStep.data(), perStep.size() * 4),
          "uploading the signals-per-step table");
  if (opt.perOpLaunch) {
    std::vector<TilecTask> grouped;
    grouped.reserve(all.size());
    for (const LaunchGroup &g : launchGroups(m)) {
      groups.emplace_back(int32_t(grouped.size()), int32_t(g.tasks.size()));
      grouped.insert(grouped.end(), g.tasks.begin(), g.tasks.end());
    }
    if (!grouped.empty())
      check(d->cuMemcpyHtoD(groupTasks, grouped.data(),
                            grouped.size() * sizeof(TilecTask)),
            "uploading the per-op task table");
  }
}

void GpuEngine::Impl::uploadPacked() {
  WeightPacker packer(m, opt.weights);
  // Two pinned staging buffers: the host packs into one while the copy
  // engine drains the other.
  const int64_t stage =
      std::max<int64_t>(1, std::min<int64_t>(opt.stagingBytes, m.weightBytes));
  void *buffers[2] = {nullptr, nullptr};
  CUevent freed[2] = {nullptr, nullptr};
  struct Cleanup {
    Impl &self;
    void **buffers;
    CUevent *freed;
    ~Cleanup() {
      if (!self.poisoned.empty())
        return;
      self.d->cuStreamSynchronize(self.stream);
      for (int i = 0; i < 2; ++i) {
        if (buffers[i])
          self.d->cuMemFreeHost(buffers[i]);
        if (freed[i])
          self.d->cuEventDestroy(freed[i]);
      }
    }
  } cleanup{*this, buffers, freed};
  for (int i = 0; i < 2; ++i) {
    check(d->cuMemHostAlloc(&buffers[i], size_t(stage), 0),
          "allocating pinned staging memory for the weight upload");
    check(d->cuEventCreate(&freed[i], CU_EVENT_DISABLE_TIMING),
          "cuEventCreate");
  }
  int next = 0;
  // The next staging buffer, once its previous copy has drained.
  auto acquire = [&]() -> uint8_t * {
    check(d->cuEventSynchronize(freed[next]), "waiting for a weight copy");
    return static_cast<uint8_t *>(buffers[next]);
  };
  auto submit = [&](CUdeviceptr to, const uint8_t *from, int64_t bytes) {
    if (bytes > 0)
      check(d->cuMemcpyHtoDAsync(to, from, size_t(bytes), stream),
            "copying weights to the GPU");
  };
  auto release = [&] {
    check(d->cuEventRecord(freed[next], stream), "cuEventRecord");
    next ^= 1;
  };
  // Bytes larger than a staging buffer go through both in turn.
  auto uploadLarge = [&](CUdeviceptr to, const uint8_t *from, int64_t bytes) {
    for (int64_t at = 0; at < bytes; at += stage) {
      int64_t n = std::min(stage, bytes - at);
      uint8_t *buf = acquire();
      std::memcpy(buf, from + at, size_t(n));
      submit(to + CUdeviceptr(at), buf, n);
      release();
    }
  };

  Progress bar("weights", m.weightBytes, ProgressUnit::Bytes, "", opt.progress);
  int64_t done = 0;
  std::vector<uint8_t> big;
  for (const WeightInfo &w : m.weights) {
    WeightLayout layout = weightLayout(w);
    int64_t piece = layout.matrixBytes + layout.matrixScaleBytes;
    for (int64_t i = 0; i < layout.matrices; ++i) {
      CUdeviceptr data =
          weights + CUdeviceptr(w.offset + i * layout.matrixBytes);
      CUdeviceptr scales =
          weights + CUdeviceptr(w.scaleOffset + i * layout.matrixScaleBytes);
      if (piece <= stage) {
        uint8_t *buf = acquire();
        packer.packMatrix(w, i, buf,
                          layout.matrixScaleBytes ? buf + layout.matrixBytes
                                                  : nullptr);
        submit(data, buf, layout.matrixBytes);
        if (layout.matrixScaleBytes)
          submit(scales, buf + layout.matrixBytes, layout.matrixScaleBytes);
        release();
      } else {
        big.resize(size_t(piece));
        packer.packMatrix(w, i, big.data(),
                          layout.matrixScaleBytes
                              ? big.data() + layout.matrixBytes
                              : nullptr);
        uploadLarge(data, big.data(), layout.matrixBytes);
        if (layout.matrixScaleBytes)
          uploadLarge(scales, big.data() + layout.matrixBytes,
                      layout.matrixScaleBytes);
      }
      done += piece;
      bar.update(done);
    }
  }
  check(d->cuStreamSynchronize(stream), "finishing the weight upload");
  bar.finish(done);
}

void GpuEngine::Impl::fillWeights() {
  auto start = std::chrono::steady_clock::now();
  if (m.weights.empty()) {
    info.weightMethod = "none (the engine has no weights)";
  } else if (opt.zeroWeights) {
    info.weightMethod = "zero (runtime test)";
  } else if (opt.weights.kind == WeightSourceSpec::Kind::Synthetic &&
             opt.synthesizeOnDevice) {
    DeviceSynthesizer synth(*d, dev.arch, dev.driverVersion, opt.useCache,
                            opt.progress);
    DeviceSynthesisStats st =
        synth.fill(m, opt.weights, weights, stream, opt.progress);
    info.weightMethod = fmt::format(
        "{}, generated on the GPU ({} in {} launches, {} packed on the host; "
        "{} matrices checked against the host)",
        opt.weights.describe(), formatBytes(st.bytesOnDevice), st.launches,
        formatBytes(st.bytesFromHost), st.checked);
  } else {
    uploadPacked();
    info.weightMethod = fmt::format("{}, packed on the host and uploaded",
                                    opt.weights.describe());
  }
  info.weightSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
}

void GpuEngine::Impl::load() {
  d = &driverOrFail("GPU executor");
  dev = queryDevice(*d, opt.device);
  check(d->cuDeviceGet(&device, opt.device), "cuDeviceGet");
  check(d->cuDevicePrimaryCtxRetain(&ctx, device),
        fmt::format("creating a CUDA context on GPU {}", opt.device));
  check(d->cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  checkDevice();
  check(d->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  check(d->cuEventCreate(&start, CU_EVENT_DEFAULT), "cuEventCreate");
  check(d->cuEventCreate(&end, CU_EVENT_DEFAULT), "cuEventCreate");
  check(d->cuEventCreate(&done, CU_EVENT_DISABLE_TIMING), "cuEventCreate");
  compile();
  allocate();
  uploadTables();
  fillWeights();
  check(d->cuStreamSynchronize(stream), "finishing the engine's upload");
}

void GpuEngine::Impl::release() {
  if (!d || !ctx)
    return;
  if (!poisoned.empty()) {
    // The device may still be running a kernel that never returns: freeing
    // would wait for it. The process's exit reclaims everything.
    return;
  }
  d->cuCtxSetCurrent(ctx);
  if (stream)
    d->cuStreamSynchronize(stream);
  for (CUdeviceptr p :
       {arena, weights, kv, events, signals, tasks, smBegin, trace, groupTasks})
    if (p)
      d->cuMemFree(p);
  if (report)
    d->cuMemFreeHost(report);
  if (io)
    d->cuMemFreeHost(io);
  for (CUevent e : {start, end, done})
    if (e)
      d->cuEventDestroy(e);
  if (stream)
    d->cuStreamDestroy(stream);
  if (module)
    d->cuModuleUnload(module);
  d->cuDevicePrimaryCtxRelease(device);
  ctx = nullptr;
}

void GpuEngine::Impl::resetEvents() {
  if (!m.events.empty())
    check(d->cuMemsetD8Async(events, 0, m.events.size() * 8, stream),
          "resetting the event counters");
  check(d->cuStreamSynchronize(stream), "resetting the event counters");
  step = 0;
}

std::string GpuEngine::Impl::hangReport(uint64_t stepIndex) const {
  volatile int *r = report;
  int sm = r[TILEC_REPORT_SM], task = r[TILEC_REPORT_TASK],
      op = r[TILEC_REPORT_OP], event = r[TILEC_REPORT_EVENT];
  uint32_t have = uint32_t(r[TILEC_REPORT_HAVE]),
           want = uint32_t(r[TILEC_REPORT_WANT]);
  std::string opName =
      op >= 0 && op < int(m.ops.size()) ? m.ops[size_t(op)] : "?";
  std::string eventName = event >= 0 && event < int(m.events.size())
                              ? m.events[size_t(event)].name
                              : "?";
  std::string instance;
  if (sm >= 0 && sm < int(m.smTasks.size()) && task >= 0 &&
      task < int(m.smTasks[size_t(sm)].size())) {
    const TilecTask &t = m.smTasks[size_t(sm)][size_t(task)];
    int64_t id = t.w[TILEC_W_INSTANCE];
    if (id >= 0 && id < int64_t(m.instances.size()))
      instance =
          fmt::format(", instance {} {}", id, m.instances[size_t(id)].symbol);
  }
  uint32_t perStep = event >= 0 && event < int(m.events.size())
                         ? m.events[size_t(event)].signalsPerStep
                         : 0;
  return fmt::format(
      "step {}: the megakernel hung: SM {} task {} (op {} '{}'{}) waited "
      "more than {} ms for event {} '{}' to reach {} but it stayed at {} "
      "({} signals per step: {} of this step's arrived)",
      stepIndex, sm, task, op, opName, instance, opt.watchdogMs, event,
      eventName, want, have, perStep,
      int64_t(have) - int64_t(uint32_t(stepIndex * perStep)));
}

//===----------------------------------------------------------------------===//

GpuEngine::GpuEngine(const std::string &dir, const GpuEngineOptions &options)
    : impl_(std::make_unique<Impl>()) {
  impl_->opt = options;
  impl_->m = readEngine(dir);
  std::string path = dir + "/" + impl_->m.kernelFile;
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof())
    fail("{}: cannot read the kernel source", path);
  impl_->source = text.str();
  try {
    impl_->load();
  } catch (...) {
    impl_->release();
    throw;
  }
}

GpuEngine::GpuEngine(EngineManifest manifest, std::string kernelSource,
                     const GpuEngineOptions &options)
    : impl_(std::make_unique<Impl>()) {
  impl_->opt = options;
  impl_->m = std::move(manifest);
  impl_->source = std::move(kernelSource);
  try {
    impl_->load();
  } catch (...) {
    impl_->release();
    throw;
  }
}

GpuEngine::~GpuEngine() {
  if (impl_)
    impl_->release();
}

const EngineManifest &GpuEngine::manifest() const { return impl_->m; }
const GpuDeviceInfo &GpuEngine::device() const { return impl_->dev; }
const GpuLoadInfo &GpuEngine::loadInfo() const { return impl_->info; }
const std::vector<float> &GpuEngine::stepMillis() const {
  return impl_->millis;
}
uint64_t GpuEngine::stepsRun() const { return impl_->step; }
int64_t GpuEngine::launchesPerStep() const {
  return impl_->opt.perOpLaunch ? int64_t(impl_->groups.size()) : 1;
}

void GpuEngine::reset() {
  // Positions overwrite their KV slots, so a new sequence needs no clearing;
  // the event epoch simply continues.
}

StepOutput GpuEngine::step(const std::vector<int32_t> &tokens,
                           const std::vector<int32_t> &positions,
                           bool wantLogits) {
  Impl &s = *impl_;
  const EngineManifest &m = s.m;
  const int64_t T = m.tokens;
  if (int64_t(tokens.size()) != T || int64_t(positions.size()) != T)
    fail("GPU step: the engine runs {} tokens per step, got {} tokens and {} "
         "positions",
         T, tokens.size(), positions.size());
  for (int64_t i = 1; i < T; ++i)
    if (positions[size_t(i)] != positions[0] + i)
      fail("GPU step: positions must be consecutive (position {} is {} after "
           "{})",
           i, positions[size_t(i)], positions[0]);
  if (positions[0] < 0)
    fail("GPU step: negative position {}", positions[0]);
  s.current();

  int32_t *io = static_cast<int32_t *>(s.io);
  std::memcpy(io, tokens.data(), size_t(T) * 4);
  std::memcpy(io + T, positions.data(), size_t(T) * 4);
  s.launchStep({{s.tokensOffset, io, size_t(T) * 4},
                {s.positionsOffset, io + T, size_t(T) * 4}},
               {{s.argmaxOffset, io + 2 * T, size_t(T) * 4}},
               fmt::format("tokens {}", fmt::join(tokens, ",")));
  StepOutput out;
  out.argmax.assign(io + 2 * T, io + 3 * T);
  if (wantLogits && s.logitsOffset >= 0) {
    out.logits.resize(size_t(s.logitsCount));
    s.check(s.d->cuMemcpyDtoH(out.logits.data(),
                              s.arena + CUdeviceptr(s.logitsOffset),
                              out.logits.size() * 4),
            "copying the logits back");
  }
  return out;
}

void GpuEngine::writeBuffer(const std::string &name, const void *data,
                            int64_t bytes) {
  Impl &s = *impl_;
  const BufferInfo &b = s.m.buffer(name);
  if (bytes < 0 || b.bytes < bytes)
    fail("GPU engine: buffer '{}' holds {} bytes, cannot write {}", name,
         b.bytes, bytes);
  s.current();
  s.check(
      s.d->cuMemcpyHtoD(s.arena + CUdeviceptr(b.offset), data, size_t(bytes)),
      fmt::format("writing arena buffer '{}'", name));
}

void GpuEngine::readBuffer(const std::string &name, void *data, int64_t bytes) {
  Impl &s = *impl_;
  const BufferInfo &b = s.m.buffer(name);
  if (bytes < 0 || b.bytes < bytes)
    fail("GPU engine: buffer '{}' holds {} bytes, cannot read {}", name,
         b.bytes, bytes);
  s.current();
  s.check(
      s.d->cuMemcpyDtoH(data, s.arena + CUdeviceptr(b.offset), size_t(bytes)),
      fmt::format("reading arena buffer '{}'", name));
}

void GpuEngine::launch(const std::string &readBack, void *dst, int64_t bytes) {
  Impl &s = *impl_;
  std::vector<Impl::Copy> back;
  int32_t *io = static_cast<int32_t *>(s.io);
  // Small read-backs (the committed tokens) go through the pinned io buffer
  // in the step's stream; larger ones (logits, for checks) are read after.
  bool pinned = false;
  if (!readBack.empty()) {
    const BufferInfo &b = s.m.buffer(readBack);
    if (bytes < 0 || b.bytes < bytes)
      fail("GPU engine: cannot read {} bytes of buffer '{}' ({} bytes) back "
           "with a step",
           bytes, readBack, b.bytes);
    pinned = bytes <= (s.m.tokens + 1) * 3 * int64_t(sizeof(int32_t));
    if (pinned)
      back.push_back({b.offset, io, size_t(bytes)});
  }
  s.current();
  s.launchStep({}, back, "");
  if (pinned)
    std::memcpy(dst, io, size_t(bytes));
  else if (!readBack.empty())
    readBuffer(readBack, dst, bytes);
}

void GpuEngine::Impl::launchStep(const std::vector<Copy> &in,
                                 const std::vector<Copy> &out,
                                 const std::string &inputs) {
  Impl &s = *this;
  const EngineManifest &m = s.m;
  std::memset(s.report, 0, TILEC_REPORT_WORDS * sizeof(int));

  const uint64_t stepIndex = s.step;
  TilecStepParams p{};
  p.tasks = reinterpret_cast<const TilecTask *>(s.tasks);
  p.sm_begin = reinterpret_cast<const int *>(s.smBegin);
  p.arena = reinterpret_cast<unsigned char *>(s.arena);
  p.weights = reinterpret_cast<const unsigned char *>(s.weights);
  p.kv = reinterpret_cast<unsigned char *>(s.kv);
  p.events = reinterpret_cast<unsigned long long *>(s.events);
  p.signals_per_step = reinterpret_cast<const unsigned int *>(s.signals);
  p.step = stepIndex;
  p.trace = s.trace ? reinterpret_cast<unsigned long long *>(s.trace) : nullptr;
  p.report = reinterpret_cast<int *>(s.reportDev);
  p.watchdog_ns = s.opt.watchdogMs * 1000000ull;
  void *args[] = {&p};

  auto check = [&](CUresult r, const char *what) {
    if (r != CUDA_SUCCESS)
      fail("step {}: {}: {}", stepIndex, what, s.d->errorText(r));
  };
  for (const Copy &c : in)
    check(s.d->cuMemcpyHtoDAsync(s.arena + CUdeviceptr(c.offset), c.host,
                                 c.bytes, s.stream),
          "copying the step's inputs");
  if (s.trace) // a task that does not run leaves no stale stamps
    check(s.d->cuMemsetD8Async(
              s.trace, 0, size_t(m.sms * s.maxTasks * TILEC_TRACE_WORDS * 8),
              s.stream),
          "clearing the trace buffer");
  check(s.d->cuEventRecord(s.start, s.stream), "cuEventRecord");
  if (s.opt.perOpLaunch) {
    p.tasks = reinterpret_cast<const TilecTask *>(s.groupTasks);
    p.trace = nullptr;
    for (auto [first, count] : s.groups) {
      int firstTask = first;
      void *groupArgs[] = {&p, &firstTask};
      check(s.d->cuLaunchKernel(
                s.groupFn, unsigned(count), 1, 1, unsigned(m.threadsPerBlock),
                1, 1, unsigned(m.dynamicSmem), s.stream, groupArgs, nullptr),
            "launching tilec_task_group");
    }
  } else {
    check(s.d->cuLaunchKernel(s.fn, unsigned(m.sms), 1, 1,
                              unsigned(m.threadsPerBlock), 1, 1,
                              unsigned(m.dynamicSmem), s.stream, args, nullptr),
          "launching tilec_step");
  }
  s.step = stepIndex + 1;
  check(s.d->cuEventRecord(s.end, s.stream), "cuEventRecord");
  for (const Copy &c : out)
    check(s.d->cuMemcpyDtoHAsync(c.host, s.arena + CUdeviceptr(c.offset),
                                 c.bytes, s.stream),
          "copying the step's outputs back");
  check(s.d->cuEventRecord(s.done, s.stream), "cuEventRecord");

  // Wait with a wall-clock limit: spin briefly (steps take milliseconds),
  // then back off.
  using Clock = std::chrono::steady_clock;
  const auto begin = Clock::now();
  const auto limit = std::chrono::milliseconds(s.timeoutMs());
  CUresult status;
  for (int polls = 0;; ++polls) {
    status = s.d->cuEventQuery(s.done);
    if (status != CUDA_ERROR_NOT_READY)
      break;
    auto waited = Clock::now() - begin;
    if (waited > limit) {
      std::string watchdog =
          s.report[TILEC_REPORT_FLAG] == 1
              ? "; the kernel's watchdog reported: " + s.hangReport(stepIndex)
              : fmt::format("; the kernel's watchdog ({}) reported nothing",
                            s.opt.watchdogMs
                                ? fmt::format("{} ms", s.opt.watchdogMs)
                                : std::string("off"));
      // Ask the kernel's waits to give up (the device library's stop
      // request: the report flag at 1), and give it a moment to.
      reinterpret_cast<volatile int *>(s.report)[TILEC_REPORT_FLAG] = 1;
      auto grace = Clock::now();
      while (s.d->cuEventQuery(s.done) == CUDA_ERROR_NOT_READY &&
             Clock::now() - grace < std::chrono::seconds(2))
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (s.d->cuEventQuery(s.done) == CUDA_SUCCESS) {
        s.resetEvents();
        fail("step {}: tilec_step did not finish within {} ms (host "
             "timeout){}; it stopped on the host's stop request",
             stepIndex, s.timeoutMs(), watchdog);
      }
      s.poisoned = fmt::format("step {} did not finish in {} ms", stepIndex,
                               s.timeoutMs());
      fail("step {}: tilec_step did not finish within {} ms (host timeout){}. "
           "The GPU is still busy: this engine is unusable, restart the "
           "process",
           stepIndex, s.timeoutMs(), watchdog);
    }
    if (polls > 2000)
      std::this_thread::sleep_for(
          std::chrono::microseconds(polls > 20000 ? 1000 : 50));
  }
  if (status != CUDA_SUCCESS) {
    s.poisoned =
        fmt::format("step {} failed: {}", stepIndex, s.d->errorText(status));
    std::string detail;
    if (s.report[TILEC_REPORT_FLAG] == 1)
      detail =
          "; before that, the watchdog reported: " + s.hangReport(stepIndex);
    fail("step {}: tilec_step failed on GPU {}: {}{} (the CUDA context is "
         "lost; restart the process)",
         stepIndex, s.dev.ordinal, s.d->errorText(status), detail);
  }
  int flag = s.report[TILEC_REPORT_FLAG];
  if (flag == 1) {
    std::string message = s.hangReport(stepIndex);
    // The kernel returned (every waiting CTA timed out): start the next step
    // from a clean epoch.
    s.resetEvents();
    fail("{}", message);
  }
  if (flag == 2) {
    s.resetEvents();
    fail("step {}: bad input: a token id outside the vocabulary or a DFlash "
         "forced count outside [0, {}]{}; the kernel stopped",
         stepIndex, m.tokens, inputs.empty() ? "" : " (" + inputs + ")");
  }
  if (flag != 0) {
    s.resetEvents();
    fail("step {}: the kernel reported status {} (unknown to this runtime)",
         stepIndex, flag);
  }

  float ms = 0;
  check(s.d->cuEventElapsedTime(&ms, s.start, s.end), "cuEventElapsedTime");
  s.millis.push_back(ms);
}

std::vector<uint64_t> GpuEngine::readTrace() const {
  const Impl &s = *impl_;
  std::vector<uint64_t> out;
  if (!s.trace)
    return out;
  s.current();
  out.resize(size_t(s.m.sms * s.maxTasks * TILEC_TRACE_WORDS));
  if (!out.empty())
    s.check(s.d->cuMemcpyDtoH(out.data(), s.trace, out.size() * 8),
            "reading the trace buffer");
  return out;
}

std::vector<uint8_t> GpuEngine::readWeights(int64_t offset,
                                            int64_t bytes) const {
  const Impl &s = *impl_;
  if (offset < 0 || bytes < 0 || offset + bytes > s.m.weightBytes)
    fail("readWeights: [{}, {}) is outside the weight region of {} bytes",
         offset, offset + bytes, s.m.weightBytes);
  s.current();
  std::vector<uint8_t> out(static_cast<size_t>(bytes));
  if (bytes)
    s.check(s.d->cuMemcpyDtoH(out.data(), s.weights + CUdeviceptr(offset),
                              size_t(bytes)),
            "reading the weight region");
  return out;
}

std::vector<uint8_t> GpuEngine::readBuffer(const std::string &name) const {
  const Impl &s = *impl_;
  const BufferInfo &b = s.m.buffer(name);
  s.current();
  std::vector<uint8_t> out(size_t(b.bytes));
  if (b.bytes)
    s.check(s.d->cuMemcpyDtoH(out.data(), s.arena + CUdeviceptr(b.offset),
                              size_t(b.bytes)),
            fmt::format("reading arena buffer '{}'", name));
  return out;
}

} // namespace tilec
