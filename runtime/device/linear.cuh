//===- linear.cuh - LINEAR: skinny GEMM of T tokens, prologues, epilogues -===//
//
// `detail::Gemv` is the core LINEAR and the MoE bodies share: y[t, i] =
// x'[t, :] . W[row0 + i, :] for the task's rows i < nrows, all T tokens at
// once, so each weight byte is read once per task. Warps own groups of R rows
// (and a slice of K when that balances the warps better); each lane reads one
// 16-byte vector of each row per step (8 bf16, 16 E4M3 or 32 E2M1 = one MXFP4
// block), the next step's vectors already in flight. x sits in shared memory as
// bf16 (swizzled against bank conflicts) when it fits, else it is read from
// global memory; RMSNORM multiplies by the norm weight on the fly and by
// 1/rms at the end. Partial sums meet in shared memory, where the family's
// epilogue reads them. From TILEC_GEMV_MMA_MIN_T tokens (8), when x fits in
// shared memory as bf16 fragments, the products run on the tensor cores
// instead (mma.sync m16n8k16, f32 sums): weights decoded to bf16 exactly in
// registers, x (times the norm weight, as an exact hi + lo pair) staged in
// the k order of the decoded registers; bench/gpu/gemv_bench.cu measures both
// paths and checks one against the other.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/device/common.cuh"

/// Gemv keeps the next step's weight vectors in registers (double buffering)
/// while at most this many accumulators (rows x tokens) are live.
#ifndef TILEC_GEMV_DOUBLE_BUFFER_MAX
#define TILEC_GEMV_DOUBLE_BUFFER_MAX 16
#endif

/// Gemv multiplies on the tensor cores (mma.sync m16n8k16, bf16 in, f32 out)
/// from this many tokens on; below it, on the FMA pipes. `tile-run
/// --define TILEC_GEMV_MMA_MIN_T=17` turns the tensor-core path off.
#ifndef TILEC_GEMV_MMA_MIN_T
#define TILEC_GEMV_MMA_MIN_T 8
#endif

namespace tilec {
namespace detail {

/// A weight format's 16-byte vectors.
template <int FORMAT> struct VecFormat;

template <> struct VecFormat<TILEC_FMT_BF16> {
  static constexpr int kElems = 8;
  static constexpr bool kScaled = false;
  template <int SUB>
  __device__ __forceinline__ static void decode(const uint4 &v, float (&w)[8]) {
    bf16x8_to_f32(v, w);
  }
};

template <> struct VecFormat<TILEC_FMT_FP8> {
  static constexpr int kElems = 16;
  static constexpr bool kScaled = true;
  template <int SUB>
  __device__ __forceinline__ static void decode(const uint4 &v, float (&w)[8]) {
    if constexpr (SUB == 0)
      e4m3x8_to_f32(v.x, v.y, w);
    else
      e4m3x8_to_f32(v.z, v.w, w);
  }
};

template <> struct VecFormat<TILEC_FMT_MXFP4> {
  static constexpr int kElems = 32;
  static constexpr bool kScaled = true;
  template <int SUB>
  __device__ __forceinline__ static void decode(const uint4 &v, float (&w)[8]) {
    e2m1x8_to_f32(SUB == 0 ? v.x : SUB == 1 ? v.y : SUB == 2 ? v.z : v.w, w);
  }
};

/// Bytes of one [rows, cols] matrix and of its scales, per format.
__host__ __device__ constexpr i64 matrix_bytes(int format, i64 rows, i64 cols) {
  return format == TILEC_FMT_BF16  ? rows * cols * 2
         : format == TILEC_FMT_FP8 ? rows * cols
                                   : rows * cols / 2;
}
__host__ __device__ constexpr i64 scale_bytes(int format, i64 rows, i64 cols) {
  return format == TILEC_FMT_BF16  ? 0
         : format == TILEC_FMT_FP8 ? cdiv64(rows, 128) * cdiv64(cols, 128) * 4
                                   : rows * cols / 32;
}

/// One weight matrix as a task sees it: task row i is matrix row row0 + i.
struct WeightMatrix {
  const u8 *data;   // the matrix's first byte
  const u8 *scales; // its scales (FP8: f32 [rows/128, K/128]; MXFP4: E8M0)
  i64 row0;
};

/// The number of K slices that balances kGroups x slices units over the
/// compute warps best (ties: fewer slices), a more even split having to gain
/// 5%.
__host__ __device__ constexpr int pick_split(int groups, int chunks, int warps,
                                             int max_split) {
  int best = 1;
  i64 best_num = 0, best_den = 1;
  for (int ks = 1; ks <= chunks && ks <= max_split; ++ks) {
    const int per = cdiv(chunks, ks);
    if (cdiv(chunks, per) != ks)
      continue;
    const i64 num = i64(groups) * chunks;
    const i64 den = i64(cdiv(groups * ks, warps)) * warps * per;
    if (num * best_den * 100 > best_num * den * 105 || best_num == 0) {
      best = ks;
      best_num = num;
      best_den = den;
    }
  }
  return best;
}

/// 16-byte unit u of a token row in shared memory (conflict-free reads for
/// every format's lane-to-unit pattern).
__device__ __forceinline__ int x_swizzle(int u) { return u ^ ((u >> 3) & 3); }

/// Shared memory before the staged x: partial sums (red_bytes), then the
/// small tables (see Gemv).
__host__ __device__ constexpr int gemv_x_offset(int red_bytes, int warps,
                                                int tokens) {
  return (red_bytes + 15) / 16 * 16 + 64 + 64 + 16 +
         (warps * tokens * 4 + 15) / 16 * 16 + 128 * 4 + 128 * 4;
}

template <int T, int K, int FORMAT, int TILE, int MATS, bool RMS, bool ROUTED,
          int MMA_MIN_T = TILEC_GEMV_MMA_MIN_T>
struct Gemv {
  using F = VecFormat<FORMAT>;
  static_assert(T >= 1 && T <= 16, "1 to 16 tokens");
  static_assert(K % 32 == 0, "K must be a multiple of 32");
  static_assert(TILE >= 1, "tile of at least one row");
  static_assert(MATS == 1 || MATS == 2, "one matrix or a gate/up pair");

  static constexpr int kElems = F::kElems;
  static constexpr int kSubs = kElems / 8; // 8-element units per vector
  static constexpr int kUnits = K / 8;     // 8-element units per row
  static constexpr int kVecs = K / kElems;
  static constexpr int kChunks = cdiv(kVecs, 32);
  static constexpr i64 kRowBytes = i64(K) * 16 / kElems;
  static constexpr int kScaleCols = cdiv(K, 128); // FP8
  /// Rows per warp step: at most 4 weight rows in flight per lane, PR x T
  /// accumulators at most 32.
  static constexpr int R = cmax(1, cmin(4 / MATS, 32 / (MATS * T)));
  static constexpr int PR = R * MATS;
  static constexpr int kGroups = cdiv(TILE, R);
  static constexpr int kMaxSplit =
      cmax(1, kSmemBytes / 4 / (MATS * TILE * T * 4));

  // The tensor-core path: a warp unit is kMT tiles of 16 rows per matrix;
  // lane (g, c) = (lane / 4, lane % 4) reads rows g and g + 8 of each tile, one
  // 16-byte vector per step at column vector c of the step's chunk of kCK
  // columns. Any order of k inside an MMA is a valid dot product, so x is
  // staged in the order the decoded weight registers come in (stage_mma).
  // With RMSNORM, x times the norm weight (exact in f32: two bf16) is staged as
  // hi + lo, two bf16 that sum to it exactly, and each step runs both MMAs: the
  // sums are the FMA path's up to their order.
  static constexpr int kNT = cdiv(T, 8);   // n-tiles of 8 tokens
  static constexpr int kMT = 2 / MATS;     // 16-row tiles per matrix
  static constexpr int kPT = kMT * MATS;   // tiles per warp unit
  static constexpr int kCK = 4 * kElems;   // columns per step
  static constexpr int kMChunks = K / kCK; // steps per row
  static constexpr int kMGroups = cdiv(TILE, 16 * kMT);
  static constexpr int kMXBytes = kMChunks * kNT * kSubs * 32 * 16;
  static constexpr int kMParts = RMS ? 2 : 1; // hi (+ lo)
  /// K slices whose partial sums fit next to the staged x.
  static constexpr int kMMaxSplit =
      (kSmemBytes - gemv_x_offset(0, kComputeWarps, T) - kMParts * kMXBytes -
       16) /
      (MATS * TILE * T * 4);
  static constexpr int kMSplit =
      pick_split(kMGroups, cmax(1, kMChunks), kComputeWarps,
                 cmax(1, cmin(kMaxSplit, kMMaxSplit)));
  static constexpr bool kMma =
      T >= MMA_MIN_T && K % kCK == 0 &&
      gemv_x_offset(kMSplit * MATS * TILE * T * 4, kComputeWarps, T) +
              kMParts * kMXBytes <=
          kSmemBytes;

  static constexpr int KS =
      kMma ? kMSplit : pick_split(kGroups, kChunks, kComputeWarps, kMaxSplit);
  static constexpr int kChunksPerSplit = cdiv(kChunks, KS);
  static constexpr int kMChunksPerSplit = cdiv(kMChunks, KS);
  /// With few accumulators the next step's vectors also stay in registers.
  static constexpr bool kDoubleBuffer = PR * T <= TILEC_GEMV_DOUBLE_BUFFER_MAX;
  /// The lanes ask L2 for their rows kAhead steps ahead (and for the first
  /// steps of the warp's next unit), which costs no registers.
  static constexpr int kAhead = 4;
  /// The norm weight multiplies the side with fewer values per vector.
  static constexpr bool kNormOnW = PR <= T;

  // Shared memory: partial sums, small tables, then x and the norm weight.
  static constexpr int kRedBytes = KS * MATS * TILE * T * 4;
  static constexpr int kInvOff = (kRedBytes + 15) / 16 * 16; // f32 [16]
  static constexpr int kTokOff = kInvOff + 64;               // int [16]
  static constexpr int kCountOff = kTokOff + 64;             // int
  static constexpr int kPartOff = kCountOff + 16;            // f32 [warps][T]
  static constexpr int kFreqOff =
      kPartOff + (kComputeWarps * T * 4 + 15) / 16 * 16; // f32 [128]
  static constexpr int kMaxFreqs = 128;
  static constexpr int kHeadInvOff = kFreqOff + kMaxFreqs * 4; // f32 [128]
  static constexpr int kMaxHeadRows = 128;
  static constexpr int kXOff = kHeadInvOff + kMaxHeadRows * 4;
  static_assert(kXOff == gemv_x_offset(kRedBytes, kComputeWarps, T),
                "Gemv: gemv_x_offset disagrees with the layout");
  static constexpr int kXBytes = T * K * 2;
  static constexpr int kNormOff = kXOff + kXBytes;
  static constexpr int kNormBytes = RMS ? K * 2 : 0;
  static constexpr bool kStaged = !kMma && kNormOff + kNormBytes <= kSmemBytes;
  static_assert(kXOff <= kSmemBytes,
                "LINEAR: the tile's partial sums do not fit in shared memory "
                "(smaller tile)");

  __device__ __forceinline__ static float *red(const Ctx &c) {
    return reinterpret_cast<float *>(c.smem);
  }
  __device__ __forceinline__ static float *inv(const Ctx &c) {
    return reinterpret_cast<float *>(c.smem + kInvOff);
  }
  __device__ __forceinline__ static int *tok(const Ctx &c) {
    return reinterpret_cast<int *>(c.smem + kTokOff);
  }
  /// Active tokens (ROUTED); T otherwise.
  __device__ __forceinline__ static int count(const Ctx &c) {
    return ROUTED ? *reinterpret_cast<volatile int *>(c.smem + kCountOff) : T;
  }
  /// Token of compact index t.
  __device__ __forceinline__ static int token(const Ctx &c, int t) {
    return ROUTED ? tok(c)[t] : t;
  }
  /// Free f32 [128] for epilogue tables (RoPE frequencies), kept by run().
  __device__ __forceinline__ static float *freq(const Ctx &c) {
    return reinterpret_cast<float *>(c.smem + kFreqOff);
  }

  /// Free f32 [128] for per-(token, head) tables (head-norm inverse RMS).
  __device__ __forceinline__ static float *head_inv(const Ctx &c) {
    return reinterpret_cast<float *>(c.smem + kHeadInvOff);
  }

  /// The result for compact token t, matrix m, task row i (after run()).
  __device__ __forceinline__ static float y(const Ctx &c, int t, int m, int i) {
    const float *r = red(c) + (m * TILE + i) * T + t;
    float s = r[0];
#pragma unroll
    for (int ks = 1; ks < KS; ++ks)
      s += r[ks * MATS * TILE * T];
    if constexpr (RMS)
      s *= inv(c)[t];
    return s;
  }

  /// L2 prefetch of the rows' bytes and scales (from the loader warp).
  __device__ static void prefetch(const WeightMatrix (&w)[MATS], int nrows) {
#pragma unroll
    for (int m = 0; m < MATS; ++m) {
      prefetch_l2(w[m].data + w[m].row0 * kRowBytes, nrows * kRowBytes);
      if constexpr (FORMAT == TILEC_FMT_MXFP4)
        prefetch_l2(w[m].scales + w[m].row0 * (K / 32), i64(nrows) * (K / 32));
      if constexpr (FORMAT == TILEC_FMT_FP8) {
        const i64 b0 = w[m].row0 / 128, b1 = (w[m].row0 + nrows - 1) / 128;
        prefetch_l2(w[m].scales + b0 * kScaleCols * 4,
                    (b1 - b0 + 1) * kScaleCols * 4);
      }
    }
  }

  /// Computes every y(t, m, i), i < nrows, for the tokens of x (row t at
  /// x + token * x_stride). ROUTED: token t takes part iff route[t] >= 0. Ends
  /// with compute_sync().
  __device__ static void run(const Ctx &ctx, const WeightMatrix (&w)[MATS],
                             int nrows, const u8 *x, i64 x_stride,
                             const int *route, const u8 *norm_w, float eps) {
    const int tid = compute_tid(), warp = compute_warp(), lane = lane_id();
    nrows = cmin(nrows, TILE);
    if constexpr (ROUTED) {
      if (tid == 0) {
        int n = 0;
        for (int t = 0; t < T; ++t)
          if (route[t] >= 0)
            tok(ctx)[n++] = t;
        *reinterpret_cast<volatile int *>(ctx.smem + kCountOff) = n;
      }
      compute_sync();
    }
    const int ta = count(ctx);
    if constexpr (kMma) {
      stage_mma(ctx, ta, x, x_stride, norm_w, eps);
      run_mma(ctx, w, nrows, ta);
      compute_sync();
      return;
    }

    // x into shared memory (if it fits) and the tokens' sums of squares.
    uint4 *xs = reinterpret_cast<uint4 *>(ctx.smem + kXOff);
    uint4 *ns = reinterpret_cast<uint4 *>(ctx.smem + kNormOff);
    float *part = reinterpret_cast<float *>(ctx.smem + kPartOff);
    if (kStaged || RMS) {
#pragma unroll
      for (int t = 0; t < T; ++t) {
        if (t >= ta)
          break;
        const u8 *src = x + token(ctx, t) * x_stride;
        float ss = 0.0f;
#pragma unroll 4
        for (int u = tid; u < kUnits; u += kComputeThreads) {
          const uint4 v = ld_act16(src + i64(u) * 16);
          if constexpr (kStaged)
            xs[t * kUnits + x_swizzle(u)] = v;
          if constexpr (RMS) {
            float f[8];
            bf16x8_to_f32(v, f);
#pragma unroll
            for (int e = 0; e < 8; ++e)
              ss = fmaf(f[e], f[e], ss);
          }
        }
        if constexpr (RMS) {
          ss = warp_sum(ss);
          if (lane == 0)
            part[warp * T + t] = ss;
        }
      }
      if constexpr (kStaged && RMS)
        for (int u = tid; u < kUnits; u += kComputeThreads)
          ns[x_swizzle(u)] = ld_weight16(norm_w + i64(u) * 16);
      compute_sync();
      if constexpr (RMS)
        rms_inverse(ctx, ta, eps);
    }

    prefetch_unit(w, nrows, warp, lane);
    for (int unit = warp; unit < kGroups * KS; unit += kComputeWarps) {
      const int g = unit / KS, ks = unit - g * KS, i0 = g * R;
      if (i0 >= nrows)
        continue;
      prefetch_unit(w, nrows, unit + kComputeWarps, lane);
      const u8 *rows[PR];
      const u8 *srows[PR];
#pragma unroll
      for (int p = 0; p < PR; ++p) {
        const WeightMatrix &m = w[p / R];
        const i64 row = m.row0 + cmin(i0 + p % R, nrows - 1);
        rows[p] = m.data + row * kRowBytes;
        if constexpr (FORMAT == TILEC_FMT_FP8)
          srows[p] = m.scales + (row / 128) * kScaleCols * 4;
        else if constexpr (FORMAT == TILEC_FMT_MXFP4)
          srows[p] = m.scales + row * (K / 32);
        else
          srows[p] = nullptr;
      }
      float acc[PR][T];
#pragma unroll
      for (int p = 0; p < PR; ++p)
#pragma unroll
        for (int t = 0; t < T; ++t)
          acc[p][t] = 0.0f;

      const int c0 = ks * kChunksPerSplit;
      const int c1 = cmin(c0 + kChunksPerSplit, kChunks);
      uint4 cur[PR];
      float sc[PR];
      if constexpr (kDoubleBuffer) {
        // Few products per vector: keep the next step's vectors in flight.
        load_vectors(rows, srows, c0 * 32 + lane, cur, sc);
        for (int c = c0; c < c1; ++c) {
          uint4 nxt[PR];
          float sn[PR];
          const bool more = c + 1 < c1;
          if (c + kAhead < c1)
            prefetch_vectors(rows, (c + kAhead) * 32 + lane);
          if (more)
            load_vectors(rows, srows, (c + 1) * 32 + lane, nxt, sn);
          const int v = c * 32 + lane;
          if (v < kVecs)
            accumulate(ctx, cur, sc, v, acc, ta, x, x_stride, norm_w);
          if (more) {
#pragma unroll
            for (int p = 0; p < PR; ++p)
              cur[p] = nxt[p], sc[p] = sn[p];
          }
        }
      } else {
        for (int c = c0; c < c1; ++c) {
          const int v = c * 32 + lane;
          if (c + kAhead < c1)
            prefetch_vectors(rows, v + kAhead * 32);
          load_vectors(rows, srows, v, cur, sc);
          if (v < kVecs)
            accumulate(ctx, cur, sc, v, acc, ta, x, x_stride, norm_w);
        }
      }

      // Warp totals into red[ks][m][i][t].
      constexpr int kValues = PR * T;
      using Reduce = WarpReduceScatter<kValues>;
      float flat[kValues];
#pragma unroll
      for (int p = 0; p < PR; ++p)
#pragma unroll
        for (int t = 0; t < T; ++t)
          flat[p * T + t] = acc[p][t];
      const float total = Reduce::run(flat);
      const int idx = lane >> Reduce::kShift;
      if ((lane & Reduce::kLaneMask) == 0 && idx < kValues) {
        const int p = idx / T, t = idx - p * T;
        const int m = p / R, i = i0 + p % R;
        if (i < nrows && t < ta)
          red(ctx)[((ks * MATS + m) * TILE + i) * T + t] = total;
      }
    }
    compute_sync();
  }

private:
  /// inv(t) = 1 / sqrt(mean(x_t^2) + eps) for the active tokens, from the
  /// compute warps' sums of squares in part[warp][t] (after a compute_sync).
  __device__ __forceinline__ static void rms_inverse(const Ctx &ctx, int ta,
                                                     float eps) {
    const int tid = compute_tid();
    if (tid >= ta)
      return;
    const float *part = reinterpret_cast<const float *>(ctx.smem + kPartOff);
    float ss = 0.0f;
    for (int w2 = 0; w2 < kComputeWarps; ++w2)
      ss += part[w2 * T + tid];
    inv(ctx)[tid] =
        __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, float(K)), eps)));
  }

  //===--- Tensor-core path ----------------------------------------------===//

  /// The 8 bf16 of a 16-byte x unit in the order the weight decode pairs
  /// elements: MXFP4 (0,4) (1,5) (2,6) (3,7), FP8 (0,2) (1,3) (4,6) (5,7),
  /// BF16 as stored.
  __device__ __forceinline__ static uint4 mma_order(const uint4 &v) {
    if constexpr (FORMAT == TILEC_FMT_MXFP4)
      return make_uint4(
          __byte_perm(v.x, v.z, 0x5410), __byte_perm(v.x, v.z, 0x7632),
          __byte_perm(v.y, v.w, 0x5410), __byte_perm(v.y, v.w, 0x7632));
    else if constexpr (FORMAT == TILEC_FMT_FP8)
      return make_uint4(
          __byte_perm(v.x, v.y, 0x5410), __byte_perm(v.x, v.y, 0x7632),
          __byte_perm(v.z, v.w, 0x5410), __byte_perm(v.z, v.w, 0x7632));
    else
      return v;
  }

  /// x into shared memory as the MMA's B fragments: slot ((ch * kNT + nt) *
  /// kSubs + i) * 32 + lane holds unit i of lane c = lane % 4's vector of
  /// chunk ch for compact token nt * 8 + lane / 4 (zeros past the active
  /// tokens). RMS: x times the norm weight as hi (there) and lo (kMXBytes
  /// further), 1/rms into inv() for y(). A thread keeps one lane, so its
  /// tokens are fixed and its sums of squares stay in registers.
  __device__ __forceinline__ static void stage_mma(const Ctx &ctx, int ta,
                                                   const u8 *x, i64 x_stride,
                                                   const u8 *norm_w,
                                                   float eps) {
    const int warp = compute_warp(), lane = lane_id();
    const int g = lane >> 2, c = lane & 3;
    uint4 *xs = reinterpret_cast<uint4 *>(ctx.smem + kXOff);
    float ss[kNT];
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
      ss[nt] = 0.0f;
    for (int r = warp; r < kMChunks * kSubs; r += kComputeWarps) {
      const int ch = r / kSubs, i = r - ch * kSubs;
      const int u = (ch * kCK + c * kElems) / 8 + i;
      float nw[8];
      if constexpr (RMS)
        bf16x8_to_f32(ld_weight16(norm_w + i64(u) * 16), nw);
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        const int t = nt * 8 + g,
                  slot = ((ch * kNT + nt) * kSubs + i) * 32 + lane;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (t < ta)
          v = ld_act16(x + token(ctx, t) * x_stride + i64(u) * 16);
        if constexpr (RMS) {
          float f[8];
          u32 hi[4], lo[4];
          bf16x8_to_f32(v, f);
#pragma unroll
          for (int e = 0; e < 8; e += 2) {
            ss[nt] = fmaf(f[e], f[e], ss[nt]);
            ss[nt] = fmaf(f[e + 1], f[e + 1], ss[nt]);
            const float p0 = f[e] * nw[e], p1 = f[e + 1] * nw[e + 1];
            hi[e / 2] = pack_bf16x2(p0, p1);
            lo[e / 2] =
                pack_bf16x2(p0 - bf16_lo(hi[e / 2]), p1 - bf16_hi(hi[e / 2]));
          }
          xs[slot] = mma_order(make_uint4(hi[0], hi[1], hi[2], hi[3]));
          xs[slot + kMXBytes / 16] =
              mma_order(make_uint4(lo[0], lo[1], lo[2], lo[3]));
        } else {
          xs[slot] = mma_order(v);
        }
      }
    }
    if constexpr (RMS) {
      float *part = reinterpret_cast<float *>(ctx.smem + kPartOff);
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        float v = ss[nt];
        v += __shfl_xor_sync(0xffffffffu, v, 1);
        v += __shfl_xor_sync(0xffffffffu, v, 2);
        if (c == 0 && nt * 8 + g < T)
          part[warp * T + nt * 8 + g] = v;
      }
      compute_sync();
      rms_inverse(ctx, ta, eps);
    }
    compute_sync();
  }

  __device__ __forceinline__ static void
  mma_bf16(float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
  __device__ __forceinline__ static u32 mul_bf16x2(u32 a, u32 b) {
    u32 d;
    asm("mul.rn.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
  }

  /// One row's 16-byte vector as bf16 pairs in mma_order's order (MXFP4:
  /// times its block scale, exactly; FP8: exact E4M3 values, the block
  /// scale comes after the MMA). `sc` is the MXFP4 scale code.
  __device__ __forceinline__ static void decode_pairs(const uint4 &v, u32 sc,
                                                      u32 (&q)[kElems / 2]) {
    const u32 w4[4] = {v.x, v.y, v.z, v.w};
    if constexpr (FORMAT == TILEC_FMT_MXFP4) {
      // E2M1 magnitude bits at bf16 bits 8..6 and the sign at 15 make
      // e2m1 * 2^-126 (the subnormal code too); times the bf16 2^(s + 126)
      // that is exact while s + 126 <= 127.
      if (sc <= 128u) {
        const u32 m = ((sc + 126u) << 7) * 0x10001u;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const u32 w = w4[j];
          q[4 * j + 0] = mul_bf16x2(
              ((w << 6) & 0x01c001c0u) | ((w << 12) & 0x80008000u), m);
          q[4 * j + 1] = mul_bf16x2(
              ((w << 2) & 0x01c001c0u) | ((w << 8) & 0x80008000u), m);
          q[4 * j + 2] = mul_bf16x2(
              ((w >> 2) & 0x01c001c0u) | ((w << 4) & 0x80008000u), m);
          q[4 * j + 3] =
              mul_bf16x2(((w >> 6) & 0x01c001c0u) | (w & 0x80008000u), m);
        }
      } else {
        // Scales above 2 (and NaN): through f32.
        const float s = e8m0_unscaled(u8(sc));
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          float f[8];
          e2m1x8_to_f32(w4[j], f);
#pragma unroll
          for (int e = 0; e < 4; ++e)
            q[4 * j + e] = pack_bf16x2(f[e] * s, f[e + 4] * s);
        }
      }
    } else if constexpr (FORMAT == TILEC_FMT_FP8) {
      // E4M3 magnitude bits at bf16 bits 10..4 make e4m3 * 2^-120 (the
      // subnormals too); times 2^120, exact.
      const u32 m = 0x7b807b80u;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const u32 w = w4[j];
        q[2 * j + 0] =
            mul_bf16x2(((w << 4) & 0x07f007f0u) | ((w << 8) & 0x80008000u), m);
        q[2 * j + 1] =
            mul_bf16x2(((w >> 4) & 0x07f007f0u) | (w & 0x80008000u), m);
      }
    } else {
      q[0] = v.x, q[1] = v.y, q[2] = v.z, q[3] = v.w;
    }
  }

  /// The tensor-core GEMV: units of kPT 16-row tiles x a K slice, each step
  /// one chunk of kCK columns (the next chunk's vectors already loaded), one
  /// m16n8k16 per 16 columns and n-tile; the sums go to red() like run()'s.
  __device__ __forceinline__ static void
  run_mma(const Ctx &ctx, const WeightMatrix (&w)[MATS], int nrows, int ta) {
    const int warp = compute_warp(), lane = lane_id();
    const int g = lane >> 2, c = lane & 3;
    constexpr int kRows = 2 * kPT;      // rows a lane reads
    constexpr int kChunkBytes = 4 * 16; // a row's bytes per step
    const uint4 *xs = reinterpret_cast<const uint4 *>(ctx.smem + kXOff);
    for (int unit = warp; unit < kMGroups * KS; unit += kComputeWarps) {
      const int grp = unit / KS, ks = unit - grp * KS, i0 = grp * 16 * kMT;
      if (i0 >= nrows)
        continue;
      const u8 *rows[kRows];
      const u8 *srows[kRows];
#pragma unroll
      for (int q = 0; q < kRows; ++q) {
        const int p = q / 2, m = p / kMT, mt = p - m * kMT;
        const i64 row =
            w[m].row0 + cmin(i0 + mt * 16 + g + (q & 1) * 8, nrows - 1);
        rows[q] = w[m].data + row * kRowBytes + c * 16;
        if constexpr (FORMAT == TILEC_FMT_FP8)
          srows[q] = w[m].scales + (row / 128) * kScaleCols * 4;
        else if constexpr (FORMAT == TILEC_FMT_MXFP4)
          srows[q] = w[m].scales + row * (K / 32) + c;
        else
          srows[q] = nullptr;
      }
      const int c0 = ks * kMChunksPerSplit;
      const int c1 = cmin(c0 + kMChunksPerSplit, kMChunks);
#pragma unroll
      for (int ch = c0; ch < c1 && ch < c0 + kAhead; ++ch)
#pragma unroll
        for (int q = 0; q < kRows; ++q)
          asm volatile(
              "prefetch.global.L2 [%0];" ::"l"(rows[q] + ch * kChunkBytes));
      float acc[kPT][kNT][4];
#pragma unroll
      for (int p = 0; p < kPT; ++p)
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
          for (int r = 0; r < 4; ++r)
            acc[p][nt][r] = 0.0f;

      uint4 cur[kRows];
      u32 scur[kRows];
      load_mma(rows, srows, c0, cur, scur);
      for (int ch = c0; ch < c1; ++ch) {
        uint4 nxt[kRows];
        u32 snxt[kRows];
        const bool more = ch + 1 < c1;
        if (ch + kAhead < c1) {
#pragma unroll
          for (int q = 0; q < kRows; ++q)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(
                rows[q] + (ch + kAhead) * kChunkBytes));
        }
        if (more)
          load_mma(rows, srows, ch + 1, nxt, snxt);
#pragma unroll
        for (int p = 0; p < kPT; ++p) {
          u32 qa[kElems / 2], qb[kElems / 2];
          decode_pairs(cur[2 * p], scur[2 * p], qa);
          decode_pairs(cur[2 * p + 1], scur[2 * p + 1], qb);
#pragma unroll
          for (int nt = 0; nt < kNT; ++nt) {
            float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            float(&o)[4] = FORMAT == TILEC_FMT_FP8 ? d : acc[p][nt];
#pragma unroll
            for (int j = 0; j < kElems / 4; ++j) {
              const int slot = ((ch * kNT + nt) * kSubs + j / 2) * 32 + lane;
#pragma unroll
              for (int part = 0; part < kMParts; ++part) {
                const uint4 b = xs[slot + part * (kMXBytes / 16)];
                mma_bf16(o, qa[2 * j], qb[2 * j], qa[2 * j + 1], qb[2 * j + 1],
                         (j & 1) ? b.z : b.x, (j & 1) ? b.w : b.y);
              }
            }
            if constexpr (FORMAT == TILEC_FMT_FP8) {
              const float s0 = __uint_as_float(scur[2 * p]);
              const float s1 = __uint_as_float(scur[2 * p + 1]);
              acc[p][nt][0] = fmaf(d[0], s0, acc[p][nt][0]);
              acc[p][nt][1] = fmaf(d[1], s0, acc[p][nt][1]);
              acc[p][nt][2] = fmaf(d[2], s1, acc[p][nt][2]);
              acc[p][nt][3] = fmaf(d[3], s1, acc[p][nt][3]);
            }
          }
        }
        if (more) {
#pragma unroll
          for (int q = 0; q < kRows; ++q)
            cur[q] = nxt[q], scur[q] = snxt[q];
        }
      }

      // C fragment: rows g and g + 8 of each tile, tokens 2c and 2c + 1.
#pragma unroll
      for (int p = 0; p < kPT; ++p) {
        const int m = p / kMT, mt = p - m * kMT;
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const int i = i0 + mt * 16 + g + (r >> 1) * 8;
            const int t = nt * 8 + 2 * c + (r & 1);
            if (i < nrows && t < ta && t < T)
              red(ctx)[((ks * MATS + m) * TILE + i) * T + t] = acc[p][nt][r];
          }
      }
    }
  }

  /// A step's vectors (and scales: MXFP4 codes, FP8 f32 bits) of the lane's
  /// rows at chunk ch.
  __device__ __forceinline__ static void load_mma(const u8 *(&rows)[2 * kPT],
                                                  const u8 *(&srows)[2 * kPT],
                                                  int ch, uint4 (&v)[2 * kPT],
                                                  u32 (&s)[2 * kPT]) {
#pragma unroll
    for (int q = 0; q < 2 * kPT; ++q)
      v[q] = ld_weight16(rows[q] + i64(ch) * 64);
#pragma unroll
    for (int q = 0; q < 2 * kPT; ++q) {
      if constexpr (FORMAT == TILEC_FMT_FP8)
        s[q] = __float_as_uint(ld_weight(
            reinterpret_cast<const float *>(srows[q]) + (ch * kCK) / 128));
      else if constexpr (FORMAT == TILEC_FMT_MXFP4)
        s[q] = ld_weight(srows[q] + ch * 4);
      else
        s[q] = 0u;
    }
  }

  //===--- FMA path ------------------------------------------------------===//

  __device__ __forceinline__ static void load_vectors(const u8 *(&rows)[PR],
                                                      const u8 *(&srows)[PR],
                                                      int v, uint4 (&out)[PR],
                                                      float (&sc)[PR]) {
    if (v < kVecs) {
#pragma unroll
      for (int p = 0; p < PR; ++p)
        out[p] = ld_weight16(rows[p] + i64(v) * 16);
#pragma unroll
      for (int p = 0; p < PR; ++p) {
        if constexpr (FORMAT == TILEC_FMT_FP8)
          sc[p] = ld_weight(reinterpret_cast<const float *>(srows[p]) +
                            (v * kElems) / 128);
        else if constexpr (FORMAT == TILEC_FMT_MXFP4)
          sc[p] = e8m0_unscaled(ld_weight(srows[p] + v));
        else
          sc[p] = 1.0f;
      }
    } else {
#pragma unroll
      for (int p = 0; p < PR; ++p)
        out[p] = make_uint4(0, 0, 0, 0), sc[p] = 0.0f;
    }
  }

  /// L2 prefetch of the first kAhead steps of unit `unit` (if it is one).
  __device__ __forceinline__ static void
  prefetch_unit(const WeightMatrix (&w)[MATS], int nrows, int unit, int lane) {
    if (unit >= kGroups * KS)
      return;
    const int g = unit / KS, ks = unit - g * KS, i0 = g * R;
    if (i0 >= nrows)
      return;
    const int c0 = ks * kChunksPerSplit;
    const int c1 = cmin(cmin(c0 + kChunksPerSplit, kChunks), c0 + kAhead);
#pragma unroll
    for (int p = 0; p < PR; ++p) {
      const WeightMatrix &m = w[p / R];
      const u8 *row =
          m.data + (m.row0 + cmin(i0 + p % R, nrows - 1)) * kRowBytes;
      for (int c = c0; c < c1; ++c) {
        const int v = c * 32 + lane;
        if (v < kVecs)
          asm volatile("prefetch.global.L2 [%0];" ::"l"(row + i64(v) * 16));
      }
    }
  }

  __device__ __forceinline__ static void prefetch_vectors(const u8 *(&rows)[PR],
                                                          int v) {
    if (v < kVecs) {
#pragma unroll
      for (int p = 0; p < PR; ++p)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(rows[p] + i64(v) * 16));
    }
  }

  __device__ __forceinline__ static uint4 x_unit(const Ctx &ctx, int t, int u,
                                                 const u8 *x, i64 x_stride) {
    if constexpr (kStaged)
      return reinterpret_cast<const uint4 *>(ctx.smem +
                                             kXOff)[t * kUnits + x_swizzle(u)];
    else
      return ld_act16(x + token(ctx, t) * x_stride + i64(u) * 16);
  }
  __device__ __forceinline__ static uint4 norm_unit(const Ctx &ctx, int u,
                                                    const u8 *norm_w) {
    if constexpr (kStaged)
      return reinterpret_cast<const uint4 *>(ctx.smem + kNormOff)[x_swizzle(u)];
    else
      return ld_weight16(norm_w + i64(u) * 16);
  }

  /// One 8-element unit of the vector for every row and token. PER_UNIT:
  /// each (row, token) sum of the unit is scaled into acc at once (fewer live
  /// registers); else acc is a per-vector partial sum, scaled by the caller.
  template <int SUB, bool PER_UNIT>
  __device__ __forceinline__ static void
  accumulate_sub(const Ctx &ctx, const uint4 (&cur)[PR], const float (&sc)[PR],
                 int v, float (&acc)[PR][T], int ta, const u8 *x, i64 x_stride,
                 const u8 *norm_w) {
    float wv[PR][8];
#pragma unroll
    for (int p = 0; p < PR; ++p)
      F::template decode<SUB>(cur[p], wv[p]);
    const int u = v * kSubs + SUB;
    float nw[8];
    if constexpr (RMS) {
      bf16x8_to_f32(norm_unit(ctx, u, norm_w), nw);
      if constexpr (kNormOnW) {
#pragma unroll
        for (int p = 0; p < PR; ++p)
#pragma unroll
          for (int e = 0; e < 8; ++e)
            wv[p][e] *= nw[e];
      }
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
      if (t >= ta)
        break;
      float xv[8];
      bf16x8_to_f32(x_unit(ctx, t, u, x, x_stride), xv);
      if constexpr (RMS && !kNormOnW) {
#pragma unroll
        for (int e = 0; e < 8; ++e)
          xv[e] *= nw[e];
      }
#pragma unroll
      for (int p = 0; p < PR; ++p) {
        if constexpr (PER_UNIT) {
          float d = xv[0] * wv[p][0];
#pragma unroll
          for (int e = 1; e < 8; ++e)
            d = fmaf(xv[e], wv[p][e], d);
          acc[p][t] = fmaf(d, sc[p], acc[p][t]);
        } else {
#pragma unroll
          for (int e = 0; e < 8; ++e)
            acc[p][t] = fmaf(xv[e], wv[p][e], acc[p][t]);
        }
      }
    }
  }

  template <int SUB, bool PER_UNIT>
  __device__ __forceinline__ static void
  accumulate_subs(const Ctx &ctx, const uint4 (&cur)[PR], const float (&sc)[PR],
                  int v, float (&acc)[PR][T], int ta, const u8 *x, i64 x_stride,
                  const u8 *norm_w) {
    accumulate_sub<SUB, PER_UNIT>(ctx, cur, sc, v, acc, ta, x, x_stride,
                                  norm_w);
    if constexpr (SUB + 1 < kSubs)
      accumulate_subs<SUB + 1, PER_UNIT>(ctx, cur, sc, v, acc, ta, x, x_stride,
                                         norm_w);
  }

  /// Many accumulators: scale each unit's sums (one more FMA per 8 products)
  /// rather than keep a second set of partial sums live.
  static constexpr bool kPerUnitScale = F::kScaled && PR * T > 16;

  __device__ __forceinline__ static void
  accumulate(const Ctx &ctx, const uint4 (&cur)[PR], const float (&sc)[PR],
             int v, float (&acc)[PR][T], int ta, const u8 *x, i64 x_stride,
             const u8 *norm_w) {
    if constexpr (!F::kScaled || kPerUnitScale) {
      accumulate_subs<0, kPerUnitScale>(ctx, cur, sc, v, acc, ta, x, x_stride,
                                        norm_w);
    } else {
      // One scale per vector: sum the vector's products, then scale.
      float ps[PR][T];
#pragma unroll
      for (int p = 0; p < PR; ++p)
#pragma unroll
        for (int t = 0; t < T; ++t)
          ps[p][t] = 0.0f;
      accumulate_subs<0, false>(ctx, cur, sc, v, ps, ta, x, x_stride, norm_w);
#pragma unroll
      for (int p = 0; p < PR; ++p)
#pragma unroll
        for (int t = 0; t < T; ++t)
          acc[p][t] = fmaf(ps[p][t], sc[p], acc[p][t]);
    }
  }
};

/// RoPE inverse frequencies 1 / theta^(2i / rotary_dim), i < rotary_dim / 2,
/// as the reference computes them in f32 (pow evaluated in double, then
/// rounded: a correctly rounded powf).
__device__ __forceinline__ float rope_inv_freq(int i, int rotary_dim,
                                               float theta) {
  const float e = __fdiv_rn(float(2 * i), float(rotary_dim));
  return __fdiv_rn(1.0f, float(pow(double(theta), double(e))));
}

/// RoPE of pair (x1, x2) at angle a: the low half gets x1 cos - x2 sin, the
/// high half x2 cos + x1 sin (rotate_half), in the reference's f32 order.
__device__ __forceinline__ float rope_value(bool high, float x1, float x2,
                                            float a) {
  float s, c;
  sincosf(a, &s, &c);
  return high ? __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s))
              : __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
}

/// Whether tiles of TILE rows keep each head's rotary rows [h * head_dim,
/// h * head_dim + rotary) in one tile (RoPE pairs rows of that range).
__host__ __device__ constexpr bool rotary_whole(int n, int tile, int head_dim,
                                                int rotary) {
  for (int b = tile; b < n; b += tile)
    if (b % head_dim > 0 && b % head_dim < rotary)
      return false;
  return true;
}

__device__ __forceinline__ float silu_mul(float g, float u) {
  return __fmul_rn(xm::silu(g), u);
}

/// (value, index) argmax step: NaN never wins, ties keep the smaller index.
__device__ __forceinline__ bool argmax_better(float v, int i, float bv,
                                              int bi) {
  return i >= 0 && (bi < 0 || v > bv || (v == bv && i < bi));
}
__device__ __forceinline__ void warp_argmax(float &v, int &i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (argmax_better(ov, oi, v, i))
      v = ov, i = oi;
  }
}

} // namespace detail

/// LINEAR: rows [N0, N1) of y = prologue(x) W^T for T tokens, then the
/// epilogue (docs/engine.md). Parameters are the instance's, in the order of
/// the Instances table; those an epilogue does not use are 0. HEAD_NORM: each
/// head of y RMS-normalized (weight HNORM_W, eps in EPS's high word) before
/// the RoPE epilogues; LOGIT_CAP: the ARGMAX epilogue's logits times the
/// multiplier (THETA's low word), then softcap * tanh(z / softcap) when the
/// high word is positive.
template <int T, int K, int N, int TILE, int FORMAT, int PROLOGUE, int EPILOGUE,
          int HEADS, int HEAD_DIM, int ROTARY_DIM, int CAPACITY, int HEAD_NORM,
          int LOGIT_CAP>
__device__ __noinline__ void linear_task(const TilecTask &task,
                                         const Ctx &ctx) {
  constexpr bool kPair = EPILOGUE == TILEC_EPI_SILU_PAIR;
  constexpr bool kRms = PROLOGUE == TILEC_PRO_RMSNORM;
  constexpr bool kRope =
      EPILOGUE == TILEC_EPI_ROPE_STORE || EPILOGUE == TILEC_EPI_ROPE_KCACHE;
  constexpr bool kHeads = kRope || EPILOGUE == TILEC_EPI_VCACHE;
  constexpr bool kCache =
      EPILOGUE == TILEC_EPI_ROPE_KCACHE || EPILOGUE == TILEC_EPI_VCACHE;
  static_assert(FORMAT >= TILEC_FMT_BF16 && FORMAT <= TILEC_FMT_MXFP4,
                "LINEAR: unknown format");
  static_assert(PROLOGUE == TILEC_PRO_NONE || PROLOGUE == TILEC_PRO_RMSNORM,
                "LINEAR: unknown prologue");
  static_assert(EPILOGUE >= TILEC_EPI_STORE_BF16 &&
                    EPILOGUE <= TILEC_EPI_ARGMAX,
                "LINEAR: unknown epilogue");
  static_assert(N >= 1 && TILE <= N, "LINEAR: tile larger than N");
  constexpr int kHeadDim = HEAD_DIM > 0 ? HEAD_DIM : 1;
  static_assert(!kHeads || (HEAD_DIM > 0 && HEADS * HEAD_DIM == N),
                "LINEAR: head epilogues need N = heads x head_dim");
  static_assert(!HEAD_NORM || TILE % kHeadDim == 0,
                "LINEAR: head_norm needs tiles of whole heads");
  static_assert(!kRope || detail::rotary_whole(N, TILE, kHeadDim, ROTARY_DIM),
                "LINEAR: a tile boundary falls inside a head's rotary rows");
  static_assert(!kRope || (ROTARY_DIM > 0 && ROTARY_DIM % 2 == 0 &&
                           ROTARY_DIM <= HEAD_DIM && ROTARY_DIM <= 256),
                "LINEAR: rotary_dim must be even, at most head_dim and 256");
  static_assert(!kCache || CAPACITY > 0, "LINEAR: cache epilogue without a "
                                         "capacity");
  static_assert(!HEAD_NORM || kRope, "LINEAR: head_norm needs a RoPE epilogue");
  static_assert(!LOGIT_CAP || EPILOGUE == TILEC_EPI_ARGMAX,
                "LINEAR: logit_cap needs the ARGMAX epilogue");
  using G = detail::Gemv<T, K, FORMAT, TILE, kPair ? 2 : 1, kRms, false>;

  const i64 *a = task.w + (TILEC_TASK_WORDS - TILEC_TASK_ARGS);
  const int n0 = int(a[TILEC_LIN_N0]);
  const int nrows = cmin(int(a[TILEC_LIN_N1]) - n0, TILE);
  if (nrows <= 0)
    return;
  const bool scaled = FORMAT != TILEC_FMT_BF16;
  detail::WeightMatrix w[kPair ? 2 : 1];
  w[0] = {ctx.weights + a[TILEC_LIN_W],
          scaled ? ctx.weights + a[TILEC_LIN_WSCALE] : nullptr, n0};
  if constexpr (kPair)
    w[1] = {ctx.weights + a[TILEC_LIN_W2],
            scaled ? ctx.weights + a[TILEC_LIN_W2SCALE] : nullptr, n0};
  const u8 *norm_w = kRms ? ctx.weights + a[TILEC_LIN_NORM_W] : nullptr;

  if (ctx.prefetch) {
    G::prefetch(w, nrows);
    if (kRms)
      prefetch_l2(norm_w, i64(K) * 2);
    return;
  }

  const int tid = compute_tid();
  if constexpr (kRope) {
    const float theta = __uint_as_float(u32(a[TILEC_LIN_THETA]));
    for (int i = tid; i < ROTARY_DIM / 2; i += kComputeThreads)
      G::freq(ctx)[i] = detail::rope_inv_freq(i, ROTARY_DIM, theta);
  }
  G::run(ctx, w, nrows, ctx.arena + a[TILEC_LIN_X], i64(K) * 2, nullptr, norm_w,
         __uint_as_float(u32(a[TILEC_LIN_EPS])));

  if constexpr (EPILOGUE == TILEC_EPI_ARGMAX) {
    const i64 out_off = a[TILEC_LIN_OUT];
    float *logits =
        out_off >= 0 ? reinterpret_cast<float *>(ctx.arena + out_off) : nullptr;
    int2 *partial = reinterpret_cast<int2 *>(ctx.arena + a[TILEC_LIN_PARTIAL]);
    constexpr int kTiles = cdiv(N, TILE);
    const int tile = int(a[TILEC_LIN_TILE]);
    float multiplier = 1.0f, softcap = 0.0f;
    if constexpr (LOGIT_CAP != 0) {
      multiplier = __uint_as_float(u32(a[TILEC_LIN_THETA]));
      softcap = __uint_as_float(u32(u64(a[TILEC_LIN_THETA]) >> 32));
    }
    for (int t = compute_warp(); t < T; t += kComputeWarps) {
      float bv = 0.0f;
      int bi = -1;
      for (int i = lane_id(); i < nrows; i += 32) {
        float y = G::y(ctx, t, 0, i);
        if constexpr (LOGIT_CAP != 0) {
          y = __fmul_rn(y, multiplier);
          if (softcap > 0.0f)
            y = __fmul_rn(tanhf(__fdiv_rn(y, softcap)), softcap);
        }
        if (logits)
          logits[i64(t) * N + n0 + i] = y;
        if (detail::argmax_better(y, n0 + i, bv, bi))
          bv = y, bi = n0 + i;
      }
      detail::warp_argmax(bv, bi);
      if (lane_id() == 0)
        partial[t * kTiles + tile] = make_int2(__float_as_int(bv), bi);
    }
    return;
  }

  // Head norm: one warp per (token, head) of the tile sums the squares.
  const u16 *head_w = nullptr;
  if constexpr (HEAD_NORM != 0) {
    constexpr int kTileHeads = TILE / kHeadDim;
    static_assert(T * kTileHeads <= G::kMaxHeadRows,
                  "LINEAR: head_norm over more than 128 (token, head) rows "
                  "(smaller tile)");
    head_w = reinterpret_cast<const u16 *>(ctx.weights + a[TILEC_LIN_HNORM_W]);
    const float heps = __uint_as_float(u32(u64(a[TILEC_LIN_EPS]) >> 32));
    const int heads = nrows / kHeadDim;
    for (int r = compute_warp(); r < T * heads; r += kComputeWarps) {
      const int t = r / heads, base = (r - t * heads) * kHeadDim;
      float sum = 0.0f;
      for (int d = lane_id(); d < kHeadDim; d += 32) {
        const float v = G::y(ctx, t, 0, base + d);
        sum = __fmaf_rn(v, v, sum);
      }
      sum = warp_sum(sum);
      if (lane_id() == 0)
        G::head_inv(ctx)[r] = __frcp_rn(
            __fsqrt_rn(__fadd_rn(__fdiv_rn(sum, float(kHeadDim)), heps)));
    }
    compute_sync();
  }
  // Row i of token t after the head norm (when there is one).
  auto yn = [&](int t, int i) {
    float v = G::y(ctx, t, 0, i);
    if constexpr (HEAD_NORM != 0) {
      const int d = i % kHeadDim;
      const float inv = G::head_inv(ctx)[t * (nrows / kHeadDim) + i / kHeadDim];
      v = __fmul_rn(bf16_to_f32(ld_weight(head_w + d)), __fmul_rn(v, inv));
    }
    return v;
  };

  const int total = T * nrows;
  for (int e = tid; e < total; e += kComputeThreads) {
    const int t = e / nrows, i = e - t * nrows, n = n0 + i;
    if constexpr (EPILOGUE == TILEC_EPI_STORE_BF16) {
      reinterpret_cast<u16 *>(ctx.arena + a[TILEC_LIN_OUT])[i64(t) * N + n] =
          f32_to_bf16(G::y(ctx, t, 0, i));
    } else if constexpr (EPILOGUE == TILEC_EPI_STORE_F32) {
      reinterpret_cast<float *>(ctx.arena + a[TILEC_LIN_OUT])[i64(t) * N + n] =
          G::y(ctx, t, 0, i);
    } else if constexpr (EPILOGUE == TILEC_EPI_RESIDUAL) {
      const i64 at = i64(t) * N + n;
      const float r = bf16_to_f32(
          reinterpret_cast<const u16 *>(ctx.arena + a[TILEC_LIN_RESIDUAL])[at]);
      reinterpret_cast<u16 *>(ctx.arena + a[TILEC_LIN_OUT])[at] =
          f32_to_bf16(__fadd_rn(r, G::y(ctx, t, 0, i)));
    } else if constexpr (EPILOGUE == TILEC_EPI_SILU_PAIR) {
      reinterpret_cast<u16 *>(ctx.arena + a[TILEC_LIN_OUT])[i64(t) * N + n] =
          f32_to_bf16(detail::silu_mul(G::y(ctx, t, 0, i), G::y(ctx, t, 1, i)));
    } else {
      // Head epilogues: n = h * HEAD_DIM + d; a row d < ROTARY_DIM has its
      // head's whole rotary part in the tile (rotary_whole), from i - d.
      const int d = n % kHeadDim;
      const int pos =
          reinterpret_cast<const int *>(ctx.arena + a[TILEC_LIN_POS])[t];
      float v = yn(t, i);
      if constexpr (kRope) {
        if (d < ROTARY_DIM) {
          constexpr int kHalf = ROTARY_DIM / 2;
          const int f = d % kHalf, base = i - d;
          const float x1 = yn(t, base + f);
          const float x2 = yn(t, base + f + kHalf);
          const float angle = __fmul_rn(float(pos), G::freq(ctx)[f]);
          v = detail::rope_value(d >= kHalf, x1, x2, angle);
        }
      }
      if constexpr (kCache) {
        const i64 slot = pos % CAPACITY;
        reinterpret_cast<u16 *>(ctx.kv + a[TILEC_LIN_OUT])[slot * N + n] =
            f32_to_bf16(v);
      } else {
        reinterpret_cast<u16 *>(ctx.arena + a[TILEC_LIN_OUT])[i64(t) * N + n] =
            f32_to_bf16(v);
      }
    }
  }
}

} // namespace tilec
