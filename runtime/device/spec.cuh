//===- spec.cuh - DFlash: taps concat, accept, the next block's state -----===//
//
// The speculative step's small tasks (docs/engine.md "DFlash step"): CONCAT
// copies (and for the last layer's tap, RMS-normalizes) the target's hidden
// states into the drafter's context features; SPEC_ACCEPT compares the
// verified block with the target's argmax and commits; SPEC_UPDATE writes the
// next block and its positions into the step state that the next launch reads;
// DRAFT_FILL (the autoregressive drafter mode) puts one drafted token into the
// block between two drafter passes.
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

namespace detail {

/// Sum (or max) over the compute threads; every one gets the result.
/// `scratch` holds kComputeWarps floats.
template <bool MAX>
__device__ __forceinline__ float compute_reduce(float v, float *scratch) {
  v = MAX ? warp_max(v) : warp_sum(v);
  if (lane_id() == 0)
    scratch[compute_warp()] = v;
  compute_sync();
  float r = MAX ? -__int_as_float(0x7f800000) : 0.0f;
  for (int w = 0; w < kComputeWarps; ++w)
    r = MAX ? fmaxf(r, scratch[w]) : r + scratch[w];
  compute_sync(); // scratch is reused
  return r;
}

/// Max and normalizer of softmax(row / temp) over V logits.
template <int V>
__device__ __forceinline__ float2 row_stats(const float *row, float temp,
                                            float *scratch) {
  float m = -__int_as_float(0x7f800000);
  for (int v = compute_tid(); v < V; v += kComputeThreads)
    m = fmaxf(m, __fdiv_rn(row[v], temp));
  m = compute_reduce<true>(m, scratch);
  float z = 0.0f;
  for (int v = compute_tid(); v < V; v += kComputeThreads)
    z += expf(__fdiv_rn(row[v], temp) - m);
  return make_float2(m, compute_reduce<false>(z, scratch));
}

/// A token from softmax(row / temp) without `skip` (-1: none), by the uniform
/// u: each thread sums a contiguous chunk, one thread finds the chunk where
/// the running mass passes u times the total, then the token inside it.
/// `sums` holds kComputeThreads floats; the token is returned to every thread.
template <int V>
__device__ __forceinline__ int draw_token(const float *row, float temp,
                                          float2 st, int skip, float u,
                                          float *sums, int *result) {
  constexpr int kChunk = cdiv(V, kComputeThreads);
  const int tid = compute_tid();
  float s = 0.0f;
  for (int v = tid * kChunk; v < cmin(V, (tid + 1) * kChunk); ++v)
    if (v != skip)
      s += expf(__fdiv_rn(row[v], temp) - st.x);
  sums[tid] = s;
  compute_sync();
  if (tid == 0) {
    float total = 0.0f;
    for (int c = 0; c < kComputeThreads; ++c)
      total += sums[c];
    const float target = u * total;
    float acc = 0.0f;
    int token = -1;
    for (int c = 0; c < kComputeThreads && token < 0; ++c) {
      if (sums[c] <= 0.0f)
        continue;
      if (acc + sums[c] <= target && c + 1 < kComputeThreads) {
        acc += sums[c];
        continue;
      }
      for (int v = c * kChunk; v < cmin(V, (c + 1) * kChunk); ++v) {
        if (v == skip)
          continue;
        acc += expf(__fdiv_rn(row[v], temp) - st.x);
        token = v;
        if (acc > target)
          break;
      }
    }
    *result = token;
  }
  compute_sync();
  const int token = *result;
  compute_sync(); // result is reused
  return token;
}

} // namespace detail

/// SPEC_ACCEPT (docs/engine.md): with temperature 0 (sampling[0]), a = the
/// longest prefix of draft[1..] equal to the target's predictions
/// (draft[i + 1] == predicted[i]) and the bonus predicted[a]; above 0, draft
/// token j + 1 is accepted with probability softmax(logits[j] / temp)[d], the
/// token at the first rejection drawn from that row without d, the bonus after
/// a full block from the last row. With forced = n (a prompt chunk of n
/// tokens), a = n - 1. Writes out = [a + 1, draft[1..a], bonus, -1...], next =
/// [bonus, MASK...] and next_pos = pos[0] + a + 1 + i. A forced count outside
/// [0, T] or a bad temperature flags bad input (report flag 2).
template <int T, int MASK_TOKEN, int V>
__device__ __noinline__ void spec_accept_task(const TilecTask &task,
                                              const Ctx &ctx) {
  static_assert(T >= 1 && T <= 16, "SPEC_ACCEPT: 1 to 16 tokens");
  static_assert(V >= 1, "SPEC_ACCEPT: bad vocabulary");
  if (ctx.prefetch)
    return;
  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const int *draft = reinterpret_cast<const int *>(ctx.arena + a[TILEC_ACC_DRAFT]);
  const int *predicted =
      reinterpret_cast<const int *>(ctx.arena + a[TILEC_ACC_PREDICTED]);
  const int *pos = reinterpret_cast<const int *>(ctx.arena + a[TILEC_ACC_POS]);
  const int forced =
      *reinterpret_cast<const int *>(ctx.arena + a[TILEC_ACC_FORCED]);
  const int *sampling =
      reinterpret_cast<const int *>(ctx.arena + a[TILEC_ACC_SAMPLING]);
  const float *logits =
      reinterpret_cast<const float *>(ctx.arena + a[TILEC_ACC_LOGITS]);
  int *out = reinterpret_cast<int *>(ctx.arena + a[TILEC_ACC_OUT]);
  int *next = reinterpret_cast<int *>(ctx.arena + a[TILEC_ACC_NEXT]);
  int *next_pos = reinterpret_cast<int *>(ctx.arena + a[TILEC_ACC_NEXT_POS]);
  const float temp = __int_as_float(sampling[0]);
  const unsigned seed = unsigned(sampling[1]);
  const bool bad = forced < 0 || forced > T || !(temp >= 0.0f) ||
                   temp == __int_as_float(0x7f800000);
  int accepted = 0, bonus;
  if (bad) {
    if (compute_tid() == 0)
      report_bad_input(ctx);
    bonus = predicted[0];
  } else if (temp == 0.0f) {
    if (forced > 0)
      accepted = forced - 1;
    else
      while (accepted + 1 < T && draft[accepted + 1] == predicted[accepted])
        ++accepted;
    bonus = predicted[accepted];
  } else {
    float *scratch = reinterpret_cast<float *>(ctx.smem);
    float *sums = scratch + kComputeWarps;
    int *result = reinterpret_cast<int *>(sums + kComputeThreads);
    int skip = -1;
    if (forced > 0) {
      accepted = forced - 1;
    } else {
      for (; accepted + 1 < T; ++accepted) {
        const float *row = logits + i64(accepted) * V;
        const float2 st = detail::row_stats<V>(row, temp, scratch);
        const int d = draft[accepted + 1];
        const float p =
            d >= 0 && d < V ? expf(__fdiv_rn(row[d], temp) - st.x) / st.y : 0.0f;
        if (tilec_spec_uniform(seed, pos[0] + accepted + 1, 0) >= p) {
          skip = d >= 0 && d < V ? d : -1;
          break;
        }
      }
    }
    const float *row = logits + i64(accepted) * V;
    const float2 st = detail::row_stats<V>(row, temp, scratch);
    bonus = detail::draw_token<V>(
        row, temp, st, skip, tilec_spec_uniform(seed, pos[0] + accepted + 1, 1),
        sums, result);
  }
  if (compute_tid() != 0)
    return;
  out[0] = accepted + 1;
  for (int j = 1; j <= T; ++j)
    out[j] = j <= accepted ? draft[j] : j == accepted + 1 ? bonus : -1;
  const int start = pos[0] + accepted + 1;
  for (int i = 0; i < T; ++i) {
    next[i] = i == 0 ? bonus : MASK_TOKEN;
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

/// DRAFT_FILL: out = block with slot INDEX (1 .. T-1) replaced by
/// drafted[INDEX]; an INDEX outside that range copies the block unchanged.
template <int T>
__device__ __noinline__ void draft_fill_task(const TilecTask &task,
                                             const Ctx &ctx) {
  static_assert(T >= 1 && T <= 16, "DRAFT_FILL: 1 to 16 tokens");
  if (ctx.prefetch)
    return;
  const int i = compute_tid();
  if (i >= T)
    return;
  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const int *block =
      reinterpret_cast<const int *>(ctx.arena + a[TILEC_FILL_BLOCK]);
  const int *drafted =
      reinterpret_cast<const int *>(ctx.arena + a[TILEC_FILL_DRAFTED]);
  int *out = reinterpret_cast<int *>(ctx.arena + a[TILEC_FILL_OUT]);
  const i64 index = a[TILEC_FILL_INDEX];
  out[i] = i == index && index >= 1 ? drafted[i] : block[i];
}

} // namespace tilec
