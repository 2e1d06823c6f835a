//===- Formats.h - Scalar and block number formats (bf16 to MXFP4) -------===//
//
// Exact host conversions for the number formats of the checkpoints and of the
// megakernel: bf16, f16, FP8 E4M3FN / E5M2, E8M0, E2M1 (FP4), MXFP4 blocks (OCP
// MX v1.0) and DeepSeek/MiMo-style 128x128 block-scaled FP8. Decoders are
// inline table or bit operations: the CPU reference model and the host executor
// call them per element. Encoders round to nearest even.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>

namespace tilec {

namespace detail {
inline float bitsToF32(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline uint32_t f32ToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

/// Value of a sign-less minifloat code with the given field widths and bias
/// (subnormals at exponent field 0, no special values).
constexpr float minifloatValue(unsigned code, int expBits, int mantBits,
                               int bias) {
  unsigned exp = (code >> mantBits) & ((1u << expBits) - 1);
  unsigned mant = code & ((1u << mantBits) - 1);
  float scale = 1.0f;
  int e = exp == 0 ? 1 - bias : int(exp) - bias;
  for (; e > 0; --e)
    scale *= 2.0f;
  for (; e < 0; ++e)
    scale *= 0.5f;
  float frac = float(mant) / float(1u << mantBits);
  return (exp == 0 ? frac : 1.0f + frac) * scale;
}

/// Decode table of an 8-bit float: `IeeeSpecials` formats keep inf/NaN in the
/// top exponent (E5M2); the others have S.1111.111 as their only NaN (E4M3FN).
template <int ExpBits, int MantBits, int Bias, bool IeeeSpecials>
constexpr std::array<float, 256> makeFp8Table() {
  std::array<float, 256> table{};
  constexpr unsigned expMax = (1u << ExpBits) - 1;
  for (unsigned code = 0; code < 256; ++code) {
    unsigned mag = code & 0x7f;
    unsigned exp = mag >> MantBits;
    unsigned mant = mag & ((1u << MantBits) - 1);
    float v = 0.0f;
    if (IeeeSpecials && exp == expMax)
      v = mant == 0 ? std::numeric_limits<float>::infinity()
                    : std::numeric_limits<float>::quiet_NaN();
    else if (!IeeeSpecials && mag == 0x7f)
      v = std::numeric_limits<float>::quiet_NaN();
    else
      v = minifloatValue(mag, ExpBits, MantBits, Bias);
    table[code] = (code & 0x80) ? -v : v;
  }
  return table;
}

constexpr std::array<float, 16> makeE2m1Table() {
  std::array<float, 16> table{};
  for (unsigned code = 0; code < 16; ++code) {
    float v = minifloatValue(code & 7, 2, 1, 1);
    table[code] = (code & 8) ? -v : v;
  }
  return table;
}

inline constexpr std::array<float, 256> kE4m3Table =
    makeFp8Table<4, 3, 7, false>();
inline constexpr std::array<float, 256> kE5m2Table =
    makeFp8Table<5, 2, 15, true>();
inline constexpr std::array<float, 16> kE2m1Table = makeE2m1Table();
} // namespace detail

//===-- bf16 / f16
//-----------------------------------------------------------===//

inline float bf16ToF32(uint16_t bits) {
  return detail::bitsToF32(uint32_t(bits) << 16);
}
/// Round to nearest even; NaN stays NaN (made quiet), overflow rounds to inf.
uint16_t f32ToBf16(float value);

float f16ToF32(uint16_t bits);
/// Round to nearest even, subnormals kept, overflow to inf, NaN made quiet.
uint16_t f32ToF16(float value);

//===-- FP8
//--------------------------------------------------------------------===//

/// E4M3FN: bias 7, max 448, no inf, S.1111.111 is NaN.
inline float e4m3ToF32(uint8_t code) { return detail::kE4m3Table[code]; }
/// Round to nearest even. Finite values beyond ±448 and ±inf saturate to ±448
/// (as `cvt.rn.satfinite.e4m3x2.f32` does on the GPU; E4M3FN has no inf); NaN
/// -> 0x7f/0xff.
uint8_t f32ToE4m3(float value);
inline constexpr float kE4m3Max = 448.0f;

/// E5M2: bias 15, IEEE-style inf and NaN, max finite 57344.
inline float e5m2ToF32(uint8_t code) { return detail::kE5m2Table[code]; }
/// Round to nearest even; overflow gives ±inf (E5M2 has inf, as IEEE and torch
/// do).
uint8_t f32ToE5m2(float value);
inline constexpr float kE5m2Max = 57344.0f;

//===-- E8M0 (MX shared scale)
//----------------------------------------------===//

inline constexpr uint8_t kE8m0Nan = 0xff;
inline constexpr int kE8m0MinExponent = -127;
inline constexpr int kE8m0MaxExponent = 127;
/// 2^(code - 127); code 255 is NaN. 2^-127 is an f32 subnormal, still exact.
inline float e8m0ToF32(uint8_t code) {
  if (code == kE8m0Nan)
    return std::numeric_limits<float>::quiet_NaN();
  if (code == 0)
    return detail::bitsToF32(0x00400000u); // 2^-127
  return detail::bitsToF32(uint32_t(code) << 23);
}
/// The exponent code - 127 (callers check for kE8m0Nan first).
inline int e8m0Exponent(uint8_t code) { return int(code) - 127; }
/// The code of 2^exponent, the exponent clamped to [-127, 127].
uint8_t e8m0FromExponent(int exponent);

//===-- E2M1 (FP4)
//-------------------------------------------------------------===//

/// Decodes the low 4 bits: magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6}, sign bit 3.
inline float e2m1ToF32(uint8_t code) { return detail::kE2m1Table[code & 0xf]; }
/// Round to nearest even, saturate to ±6. E2M1 has no NaN: NaN encodes as +6,
/// as `cvt.rn.satfinite.e2m1x2.f32` does.
uint8_t f32ToE2m1(float value);
inline constexpr float kE2m1Max = 6.0f;

//===-- MXFP4 (OCP MX v1.0)
//---------------------------------------------------===//

/// 32 E2M1 elements share one E8M0 scale; two elements per byte, low nibble =
/// even.
inline constexpr int64_t kMxfp4BlockSize = 32;

/// Quantizes 32 floats into 16 packed bytes and returns the E8M0 scale code:
/// exponent floor(log2(amax)) - 2 clamped to [-127, 127], elements RNE(x /
/// 2^exp) saturated to ±6. An all-zero block gets scale code 127 (1.0). A block
/// holding NaN or inf gets the NaN scale (255) and zero elements, so it decodes
/// to NaN (the MX spec makes the whole block NaN).
uint8_t quantizeMxfp4Block(const float *src, uint8_t *packed);
void dequantizeMxfp4Block(const uint8_t *packed, uint8_t scale, float *dst);

/// Row-major [rows, cols] <-> packed [rows, cols/2] bytes + scales [rows,
/// cols/32]. Throws tilec::Error unless cols is a positive multiple of 32 and
/// rows >= 0.
void quantizeMxfp4(const float *src, int64_t rows, int64_t cols,
                   uint8_t *packed, uint8_t *scales);
void dequantizeMxfp4(const uint8_t *packed, const uint8_t *scales, int64_t rows,
                     int64_t cols, float *dst);

//===-- FP8 block-scaled (DeepSeek / MiMo `<weight>_scale_inv`)
//---------------===//

inline constexpr int64_t kFp8BlockSize = 128;
/// Number of scale rows/cols of a [rows, cols] weight: ceil(n / 128).
inline int64_t fp8ScaleDim(int64_t n) {
  return (n + kFp8BlockSize - 1) / kFp8BlockSize;
}

/// E4M3 [rows, cols] and f32 scales [ceil(rows/128), ceil(cols/128)]; edge
/// blocks may be partial. Scale = amax/448 of the block (1 for a zero block);
/// value = e4m3 x scale. A block with NaN or inf gets a NaN scale.
void quantizeFp8Block(const float *src, int64_t rows, int64_t cols,
                      uint8_t *dst, float *scaleInv);
void dequantizeFp8Block(const uint8_t *src, const float *scaleInv, int64_t rows,
                        int64_t cols, float *dst);

} // namespace tilec
