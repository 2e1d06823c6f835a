//===- common.cuh - Device library basics: roles, numbers, loads, events --===//
//
// Included by every task family header and by the megakernel. NVRTC compiles
// it with no C or C++ standard library: CUDA headers only, fixed-size types
// spelt with builtin types.
//
// Launch contract (the runtime and codegen must agree with these macros):
//   TILEC_THREADS     threads per CTA (one CTA per SM): warp 0 schedules, warp
//   1
//                     prefetches weights into L2, the rest compute.
//   TILEC_SMEM_BYTES  dynamic shared memory the kernel is launched with; task
//                     bodies size their shared buffers from it at compile time.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/abi/ExactMath.h"
#include "runtime/abi/TaskAbi.h"

#include <cuda_bf16.h>

#ifndef TILEC_THREADS
#define TILEC_THREADS 384
#endif
#ifndef TILEC_SMEM_BYTES
#define TILEC_SMEM_BYTES (192 * 1024)
#endif
/* The loader prefetches at most this many bytes of one task's weights. */
#ifndef TILEC_PREFETCH_BYTES
#define TILEC_PREFETCH_BYTES (256 * 1024)
#endif
/* ... for tasks at most this many places ahead of the one computing. */
#ifndef TILEC_PREFETCH_TASKS
#define TILEC_PREFETCH_TASKS 1
#endif

namespace tilec {

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

//===--- Warp roles -------------------------------------------------------===//

constexpr int kThreads = TILEC_THREADS;
constexpr int kWarps = kThreads / 32;
constexpr int kSchedWarp = 0;    // reads the next record, waits on its events
constexpr int kLoadWarp = 1;     // L2 prefetch of upcoming tasks' weights
constexpr int kComputeWarp0 = 2; // warps [2, kWarps) run task bodies
constexpr int kComputeWarps = kWarps - kComputeWarp0;
constexpr int kComputeThreads = kComputeWarps * 32;
constexpr int kSmemBytes = TILEC_SMEM_BYTES;
static_assert(kThreads % 32 == 0 && kComputeWarps >= 2 && kThreads <= 1024,
              "TILEC_THREADS: a multiple of 32 with at least 4 warps");
static_assert(kSmemBytes >= 32 * 1024 && kSmemBytes % 16 == 0,
              "TILEC_SMEM_BYTES: at least 32 KiB, a multiple of 16");

// Named barriers (0 is __syncthreads).
constexpr int kBarGo = 1;      // sched + compute warps: the task may start
constexpr int kBarCompute = 2; // compute warps only

/// What a task body sees of the step (TilecStepParams) and of its CTA.
struct Ctx {
  unsigned char *arena;
  const unsigned char *weights;
  unsigned char *kv;
  u64 *events;
  const unsigned int *signals_per_step;
  u64 step;
  int *report;
  u64 watchdog_ns;
  unsigned char *smem; // kSmemBytes of dynamic shared memory: the body's own
  int sm;              // this CTA's SM slot (blockIdx.x)
  int task;            // index of the task in this SM's list
  i64 op;              // the task's TILEC_W_OP (reports)
  bool prefetch;       // true: the loader warp asks for L2 prefetches only
};

__device__ __forceinline__ int lane_id() { return threadIdx.x & 31; }
/// Thread index among the compute warps, in [0, kComputeThreads).
__device__ __forceinline__ int compute_tid() {
  return int(threadIdx.x) - kComputeWarp0 * 32;
}
__device__ __forceinline__ int compute_warp() { return compute_tid() >> 5; }

__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
/// Barrier of the compute warps (task bodies use this, not __syncthreads).
__device__ __forceinline__ void compute_sync() {
  named_barrier(kBarCompute, kComputeThreads);
}

template <typename T> __host__ __device__ constexpr T cmin(T a, T b) {
  return a < b ? a : b;
}
template <typename T> __host__ __device__ constexpr T cmax(T a, T b) {
  return a < b ? b : a;
}
__host__ __device__ constexpr int cdiv(int a, int b) { return (a + b - 1) / b; }
__host__ __device__ constexpr i64 cdiv64(i64 a, i64 b) {
  return (a + b - 1) / b;
}

//===--- Numbers ----------------------------------------------------------===//

__device__ __forceinline__ float bf16_lo(u32 w) {
  return __uint_as_float(w << 16);
}
__device__ __forceinline__ float bf16_hi(u32 w) {
  return __uint_as_float(w & 0xffff0000u);
}
__device__ __forceinline__ float bf16_to_f32(u16 h) {
  return __uint_as_float(u32(h) << 16);
}
/// Round to nearest even.
__device__ __forceinline__ u16 f32_to_bf16(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}
__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
  return u32(f32_to_bf16(lo)) | (u32(f32_to_bf16(hi)) << 16);
}
/// Eight bf16 of a 16-byte vector as f32.
__device__ __forceinline__ void bf16x8_to_f32(const uint4 &v, float (&f)[8]) {
  f[0] = bf16_lo(v.x), f[1] = bf16_hi(v.x), f[2] = bf16_lo(v.y);
  f[3] = bf16_hi(v.y), f[4] = bf16_lo(v.z), f[5] = bf16_hi(v.z);
  f[6] = bf16_lo(v.w), f[7] = bf16_hi(v.w);
}

/// Two f16 (low half first) as f32.
__device__ __forceinline__ float2 f16x2_to_f32x2(u32 h) {
  float a, b;
  asm("{.reg .b16 l, h;\n\tmov.b32 {l, h}, %2;\n\tcvt.f32.f16 %0, l;\n\t"
      "cvt.f32.f16 %1, h;}"
      : "=f"(a), "=f"(b)
      : "r"(h));
  return make_float2(a, b);
}

/// Two E4M3FN codes (low byte first) as f16x2; exact (f16 holds every E4M3
/// value, NaN stays NaN).
__device__ __forceinline__ u32 e4m3x2_to_f16x2(u16 codes) {
  u32 out;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(out) : "h"(codes));
  return out;
}
/// One E4M3FN code as f32.
__device__ __forceinline__ float e4m3_to_f32(u8 code) {
  return f16x2_to_f32x2(e4m3x2_to_f16x2(u16(code))).x;
}
/// Eight E4M3FN codes (two words, byte 0 first) as f32.
__device__ __forceinline__ void e4m3x8_to_f32(u32 a, u32 b, float (&f)[8]) {
  float2 p;
  p = f16x2_to_f32x2(e4m3x2_to_f16x2(u16(a))), f[0] = p.x, f[1] = p.y;
  p = f16x2_to_f32x2(e4m3x2_to_f16x2(u16(a >> 16))), f[2] = p.x, f[3] = p.y;
  p = f16x2_to_f32x2(e4m3x2_to_f16x2(u16(b))), f[4] = p.x, f[5] = p.y;
  p = f16x2_to_f32x2(e4m3x2_to_f16x2(u16(b >> 16))), f[6] = p.x, f[7] = p.y;
}

/// E2M1 codes become f16 by placing the magnitude bits (e1 e0 m) at f16 bits
/// 11..9 and the sign at 15: the f16 value is exactly e2m1 * 2^-14 (the
/// subnormal code 1 included), so dequantized values are these times
/// kE2m1Unscale times the block scale.
constexpr float kE2m1Unscale = 16384.0f;
/// Eight E2M1 codes of a word (element 0 in the low nibble) as f32, each
/// 2^-14 times its value.
__device__ __forceinline__ void e2m1x8_to_f32(u32 w, float (&f)[8]) {
  // Pairs (0,4), (1,5), (2,6), (3,7): nibble i sits at bits 4i.. of w.
  const u32 p04 = ((w << 9) & 0x0e000e00u) | ((w << 12) & 0x80008000u);
  const u32 p15 = ((w << 5) & 0x0e000e00u) | ((w << 8) & 0x80008000u);
  const u32 p26 = ((w << 1) & 0x0e000e00u) | ((w << 4) & 0x80008000u);
  const u32 p37 = ((w >> 3) & 0x0e000e00u) | (w & 0x80008000u);
  float2 q;
  q = f16x2_to_f32x2(p04), f[0] = q.x, f[4] = q.y;
  q = f16x2_to_f32x2(p15), f[1] = q.x, f[5] = q.y;
  q = f16x2_to_f32x2(p26), f[2] = q.x, f[6] = q.y;
  q = f16x2_to_f32x2(p37), f[3] = q.x, f[7] = q.y;
}

/// E8M0: 2^(code - 127); 255 is NaN, 0 is 2^-127 (an f32 subnormal).
__device__ __forceinline__ float e8m0_to_f32(u8 code) {
  if (code == 0xff)
    return __uint_as_float(0x7fc00000u);
  if (code == 0)
    return __uint_as_float(0x00400000u);
  return __uint_as_float(u32(code) << 23);
}

/// The E8M0 scale times kE2m1Unscale, for E2M1 values decoded as e2m1 *
/// 2^-14: exact for codes up to 240 (scales up to 2^113); larger ones, which
/// no real weight has, become inf. 255 is NaN.
__device__ __forceinline__ float e8m0_unscaled(u8 code) {
  if (code == 0xff)
    return __uint_as_float(0x7fc00000u);
  return code <= 240 ? __uint_as_float(u32(code + 14) << 23)
                     : __uint_as_float(0x7f800000u);
}

//===--- Loads and prefetch -----------------------------------------------===//

/// 16 bytes of weights: read-only for the whole kernel, so the non-coherent
/// path, and no L1 allocation (streamed once per task).
__device__ __forceinline__ uint4 ld_weight16(const void *p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}
/// Small read-only weights (scales, norm weights): non-coherent, L1-cached.
template <typename T> __device__ __forceinline__ T ld_weight(const T *p) {
  return __ldg(p);
}
/// Activations are written during the kernel by other SMs: plain (coherent)
/// loads, never the non-coherent path. Valid after an event's acquire.
__device__ __forceinline__ uint4 ld_act16(const void *p) {
  return *static_cast<const uint4 *>(p);
}

/// Asks L2 to fetch [p, p + bytes) (whole 16-byte units inside the range), from
/// one warp: the lanes split the range.
__device__ __forceinline__ void prefetch_l2(const void *p, i64 bytes) {
  if (bytes > TILEC_PREFETCH_BYTES)
    bytes = TILEC_PREFETCH_BYTES;
  u64 a = reinterpret_cast<u64>(p), end = a + u64(bytes > 0 ? bytes : 0);
  a = (a + 15) & ~u64(15);
  end &= ~u64(15);
  if (end <= a)
    return;
  constexpr u64 kPiece = 32 * 1024;
  for (u64 q = a + u64(lane_id()) * kPiece; q < end; q += 32 * kPiece) {
    u64 n = end - q < kPiece ? end - q : kPiece;
#if __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(q),
                 "r"(u32(n))
                 : "memory");
#else
    for (u64 r = q; r < q + n; r += 128)
      asm volatile("prefetch.global.L2 [%0];" ::"l"(r));
#endif
  }
}

//===--- Warp reductions --------------------------------------------------===//

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__host__ __device__ constexpr int pow2_at_least(int n) {
  return n <= 1 ? 1 : 2 * pow2_at_least((n + 1) / 2);
}
__host__ __device__ constexpr int log2_exact(int n) {
  return n <= 1 ? 0 : 1 + log2_exact(n / 2);
}

/// Sums each of N (<= 32) values over the warp with N' - 1 + 5 - log2(N')
/// shuffles (N' = N rounded up to a power of two): recursive halving, each
/// step keeping half of the values. Afterwards lane l holds the total of value
/// (l >> kValueShift<N>); returns it.
template <int N> struct WarpReduceScatter {
  static_assert(N >= 1 && N <= 32, "at most 32 values");
  static constexpr int kPadded = pow2_at_least(N);
  static constexpr int kShift = 5 - log2_exact(kPadded);
  /// Lanes (l & kLaneMask) == 0 hold distinct values.
  static constexpr int kLaneMask = (1 << kShift) - 1;

  __device__ __forceinline__ static float run(const float (&v)[N]) {
    float a[kPadded];
#pragma unroll
    for (int i = 0; i < kPadded; ++i)
      a[i] = i < N ? v[i] : 0.0f;
    halve<kPadded / 2, 16>(a);
#pragma unroll
    for (int off = (1 << kShift) >> 1; off > 0; off >>= 1)
      a[0] += __shfl_xor_sync(0xffffffffu, a[0], off);
    return a[0];
  }

private:
  /// One halving step: lanes with bit OFF keep values [HALF, 2 HALF), the
  /// others [0, HALF), each adding its partner's copy (into a[0, HALF)).
  template <int HALF, int OFF>
  __device__ __forceinline__ static void halve(float (&a)[kPadded]) {
    if constexpr (HALF >= 1) {
      // Bit selects: a select of two array elements can become a select of
      // their addresses, which sends the array to local memory.
      const u32 upper = (lane_id() & OFF) != 0 ? 0xffffffffu : 0u;
#pragma unroll
      for (int j = 0; j < HALF; ++j) {
        const u32 lo = __float_as_uint(a[j]), hi = __float_as_uint(a[j + HALF]);
        const float send = __uint_as_float((lo & upper) | (hi & ~upper));
        const float keep = __uint_as_float((hi & upper) | (lo & ~upper));
        a[j] = keep + __shfl_xor_sync(0xffffffffu, send, OFF);
      }
      halve<HALF / 2, OFF / 2>(a);
    }
  }
};

//===--- Events, reports, trace -------------------------------------------===//

__device__ __forceinline__ u64 globaltimer() {
  u64 t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ u64 ld_relaxed_gpu(const u64 *p) {
  u64 v;
  asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];"
               : "=l"(v)
               : "l"(p)
               : "memory");
  return v;
}
__device__ __forceinline__ void fence_acq_rel_gpu() {
  asm volatile("fence.acq_rel.gpu;" ::: "memory");
}
__device__ __forceinline__ void red_release_gpu_add(u64 *p, u64 v) {
  asm volatile("red.release.gpu.global.add.u64 [%0], %1;" ::"l"(p), "l"(v)
               : "memory");
}

/// True once some CTA's watchdog fired (TILEC_REPORT_FLAG == 1).
__device__ __forceinline__ bool stop_requested(const Ctx &ctx) {
  return ctx.report &&
         *static_cast<volatile int *>(ctx.report + TILEC_REPORT_FLAG) == 1;
}

/// Records a hang (first reporter wins; a hang replaces a bad-input flag).
__device__ inline void report_hang(const Ctx &ctx, int event, u64 have,
                                   u64 want) {
  int *r = ctx.report;
  if (!r)
    return;
  int old = atomicCAS(r + TILEC_REPORT_FLAG, 0, 1);
  if (old == 2)
    old = atomicCAS(r + TILEC_REPORT_FLAG, 2, 1);
  if (old == 1)
    return;
  atomicExch(r + TILEC_REPORT_SM, ctx.sm);
  atomicExch(r + TILEC_REPORT_TASK, ctx.task);
  atomicExch(r + TILEC_REPORT_OP, int(ctx.op));
  atomicExch(r + TILEC_REPORT_EVENT, event);
  atomicExch(r + TILEC_REPORT_HAVE, int(u32(have)));
  atomicExch(r + TILEC_REPORT_WANT, int(u32(want)));
  __threadfence_system();
}

/// Flags bad input (an embedding id out of range); the kernel goes on.
__device__ inline void report_bad_input(const Ctx &ctx) {
  int *r = ctx.report;
  if (!r || atomicCAS(r + TILEC_REPORT_FLAG, 0, 2) != 0)
    return;
  atomicExch(r + TILEC_REPORT_SM, ctx.sm);
  atomicExch(r + TILEC_REPORT_TASK, ctx.task);
  atomicExch(r + TILEC_REPORT_OP, int(ctx.op));
  __threadfence_system();
}

constexpr u64 kStopPollNs = 1000000;

/// Waits (one thread) until events[event] >= target. Spins with relaxed loads
/// and a short backoff, then one acquire fence, so that the poll does not
/// invalidate L1 under the compute warps. Returns false when the kernel stops:
/// this wait outlived the watchdog (reported here), or another CTA's did.
__device__ inline bool wait_event(const Ctx &ctx, int event, u64 target) {
  const u64 *p = ctx.events + event;
  u64 have = ld_relaxed_gpu(p);
  if (have < target) {
    const u64 start = globaltimer();
    u64 checked = start;
    unsigned sleep = 16;
    for (;;) {
      __nanosleep(sleep);
      if (sleep < 256)
        sleep *= 2;
      have = ld_relaxed_gpu(p);
      if (have >= target)
        break;
      if (ctx.watchdog_ns) {
        const u64 now = globaltimer();
        if (now - start > ctx.watchdog_ns) {
          report_hang(ctx, event, have, target);
          return false;
        }
        // The report is host memory, whose reads slow every CTA's event
        // hops when frequent: poll it once a millisecond.
        if (now - checked > kStopPollNs) {
          checked = now;
          if (stop_requested(ctx))
            return false;
        }
      }
    }
  }
  fence_acq_rel_gpu();
  return true;
}

/// Adds 1 to events[event] after every store of the calling CTA's compute
/// warps: call from one thread right after compute_sync().
__device__ __forceinline__ void signal_event(const Ctx &ctx, int event) {
  __threadfence();
  red_release_gpu_add(ctx.events + event, 1);
}

} // namespace tilec
