//===- spec.cuh - DFlash: taps concat, accept, the next block's state -----===//
//
// The speculative step's small tasks (docs/engine.md "DFlash step"): CONCAT
// copies (and for the last layer's tap, RMS-normalizes) the target's hidden
// states into the drafter's context features; SPEC_ACCEPT compares the
// verified block with the target's argmax and commits; SPEC_UPDATE writes the
// next block and its positions into the step state that the next launch reads.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/device/common.cuh"

namespace tilec {

/// CONCAT: out[t, OFFSET + c] = x[t, c] for c in [COL0, COL1), bf16; NORM:
/// x's row RMS-normalized over all W columns (weight NORM_W, eps EPS) first.
template <int T, int W, int OUT_W, int NORM>
__device__ __noinline__ void concat_task(const TilecTask &task,
                                         const Ctx &ctx) {
  static_assert(T >= 1 && T <= 16 && W >= 1 && OUT_W >= W, "CONCAT: bad sizes");
  if (ctx.prefetch)
    return;
  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const u16 *x = reinterpret_cast<const u16 *>(ctx.arena + a[TILEC_CAT_X]);
  u16 *out = reinterpret_cast<u16 *>(ctx.arena + a[TILEC_CAT_OUT]);
  const int offset = int(a[TILEC_CAT_OFFSET]);
  const int c0 = int(a[TILEC_CAT_COL0]), c1 = cmin(int(a[TILEC_CAT_COL1]), W);
  if (c1 <= c0)
    return;
  float *inv = reinterpret_cast<float *>(ctx.smem); // f32 [T]
  const u16 *norm_w = nullptr;
  if constexpr (NORM != 0) {
    norm_w = reinterpret_cast<const u16 *>(ctx.weights + a[TILEC_CAT_NORM_W]);
    const float eps = __uint_as_float(u32(a[TILEC_CAT_EPS]));
    for (int t = compute_warp(); t < T; t += kComputeWarps) {
      float sum = 0.0f;
      for (int c = lane_id(); c < W; c += 32) {
        const float v = bf16_to_f32(x[i64(t) * W + c]);
        sum = __fmaf_rn(v, v, sum);
      }
      sum = warp_sum(sum);
      if (lane_id() == 0)
        inv[t] =
            __frcp_rn(__fsqrt_rn(__fadd_rn(__fdiv_rn(sum, float(W)), eps)));
    }
    compute_sync();
  }
  const int cols = c1 - c0;
  for (int idx = compute_tid(); idx < T * cols; idx += kComputeThreads) {
    const int t = idx / cols, c = c0 + (idx - t * cols);
    u16 v = x[i64(t) * W + c];
    if constexpr (NORM != 0)
      v = f32_to_bf16(__fmul_rn(bf16_to_f32(ld_weight(norm_w + c)),
                                __fmul_rn(bf16_to_f32(v), inv[t])));
    out[i64(t) * OUT_W + offset + c] = v;
  }
}

/// SPEC_ACCEPT: with forced = 0, a = the longest prefix of draft[1..] equal to
/// the target's predictions (draft[i + 1] == predicted[i]); with forced = n
/// (a prompt chunk of n tokens), a = n - 1. Writes out = [a + 1, draft[1..a],
/// predicted[a], -1...], next = [predicted[a], MASK...] and next_pos =
/// pos[0] + a + 1 + i. A forced count outside [0, T] flags bad input (report
/// flag 2) and commits nothing but the first token.
template <int T, int MASK_TOKEN>
__device__ __noinline__ void spec_accept_task(const TilecTask &task,
                                              const Ctx &ctx) {
  static_assert(T >= 1 && T <= 16, "SPEC_ACCEPT: 1 to 16 tokens");
  if (ctx.prefetch)
    return;
  if (compute_tid() != 0)
    return;
  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const int *draft =
      reinterpret_cast<const int *>(ctx.arena + a[TILEC_ACC_DRAFT]);
  const int *predicted =
      reinterpret_cast<const int *>(ctx.arena + a[TILEC_ACC_PREDICTED]);
  const int *pos = reinterpret_cast<const int *>(ctx.arena + a[TILEC_ACC_POS]);
  const int forced =
      *reinterpret_cast<const int *>(ctx.arena + a[TILEC_ACC_FORCED]);
  int *out = reinterpret_cast<int *>(ctx.arena + a[TILEC_ACC_OUT]);
  int *next = reinterpret_cast<int *>(ctx.arena + a[TILEC_ACC_NEXT]);
  int *next_pos = reinterpret_cast<int *>(ctx.arena + a[TILEC_ACC_NEXT_POS]);
  int accepted = 0;
  if (forced < 0 || forced > T) {
    report_bad_input(ctx);
  } else if (forced > 0) {
    accepted = forced - 1;
  } else {
    while (accepted + 1 < T && draft[accepted + 1] == predicted[accepted])
      ++accepted;
  }
  out[0] = accepted + 1;
  for (int j = 1; j <= T; ++j)
    out[j] = j <= accepted       ? draft[j]
             : j == accepted + 1 ? predicted[accepted]
                                 : -1;
  const int start = pos[0] + accepted + 1;
  for (int i = 0; i < T; ++i) {
    next[i] = i == 0 ? predicted[accepted] : MASK_TOKEN;
    next_pos[i] = start + i;
  }
}

/// SPEC_UPDATE: the step state for the next launch: tokens = [next[0],
/// drafted[1..]] and positions = next_pos.
template <int T>
__device__ __noinline__ void spec_update_task(const TilecTask &task,
                                              const Ctx &ctx) {
  static_assert(T >= 1 && T <= 16, "SPEC_UPDATE: 1 to 16 tokens");
  if (ctx.prefetch)
    return;
  const int i = compute_tid();
  if (i >= T)
    return;
  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const int *next =
      reinterpret_cast<const int *>(ctx.arena + a[TILEC_UPD_NEXT]);
  const int *drafted =
      reinterpret_cast<const int *>(ctx.arena + a[TILEC_UPD_DRAFTED]);
  const int *next_pos =
      reinterpret_cast<const int *>(ctx.arena + a[TILEC_UPD_NEXT_POS]);
  int *tokens = reinterpret_cast<int *>(ctx.arena + a[TILEC_UPD_TOKENS]);
  int *positions = reinterpret_cast<int *>(ctx.arena + a[TILEC_UPD_POSITIONS]);
  tokens[i] = i == 0 ? next[0] : drafted[i];
  positions[i] = next_pos[i];
}

} // namespace tilec
