//===- synthetic.cuh - tilec_synthesize: synthetic weights on the GPU -----===//
//
// Fills one weight of the weights region in its storage format, bit for bit
// what models/core's synthetic checkpoint writer stores (Synthetic.h: the
// counter-based generator; Formats.cpp: quantizeMxfp4Block, quantizeFp8Block,
// f32ToBf16, mirrored here operation by operation). Compile without fast math
// and without flush-to-zero (NVRTC's and nvcc's defaults).
//
//   tilec_synthesize(data, scales, key, begin, scale, offset, rows, cols,
//                    matrices, format)
//
// key = syntheticKey(seed, name) (host), element i of the tensor (row-major
// over [matrices, rows, cols]) = offset + scale * syntheticUniform(key, begin +
// i), init scale/offset = syntheticInit(spec). format: TILEC_FMT_BF16 /
// TILEC_FMT_FP8 (E4M3 bytes; f32 scales [ceil(rows/128), ceil(cols/128)] per
// matrix) / TILEC_FMT_MXFP4 (packed pairs; E8M0 [rows, cols/32] per matrix) /
// TILEC_SYNTH_F32. Launch with blockDim.x a multiple of 32 (256 is good), any
// grid (grid-stride loops; FP8 uses a CTA per 128x128 block).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/abi/TaskAbi.h"

/* Format code of f32 tensors (the router's correction bias). */
#define TILEC_SYNTH_F32 3

namespace tilec {
namespace synth {

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

__device__ __forceinline__ u64 mix64(u64 z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// ((bits >> 40) + 0.5) * 2^-23 - 1 = (2 (bits >> 40) + 1 - 2^24) 2^-24:
/// an odd integer of 25 bits at most times a power of two, exact in f32.
__device__ __forceinline__ float uniform(u64 key, u64 index) {
  const u64 bits = mix64(key + (index + 1) * 0x9E3779B97F4A7C15ull);
  const int n = int(2 * (bits >> 40)) + 1 - (1 << 24);
  return float(n) * 5.9604644775390625e-8f;
}

__device__ __forceinline__ float value(u64 key, u64 index, float scale,
                                       float offset) {
  return __fadd_rn(offset, __fmul_rn(scale, uniform(key, index)));
}

__device__ __forceinline__ bool is_nan(float f) {
  return (__float_as_uint(f) & 0x7fffffffu) > 0x7f800000u;
}
__device__ __forceinline__ bool is_finite(float f) {
  return (__float_as_uint(f) & 0x7f800000u) != 0x7f800000u;
}
__device__ __forceinline__ bool sign_bit(float f) {
  return (__float_as_uint(f) >> 31) != 0;
}
/// std::ilogb of a finite nonzero float (subnormals too).
__device__ __forceinline__ int ilogb_exact(float f) {
  const u32 b = __float_as_uint(f) & 0x7fffffffu;
  const int e = int(b >> 23);
  return e ? e - 127 : (31 - __clz(int(b))) - 149;
}
/// 2^s for s in [-127, 127] (2^-127 is subnormal), exact.
__device__ __forceinline__ float pow2(int s) {
  return s >= -126 ? __uint_as_float(u32(s + 127) << 23)
                   : __uint_as_float(0x00400000u);
}

/// f32ToBf16: round to nearest even, NaN made quiet.
__device__ __forceinline__ unsigned short to_bf16(float v) {
  const u32 bits = __float_as_uint(v);
  if (is_nan(v))
    return (unsigned short)((bits >> 16) | 0x0040);
  return (unsigned short)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/// encodeMagnitude: a finite magnitude rounded to nearest even in a minifloat
/// with `mant` mantissa bits and bias `bias`; the code may pass the format's
/// largest value (callers saturate).
__device__ __forceinline__ int encode_magnitude(float mag, int mant, int bias) {
  const int min_exp = 1 - bias;
  if (mag < pow2(min_exp))
    return int(rintf(__fmul_rn(mag, pow2(mant - min_exp))));
  const int e = ilogb_exact(mag);
  // ldexp(mag, -e) - 1: the mantissa bits of a normal mag, exact.
  const float frac = __fsub_rn(
      __uint_as_float((__float_as_uint(mag) & 0x007fffffu) | 0x3f800000u),
      1.0f);
  const int q = int(rintf(__fmul_rn(frac, pow2(mant))));
  return ((e + bias) << mant) + q;
}

/// f32ToE4m3: saturating, NaN -> 0x7f with the sign.
__device__ __forceinline__ u8 to_e4m3(float v) {
  const u8 sign = sign_bit(v) ? 0x80 : 0;
  if (is_nan(v))
    return sign | 0x7f;
  const float mag = fabsf(v);
  if (!is_finite(mag))
    return sign | 0x7e;
  const int code = encode_magnitude(mag, 3, 7);
  return sign | u8(code < 0x7e ? code : 0x7e);
}

/// f32ToE2m1: saturating to 6, NaN -> +6.
__device__ __forceinline__ u8 to_e2m1(float v) {
  if (is_nan(v))
    return 0x7;
  const u8 sign = sign_bit(v) ? 0x8 : 0;
  const float mag = fabsf(v);
  if (!is_finite(mag))
    return sign | 0x7;
  const int code = encode_magnitude(mag, 1, 1);
  return sign | u8(code < 0x7 ? code : 0x7);
}

__device__ inline void bf16_or_f32(u8 *data, u64 key, i64 begin, float scale,
                                   float offset, i64 n, bool f32) {
  const i64 stride = i64(gridDim.x) * blockDim.x;
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float v = value(key, u64(begin + i), scale, offset);
    if (f32)
      reinterpret_cast<float *>(data)[i] = v;
    else
      reinterpret_cast<unsigned short *>(data)[i] = to_bf16(v);
  }
}

/// quantizeMxfp4Block, a warp per block of 32 (lane = element).
__device__ inline void mxfp4(u8 *data, u8 *scales, u64 key, i64 begin,
                             float scale, float offset, i64 n) {
  const i64 blocks = n / 32;
  const int lane = threadIdx.x & 31;
  const i64 warps = i64(gridDim.x) * (blockDim.x / 32);
  for (i64 b = i64(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
       b < blocks; b += warps) {
    const float x = value(key, u64(begin + b * 32 + lane), scale, offset);
    const bool finite = __all_sync(0xffffffffu, is_finite(x));
    float amax = fabsf(x);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    u8 code = 0, scale_code = 0xff;
    if (finite) {
      int exponent = amax == 0.0f ? 0 : ilogb_exact(amax) - 2;
      exponent = exponent < -127 ? -127 : exponent > 127 ? 127 : exponent;
      scale_code = u8(exponent + 127);
      code = to_e2m1(__fmul_rn(x, pow2(-exponent)));
    }
    const u8 hi = u8(__shfl_down_sync(0xffffffffu, u32(code), 1));
    if ((lane & 1) == 0)
      data[b * 16 + lane / 2] = u8(code | (hi << 4));
    if (lane == 0)
      scales[b] = scale_code;
  }
}

/// quantizeFp8Block, a CTA per 128x128 block of each matrix.
__device__ inline void fp8(u8 *data, u8 *scales, u64 key, i64 begin,
                           float scale, float offset, i64 rows, i64 cols,
                           i64 matrices) {
  __shared__ float s_amax[32];
  __shared__ int s_finite[32];
  const i64 srows = (rows + 127) / 128, scols = (cols + 127) / 128;
  const i64 blocks = matrices * srows * scols;
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  const int warps = blockDim.x / 32;
  for (i64 blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
    const i64 m = blk / (srows * scols), rc = blk - m * srows * scols;
    const i64 br = rc / scols, bc = rc - br * scols;
    const i64 r0 = br * 128, c0 = bc * 128;
    const int h = int((rows - r0) < 128 ? rows - r0 : 128);
    const int w = int((cols - c0) < 128 ? cols - c0 : 128);
    const i64 base = m * rows * cols + r0 * cols + c0;
    float amax = 0.0f;
    int finite = 1;
    for (int idx = threadIdx.x; idx < h * w; idx += blockDim.x) {
      const int r = idx / w, c = idx - r * w;
      const float x =
          value(key, u64(begin + base + r * cols + c), scale, offset);
      finite &= is_finite(x);
      amax = fmaxf(amax, fabsf(x));
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      finite &= __shfl_xor_sync(0xffffffffu, finite, o);
    }
    if (lane == 0)
      s_amax[warp] = amax, s_finite[warp] = finite;
    __syncthreads();
    amax = 0.0f;
    finite = 1;
    for (int i = 0; i < warps; ++i)
      amax = fmaxf(amax, s_amax[i]), finite &= s_finite[i];
    float s = 1.0f;
    if (!finite)
      s = __uint_as_float(0x7fc00000u);
    else if (amax > 0.0f)
      s = fmaxf(__fdiv_rn(amax, 448.0f), __uint_as_float(1u));
    if (threadIdx.x == 0)
      reinterpret_cast<float *>(scales)[blk] = s;
    for (int idx = threadIdx.x; idx < h * w; idx += blockDim.x) {
      const int r = idx / w, c = idx - r * w;
      const i64 at = base + r * cols + c;
      data[at] =
          to_e4m3(__fdiv_rn(value(key, u64(begin + at), scale, offset), s));
    }
    __syncthreads(); // s_amax is reused by the next block
  }
}

} // namespace synth
} // namespace tilec

extern "C" __global__ void
tilec_synthesize(unsigned char *data, unsigned char *scales,
                 unsigned long long key, long long begin, float scale,
                 float offset, long long rows, long long cols,
                 long long matrices, int format) {
  const long long n = rows * cols * matrices;
  switch (format) {
  case TILEC_FMT_BF16:
    tilec::synth::bf16_or_f32(data, key, begin, scale, offset, n, false);
    break;
  case TILEC_SYNTH_F32:
    tilec::synth::bf16_or_f32(data, key, begin, scale, offset, n, true);
    break;
  case TILEC_FMT_MXFP4:
    tilec::synth::mxfp4(data, scales, key, begin, scale, offset, n);
    break;
  case TILEC_FMT_FP8:
    tilec::synth::fp8(data, scales, key, begin, scale, offset, rows, cols,
                      matrices);
    break;
  default:
    break;
  }
}
