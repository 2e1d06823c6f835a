//===- silu_mul.cuh - SILU_MUL: silu(gate) * up of an unfused dense MLP ---===//
//
// What the SILU_PAIR epilogue of LINEAR does inside the gate/up task, as a
// task of its own: an engine compiled with tile-fuse{disable=silu-pair} runs
// gate and up as two linears (each storing bf16) and this elementwise task
// after both. SiLU is tilec::xm::silu (ExactMath.h), the host executor's.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/device/linear.cuh"

namespace tilec {

/// SILU_MUL: out[t, n] = bf16(silu(gate[t, n]) * up[t, n]) for n in [N0, N1).
template <int T, int N>
__device__ __noinline__ void silu_mul_task(const TilecTask &task,
                                           const Ctx &ctx) {
  static_assert(T >= 1 && N >= 1, "SILU_MUL: bad sizes");
  if (ctx.prefetch)
    return; // no weights
  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const u16 *gate =
      reinterpret_cast<const u16 *>(ctx.arena + a[TILEC_SILU_GATE]);
  const u16 *up = reinterpret_cast<const u16 *>(ctx.arena + a[TILEC_SILU_UP]);
  u16 *out = reinterpret_cast<u16 *>(ctx.arena + a[TILEC_SILU_OUT]);
  const int n0 = int(a[TILEC_SILU_N0]), n1 = cmin(int(a[TILEC_SILU_N1]), N);
  const int cols = n1 - n0;
  if (cols <= 0)
    return;
  if (N % 8 == 0 && n0 % 8 == 0 && cols % 8 == 0) {
    // 16-byte vectors: eight bf16 of gate, up and out at a time.
    const int units = cols / 8;
    for (int idx = compute_tid(); idx < T * units; idx += kComputeThreads) {
      const int t = idx / units, n = n0 + 8 * (idx - t * units);
      const i64 at = i64(t) * N + n;
      float g[8], u[8];
      bf16x8_to_f32(ld_act16(gate + at), g);
      bf16x8_to_f32(ld_act16(up + at), u);
      uint4 o;
      o.x = pack_bf16x2(detail::silu_mul(g[0], u[0]),
                        detail::silu_mul(g[1], u[1]));
      o.y = pack_bf16x2(detail::silu_mul(g[2], u[2]),
                        detail::silu_mul(g[3], u[3]));
      o.z = pack_bf16x2(detail::silu_mul(g[4], u[4]),
                        detail::silu_mul(g[5], u[5]));
      o.w = pack_bf16x2(detail::silu_mul(g[6], u[6]),
                        detail::silu_mul(g[7], u[7]));
      *reinterpret_cast<uint4 *>(out + at) = o;
    }
  } else {
    for (int idx = compute_tid(); idx < T * cols; idx += kComputeThreads) {
      const int t = idx / cols, n = n0 + (idx - t * cols);
      const i64 at = i64(t) * N + n;
      out[at] = f32_to_bf16(
          detail::silu_mul(bf16_to_f32(gate[at]), bf16_to_f32(up[at])));
    }
  }
}

} // namespace tilec
