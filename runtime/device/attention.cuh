//===- attention.cuh - ATTENTION: a kv head's queries over the cache ------===//
//
// One task = query rows [ROW0, ROW1) of kv head g's G x T (G = q_heads /
// kv_heads query heads for all T tokens; row r = token r / G, head g*G + r % G)
// over the cached keys. Keys and values stream through
// shared memory in tiles of 32 positions (cp.async, double-buffered); each
// warp owns blocks of R query rows, one key per lane for the scores, one slice
// of the value dims per lane for the output, with an online softmax (the sink
// logit, if any, starts each row's running max and sum). Query rows that do
// not fit in shared memory at once run in passes over the keys.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/device/common.cuh"

namespace tilec {
namespace detail {

__device__ __forceinline__ void cp_async16(void *smem_dst, const void *src) {
  const u32 dst = u32(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/// Query rows per warp block: the largest of 4, 2, 1 that keeps 70% of the
/// compute warps busy.
__host__ __device__ constexpr bool rows_balanced(int qr, int r, int warps) {
  return 10 * cdiv(qr, r) >= 7 * cdiv(cdiv(qr, r), warps) * warps;
}
__host__ __device__ constexpr int attention_rows(int qr, int warps) {
  return rows_balanced(qr, 4, warps) ? 4 : rows_balanced(qr, 2, warps) ? 2 : 1;
}

} // namespace detail

/// ATTENTION (docs/engine.md): out[t, h, :] for the query heads h of kv head
/// KV_HEAD, over keys max(0, p - WINDOW + 1) .. p (p = positions[t]), slot
/// j % CAPACITY of the caches; SINKS adds a per-head sink logit to the
/// softmax. MASK 1 (bidirectional, the drafter's block appended to the cache):
/// keys up to the block's last position instead of p, and below p + WINDOW.
/// ROWS: the most query rows of one task.
template <int T, int Q_HEADS, int KV_HEADS, int HEAD_DIM, int V_DIM, int WINDOW,
          int CAPACITY, int SINKS, int MASK, int ROWS>
__device__ __noinline__ void attention_task(const TilecTask &task,
                                            const Ctx &ctx) {
  static_assert(T >= 1 && T <= 16, "ATTENTION: 1 to 16 tokens");
  static_assert(KV_HEADS >= 1 && Q_HEADS % KV_HEADS == 0,
                "ATTENTION: q_heads must be a multiple of kv_heads");
  static_assert(HEAD_DIM % 8 == 0, "ATTENTION: head_dim a multiple of 8");
  static_assert(V_DIM % 8 == 0, "ATTENTION: v_dim a multiple of 8");
  static_assert(CAPACITY >= 1 && WINDOW >= 0, "ATTENTION: bad cache");
  static_assert(MASK == 0 || MASK == 1, "ATTENTION: mask 0 (causal) or 1");
  static_assert(ROWS >= 1 && ROWS <= T * (Q_HEADS / KV_HEADS),
                "ATTENTION: rows per task between 1 and G x T");
  if (ctx.prefetch)
    return; // no weights but the sinks; the cache is read once

  constexpr int D = HEAD_DIM, DV = V_DIM, G = Q_HEADS / KV_HEADS, QR = ROWS;
  constexpr int KT = 32;            // keys per tile: one per lane
  constexpr int DVL = cdiv(DV, 32); // value dims per lane (v_dim < 32: some
                                    // lanes idle)
  constexpr bool kPairs = DV % 64 == 0;
  constexpr int R = detail::attention_rows(QR, kComputeWarps);
  constexpr int DP = D + ((D / 8) % 2 == 0 ? 8 : 16); // odd 16-byte units
  constexpr int kKTile = KT * DP * 2, kVTile = KT * DV * 2;
  constexpr int kBuf = kKTile + kVTile;
  constexpr int kPOff = 2 * kBuf;
  constexpr int kPBytes = kComputeWarps * R * KT * 4;
  constexpr int kRangeOff = kPOff + kPBytes;
  constexpr int kRowBytes = D * 4 + 16; // q row (f32) + its range and state
  constexpr int kFit = (kSmemBytes - kRangeOff) / kRowBytes / R * R;
  constexpr int kQRows = cmin(cdiv(QR, R) * R, kFit); // rows per pass
  static_assert(kFit >= R, "ATTENTION: head_dim too large for shared memory");
  constexpr int kQOff = kRangeOff + kQRows * 16;
  constexpr int RB = kQRows / R;              // row blocks per pass
  constexpr int NB = cdiv(RB, kComputeWarps); // blocks per warp

  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const int g = int(a[TILEC_ATT_KV_HEAD]);
  const int row0 = int(a[TILEC_ATT_ROW0]);
  const int row1 = cmin(int(a[TILEC_ATT_ROW1]), cmin(row0 + QR, G * T));
  const int *pos = reinterpret_cast<const int *>(ctx.arena + a[TILEC_ATT_POS]);
  const u8 *q = ctx.arena + a[TILEC_ATT_Q];
  const u8 *kc = ctx.kv + a[TILEC_ATT_KCACHE];
  const u8 *vc = ctx.kv + a[TILEC_ATT_VCACHE];
  u16 *out = reinterpret_cast<u16 *>(ctx.arena + a[TILEC_ATT_OUT]);
  const u16 *sinks =
      SINKS ? reinterpret_cast<const u16 *>(ctx.weights + a[TILEC_ATT_SINKS])
            : nullptr;
  const float scale = __uint_as_float(u32(a[TILEC_ATT_SCALE]));
  const float vscale = __uint_as_float(u32(a[TILEC_ATT_VSCALE]));
  // The last key a query at position p sees.
  const int block_last = pos[T - 1];
  auto key_hi = [&](int p) {
    if (MASK == 0)
      return p;
    return WINDOW ? cmin(block_last, p + WINDOW - 1) : block_last;
  };

  const int tid = compute_tid(), warp = compute_warp(), lane = lane_id();
  float *qs = reinterpret_cast<float *>(ctx.smem + kQOff);
  // Per query row: its key range [x, y], running max z and sum w (f32 bits).
  int4 *row_state = reinterpret_cast<int4 *>(ctx.smem + kRangeOff);
  float *ps = reinterpret_cast<float *>(ctx.smem + kPOff) + warp * R * KT;

  for (int p0 = row0; p0 < row1; p0 += kQRows) {
    const int rows = cmin(kQRows, row1 - p0);
    // Query rows as f32, with their key ranges.
    for (int idx = tid; idx < rows * (D / 8); idx += kComputeThreads) {
      const int r = idx / (D / 8), u = idx - r * (D / 8), gr = p0 + r;
      const int t = gr / G, h = g * G + gr % G;
      float f[8];
      bf16x8_to_f32(ld_act16(q + ((i64(t) * Q_HEADS + h) * D + u * 8) * 2), f);
      float4 *dst = reinterpret_cast<float4 *>(qs + r * D + u * 8);
      dst[0] = make_float4(f[0], f[1], f[2], f[3]);
      dst[1] = make_float4(f[4], f[5], f[6], f[7]);
    }
    for (int r = tid; r < kQRows; r += kComputeThreads) {
      const float kNegInf = -__int_as_float(0x7f800000);
      if (r < rows) {
        const int p = pos[(p0 + r) / G];
        // The sink logit starts the running max with probability mass 1.
        const float sink =
            SINKS ? bf16_to_f32(ld_weight(sinks + g * G + (p0 + r) % G))
                  : kNegInf;
        row_state[r] = make_int4(WINDOW ? cmax(0, p - WINDOW + 1) : 0,
                                 key_hi(p), __float_as_int(sink),
                                 __float_as_int(SINKS ? 1.0f : 0.0f));
      } else {
        row_state[r] = make_int4(1, 0, __float_as_int(kNegInf), 0); // empty
      }
    }
    // Keys of the pass: the union of its rows' ranges.
    int jlo = 0x7fffffff, jhi = -1;
    for (int t = p0 / G; t <= (p0 + rows - 1) / G; ++t) {
      const int p = pos[t];
      jlo = cmin(jlo, WINDOW ? cmax(0, p - WINDOW + 1) : 0);
      jhi = cmax(jhi, key_hi(p));
    }
    const int tiles = jhi >= jlo ? (jhi - jlo) / KT + 1 : 0;

    float o[NB][R][DVL];
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int i = 0; i < R; ++i)
#pragma unroll
        for (int c = 0; c < DVL; ++c)
          o[b][i][c] = 0.0f;

    // Tile `it` of keys into buffer it & 1 (zeros past jhi).
    auto stage = [&](int it) {
      u8 *kb = ctx.smem + (it & 1) * kBuf;
      u8 *vb = kb + kKTile;
      const int j0 = jlo + it * KT;
      constexpr int kKUnits = KT * (D / 8), kVUnits = KT * (DV / 8);
      for (int idx = tid; idx < kKUnits + kVUnits; idx += kComputeThreads) {
        if (idx < kKUnits) {
          const int jj = idx / (D / 8), u = idx - jj * (D / 8), j = j0 + jj;
          u8 *dst = kb + (jj * DP + u * 8) * 2;
          if (j <= jhi)
            detail::cp_async16(
                dst, kc + ((i64(j % CAPACITY) * KV_HEADS + g) * D + u * 8) * 2);
          else
            *reinterpret_cast<uint4 *>(dst) = make_uint4(0, 0, 0, 0);
        } else {
          const int v = idx - kKUnits;
          const int jj = v / (DV / 8), u = v - jj * (DV / 8), j = j0 + jj;
          u8 *dst = vb + (jj * DV + u * 8) * 2;
          if (j <= jhi)
            detail::cp_async16(
                dst,
                vc + ((i64(j % CAPACITY) * KV_HEADS + g) * DV + u * 8) * 2);
          else
            *reinterpret_cast<uint4 *>(dst) = make_uint4(0, 0, 0, 0);
        }
      }
      detail::cp_async_commit();
    };

    compute_sync(); // q rows and ranges staged
    if (tiles > 0)
      stage(0);
    for (int it = 0; it < tiles; ++it) {
      if (it + 1 < tiles) {
        stage(it + 1);
        detail::cp_async_wait<1>();
      } else {
        detail::cp_async_wait<0>();
      }
      compute_sync();
      const u8 *kb = ctx.smem + (it & 1) * kBuf;
      const u8 *vb = kb + kKTile;
      const int j0 = jlo + it * KT, j = j0 + lane;
#pragma unroll
      for (int b = 0; b < NB; ++b) {
        const int rb = warp + b * kComputeWarps;
        if (rb >= RB)
          break;
        bool any = false;
#pragma unroll
        for (int i = 0; i < R; ++i) {
          const int4 st = row_state[rb * R + i];
          any |= st.x <= st.y && st.x < j0 + KT && st.y >= j0;
        }
        if (!any)
          continue;
        // Scores of this lane's key for the block's rows.
        float s[R];
#pragma unroll
        for (int i = 0; i < R; ++i)
          s[i] = 0.0f;
        const u8 *krow = kb + lane * DP * 2;
#pragma unroll 2
        for (int dc = 0; dc < D / 8; ++dc) {
          float kf[8];
          bf16x8_to_f32(*reinterpret_cast<const uint4 *>(krow + dc * 16), kf);
#pragma unroll
          for (int i = 0; i < R; ++i) {
            const float4 *qv = reinterpret_cast<const float4 *>(
                qs + (rb * R + i) * D + dc * 8);
            const float4 q0 = qv[0], q1 = qv[1];
            s[i] = fmaf(q0.x, kf[0], s[i]);
            s[i] = fmaf(q0.y, kf[1], s[i]);
            s[i] = fmaf(q0.z, kf[2], s[i]);
            s[i] = fmaf(q0.w, kf[3], s[i]);
            s[i] = fmaf(q1.x, kf[4], s[i]);
            s[i] = fmaf(q1.y, kf[5], s[i]);
            s[i] = fmaf(q1.z, kf[6], s[i]);
            s[i] = fmaf(q1.w, kf[7], s[i]);
          }
        }
        // Online softmax.
#pragma unroll
        for (int i = 0; i < R; ++i) {
          const int4 st = row_state[rb * R + i];
          const float m = __int_as_float(st.z);
          const bool valid = j >= st.x && j <= st.y;
          const float sv =
              valid ? __fmul_rn(s[i], scale) : -__int_as_float(0x7f800000);
          const float mn = fmaxf(m, warp_max(sv));
          float p = 0.0f, corr = 1.0f;
          if (mn != -__int_as_float(0x7f800000)) {
            corr = xm::exp(m - mn);
            p = valid ? xm::exp(sv - mn) : 0.0f;
          }
          const float sum = warp_sum(p);
          __syncwarp(); // every lane has read the row's state
          if (lane == 0) {
            row_state[rb * R + i].z = __float_as_int(mn);
            row_state[rb * R + i].w =
                __float_as_int(fmaf(__int_as_float(st.w), corr, sum));
          }
          __syncwarp(); // the other lanes read the row's state next
#pragma unroll
          for (int c = 0; c < DVL; ++c)
            o[b][i][c] *= corr;
          ps[i * KT + lane] = p;
        }
        __syncwarp();
        // o += p . V over the tile's keys.
#pragma unroll 1
        for (int jj = 0; jj < KT; jj += 4) {
          float4 pj[R];
#pragma unroll
          for (int i = 0; i < R; ++i)
            pj[i] = *reinterpret_cast<const float4 *>(ps + i * KT + jj);
#pragma unroll
          for (int q4 = 0; q4 < 4; ++q4) {
            const u16 *vrow =
                reinterpret_cast<const u16 *>(vb) + (jj + q4) * DV;
            float vv[DVL];
            if constexpr (kPairs) {
#pragma unroll
              for (int c = 0; c < DVL / 2; ++c) {
                const u32 w2 =
                    *reinterpret_cast<const u32 *>(vrow + c * 64 + lane * 2);
                vv[2 * c] = bf16_lo(w2);
                vv[2 * c + 1] = bf16_hi(w2);
              }
            } else {
#pragma unroll
              for (int c = 0; c < DVL; ++c)
                vv[c] = c * 32 + lane < DV ? bf16_to_f32(vrow[c * 32 + lane])
                                           : 0.0f;
            }
#pragma unroll
            for (int i = 0; i < R; ++i) {
              const float pv = q4 == 0   ? pj[i].x
                               : q4 == 1 ? pj[i].y
                               : q4 == 2 ? pj[i].z
                                         : pj[i].w;
#pragma unroll
              for (int c = 0; c < DVL; ++c)
                o[b][i][c] = fmaf(pv, vv[c], o[b][i][c]);
            }
          }
        }
        __syncwarp();
      }
      compute_sync(); // the buffer is restaged two tiles later
    }

    // out = o / l * vscale.
#pragma unroll
    for (int b = 0; b < NB; ++b) {
#pragma unroll
      for (int i = 0; i < R; ++i) {
        const int r = (warp + b * kComputeWarps) * R + i;
        if (warp + b * kComputeWarps >= RB || r >= rows)
          continue;
        const int gr = p0 + r, t = gr / G, h = g * G + gr % G;
        u16 *orow = out + (i64(t) * Q_HEADS + h) * DV;
        const float l = __int_as_float(row_state[r].w);
        const float norm = l > 0.0f ? l : 1.0f;
        if constexpr (kPairs) {
#pragma unroll
          for (int c = 0; c < DVL / 2; ++c)
            *reinterpret_cast<u32 *>(orow + c * 64 + lane * 2) = pack_bf16x2(
                __fmul_rn(__fdiv_rn(o[b][i][2 * c], norm), vscale),
                __fmul_rn(__fdiv_rn(o[b][i][2 * c + 1], norm), vscale));
        } else {
#pragma unroll
          for (int c = 0; c < DVL; ++c)
            if (c * 32 + lane < DV)
              orow[c * 32 + lane] =
                  f32_to_bf16(__fmul_rn(__fdiv_rn(o[b][i][c], norm), vscale));
        }
      }
    }
    if (p0 + kQRows < row1)
      compute_sync(); // q rows and ranges are restaged
  }
}

} // namespace tilec
