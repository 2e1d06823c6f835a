//===- FormatsTest.cpp - Number formats against the OCP MX / FP8 specs ----===//
#include "models/core/Formats.h"
#include "models/core/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

using namespace tilec;

namespace {
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

/// Brute-force round to nearest, ties to the even code, over the non-negative
/// finite codes [0, maxCode] of a format; saturates past the largest value.
/// This is the spec's rounding written the slow way, to check the fast
/// encoders.
template <typename Decode>
unsigned nearestCode(float mag, unsigned maxCode, Decode decode) {
  unsigned best = 0;
  double bestErr = std::numeric_limits<double>::infinity();
  for (unsigned c = 0; c <= maxCode; ++c) {
    double err = std::fabs(double(decode(c)) - double(mag));
    if (err < bestErr || (err == bestErr && (c & 1) == 0)) {
      best = c;
      bestErr = err;
    }
  }
  return best;
}

uint32_t bitsOf(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
float fromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
} // namespace

//===-- E2M1
//------------------------------------------------------------------===//

TEST(E2M1, EveryCodePoint) {
  const float magnitudes[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (unsigned c = 0; c < 16; ++c) {
    float expected = (c & 8) ? -magnitudes[c & 7] : magnitudes[c & 7];
    EXPECT_EQ(e2m1ToF32(uint8_t(c)), expected) << "code " << c;
    EXPECT_EQ(std::signbit(e2m1ToF32(uint8_t(c))), bool(c & 8)) << "code " << c;
    EXPECT_EQ(f32ToE2m1(expected), c) << "value " << expected;
  }
  // Only the low nibble is decoded.
  EXPECT_EQ(e2m1ToF32(0xf7), 6.0f);
}

TEST(E2M1, RoundsToNearestEven) {
  EXPECT_EQ(f32ToE2m1(0.25f), 0x0);  // 0 vs 0.5: 0 is even
  EXPECT_EQ(f32ToE2m1(0.26f), 0x1);  // 0.5
  EXPECT_EQ(f32ToE2m1(0.75f), 0x2);  // 0.5 vs 1: 1 (code 2) is even
  EXPECT_EQ(f32ToE2m1(1.25f), 0x2);  // 1 vs 1.5: 1
  EXPECT_EQ(f32ToE2m1(1.75f), 0x4);  // 1.5 vs 2: 2
  EXPECT_EQ(f32ToE2m1(2.5f), 0x4);   // 2 vs 3: 2
  EXPECT_EQ(f32ToE2m1(3.5f), 0x6);   // 3 vs 4: 4
  EXPECT_EQ(f32ToE2m1(5.0f), 0x6);   // 4 vs 6: 4 (even mantissa)
  EXPECT_EQ(f32ToE2m1(5.01f), 0x7);  // 6
  EXPECT_EQ(f32ToE2m1(-2.5f), 0xc);  // -2
  EXPECT_EQ(f32ToE2m1(-0.25f), 0x8); // -0
}

TEST(E2M1, SaturatesAndMapsSpecials) {
  EXPECT_EQ(f32ToE2m1(7.0f), 0x7);
  EXPECT_EQ(f32ToE2m1(1e30f), 0x7);
  EXPECT_EQ(f32ToE2m1(-1e30f), 0xf);
  EXPECT_EQ(f32ToE2m1(kInf), 0x7);
  EXPECT_EQ(f32ToE2m1(-kInf), 0xf);
  EXPECT_EQ(f32ToE2m1(kNaN), 0x7);
  EXPECT_EQ(f32ToE2m1(1e-30f), 0x0);
}

TEST(E2M1, MatchesBruteForceOnRandomValues) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-8.0f, 8.0f);
  for (int i = 0; i < 20000; ++i) {
    float x = dist(rng);
    unsigned expected = nearestCode(
        std::fabs(x), 7, [](unsigned c) { return e2m1ToF32(uint8_t(c)); });
    expected |= std::signbit(x) ? 8 : 0;
    ASSERT_EQ(f32ToE2m1(x), expected) << x;
  }
}

//===-- E4M3FN
//----------------------------------------------------------------===//

TEST(E4M3, SpecValues) {
  EXPECT_EQ(e4m3ToF32(0x7e), 448.0f);
  EXPECT_EQ(e4m3ToF32(0xfe), -448.0f);
  EXPECT_EQ(e4m3ToF32(0x01), std::ldexp(1.0f, -9)); // min subnormal
  EXPECT_EQ(e4m3ToF32(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(e4m3ToF32(0x08), std::ldexp(1.0f, -6)); // min normal
  EXPECT_EQ(e4m3ToF32(0x38), 1.0f);
  EXPECT_EQ(e4m3ToF32(0x78), 256.0f); // exponent field 15 is finite
  EXPECT_EQ(e4m3ToF32(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(e4m3ToF32(0x80)));
  EXPECT_TRUE(std::isnan(e4m3ToF32(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3ToF32(0xff)));
  int nans = 0;
  for (unsigned c = 0; c < 256; ++c)
    nans += std::isnan(e4m3ToF32(uint8_t(c)));
  EXPECT_EQ(nans, 2); // S.1111.111 only: no inf
}

TEST(E4M3, EncodesEveryCodeBack) {
  for (unsigned c = 0; c < 256; ++c) {
    float v = e4m3ToF32(uint8_t(c));
    if (!std::isnan(v)) {
      EXPECT_EQ(f32ToE4m3(v), c) << "code " << c;
    }
  }
}

TEST(E4M3, RoundingSaturationAndNaN) {
  EXPECT_EQ(f32ToE4m3(std::ldexp(1.0f, -10)), 0x00);     // 0 vs 2^-9: 0
  EXPECT_EQ(f32ToE4m3(3 * std::ldexp(1.0f, -10)), 0x02); // 1 vs 2 units: 2
  EXPECT_EQ(f32ToE4m3(1.0625f), 0x38);                   // 1 vs 1.125: 1
  EXPECT_EQ(f32ToE4m3(1.1875f), 0x3a);                   // 1.125 vs 1.25: 1.25
  EXPECT_EQ(f32ToE4m3(464.0f), 0x7e);
  EXPECT_EQ(f32ToE4m3(1e10f), 0x7e);
  EXPECT_EQ(f32ToE4m3(-1e10f), 0xfe);
  EXPECT_EQ(f32ToE4m3(kInf), 0x7e);
  EXPECT_EQ(f32ToE4m3(-kInf), 0xfe);
  EXPECT_TRUE(std::isnan(e4m3ToF32(f32ToE4m3(kNaN))));
  EXPECT_TRUE(std::isnan(e4m3ToF32(f32ToE4m3(-kNaN))));
  EXPECT_EQ(f32ToE4m3(std::ldexp(1.0f, -11)), 0x00);
  EXPECT_EQ(f32ToE4m3(-0.0f), 0x80);
}

TEST(E4M3, MatchesBruteForceOnRandomValues) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> exponent(-12.0f, 10.0f);
  for (int i = 0; i < 20000; ++i) {
    float x = std::exp2(exponent(rng)) * ((i & 1) ? -1.0f : 1.0f);
    unsigned expected = nearestCode(
        std::fabs(x), 0x7e, [](unsigned c) { return e4m3ToF32(uint8_t(c)); });
    expected |= std::signbit(x) ? 0x80 : 0;
    ASSERT_EQ(f32ToE4m3(x), expected) << x;
  }
}

//===-- E5M2
//------------------------------------------------------------------===//

TEST(E5M2, SpecValues) {
  EXPECT_EQ(e5m2ToF32(0x7b), 57344.0f);
  EXPECT_EQ(e5m2ToF32(0x01), std::ldexp(1.0f, -16));
  EXPECT_EQ(e5m2ToF32(0x04), std::ldexp(1.0f, -14));
  EXPECT_EQ(e5m2ToF32(0x3c), 1.0f);
  EXPECT_EQ(e5m2ToF32(0x7c), kInf);
  EXPECT_EQ(e5m2ToF32(0xfc), -kInf);
  for (uint8_t c : {0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff})
    EXPECT_TRUE(std::isnan(e5m2ToF32(c))) << int(c);
  for (unsigned c = 0; c < 256; ++c) {
    float v = e5m2ToF32(uint8_t(c));
    if (!std::isnan(v)) {
      EXPECT_EQ(f32ToE5m2(v), c) << "code " << c;
    }
  }
}

TEST(E5M2, RoundingOverflowAndNaN) {
  EXPECT_EQ(f32ToE5m2(61439.0f), 0x7b);
  EXPECT_EQ(f32ToE5m2(61440.0f), 0x7c); // tie with the next (odd) step: inf
  EXPECT_EQ(f32ToE5m2(1e6f), 0x7c);
  EXPECT_EQ(f32ToE5m2(-1e6f), 0xfc);
  EXPECT_EQ(f32ToE5m2(kInf), 0x7c);
  EXPECT_EQ(f32ToE5m2(1.125f), 0x3c); // 1 vs 1.25: 1
  EXPECT_EQ(f32ToE5m2(1.375f), 0x3e); // 1.25 vs 1.5: 1.5
  EXPECT_TRUE(std::isnan(e5m2ToF32(f32ToE5m2(kNaN))));
}

TEST(E5M2, MatchesBruteForceOnRandomValues) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> exponent(-18.0f, 15.8f);
  for (int i = 0; i < 20000; ++i) {
    float x = std::exp2(exponent(rng)) * ((i & 1) ? -1.0f : 1.0f);
    unsigned expected = nearestCode(
        std::fabs(x), 0x7b, [](unsigned c) { return e5m2ToF32(uint8_t(c)); });
    expected |= std::signbit(x) ? 0x80 : 0;
    ASSERT_EQ(f32ToE5m2(x), expected) << x;
  }
}

//===-- E8M0
//------------------------------------------------------------------===//

TEST(E8M0, SpecValues) {
  EXPECT_EQ(e8m0ToF32(127), 1.0f);
  EXPECT_EQ(e8m0ToF32(128), 2.0f);
  EXPECT_EQ(e8m0ToF32(126), 0.5f);
  EXPECT_EQ(e8m0ToF32(254), std::ldexp(1.0f, 127));
  EXPECT_EQ(e8m0ToF32(1), std::ldexp(1.0f, -126));
  EXPECT_EQ(e8m0ToF32(0), std::ldexp(1.0f, -127));
  EXPECT_TRUE(std::isnan(e8m0ToF32(255)));
  for (int c = 0; c < 255; ++c) {
    EXPECT_EQ(e8m0ToF32(uint8_t(c)), std::ldexp(1.0f, c - 127)) << c;
    EXPECT_EQ(e8m0Exponent(uint8_t(c)), c - 127);
    EXPECT_EQ(e8m0FromExponent(c - 127), c);
  }
  EXPECT_EQ(e8m0FromExponent(-500), 0);
  EXPECT_EQ(e8m0FromExponent(500), 254); // never the NaN code
}

//===-- bf16 / f16
//------------------------------------------------------------===//

TEST(BF16, RoundTripsAndRounds) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    float v = bf16ToF32(uint16_t(b));
    EXPECT_EQ(bitsOf(v), b << 16);
    if (std::isnan(v))
      EXPECT_TRUE(std::isnan(bf16ToF32(f32ToBf16(v))));
    else
      ASSERT_EQ(f32ToBf16(v), b);
  }
  EXPECT_EQ(f32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(f32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);     // tie: even
  EXPECT_EQ(f32ToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82); // tie: even
  EXPECT_EQ(f32ToBf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)),
            0x3f81);
  EXPECT_EQ(f32ToBf16(std::numeric_limits<float>::max()),
            0x7f80); // rounds to inf
  // A signalling NaN whose payload sits in the dropped bits stays NaN.
  uint16_t nan = f32ToBf16(fromBits(0x7f800001u));
  EXPECT_TRUE(std::isnan(bf16ToF32(nan)));
  EXPECT_TRUE(nan & 0x0040);
  EXPECT_EQ(f32ToBf16(-kInf), 0xff80);
}

TEST(F16, RoundTripsAndRounds) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    float v = f16ToF32(uint16_t(b));
    if (std::isnan(v))
      EXPECT_TRUE(std::isnan(f16ToF32(f32ToF16(v))));
    else
      ASSERT_EQ(f32ToF16(v), b) << std::hex << b;
  }
  EXPECT_EQ(f16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(f16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(f16ToF32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16ToF32(0x7c00), kInf);
  EXPECT_EQ(f32ToF16(65519.0f), 0x7bff);
  EXPECT_EQ(f32ToF16(65520.0f), 0x7c00);
  EXPECT_EQ(f32ToF16(std::ldexp(1.0f, -25)), 0x0000);     // tie: even
  EXPECT_EQ(f32ToF16(3 * std::ldexp(1.0f, -25)), 0x0002); // tie: even
  EXPECT_EQ(f32ToF16(-std::ldexp(1.0f, -14)), 0x8400);
  EXPECT_TRUE(std::isnan(f16ToF32(f32ToF16(fromBits(0x7f800001u)))));
}

#ifdef __FLT16_MAX__
TEST(F16, MatchesCompilerConversionOnRandomBits) {
  std::mt19937 rng(4);
  for (int i = 0; i < 200000; ++i) {
    float x = fromBits(rng());
    if (std::isnan(x))
      continue;
    _Float16 h = _Float16(x);
    uint16_t expected;
    std::memcpy(&expected, &h, 2);
    ASSERT_EQ(f32ToF16(x), expected) << x;
  }
}
#endif

//===-- MXFP4
//-----------------------------------------------------------------===//

TEST(Mxfp4, PacksLowNibbleFirst) {
  float block[32] = {1.0f, -0.5f, 4.0f, 6.0f};
  uint8_t packed[16];
  uint8_t scale = quantizeMxfp4Block(block, packed);
  EXPECT_EQ(scale, 127); // amax 6: floor(log2 6) - 2 = 0
  EXPECT_EQ(packed[0], 0x92);
  EXPECT_EQ(packed[1], 0x76);
  for (int i = 2; i < 16; ++i)
    EXPECT_EQ(packed[i], 0);
  float out[32];
  dequantizeMxfp4Block(packed, scale, out);
  for (int i = 0; i < 32; ++i)
    EXPECT_EQ(out[i], block[i]);
}

TEST(Mxfp4, SharedExponentAndSaturation) {
  float block[32] = {};
  block[5] = 7.9f; // floor(log2 7.9) - 2 = 0: 7.9 saturates to 6
  block[6] = -0.3f;
  uint8_t packed[16];
  EXPECT_EQ(quantizeMxfp4Block(block, packed), 127);
  float out[32];
  dequantizeMxfp4Block(packed, 127, out);
  EXPECT_EQ(out[5], 6.0f);
  EXPECT_EQ(out[6], -0.5f);

  block[5] = 1000.0f; // floor(log2 1000) = 9: exponent 7, 1000/128 = 7.8 -> 6
  EXPECT_EQ(quantizeMxfp4Block(block, packed), 127 + 7);
  dequantizeMxfp4Block(packed, 127 + 7, out);
  EXPECT_EQ(out[5], 768.0f);
  EXPECT_EQ(out[6], 0.0f);
}

TEST(Mxfp4, EdgeBlocks) {
  float zeros[32] = {};
  uint8_t packed[16];
  EXPECT_EQ(quantizeMxfp4Block(zeros, packed), 127); // documented choice: 1.0
  for (uint8_t b : packed)
    EXPECT_EQ(b, 0);

  float tiny[32] = {std::ldexp(1.0f, -140)}; // exponent clamps to -127
  EXPECT_EQ(quantizeMxfp4Block(tiny, packed), 0);
  EXPECT_EQ(packed[0], 0); // 2^-13 of the smallest scale rounds to 0

  float huge[32] = {std::numeric_limits<float>::max()};
  uint8_t scale = quantizeMxfp4Block(huge, packed);
  EXPECT_EQ(scale, 127 + 125);
  EXPECT_EQ(packed[0], 0x7);

  float withNaN[32] = {1.0f, kNaN};
  EXPECT_EQ(quantizeMxfp4Block(withNaN, packed), kE8m0Nan);
  float out[32];
  dequantizeMxfp4Block(packed, kE8m0Nan, out);
  for (float v : out)
    EXPECT_TRUE(std::isnan(v));
  float withInf[32] = {1.0f, kInf};
  EXPECT_EQ(quantizeMxfp4Block(withInf, packed), kE8m0Nan);
}

TEST(Mxfp4, RandomRoundTripMatchesSpec) {
  const int64_t rows = 7, cols = 96;
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::uniform_int_distribution<int> rowScale(-20, 20);
  std::vector<float> src(rows * cols), out(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    float s = std::ldexp(1.0f, rowScale(rng));
    for (int64_t c = 0; c < cols; ++c)
      src[r * cols + c] = dist(rng) * s;
  }
  std::vector<uint8_t> packed(rows * cols / 2), scales(rows * cols / 32);
  quantizeMxfp4(src.data(), rows, cols, packed.data(), scales.data());
  dequantizeMxfp4(packed.data(), scales.data(), rows, cols, out.data());
  for (int64_t b = 0; b < rows * cols / 32; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i)
      amax = std::max(amax, std::fabs(src[b * 32 + i]));
    int exponent = int(std::floor(std::log2(amax))) - 2;
    ASSERT_EQ(scales[b], exponent + 127);
    float s = std::ldexp(1.0f, exponent);
    for (int i = 0; i < 32; ++i) {
      float x = src[b * 32 + i];
      unsigned code = nearestCode(std::fabs(x) / s, 7, [](unsigned c) {
        return e2m1ToF32(uint8_t(c));
      });
      float expected = std::copysign(e2m1ToF32(uint8_t(code)) * s, x);
      ASSERT_EQ(out[b * 32 + i], expected) << "block " << b << " elem " << i;
      // Grid gaps are at most 2 units and amax < 8 units: error <= 2 units.
      ASSERT_LE(std::fabs(out[b * 32 + i] - x), 2 * s);
    }
  }
}

TEST(Mxfp4, RejectsBadColumns) {
  std::vector<float> src(40);
  std::vector<uint8_t> packed(20), scales(2);
  try {
    quantizeMxfp4(src.data(), 1, 40, packed.data(), scales.data());
    FAIL() << "expected an error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("multiple of the MXFP4 block size 32"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(dequantizeMxfp4(packed.data(), scales.data(), 1, 0, src.data()),
               Error);
  EXPECT_THROW(quantizeMxfp4(src.data(), -1, 32, packed.data(), scales.data()),
               Error);
}

//===-- FP8 block-scaled
//------------------------------------------------------===//

TEST(Fp8Block, PartialBlocksRoundTrip) {
  const int64_t rows = 130, cols = 200; // 2 x 2 blocks, the last ones partial
  ASSERT_EQ(fp8ScaleDim(rows), 2);
  ASSERT_EQ(fp8ScaleDim(cols), 2);
  std::mt19937 rng(6);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const float blockMagnitude[2][2] = {{1e-3f, 10.0f}, {300.0f, 0.0f}};
  std::vector<float> src(rows * cols), out(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      src[r * cols + c] = dist(rng) * blockMagnitude[r / 128][c / 128];
  std::vector<uint8_t> q(rows * cols);
  std::vector<float> scales(4);
  quantizeFp8Block(src.data(), rows, cols, q.data(), scales.data());
  for (int br = 0; br < 2; ++br)
    for (int bc = 0; bc < 2; ++bc) {
      float amax = 0;
      for (int64_t r = br * 128; r < std::min<int64_t>(rows, br * 128 + 128);
           ++r)
        for (int64_t c = bc * 128; c < std::min<int64_t>(cols, bc * 128 + 128);
             ++c)
          amax = std::max(amax, std::fabs(src[r * cols + c]));
      EXPECT_EQ(scales[br * 2 + bc], amax == 0 ? 1.0f : amax / 448.0f);
    }
  dequantizeFp8Block(q.data(), scales.data(), rows, cols, out.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float x = src[r * cols + c], s = scales[(r / 128) * 2 + c / 128];
      // Half an ulp of a 3-bit mantissa, or half the subnormal step.
      float bound = std::max(std::fabs(x) * 0.0625f, s * std::ldexp(1.0f, -10));
      ASSERT_LE(std::fabs(out[r * cols + c] - x), bound * 1.0001f)
          << r << "," << c;
    }
  // The block amax maps to 448 exactly.
  EXPECT_EQ(*std::max_element(
                q.begin(), q.end(),
                [](uint8_t a, uint8_t b) { return (a & 0x7f) < (b & 0x7f); }) &
                0x7f,
            0x7e);
}

TEST(Fp8Block, DequantUsesTheScaleOfEachBlock) {
  const int64_t rows = 129, cols = 257;      // scales 2 x 3
  std::vector<uint8_t> q(rows * cols, 0x38); // 1.0
  std::vector<float> scales = {1, 2, 3, 4, 5, 6}, out(rows * cols);
  dequantizeFp8Block(q.data(), scales.data(), rows, cols, out.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      ASSERT_EQ(out[r * cols + c], scales[(r / 128) * 3 + c / 128]);
}

TEST(Fp8Block, NonFiniteBlockGetsNaNScale) {
  std::vector<float> src(4, 1.0f);
  src[2] = kInf;
  std::vector<uint8_t> q(4);
  float scale = 0;
  quantizeFp8Block(src.data(), 2, 2, q.data(), &scale);
  EXPECT_TRUE(std::isnan(scale));
  EXPECT_THROW(quantizeFp8Block(src.data(), 2, -2, q.data(), &scale), Error);
}

TEST(Fp8Block, TinyBlockKeepsANonzeroScale) {
  float src[2] = {std::numeric_limits<float>::denorm_min(), 0.0f};
  uint8_t q[2];
  float scale = 0, out[2];
  quantizeFp8Block(src, 1, 2, q, &scale);
  EXPECT_GT(scale, 0.0f);
  dequantizeFp8Block(q, &scale, 1, 2, out);
  EXPECT_FALSE(std::isnan(out[0]));
  EXPECT_EQ(out[1], 0.0f);
}
