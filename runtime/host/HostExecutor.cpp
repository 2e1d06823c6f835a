//===- HostExecutor.cpp - Runs an engine's task lists on the CPU ----------===//
#include "runtime/host/HostExecutor.h"

#include "models/core/Error.h"
#include "models/core/Formats.h"
#include "runtime/abi/ExactMath.h"
#include "runtime/engine/Progress.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>

namespace tilec {

namespace {

enum Region { kArena = 0, kWeights = 1, kKv = 2 };
constexpr int kArgBase = TILEC_W_ARG0;

const char *regionName(int region) {
  static const char *names[] = {"arena", "weights", "kv"};
  return names[region];
}

const char *familyName(int64_t family) {
  static const char *names[] = {"EMBED",       "LINEAR",        "ATTENTION",
                                "ROUTER_TOPK", "MOE_GATE_UP",   "MOE_DOWN",
                                "MOE_COMBINE", "ARGMAX_REDUCE", "CONCAT",
                                "SPEC_ACCEPT", "SPEC_UPDATE",   "DRAFT_FILL",
                                "SILU_MUL"};
  static_assert(sizeof(names) / sizeof(names[0]) == TILEC_TASK_FAMILY_COUNT,
                "a name for every task family");
  return family >= 0 && family < TILEC_TASK_FAMILY_COUNT ? names[family] : "?";
}

const char *epilogueName(int64_t e) {
  static const char *names[] = {"STORE_BF16", "STORE_F32",  "RESIDUAL",
                                "SILU_PAIR",  "ROPE_STORE", "ROPE_KCACHE",
                                "VCACHE",     "ARGMAX"};
  return e >= 0 && e <= TILEC_EPI_ARGMAX ? names[e] : "?";
}

/// The parameters every instance of a family must have (docs/engine.md).
const std::vector<const char *> &requiredParams(TilecTaskFamily family) {
  static const std::vector<const char *> table[TILEC_TASK_FAMILY_COUNT] = {
      {"T", "H", "V"},
      {"T", "K", "N", "tile", "format", "prologue", "epilogue"},
      {"T", "q_heads", "kv_heads", "head_dim", "v_dim", "window", "capacity",
       "sinks"},
      {"T", "E", "K", "n_group", "topk_group", "renorm"},
      {"T", "H", "I", "E", "K", "slots", "tile", "format"},
      {"T", "H", "I", "E", "K", "slots", "tile", "format"},
      {"T", "H", "K"},
      {"T", "tiles"},
      {"T", "W", "OUT_W", "norm"},
      {"T", "mask_token"},
      {"T"},
      {"T"},
      {"T", "N"}};
  return table[family];
}

/// Shadow words: (step + 1) << 32 | global task index; 0 = never.
inline uint64_t shadowWord(uint64_t step, int64_t task) {
  return ((step + 1) << 32) | uint64_t(uint32_t(task));
}
inline uint64_t shadowStep1(uint64_t word) { return word >> 32; }
inline int64_t shadowTask(uint64_t word) { return int64_t(uint32_t(word)); }

float f32FromWord(int64_t word) {
  uint32_t bits = uint32_t(uint64_t(word));
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

/// Sequential f32 dot product (the order ref::linear uses).
float dot(const float *a, const float *b, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i)
    sum += a[i] * b[i];
  return sum;
}

/// x * (1/sqrt(mean(x^2) + eps)) * w, as ref::rmsNorm computes it.
void rmsNorm(const float *x, const float *w, int64_t n, float eps, float *out) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i)
    sum += x[i] * x[i];
  float inv = 1.0f / std::sqrt(sum / float(n) + eps);
  for (int64_t i = 0; i < n; ++i)
    out[i] = w[i] * (x[i] * inv);
}

uint64_t mixSeed(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The trace's clock: steady_clock in ns (since boot: never 0, which means
/// "did not run").
uint64_t nowNs() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

struct TaskRef {
  int sm = 0;
  int64_t index = 0;
  const TilecTask *task = nullptr;
  const InstanceInfo *inst = nullptr;
};

} // namespace

//===----------------------------------------------------------------------===//
// The executor's state
//===----------------------------------------------------------------------===//

struct HostExecutor::Impl {
  EngineManifest m;
  HostOptions opt;
  std::vector<uint8_t> regions[3];
  std::unique_ptr<std::atomic<uint64_t>[]> events;
  uint64_t step = 0;
  std::array<int, TILEC_REPORT_WORDS> report{};
  HostStats stats;
  std::string poisoned; // the error that stopped an earlier step

  int sms = 0;
  std::vector<TaskRef> tasks;   // every task, SM 0's first
  std::vector<int64_t> smBegin; // [sms + 1]
  std::vector<std::string> opNames;

  // Scheduling: next task per SM, worker bookkeeping.
  std::unique_ptr<std::atomic<int64_t>[]> next;
  /// options.trace: [sms, maxTasks, TILEC_TRACE_WORDS] steady_clock ns of the
  /// last step (compute and sched stamps; no load role). Only the worker that
  /// owns an SM's list writes its rows.
  std::vector<uint64_t> trace;
  int64_t maxTasks = 0;
  std::mutex mu; // events' clocks, scheduling
  std::condition_variable cv;
  std::atomic<uint64_t> generation{0};
  std::atomic<bool> failed{false};
  /// Workers waiting at the current generation, live workers.
  int waiting = 0, active = 0;
  std::string error;

  // Event checking (shadow words per 2 bytes of arena and kv).
  std::mutex shadowMu; // with threads > 1: shadow, report, slots
  /// Per 2 bytes: the last write of this step, and the list of the reads
  /// since it (or since the step began), newest first.
  std::vector<uint64_t> shadowWrite[3], readHead[3];
  struct ReadRecord {
    int64_t reader, next;
  };
  std::vector<ReadRecord> reads;
  std::vector<std::vector<uint32_t>> vc; // [sm][sm]: tasks known done
  std::vector<std::vector<std::vector<uint32_t>>> prefix; // [event][k]
  /// KV cache base offset -> the position each slot holds (-1: unknown).
  std::map<int64_t, std::vector<int64_t>> slots;

  Impl(EngineManifest manifest, HostOptions options)
      : m(std::move(manifest)), opt(options) {}

  const std::string &opName(const TaskRef &r) const {
    return opNames[size_t(r.task->w[TILEC_W_OP])];
  }
  std::string who(const TaskRef &r) const {
    return fmt::format("SM {} task {} (op {})", r.sm, r.index, opName(r));
  }
  std::string producer(const TaskRef &r) const {
    return fmt::format("op {}, SM {} task {}", opName(r), r.sm, r.index);
  }

  void validate();
  std::string describeRange(int region, int64_t begin, int64_t end) const;
  bool ordered(const TaskRef &reader, int64_t other) const;
  void checkRead(int64_t global, int region, int64_t off, int64_t bytes);
  void recordWrite(int64_t global, int region, int64_t off, int64_t bytes);
  void beginStep();
  bool waitsSatisfied(int sm) const;
  void runTask(int sm);
  /// options.trace: the stamps of SM `sm`'s task `k` (TILEC_TRACE_*).
  uint64_t *stampsOf(int sm, int64_t k) {
    return &trace[size_t((sm * maxTasks + k) * TILEC_TRACE_WORDS)];
  }
  void worker(int id, int threads);
  std::string deadlock() const;
  void runStep();
};

//===----------------------------------------------------------------------===//
// One task's view: parameters, arguments, checked region accesses
//===----------------------------------------------------------------------===//

namespace {

class TaskRun {
public:
  TaskRun(HostExecutor::Impl &ex, int64_t global)
      : ex(ex), global(global), ref(ex.tasks[size_t(global)]) {}

  template <typename... Args>
  [[noreturn]] void error(fmt::format_string<Args...> format,
                          Args &&...args) const {
    fail("host executor: step {}: {} ({} instance {}): {}", ex.step,
         ex.who(ref), familyName(ref.inst->family), ref.inst->id,
         fmt::format(format, std::forward<Args>(args)...));
  }

  int64_t param(const char *name) const {
    auto it = ref.inst->params.find(name);
    if (it == ref.inst->params.end())
      error("instance {} has no parameter '{}'", ref.inst->id, name);
    return it->second;
  }
  /// A parameter added after engines without it were written (default 0).
  int64_t paramOr(const char *name, int64_t fallback) const {
    auto it = ref.inst->params.find(name);
    return it == ref.inst->params.end() ? fallback : it->second;
  }
  int64_t arg(int i) const { return ref.task->w[kArgBase + i]; }
  float argF32(int i) const { return f32FromWord(arg(i)); }

  /// Checks `bytes` bytes at `off` of a region (bounds, events) and returns
  /// them.
  const uint8_t *read(int region, int64_t off, int64_t bytes,
                      const char *what) {
    bounds(region, off, bytes, what);
    ex.checkRead(global, region, off, bytes);
    return ex.regions[region].data() + off;
  }
  uint8_t *write(int region, int64_t off, int64_t bytes, const char *what) {
    if (region == kWeights)
      error("writes {} into the weight region", what);
    bounds(region, off, bytes, what);
    ex.recordWrite(global, region, off, bytes);
    return ex.regions[region].data() + off;
  }
  void bounds(int region, int64_t off, int64_t bytes, const char *what) const {
    int64_t size = int64_t(ex.regions[region].size());
    if (off < 0 || bytes < 0 || off > size || bytes > size - off)
      error("{} at {} bytes [{}, {}) lies outside the {} region ({} bytes)",
            what, regionName(region), off, off + bytes, regionName(region),
            size);
  }

  std::vector<float> bf16s(int region, int64_t off, int64_t n,
                           const char *what) {
    const uint8_t *p = read(region, off, 2 * n, what);
    std::vector<float> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      uint16_t bits;
      std::memcpy(&bits, p + 2 * i, 2);
      out[size_t(i)] = bf16ToF32(bits);
    }
    return out;
  }
  std::vector<float> f32s(int region, int64_t off, int64_t n,
                          const char *what) {
    const uint8_t *p = read(region, off, 4 * n, what);
    std::vector<float> out(static_cast<size_t>(n));
    std::memcpy(out.data(), p, size_t(4 * n));
    return out;
  }
  std::vector<int32_t> i32s(int region, int64_t off, int64_t n,
                            const char *what) {
    const uint8_t *p = read(region, off, 4 * n, what);
    std::vector<int32_t> out(static_cast<size_t>(n));
    std::memcpy(out.data(), p, size_t(4 * n));
    return out;
  }
  void storeBf16(int region, int64_t off, const float *v, int64_t n,
                 const char *what) {
    uint8_t *p = write(region, off, 2 * n, what);
    for (int64_t i = 0; i < n; ++i) {
      uint16_t bits = f32ToBf16(v[i]);
      std::memcpy(p + 2 * i, &bits, 2);
    }
  }
  void storeF32(int region, int64_t off, const float *v, int64_t n,
                const char *what) {
    std::memcpy(write(region, off, 4 * n, what), v, size_t(4 * n));
  }
  void storeI32(int region, int64_t off, const int32_t *v, int64_t n,
                const char *what) {
    std::memcpy(write(region, off, 4 * n, what), v, size_t(4 * n));
  }

  /// Records that the slot of a KV cache now holds position `pos`.
  void putSlot(int64_t cache, int64_t capacity, int64_t slot, int64_t pos) {
    std::unique_lock<std::mutex> lock(ex.shadowMu, std::defer_lock);
    if (ex.opt.threads > 1)
      lock.lock();
    std::vector<int64_t> &table = ex.slots[cache];
    if (int64_t(table.size()) != capacity)
      table.assign(size_t(capacity), -1);
    table[size_t(slot)] = pos;
  }
  /// Checks that the slot holds position `pos` (when the executor knows).
  void checkSlot(int64_t cache, int64_t slot, int64_t pos, const char *what) {
    std::unique_lock<std::mutex> lock(ex.shadowMu, std::defer_lock);
    if (ex.opt.threads > 1)
      lock.lock();
    auto it = ex.slots.find(cache);
    if (it == ex.slots.end() || slot >= int64_t(it->second.size()))
      return;
    int64_t held = it->second[size_t(slot)];
    if (held >= 0 && held != pos)
      error("reads {} of position {} from slot {} of the cache at kv offset "
            "{}, but that slot holds position {} (a ring buffer too small for "
            "the window and the step's tokens?)",
            what, pos, slot, cache, held);
  }

  void reportBadInput() {
    std::unique_lock<std::mutex> lock(ex.shadowMu, std::defer_lock);
    if (ex.opt.threads > 1)
      lock.lock();
    if (ex.report[TILEC_REPORT_FLAG] != 0)
      return;
    ex.report[TILEC_REPORT_FLAG] = 2;
    ex.report[TILEC_REPORT_SM] = ref.sm;
    ex.report[TILEC_REPORT_TASK] = int(ref.index);
    ex.report[TILEC_REPORT_OP] = int(ref.task->w[TILEC_W_OP]);
  }

  HostExecutor::Impl &ex;
  int64_t global;
  const TaskRef &ref;
};

/// A [rows, cols] weight matrix in its storage format, decoded row by row
/// element by element (E2M1 / E4M3 / E8M0 / bf16).
struct Matrix {
  int64_t format = TILEC_FMT_BF16;
  int64_t rows = 0, cols = 0;
  const uint8_t *data = nullptr;
  const uint8_t *scales = nullptr;

  void row(int64_t n, float *out) const {
    const uint8_t *d = data;
    switch (format) {
    case TILEC_FMT_BF16:
      for (int64_t k = 0; k < cols; ++k) {
        uint16_t bits;
        std::memcpy(&bits, d + 2 * (n * cols + k), 2);
        out[k] = bf16ToF32(bits);
      }
      return;
    case TILEC_FMT_FP8: {
      int64_t scaleCols = fp8ScaleDim(cols);
      const uint8_t *s = scales + (n / kFp8BlockSize) * scaleCols * 4;
      for (int64_t k = 0; k < cols; ++k) {
        float scale;
        std::memcpy(&scale, s + 4 * (k / kFp8BlockSize), 4);
        out[k] = e4m3ToF32(d[n * cols + k]) * scale;
      }
      return;
    }
    case TILEC_FMT_MXFP4:
      for (int64_t k = 0; k < cols; ++k) {
        uint8_t byte = d[(n * cols + k) / 2];
        uint8_t code = (k % 2 == 0) ? (byte & 0xf) : (byte >> 4);
        uint8_t scale = scales[n * (cols / kMxfp4BlockSize) + k / 32];
        out[k] = e2m1ToF32(code) * e8m0ToF32(scale);
      }
      return;
    }
  }
};

/// Bytes of one [rows, cols] matrix and of its scales in `format`.
int64_t matrixBytes(int64_t format, int64_t rows, int64_t cols) {
  return format == TILEC_FMT_BF16  ? 2 * rows * cols
         : format == TILEC_FMT_FP8 ? rows * cols
                                   : rows * cols / 2;
}
int64_t matrixScaleBytes(int64_t format, int64_t rows, int64_t cols) {
  return format == TILEC_FMT_BF16  ? 0
         : format == TILEC_FMT_FP8 ? fp8ScaleDim(rows) * fp8ScaleDim(cols) * 4
                                   : rows * cols / kMxfp4BlockSize;
}

/// The matrix [rows, cols] at `dataOff` / `scaleOff` of the weight region,
/// bounds-checked for rows [r0, r1).
Matrix weightMatrix(TaskRun &run, int64_t format, int64_t dataOff,
                    int64_t scaleOff, int64_t rows, int64_t cols, int64_t r0,
                    int64_t r1, const char *what) {
  if (format != TILEC_FMT_BF16 && format != TILEC_FMT_FP8 &&
      format != TILEC_FMT_MXFP4)
    run.error("{}: unknown weight format {}", what, format);
  if (format == TILEC_FMT_MXFP4 && cols % kMxfp4BlockSize != 0)
    run.error("{}: mxfp4 rows of {} elements are not whole blocks of 32", what,
              cols);
  Matrix w;
  w.format = format;
  w.rows = rows;
  w.cols = cols;
  if (r0 < 0 || r1 > rows)
    run.error("{}: rows [{}, {}) of a [{}, {}] matrix", what, r0, r1, rows,
              cols);
  // The whole matrix must lie in the region (weights need no event checks).
  w.data = run.read(kWeights, dataOff, matrixBytes(format, rows, cols), what);
  if (format != TILEC_FMT_BF16)
    w.scales = run.read(kWeights, scaleOff,
                        matrixScaleBytes(format, rows, cols), what);
  return w;
}

/// Checks 0 <= n0 < n1 <= limit and n1 - n0 <= tile.
void checkRows(TaskRun &run, int64_t n0, int64_t n1, int64_t limit,
               int64_t tile) {
  if (n0 < 0 || n1 <= n0 || n1 > limit)
    run.error("rows [{}, {}) are not a non-empty range of [0, {})", n0, n1,
              limit);
  if (tile > 0 && n1 - n0 > tile)
    run.error("rows [{}, {}) are more than the instance's tile of {}", n0, n1,
              tile);
}

//===----------------------------------------------------------------------===//
// The task families (docs/engine.md "Task semantics")
//===----------------------------------------------------------------------===//

void runEmbed(TaskRun &r) {
  int64_t T = r.param("T"), H = r.param("H"), V = r.param("V");
  int64_t c0 = r.arg(TILEC_EMBED_COL0), c1 = r.arg(TILEC_EMBED_COL1);
  checkRows(r, c0, c1, H, 0);
  float scale = r.argF32(TILEC_EMBED_SCALE);
  std::vector<int32_t> ids = r.i32s(kArena, r.arg(TILEC_EMBED_IDS), T, "ids");
  std::vector<float> out(size_t(c1 - c0));
  for (int64_t t = 0; t < T; ++t) {
    int32_t id = ids[size_t(t)];
    if (id < 0 || id >= V) {
      r.reportBadInput();
      std::fill(out.begin(), out.end(), 0.0f);
    } else {
      std::vector<float> row =
          r.bf16s(kWeights, r.arg(TILEC_EMBED_TABLE) + 2 * (id * H + c0),
                  c1 - c0, "the embedding table");
      for (int64_t c = 0; c < c1 - c0; ++c)
        out[size_t(c)] = row[size_t(c)] * scale;
    }
    r.storeBf16(kArena, r.arg(TILEC_EMBED_OUT) + 2 * (t * H + c0), out.data(),
                c1 - c0, "the embedding output");
  }
}

/// RoPE of one head's rotary rows [0, rotaryDim) (docs/engine.md ROPE_STORE),
/// as ref::rope; it writes only those rows of out.
void ropeHead(const float *y, float *out, int64_t rotaryDim, float theta,
              int64_t position) {
  int64_t half = rotaryDim / 2;
  for (int64_t d = 0; d < half; ++d) {
    float inv = 1.0f / std::pow(theta, float(2 * d) / float(rotaryDim));
    float angle = float(position) * inv;
    float c = std::cos(angle), s = std::sin(angle);
    float x1 = y[d], x2 = y[d + half];
    out[d] = x1 * c - x2 * s;
    out[d + half] = x2 * c + x1 * s;
  }
}

void runLinear(TaskRun &r) {
  int64_t T = r.param("T"), K = r.param("K"), N = r.param("N");
  int64_t tile = r.param("tile"), format = r.param("format");
  int64_t prologue = r.param("prologue"), epilogue = r.param("epilogue");
  int64_t n0 = r.arg(TILEC_LIN_N0), n1 = r.arg(TILEC_LIN_N1), rows = n1 - n0;
  checkRows(r, n0, n1, N, tile);
  if (epilogue < 0 || epilogue > TILEC_EPI_ARGMAX)
    r.error("unknown epilogue {}", epilogue);

  // x' = prologue(x[t, :]).
  std::vector<float> x = r.bf16s(kArena, r.arg(TILEC_LIN_X), T * K, "x");
  if (prologue == TILEC_PRO_RMSNORM) {
    std::vector<float> w =
        r.bf16s(kWeights, r.arg(TILEC_LIN_NORM_W), K, "the norm weight");
    float eps = r.argF32(TILEC_LIN_EPS);
    for (int64_t t = 0; t < T; ++t)
      rmsNorm(x.data() + t * K, w.data(), K, eps, x.data() + t * K);
  } else if (prologue != TILEC_PRO_NONE) {
    r.error("unknown prologue {}", prologue);
  }

  // y[t, n - n0] = x'[t] . W[n] (and the up projection for SILU_PAIR).
  auto project = [&](int wArg, int sArg, const char *what) {
    Matrix w =
        weightMatrix(r, format, r.arg(wArg), r.arg(sArg), N, K, n0, n1, what);
    std::vector<float> y(size_t(T * rows)), row(static_cast<size_t>(K));
    for (int64_t n = n0; n < n1; ++n) {
      w.row(n, row.data());
      for (int64_t t = 0; t < T; ++t)
        y[size_t(t * rows + n - n0)] = dot(x.data() + t * K, row.data(), K);
    }
    return y;
  };
  std::vector<float> y = project(TILEC_LIN_W, TILEC_LIN_WSCALE, "the weight");
  int64_t out = r.arg(TILEC_LIN_OUT);

  switch (epilogue) {
  case TILEC_EPI_STORE_BF16:
  case TILEC_EPI_STORE_F32:
    for (int64_t t = 0; t < T; ++t) {
      if (epilogue == TILEC_EPI_STORE_BF16)
        r.storeBf16(kArena, out + 2 * (t * N + n0), &y[size_t(t * rows)], rows,
                    "the output");
      else
        r.storeF32(kArena, out + 4 * (t * N + n0), &y[size_t(t * rows)], rows,
                   "the output");
    }
    return;
  case TILEC_EPI_RESIDUAL:
    for (int64_t t = 0; t < T; ++t) {
      // Read before the store: out may alias residual.
      std::vector<float> res =
          r.bf16s(kArena, r.arg(TILEC_LIN_RESIDUAL) + 2 * (t * N + n0), rows,
                  "the residual");
      for (int64_t i = 0; i < rows; ++i)
        res[size_t(i)] = res[size_t(i)] + y[size_t(t * rows + i)];
      r.storeBf16(kArena, out + 2 * (t * N + n0), res.data(), rows,
                  "the output");
    }
    return;
  case TILEC_EPI_SILU_PAIR: {
    std::vector<float> u =
        project(TILEC_LIN_W2, TILEC_LIN_W2SCALE, "the up weight");
    for (size_t i = 0; i < y.size(); ++i)
      y[i] = xm::silu(y[i]) * u[i];
    for (int64_t t = 0; t < T; ++t)
      r.storeBf16(kArena, out + 2 * (t * N + n0), &y[size_t(t * rows)], rows,
                  "the output");
    return;
  }
  case TILEC_EPI_ARGMAX: {
    if (tile <= 0)
      r.error("the ARGMAX epilogue needs a positive tile, not {}", tile);
    int64_t tiles = (N + tile - 1) / tile, index = r.arg(TILEC_LIN_TILE);
    if (index < 0 || index >= tiles)
      r.error("argmax tile {} outside [0, {}) (N = {}, tile = {})", index,
              tiles, N, tile);
    if (r.paramOr("logit_cap", 0) != 0) {
      // As the reference drafter: z * multiplier, then the soft cap.
      int64_t word = r.arg(TILEC_LIN_THETA);
      float multiplier = f32FromWord(word);
      float softcap = f32FromWord(int64_t(uint64_t(word) >> 32));
      for (float &z : y) {
        z *= multiplier;
        if (softcap > 0)
          z = std::tanh(z / softcap) * softcap;
      }
    }
    for (int64_t t = 0; t < T; ++t) {
      const float *yt = &y[size_t(t * rows)];
      if (out != -1)
        r.storeF32(kArena, out + 4 * (t * N + n0), yt, rows, "the logits");
      int64_t best = 0;
      for (int64_t i = 1; i < rows; ++i)
        if (yt[i] > yt[best])
          best = i;
      uint8_t entry[8];
      int32_t n = int32_t(n0 + best);
      std::memcpy(entry, &yt[best], 4);
      std::memcpy(entry + 4, &n, 4);
      std::memcpy(r.write(kArena,
                          r.arg(TILEC_LIN_PARTIAL) + 8 * (t * tiles + index), 8,
                          "the argmax partial"),
                  entry, 8);
    }
    return;
  }
  default:
    break;
  }

  // ROPE_STORE, ROPE_KCACHE, VCACHE: rows n = h * head_dim + d.
  int64_t heads = r.param("heads"), headDim = r.param("head_dim");
  if (heads * headDim != N || headDim <= 0)
    r.error("{} needs N = heads x head_dim: N = {}, heads = {}, head_dim = {}",
            epilogueName(epilogue), N, heads, headDim);
  bool rope = epilogue != TILEC_EPI_VCACHE;
  int64_t rotary = rope ? r.param("rotary_dim") : 0;
  if (rotary < 0 || rotary > headDim || rotary % 2 != 0)
    r.error("rotary_dim {} for head_dim {}", rotary, headDim);
  bool headNorm = r.paramOr("head_norm", 0) != 0;
  if (headNorm && !rope)
    r.error("head_norm applies to the ROPE epilogues, not VCACHE");
  // A head norm needs whole heads; RoPE, each head's rotary rows in one task.
  for (int64_t b : {n0, n1})
    if (b % headDim != 0 && (headNorm || b % headDim < rotary))
      r.error("{}: row {} splits head {} ({}, head_dim {}, rotary_dim {})",
              epilogueName(epilogue), b, b / headDim,
              headNorm ? "head norm" : "inside its rotary rows", headDim,
              rotary);
  std::vector<int32_t> pos =
      r.i32s(kArena, r.arg(TILEC_LIN_POS), T, "the positions");
  std::vector<float> res(static_cast<size_t>(rows));
  std::vector<float> headW;
  if (headNorm) {
    // Each head of y RMS-normalized before RoPE (DFlash's q_norm / k_norm).
    headW = r.bf16s(kWeights, r.arg(TILEC_LIN_HNORM_W), headDim,
                    "the head norm weight");
    float heps = f32FromWord(int64_t(uint64_t(r.arg(TILEC_LIN_EPS)) >> 32));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < rows / headDim; ++h) {
        float *head = &y[size_t(t * rows + h * headDim)];
        rmsNorm(head, headW.data(), headDim, heps, head);
      }
  }
  for (int64_t t = 0; t < T; ++t) {
    const float *yt = &y[size_t(t * rows)];
    std::copy(yt, yt + rows, res.begin());
    // Each head starting in the task: its rotary rows (all in the task).
    for (int64_t h0 = (n0 + headDim - 1) / headDim * headDim;
         rotary > 0 && h0 < n1; h0 += headDim)
      ropeHead(yt + (h0 - n0), &res[size_t(h0 - n0)], rotary,
               r.argF32(TILEC_LIN_THETA), pos[size_t(t)]);
    if (epilogue == TILEC_EPI_ROPE_STORE) {
      r.storeBf16(kArena, out + 2 * (t * N + n0), res.data(), rows, "q");
      continue;
    }
    int64_t capacity = r.param("capacity");
    if (capacity <= 0 || pos[size_t(t)] < 0)
      r.error("position {} for a cache of capacity {}", pos[size_t(t)],
              capacity);
    int64_t slot = pos[size_t(t)] % capacity;
    r.storeBf16(kKv, out + 2 * (slot * N + n0), res.data(), rows,
                epilogue == TILEC_EPI_VCACHE ? "the value cache"
                                             : "the key cache");
    r.putSlot(out, capacity, slot, pos[size_t(t)]);
  }
}

void runAttention(TaskRun &r) {
  int64_t T = r.param("T"), Hq = r.param("q_heads"), Hkv = r.param("kv_heads");
  int64_t D = r.param("head_dim"), Dv = r.param("v_dim");
  int64_t window = r.param("window"), capacity = r.param("capacity");
  bool sinks = r.param("sinks") != 0;
  int64_t mask = r.paramOr("mask", 0);
  if (mask != 0 && mask != 1)
    r.error("unknown mask {}", mask);
  int64_t g = r.arg(TILEC_ATT_KV_HEAD);
  if (Hkv <= 0 || Hq % Hkv != 0 || g < 0 || g >= Hkv || capacity <= 0)
    r.error("kv head {} of q_heads {}, kv_heads {}, capacity {}", g, Hq, Hkv,
            capacity);
  if (sinks && r.arg(TILEC_ATT_SINKS) == -1)
    r.error("the instance has sinks but the task gives no sink weights");
  int64_t G = Hq / Hkv;
  // Query rows [row0, row1) of the kv head's G x T: row = t * G + (h - g G).
  int64_t row0 = r.arg(TILEC_ATT_ROW0), row1 = r.arg(TILEC_ATT_ROW1);
  int64_t maxRows = r.paramOr("rows", G * T);
  if (row0 < 0 || row1 <= row0 || row1 > G * T || row1 - row0 > maxRows)
    r.error("query rows [{}, {}) are not a non-empty range of [0, {}) of at "
            "most the instance's {} rows",
            row0, row1, G * T, maxRows);
  float scale = r.argF32(TILEC_ATT_SCALE), vscale = r.argF32(TILEC_ATT_VSCALE);
  int64_t kc = r.arg(TILEC_ATT_KCACHE), vc = r.arg(TILEC_ATT_VCACHE);
  std::vector<int32_t> pos =
      r.i32s(kArena, r.arg(TILEC_ATT_POS), T, "the positions");
  std::vector<float> sink;
  if (sinks)
    sink = r.bf16s(kWeights, r.arg(TILEC_ATT_SINKS), Hq, "the sinks");
  for (int64_t t = row0 / G; t <= (row1 - 1) / G; ++t) {
    int64_t p = pos[size_t(t)];
    // Causal: keys up to p. Bidirectional (the drafter's block, appended to
    // the cache): up to the block's last position, within the window.
    int64_t last = p;
    if (mask == 1) {
      last = pos[size_t(T - 1)];
      if (window > 0)
        last = std::min<int64_t>(last, p + window - 1);
    }
    if (p < 0 || (window == 0 && last >= capacity))
      r.error("position {} does not fit a full-attention cache of capacity {}",
              last, capacity);
    int64_t first = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
    std::vector<std::vector<float>> keys, values;
    for (int64_t j = first; j <= last; ++j) {
      int64_t slot = j % capacity;
      keys.push_back(r.bf16s(kKv, kc + 2 * ((slot * Hkv + g) * D), D, "keys"));
      values.push_back(
          r.bf16s(kKv, vc + 2 * ((slot * Hkv + g) * Dv), Dv, "values"));
      r.checkSlot(kc, slot, j, "the key");
      r.checkSlot(vc, slot, j, "the value");
    }
    for (int64_t h = g * G + std::max<int64_t>(0, row0 - t * G);
         h < g * G + std::min(G, row1 - t * G); ++h) {
      std::vector<float> q =
          r.bf16s(kArena, r.arg(TILEC_ATT_Q) + 2 * ((t * Hq + h) * D), D, "q");
      std::vector<float> s(keys.size());
      float m = -std::numeric_limits<float>::infinity();
      for (size_t j = 0; j < keys.size(); ++j) {
        s[j] = dot(q.data(), keys[j].data(), D) * scale;
        m = std::max(m, s[j]);
      }
      // As ref::attention: the sink's term first, then the keys in order.
      if (sinks)
        m = std::max(m, sink[size_t(h)]);
      float den = sinks ? xm::exp(sink[size_t(h)] - m) : 0.0f;
      for (float &v : s) {
        v = xm::exp(v - m);
        den += v;
      }
      std::vector<float> o(size_t(Dv), 0.0f);
      for (size_t j = 0; j < keys.size(); ++j) {
        float w = s[j] / den * vscale;
        for (int64_t c = 0; c < Dv; ++c)
          o[size_t(c)] += w * values[j][size_t(c)];
      }
      r.storeBf16(kArena, r.arg(TILEC_ATT_OUT) + 2 * ((t * Hq + h) * Dv),
                  o.data(), Dv, "the attention output");
    }
  }
}

void runRouter(TaskRun &r) {
  int64_t T = r.param("T"), E = r.param("E"), K = r.param("K");
  int64_t nGroup = r.param("n_group"), topkGroup = r.param("topk_group");
  bool renorm = r.param("renorm") != 0;
  if (E <= 0 || K <= 0 || K > E || nGroup <= 0 || E % nGroup != 0 ||
      topkGroup <= 0 || topkGroup > nGroup)
    r.error("E = {}, K = {}, n_group = {}, topk_group = {} do not make a "
            "router",
            E, K, nGroup, topkGroup);
  float scaling = r.argF32(TILEC_RT_SCALING);
  std::vector<float> logits =
      r.f32s(kArena, r.arg(TILEC_RT_LOGITS), T * E, "the router logits");
  std::vector<float> bias;
  if (r.arg(TILEC_RT_BIAS) != -1)
    bias = r.f32s(kWeights, r.arg(TILEC_RT_BIAS), E, "the correction bias");
  std::vector<int32_t> ids;
  std::vector<float> weights;
  int64_t perGroup = E / nGroup;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> score(static_cast<size_t>(E)),
        choice(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      score[size_t(e)] = xm::sigmoid(logits[size_t(t * E + e)]);
      choice[size_t(e)] =
          score[size_t(e)] + (bias.empty() ? 0.0f : bias[size_t(e)]);
    }
    if (nGroup > 1) {
      std::vector<std::pair<float, int64_t>> groups;
      for (int64_t gi = 0; gi < nGroup; ++gi) {
        std::vector<float> members(choice.begin() + gi * perGroup,
                                   choice.begin() + (gi + 1) * perGroup);
        std::partial_sort(members.begin(),
                          members.begin() + std::min<int64_t>(2, perGroup),
                          members.end(), std::greater<float>());
        groups.push_back({members[0] + (perGroup > 1 ? members[1] : 0.0f), gi});
      }
      std::stable_sort(groups.begin(), groups.end(),
                       [](auto &a, auto &b) { return a.first > b.first; });
      std::vector<bool> keep(size_t(nGroup), false);
      for (int64_t gi = 0; gi < topkGroup; ++gi)
        keep[size_t(groups[size_t(gi)].second)] = true;
      for (int64_t e = 0; e < E; ++e)
        if (!keep[size_t(e / perGroup)])
          choice[size_t(e)] = -std::numeric_limits<float>::infinity();
    }
    std::vector<int64_t> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return choice[size_t(a)] > choice[size_t(b)];
    });
    float sum = 0;
    for (int64_t k = 0; k < K; ++k)
      sum += score[size_t(order[size_t(k)])];
    for (int64_t k = 0; k < K; ++k) {
      int64_t e = order[size_t(k)];
      float w = score[size_t(e)];
      if (renorm)
        w /= sum + 1e-20f;
      ids.push_back(int32_t(e));
      weights.push_back(w * scaling);
    }
  }
  // The plan: distinct experts in increasing order, and per slot the choice
  // index k of each token that chose it.
  int64_t S = std::min(E, T * K);
  std::vector<int32_t> distinct(ids.begin(), ids.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<int32_t> plan(size_t(1 + S + S * T), -1);
  plan[0] = int32_t(distinct.size());
  for (int64_t s = 0; s < int64_t(distinct.size()); ++s) {
    plan[size_t(1 + s)] = distinct[size_t(s)];
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; ++k)
        if (ids[size_t(t * K + k)] == distinct[size_t(s)])
          plan[size_t(1 + S + s * T + t)] = int32_t(k);
  }
  r.storeI32(kArena, r.arg(TILEC_RT_IDS), ids.data(), T * K, "the expert ids");
  r.storeF32(kArena, r.arg(TILEC_RT_WEIGHTS), weights.data(), T * K,
             "the routing weights");
  r.storeI32(kArena, r.arg(TILEC_RT_PLAN), plan.data(), int64_t(plan.size()),
             "the plan");
}

/// The plan entries a MoE task serves: expert id (-1 = the slot is unused)
/// and per token the choice index k (-1 = the token did not choose it).
struct SlotPlan {
  int64_t expert = -1;
  std::vector<int32_t> choice;
};

SlotPlan readSlot(TaskRun &r, int64_t T, int64_t E, int64_t K, int64_t S,
                  int64_t s) {
  if (S != std::min(E, T * K))
    r.error("slots = {} but min(E, T * K) = {}", S, std::min(E, T * K));
  if (s < 0 || s >= S)
    r.error("slot {} outside [0, {})", s, S);
  int64_t plan = r.arg(TILEC_MOE_PLAN);
  int32_t used = r.i32s(kArena, plan, 1, "the plan")[0];
  if (used < 0 || used > S)
    r.error("the plan says {} distinct experts for {} slots", used, S);
  SlotPlan out;
  if (s >= used)
    return out;
  out.expert = r.i32s(kArena, plan + 4 * (1 + s), 1, "the plan")[0];
  if (out.expert < 0 || out.expert >= E)
    r.error("the plan puts expert {} in slot {} (E = {})", out.expert, s, E);
  out.choice = r.i32s(kArena, plan + 4 * (1 + S + s * T), T, "the plan");
  for (int32_t k : out.choice)
    if (k < -1 || k >= K)
      r.error("the plan has choice index {} in slot {} (K = {})", k, s, K);
  return out;
}

void runMoeGateUp(TaskRun &r) {
  int64_t T = r.param("T"), H = r.param("H"), I = r.param("I");
  int64_t E = r.param("E"), K = r.param("K"), S = r.param("slots");
  int64_t format = r.param("format"), s = r.arg(TILEC_MOE_SLOT);
  int64_t n0 = r.arg(TILEC_MOE_N0), n1 = r.arg(TILEC_MOE_N1);
  checkRows(r, n0, n1, I, r.param("tile"));
  SlotPlan slot = readSlot(r, T, E, K, S, s);
  if (slot.expert < 0)
    return;
  int64_t e = slot.expert;
  std::vector<float> norm =
      r.bf16s(kWeights, r.arg(TILEC_MOE_NORM_W), H, "the norm weight");
  float eps = r.argF32(TILEC_MOE_EPS);
  int64_t stride = matrixBytes(format, 2 * I, H);
  int64_t scaleStride = matrixScaleBytes(format, 2 * I, H);
  Matrix gate = weightMatrix(r, format, r.arg(TILEC_MOE_W) + e * stride,
                             r.arg(TILEC_MOE_WSCALE) + e * scaleStride, 2 * I,
                             H, n0, n1, "the expert's gate rows");
  weightMatrix(r, format, r.arg(TILEC_MOE_W) + e * stride,
               r.arg(TILEC_MOE_WSCALE) + e * scaleStride, 2 * I, H, I + n0,
               I + n1, "the expert's up rows");
  std::vector<float> row(static_cast<size_t>(H)), out(size_t(n1 - n0));
  for (int64_t t = 0; t < T; ++t) {
    if (slot.choice[size_t(t)] < 0)
      continue;
    std::vector<float> x =
        r.bf16s(kArena, r.arg(TILEC_MOE_X) + 2 * t * H, H, "x");
    rmsNorm(x.data(), norm.data(), H, eps, x.data());
    for (int64_t n = n0; n < n1; ++n) {
      gate.row(n, row.data());
      float g = dot(x.data(), row.data(), H);
      gate.row(I + n, row.data());
      float u = dot(x.data(), row.data(), H);
      out[size_t(n - n0)] = xm::silu(g) * u;
    }
    r.storeBf16(kArena, r.arg(TILEC_MOE_OUT) + 2 * ((s * T + t) * I + n0),
                out.data(), n1 - n0, "the MoE activation");
  }
}

void runMoeDown(TaskRun &r) {
  int64_t T = r.param("T"), H = r.param("H"), I = r.param("I");
  int64_t E = r.param("E"), K = r.param("K"), S = r.param("slots");
  int64_t format = r.param("format"), s = r.arg(TILEC_MOE_SLOT);
  int64_t n0 = r.arg(TILEC_MOE_N0), n1 = r.arg(TILEC_MOE_N1);
  checkRows(r, n0, n1, H, r.param("tile"));
  SlotPlan slot = readSlot(r, T, E, K, S, s);
  if (slot.expert < 0)
    return;
  int64_t e = slot.expert;
  Matrix down = weightMatrix(
      r, format, r.arg(TILEC_MOE_W) + e * matrixBytes(format, H, I),
      r.arg(TILEC_MOE_WSCALE) + e * matrixScaleBytes(format, H, I), H, I, n0,
      n1, "the expert's down matrix");
  std::vector<float> row(static_cast<size_t>(I)), out(size_t(n1 - n0));
  for (int64_t t = 0; t < T; ++t) {
    int64_t k = slot.choice[size_t(t)];
    if (k < 0)
      continue;
    float w = r.f32s(kArena, r.arg(TILEC_MOE_RWEIGHTS) + 4 * (t * K + k), 1,
                     "the routing weights")[0];
    std::vector<float> act =
        r.bf16s(kArena, r.arg(TILEC_MOE_X) + 2 * ((s * T + t) * I), I,
                "the MoE activation");
    for (int64_t n = n0; n < n1; ++n) {
      down.row(n, row.data());
      out[size_t(n - n0)] = w * dot(row.data(), act.data(), I);
    }
    r.storeF32(kArena, r.arg(TILEC_MOE_OUT) + 4 * ((t * K + k) * H + n0),
               out.data(), n1 - n0, "the MoE partials");
  }
}

void runMoeCombine(TaskRun &r) {
  int64_t T = r.param("T"), H = r.param("H"), K = r.param("K");
  int64_t n0 = r.arg(TILEC_CMB_N0), n1 = r.arg(TILEC_CMB_N1), n = n1 - n0;
  checkRows(r, n0, n1, H, 0);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> sum(size_t(n), 0.0f);
    for (int64_t k = 0; k < K; ++k) {
      std::vector<float> p =
          r.f32s(kArena, r.arg(TILEC_CMB_PARTIAL) + 4 * ((t * K + k) * H + n0),
                 n, "the MoE partials");
      for (int64_t i = 0; i < n; ++i)
        sum[size_t(i)] += p[size_t(i)];
    }
    std::vector<float> res =
        r.bf16s(kArena, r.arg(TILEC_CMB_RESIDUAL) + 2 * (t * H + n0), n,
                "the residual");
    for (int64_t i = 0; i < n; ++i)
      res[size_t(i)] = res[size_t(i)] + sum[size_t(i)];
    r.storeBf16(kArena, r.arg(TILEC_CMB_OUT) + 2 * (t * H + n0), res.data(), n,
                "the output");
  }
}

/// SILU_MUL: out[t, n] = bf16(silu(gate[t, n]) * up[t, n]) for n in [N0, N1),
/// gate and up the bf16 outputs of two separate linears (the unfused dense MLP:
/// the SILU_PAIR epilogue computes the same from their f32 sums).
void runSiluMul(TaskRun &r) {
  int64_t T = r.param("T"), N = r.param("N");
  int64_t n0 = r.arg(TILEC_SILU_N0), n1 = r.arg(TILEC_SILU_N1), n = n1 - n0;
  checkRows(r, n0, n1, N, 0);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> g =
        r.bf16s(kArena, r.arg(TILEC_SILU_GATE) + 2 * (t * N + n0), n,
                "the gate projection");
    std::vector<float> u =
        r.bf16s(kArena, r.arg(TILEC_SILU_UP) + 2 * (t * N + n0), n,
                "the up projection");
    for (int64_t i = 0; i < n; ++i)
      g[size_t(i)] = xm::silu(g[size_t(i)]) * u[size_t(i)];
    r.storeBf16(kArena, r.arg(TILEC_SILU_OUT) + 2 * (t * N + n0), g.data(), n,
                "the output");
  }
}

void runArgmaxReduce(TaskRun &r) {
  int64_t T = r.param("T"), tiles = r.param("tiles");
  if (r.arg(TILEC_AMX_TILES) != tiles || tiles <= 0)
    r.error("the task says {} tiles, the instance {}", r.arg(TILEC_AMX_TILES),
            tiles);
  std::vector<int32_t> out(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const uint8_t *p = r.read(kArena, r.arg(TILEC_AMX_PARTIAL) + 8 * t * tiles,
                              8 * tiles, "the argmax partials");
    float best = 0;
    int32_t index = -1;
    for (int64_t i = 0; i < tiles; ++i) {
      float v;
      int32_t n;
      std::memcpy(&v, p + 8 * i, 4);
      std::memcpy(&n, p + 8 * i + 4, 4);
      if (index < 0 || v > best || (v == best && n < index)) {
        best = v;
        index = n;
      }
    }
    out[size_t(t)] = index;
  }
  r.storeI32(kArena, r.arg(TILEC_AMX_OUT), out.data(), T, "the argmax");
}

void runConcat(TaskRun &r) {
  int64_t T = r.param("T"), W = r.param("W"), outW = r.param("OUT_W");
  bool norm = r.param("norm") != 0;
  int64_t c0 = r.arg(TILEC_CAT_COL0), c1 = r.arg(TILEC_CAT_COL1);
  int64_t offset = r.arg(TILEC_CAT_OFFSET);
  checkRows(r, c0, c1, W, 0);
  if (offset < 0 || offset + W > outW)
    r.error("input columns [{}, {}) do not fit an output of {}", offset,
            offset + W, outW);
  std::vector<float> w;
  if (norm)
    w = r.bf16s(kWeights, r.arg(TILEC_CAT_NORM_W), W, "the norm weight");
  float eps = r.argF32(TILEC_CAT_EPS);
  for (int64_t t = 0; t < T; ++t) {
    // A norm needs the whole row; otherwise only the task's columns.
    int64_t from = norm ? 0 : c0, to = norm ? W : c1;
    std::vector<float> row =
        r.bf16s(kArena, r.arg(TILEC_CAT_X) + 2 * (t * W + from), to - from,
                "the input");
    if (norm)
      rmsNorm(row.data(), w.data(), W, eps, row.data());
    r.storeBf16(kArena, r.arg(TILEC_CAT_OUT) + 2 * (t * outW + offset + c0),
                row.data() + (c0 - from), c1 - c0, "the output");
  }
}

/// Row `logits` [V] at temperature `temp`: softmax's max and normalizer.
struct RowStats {
  float m = 0, z = 0;
};
RowStats rowStats(const float *logits, int64_t V, float temp) {
  RowStats s;
  s.m = -std::numeric_limits<float>::infinity();
  for (int64_t v = 0; v < V; ++v)
    s.m = std::max(s.m, logits[v] / temp);
  for (int64_t v = 0; v < V; ++v)
    s.z += std::exp(logits[v] / temp - s.m);
  return s;
}
/// A token drawn from the row's softmax without `skip` (-1: none), with the
/// uniform number u: the first v whose running mass exceeds u times the total.
int32_t drawToken(const float *logits, int64_t V, float temp, RowStats s,
                  int32_t skip, float u) {
  float total = s.z;
  if (skip >= 0)
    total -= std::exp(logits[skip] / temp - s.m);
  float target = u * total, acc = 0;
  int32_t last = -1;
  for (int64_t v = 0; v < V; ++v) {
    if (v == skip)
      continue;
    acc += std::exp(logits[v] / temp - s.m);
    last = int32_t(v);
    if (acc > target)
      return int32_t(v);
  }
  return last; // rounding: the mass ran out just short of the target
}

void runSpecAccept(TaskRun &r) {
  int64_t T = r.param("T"), mask = r.param("mask_token");
  std::vector<int32_t> draft =
      r.i32s(kArena, r.arg(TILEC_ACC_DRAFT), T, "the verified block");
  std::vector<int32_t> predicted =
      r.i32s(kArena, r.arg(TILEC_ACC_PREDICTED), T, "the target's argmax");
  std::vector<int32_t> pos =
      r.i32s(kArena, r.arg(TILEC_ACC_POS), T, "the positions");
  int32_t forced = r.i32s(kArena, r.arg(TILEC_ACC_FORCED), 1, "forced")[0];
  std::vector<int32_t> sampling =
      r.i32s(kArena, r.arg(TILEC_ACC_SAMPLING), 2, "the sampling state");
  float temp;
  std::memcpy(&temp, &sampling[0], 4);
  if (forced < 0 || forced > T)
    r.error("forced = {} (prompt tokens in the block) is outside [0, {}]",
            forced, T);
  if (!(temp >= 0) || std::isinf(temp))
    r.error("temperature {} is not a finite number >= 0", temp);
  int64_t a = 0;
  int32_t bonus;
  if (temp == 0) {
    if (forced > 0)
      a = forced - 1;
    else
      while (a + 1 < T && draft[size_t(a + 1)] == predicted[size_t(a)])
        ++a;
    bonus = predicted[size_t(a)];
  } else {
    // Speculative sampling with the drafts taken as certain (docs/engine.md).
    int64_t V = r.param("V");
    std::vector<float> logits =
        r.f32s(kArena, r.arg(TILEC_ACC_LOGITS), T * V, "the logits");
    uint32_t seed = uint32_t(sampling[1]);
    int32_t skip = -1;
    if (forced > 0) {
      a = forced - 1;
    } else {
      for (; a + 1 < T; ++a) {
        const float *row = &logits[size_t(a * V)];
        RowStats st = rowStats(row, V, temp);
        int32_t d = draft[size_t(a + 1)];
        float p = d >= 0 && d < V ? std::exp(row[d] / temp - st.m) / st.z : 0;
        if (tilec_spec_uniform(seed, pos[0] + int32_t(a) + 1, 0) >= p) {
          skip = d >= 0 && d < V ? d : -1;
          break;
        }
      }
    }
    const float *row = &logits[size_t(a * V)];
    bonus = drawToken(row, V, temp, rowStats(row, V, temp), skip,
                      tilec_spec_uniform(seed, pos[0] + int32_t(a) + 1, 1));
  }
  std::vector<int32_t> out(static_cast<size_t>(T + 1), -1);
  std::vector<int32_t> next(static_cast<size_t>(T), int32_t(mask));
  std::vector<int32_t> nextPos(static_cast<size_t>(T));
  out[0] = int32_t(a + 1);
  for (int64_t j = 1; j <= a; ++j)
    out[size_t(j)] = draft[size_t(j)];
  out[size_t(a + 1)] = bonus;
  next[0] = bonus;
  for (int64_t i = 0; i < T; ++i)
    nextPos[size_t(i)] = int32_t(pos[0] + a + 1 + i);
  r.storeI32(kArena, r.arg(TILEC_ACC_OUT), out.data(), T + 1,
             "the committed tokens");
  r.storeI32(kArena, r.arg(TILEC_ACC_NEXT), next.data(), T, "the next block");
  r.storeI32(kArena, r.arg(TILEC_ACC_NEXT_POS), nextPos.data(), T,
             "the next positions");
}

void runSpecUpdate(TaskRun &r) {
  int64_t T = r.param("T");
  std::vector<int32_t> next =
      r.i32s(kArena, r.arg(TILEC_UPD_NEXT), T, "the next block");
  std::vector<int32_t> drafted =
      r.i32s(kArena, r.arg(TILEC_UPD_DRAFTED), T, "the drafter's argmax");
  std::vector<int32_t> nextPos =
      r.i32s(kArena, r.arg(TILEC_UPD_NEXT_POS), T, "the next positions");
  for (int64_t i = 1; i < T; ++i)
    next[size_t(i)] = drafted[size_t(i)];
  r.storeI32(kArena, r.arg(TILEC_UPD_TOKENS), next.data(), T,
             "the step state's tokens");
  r.storeI32(kArena, r.arg(TILEC_UPD_POSITIONS), nextPos.data(), T,
             "the step state's positions");
}

/// DRAFT_FILL: out = block with slot `index` replaced by drafted[index].
void runDraftFill(TaskRun &r) {
  int64_t T = r.param("T"), index = r.arg(TILEC_FILL_INDEX);
  if (index < 1 || index >= T)
    r.error("slot {} is outside [1, {}]", index, T - 1);
  std::vector<int32_t> block =
      r.i32s(kArena, r.arg(TILEC_FILL_BLOCK), T, "the block drafted so far");
  int32_t drafted = r.i32s(kArena, r.arg(TILEC_FILL_DRAFTED) + 4 * index, 1,
                           "the drafter's argmax at the slot")[0];
  block[size_t(index)] = drafted;
  r.storeI32(kArena, r.arg(TILEC_FILL_OUT), block.data(), T,
             "the block with the slot filled");
}

} // namespace

//===----------------------------------------------------------------------===//
// Validation, shadow state, scheduling
//===----------------------------------------------------------------------===//

void HostExecutor::Impl::validate() {
  sms = int(m.smTasks.size());
  if (m.sms != 0 && m.sms != sms)
    fail("host executor: the manifest says {} SMs but has {} task lists", m.sms,
         sms);
  for (size_t i = 0; i < m.instances.size(); ++i) {
    const InstanceInfo &inst = m.instances[i];
    if (inst.id != int64_t(i))
      fail("host executor: instance {} has id {}", i, inst.id);
    if (unsigned(inst.family) >= TILEC_TASK_FAMILY_COUNT)
      fail("host executor: instance {} has unknown family {}", i,
           int(inst.family));
    for (const char *p : requiredParams(inst.family))
      if (!inst.params.count(p))
        fail("host executor: instance {} ({} {}) lacks parameter '{}'", i,
             familyName(inst.family), inst.symbol, p);
    if (inst.family == TILEC_TASK_LINEAR) {
      int64_t e = inst.params.at("epilogue");
      std::vector<const char *> more;
      if (e == TILEC_EPI_ROPE_STORE)
        more = {"heads", "head_dim", "rotary_dim"};
      else if (e == TILEC_EPI_ROPE_KCACHE)
        more = {"heads", "head_dim", "rotary_dim", "capacity"};
      else if (e == TILEC_EPI_VCACHE)
        more = {"heads", "head_dim", "capacity"};
      for (const char *p : more)
        if (!inst.params.count(p))
          fail("host executor: instance {} (LINEAR {}) lacks parameter '{}'", i,
               epilogueName(e), p);
    }
  }
  // Op names for messages.
  for (size_t i = 0; i < m.ops.size(); ++i)
    opNames.push_back(m.ops[i]);
  int64_t maxOp = 0;
  for (const auto &list : m.smTasks)
    for (const TilecTask &t : list)
      maxOp = std::max<int64_t>(maxOp, t.w[TILEC_W_OP] + 1);
  for (int64_t i = int64_t(opNames.size()); i < maxOp; ++i)
    opNames.push_back(fmt::format("#{}", i));

  std::vector<uint32_t> signals(m.events.size(), 0);
  smBegin.push_back(0);
  for (int s = 0; s < sms; ++s) {
    for (size_t i = 0; i < m.smTasks[size_t(s)].size(); ++i) {
      const TilecTask &t = m.smTasks[size_t(s)][i];
      std::string where = fmt::format("host executor: SM {} task {}", s, i);
      if (t.w[TILEC_W_OP] < 0)
        fail("{}: op {} is negative", where, t.w[TILEC_W_OP]);
      int64_t inst = t.w[TILEC_W_INSTANCE];
      if (inst < 0 || inst >= int64_t(m.instances.size()))
        fail("{} (op {}): instance {} does not exist ({} instances)", where,
             opNames[size_t(t.w[TILEC_W_OP])], inst, m.instances.size());
      if (m.instances[size_t(inst)].family != t.w[TILEC_W_FAMILY])
        fail("{} (op {}): family {} but instance {} is {}", where,
             opNames[size_t(t.w[TILEC_W_OP])], t.w[TILEC_W_FAMILY], inst,
             familyName(m.instances[size_t(inst)].family));
      for (int w : {TILEC_W_WAIT0, TILEC_W_WAIT1, TILEC_W_SIGNAL})
        if (t.w[w] < -1 || t.w[w] >= int64_t(m.events.size()))
          fail("{} (op {}): event {} does not exist ({} events)", where,
               opNames[size_t(t.w[TILEC_W_OP])], t.w[w], m.events.size());
      for (auto [w, c] : {std::pair(TILEC_W_WAIT0, TILEC_W_COUNT0),
                          std::pair(TILEC_W_WAIT1, TILEC_W_COUNT1)}) {
        int64_t e = t.w[w];
        if (e < 0)
          continue;
        if (t.w[c] < 1 || t.w[c] > int64_t(m.events[size_t(e)].signalsPerStep))
          fail("{} (op {}): waits for {} signals of event {} ('{}'), which "
               "gets {} per step",
               where, opNames[size_t(t.w[TILEC_W_OP])], t.w[c], e,
               m.events[size_t(e)].name, m.events[size_t(e)].signalsPerStep);
      }
      if (t.w[TILEC_W_SIGNAL] >= 0)
        ++signals[size_t(t.w[TILEC_W_SIGNAL])];
      tasks.push_back({s, int64_t(i), &t, &m.instances[size_t(inst)]});
    }
    smBegin.push_back(int64_t(tasks.size()));
  }
  if (tasks.size() >= (size_t(1) << 32))
    fail("host executor: {} tasks are too many", tasks.size());
  for (size_t e = 0; e < m.events.size(); ++e)
    if (signals[e] != m.events[e].signalsPerStep)
      fail("host executor: event {} ('{}') is signalled by {} tasks per step, "
           "the manifest says {}",
           e, m.events[e].name, signals[e], m.events[e].signalsPerStep);
  for (const BufferInfo &b : m.buffers)
    if (b.offset < 0 || b.bytes < 0 || b.offset + b.bytes > m.arenaBytes)
      fail("host executor: buffer '{}' [{}, {}) passes the end of the arena "
           "({} bytes)",
           b.name, b.offset, b.offset + b.bytes, m.arenaBytes);
}

std::string HostExecutor::Impl::describeRange(int region, int64_t begin,
                                              int64_t end) const {
  if (region == kArena)
    for (const BufferInfo &b : m.buffers)
      if (begin >= b.offset && begin < b.offset + b.bytes)
        return fmt::format("buffer '{}' bytes [{}, {})", b.name,
                           begin - b.offset, end - b.offset);
  if (region == kKv)
    for (const KVCacheInfo &c : m.caches) {
      int64_t keys = c.capacity * c.kvHeads * c.qkDim * 2;
      int64_t values = c.capacity * c.kvHeads * c.vDim * 2;
      if (begin >= c.keyOffset && begin < c.keyOffset + keys)
        return fmt::format("kv cache '{}' keys bytes [{}, {})", c.name,
                           begin - c.keyOffset, end - c.keyOffset);
      if (begin >= c.valueOffset && begin < c.valueOffset + values)
        return fmt::format("kv cache '{}' values bytes [{}, {})", c.name,
                           begin - c.valueOffset, end - c.valueOffset);
    }
  return fmt::format("{} bytes [{}, {})", regionName(region), begin, end);
}

bool HostExecutor::Impl::ordered(const TaskRef &reader, int64_t other) const {
  const TaskRef &w = tasks[size_t(other)];
  if (w.sm == reader.sm)
    return w.index <= reader.index;
  return vc[size_t(reader.sm)][size_t(w.sm)] >= uint32_t(w.index + 1);
}

void HostExecutor::Impl::checkRead(int64_t global, int region, int64_t off,
                                   int64_t bytes) {
  if (!opt.checkEvents || region == kWeights || bytes <= 0)
    return;
  std::unique_lock<std::mutex> lock(shadowMu, std::defer_lock);
  if (opt.threads > 1)
    lock.lock();
  const TaskRef &me = tasks[size_t(global)];
  const uint64_t cur = step + 1;
  std::vector<uint64_t> &W = shadowWrite[region], &H = readHead[region];
  const int64_t g0 = off >> 1, g1 = (off + bytes + 1) >> 1;
  // Written in this step by a task this one is not ordered after?
  auto unordered = [&](int64_t g) -> int64_t {
    uint64_t w = W[size_t(g)];
    if (shadowStep1(w) != cur || ordered(me, shadowTask(w)))
      return -1;
    return shadowTask(w);
  };
  for (int64_t g = g0; g < g1; ++g) {
    int64_t writer = unordered(g);
    if (writer >= 0) {
      int64_t end = g + 1;
      while (end < g1 && unordered(end) == writer)
        ++end;
      const TaskRef &p = tasks[size_t(writer)];
      fail("host executor: step {}: {} reads {} before its producer ({}) "
           "signalled: {}",
           step, who(me), describeRange(region, 2 * g, 2 * end), producer(p),
           next[p.sm].load() > p.index
               ? "it has finished, but no wait of this task covers its signal "
                 "(a missing event, or a count too low)"
               : "it has not finished yet");
    }
    // Remember the read: the next write must be ordered after it.
    uint64_t head = H[size_t(g)];
    bool live = shadowStep1(head) == cur;
    if (live && reads[size_t(shadowTask(head))].reader == global)
      continue;
    reads.push_back({global, live ? shadowTask(head) : -1});
    H[size_t(g)] = shadowWord(step, int64_t(reads.size()) - 1);
  }
}

void HostExecutor::Impl::recordWrite(int64_t global, int region, int64_t off,
                                     int64_t bytes) {
  if (!opt.checkEvents || bytes <= 0)
    return;
  std::unique_lock<std::mutex> lock(shadowMu, std::defer_lock);
  if (opt.threads > 1)
    lock.lock();
  const TaskRef &me = tasks[size_t(global)];
  const uint64_t cur = step + 1, word = shadowWord(step, global);
  std::vector<uint64_t> &W = shadowWrite[region], &H = readHead[region];
  const int64_t g0 = off >> 1, g1 = (off + bytes + 1) >> 1;
  // A read since the last write (or this step's start) that this write is
  // not ordered after.
  auto unorderedReader = [&](int64_t g) -> int64_t {
    uint64_t head = H[size_t(g)];
    if (shadowStep1(head) != cur)
      return -1;
    for (int64_t r = shadowTask(head); r >= 0; r = reads[size_t(r)].next) {
      int64_t reader = reads[size_t(r)].reader;
      if (reader != global && !ordered(me, reader))
        return reader;
    }
    return -1;
  };
  auto unorderedWriter = [&](int64_t g) -> int64_t {
    uint64_t w = W[size_t(g)];
    int64_t other = shadowTask(w);
    if (shadowStep1(w) != cur || other == global || ordered(me, other))
      return -1;
    return other;
  };
  for (int64_t g = g0; g < g1; ++g) {
    if (int64_t other = unorderedWriter(g); other >= 0) {
      int64_t end = g + 1;
      while (end < g1 && unorderedWriter(end) == other)
        ++end;
      fail("host executor: step {}: {} writes {} that {} also writes in this "
           "step, and no event orders the two writes",
           step, who(me), describeRange(region, 2 * g, 2 * end),
           who(tasks[size_t(other)]));
    }
    if (int64_t reader = unorderedReader(g); reader >= 0) {
      int64_t end = g + 1;
      while (end < g1 && unorderedReader(end) == reader)
        ++end;
      std::string range = describeRange(region, 2 * g, 2 * end);
      if (shadowStep1(W[size_t(g)]) != cur)
        // Nothing wrote the bytes yet in this step: the reader took older
        // data that this task produces.
        fail("host executor: step {}: {} reads {} before its producer ({}) "
             "signalled: it read them before that task wrote them in this "
             "step, and no event orders the two (a missing wait, or a write "
             "that must wait for this read)",
             step, who(tasks[size_t(reader)]), range, producer(me));
      fail("host executor: step {}: {} writes {} that {} reads in this step, "
           "and no event orders that read before this write",
           step, who(me), range, who(tasks[size_t(reader)]));
    }
    W[size_t(g)] = word;
    H[size_t(g)] = 0;
  }
}

void HostExecutor::Impl::beginStep() {
  report.fill(0);
  for (int s = 0; s < sms; ++s)
    next[s].store(0);
  generation = 0;
  failed = false;
  waiting = 0;
  error.clear();
  if (opt.trace) { // a task that does not run leaves no stale stamps
    trace.assign(size_t(sms * maxTasks * TILEC_TRACE_WORDS), 0);
    // The sched role: every list's first task waits from the step's start.
    const uint64_t start = nowNs();
    for (int s = 0; s < sms; ++s)
      if (smBegin[s + 1] > smBegin[s])
        stampsOf(s, 0)[TILEC_TRACE_WAIT_BEGIN] = start;
  }
  if (!opt.checkEvents)
    return;
  vc.assign(size_t(sms), std::vector<uint32_t>(size_t(sms), 0));
  prefix.assign(m.events.size(), {});
  for (int r : {kArena, kKv}) {
    size_t granules = (regions[r].size() + 1) / 2;
    if (shadowWrite[r].size() != granules) {
      shadowWrite[r].assign(granules, 0);
      readHead[r].assign(granules, 0);
    }
  }
  reads.clear();
}

bool HostExecutor::Impl::waitsSatisfied(int sm) const {
  const TilecTask &t = *tasks[size_t(smBegin[sm] + next[sm].load())].task;
  for (auto [w, c] : {std::pair(TILEC_W_WAIT0, TILEC_W_COUNT0),
                      std::pair(TILEC_W_WAIT1, TILEC_W_COUNT1)}) {
    int64_t e = t.w[w];
    if (e < 0)
      continue;
    uint64_t target =
        step * m.events[size_t(e)].signalsPerStep + uint64_t(t.w[c]);
    if (events[size_t(e)].load(std::memory_order_acquire) < target)
      return false;
  }
  return true;
}

void HostExecutor::Impl::runTask(int sm) {
  int64_t global = smBegin[sm] + next[sm].load();
  const TaskRef &ref = tasks[size_t(global)];
  const TilecTask &t = *ref.task;
  if (opt.checkEvents) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<uint32_t> &clock = vc[size_t(sm)];
    clock[size_t(sm)] = uint32_t(ref.index);
    for (auto [w, c] : {std::pair(TILEC_W_WAIT0, TILEC_W_COUNT0),
                        std::pair(TILEC_W_WAIT1, TILEC_W_COUNT1)}) {
      if (t.w[w] < 0)
        continue;
      const std::vector<uint32_t> &known =
          prefix[size_t(t.w[w])][size_t(t.w[c] - 1)];
      for (int s = 0; s < sms; ++s)
        clock[size_t(s)] = std::max(clock[size_t(s)], known[size_t(s)]);
    }
  }
  TaskRun run(*this, global);
  uint64_t *stamps = opt.trace ? stampsOf(sm, next[sm].load()) : nullptr;
  if (stamps)
    stamps[TILEC_TRACE_COMPUTE_BEGIN] = nowNs();
  switch (ref.inst->family) {
  case TILEC_TASK_EMBED:
    runEmbed(run);
    break;
  case TILEC_TASK_LINEAR:
    runLinear(run);
    break;
  case TILEC_TASK_ATTENTION:
    runAttention(run);
    break;
  case TILEC_TASK_ROUTER_TOPK:
    runRouter(run);
    break;
  case TILEC_TASK_MOE_GATE_UP:
    runMoeGateUp(run);
    break;
  case TILEC_TASK_MOE_DOWN:
    runMoeDown(run);
    break;
  case TILEC_TASK_MOE_COMBINE:
    runMoeCombine(run);
    break;
  case TILEC_TASK_CONCAT:
    runConcat(run);
    break;
  case TILEC_TASK_SPEC_ACCEPT:
    runSpecAccept(run);
    break;
  case TILEC_TASK_SPEC_UPDATE:
    runSpecUpdate(run);
    break;
  case TILEC_TASK_DRAFT_FILL:
    runDraftFill(run);
    break;
  case TILEC_TASK_ARGMAX_REDUCE:
    runArgmaxReduce(run);
    break;
  case TILEC_TASK_SILU_MUL:
    runSiluMul(run);
    break;
  default:
    run.error("unknown family");
  }
  if (stamps) {
    stamps[TILEC_TRACE_COMPUTE_END] = nowNs();
    // The sched role: the list's next task waits on its events from now.
    if (global + 1 < smBegin[sm + 1])
      stamps[TILEC_TRACE_WORDS + TILEC_TRACE_WAIT_BEGIN] =
          stamps[TILEC_TRACE_COMPUTE_END];
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    if (opt.checkEvents)
      vc[size_t(sm)][size_t(sm)] = uint32_t(ref.index + 1);
    int64_t e = t.w[TILEC_W_SIGNAL];
    if (e >= 0) {
      if (opt.checkEvents) {
        std::vector<std::vector<uint32_t>> &list = prefix[size_t(e)];
        std::vector<uint32_t> joined = vc[size_t(sm)];
        if (!list.empty())
          for (int s = 0; s < sms; ++s)
            joined[size_t(s)] =
                std::max(joined[size_t(s)], list.back()[size_t(s)]);
        list.push_back(std::move(joined));
      }
      // Release: everything this task stored is visible to a task whose
      // acquire load sees the new count.
      events[size_t(e)].fetch_add(1, std::memory_order_release);
    }
    next[sm].fetch_add(1);
    ++generation;
    waiting = 0;
  }
  cv.notify_all();
}

std::string HostExecutor::Impl::deadlock() const {
  std::string out = fmt::format(
      "host executor: deadlock in step {}: no SM can proceed", step);
  int listed = 0;
  for (int s = 0; s < sms; ++s) {
    int64_t i = next[s].load();
    if (i >= smBegin[s + 1] - smBegin[s])
      continue;
    const TaskRef &r = tasks[size_t(smBegin[s] + i)];
    for (auto [w, c] : {std::pair(TILEC_W_WAIT0, TILEC_W_COUNT0),
                        std::pair(TILEC_W_WAIT1, TILEC_W_COUNT1)}) {
      int64_t e = r.task->w[w];
      if (e < 0)
        continue;
      uint64_t base = step * m.events[size_t(e)].signalsPerStep;
      uint64_t have = events[size_t(e)].load();
      if (have >= base + uint64_t(r.task->w[c]))
        continue;
      if (listed++ < 8)
        out += fmt::format("; {} waits for event {} ('{}') to reach {} ({} "
                           "signals of this step), it is at {} ({})",
                           who(r), e, m.events[size_t(e)].name,
                           base + uint64_t(r.task->w[c]), r.task->w[c], have,
                           have - base);
    }
  }
  if (listed > 8)
    out += fmt::format("; and {} more waits", listed - 8);
  return out;
}

void HostExecutor::Impl::worker(int id, int threads) {
  std::mt19937_64 rng(mixSeed(opt.interleavingSeed ^
                              mixSeed(step * 0x9E3779B97F4A7C15ull + 1) ^
                              mixSeed(uint64_t(id) + 0x632BE59BD9B4E019ull)));
  std::vector<int> mine, runnable;
  for (int s = id; s < sms; s += threads)
    mine.push_back(s);
  while (!failed.load()) {
    uint64_t seen = generation.load();
    runnable.clear();
    bool allDone = true;
    for (int s : mine) {
      if (next[s].load() >= smBegin[s + 1] - smBegin[s])
        continue;
      allDone = false;
      if (waitsSatisfied(s)) {
        runnable.push_back(s);
        if (opt.trace) { // the sched role: its waits are met (first seen)
          uint64_t *stamps = stampsOf(s, next[s].load());
          if (stamps[TILEC_TRACE_WAIT_END] == 0)
            stamps[TILEC_TRACE_WAIT_END] = nowNs();
        }
      }
    }
    if (allDone)
      break;
    if (runnable.empty()) {
      std::unique_lock<std::mutex> lock(mu);
      if (generation.load() != seen || failed.load())
        continue;
      if (++waiting == active) {
        // Every live worker waits and nothing changed: a deadlock. Fill the
        // watchdog's report words as the GPU would.
        for (int s = 0; s < sms; ++s) {
          int64_t i = next[s].load();
          if (i >= smBegin[s + 1] - smBegin[s])
            continue;
          const TilecTask &t = *tasks[size_t(smBegin[s] + i)].task;
          int64_t e =
              t.w[TILEC_W_WAIT0] >= 0 ? t.w[TILEC_W_WAIT0] : t.w[TILEC_W_WAIT1];
          int64_t c = t.w[TILEC_W_WAIT0] >= 0 ? t.w[TILEC_W_COUNT0]
                                              : t.w[TILEC_W_COUNT1];
          report[TILEC_REPORT_FLAG] = 1;
          report[TILEC_REPORT_SM] = s;
          report[TILEC_REPORT_TASK] = int(i);
          report[TILEC_REPORT_OP] = int(t.w[TILEC_W_OP]);
          report[TILEC_REPORT_EVENT] = int(e);
          if (e >= 0) {
            report[TILEC_REPORT_HAVE] = int(events[size_t(e)].load());
            report[TILEC_REPORT_WANT] =
                int(step * m.events[size_t(e)].signalsPerStep + uint64_t(c));
          }
          break;
        }
        if (error.empty())
          error = deadlock();
        failed = true;
        cv.notify_all();
        return;
      }
      // A change of generation wakes every waiter and zeroes `waiting`.
      cv.wait(lock, [&] { return generation.load() != seen || failed.load(); });
      continue;
    }
    int s = runnable[size_t(rng() % runnable.size())];
    try {
      runTask(s);
    } catch (const std::exception &e) {
      std::lock_guard<std::mutex> lock(mu);
      if (error.empty())
        error = e.what();
      failed = true;
      cv.notify_all();
      return;
    }
  }
  std::lock_guard<std::mutex> lock(mu);
  --active;
  ++generation;
  waiting = 0;
  cv.notify_all();
}

void HostExecutor::Impl::runStep() {
  if (!poisoned.empty())
    fail("host executor: an earlier step failed, so the engine's state is "
         "undefined: {}",
         poisoned);
  auto start = std::chrono::steady_clock::now();
  beginStep();
  int threads = std::max(1, std::min(opt.threads, std::max(sms, 1)));
  active = threads;
  if (threads == 1) {
    worker(0, 1);
  } else {
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i)
      pool.emplace_back([this, i, threads] { worker(i, threads); });
    for (std::thread &t : pool)
      t.join();
  }
  if (failed.load()) {
    poisoned = error;
    throw Error(error);
  }
  for (size_t e = 0; e < m.events.size(); ++e) {
    uint64_t want = (step + 1) * m.events[e].signalsPerStep;
    if (events[e].load() != want) {
      poisoned = fmt::format(
          "host executor: step {}: event {} ('{}') is at {}, expected {}", step,
          e, m.events[e].name, events[e].load(), want);
      throw Error(poisoned);
    }
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  ++step;
  ++stats.steps;
  stats.tasks += int64_t(tasks.size());
  stats.seconds += seconds;
  stats.lastStepSeconds = seconds;
}

//===----------------------------------------------------------------------===//
// HostExecutor
//===----------------------------------------------------------------------===//

HostExecutor::HostExecutor(EngineManifest manifest,
                           const WeightSourceSpec &weights, HostOptions options)
    : HostExecutor(std::move(manifest), std::vector<uint8_t>(), options) {
  impl_->regions[kWeights].assign(size_t(impl_->m.weightBytes), 0);
  Progress bar("packing weights", int64_t(impl_->m.weights.size()),
               ProgressUnit::Items, "weights");
  packWeights(impl_->m, weights, impl_->regions[kWeights].data(),
              [&](size_t done, size_t, const std::string &) {
                bar.update(int64_t(done));
              });
  bar.finish();
}

HostExecutor::HostExecutor(EngineManifest manifest,
                           std::vector<uint8_t> weights, HostOptions options)
    : impl_(std::make_unique<Impl>(std::move(manifest), options)) {
  Impl &x = *impl_;
  if (x.m.abiVersion != TILEC_ABI_VERSION)
    fail("host executor: engine ABI version {}, this runtime speaks {}",
         x.m.abiVersion, TILEC_ABI_VERSION);
  if (x.m.arenaBytes < 0 || x.m.weightBytes < 0 || x.m.kvBytes < 0)
    fail("host executor: negative region sizes in the manifest");
  x.validate();
  if (!weights.empty() && int64_t(weights.size()) != x.m.weightBytes)
    fail("host executor: {} weight bytes given, the manifest says {}",
         weights.size(), x.m.weightBytes);
  x.regions[kArena].assign(size_t(x.m.arenaBytes), 0);
  x.regions[kWeights] = std::move(weights);
  x.regions[kKv].assign(size_t(x.m.kvBytes), 0);
  x.events = std::make_unique<std::atomic<uint64_t>[]>(x.m.events.size());
  for (size_t e = 0; e < x.m.events.size(); ++e)
    x.events[e].store(0);
  x.next = std::make_unique<std::atomic<int64_t>[]>(size_t(x.sms));
  for (int s = 0; s < x.sms; ++s)
    x.maxTasks = std::max(x.maxTasks, x.smBegin[s + 1] - x.smBegin[s]);
}

HostExecutor::~HostExecutor() = default;

const EngineManifest &HostExecutor::manifest() const { return impl_->m; }
const HostOptions &HostExecutor::options() const { return impl_->opt; }
void HostExecutor::setInterleavingSeed(uint64_t seed) {
  impl_->opt.interleavingSeed = seed;
}
std::vector<uint8_t> &HostExecutor::arena() { return impl_->regions[kArena]; }
std::vector<uint8_t> &HostExecutor::kv() { return impl_->regions[kKv]; }
const std::vector<uint8_t> &HostExecutor::weights() const {
  return impl_->regions[kWeights];
}
uint64_t HostExecutor::stepIndex() const { return impl_->step; }
const std::array<int, TILEC_REPORT_WORDS> &HostExecutor::report() const {
  return impl_->report;
}
const HostStats &HostExecutor::stats() const { return impl_->stats; }
void HostExecutor::runStep() { impl_->runStep(); }

StepOutput HostExecutor::step(const std::vector<int32_t> &tokens,
                              const std::vector<int32_t> &positions,
                              bool wantLogits) {
  const EngineManifest &m = impl_->m;
  if (int64_t(tokens.size()) != m.tokens ||
      int64_t(positions.size()) != m.tokens)
    fail("host executor: a step takes {} tokens and positions, got {} and {}",
         m.tokens, tokens.size(), positions.size());
  if (m.tokensBuffer.empty() || m.positionsBuffer.empty())
    fail("host executor: the engine names no tokens or positions buffer");
  for (size_t i = 0; i < positions.size(); ++i)
    if (positions[i] < 0 || positions[i] != positions[0] + int32_t(i))
      fail("host executor: positions must be consecutive from a non-negative "
           "first one (docs/engine.md); position {} is {}",
           i, positions[i]);
  int64_t last = positions.empty() ? 0 : positions.back();
  for (const KVCacheInfo &c : m.caches)
    if (c.window == 0 && last >= c.capacity)
      fail("host executor: position {} does not fit the full-attention cache "
           "'{}' of capacity {} (recompile with a larger context)",
           last, c.name, c.capacity);
  writeBuffer(m.tokensBuffer, tokens.data(), int64_t(4 * tokens.size()));
  writeBuffer(m.positionsBuffer, positions.data(),
              int64_t(4 * positions.size()));
  runStep();
  if (impl_->report[TILEC_REPORT_FLAG] == 2)
    fail("host executor: step {}: a token id is outside the vocabulary "
         "(tokens {}); reported by SM {} task {}",
         impl_->step - 1, fmt::join(tokens, ","),
         impl_->report[TILEC_REPORT_SM], impl_->report[TILEC_REPORT_TASK]);
  StepOutput out;
  out.argmax = argmax();
  if (wantLogits)
    out.logits = logits();
  return out;
}

namespace {
const BufferInfo &sizedBuffer(const EngineManifest &m, const std::string &name,
                              int64_t bytes, const char *what) {
  if (name.empty())
    fail("host executor: the engine names no buffer to {}", what);
  const BufferInfo &b = m.buffer(name);
  if (bytes < 0 || b.bytes < bytes)
    fail("host executor: buffer '{}' holds {} bytes, {} {}", name, b.bytes,
         what, bytes);
  return b;
}
} // namespace

void HostExecutor::writeBuffer(const std::string &name, const void *data,
                               int64_t bytes) {
  const BufferInfo &b = sizedBuffer(impl_->m, name, bytes, "write");
  std::memcpy(impl_->regions[kArena].data() + b.offset, data, size_t(bytes));
}

void HostExecutor::readBuffer(const std::string &name, void *data,
                              int64_t bytes) {
  const BufferInfo &b = sizedBuffer(impl_->m, name, bytes, "read");
  std::memcpy(data, impl_->regions[kArena].data() + b.offset, size_t(bytes));
}

void HostExecutor::launch(const std::string &readBack, void *dst,
                          int64_t bytes) {
  runStep();
  if (impl_->report[TILEC_REPORT_FLAG] == 2)
    fail("host executor: step {}: a token id is outside the vocabulary; "
         "reported by SM {} task {} (op {})",
         impl_->step - 1, impl_->report[TILEC_REPORT_SM],
         impl_->report[TILEC_REPORT_TASK],
         impl_->opNames[size_t(impl_->report[TILEC_REPORT_OP])]);
  if (!readBack.empty())
    readBuffer(readBack, dst, bytes);
}

std::vector<int32_t> HostExecutor::argmax() const {
  const EngineManifest &m = impl_->m;
  if (m.argmaxBuffer.empty())
    return {};
  const BufferInfo &b = m.buffer(m.argmaxBuffer);
  if (b.bytes < 4 * m.tokens)
    fail("host executor: argmax buffer '{}' holds {} bytes for {} tokens",
         b.name, b.bytes, m.tokens);
  std::vector<int32_t> out(size_t(m.tokens));
  std::memcpy(out.data(), impl_->regions[kArena].data() + b.offset,
              4 * out.size());
  return out;
}

std::vector<float> HostExecutor::logits() const {
  const EngineManifest &m = impl_->m;
  if (m.logitsBuffer.empty())
    return {};
  const BufferInfo &b = m.buffer(m.logitsBuffer);
  std::vector<float> out(size_t(b.bytes / 4));
  std::memcpy(out.data(), impl_->regions[kArena].data() + b.offset,
              4 * out.size());
  return out;
}

std::string HostExecutor::name() const { return "host"; }

std::vector<uint64_t> HostExecutor::readTrace() const {
  return impl_->opt.trace ? impl_->trace : std::vector<uint64_t>();
}

void HostExecutor::reset() { impl_->slots.clear(); }

// Padding (Executor.cpp's loop pads the last prefill chunk and every decode
// step of a T > 1 engine with token 0 at the following positions) is safe:
//  * attention is causal, so no real query (at a position <= the last real
//    one) reads a padding key, and padding outputs are never used;
//  * a full-attention cache stores position p in slot p; the next step
//    rewrites the padding's slots with real tokens before any query reads them
//    (its K/V tasks precede its attention), and the loop refuses positions
//    past the capacity;
//  * a ring cache has capacity >= window + T - 1 (the compiler gives
//    window + T): a padding write at p' <= pos0 + T - 1 replaces position
//    p' - capacity <= pos0 - window, below the window of every query of this
//    step (>= pos0 - window + 1) and of later ones.
// Reading a ring slot that holds another position is reported, so a ring too
// small fails loudly here instead of attending to the wrong keys.
std::vector<int32_t>
HostExecutor::generateGreedy(const std::vector<int32_t> &prompt, int64_t count,
                             GenerateStats *stats) {
  return tilec::generateGreedy(*this, prompt, count, stats);
}

} // namespace tilec
