//===- moe.cuh - MOE_GATE_UP, MOE_DOWN, MOE_COMBINE: routed experts -------===//
//
// A MoE task serves one plan slot (a distinct expert of the step) for the
// tokens routed to it, rows [N0, N1) of its output: the weights of the slot's
// expert are read once however many tokens chose it. The slot's tokens come
// from the router's plan; the GEMV core computes only those (compacted).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/device/linear.cuh"

namespace tilec {

namespace detail {

/// A MoE task's slot s, its rows [n0, n0 + nrows) and the slot's expert e
/// from the plan; e = -1 when the task has nothing to do this step.
struct MoeSlot {
  int s, n0, nrows, e;
  const int *plan;
};

template <int SLOTS, int E, int TILE>
__device__ __forceinline__ MoeSlot moe_slot(const i64 *a, const Ctx &ctx) {
  MoeSlot m;
  m.s = int(a[TILEC_MOE_SLOT]);
  m.n0 = int(a[TILEC_MOE_N0]);
  m.nrows = cmin(int(a[TILEC_MOE_N1]) - m.n0, TILE);
  m.plan = reinterpret_cast<const int *>(ctx.arena + a[TILEC_MOE_PLAN]);
  m.e = -1;
  if (m.nrows > 0 && m.s >= 0 && m.s < SLOTS && m.s < m.plan[0]) {
    const int e = m.plan[1 + m.s];
    if (e >= 0 && e < E)
      m.e = e;
  }
  return m;
}

} // namespace detail

/// MOE_GATE_UP: out[s, t, n] = bf16(silu(W_e[n] . x') * (W_e[I + n] . x')),
/// x' = rmsnorm(x[t]), for the tokens routed to slot s and n in [N0, N1).
template <int T, int H, int I, int E, int K, int SLOTS, int TILE, int FORMAT>
__device__ __noinline__ void moe_gate_up_task(const TilecTask &task,
                                              const Ctx &ctx) {
  static_assert(SLOTS == (E < T * K ? E : T * K), "MOE: slots = min(E, T*K)");
  static_assert(TILE <= I, "MOE_GATE_UP: tile larger than I");
  using G = detail::Gemv<T, H, FORMAT, TILE, 2, true, true>;
  constexpr i64 kExpertBytes = detail::matrix_bytes(FORMAT, 2 * i64(I), H);
  constexpr i64 kExpertScales = detail::scale_bytes(FORMAT, 2 * i64(I), H);

  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const detail::MoeSlot m = detail::moe_slot<SLOTS, E, TILE>(a, ctx);
  if (m.e < 0)
    return;
  const int s = m.s, n0 = m.n0, nrows = m.nrows, e = m.e;
  const int *plan = m.plan;
  const u8 *data = ctx.weights + a[TILEC_MOE_W] + e * kExpertBytes;
  const u8 *scales =
      FORMAT == TILEC_FMT_BF16
          ? nullptr
          : ctx.weights + a[TILEC_MOE_WSCALE] + e * kExpertScales;
  const detail::WeightMatrix w[2] = {{data, scales, n0},
                                     {data, scales, i64(I) + n0}};
  const u8 *norm_w = ctx.weights + a[TILEC_MOE_NORM_W];
  if (ctx.prefetch) {
    G::prefetch(w, nrows);
    prefetch_l2(norm_w, i64(H) * 2);
    return;
  }

  G::run(ctx, w, nrows, ctx.arena + a[TILEC_MOE_X], i64(H) * 2,
         plan + 1 + SLOTS + s * T, norm_w,
         __uint_as_float(u32(a[TILEC_MOE_EPS])));
  u16 *out = reinterpret_cast<u16 *>(ctx.arena + a[TILEC_MOE_OUT]);
  const int total = G::count(ctx) * nrows;
  for (int idx = compute_tid(); idx < total; idx += kComputeThreads) {
    const int c = idx / nrows, i = idx - c * nrows;
    const int t = G::token(ctx, c);
    out[(i64(s) * T + t) * I + n0 + i] =
        f32_to_bf16(detail::silu_mul(G::y(ctx, c, 0, i), G::y(ctx, c, 1, i)));
  }
}

/// MOE_DOWN: out[t, k, n] = rweights[t, k] * (D_e[n] . act[s, t, :]) (f32) for
/// the tokens routed to slot s (k = their choice index) and n in [N0, N1).
template <int T, int H, int I, int E, int K, int SLOTS, int TILE, int FORMAT>
__device__ __noinline__ void moe_down_task(const TilecTask &task,
                                           const Ctx &ctx) {
  static_assert(SLOTS == (E < T * K ? E : T * K), "MOE: slots = min(E, T*K)");
  static_assert(TILE <= H, "MOE_DOWN: tile larger than H");
  using G = detail::Gemv<T, I, FORMAT, TILE, 1, false, true>;
  constexpr i64 kExpertBytes = detail::matrix_bytes(FORMAT, H, I);
  constexpr i64 kExpertScales = detail::scale_bytes(FORMAT, H, I);

  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const detail::MoeSlot m = detail::moe_slot<SLOTS, E, TILE>(a, ctx);
  if (m.e < 0)
    return;
  const int s = m.s, n0 = m.n0, nrows = m.nrows, e = m.e;
  const int *plan = m.plan;
  const u8 *scales =
      FORMAT == TILEC_FMT_BF16
          ? nullptr
          : ctx.weights + a[TILEC_MOE_WSCALE] + e * kExpertScales;
  const detail::WeightMatrix w[1] = {
      {ctx.weights + a[TILEC_MOE_W] + e * kExpertBytes, scales, n0}};
  if (ctx.prefetch) {
    G::prefetch(w, nrows);
    return;
  }

  const int *route = plan + 1 + SLOTS + s * T;
  G::run(ctx, w, nrows, ctx.arena + a[TILEC_MOE_X] + i64(s) * T * I * 2,
         i64(I) * 2, route, nullptr, 0.0f);
  float *out = reinterpret_cast<float *>(ctx.arena + a[TILEC_MOE_OUT]);
  const float *rweights =
      reinterpret_cast<const float *>(ctx.arena + a[TILEC_MOE_RWEIGHTS]);
  const int total = G::count(ctx) * nrows;
  for (int idx = compute_tid(); idx < total; idx += kComputeThreads) {
    const int c = idx / nrows, i = idx - c * nrows;
    const int t = G::token(ctx, c), k = route[t];
    out[(i64(t) * K + k) * H + n0 + i] =
        __fmul_rn(rweights[t * K + k], G::y(ctx, c, 0, i));
  }
}

/// MOE_COMBINE: out[t, n] = bf16(residual[t, n] + sum_k partial[t, k, n]), the
/// sum in k order, for n in [N0, N1).
template <int T, int H, int K>
__device__ __noinline__ void moe_combine_task(const TilecTask &task,
                                              const Ctx &ctx) {
  if (ctx.prefetch)
    return;
  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const float *partial =
      reinterpret_cast<const float *>(ctx.arena + a[TILEC_CMB_PARTIAL]);
  const u16 *residual =
      reinterpret_cast<const u16 *>(ctx.arena + a[TILEC_CMB_RESIDUAL]);
  u16 *out = reinterpret_cast<u16 *>(ctx.arena + a[TILEC_CMB_OUT]);
  const int n0 = int(a[TILEC_CMB_N0]), n1 = cmin(int(a[TILEC_CMB_N1]), H);
  const int cols = n1 - n0;
  if (cols <= 0)
    return;
  if (H % 4 == 0 && n0 % 4 == 0 && cols % 4 == 0) {
    const int quads = cols / 4;
    for (int idx = compute_tid(); idx < T * quads; idx += kComputeThreads) {
      const int t = idx / quads, n = n0 + 4 * (idx - t * quads);
      float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const float4 p = *reinterpret_cast<const float4 *>(
            partial + (i64(t) * K + k) * H + n);
        sum.x += p.x, sum.y += p.y, sum.z += p.z, sum.w += p.w;
      }
      const uint2 r =
          *reinterpret_cast<const uint2 *>(residual + i64(t) * H + n);
      uint2 o;
      o.x = pack_bf16x2(__fadd_rn(bf16_lo(r.x), sum.x),
                        __fadd_rn(bf16_hi(r.x), sum.y));
      o.y = pack_bf16x2(__fadd_rn(bf16_lo(r.y), sum.z),
                        __fadd_rn(bf16_hi(r.y), sum.w));
      *reinterpret_cast<uint2 *>(out + i64(t) * H + n) = o;
    }
  } else {
    for (int idx = compute_tid(); idx < T * cols; idx += kComputeThreads) {
      const int t = idx / cols, n = n0 + (idx - t * cols);
      float sum = 0.0f;
#pragma unroll
      for (int k = 0; k < K; ++k)
        sum += partial[(i64(t) * K + k) * H + n];
      out[i64(t) * H + n] =
          f32_to_bf16(__fadd_rn(bf16_to_f32(residual[i64(t) * H + n]), sum));
    }
  }
}

} // namespace tilec
