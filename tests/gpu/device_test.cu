//===- device_test.cu - runtime/device on a GPU vs a CPU model ------------===//
//
// A standalone program (CMake target tilec_device_test, see README.md). It
// compiles the device library into one test megakernel whose Dispatch holds
// every instance below (small and MiMo-V2.5-Pro-shaped, with the template
// parameters in the order a generated kernel.cu passes them), builds task
// records by hand, runs them on several CTAs with events between dependent
// tasks, and compares the outputs with a CPU computation of docs/engine.md's
// semantics.
// It also checks tilec_synthesize byte for byte against models/core's writer,
// the watchdog, bad-input reports and trace stamps. Prints a table; exits 1 on
// any failure, 77 when there is no GPU.
//
//===----------------------------------------------------------------------===//
#include "runtime/device/megakernel.cuh"
#include "runtime/device/synthetic.cuh"

#include "models/core/Formats.h"
#include "tests/gpu/SyntheticExpected.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

using tilec::i64;
using tilec::u16;
using tilec::u32;
using tilec::u64;
using tilec::u8;

//===--- The instances ----------------------------------------------------===//

#define F_BF16 TILEC_FMT_BF16
#define F_FP8 TILEC_FMT_FP8
#define F_MX TILEC_FMT_MXFP4
#define P_NONE TILEC_PRO_NONE
#define P_RMS TILEC_PRO_RMSNORM
#define E_BF16 TILEC_EPI_STORE_BF16
#define E_F32 TILEC_EPI_STORE_F32
#define E_RES TILEC_EPI_RESIDUAL
#define E_SILU TILEC_EPI_SILU_PAIR
#define E_ROPE TILEC_EPI_ROPE_STORE
#define E_KC TILEC_EPI_ROPE_KCACHE
#define E_VC TILEC_EPI_VCACHE
#define E_AMX TILEC_EPI_ARGMAX

// name, T, K, N, tile, format, prologue, epilogue, heads, head_dim,
// rotary_dim, capacity, head_norm, logit_cap: linear_task's parameters in the
// order a generated kernel.cu passes them (the tiny drafter's q/k with their
// per-head norms, a softcapped lm_head; logit_cap's multiplier and softcap:
// logit_cap_of)
#define LINEAR_CASES(X)                                                        \
  X(lin_bf16_store_rms, 4, 256, 192, 64, F_BF16, P_RMS, E_BF16, 0, 0, 0, 0, 0, \
    0)                                                                         \
  X(lin_fp8_f32, 4, 256, 192, 64, F_FP8, P_NONE, E_F32, 0, 0, 0, 0, 0, 0)      \
  X(lin_mx_residual_rms, 4, 256, 192, 64, F_MX, P_RMS, E_RES, 0, 0, 0, 0, 0,   \
    0)                                                                         \
  X(lin_fp8_silu_rms, 4, 256, 192, 48, F_FP8, P_RMS, E_SILU, 0, 0, 0, 0, 0, 0) \
  X(lin_bf16_silu_t1, 1, 512, 128, 32, F_BF16, P_NONE, E_SILU, 0, 0, 0, 0, 0,  \
    0)                                                                         \
  X(lin_mx_rope_q, 4, 256, 192, 96, F_MX, P_RMS, E_ROPE, 4, 48, 16, 0, 0, 0)   \
  X(lin_fp8_rope_kcache, 4, 256, 96, 48, F_FP8, P_RMS, E_KC, 2, 48, 16, 64, 0, \
    0)                                                                         \
  X(lin_bf16_vcache, 4, 256, 64, 32, F_BF16, P_RMS, E_VC, 2, 32, 0, 64, 0, 0)  \
  X(lin_bf16_argmax_rms, 4, 256, 512, 64, F_BF16, P_RMS, E_AMX, 0, 0, 0, 0, 0, \
    0)                                                                         \
  X(lin_mx_argmax_t1, 1, 512, 300, 64, F_MX, P_NONE, E_AMX, 0, 0, 0, 0, 0, 0)  \
  X(lin_bf16_f32_t8_tail, 8, 96, 70, 16, F_BF16, P_NONE, E_F32, 0, 0, 0, 0, 0, \
    0)                                                                         \
  X(lin_fp8_residual_t8, 8, 384, 200, 64, F_FP8, P_RMS, E_RES, 0, 0, 0, 0, 0,  \
    0)                                                                         \
  X(lin_fp8_bf16_t1_edge, 1, 160, 130, 32, F_FP8, P_NONE, E_BF16, 0, 0, 0, 0,  \
    0, 0)                                                                      \
  X(lin_mx_f32_t16, 16, 256, 64, 32, F_MX, P_NONE, E_F32, 0, 0, 0, 0, 0, 0)    \
  X(lin_mx_silu_t8, 8, 256, 64, 32, F_MX, P_RMS, E_SILU, 0, 0, 0, 0, 0, 0)     \
  X(lin_bf16_rms_t16_unstaged, 16, 6144, 256, 64, F_BF16, P_RMS, E_BF16, 0, 0, \
    0, 0, 0, 0)                                                                \
  X(lin_bf16_rope_q_hnorm, 4, 64, 64, 16, F_BF16, P_RMS, E_ROPE, 4, 16, 16, 0, \
    1, 0)                                                                      \
  X(lin_bf16_kcache_hnorm, 4, 64, 32, 16, F_BF16, P_RMS, E_KC, 2, 16, 16, 20,  \
    1, 0)                                                                      \
  X(lin_fp8_rope_q_hnorm_t16, 16, 512, 512, 128, F_FP8, P_RMS, E_ROPE, 4, 128, \
    64, 0, 1, 0)                                                               \
  X(lin_bf16_argmax_cap, 4, 256, 512, 64, F_BF16, P_RMS, E_AMX, 0, 0, 0, 0, 0, \
    1)                                                                         \
  X(lin_mx_argmax_mult_t1, 1, 512, 300, 64, F_MX, P_NONE, E_AMX, 0, 0, 0, 0,   \
    0, 1)                                                                      \
  X(pro_mx_t8, 8, 6144, 2048, 64, F_MX, P_RMS, E_BF16, 0, 0, 0, 0, 0, 0)       \
  X(pro_mx_t1, 1, 6144, 2048, 16, F_MX, P_RMS, E_BF16, 0, 0, 0, 0, 0, 0)       \
  X(pro_q_rope, 8, 6144, 3072, 192, F_FP8, P_RMS, E_ROPE, 16, 192, 64, 0, 0,   \
    0)                                                                         \
  X(pro_k_cache, 8, 6144, 192, 192, F_FP8, P_RMS, E_KC, 1, 192, 64, 8192, 0,   \
    0)                                                                         \
  X(pro_v_cache, 8, 6144, 128, 128, F_FP8, P_RMS, E_VC, 1, 128, 0, 8192, 0, 0) \
  X(pro_o_residual, 8, 2048, 6144, 64, F_BF16, P_NONE, E_RES, 0, 0, 0, 0, 0,   \
    0)                                                                         \
  X(pro_dense_gate_up, 8, 6144, 2048, 32, F_FP8, P_RMS, E_SILU, 0, 0, 0, 0, 0, \
    0)                                                                         \
  X(pro_dense_down, 8, 16384, 6144, 64, F_FP8, P_NONE, E_RES, 0, 0, 0, 0, 0,   \
    0)                                                                         \
  X(pro_lm_head, 8, 6144, 19072, 160, F_BF16, P_RMS, E_AMX, 0, 0, 0, 0, 0, 0)  \
  X(pro_bf16_f32_t1, 1, 6144, 4096, 32, F_BF16, P_NONE, E_F32, 0, 0, 0, 0, 0, 0)

// name, T, tiles
#define ARGMAX_CASES(X)                                                        \
  X(amx_t4_8, 4, 8)                                                            \
  X(amx_t1_5, 1, 5)                                                            \
  X(amx_t8_120, 8, 120)

// name, T, q_heads, kv_heads, head_dim, v_dim, window, capacity, sinks,
// mask, rows, pos0: attention_task's parameters as kernel.cu passes them
// (mask 1: the drafter's bidirectional block; rows: the most query rows of a
// task, G x T for one task per kv head, fewer for tilec's attention splits)
#define ATTENTION_CASES(X)                                                     \
  X(att_small_full, 4, 4, 2, 48, 32, 0, 64, 0, 0, 8, 20)                       \
  X(att_small_window_sinks, 4, 4, 4, 48, 32, 8, 16, 1, 0, 4, 30)               \
  X(att_small_t1_ring, 1, 8, 2, 32, 64, 4, 4, 1, 0, 4, 10)                     \
  X(att_pro_full_t8, 8, 16, 1, 192, 128, 0, 8192, 0, 0, 128, 3000)             \
  X(att_pro_full_t1, 1, 16, 1, 192, 128, 0, 8192, 0, 0, 16, 5000)              \
  X(att_pro_window_t8, 8, 16, 1, 192, 128, 128, 136, 1, 0, 128, 1000)          \
  X(att_pro_window_t1, 1, 16, 1, 192, 128, 128, 128, 1, 0, 16, 777)            \
  X(att_pro_t16_passes, 16, 32, 2, 192, 128, 0, 4096, 1, 0, 256, 2000)         \
  X(att_small_rows3, 4, 4, 2, 48, 32, 0, 64, 0, 0, 3, 20)                      \
  X(att_small_block, 4, 4, 2, 16, 16, 0, 4096, 0, 1, 2, 20)                    \
  X(att_small_block_window_sinks, 8, 4, 2, 32, 32, 8, 16, 1, 1, 4, 30)         \
  X(att_pro_rows_t8, 8, 16, 1, 192, 128, 0, 8192, 0, 0, 32, 3000)

// name, T, E, K, n_group, topk_group, renorm
#define ROUTER_CASES(X)                                                        \
  X(rt_pro_t8, 8, 384, 8, 1, 1, 1)                                             \
  X(rt_pro_t1, 1, 384, 8, 1, 1, 1)                                             \
  X(rt_groups, 4, 256, 8, 8, 4, 1)                                             \
  X(rt_small_scaled, 4, 16, 4, 4, 2, 0)

// name, T, H, I, E, K, router tile, gate/up tile, down tile, format
#define MOE_CASES(X)                                                           \
  X(moe_small_mx, 4, 64, 64, 8, 2, 8, 32, 32, F_MX)                            \
  X(moe_small_fp8, 4, 256, 128, 16, 4, 16, 64, 64, F_FP8)                      \
  X(moe_small_bf16, 2, 64, 32, 8, 2, 8, 16, 32, F_BF16)                        \
  X(moe_pro_t8, 8, 6144, 2048, 384, 8, 32, 256, 512, F_MX)                     \
  X(moe_pro_t1, 1, 6144, 2048, 384, 8, 32, 128, 256, F_MX)

// name, T, N, columns per task (N % 8 != 0: the scalar path)
#define SILU_MUL_CASES(X)                                                      \
  X(silu_t4, 4, 256, 64)                                                       \
  X(silu_t1_odd, 1, 130, 48)                                                   \
  X(silu_pro_t8, 8, 2048, 512)

// name, T, H, V
#define EMBED_CASES(X)                                                         \
  X(emb_small, 4, 64, 512)                                                     \
  X(emb_pro, 8, 6144, 152576)

#define SLOTS_OF(T, E, K) ((E) < (T) * (K) ? (E) : (T) * (K))

enum Instance {
#define X_LIN(name, ...) I_##name,
  LINEAR_CASES(X_LIN)
#undef X_LIN
#define X_AMX(name, ...) I_##name,
      ARGMAX_CASES(X_AMX)
#undef X_AMX
#define X_ATT(name, ...) I_##name,
          ATTENTION_CASES(X_ATT)
#undef X_ATT
#define X_RT(name, ...) I_##name,
              ROUTER_CASES(X_RT)
#undef X_RT
#define X_MOE(name, ...)                                                       \
  I_##name##_rt, I_##name##_router, I_##name##_gu, I_##name##_down,            \
      I_##name##_combine,
                  MOE_CASES(X_MOE)
#undef X_MOE
#define X_EMB(name, ...) I_##name,
                      EMBED_CASES(X_EMB)
#undef X_EMB
#define X_SILU(name, ...) I_##name,
                          SILU_MUL_CASES(X_SILU)
#undef X_SILU
                              I_count
};

struct TestDispatch {
  __device__ static void run(long long instance, const TilecTask &t,
                             const tilec::Ctx &c) {
    switch (instance) {
#define X_LIN(name, T, K, N, TILE, F, P, E, H, HD, RD, C, HN, LC)              \
  case I_##name:                                                               \
    tilec::linear_task<T, K, N, TILE, F, P, E, H, HD, RD, C, HN, LC>(t, c);    \
    break;
      LINEAR_CASES(X_LIN)
#undef X_LIN
#define X_AMX(name, T, TILES)                                                  \
  case I_##name:                                                               \
    tilec::argmax_reduce_task<T, TILES>(t, c);                                 \
    break;
      ARGMAX_CASES(X_AMX)
#undef X_AMX
#define X_ATT(name, T, QH, KVH, D, DV, W, C, S, M, R, P0)                      \
  case I_##name:                                                               \
    tilec::attention_task<T, QH, KVH, D, DV, W, C, S, M, R>(t, c);             \
    break;
      ATTENTION_CASES(X_ATT)
#undef X_ATT
#define X_RT(name, T, E, K, NG, TG, RN)                                        \
  case I_##name:                                                               \
    tilec::router_topk_task<T, E, K, NG, TG, RN>(t, c);                        \
    break;
      ROUTER_CASES(X_RT)
#undef X_RT
#define X_MOE(name, T, H, I, E, K, TRT, TGU, TDN, F)                           \
  case I_##name##_rt:                                                          \
    tilec::linear_task<T, H, E, TRT, F_BF16, P_RMS, E_F32, 0, 0, 0, 0, 0, 0>(  \
        t, c);                                                                 \
    break;                                                                     \
  case I_##name##_router:                                                      \
    tilec::router_topk_task<T, E, K, 1, 1, 1>(t, c);                           \
    break;                                                                     \
  case I_##name##_gu:                                                          \
    tilec::moe_gate_up_task<T, H, I, E, K, SLOTS_OF(T, E, K), TGU, F>(t, c);   \
    break;                                                                     \
  case I_##name##_down:                                                        \
    tilec::moe_down_task<T, H, I, E, K, SLOTS_OF(T, E, K), TDN, F>(t, c);      \
    break;                                                                     \
  case I_##name##_combine:                                                     \
    tilec::moe_combine_task<T, H, K>(t, c);                                    \
    break;
      MOE_CASES(X_MOE)
#undef X_MOE
#define X_EMB(name, T, H, V)                                                   \
  case I_##name:                                                               \
    tilec::embed_task<T, H, V>(t, c);                                          \
    break;
      EMBED_CASES(X_EMB)
#undef X_EMB
#define X_SILU(name, T, N, COLS)                                               \
  case I_##name:                                                               \
    tilec::silu_mul_task<T, N>(t, c);                                          \
    break;
      SILU_MUL_CASES(X_SILU)
#undef X_SILU
    default:
      break;
    }
  }
};

__global__ void __launch_bounds__(TILEC_THREADS, 1)
    test_step(TilecStepParams p) {
  tilec::run_megakernel<TestDispatch>(p);
}

namespace {

//===--- Random inputs, the same on host and device -----------------------===//

enum Kind : int {
  K_BF16,      // bf16 uniform(-1, 1) * scale (scale a power of two)
  K_BF16_NORM, // bf16 1 + uniform / 8 (norm weights)
  K_FP8,       // E4M3 codes, never NaN
  K_BYTE,      // random bytes (packed E2M1 pairs)
  K_E8M0,      // E8M0 codes 118..125 (2^-9 .. 2^-2)
  K_FP8_SCALE, // f32 in [2^-9, 2^-8)
  K_F32,       // f32 uniform(-1, 1) * scale
};

__host__ __device__ inline int kind_bytes(int kind) {
  return kind == K_BF16 || kind == K_BF16_NORM  ? 2
         : kind == K_FP8_SCALE || kind == K_F32 ? 4
                                                : 1;
}
__host__ __device__ inline u64 gmix(u64 z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
__host__ __device__ inline u64 gbits(u64 seed, u64 i) {
  return gmix(gmix(seed) + (i + 1) * 0x9E3779B97F4A7C15ull);
}
/// Exact in f32, never 0.
__host__ __device__ inline float guniform(u64 seed, u64 i) {
  const int n = int(2 * (gbits(seed, i) >> 40)) + 1 - (1 << 24);
  return float(n) * 5.9604644775390625e-8f;
}
__host__ __device__ inline u32 fbits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  u32 b;
  std::memcpy(&b, &f, 4);
  return b;
#endif
}
__host__ __device__ inline float bitsf(u32 b) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, 4);
  return f;
#endif
}
__host__ __device__ inline u16 bf16_rne(float f) {
  const u32 b = fbits(f);
  return u16((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
/// Element i of a generated tensor, as its stored bytes.
__host__ __device__ inline void gen_element(int kind, u64 seed, u64 i,
                                            float scale, u8 *dst) {
  const u64 b = gbits(seed, i);
  switch (kind) {
  case K_BF16: {
    const u16 v = bf16_rne(guniform(seed, i) * scale);
    dst[0] = u8(v), dst[1] = u8(v >> 8);
    break;
  }
  case K_BF16_NORM: {
    const u16 v = bf16_rne(1.0f + guniform(seed, i) * 0.125f);
    dst[0] = u8(v), dst[1] = u8(v >> 8);
    break;
  }
  case K_FP8: {
    u8 c = u8(b >> 56);
    if ((c & 0x7f) == 0x7f)
      c ^= 1;
    dst[0] = c;
    break;
  }
  case K_BYTE:
    dst[0] = u8(b >> 56);
    break;
  case K_E8M0:
    dst[0] = u8(118 + ((b >> 56) & 7));
    break;
  default: {
    const u32 v = kind == K_F32 ? fbits(guniform(seed, i) * scale)
                                : (118u << 23) | u32(b >> 41);
    dst[0] = u8(v), dst[1] = u8(v >> 8), dst[2] = u8(v >> 16),
    dst[3] = u8(v >> 24);
    break;
  }
  }
}

__global__ void fill_kernel(u8 *dst, i64 n, u64 seed, int kind, float scale) {
  const int bytes = kind_bytes(kind);
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += i64(gridDim.x) * blockDim.x)
    gen_element(kind, seed, u64(i), scale, dst + i * bytes);
}

float gen_bf16_value(u64 seed, u64 i, float scale) {
  u8 b[2];
  gen_element(K_BF16, seed, i, scale, b);
  return tilec::bf16ToF32(u16(b[0] | (b[1] << 8)));
}
template <typename T> T gen_as(int kind, u64 seed, u64 i, float scale = 1.0f) {
  u8 b[4] = {0, 0, 0, 0};
  gen_element(kind, seed, i, scale, b);
  T v;
  std::memcpy(&v, b, sizeof v);
  return v;
}
std::vector<float> gen_bf16_floats(int kind, u64 seed, i64 n,
                                   float scale = 1.0f) {
  std::vector<float> out(static_cast<size_t>(n));
  for (i64 i = 0; i < n; ++i)
    out[size_t(i)] = tilec::bf16ToF32(gen_as<u16>(kind, seed, u64(i), scale));
  return out;
}

#define CUDA_CHECK(x)                                                          \
  do {                                                                         \
    cudaError_t e_ = (x);                                                      \
    if (e_ != cudaSuccess) {                                                   \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x,          \
                   cudaGetErrorString(e_));                                    \
      std::exit(2);                                                            \
    }                                                                          \
  } while (0)

void parallel_for(i64 n, const std::function<void(i64)> &fn) {
  const int threads =
      int(std::max(1u, std::min(32u, std::thread::hardware_concurrency())));
  std::vector<std::thread> pool;
  std::atomic<i64> next{0};
  for (int k = 0; k < threads; ++k)
    pool.emplace_back([&] {
      for (i64 i; (i = next.fetch_add(1)) < n;)
        fn(i);
    });
  for (std::thread &t : pool)
    t.join();
}

//===--- Results ----------------------------------------------------------===//

struct Row {
  std::string test, check;
  double err, tol;
  bool pass;
  std::string note;
};
std::vector<Row> g_rows;
int g_sms = 0;

void record(const std::string &test, const std::string &check, double err,
            double tol, const std::string &note = "") {
  const bool pass = std::isfinite(err) && err <= tol;
  g_rows.push_back({test, check, err, tol, pass, note});
  std::printf("  %-28s %-26s %10.3e  %-4s %s\n", test.c_str(), check.c_str(),
              err, pass ? "PASS" : "FAIL", note.c_str());
  std::fflush(stdout);
}
void record_ok(const std::string &test, const std::string &check, bool ok,
               const std::string &note = "") {
  record(test, check, ok ? 0.0 : 1.0, 0.0, note);
}

constexpr double kTolBf16 = 1e-2; // outputs stored as bf16
constexpr double kTolF32 = 1e-3;  // f32 outputs of long dot products

/// max |got - ref| / max |ref|; inf if got has a NaN where ref has none.
double rel_err(const std::vector<float> &got, const std::vector<double> &ref) {
  double maxref = 0, maxdiff = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) && std::isfinite(ref[i]))
      return INFINITY;
    maxref = std::max(maxref, std::fabs(ref[i]));
    maxdiff = std::max(maxdiff, std::fabs(double(got[i]) - ref[i]));
  }
  return maxdiff / std::max(maxref, 1e-30);
}

std::vector<float> bf16s_to_floats(const std::vector<u16> &v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = tilec::bf16ToF32(v[i]);
  return out;
}

//===--- A rig: regions, task lists, one launch per step ------------------===//

struct Region {
  u8 *dev = nullptr;
  i64 size = 0;
  i64 alloc(i64 bytes) {
    const i64 off = (size + 255) / 256 * 256;
    size = off + std::max<i64>(bytes, 1);
    return off;
  }
};

TilecTask make_task(int instance, int family, int op = 0) {
  TilecTask t;
  for (long long &w : t.w)
    w = 0;
  t.w[TILEC_W_INSTANCE] = instance;
  t.w[TILEC_W_OP] = op;
  t.w[TILEC_W_WAIT0] = -1;
  t.w[TILEC_W_WAIT1] = -1;
  t.w[TILEC_W_SIGNAL] = -1;
  t.w[TILEC_W_FAMILY] = family;
  return t;
}
void set_arg(TilecTask &t, int arg, i64 v) { t.w[8 + arg] = v; }
void set_wait(TilecTask &t, int slot, int event, i64 count) {
  t.w[TILEC_W_WAIT0 + 2 * slot] = event;
  t.w[TILEC_W_COUNT0 + 2 * slot] = count;
}
i64 f32_arg(float f) { return i64(fbits(f)); }

class Rig {
public:
  Region arena, weights, kv;
  explicit Rig(int sms) : lists_(size_t(std::max(1, std::min(sms, g_sms)))) {}
  ~Rig() {
    for (void *p : {(void *)arena.dev, (void *)weights.dev, (void *)kv.dev,
                    (void *)events_})
      if (p)
        cudaFree(p);
  }
  Rig(const Rig &) = delete;
  Rig &operator=(const Rig &) = delete;

  int sms() const { return int(lists_.size()); }
  /// Allocates the regions; the arena starts as 0xff bytes (NaN for bf16 and
  /// f32, -1 for ints) so that an unwritten output shows.
  void commit() {
    for (Region *r : {&arena, &weights, &kv}) {
      CUDA_CHECK(cudaMalloc(&r->dev, size_t(std::max<i64>(r->size, 256))));
      CUDA_CHECK(cudaMemset(r->dev, r == &arena ? 0xff : 0,
                            size_t(std::max<i64>(r->size, 256))));
    }
  }
  void fill(Region &r, i64 off, i64 n, int kind, u64 seed, float scale = 1.0f) {
    const int blocks = int(std::min<i64>((n + 255) / 256, 8192));
    fill_kernel<<<std::max(blocks, 1), 256>>>(r.dev + off, n, seed, kind,
                                              scale);
    CUDA_CHECK(cudaGetLastError());
  }
  template <typename T> void put(Region &r, i64 off, const std::vector<T> &v) {
    CUDA_CHECK(cudaMemcpy(r.dev + off, v.data(), v.size() * sizeof(T),
                          cudaMemcpyHostToDevice));
  }
  template <typename T>
  std::vector<T> get(const Region &r, i64 off, i64 count) {
    std::vector<T> v(static_cast<size_t>(count));
    CUDA_CHECK(cudaMemcpy(v.data(), r.dev + off, v.size() * sizeof(T),
                          cudaMemcpyDeviceToHost));
    return v;
  }
  int event() {
    spp_.push_back(0);
    return int(spp_.size()) - 1;
  }
  void add(int sm, TilecTask t, int signal = -1) {
    t.w[TILEC_W_SIGNAL] = signal;
    if (signal >= 0)
      ++spp_[size_t(signal)];
    lists_[size_t(sm % sms())].push_back(t);
  }
  i64 tasks() const {
    i64 n = 0;
    for (const auto &l : lists_)
      n += i64(l.size());
    return n;
  }

  struct Outcome {
    int report[TILEC_REPORT_WORDS];
    double ms;
    double task_us; // mean task duration from the trace stamps
    bool stamps_ok;
  };
  /// One step: launches the megakernel on sms() CTAs.
  Outcome run(u64 step, u64 watchdog_ns = 2000000000ull) {
    std::vector<TilecTask> all;
    std::vector<int> begin;
    for (const auto &l : lists_) {
      begin.push_back(int(all.size()));
      all.insert(all.end(), l.begin(), l.end());
    }
    begin.push_back(int(all.size()));
    if (!events_) {
      const size_t n = std::max<size_t>(spp_.size(), 1);
      CUDA_CHECK(cudaMalloc(&events_, n * 8));
      CUDA_CHECK(cudaMemset(events_, 0, n * 8));
    }
    TilecTask *d_tasks = nullptr;
    int *d_begin = nullptr;
    unsigned *d_spp = nullptr;
    u64 *d_trace = nullptr;
    int *h_report = nullptr, *d_report = nullptr;
    CUDA_CHECK(cudaMalloc(&d_tasks,
                          std::max<size_t>(all.size(), 1) * sizeof(TilecTask)));
    CUDA_CHECK(cudaMemcpy(d_tasks, all.data(), all.size() * sizeof(TilecTask),
                          cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMalloc(&d_begin, begin.size() * sizeof(int)));
    CUDA_CHECK(cudaMemcpy(d_begin, begin.data(), begin.size() * sizeof(int),
                          cudaMemcpyHostToDevice));
    std::vector<unsigned> spp = spp_;
    spp.push_back(0);
    CUDA_CHECK(cudaMalloc(&d_spp, spp.size() * sizeof(unsigned)));
    CUDA_CHECK(cudaMemcpy(d_spp, spp.data(), spp.size() * sizeof(unsigned),
                          cudaMemcpyHostToDevice));
    const size_t traceBytes =
        std::max<size_t>(all.size(), 1) * TILEC_TRACE_WORDS * 8;
    CUDA_CHECK(cudaMalloc(&d_trace, traceBytes));
    CUDA_CHECK(cudaMemset(d_trace, 0, traceBytes));
    CUDA_CHECK(cudaHostAlloc(&h_report, TILEC_REPORT_WORDS * sizeof(int),
                             cudaHostAllocMapped));
    std::memset(h_report, 0, TILEC_REPORT_WORDS * sizeof(int));
    CUDA_CHECK(cudaHostGetDevicePointer(&d_report, h_report, 0));

    TilecStepParams p;
    p.tasks = d_tasks;
    p.sm_begin = d_begin;
    p.arena = arena.dev;
    p.weights = weights.dev;
    p.kv = kv.dev;
    p.events = events_;
    p.signals_per_step = d_spp;
    p.step = step;
    p.trace = d_trace;
    p.report = d_report;
    p.watchdog_ns = watchdog_ns;

    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    CUDA_CHECK(cudaEventRecord(e0));
    test_step<<<sms(), TILEC_THREADS, TILEC_SMEM_BYTES>>>(p);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaEventRecord(e1));
    CUDA_CHECK(cudaDeviceSynchronize());
    Outcome out;
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    out.ms = ms;
    std::memcpy(out.report, h_report, sizeof out.report);
    std::vector<u64> trace(all.size() * TILEC_TRACE_WORDS);
    CUDA_CHECK(cudaMemcpy(trace.data(), d_trace, trace.size() * 8,
                          cudaMemcpyDeviceToHost));
    out.stamps_ok = true;
    double busy = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      const u64 *w = &trace[TILEC_TRACE_WORDS * i];
      const u64 b = w[TILEC_TRACE_COMPUTE_BEGIN],
                e = w[TILEC_TRACE_COMPUTE_END];
      // Compute stamped; the sched warp's wait before the hand-over; the
      // load warp's prefetch a pair or nothing.
      out.stamps_ok &= b != 0 && e >= b;
      out.stamps_ok &= w[TILEC_TRACE_WAIT_BEGIN] != 0 &&
                       w[TILEC_TRACE_WAIT_END] >= w[TILEC_TRACE_WAIT_BEGIN] &&
                       w[TILEC_TRACE_WAIT_END] <= b;
      out.stamps_ok &=
          (w[TILEC_TRACE_LOAD_BEGIN] == 0) == (w[TILEC_TRACE_LOAD_END] == 0) &&
          w[TILEC_TRACE_LOAD_END] >= w[TILEC_TRACE_LOAD_BEGIN];
      busy += double(e - b);
    }
    out.task_us = all.empty() ? 0.0 : busy / 1e3 / double(all.size());
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(d_tasks);
    cudaFree(d_begin);
    cudaFree(d_spp);
    cudaFree(d_trace);
    cudaFreeHost(h_report);
    return out;
  }

  /// Runs a step and records that it finished cleanly (no report, every task
  /// stamped). Returns false if it did not.
  bool run_clean(const std::string &test, u64 step = 0) {
    Outcome o = run(step);
    char note[128];
    std::snprintf(note, sizeof note,
                  "%lld tasks on %d CTAs, kernel %.3f ms, task %.1f us",
                  (long long)tasks(), sms(), o.ms, o.task_us);
    const bool ok = o.report[TILEC_REPORT_FLAG] == 0 && o.stamps_ok;
    record_ok(test, step ? "step 1: clean + stamps" : "clean run + stamps", ok,
              ok ? note
                 : "report flag " + std::to_string(o.report[0]) + ", event " +
                       std::to_string(o.report[TILEC_REPORT_EVENT]));
    return ok;
  }

private:
  std::vector<std::vector<TilecTask>> lists_;
  std::vector<unsigned> spp_;
  u64 *events_ = nullptr;
};

//===--- Weights on the device, decoded on the host -----------------------===//

struct Weight {
  int format = F_BF16;
  i64 rows = 0, cols = 0, mats = 1;
  i64 off = -1, soff = -1;
  u64 seed = 0;
  float bscale = 1.0f / 16;

  Weight() = default;
  Weight(int format, i64 rows, i64 cols, i64 mats, u64 seed)
      : format(format), rows(rows), cols(cols), mats(mats), seed(seed) {}
  i64 scale_rows() const { return (rows + 127) / 128; }
  i64 scale_cols() const { return (cols + 127) / 128; }
  void alloc(Rig &rig) {
    off = rig.weights.alloc(tilec::detail::matrix_bytes(format, rows, cols) *
                            mats);
    if (format != F_BF16)
      soff = rig.weights.alloc(tilec::detail::scale_bytes(format, rows, cols) *
                               mats);
  }
  void fill(Rig &rig) const {
    const i64 n = rows * cols * mats;
    if (format == F_BF16) {
      rig.fill(rig.weights, off, n, K_BF16, seed, bscale);
    } else if (format == F_FP8) {
      rig.fill(rig.weights, off, n, K_FP8, seed);
      rig.fill(rig.weights, soff, scale_rows() * scale_cols() * mats,
               K_FP8_SCALE, seed + 1);
    } else {
      rig.fill(rig.weights, off, n / 2, K_BYTE, seed);
      rig.fill(rig.weights, soff, n / 32, K_E8M0, seed + 1);
    }
  }
  /// Row r of matrix m, dequantized.
  void row(i64 m, i64 r, float *out) const {
    const i64 base = (m * rows + r) * cols;
    for (i64 c = 0; c < cols; ++c) {
      if (format == F_BF16) {
        out[c] = gen_bf16_value(seed, u64(base + c), bscale);
      } else if (format == F_FP8) {
        const float s = gen_as<float>(K_FP8_SCALE, seed + 1,
                                      u64(m * scale_rows() * scale_cols() +
                                          (r / 128) * scale_cols() + c / 128));
        out[c] = tilec::e4m3ToF32(gen_as<u8>(K_FP8, seed, u64(base + c))) * s;
      } else {
        const u8 byte = gen_as<u8>(K_BYTE, seed, u64((base + c) / 2));
        const u8 s = gen_as<u8>(K_E8M0, seed + 1, u64((base + c) / 32));
        out[c] = tilec::e2m1ToF32(c % 2 ? byte >> 4 : byte & 15) *
                 tilec::e8m0ToF32(s);
      }
    }
  }
};

const char *format_name(int f) {
  return f == F_BF16 ? "bf16" : f == F_FP8 ? "fp8" : "mxfp4";
}

/// x[t] * rsqrt(mean(x^2) + eps) * w, in double.
std::vector<double> rmsnorm_row(const float *x, const std::vector<float> &w,
                                i64 k, float eps) {
  double ss = 0;
  for (i64 i = 0; i < k; ++i)
    ss += double(x[i]) * x[i];
  const double inv = 1.0 / std::sqrt(ss / double(k) + double(eps));
  std::vector<double> out(static_cast<size_t>(k));
  for (i64 i = 0; i < k; ++i)
    out[size_t(i)] = double(x[i]) * inv * w[size_t(i)];
  return out;
}

/// y[t][n] = xs[t] . W_m[n] for n in [0, rows), xs of `tokens` rows.
std::vector<double> matmul_ref(const std::vector<std::vector<double>> &xs,
                               const Weight &w, i64 m, i64 row0, i64 nrows) {
  const i64 tokens = i64(xs.size());
  std::vector<double> y(size_t(tokens * nrows));
  parallel_for(nrows, [&](i64 n) {
    std::vector<float> wr(static_cast<size_t>(w.cols));
    w.row(m, row0 + n, wr.data());
    for (i64 t = 0; t < tokens; ++t) {
      double s = 0;
      for (i64 k = 0; k < w.cols; ++k)
        s += xs[size_t(t)][size_t(k)] * wr[size_t(k)];
      y[size_t(t * nrows + n)] = s;
    }
  });
  return y;
}

double silu_mul_ref(double g, double u) { return g / (1.0 + std::exp(-g)) * u; }

//===--- LINEAR and ARGMAX_REDUCE -----------------------------------------===//

struct LinearCase {
  const char *name;
  int inst, T, K, N, tile, format, prologue, epilogue, heads, head_dim,
      rotary_dim, capacity, head_norm, logit_cap;
};
const LinearCase kLinear[] = {
#define X_LIN(name, T, K, N, TILE, F, P, E, H, HD, RD, C, HN, LC)              \
  {#name, I_##name, T, K, N, TILE, F, P, E, H, HD, RD, C, HN, LC},
    LINEAR_CASES(X_LIN)
#undef X_LIN
};
struct ArgmaxCase {
  const char *name;
  int inst, T, tiles;
};
const ArgmaxCase kArgmax[] = {
#define X_AMX(name, T, TILES) {#name, I_##name, T, TILES},
    ARGMAX_CASES(X_AMX)
#undef X_AMX
};

/// A logit_cap case's multiplier and softcap (THETA's low and high words;
/// softcap 0: the multiplier alone, as a model without final_logit_softcapping
/// but with an output multiplier has it).
std::pair<float, float> logit_cap_of(const LinearCase &c) {
  return c.T == 1 ? std::make_pair(1.25f, 0.0f) : std::make_pair(0.5f, 0.25f);
}

void test_linear(const LinearCase &c) {
  const std::string name = c.name;
  const bool pair = c.epilogue == E_SILU, rms = c.prologue == P_RMS;
  const bool rope = c.epilogue == E_ROPE || c.epilogue == E_KC;
  const bool cache = c.epilogue == E_KC || c.epilogue == E_VC;
  const bool argmax = c.epilogue == E_AMX;
  const int tiles = (c.N + c.tile - 1) / c.tile;
  const ArgmaxCase *reduce = nullptr;
  for (const ArgmaxCase &a : kArgmax)
    if (a.T == c.T && a.tiles == tiles)
      reduce = &a;
  if (argmax && !reduce) {
    record_ok(name, "argmax instance", false, "no ARGMAX_REDUCE instance");
    return;
  }
  const int pos0 = c.K >= 4096 ? 3000 : 100;
  const float eps = 1e-5f, theta = c.K >= 4096 ? 1e7f : 1e4f, heps = 1e-6f;
  const auto [multiplier, softcap] = logit_cap_of(c);
  const i64 T = c.T, K = c.K, N = c.N;

  Rig rig(tiles + 1);
  const i64 x = rig.arena.alloc(T * K * 2), pos = rig.arena.alloc(T * 4);
  Weight w(c.format, N, K, 1, 11), w2(c.format, N, K, 1, 22);
  w.alloc(rig);
  if (pair)
    w2.alloc(rig);
  const i64 norm = rms ? rig.weights.alloc(K * 2) : -1;
  const i64 hnorm = c.head_norm ? rig.weights.alloc(c.head_dim * 2) : -1;
  const i64 res = c.epilogue == E_RES ? rig.arena.alloc(T * N * 2) : -1;
  const int out_bytes = c.epilogue == E_F32 || argmax ? 4 : 2;
  const i64 out = cache ? rig.kv.alloc(i64(c.capacity) * N * 2)
                        : rig.arena.alloc(T * N * out_bytes);
  const i64 partial = argmax ? rig.arena.alloc(T * tiles * 8) : -1;
  const i64 amx = argmax ? rig.arena.alloc(T * 4) : -1;
  rig.commit();

  rig.fill(rig.arena, x, T * K, K_BF16, 101, 2.0f);
  std::vector<int> positions(static_cast<size_t>(T));
  for (i64 t = 0; t < T; ++t)
    positions[size_t(t)] = int(pos0 + t);
  rig.put(rig.arena, pos, positions);
  w.fill(rig);
  if (pair)
    w2.fill(rig);
  if (rms)
    rig.fill(rig.weights, norm, K, K_BF16_NORM, 102);
  if (c.head_norm)
    rig.fill(rig.weights, hnorm, c.head_dim, K_BF16_NORM, 104);
  if (res >= 0)
    rig.fill(rig.arena, res, T * N, K_BF16, 103, 4.0f);

  const int ev = argmax ? rig.event() : -1;
  for (int i = 0; i < tiles; ++i) {
    TilecTask t = make_task(c.inst, TILEC_TASK_LINEAR, i);
    set_arg(t, TILEC_LIN_X, x);
    set_arg(t, TILEC_LIN_W, w.off);
    set_arg(t, TILEC_LIN_WSCALE, w.soff);
    set_arg(t, TILEC_LIN_N0, i64(i) * c.tile);
    set_arg(t, TILEC_LIN_N1, std::min<i64>(N, i64(i + 1) * c.tile));
    set_arg(t, TILEC_LIN_OUT, out);
    set_arg(t, TILEC_LIN_NORM_W, norm);
    // The head norm's eps in the high word.
    set_arg(t, TILEC_LIN_EPS,
            f32_arg(eps) | (c.head_norm ? f32_arg(heps) << 32 : 0));
    set_arg(t, TILEC_LIN_RESIDUAL, res);
    set_arg(t, TILEC_LIN_W2, w2.off);
    set_arg(t, TILEC_LIN_W2SCALE, w2.soff);
    set_arg(t, TILEC_LIN_POS, pos);
    // ARGMAX with logit_cap: the multiplier and the softcap instead.
    set_arg(t, TILEC_LIN_THETA,
            c.logit_cap ? f32_arg(multiplier) | f32_arg(softcap) << 32
                        : f32_arg(theta));
    set_arg(t, TILEC_LIN_PARTIAL, partial);
    set_arg(t, TILEC_LIN_TILE, i);
    set_arg(t, TILEC_LIN_HNORM_W, hnorm);
    rig.add(i, t, ev);
  }
  if (argmax) {
    TilecTask t = make_task(reduce->inst, TILEC_TASK_ARGMAX_REDUCE, tiles);
    set_wait(t, 0, ev, tiles);
    set_arg(t, TILEC_AMX_PARTIAL, partial);
    set_arg(t, TILEC_AMX_TILES, tiles);
    set_arg(t, TILEC_AMX_OUT, amx);
    rig.add(tiles, t);
  }
  if (!rig.run_clean(name))
    return;

  // The CPU side.
  const std::vector<float> xf = gen_bf16_floats(K_BF16, 101, T * K, 2.0f);
  std::vector<float> nw;
  if (rms)
    nw = gen_bf16_floats(K_BF16_NORM, 102, K);
  std::vector<std::vector<double>> xs(static_cast<size_t>(T));
  for (i64 t = 0; t < T; ++t)
    xs[size_t(t)] =
        rms ? rmsnorm_row(xf.data() + t * K, nw, K, eps)
            : std::vector<double>(xf.begin() + t * K, xf.begin() + (t + 1) * K);
  std::vector<double> y = matmul_ref(xs, w, 0, 0, N);
  if (c.head_norm) {
    // Each (token, head) RMS-normalized with the per-head weight, before RoPE.
    const std::vector<float> hw = gen_bf16_floats(K_BF16_NORM, 104, c.head_dim);
    for (i64 t = 0; t < T; ++t)
      for (i64 h = 0; h < N / c.head_dim; ++h) {
        double *row = y.data() + t * N + h * c.head_dim;
        double ss = 0;
        for (int d = 0; d < c.head_dim; ++d)
          ss += row[d] * row[d];
        const double inv = 1.0 / std::sqrt(ss / c.head_dim + double(heps));
        for (int d = 0; d < c.head_dim; ++d)
          row[d] *= inv * hw[size_t(d)];
      }
  }
  if (c.logit_cap)
    for (double &v : y) {
      v *= multiplier;
      if (softcap > 0)
        v = std::tanh(v / softcap) * softcap;
    }
  std::vector<double> ref(size_t(T * N));
  const std::string what =
      std::string(format_name(c.format)) + " T=" + std::to_string(T) +
      " K=" + std::to_string(K) + " N=" + std::to_string(N) +
      (c.head_norm ? " head norm" : "") +
      (c.logit_cap ? softcap > 0 ? " softcap" : " multiplier" : "");
  if (c.epilogue == E_BF16 || c.epilogue == E_F32) {
    std::vector<float> got =
        c.epilogue == E_F32
            ? rig.get<float>(rig.arena, out, T * N)
            : bf16s_to_floats(rig.get<u16>(rig.arena, out, T * N));
    record(name, c.epilogue == E_F32 ? "y f32" : "y bf16", rel_err(got, y),
           c.epilogue == E_F32 ? kTolF32 : kTolBf16, what);
  } else if (c.epilogue == E_RES) {
    const std::vector<float> r = gen_bf16_floats(K_BF16, 103, T * N, 4.0f);
    for (i64 i = 0; i < T * N; ++i)
      ref[size_t(i)] = r[size_t(i)] + y[size_t(i)];
    record(name, "residual + y (bf16)",
           rel_err(bf16s_to_floats(rig.get<u16>(rig.arena, out, T * N)), ref),
           kTolBf16, what);
  } else if (pair) {
    const std::vector<double> u = matmul_ref(xs, w2, 0, 0, N);
    for (i64 i = 0; i < T * N; ++i)
      ref[size_t(i)] = silu_mul_ref(y[size_t(i)], u[size_t(i)]);
    record(name, "silu(g)*u (bf16)",
           rel_err(bf16s_to_floats(rig.get<u16>(rig.arena, out, T * N)), ref),
           kTolBf16, what);
  } else if (rope || c.epilogue == E_VC) {
    const int hd = c.head_dim, rd = c.rotary_dim, half = rd / 2;
    for (i64 t = 0; t < T; ++t)
      for (i64 n = 0; n < N; ++n) {
        const i64 h = n / hd, d = n % hd;
        double v = y[size_t(t * N + n)];
        if (rope && d < rd) {
          const i64 f = d % half;
          const double x1 = y[size_t(t * N + h * hd + f)];
          const double x2 = y[size_t(t * N + h * hd + f + half)];
          const float inv = 1.0f / std::pow(theta, float(2 * f) / float(rd));
          const double a = double(float(positions[size_t(t)]) * inv);
          v = d < half ? x1 * std::cos(a) - x2 * std::sin(a)
                       : x2 * std::cos(a) + x1 * std::sin(a);
        }
        ref[size_t(t * N + n)] = v;
      }
    std::vector<float> got(size_t(T * N));
    if (cache) {
      const std::vector<u16> all =
          rig.get<u16>(rig.kv, out, i64(c.capacity) * N);
      for (i64 t = 0; t < T; ++t)
        for (i64 n = 0; n < N; ++n)
          got[size_t(t * N + n)] = tilec::bf16ToF32(
              all[size_t((positions[size_t(t)] % c.capacity) * N + n)]);
    } else {
      got = bf16s_to_floats(rig.get<u16>(rig.arena, out, T * N));
    }
    record(name,
           c.epilogue == E_ROPE
               ? c.head_norm ? "rope(norm(q)) bf16" : "rope(q) bf16"
           : cache && rope ? c.head_norm ? "rope(norm(k)) in cache slots"
                                         : "rope(k) in cache slots"
                           : "v in cache slots",
           rel_err(got, ref), kTolBf16, what);
  } else if (argmax) {
    const std::vector<float> logits = rig.get<float>(rig.arena, out, T * N);
    record(name, c.logit_cap ? "capped logits f32" : "logits f32",
           rel_err(logits, y), kTolF32, what);
    const std::vector<int> part =
        rig.get<int>(rig.arena, partial, T * tiles * 2);
    const std::vector<int> ids = rig.get<int>(rig.arena, amx, T);
    bool parts_ok = true, ids_ok = true;
    int ties = 0;
    for (i64 t = 0; t < T; ++t) {
      for (int i = 0; i < tiles; ++i) {
        const i64 n0 = i64(i) * c.tile, n1 = std::min<i64>(N, n0 + c.tile);
        i64 best = n0;
        for (i64 n = n0; n < n1; ++n)
          if (logits[size_t(t * N + n)] > logits[size_t(t * N + best)])
            best = n;
        const int *p = part.data() + 2 * (t * tiles + i);
        parts_ok &=
            p[1] == best && bitsf(u32(p[0])) == logits[size_t(t * N + best)];
      }
      const float *row = logits.data() + t * N;
      const i64 gbest = std::max_element(row, row + N) - row;
      ids_ok &= ids[size_t(t)] == gbest;
      const double *yr = y.data() + t * N;
      const i64 rbest = std::max_element(yr, yr + N) - yr;
      if (rbest != gbest) {
        if (yr[rbest] - yr[gbest] > 1e-6 * std::fabs(yr[rbest]))
          ids_ok = false;
        else
          ++ties;
      }
    }
    record_ok(name, "tile partials (max, index)", parts_ok);
    record_ok(name, "argmax ids", ids_ok,
              ties ? std::to_string(ties) + " near ties" : "");
  }
}

//===--- SILU_MUL ---------------------------------------------------------===//

struct SiluMulCase {
  const char *name;
  int inst, T, N, cols;
};
const SiluMulCase kSiluMul[] = {
#define X_SILU(name, T, N, COLS) {#name, I_##name, T, N, COLS},
    SILU_MUL_CASES(X_SILU)
#undef X_SILU
};

/// An unfused dense MLP's silu(gate) * up over bf16 gate and up, in tasks of
/// c.cols columns.
void test_silu_mul(const SiluMulCase &c) {
  const std::string name = c.name;
  const i64 T = c.T, N = c.N;
  const int tasks = (c.N + c.cols - 1) / c.cols;
  Rig rig(tasks);
  const i64 gate = rig.arena.alloc(T * N * 2), up = rig.arena.alloc(T * N * 2),
            out = rig.arena.alloc(T * N * 2);
  rig.commit();
  rig.fill(rig.arena, gate, T * N, K_BF16, 401, 4.0f);
  rig.fill(rig.arena, up, T * N, K_BF16, 402, 2.0f);
  for (int i = 0; i < tasks; ++i) {
    TilecTask t = make_task(c.inst, TILEC_TASK_SILU_MUL, i);
    set_arg(t, TILEC_SILU_GATE, gate);
    set_arg(t, TILEC_SILU_UP, up);
    set_arg(t, TILEC_SILU_OUT, out);
    set_arg(t, TILEC_SILU_N0, i64(i) * c.cols);
    set_arg(t, TILEC_SILU_N1, std::min<i64>(N, i64(i + 1) * c.cols));
    rig.add(i, t);
  }
  if (!rig.run_clean(name))
    return;
  const std::vector<float> g = gen_bf16_floats(K_BF16, 401, T * N, 4.0f);
  const std::vector<float> u = gen_bf16_floats(K_BF16, 402, T * N, 2.0f);
  std::vector<double> ref(size_t(T * N));
  for (size_t i = 0; i < ref.size(); ++i)
    ref[i] = silu_mul_ref(g[i], u[i]);
  record(name, "silu(g)*u (bf16)",
         rel_err(bf16s_to_floats(rig.get<u16>(rig.arena, out, T * N)), ref),
         kTolBf16,
         "T=" + std::to_string(T) + " N=" + std::to_string(N) + ", " +
             std::to_string(tasks) + " tasks");
}

//===--- ATTENTION --------------------------------------------------------===//

struct AttentionCase {
  const char *name;
  int inst, T, qh, kvh, d, dv, window, capacity, sinks, mask, rows, pos0;
};
const AttentionCase kAttention[] = {
#define X_ATT(name, T, QH, KVH, D, DV, W, C, S, M, R, P0)                      \
  {#name, I_##name, T, QH, KVH, D, DV, W, C, S, M, R, P0},
    ATTENTION_CASES(X_ATT)
#undef X_ATT
};

/// out[t, h, :] per docs/engine.md from the given q, caches and sinks: keys
/// from p - window + 1 to p, or with mask 1 (the drafter's block, appended to
/// the caches) to the block's last position (below p + window).
std::vector<double>
attention_ref(const AttentionCase &c, const std::vector<float> &q,
              const std::vector<float> &kc, const std::vector<float> &vc,
              const std::vector<float> &sinks, const std::vector<int> &pos,
              float scale, float vscale) {
  const int G = c.qh / c.kvh;
  std::vector<double> out(size_t(c.T) * c.qh * c.dv, 0.0);
  parallel_for(i64(c.T) * c.qh, [&](i64 th) {
    const int t = int(th / c.qh), h = int(th % c.qh), g = h / G;
    const int p = pos[size_t(t)];
    const int lo = c.window ? std::max(0, p - c.window + 1) : 0;
    const int last = pos[size_t(c.T - 1)];
    const int hi = !c.mask    ? p
                   : c.window ? std::min(last, p + c.window - 1)
                              : last;
    std::vector<double> s;
    double m = -INFINITY;
    for (int j = lo; j <= hi; ++j) {
      const float *k = kc.data() + (size_t(j % c.capacity) * c.kvh + g) * c.d;
      const float *qv = q.data() + (size_t(t) * c.qh + h) * c.d;
      double dot = 0;
      for (int i = 0; i < c.d; ++i)
        dot += double(qv[i]) * k[i];
      s.push_back(double(scale) * dot);
      m = std::max(m, s.back());
    }
    const double sink = c.sinks ? sinks[size_t(h)] : -INFINITY;
    m = std::max(m, sink);
    double den = c.sinks ? std::exp(sink - m) : 0.0;
    for (double &v : s)
      den += (v = std::exp(v - m));
    double *o = out.data() + (size_t(t) * c.qh + h) * c.dv;
    for (int j = lo; j <= hi; ++j) {
      const double wgt = s[size_t(j - lo)] / den * vscale;
      const float *v = vc.data() + (size_t(j % c.capacity) * c.kvh + g) * c.dv;
      for (int i = 0; i < c.dv; ++i)
        o[i] += wgt * v[i];
    }
  });
  return out;
}

void test_attention(const AttentionCase &c) {
  const std::string name = c.name;
  // Each kv head's G x T query rows in tasks of at most c.rows.
  const int rows = c.qh / c.kvh * c.T, per_head = (rows + c.rows - 1) / c.rows;
  Rig rig(c.kvh * per_head);
  const i64 T = c.T;
  const i64 q = rig.arena.alloc(T * c.qh * c.d * 2),
            pos = rig.arena.alloc(T * 4);
  const i64 out = rig.arena.alloc(T * c.qh * c.dv * 2);
  const i64 kc = rig.kv.alloc(i64(c.capacity) * c.kvh * c.d * 2);
  const i64 vc = rig.kv.alloc(i64(c.capacity) * c.kvh * c.dv * 2);
  const i64 sinks = c.sinks ? rig.weights.alloc(c.qh * 2) : -1;
  rig.commit();
  rig.fill(rig.arena, q, T * c.qh * c.d, K_BF16, 201, 2.0f);
  rig.fill(rig.kv, kc, i64(c.capacity) * c.kvh * c.d, K_BF16, 202, 2.0f);
  rig.fill(rig.kv, vc, i64(c.capacity) * c.kvh * c.dv, K_BF16, 203, 1.0f);
  if (c.sinks)
    rig.fill(rig.weights, sinks, c.qh, K_BF16, 204, 4.0f);
  std::vector<int> positions(static_cast<size_t>(T));
  for (i64 t = 0; t < T; ++t)
    positions[size_t(t)] = int(c.pos0 + t);
  rig.put(rig.arena, pos, positions);
  const float scale = 1.0f / std::sqrt(float(c.d)), vscale = 0.612f;
  for (int g = 0; g < c.kvh; ++g)
    for (int r = 0; r < per_head; ++r) {
      const int task = g * per_head + r;
      TilecTask t = make_task(c.inst, TILEC_TASK_ATTENTION, task);
      set_arg(t, TILEC_ATT_Q, q);
      set_arg(t, TILEC_ATT_KCACHE, kc);
      set_arg(t, TILEC_ATT_VCACHE, vc);
      set_arg(t, TILEC_ATT_POS, pos);
      set_arg(t, TILEC_ATT_OUT, out);
      set_arg(t, TILEC_ATT_KV_HEAD, g);
      set_arg(t, TILEC_ATT_SINKS, sinks);
      set_arg(t, TILEC_ATT_SCALE, f32_arg(scale));
      set_arg(t, TILEC_ATT_VSCALE, f32_arg(vscale));
      set_arg(t, TILEC_ATT_ROW0, r * c.rows);
      set_arg(t, TILEC_ATT_ROW1, std::min(rows, (r + 1) * c.rows));
      rig.add(task, t);
    }
  if (!rig.run_clean(name))
    return;
  const std::vector<float> qf =
      gen_bf16_floats(K_BF16, 201, T * c.qh * c.d, 2.0f);
  const std::vector<float> kf =
      gen_bf16_floats(K_BF16, 202, i64(c.capacity) * c.kvh * c.d, 2.0f);
  const std::vector<float> vf =
      gen_bf16_floats(K_BF16, 203, i64(c.capacity) * c.kvh * c.dv, 1.0f);
  const std::vector<float> sf =
      c.sinks ? gen_bf16_floats(K_BF16, 204, c.qh, 4.0f) : std::vector<float>();
  const std::vector<double> ref =
      attention_ref(c, qf, kf, vf, sf, positions, scale, vscale);
  char what[128];
  std::snprintf(what, sizeof what,
                "T=%d G=%d D=%d/%d window %d cap %d%s%s, %d task%s/kv head",
                c.T, c.qh / c.kvh, c.d, c.dv, c.window, c.capacity,
                c.sinks ? " sinks" : "", c.mask ? " block" : "", per_head,
                per_head == 1 ? "" : "s");
  record(name, "attention out (bf16)",
         rel_err(bf16s_to_floats(rig.get<u16>(rig.arena, out, T * c.qh * c.dv)),
                 ref),
         kTolBf16, what);
}

/// q/k/v projections (RoPE, caches) -> attention -> o_proj + residual, with
/// events between the stages, at MiMo-V2.5-Pro shapes (one GPU's heads).
void test_attention_pipeline() {
  const std::string name = "pipe_attention_pro";
  const LinearCase *lq = nullptr, *lk = nullptr, *lv = nullptr, *lo = nullptr;
  for (const LinearCase &l : kLinear) {
    const std::string n = l.name;
    lq = n == "pro_q_rope" ? &l : lq;
    lk = n == "pro_k_cache" ? &l : lk;
    lv = n == "pro_v_cache" ? &l : lv;
    lo = n == "pro_o_residual" ? &l : lo;
  }
  const AttentionCase &ac = kAttention[3]; // att_pro_full_t8: one task
  const i64 T = 8, H = 6144, QH = ac.qh, D = ac.d, DV = ac.dv,
            CAP = ac.capacity;
  Rig rig(g_sms);
  const i64 x = rig.arena.alloc(T * H * 2), pos = rig.arena.alloc(T * 4);
  const i64 q = rig.arena.alloc(T * QH * D * 2);
  const i64 att = rig.arena.alloc(T * QH * DV * 2);
  const i64 out = rig.arena.alloc(T * H * 2);
  const i64 kc = rig.kv.alloc(CAP * D * 2), vc = rig.kv.alloc(CAP * DV * 2);
  const i64 norm = rig.weights.alloc(H * 2);
  Weight wq(F_FP8, QH * D, H, 1, 31), wk(F_FP8, D, H, 1, 32),
      wv(F_FP8, DV, H, 1, 33), wo(F_BF16, H, QH * DV, 1, 34);
  for (Weight *w : {&wq, &wk, &wv, &wo})
    w->alloc(rig);
  rig.commit();
  rig.fill(rig.arena, x, T * H, K_BF16, 301, 2.0f);
  rig.fill(rig.kv, kc, CAP * D, K_BF16, 302, 2.0f);
  rig.fill(rig.kv, vc, CAP * DV, K_BF16, 303, 1.0f);
  rig.fill(rig.weights, norm, H, K_BF16_NORM, 304);
  for (Weight *w : {&wq, &wk, &wv, &wo})
    w->fill(rig);
  std::vector<int> positions(static_cast<size_t>(T));
  for (i64 t = 0; t < T; ++t)
    positions[size_t(t)] = int(ac.pos0 + t);
  rig.put(rig.arena, pos, positions);
  const float eps = 1e-5f, theta = 1e7f, scale = 1.0f / std::sqrt(float(D)),
              vscale = 0.612f;

  const int ev_qkv = rig.event(), ev_att = rig.event();
  int sm = 0, op = 0, qkv_tasks = 0;
  auto projection = [&](const LinearCase &l, const Weight &w, i64 dst) {
    for (i64 n0 = 0; n0 < l.N; n0 += l.tile) {
      TilecTask t = make_task(l.inst, TILEC_TASK_LINEAR, op++);
      set_arg(t, TILEC_LIN_X, x);
      set_arg(t, TILEC_LIN_W, w.off);
      set_arg(t, TILEC_LIN_WSCALE, w.soff);
      set_arg(t, TILEC_LIN_N0, n0);
      set_arg(t, TILEC_LIN_N1, std::min<i64>(l.N, n0 + l.tile));
      set_arg(t, TILEC_LIN_OUT, dst);
      set_arg(t, TILEC_LIN_NORM_W, norm);
      set_arg(t, TILEC_LIN_EPS, f32_arg(eps));
      set_arg(t, TILEC_LIN_POS, pos);
      set_arg(t, TILEC_LIN_THETA, f32_arg(theta));
      rig.add(sm++, t, ev_qkv);
      ++qkv_tasks;
    }
  };
  projection(*lq, wq, q);
  projection(*lk, wk, kc);
  projection(*lv, wv, vc);
  {
    TilecTask t = make_task(ac.inst, TILEC_TASK_ATTENTION, op++);
    set_wait(t, 0, ev_qkv, qkv_tasks);
    set_arg(t, TILEC_ATT_Q, q);
    set_arg(t, TILEC_ATT_KCACHE, kc);
    set_arg(t, TILEC_ATT_VCACHE, vc);
    set_arg(t, TILEC_ATT_POS, pos);
    set_arg(t, TILEC_ATT_OUT, att);
    set_arg(t, TILEC_ATT_KV_HEAD, 0);
    set_arg(t, TILEC_ATT_SINKS, -1);
    set_arg(t, TILEC_ATT_SCALE, f32_arg(scale));
    set_arg(t, TILEC_ATT_VSCALE, f32_arg(vscale));
    set_arg(t, TILEC_ATT_ROW0, 0); // one task: every query row
    set_arg(t, TILEC_ATT_ROW1, QH * T);
    rig.add(sm++, t, ev_att);
  }
  for (i64 n0 = 0; n0 < H; n0 += lo->tile) {
    TilecTask t = make_task(lo->inst, TILEC_TASK_LINEAR, op++);
    set_wait(t, 0, ev_att, 1);
    set_arg(t, TILEC_LIN_X, att);
    set_arg(t, TILEC_LIN_W, wo.off);
    set_arg(t, TILEC_LIN_N0, n0);
    set_arg(t, TILEC_LIN_N1, n0 + lo->tile);
    set_arg(t, TILEC_LIN_OUT, out);
    set_arg(t, TILEC_LIN_RESIDUAL, x);
    rig.add(sm++, t);
  }
  if (!rig.run_clean(name))
    return;

  const std::vector<float> xf = gen_bf16_floats(K_BF16, 301, T * H, 2.0f);
  const std::vector<float> nw = gen_bf16_floats(K_BF16_NORM, 304, H);
  std::vector<std::vector<double>> xs;
  for (i64 t = 0; t < T; ++t)
    xs.push_back(rmsnorm_row(xf.data() + t * H, nw, H, eps));
  auto rope_ref = [&](const std::vector<double> &y, i64 heads) {
    std::vector<double> r = y;
    const int rd = 64, half = 32;
    for (i64 t = 0; t < T; ++t)
      for (i64 h = 0; h < heads; ++h)
        for (int d = 0; d < rd; ++d) {
          const i64 base = t * heads * D + h * D;
          const int f = d % half;
          const float inv = 1.0f / std::pow(theta, float(2 * f) / float(rd));
          const double a = double(float(positions[size_t(t)]) * inv);
          const double x1 = y[size_t(base + f)],
                       x2 = y[size_t(base + f + half)];
          r[size_t(base + d)] = d < half ? x1 * std::cos(a) - x2 * std::sin(a)
                                         : x2 * std::cos(a) + x1 * std::sin(a);
        }
    return r;
  };
  record(name, "q = rope(x' Wq) bf16",
         rel_err(bf16s_to_floats(rig.get<u16>(rig.arena, q, T * QH * D)),
                 rope_ref(matmul_ref(xs, wq, 0, 0, QH * D), QH)),
         kTolBf16);
  const std::vector<float> kall =
      bf16s_to_floats(rig.get<u16>(rig.kv, kc, CAP * D));
  const std::vector<float> vall =
      bf16s_to_floats(rig.get<u16>(rig.kv, vc, CAP * DV));
  std::vector<float> kgot, vgot;
  for (i64 t = 0; t < T; ++t) {
    const i64 slot = positions[size_t(t)] % CAP;
    kgot.insert(kgot.end(), kall.begin() + slot * D,
                kall.begin() + (slot + 1) * D);
    vgot.insert(vgot.end(), vall.begin() + slot * DV,
                vall.begin() + (slot + 1) * DV);
  }
  record(name, "k cache = rope(x' Wk)",
         rel_err(kgot, rope_ref(matmul_ref(xs, wk, 0, 0, D), 1)), kTolBf16);
  record(name, "v cache = x' Wv", rel_err(vgot, matmul_ref(xs, wv, 0, 0, DV)),
         kTolBf16);
  const std::vector<float> qgot =
      bf16s_to_floats(rig.get<u16>(rig.arena, q, T * QH * D));
  const std::vector<float> agot =
      bf16s_to_floats(rig.get<u16>(rig.arena, att, T * QH * DV));
  record(name, "attention(gpu q, caches)",
         rel_err(agot, attention_ref(ac, qgot, kall, vall, {}, positions, scale,
                                     vscale)),
         kTolBf16);
  std::vector<std::vector<double>> as;
  for (i64 t = 0; t < T; ++t)
    as.emplace_back(agot.begin() + t * QH * DV,
                    agot.begin() + (t + 1) * QH * DV);
  std::vector<double> oref = matmul_ref(as, wo, 0, 0, H);
  for (i64 i = 0; i < T * H; ++i)
    oref[size_t(i)] += xf[size_t(i)];
  record(name, "x + o_proj(gpu attention)",
         rel_err(bf16s_to_floats(rig.get<u16>(rig.arena, out, T * H)), oref),
         kTolBf16);
}

//===--- ROUTER_TOPK and the MoE layer ------------------------------------===//

struct RouterCase {
  const char *name;
  int inst, T, E, K, n_group, topk_group, renorm;
};
const RouterCase kRouter[] = {
#define X_RT(name, T, E, K, NG, TG, RN) {#name, I_##name, T, E, K, NG, TG, RN},
    ROUTER_CASES(X_RT)
#undef X_RT
};

struct Routing {
  std::vector<int> ids;
  std::vector<float> weights;
  std::vector<float> choice; // c of every expert, per token (ties)
};

/// The reference router (Reference.cpp's ref::router, on given logits).
Routing router_ref(const std::vector<float> &logits,
                   const std::vector<float> &bias, int T, int E, int K, int ng,
                   int tg, bool renorm, float scaling) {
  Routing r;
  const int per = E / ng;
  for (int t = 0; t < T; ++t) {
    std::vector<float> score(static_cast<size_t>(E)), c(static_cast<size_t>(E));
    for (int e = 0; e < E; ++e) {
      score[size_t(e)] = 1.0f / (1.0f + std::exp(-logits[size_t(t * E + e)]));
      c[size_t(e)] = score[size_t(e)] + (bias.empty() ? 0.0f : bias[size_t(e)]);
    }
    r.choice.insert(r.choice.end(), c.begin(), c.end());
    if (ng > 1) {
      std::vector<std::pair<float, int>> groups;
      for (int g = 0; g < ng; ++g) {
        std::vector<float> m(c.begin() + g * per, c.begin() + (g + 1) * per);
        std::partial_sort(m.begin(), m.begin() + std::min(2, per), m.end(),
                          std::greater<float>());
        groups.push_back({m[0] + (per > 1 ? m[1] : 0.0f), g});
      }
      std::stable_sort(groups.begin(), groups.end(),
                       [](auto &a, auto &b) { return a.first > b.first; });
      std::vector<bool> keep(size_t(ng), false);
      for (int g = 0; g < tg; ++g)
        keep[size_t(groups[size_t(g)].second)] = true;
      for (int e = 0; e < E; ++e)
        if (!keep[size_t(e / per)])
          c[size_t(e)] = -INFINITY;
    }
    std::vector<int> order(static_cast<size_t>(E));
    for (int e = 0; e < E; ++e)
      order[size_t(e)] = e;
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return c[size_t(a)] > c[size_t(b)]; });
    float sum = 0;
    for (int k = 0; k < K; ++k)
      sum += score[size_t(order[size_t(k)])];
    for (int k = 0; k < K; ++k) {
      float w = score[size_t(order[size_t(k)])];
      if (renorm)
        w /= sum + 1e-20f;
      r.ids.push_back(order[size_t(k)]);
      r.weights.push_back(w * scaling);
    }
  }
  return r;
}

/// docs/engine.md's plan for the given choices.
std::vector<int> plan_ref(const std::vector<int> &ids, int T, int E, int K) {
  const int S = SLOTS_OF(T, E, K);
  std::vector<int> distinct(ids.begin(), ids.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<int> plan(size_t(1 + S + S * T), -1);
  plan[0] = int(distinct.size());
  for (int s = 0; s < S; ++s) {
    if (s >= int(distinct.size()))
      continue;
    plan[size_t(1 + s)] = distinct[size_t(s)];
    for (int t = 0; t < T; ++t)
      for (int k = 0; k < K; ++k)
        if (ids[size_t(t * K + k)] == distinct[size_t(s)])
          plan[size_t(1 + S + s * T + t)] = k;
  }
  return plan;
}

/// ids and weights against the reference on the same logits; a different
/// choice passes only as a near tie (choice values within 1e-6).
void check_routing(const std::string &name, const std::vector<int> &ids,
                   const std::vector<float> &weights, const Routing &ref, int T,
                   int E, int K) {
  bool ok = true;
  int ties = 0;
  std::vector<double> wref(ref.weights.begin(), ref.weights.end());
  for (int i = 0; i < T * K; ++i) {
    if (ids[size_t(i)] == ref.ids[size_t(i)])
      continue;
    const int t = i / K;
    const float *c = ref.choice.data() + size_t(t) * E;
    const int g = ids[size_t(i)], r = ref.ids[size_t(i)];
    if (g >= 0 && g < E && std::fabs(c[g] - c[r]) <= 1e-6f * std::fabs(c[r]))
      ++ties;
    else
      ok = false;
  }
  record_ok(name, "expert ids", ok,
            ties ? std::to_string(ties) + " near ties" : "");
  if (!ties)
    record(name, "routing weights", rel_err(weights, wref), 1e-5);
}

void test_router(const RouterCase &c) {
  const std::string name = c.name;
  const int T = c.T, E = c.E, K = c.K, S = SLOTS_OF(T, E, K);
  const bool with_bias = E != 16;
  const float scaling = c.renorm ? 1.0f : 2.5f;
  Rig rig(1);
  const i64 logits = rig.arena.alloc(i64(T) * E * 4);
  const i64 ids = rig.arena.alloc(T * K * 4), wts = rig.arena.alloc(T * K * 4);
  const i64 plan = rig.arena.alloc((1 + S + S * T) * 4);
  const i64 bias = with_bias ? rig.weights.alloc(E * 4) : -1;
  rig.commit();
  rig.fill(rig.arena, logits, i64(T) * E, K_F32, 401, 4.0f);
  if (with_bias)
    rig.fill(rig.weights, bias, E, K_F32, 402, 0.0625f);
  TilecTask t = make_task(c.inst, TILEC_TASK_ROUTER_TOPK);
  set_arg(t, TILEC_RT_LOGITS, logits);
  set_arg(t, TILEC_RT_BIAS, bias);
  set_arg(t, TILEC_RT_IDS, ids);
  set_arg(t, TILEC_RT_WEIGHTS, wts);
  set_arg(t, TILEC_RT_PLAN, plan);
  set_arg(t, TILEC_RT_SCALING, f32_arg(scaling));
  rig.add(0, t);
  if (!rig.run_clean(name))
    return;
  std::vector<float> lf(size_t(T) * E), bf;
  for (i64 i = 0; i < i64(T) * E; ++i)
    lf[size_t(i)] = gen_as<float>(K_F32, 401, u64(i), 4.0f);
  if (with_bias)
    for (int e = 0; e < E; ++e)
      bf.push_back(gen_as<float>(K_F32, 402, u64(e), 0.0625f));
  const Routing ref =
      router_ref(lf, bf, T, E, K, c.n_group, c.topk_group, c.renorm, scaling);
  const std::vector<int> gids = rig.get<int>(rig.arena, ids, T * K);
  check_routing(name, gids, rig.get<float>(rig.arena, wts, T * K), ref, T, E,
                K);
  record_ok(name, "plan",
            rig.get<int>(rig.arena, plan, 1 + S + S * T) ==
                plan_ref(gids, T, E, K));
}

struct MoeCase {
  const char *name;
  int rt, router, gu, down, combine;
  int T, H, I, E, K, tile_rt, tile_gu, tile_down, format;
};
const MoeCase kMoe[] = {
#define X_MOE(name, T, H, I, E, K, TRT, TGU, TDN, F)                           \
  {#name,                                                                      \
   I_##name##_rt,                                                              \
   I_##name##_router,                                                          \
   I_##name##_gu,                                                              \
   I_##name##_down,                                                            \
   I_##name##_combine,                                                         \
   T,                                                                          \
   H,                                                                          \
   I,                                                                          \
   E,                                                                          \
   K,                                                                          \
   TRT,                                                                        \
   TGU,                                                                        \
   TDN,                                                                        \
   F},
    MOE_CASES(X_MOE)
#undef X_MOE
};

/// A whole MoE layer: router logits (LINEAR, RMSNORM, f32) -> ROUTER_TOPK ->
/// MOE_GATE_UP -> MOE_DOWN -> MOE_COMBINE, events between the stages; small
/// cases run two steps (the event epochs).
void test_moe(const MoeCase &c) {
  const std::string name = c.name;
  const i64 T = c.T, H = c.H, I = c.I, E = c.E, K = c.K;
  const int S = SLOTS_OF(c.T, c.E, c.K);
  const bool pro = H >= 4096;
  Rig rig(pro ? g_sms : 16);
  const i64 x = rig.arena.alloc(T * H * 2), logits = rig.arena.alloc(T * E * 4);
  const i64 ids = rig.arena.alloc(T * K * 4), rw = rig.arena.alloc(T * K * 4);
  const i64 plan = rig.arena.alloc((1 + S + i64(S) * T) * 4);
  const i64 act = rig.arena.alloc(i64(S) * T * I * 2);
  const i64 part = rig.arena.alloc(T * K * H * 4),
            out = rig.arena.alloc(T * H * 2);
  const i64 nrt = rig.weights.alloc(H * 2), nmoe = rig.weights.alloc(H * 2);
  const i64 bias = rig.weights.alloc(E * 4);
  Weight gate(F_BF16, E, H, 1, 41), gu(c.format, 2 * I, H, E, 42),
      dn(c.format, H, I, E, 43);
  for (Weight *w : {&gate, &gu, &dn})
    w->alloc(rig);
  rig.commit();
  rig.fill(rig.weights, nrt, H, K_BF16_NORM, 411);
  rig.fill(rig.weights, nmoe, H, K_BF16_NORM, 412);
  rig.fill(rig.weights, bias, E, K_F32, 413, 0.0625f);
  for (Weight *w : {&gate, &gu, &dn})
    w->fill(rig);
  const float eps = 1e-5f;

  const int ev_rt = rig.event(), ev_plan = rig.event(), ev_gu = rig.event(),
            ev_down = rig.event();
  int sm = 0, op = 0;
  const int rt_tiles = int((E + c.tile_rt - 1) / c.tile_rt);
  for (int i = 0; i < rt_tiles; ++i) {
    TilecTask t = make_task(c.rt, TILEC_TASK_LINEAR, op++);
    set_arg(t, TILEC_LIN_X, x);
    set_arg(t, TILEC_LIN_W, gate.off);
    set_arg(t, TILEC_LIN_N0, i64(i) * c.tile_rt);
    set_arg(t, TILEC_LIN_N1, std::min<i64>(E, i64(i + 1) * c.tile_rt));
    set_arg(t, TILEC_LIN_OUT, logits);
    set_arg(t, TILEC_LIN_NORM_W, nrt);
    set_arg(t, TILEC_LIN_EPS, f32_arg(eps));
    rig.add(sm++, t, ev_rt);
  }
  {
    TilecTask t = make_task(c.router, TILEC_TASK_ROUTER_TOPK, op++);
    set_wait(t, 0, ev_rt, rt_tiles);
    set_arg(t, TILEC_RT_LOGITS, logits);
    set_arg(t, TILEC_RT_BIAS, bias);
    set_arg(t, TILEC_RT_IDS, ids);
    set_arg(t, TILEC_RT_WEIGHTS, rw);
    set_arg(t, TILEC_RT_PLAN, plan);
    set_arg(t, TILEC_RT_SCALING, f32_arg(1.0f));
    rig.add(sm++, t, ev_plan);
  }
  int gu_tasks = 0, down_tasks = 0;
  for (int s = 0; s < S; ++s)
    for (i64 n0 = 0; n0 < I; n0 += c.tile_gu) {
      TilecTask t = make_task(c.gu, TILEC_TASK_MOE_GATE_UP, op++);
      set_wait(t, 0, ev_plan, 1);
      set_arg(t, TILEC_MOE_SLOT, s);
      set_arg(t, TILEC_MOE_N0, n0);
      set_arg(t, TILEC_MOE_N1, std::min<i64>(I, n0 + c.tile_gu));
      set_arg(t, TILEC_MOE_X, x);
      set_arg(t, TILEC_MOE_PLAN, plan);
      set_arg(t, TILEC_MOE_W, gu.off);
      set_arg(t, TILEC_MOE_WSCALE, gu.soff);
      set_arg(t, TILEC_MOE_OUT, act);
      set_arg(t, TILEC_MOE_NORM_W, nmoe);
      set_arg(t, TILEC_MOE_EPS, f32_arg(eps));
      rig.add(sm++, t, ev_gu);
      ++gu_tasks;
    }
  for (int s = 0; s < S; ++s)
    for (i64 n0 = 0; n0 < H; n0 += c.tile_down) {
      TilecTask t = make_task(c.down, TILEC_TASK_MOE_DOWN, op++);
      set_wait(t, 0, ev_gu, gu_tasks);
      set_arg(t, TILEC_MOE_SLOT, s);
      set_arg(t, TILEC_MOE_N0, n0);
      set_arg(t, TILEC_MOE_N1, std::min<i64>(H, n0 + c.tile_down));
      set_arg(t, TILEC_MOE_X, act);
      set_arg(t, TILEC_MOE_PLAN, plan);
      set_arg(t, TILEC_MOE_W, dn.off);
      set_arg(t, TILEC_MOE_WSCALE, dn.soff);
      set_arg(t, TILEC_MOE_OUT, part);
      set_arg(t, TILEC_MOE_RWEIGHTS, rw);
      rig.add(sm++, t, ev_down);
      ++down_tasks;
    }
  const i64 cols = H / 4;
  for (i64 n0 = 0; n0 < H; n0 += cols) {
    TilecTask t = make_task(c.combine, TILEC_TASK_MOE_COMBINE, op++);
    set_wait(t, 0, ev_down, down_tasks);
    set_arg(t, TILEC_CMB_PARTIAL, part);
    set_arg(t, TILEC_CMB_RESIDUAL, x);
    set_arg(t, TILEC_CMB_OUT, out);
    set_arg(t, TILEC_CMB_N0, n0);
    set_arg(t, TILEC_CMB_N1, n0 + cols);
    rig.add(sm++, t);
  }

  const std::vector<float> nw_rt = gen_bf16_floats(K_BF16_NORM, 411, H);
  const std::vector<float> nw_moe = gen_bf16_floats(K_BF16_NORM, 412, H);
  std::vector<float> bf;
  for (i64 e = 0; e < E; ++e)
    bf.push_back(gen_as<float>(K_F32, 413, u64(e), 0.0625f));
  for (int step = 0; step < (pro ? 1 : 2); ++step) {
    const u64 xseed = 420 + step;
    rig.fill(rig.arena, x, T * H, K_BF16, xseed, 2.0f);
    if (!rig.run_clean(name, u64(step)))
      return;
    const std::string at = step ? "step 1: " : "";
    const std::vector<float> xf = gen_bf16_floats(K_BF16, xseed, T * H, 2.0f);
    std::vector<std::vector<double>> xr, xm;
    for (i64 t = 0; t < T; ++t) {
      xr.push_back(rmsnorm_row(xf.data() + t * H, nw_rt, H, eps));
      xm.push_back(rmsnorm_row(xf.data() + t * H, nw_moe, H, eps));
    }
    const std::vector<float> lgot = rig.get<float>(rig.arena, logits, T * E);
    record(name, at + "router logits f32",
           rel_err(lgot, matmul_ref(xr, gate, 0, 0, E)), kTolF32);
    const std::vector<int> gids = rig.get<int>(rig.arena, ids, T * K);
    const std::vector<float> gw = rig.get<float>(rig.arena, rw, T * K);
    check_routing(name, gids, gw,
                  router_ref(lgot, bf, c.T, c.E, c.K, 1, 1, true, 1.0f), c.T,
                  c.E, c.K);
    const std::vector<int> gplan =
        rig.get<int>(rig.arena, plan, 1 + S + i64(S) * T);
    const bool plan_ok = gplan == plan_ref(gids, c.T, c.E, c.K);
    record_ok(name, at + "plan", plan_ok,
              std::to_string(gplan[0]) + " distinct experts");
    if (!plan_ok)
      return;
    // Gate/up: every routed (slot, token).
    const std::vector<float> agot =
        bf16s_to_floats(rig.get<u16>(rig.arena, act, i64(S) * T * I));
    std::vector<std::pair<int, int>> routed;
    for (int s = 0; s < gplan[0]; ++s)
      for (int t = 0; t < c.T; ++t)
        if (gplan[size_t(1 + S + s * c.T + t)] >= 0)
          routed.push_back({s, t});
    std::vector<float> ag;
    std::vector<double> ar(routed.size() * size_t(I));
    for (auto [s, t] : routed)
      ag.insert(ag.end(), agot.begin() + (i64(s) * T + t) * I,
                agot.begin() + (i64(s) * T + t + 1) * I);
    parallel_for(i64(routed.size()) * I, [&](i64 idx) {
      const i64 r = idx / I, n = idx % I;
      const auto [s, t] = routed[size_t(r)];
      const int e = gplan[size_t(1 + s)];
      std::vector<float> wg(static_cast<size_t>(H)), wu(static_cast<size_t>(H));
      gu.row(e, n, wg.data());
      gu.row(e, I + n, wu.data());
      double g = 0, u = 0;
      for (i64 k = 0; k < H; ++k)
        g += xm[size_t(t)][size_t(k)] * wg[size_t(k)],
            u += xm[size_t(t)][size_t(k)] * wu[size_t(k)];
      ar[size_t(idx)] = silu_mul_ref(g, u);
    });
    record(name, at + "gate/up act (bf16)", rel_err(ag, ar), kTolBf16,
           std::to_string(routed.size()) + " (slot, token) pairs");
    // Down: out[t, k, n] from the GPU's act and weights.
    const std::vector<float> pgot = rig.get<float>(rig.arena, part, T * K * H);
    std::vector<double> pref(size_t(T * K * H), NAN);
    parallel_for(i64(routed.size()) * H, [&](i64 idx) {
      const i64 r = idx / H, n = idx % H;
      const auto [s, t] = routed[size_t(r)];
      const int e = gplan[size_t(1 + s)],
                k = gplan[size_t(1 + S + s * c.T + t)];
      std::vector<float> wd(static_cast<size_t>(I));
      dn.row(e, n, wd.data());
      double y = 0;
      for (i64 i = 0; i < I; ++i)
        y += double(agot[size_t((i64(s) * T + t) * I + i)]) * wd[size_t(i)];
      pref[size_t((t * K + k) * H + n)] = double(gw[size_t(t * K + k)]) * y;
    });
    record(name, at + "down partials f32", rel_err(pgot, pref), kTolF32);
    // Combine from the GPU's partials.
    std::vector<double> oref(size_t(T * H));
    for (i64 t = 0; t < T; ++t)
      for (i64 n = 0; n < H; ++n) {
        float sum = 0.0f;
        for (i64 k = 0; k < K; ++k)
          sum += pgot[size_t((t * K + k) * H + n)];
        oref[size_t(t * H + n)] = double(xf[size_t(t * H + n)] + sum);
      }
    record(name, at + "combine out (bf16)",
           rel_err(bf16s_to_floats(rig.get<u16>(rig.arena, out, T * H)), oref),
           kTolBf16);
  }
}

//===--- EMBED ------------------------------------------------------------===//

struct EmbedCase {
  const char *name;
  int inst, T, H, V;
};
const EmbedCase kEmbed[] = {
#define X_EMB(name, T, H, V) {#name, I_##name, T, H, V},
    EMBED_CASES(X_EMB)
#undef X_EMB
};

void test_embed(const EmbedCase &c, bool bad_id) {
  const std::string name = std::string(c.name) + (bad_id ? "_bad_id" : "");
  const i64 T = c.T, H = c.H, V = c.V;
  Rig rig(4);
  const i64 ids = rig.arena.alloc(T * 4), out = rig.arena.alloc(T * H * 2);
  Weight table(F_BF16, V, H, 1, 51);
  table.bscale = 1.0f;
  table.alloc(rig);
  rig.commit();
  table.fill(rig);
  std::vector<int> tok(static_cast<size_t>(T));
  for (i64 t = 0; t < T; ++t)
    tok[size_t(t)] = int(gbits(52, u64(t)) % u64(V));
  if (bad_id)
    tok[1] = int(V);
  rig.put(rig.arena, ids, tok);
  const float scale = 1.5f;
  const i64 cols = H / 4; // four column ranges on four CTAs
  for (int i = 0; i < 4; ++i) {
    TilecTask t = make_task(c.inst, TILEC_TASK_EMBED, 7);
    set_arg(t, TILEC_EMBED_IDS, ids);
    set_arg(t, TILEC_EMBED_TABLE, table.off);
    set_arg(t, TILEC_EMBED_OUT, out);
    set_arg(t, TILEC_EMBED_COL0, i * cols);
    set_arg(t, TILEC_EMBED_COL1, i == 3 ? H : (i + 1) * cols);
    set_arg(t, TILEC_EMBED_SCALE, f32_arg(scale));
    rig.add(i, t);
  }
  Rig::Outcome o = rig.run(0);
  if (bad_id)
    record_ok(name, "bad id: report flag 2",
              o.report[TILEC_REPORT_FLAG] == 2 &&
                  o.report[TILEC_REPORT_OP] == 7 && o.stamps_ok);
  else
    record_ok(name, "clean run + stamps",
              o.report[TILEC_REPORT_FLAG] == 0 && o.stamps_ok);
  // bf16(table * scale) is exact to compare: one f32 product, one rounding.
  const std::vector<u16> got = rig.get<u16>(rig.arena, out, T * H);
  i64 wrong = 0;
  std::vector<float> row(static_cast<size_t>(H));
  for (i64 t = 0; t < T; ++t) {
    const bool bad = tok[size_t(t)] < 0 || tok[size_t(t)] >= V;
    if (!bad)
      table.row(0, tok[size_t(t)], row.data());
    for (i64 h = 0; h < H; ++h)
      wrong += got[size_t(t * H + h)] !=
               (bad ? 0 : tilec::f32ToBf16(row[size_t(h)] * scale));
  }
  record(name, "rows (bit-exact)", double(wrong), 0.0,
         std::to_string(wrong) + " wrong elements");
}

//===--- Watchdog ---------------------------------------------------------===//

/// CTA 0's first task waits on an event nobody signals, CTA 1 on an event CTA
/// 0 would signal after it, CTA 2 has no wait: the kernel must end, report a
/// hang, and still run CTA 2's task.
void test_watchdog() {
  const std::string name = "watchdog";
  const MoeCase &mc = kMoe[0]; // its MOE_COMBINE: T=4, H=64, K=2
  const i64 T = mc.T, H = mc.H, K = mc.K;
  Rig rig(3);
  const i64 part = rig.arena.alloc(T * K * H * 4),
            res = rig.arena.alloc(T * H * 2);
  const i64 out = rig.arena.alloc(T * H * 2);
  rig.commit();
  rig.fill(rig.arena, part, T * K * H, K_F32, 61, 1.0f);
  rig.fill(rig.arena, res, T * H, K_BF16, 62, 1.0f);
  const int never = rig.event(), after = rig.event();
  auto combine = [&](int op) {
    TilecTask t = make_task(mc.combine, TILEC_TASK_MOE_COMBINE, op);
    set_arg(t, TILEC_CMB_PARTIAL, part);
    set_arg(t, TILEC_CMB_RESIDUAL, res);
    set_arg(t, TILEC_CMB_OUT, out);
    set_arg(t, TILEC_CMB_N0, 0);
    set_arg(t, TILEC_CMB_N1, H);
    return t;
  };
  TilecTask a = combine(100), b = combine(101), d = combine(102),
            c2 = combine(103);
  set_wait(a, 0, never, 1);
  rig.add(0, a);
  rig.add(0, c2, after); // never runs
  set_wait(b, 1, after, 1);
  rig.add(1, b);
  rig.add(2, d);
  const auto t0 = std::chrono::steady_clock::now();
  Rig::Outcome o = rig.run(0, 5000000ull); // 5 ms
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  const int *r = o.report;
  char note[160];
  std::snprintf(note, sizeof note,
                "flag %d sm %d task %d op %d event %d have %d want %d, %.3f s",
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], secs);
  const bool first = r[TILEC_REPORT_SM] == 0 && r[TILEC_REPORT_OP] == 100 &&
                     r[TILEC_REPORT_EVENT] == never;
  const bool second = r[TILEC_REPORT_SM] == 1 && r[TILEC_REPORT_OP] == 101 &&
                      r[TILEC_REPORT_EVENT] == after;
  record_ok(name, "hang reported, kernel ends",
            r[TILEC_REPORT_FLAG] == 1 && (first || second) &&
                r[TILEC_REPORT_TASK] == 0 && r[TILEC_REPORT_HAVE] == 0 &&
                r[TILEC_REPORT_WANT] == 1 && secs < 5.0,
            note);
  const std::vector<u16> got = rig.get<u16>(rig.arena, out, T * H);
  record_ok(name, "unblocked CTA ran", got[0] != 0xffff);
}

//===--- tilec_synthesize vs models/core's writer -------------------------===//

void test_synthesize() {
  namespace fs = std::filesystem;
  const u64 seed = 1234;
  const fs::path dir = fs::temp_directory_path() /
                       ("tilec-device-test-" + std::to_string(getpid()));
  struct Set {
    std::string label;
    std::vector<tilec::gputest::SynthTensor> tensors;
  };
  std::vector<Set> sets;
  try {
    sets.push_back({"tiny", tilec::gputest::checkpointTensors(
                                "tiny", seed, (dir / "tiny").string())});
    sets.push_back(
        {"tiny-groups", tilec::gputest::checkpointTensors(
                            "tiny-groups", seed, (dir / "groups").string())});
    sets.push_back({"large", tilec::gputest::largeTensors(seed)});
  } catch (const std::exception &e) {
    record_ok("synthesize", "models/core writer", false, e.what());
    return;
  }
  fs::remove_all(dir);
  for (const Set &set : sets) {
    int tensors = 0, bad = 0;
    i64 bytes = 0, wrong = 0;
    std::string first_bad;
    int formats[4] = {0, 0, 0, 0};
    for (const auto &t : set.tensors) {
      u8 *d_data = nullptr, *d_scales = nullptr;
      CUDA_CHECK(cudaMalloc(&d_data, std::max<size_t>(t.data.size(), 1)));
      CUDA_CHECK(cudaMalloc(&d_scales, std::max<size_t>(t.scales.size(), 1)));
      CUDA_CHECK(cudaMemset(d_data, 0xab, std::max<size_t>(t.data.size(), 1)));
      CUDA_CHECK(
          cudaMemset(d_scales, 0xab, std::max<size_t>(t.scales.size(), 1)));
      const i64 n = t.rows * t.cols * t.matrices;
      const int grid =
          t.format == 1 ? 1024 : int(std::min<i64>((n + 255) / 256, 4096));
      tilec_synthesize<<<std::max(grid, 1), 256>>>(
          d_data, d_scales, t.key, 0, t.scale, t.offset, t.rows, t.cols,
          t.matrices, t.format);
      CUDA_CHECK(cudaGetLastError());
      std::vector<u8> data(t.data.size()), scales(t.scales.size());
      CUDA_CHECK(
          cudaMemcpy(data.data(), d_data, data.size(), cudaMemcpyDeviceToHost));
      CUDA_CHECK(cudaMemcpy(scales.data(), d_scales, scales.size(),
                            cudaMemcpyDeviceToHost));
      cudaFree(d_data);
      cudaFree(d_scales);
      i64 w = 0;
      for (size_t i = 0; i < data.size(); ++i)
        w += data[i] != t.data[i];
      for (size_t i = 0; i < scales.size(); ++i)
        w += scales[i] != t.scales[i];
      ++tensors;
      ++formats[t.format];
      bytes += i64(data.size() + scales.size());
      wrong += w;
      if (w && !bad++)
        first_bad = t.name;
    }
    char note[200];
    std::snprintf(
        note, sizeof note,
        "%d tensors (bf16 %d, fp8 %d, mxfp4 %d, f32 %d), %lld bytes%s%s",
        tensors, formats[0], formats[1], formats[2], formats[3],
        (long long)bytes, bad ? "; first bad: " : "", first_bad.c_str());
    record("synthesize_" + set.label, "bytes differing", double(wrong), 0.0,
           note);
  }
}

} // namespace

int main(int argc, char **argv) {
  std::string filter = argc > 1 ? argv[1] : "";
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("tilec_device_test: no CUDA device, skipped\n");
    return 77;
  }
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  g_sms = prop.multiProcessorCount;
  CUDA_CHECK(cudaFuncSetAttribute(test_step,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  TILEC_SMEM_BYTES));
  cudaFuncAttributes attr;
  CUDA_CHECK(cudaFuncGetAttributes(&attr, test_step));
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, test_step, TILEC_THREADS, TILEC_SMEM_BYTES));
  std::printf("%s, %d SMs, sm_%d%d; megakernel: %d threads (%d compute warps), "
              "%d registers, %zu B local, %d B dynamic smem, %d CTA/SM\n",
              prop.name, g_sms, prop.major, prop.minor, TILEC_THREADS,
              tilec::kComputeWarps, attr.numRegs, attr.localSizeBytes,
              TILEC_SMEM_BYTES, per_sm);
  if (per_sm < 1) {
    std::printf("FAIL: the megakernel does not fit one CTA per SM\n");
    return 1;
  }
  auto want = [&](const std::string &n) {
    return filter.empty() || n.find(filter) != std::string::npos;
  };
  std::printf("  %-28s %-26s %10s  %-4s %s\n", "test", "check", "max rel err",
              "", "details");
  for (const LinearCase &c : kLinear)
    if (want(c.name))
      test_linear(c);
  for (const AttentionCase &c : kAttention)
    if (want(c.name))
      test_attention(c);
  if (want("pipe_attention_pro"))
    test_attention_pipeline();
  for (const SiluMulCase &c : kSiluMul)
    if (want(c.name))
      test_silu_mul(c);
  for (const RouterCase &c : kRouter)
    if (want(c.name))
      test_router(c);
  for (const MoeCase &c : kMoe)
    if (want(c.name))
      test_moe(c);
  for (const EmbedCase &c : kEmbed)
    if (want(c.name)) {
      test_embed(c, false);
      test_embed(c, true);
    }
  if (want("watchdog"))
    test_watchdog();
  if (want("synthesize"))
    test_synthesize();

  int failed = 0;
  for (const Row &r : g_rows)
    failed += !r.pass;
  std::printf("\n%-30s %-28s %11s %9s  %s\n", "test", "check", "max rel err",
              "tolerance", "result");
  for (const Row &r : g_rows)
    std::printf("%-30s %-28s %11.3e %9.1e  %s\n", r.test.c_str(),
                r.check.c_str(), r.err, r.tol, r.pass ? "PASS" : "FAIL");
  std::printf("\n%zu checks, %d failed: %s\n", g_rows.size(), failed,
              failed ? "FAIL" : "PASS");
  return failed ? 1 : 0;
}
