//===- router.cuh - ROUTER_TOPK: sigmoid router, top-k, the plan ----------===//
//
// One task for the step: a warp per token picks its experts (lanes hold the
// experts e = lane + 32 i), then the CTA compacts every token's choices into
// the plan of distinct experts that the MoE tasks read.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/device/common.cuh"

namespace tilec {
namespace detail {

/// Expert (c, e) beats (bc, be): larger c, ties to the smaller index; be < 0 is
/// no expert yet.
__device__ __forceinline__ bool expert_better(float c, int e, float bc,
                                              int be) {
  return e >= 0 && (be < 0 || c > bc || (c == bc && e < be));
}

} // namespace detail

/// ROUTER_TOPK (docs/engine.md): ids, weights and the plan of distinct experts
/// for T tokens from the router logits.
template <int T, int E, int K, int N_GROUP, int TOPK_GROUP, int RENORM>
__device__ __noinline__ void router_topk_task(const TilecTask &task,
                                              const Ctx &ctx) {
  static_assert(T >= 1 && T <= 16, "ROUTER_TOPK: 1 to 16 tokens");
  static_assert(E >= 1 && E <= 1024, "ROUTER_TOPK: 1 to 1024 experts");
  static_assert(K >= 1 && K <= E && K <= 32, "ROUTER_TOPK: 1 <= K <= E, 32");
  static_assert(N_GROUP >= 1 && N_GROUP <= 32 && E % N_GROUP == 0,
                "ROUTER_TOPK: n_group divides E, at most 32 groups");
  static_assert(N_GROUP == 1 || (TOPK_GROUP >= 1 && TOPK_GROUP <= N_GROUP &&
                                 TOPK_GROUP * (E / N_GROUP) >= K),
                "ROUTER_TOPK: the kept groups must hold K experts");
  if (ctx.prefetch)
    return;
  constexpr int EPL = cdiv(E, 32);
  constexpr int S = E < T * K ? E : T * K;
  constexpr int GS = E / N_GROUP;
  static_assert(EPL <= 32, "ROUTER_TOPK: taken mask");
  // Shared memory.
  constexpr int kChosenOff = 0;                                // int [T][K]
  constexpr int kFlagsOff = kChosenOff + T * K * 4;            // int [E]
  constexpr int kSlotOff = kFlagsOff + E * 4;                  // int [S]
  constexpr int kCountOff = kSlotOff + S * 4;                  // int
  constexpr int kGroupOff = (kCountOff + 4 + 15) / 16 * 16;    // f32 [W][32]
  constexpr int kKeepOff = kGroupOff + kComputeWarps * 32 * 4; // int [W][32]
  constexpr int kCOff = kKeepOff + kComputeWarps * 32 * 4;     // f32 [W][E]
  static_assert(kCOff + (N_GROUP > 1 ? kComputeWarps * E * 4 : 0) <= kSmemBytes,
                "ROUTER_TOPK: shared memory");
  int *chosen = reinterpret_cast<int *>(ctx.smem + kChosenOff);
  int *flags = reinterpret_cast<int *>(ctx.smem + kFlagsOff);
  int *slot_e = reinterpret_cast<int *>(ctx.smem + kSlotOff);
  volatile int *distinct =
      reinterpret_cast<volatile int *>(ctx.smem + kCountOff);

  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const float *logits =
      reinterpret_cast<const float *>(ctx.arena + a[TILEC_RT_LOGITS]);
  const float *bias =
      a[TILEC_RT_BIAS] >= 0
          ? reinterpret_cast<const float *>(ctx.weights + a[TILEC_RT_BIAS])
          : nullptr;
  int *ids = reinterpret_cast<int *>(ctx.arena + a[TILEC_RT_IDS]);
  float *weights = reinterpret_cast<float *>(ctx.arena + a[TILEC_RT_WEIGHTS]);
  int *plan = reinterpret_cast<int *>(ctx.arena + a[TILEC_RT_PLAN]);
  const float scaling = __uint_as_float(u32(a[TILEC_RT_SCALING]));
  const float kNegInf = -__int_as_float(0x7f800000);

  const int tid = compute_tid(), warp = compute_warp(), lane = lane_id();
  for (int t = warp; t < T; t += kComputeWarps) {
    float sv[EPL], cv[EPL];
#pragma unroll
    for (int i = 0; i < EPL; ++i) {
      const int e = i * 32 + lane;
      sv[i] = 0.0f;
      cv[i] = kNegInf;
      if (e < E) {
        const float x = logits[t * E + e];
        sv[i] = xm::sigmoid(x);
        cv[i] = bias ? __fadd_rn(sv[i], ld_weight(bias + e)) : sv[i];
      }
    }
    if constexpr (N_GROUP > 1) {
      // A group scores the sum of its two largest c; the TOPK_GROUP best
      // groups stay (ties: lower group first).
      float *cw = reinterpret_cast<float *>(ctx.smem + kCOff) + warp * E;
      float *gsum = reinterpret_cast<float *>(ctx.smem + kGroupOff) + warp * 32;
      int *keep = reinterpret_cast<int *>(ctx.smem + kKeepOff) + warp * 32;
#pragma unroll
      for (int i = 0; i < EPL; ++i)
        if (i * 32 + lane < E)
          cw[i * 32 + lane] = cv[i];
      __syncwarp();
      if (lane < N_GROUP) {
        float b1 = kNegInf, b2 = kNegInf;
        for (int e = lane * GS; e < (lane + 1) * GS; ++e) {
          const float x = cw[e];
          if (x > b1)
            b2 = b1, b1 = x;
          else if (x > b2)
            b2 = x;
        }
        gsum[lane] = GS > 1 ? __fadd_rn(b1, b2) : b1;
      }
      __syncwarp();
      if (lane < N_GROUP) {
        const float mine = gsum[lane];
        int rank = 0;
        for (int o = 0; o < N_GROUP; ++o)
          rank += gsum[o] > mine || (gsum[o] == mine && o < lane);
        keep[lane] = rank < TOPK_GROUP;
      }
      __syncwarp();
#pragma unroll
      for (int i = 0; i < EPL; ++i) {
        const int e = i * 32 + lane;
        if (e < E && !keep[e / GS])
          cv[i] = kNegInf;
      }
      __syncwarp();
    }
    // K rounds of a warp argmax over the experts not yet taken.
    u32 taken = 0;
    int ce[K];
    float cs[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      float bc = 0.0f, bs = 0.0f;
      int be = -1;
#pragma unroll
      for (int i = 0; i < EPL; ++i) {
        const int e = i * 32 + lane;
        if (e < E && !((taken >> i) & 1u) &&
            detail::expert_better(cv[i], e, bc, be))
          bc = cv[i], be = e, bs = sv[i];
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const float oc = __shfl_xor_sync(0xffffffffu, bc, o);
        const int oe = __shfl_xor_sync(0xffffffffu, be, o);
        const float os = __shfl_xor_sync(0xffffffffu, bs, o);
        if (detail::expert_better(oc, oe, bc, be))
          bc = oc, be = oe, bs = os;
      }
      ce[k] = be;
      cs[k] = bs;
      if (be >= 0 && (be & 31) == lane)
        taken |= 1u << (be >> 5);
    }
    if (lane == 0) {
      float sum = 0.0f;
#pragma unroll
      for (int k = 0; k < K; ++k)
        sum = __fadd_rn(sum, cs[k]);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        float w = cs[k];
        if (RENORM)
          w = __fdiv_rn(w, __fadd_rn(sum, 1e-20f));
        ids[t * K + k] = ce[k];
        weights[t * K + k] = __fmul_rn(w, scaling);
        chosen[t * K + k] = ce[k];
      }
    }
  }

  // The plan: distinct experts in ascending order, and who chose them.
  for (int e = tid; e < E; e += kComputeThreads)
    flags[e] = 0;
  compute_sync();
  for (int idx = tid; idx < T * K; idx += kComputeThreads)
    if (chosen[idx] >= 0 && chosen[idx] < E)
      flags[chosen[idx]] = 1;
  compute_sync();
  if (warp == 0) {
    int running = 0;
    for (int base = 0; base < E; base += 32) {
      const int e = base + lane;
      const bool used = e < E && flags[e];
      const u32 ballot = __ballot_sync(0xffffffffu, used);
      if (used) {
        const int r = running + __popc(ballot & ((1u << lane) - 1u));
        if (r < S)
          slot_e[r] = e;
      }
      running += __popc(ballot);
    }
    if (lane == 0)
      *distinct = running < S ? running : S;
  }
  compute_sync();
  const int d = *distinct;
  if (tid == 0)
    plan[0] = d;
  for (int s = tid; s < S; s += kComputeThreads)
    plan[1 + s] = s < d ? slot_e[s] : -1;
  for (int idx = tid; idx < S * T; idx += kComputeThreads) {
    const int s = idx / T, t = idx - s * T;
    int k = -1;
    if (s < d) {
      const int e = slot_e[s];
      for (int kk = 0; kk < K; ++kk)
        if (chosen[t * K + kk] == e)
          k = kk;
    }
    plan[1 + S + idx] = k;
  }
}

} // namespace tilec
