//===- Formats.cpp - Encoders and block (de)quantizers of number formats --===//
#include "models/core/Formats.h"

#include "models/core/Error.h"

#include <algorithm>
#include <cmath>

using namespace tilec;
using detail::bitsToF32;
using detail::f32ToBits;

namespace {
/// Rounds a finite magnitude to nearest even in a minifloat with `mantBits`
/// mantissa bits and exponent bias `bias` (subnormals at exponent field 0) and
/// returns the sign-less code. The code may lie past the format's largest
/// finite value: callers saturate or map it to inf. A mantissa that rounds up
/// to 2^mantBits carries into the exponent field by plain addition.
int encodeMagnitude(float mag, int mantBits, int bias) {
  int minExp = 1 - bias;
  if (mag < std::ldexp(1.0f, minExp))
    return int(std::nearbyint(std::ldexp(mag, mantBits - minExp)));
  int e = std::ilogb(mag);
  float frac = std::ldexp(mag, -e) - 1.0f; // exact: [0, 1)
  int q = int(std::nearbyint(std::ldexp(frac, mantBits)));
  return ((e + bias) << mantBits) + q;
}

uint8_t signBit8(float value) { return std::signbit(value) ? 0x80 : 0; }

void checkDims(const char *what, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0)
    fail("{}: shape [{}, {}] has a negative dimension", what, rows, cols);
}

void checkMxfp4Dims(const char *what, int64_t rows, int64_t cols) {
  checkDims(what, rows, cols);
  if (cols == 0 || cols % kMxfp4BlockSize != 0)
    fail("{}: cols = {} must be a positive multiple of the MXFP4 block size {}",
         what, cols, kMxfp4BlockSize);
}
} // namespace

uint16_t tilec::f32ToBf16(float value) {
  uint32_t bits = f32ToBits(value);
  if (std::isnan(value))
    return uint16_t((bits >> 16) |
                    0x0040); // set the quiet bit, keep sign/payload
  uint32_t roundingBias = 0x7fff + ((bits >> 16) & 1);
  return uint16_t((bits + roundingBias) >> 16);
}

float tilec::f16ToF32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    float mag = std::ldexp(float(mant), -24); // subnormal: exact in f32
    return bitsToF32(f32ToBits(mag) | sign);
  }
  if (exp == 31)
    return bitsToF32(sign | 0x7f800000u | (mant << 13));
  return bitsToF32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t tilec::f32ToF16(float value) {
  uint32_t bits = f32ToBits(value);
  uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  uint32_t mag = bits & 0x7fffffffu;
  if (mag > 0x7f800000u) // NaN: quiet, top payload bits kept
    return uint16_t(sign | 0x7e00 | ((mag >> 13) & 0x3ff));
  if (mag >= 0x477ff000u) // >= 65520 rounds (ties to even) past 65504: inf
    return uint16_t(sign | 0x7c00);
  if (mag >=
      0x38800000u) { // normal f16 (>= 2^-14): rebias and round the low 13 bits
    uint32_t odd = (mag >> 13) & 1;
    mag += 0xc8000fffu + odd; // -(127-15)<<23 plus the rounding bias
    return uint16_t(sign | (mag >> 13));
  }
  // Subnormal f16: units of 2^-24; 1024 units is the smallest normal, encoded
  // alike.
  float units = std::nearbyint(std::ldexp(bitsToF32(mag), 24));
  return uint16_t(sign | uint16_t(units));
}

uint8_t tilec::f32ToE4m3(float value) {
  uint8_t sign = signBit8(value);
  if (std::isnan(value))
    return sign | 0x7f;
  float mag = std::fabs(value);
  if (std::isinf(mag))
    return sign | 0x7e; // saturating: E4M3FN has no inf
  int code = encodeMagnitude(mag, 3, 7);
  return sign | uint8_t(std::min(code, 0x7e)); // saturate to 448
}

uint8_t tilec::f32ToE5m2(float value) {
  uint8_t sign = signBit8(value);
  if (std::isnan(value))
    return sign | 0x7e;
  float mag = std::fabs(value);
  if (std::isinf(mag))
    return sign | 0x7c;
  int code = encodeMagnitude(mag, 2, 15);
  return sign |
         uint8_t(std::min(code, 0x7c)); // past 57344 (after rounding): inf
}

uint8_t tilec::e8m0FromExponent(int exponent) {
  return uint8_t(std::clamp(exponent, kE8m0MinExponent, kE8m0MaxExponent) +
                 127);
}

uint8_t tilec::f32ToE2m1(float value) {
  if (std::isnan(value))
    return 0x7;
  uint8_t sign = std::signbit(value) ? 0x8 : 0;
  float mag = std::fabs(value);
  if (std::isinf(mag))
    return sign | 0x7;
  int code = encodeMagnitude(mag, 1, 1);
  return sign | uint8_t(std::min(code, 0x7));
}

uint8_t tilec::quantizeMxfp4Block(const float *src, uint8_t *packed) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t i = 0; i < kMxfp4BlockSize; ++i) {
    finite &= std::isfinite(src[i]);
    amax = std::max(amax, std::fabs(src[i]));
  }
  if (!finite) {
    std::fill(packed, packed + kMxfp4BlockSize / 2, 0);
    return kE8m0Nan;
  }
  // emax(E2M1) = 2: amax / 2^exp lands in [4, 8), values above 6 saturate
  // (spec).
  int exponent = amax == 0.0f ? 0 : std::ilogb(amax) - 2;
  uint8_t scale = e8m0FromExponent(exponent);
  int shift = -e8m0Exponent(scale);
  for (int64_t i = 0; i < kMxfp4BlockSize; i += 2) {
    uint8_t lo = f32ToE2m1(std::ldexp(src[i], shift));
    uint8_t hi = f32ToE2m1(std::ldexp(src[i + 1], shift));
    packed[i / 2] = uint8_t(lo | (hi << 4));
  }
  return scale;
}

void tilec::dequantizeMxfp4Block(const uint8_t *packed, uint8_t scale,
                                 float *dst) {
  float s = e8m0ToF32(scale);
  for (int64_t i = 0; i < kMxfp4BlockSize / 2; ++i) {
    dst[2 * i] = e2m1ToF32(packed[i] & 0xf) * s;
    dst[2 * i + 1] = e2m1ToF32(packed[i] >> 4) * s;
  }
}

void tilec::quantizeMxfp4(const float *src, int64_t rows, int64_t cols,
                          uint8_t *packed, uint8_t *scales) {
  checkMxfp4Dims("quantizeMxfp4", rows, cols);
  int64_t blocks = rows * (cols / kMxfp4BlockSize);
  for (int64_t b = 0; b < blocks; ++b)
    scales[b] = quantizeMxfp4Block(src + b * kMxfp4BlockSize,
                                   packed + b * (kMxfp4BlockSize / 2));
}

void tilec::dequantizeMxfp4(const uint8_t *packed, const uint8_t *scales,
                            int64_t rows, int64_t cols, float *dst) {
  checkMxfp4Dims("dequantizeMxfp4", rows, cols);
  int64_t blocks = rows * (cols / kMxfp4BlockSize);
  for (int64_t b = 0; b < blocks; ++b)
    dequantizeMxfp4Block(packed + b * (kMxfp4BlockSize / 2), scales[b],
                         dst + b * kMxfp4BlockSize);
}

void tilec::quantizeFp8Block(const float *src, int64_t rows, int64_t cols,
                             uint8_t *dst, float *scaleInv) {
  checkDims("quantizeFp8Block", rows, cols);
  int64_t scaleCols = fp8ScaleDim(cols);
  for (int64_t br = 0; br < fp8ScaleDim(rows); ++br) {
    int64_t r0 = br * kFp8BlockSize, r1 = std::min(rows, r0 + kFp8BlockSize);
    for (int64_t bc = 0; bc < scaleCols; ++bc) {
      int64_t c0 = bc * kFp8BlockSize, c1 = std::min(cols, c0 + kFp8BlockSize);
      float amax = 0.0f;
      bool finite = true;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) {
          float x = src[r * cols + c];
          finite &= std::isfinite(x);
          amax = std::max(amax, std::fabs(x));
        }
      float scale = 1.0f;
      if (!finite)
        scale = std::numeric_limits<float>::quiet_NaN();
      else if (amax > 0.0f)
        // A tiny amax may underflow amax/448 to 0; keep the scale nonzero.
        scale =
            std::max(amax / kE4m3Max, std::numeric_limits<float>::denorm_min());
      scaleInv[br * scaleCols + bc] = scale;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c)
          dst[r * cols + c] = f32ToE4m3(src[r * cols + c] / scale);
    }
  }
}

void tilec::dequantizeFp8Block(const uint8_t *src, const float *scaleInv,
                               int64_t rows, int64_t cols, float *dst) {
  checkDims("dequantizeFp8Block", rows, cols);
  int64_t scaleCols = fp8ScaleDim(cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float *scaleRow = scaleInv + (r / kFp8BlockSize) * scaleCols;
    for (int64_t c = 0; c < cols; ++c)
      dst[r * cols + c] =
          e4m3ToF32(src[r * cols + c]) * scaleRow[c / kFp8BlockSize];
  }
}
