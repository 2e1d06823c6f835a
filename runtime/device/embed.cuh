//===- embed.cuh - EMBED: token embedding rows, scaled, to bf16 -----------===//
#pragma once

#include "runtime/device/common.cuh"

namespace tilec {

/// EMBED: out[t, c] = bf16(table[ids[t], c] * scale) for c in [COL0, COL1); an
/// id outside [0, V) flags bad input (report flag 2) and writes zeros.
template <int T, int H, int V>
__device__ __noinline__ void embed_task(const TilecTask &task, const Ctx &ctx) {
  static_assert(T >= 1 && H >= 1 && V >= 1, "EMBED: bad sizes");
  if (ctx.prefetch)
    return; // the rows depend on the ids
  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const int *ids =
      reinterpret_cast<const int *>(ctx.arena + a[TILEC_EMBED_IDS]);
  const u8 *table = ctx.weights + a[TILEC_EMBED_TABLE];
  u16 *out = reinterpret_cast<u16 *>(ctx.arena + a[TILEC_EMBED_OUT]);
  const int c0 = int(a[TILEC_EMBED_COL0]),
            c1 = cmin(int(a[TILEC_EMBED_COL1]), H);
  const float scale = __uint_as_float(u32(a[TILEC_EMBED_SCALE]));
  const int tid = compute_tid(), cols = c1 - c0;
  if (tid < T && (ids[tid] < 0 || ids[tid] >= V))
    report_bad_input(ctx);
  if (cols <= 0)
    return;
  if (H % 8 == 0 && c0 % 8 == 0 && cols % 8 == 0) {
    const int units = cols / 8;
    for (int idx = tid; idx < T * units; idx += kComputeThreads) {
      const int t = idx / units, c = c0 + 8 * (idx - t * units);
      const int id = ids[t];
      uint4 o = make_uint4(0, 0, 0, 0);
      if (id >= 0 && id < V) {
        float f[8];
        bf16x8_to_f32(ld_weight16(table + (i64(id) * H + c) * 2), f);
        o.x = pack_bf16x2(__fmul_rn(f[0], scale), __fmul_rn(f[1], scale));
        o.y = pack_bf16x2(__fmul_rn(f[2], scale), __fmul_rn(f[3], scale));
        o.z = pack_bf16x2(__fmul_rn(f[4], scale), __fmul_rn(f[5], scale));
        o.w = pack_bf16x2(__fmul_rn(f[6], scale), __fmul_rn(f[7], scale));
      }
      *reinterpret_cast<uint4 *>(out + i64(t) * H + c) = o;
    }
  } else {
    const u16 *rows = reinterpret_cast<const u16 *>(table);
    for (int idx = tid; idx < T * cols; idx += kComputeThreads) {
      const int t = idx / cols, c = c0 + (idx - t * cols);
      const int id = ids[t];
      out[i64(t) * H + c] =
          id >= 0 && id < V
              ? f32_to_bf16(__fmul_rn(
                    bf16_to_f32(ld_weight(rows + i64(id) * H + c)), scale))
              : u16(0);
    }
  }
}

} // namespace tilec
