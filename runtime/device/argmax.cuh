//===- argmax.cuh - ARGMAX_REDUCE: the token ids of the largest logits ----===//
#pragma once

#include "runtime/device/linear.cuh"

namespace tilec {

/// ARGMAX_REDUCE: out[t] = the index held by the largest partial[t, i] over
/// i < TILES (ties: the smaller index), partials being LINEAR ARGMAX's (f32
/// max, int32 index) pairs.
template <int T, int TILES>
__device__ __noinline__ void argmax_reduce_task(const TilecTask &task,
                                                const Ctx &ctx) {
  static_assert(T >= 1 && TILES >= 1, "ARGMAX_REDUCE: bad sizes");
  if (ctx.prefetch)
    return;
  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const int2 *partial =
      reinterpret_cast<const int2 *>(ctx.arena + a[TILEC_AMX_PARTIAL]);
  int *out = reinterpret_cast<int *>(ctx.arena + a[TILEC_AMX_OUT]);
  for (int t = compute_warp(); t < T; t += kComputeWarps) {
    float bv = 0.0f;
    int bi = -1;
    for (int i = lane_id(); i < TILES; i += 32) {
      const int2 p = partial[t * TILES + i];
      const float v = __int_as_float(p.x);
      if (detail::argmax_better(v, p.y, bv, bi))
        bv = v, bi = p.y;
    }
    detail::warp_argmax(bv, bi);
    if (lane_id() == 0)
      out[t] = bi;
  }
}

} // namespace tilec
