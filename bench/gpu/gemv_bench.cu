//===- gemv_bench.cu - The GEMV cores of the device library, in isolation -===//
//
// Issue 7's microbenchmarks: detail::Gemv (runtime/device/linear.cuh, the core
// of every LINEAR and MoE task) over one large weight matrix at MiMo-V2.5-Pro's
// per-GPU shapes, one CTA per SM walking tasks of TILE rows as the megakernel
// does, without the megakernel around it (no events, no scheduling). Each
// shape runs on the tensor-core path (TILEC_GEMV_MMA_MIN_T = 8) and on the FMA
// path (minimum 17, i.e. off) where T allows both; the two results are
// compared (max |a - b| / max |b|). GB/s = weight bytes (scales included) /
// kernel time; the fraction is of the device-to-device copy bandwidth this
// program measures first (bytes read + written / time).
//
// Build (CUDA 13, no GPU needed):
//   nvcc -std=c++17 -O3 -arch=sm_90a -I. bench/gpu/gemv_bench.cu -o gemv_bench
// Run: ./gemv_bench [--json FILE]; ./gemv_bench --verify compares the two
// paths on small shapes (the tiny presets') and exits 1 on a difference.
//
//===----------------------------------------------------------------------===//
// The device library expects the C++ headers an NVRTC build gets from the
// runtime's preamble; with nvcc they come first.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#define TILEC_THREADS 512
#define TILEC_SMEM_BYTES (200 * 1024)
// clang-format off
#include "runtime/device/linear.cuh"
// clang-format on

using namespace tilec;

#define CHECK(x)                                                               \
  do {                                                                         \
    cudaError_t e_ = (x);                                                      \
    if (e_ != cudaSuccess) {                                                   \
      std::fprintf(stderr, "gemv_bench: %s: %s\n", #x,                         \
                   cudaGetErrorString(e_));                                    \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

namespace {

/// Tasks of TILE rows over `rows` rows of MATS matrices stacked in `data`
/// (matrix m's rows after m * rows), one CTA per SM; y[t, m, row] in f32 for
/// the active tokens (ROUTED: those with route[t] >= 0).
template <int T, int K, int FORMAT, int TILE, int MATS, bool RMS, bool ROUTED,
          int MIN_T>
__global__ void __launch_bounds__(TILEC_THREADS, 1)
    gemv_kernel(const u8 *data, const u8 *scales, int rows, const u8 *x,
                const int *route, const u8 *norm_w, float *y) {
  using G = detail::Gemv<T, K, FORMAT, TILE, MATS, RMS, ROUTED, MIN_T>;
  extern __shared__ __align__(16) unsigned char smem[];
  if (threadIdx.x < kComputeWarp0 * 32)
    return;
  Ctx ctx{};
  ctx.smem = smem;
  for (int task = blockIdx.x; task * TILE < rows; task += gridDim.x) {
    const int n0 = task * TILE, nrows = cmin(TILE, rows - n0);
    detail::WeightMatrix w[MATS];
    for (int m = 0; m < MATS; ++m)
      w[m] = {data, scales, i64(m) * rows + n0};
    G::run(ctx, w, nrows, x, i64(K) * 2, route, norm_w, 1e-6f);
    const int total = G::count(ctx) * MATS * nrows;
    for (int idx = compute_tid(); idx < total; idx += kComputeThreads) {
      const int c = idx / (MATS * nrows), r = idx - c * MATS * nrows;
      const int m = r / nrows, i = r - m * nrows;
      y[(i64(G::token(ctx, c)) * MATS + m) * rows + n0 + i] =
          G::y(ctx, c, m, i);
    }
    compute_sync();
  }
}

__device__ u32 mix(u64 i, u32 seed) {
  u64 z = i * 0x9e3779b97f4a7c15ull + seed;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return u32(z ^ (z >> 31));
}

/// kind 0: random bytes (MXFP4 codes); 1: E4M3 bytes without NaN; 2: bf16 in
/// (-1, 1); 3: E8M0 codes 118..125; 4: f32 FP8 scales in [1e-3, 2e-3).
__global__ void fill(u8 *p, i64 bytes, int kind, u32 seed) {
  for (i64 i = blockIdx.x * i64(blockDim.x) + threadIdx.x; i < bytes;
       i += i64(gridDim.x) * blockDim.x) {
    const u32 r = mix(u64(i), seed);
    if (kind == 0) {
      p[i] = u8(r);
    } else if (kind == 1) {
      u8 b = u8(r);
      p[i] = (b & 0x7f) == 0x7f ? u8(b ^ 1) : b;
    } else if (kind == 2 && i % 2 == 0) {
      const float f = (float(r & 0xffffff) / 16777216.0f) * 2.0f - 1.0f;
      *reinterpret_cast<u16 *>(p + i) = f32_to_bf16(f);
    } else if (kind == 3) {
      p[i] = u8(118 + r % 8);
    } else if (kind == 4 && i % 4 == 0) {
      *reinterpret_cast<float *>(p + i) =
          1e-3f + float(r & 0xffff) / 65536.0f * 1e-3f;
    }
  }
}

struct Buffers {
  u8 *data = nullptr, *scales = nullptr, *x = nullptr;
  int *route = nullptr;
  float *y = nullptr;
};

int g_sms = 0;
double g_copy_gbps = 0;
FILE *g_json = nullptr;
bool g_first_json = true;

template <int T, int K, int FORMAT, int TILE, bool ROUTED, int MIN_T>
float time_kernel(const Buffers &b, int rows, int reps) {
  auto k = gemv_kernel<T, K, FORMAT, TILE, 1, false, ROUTED, MIN_T>;
  CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             TILEC_SMEM_BYTES));
  for (int i = 0; i < 2; ++i)
    k<<<g_sms, TILEC_THREADS, TILEC_SMEM_BYTES>>>(b.data, b.scales, rows, b.x,
                                                  b.route, nullptr, b.y);
  CHECK(cudaGetLastError());
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  CHECK(cudaEventRecord(e0));
  for (int i = 0; i < reps; ++i)
    k<<<g_sms, TILEC_THREADS, TILEC_SMEM_BYTES>>>(b.data, b.scales, rows, b.x,
                                                  b.route, nullptr, b.y);
  CHECK(cudaEventRecord(e1));
  CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, e0, e1));
  CHECK(cudaEventDestroy(e0));
  CHECK(cudaEventDestroy(e1));
  return ms / reps;
}

const char *format_name(int f) {
  return f == TILEC_FMT_MXFP4 ? "mxfp4" : f == TILEC_FMT_FP8 ? "fp8" : "bf16";
}

/// One shape: rows x K of FORMAT, tasks of TILE rows, T tokens (ROUTED: only
/// token 0 active, as most MoE slots at batch 1).
template <int T, int K, int FORMAT, int TILE, bool ROUTED>
void shape(const char *what, i64 target_bytes) {
  const i64 row_bytes = detail::matrix_bytes(FORMAT, 1, K);
  int rows = int(target_bytes / row_bytes) / TILE * TILE;
  const i64 wbytes = detail::matrix_bytes(FORMAT, rows, K);
  const i64 sbytes = detail::scale_bytes(FORMAT, rows, K);
  Buffers b;
  CHECK(cudaMalloc(&b.data, wbytes));
  CHECK(cudaMalloc(&b.scales, sbytes > 0 ? sbytes : 16));
  CHECK(cudaMalloc(&b.x, i64(T) * K * 2));
  CHECK(cudaMalloc(&b.route, T * sizeof(int)));
  CHECK(cudaMalloc(&b.y, i64(T) * rows * 4));
  fill<<<1024, 256>>>(b.data, wbytes,
                      FORMAT == TILEC_FMT_MXFP4 ? 0
                      : FORMAT == TILEC_FMT_FP8 ? 1
                                                : 2,
                      1);
  if (sbytes > 0)
    fill<<<1024, 256>>>(b.scales, sbytes, FORMAT == TILEC_FMT_MXFP4 ? 3 : 4, 2);
  fill<<<64, 256>>>(b.x, i64(T) * K * 2, 2, 3);
  std::vector<int> route(T, -1);
  route[0] = 0;
  if (!ROUTED)
    for (int t = 0; t < T; ++t)
      route[size_t(t)] = 0;
  CHECK(cudaMemcpy(b.route, route.data(), T * sizeof(int),
                   cudaMemcpyHostToDevice));
  CHECK(cudaDeviceSynchronize());

  const int reps = 20;
  const int active = ROUTED ? 1 : T;
  std::vector<float> ymma, yfma;
  auto readback = [&](std::vector<float> &out) {
    out.assign(size_t(T) * rows, 0.0f);
    CHECK(cudaMemcpy(out.data(), b.y, out.size() * 4, cudaMemcpyDeviceToHost));
    CHECK(cudaMemset(b.y, 0, size_t(T) * rows * 4));
  };
  auto report = [&](const char *path, float ms, double diff) {
    const double gbps = double(wbytes + sbytes) / (ms * 1e-3) / 1e9;
    std::printf("%-22s %-6s %5d %5d %2d %2d  %-6s %9.1f %8.0f %6.1f%%  %s\n",
                what, format_name(FORMAT), K, TILE, T, active, path, ms * 1e3,
                gbps, 100.0 * gbps / g_copy_gbps,
                diff >= 0 ? std::to_string(diff).c_str() : "");
    if (g_json) {
      std::fprintf(g_json,
                   "%s\n  {\"shape\": \"%s\", \"format\": \"%s\", \"k\": %d, "
                   "\"rows\": %d, \"tile\": %d, \"tokens\": %d, \"active\": "
                   "%d, \"path\": \"%s\", \"us\": %.2f, \"gbps\": %.1f, "
                   "\"hbm_fraction\": %.4f, \"max_rel_diff\": %.3g}",
                   g_first_json ? "" : ",", what, format_name(FORMAT), K, rows,
                   TILE, T, active, path, ms * 1e3, gbps, gbps / g_copy_gbps,
                   diff);
      g_first_json = false;
    }
  };
  float fma_ms = time_kernel<T, K, FORMAT, TILE, ROUTED, 17>(b, rows, reps);
  readback(yfma);
  using GM = detail::Gemv<T, K, FORMAT, TILE, 1, false, ROUTED, 8>;
  if (GM::kMma) {
    float mma_ms = time_kernel<T, K, FORMAT, TILE, ROUTED, 8>(b, rows, reps);
    readback(ymma);
    double maxd = 0, maxv = 0;
    for (size_t i = 0; i < yfma.size(); ++i) {
      maxd = std::max(maxd, double(std::fabs(ymma[i] - yfma[i])));
      maxv = std::max(maxv, double(std::fabs(yfma[i])));
    }
    report("fma", fma_ms, -1);
    report("mma", mma_ms, maxv > 0 ? maxd / maxv : maxd);
  } else {
    report("fma", fma_ms, -1);
  }
  CHECK(cudaFree(b.data));
  CHECK(cudaFree(b.scales));
  CHECK(cudaFree(b.x));
  CHECK(cudaFree(b.route));
  CHECK(cudaFree(b.y));
}

/// --verify: small shapes as the tiny presets have them (short K, tiles of a
/// few rows, gate/up pairs, the RMSNORM prologue), the tensor-core path
/// against the FMA path on the same inputs; max |a - b| / max |b| per shape.
int g_verify_failures = 0;

template <int T, int K, int FORMAT, int TILE, int MATS, bool RMS>
void verify(int rows) {
  using GM = detail::Gemv<T, K, FORMAT, TILE, MATS, RMS, false, 8>;
  const i64 wbytes = detail::matrix_bytes(FORMAT, i64(MATS) * rows, K);
  const i64 sbytes = detail::scale_bytes(FORMAT, i64(MATS) * rows, K);
  u8 *data, *scales, *x, *nw;
  float *y;
  CHECK(cudaMalloc(&data, wbytes));
  CHECK(cudaMalloc(&scales, sbytes > 0 ? sbytes : 16));
  CHECK(cudaMalloc(&x, i64(T) * K * 2));
  CHECK(cudaMalloc(&nw, i64(K) * 2));
  const size_t ny = size_t(T) * MATS * rows;
  CHECK(cudaMalloc(&y, ny * 4));
  fill<<<256, 256>>>(data, wbytes,
                     FORMAT == TILEC_FMT_MXFP4 ? 0
                     : FORMAT == TILEC_FMT_FP8 ? 1
                                               : 2,
                     11);
  if (sbytes > 0)
    fill<<<64, 256>>>(scales, sbytes, FORMAT == TILEC_FMT_MXFP4 ? 3 : 4, 12);
  fill<<<16, 256>>>(x, i64(T) * K * 2, 2, 13);
  fill<<<16, 256>>>(nw, i64(K) * 2, 2, 14);
  std::vector<float> a(ny), b(ny);
  auto go = [&](auto kernel, std::vector<float> &out) {
    CHECK(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, TILEC_SMEM_BYTES));
    CHECK(cudaMemset(y, 0, ny * 4));
    kernel<<<g_sms, TILEC_THREADS, TILEC_SMEM_BYTES>>>(data, scales, rows, x,
                                                       nullptr, nw, y);
    CHECK(cudaGetLastError());
    CHECK(cudaMemcpy(out.data(), y, ny * 4, cudaMemcpyDeviceToHost));
  };
  go(gemv_kernel<T, K, FORMAT, TILE, MATS, RMS, false, 17>, a);
  go(gemv_kernel<T, K, FORMAT, TILE, MATS, RMS, false, 8>, b);
  double maxd = 0, maxv = 0;
  for (size_t i = 0; i < ny; ++i) {
    maxd = std::max(maxd, double(std::fabs(a[i] - b[i])));
    maxv = std::max(maxv, double(std::fabs(a[i])));
  }
  const double rel = maxv > 0 ? maxd / maxv : maxd;
  const bool bad = !(rel < 1e-2);
  g_verify_failures += bad;
  std::printf("verify %-5s K %4d tile %3d mats %d rms %d T %d rows %4d: %s, "
              "max rel diff %.3g%s\n",
              format_name(FORMAT), K, TILE, MATS, int(RMS), T, rows,
              GM::kMma ? "mma" : "fma only", rel, bad ? "  FAIL" : "");
  CHECK(cudaFree(data));
  CHECK(cudaFree(scales));
  CHECK(cudaFree(x));
  CHECK(cudaFree(nw));
  CHECK(cudaFree(y));
}

template <int FORMAT, int K> void verify_format() {
  verify<8, K, FORMAT, 4, 1, false>(512);
  verify<8, K, FORMAT, 24, 1, true>(200);
  verify<8, K, FORMAT, 64, 2, true>(256);
  verify<8, K, FORMAT, 40, 2, false>(120);
}

void verify_all() {
  verify_format<TILEC_FMT_BF16, 64>();
  verify_format<TILEC_FMT_BF16, 256>();
  verify_format<TILEC_FMT_FP8, 64>();
  verify_format<TILEC_FMT_FP8, 128>();
  verify_format<TILEC_FMT_FP8, 256>();
  verify_format<TILEC_FMT_MXFP4, 128>();
  verify_format<TILEC_FMT_MXFP4, 256>();
}

double copy_bandwidth() {
  const size_t bytes = size_t(1) << 30;
  void *a, *b;
  CHECK(cudaMalloc(&a, bytes));
  CHECK(cudaMalloc(&b, bytes));
  CHECK(cudaMemset(a, 1, bytes));
  CHECK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  CHECK(cudaEventRecord(e0));
  for (int i = 0; i < 10; ++i)
    CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
  CHECK(cudaEventRecord(e1));
  CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, e0, e1));
  CHECK(cudaFree(a));
  CHECK(cudaFree(b));
  return 2.0 * bytes * 10 / (ms * 1e-3) / 1e9;
}

} // namespace

int main(int argc, char **argv) {
  bool verify_only = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--verify")) {
      verify_only = true;
    } else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
      g_json = std::fopen(argv[++i], "w");
      if (!g_json) {
        std::fprintf(stderr, "gemv_bench: cannot write %s\n", argv[i]);
        return 1;
      }
    } else {
      std::fprintf(stderr, "usage: gemv_bench [--verify] [--json FILE]\n");
      return 2;
    }
  }
  int dev = 0;
  cudaDeviceProp prop;
  CHECK(cudaGetDevice(&dev));
  CHECK(cudaGetDeviceProperties(&prop, dev));
  g_sms = prop.multiProcessorCount;
  if (verify_only) {
    verify_all();
    std::printf("verify: %d failures\n", g_verify_failures);
    return g_verify_failures ? 1 : 0;
  }
  g_copy_gbps = copy_bandwidth();
  std::printf("gemv_bench: %s, %d SMs, copy bandwidth %.0f GB/s (read + "
              "write); one CTA of %d threads per SM\n",
              prop.name, g_sms, g_copy_gbps, TILEC_THREADS);
  if (g_json)
    std::fprintf(g_json,
                 "{\"device\": \"%s\", \"copy_gbps\": %.1f, \"rows\": [",
                 prop.name, g_copy_gbps);
  std::printf("%-22s %-6s %5s %5s %2s %2s  %-6s %9s %8s %7s  %s\n", "shape",
              "format", "K", "tile", "T", "on", "path", "us", "GB/s", "HBM",
              "max rel diff (mma vs fma)");
  const i64 big = i64(512) << 20; // past the 50 MB L2
  // Expert gate/up rows (K = hidden 6144), one token routed / all 8.
  shape<8, 6144, TILEC_FMT_MXFP4, 256, true>("expert gate/up", big);
  shape<8, 6144, TILEC_FMT_MXFP4, 256, false>("expert gate/up", big);
  shape<1, 6144, TILEC_FMT_MXFP4, 256, false>("expert gate/up", big);
  // Expert down rows at the 1/8 slice (K = 2048 / 8) and whole (K = 2048).
  shape<8, 256, TILEC_FMT_MXFP4, 3072, true>("expert down tp8", big);
  shape<1, 256, TILEC_FMT_MXFP4, 3072, false>("expert down tp8", big);
  shape<8, 2048, TILEC_FMT_MXFP4, 1024, true>("expert down", big);
  shape<8, 2048, TILEC_FMT_MXFP4, 1024, false>("expert down", big);
  // FP8 attention projections (K = 6144), bf16 lm_head rows.
  shape<8, 6144, TILEC_FMT_FP8, 64, false>("attention proj", big);
  shape<1, 6144, TILEC_FMT_FP8, 64, false>("attention proj", big);
  shape<8, 6144, TILEC_FMT_BF16, 128, false>("lm_head", big);
  shape<1, 6144, TILEC_FMT_BF16, 128, false>("lm_head", big);
  if (g_json) {
    std::fprintf(g_json, "\n]}\n");
    std::fclose(g_json);
  }
  return 0;
}
