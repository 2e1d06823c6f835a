//===- ExactMath.h - exp that the GPU and the CPU round the same way ------===//
//
// The device library, the host executor and the CPU reference model all take
// their exponentials (sigmoid routing, SiLU, softmax) from tilec_expf, built
// only from operations IEEE 754 rounds exactly (fma, add, multiply, scaling by
// a power of two), so every executor gets the same bits for the same input.
// With CUDA's expf on one side and the C library's on the other, results one
// ulp apart flip near-tied router choices (sigmoid saturates near 1, where
// many experts' scores differ only in the last bits) and from there tokens.
//
// Accuracy: at most 2 ulp from the correctly rounded exp for x in
// [-87.3, 88.7]; below that 0 (results under FLT_MIN flush), above +inf; NaN
// passes through. NVRTC compiles this header with no standard library.
//
//===----------------------------------------------------------------------===//
#ifndef TILEC_RUNTIME_ABI_EXACTMATH_H
#define TILEC_RUNTIME_ABI_EXACTMATH_H

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define TILEC_XM_FN __host__ __device__ __forceinline__
#else
#define TILEC_XM_FN inline
#endif
#ifndef __CUDACC_RTC__
// The host side (a C++ compiler, or nvcc's host pass: tests/gpu's
// device_test.cu) takes std::fma and std::memcpy.
#include <cmath>
#include <cstring>
#endif

namespace tilec {
namespace xm {

/// a * b + c rounded once.
TILEC_XM_FN float fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
/// a + b and a * b, rounded on their own (never contracted into an fma).
TILEC_XM_FN float add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  volatile float s = a + b; // keeps a host compiler from contracting
  return s;
#endif
}
TILEC_XM_FN float mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  volatile float p = a * b;
  return p;
#endif
}
TILEC_XM_FN float from_bits(unsigned int bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

/// e^x: x = n ln2 + r (Cody-Waite, |r| <= ln2 / 2), e^r by its degree-7
/// Taylor polynomial (Horner with fma), times 2^n.
TILEC_XM_FN float exp(float x) {
  if (!(x == x))
    return x; // NaN
  if (x > 88.72283f)
    return from_bits(0x7f800000u); // +inf
  if (x < -87.33654f)
    return 0.0f;                    // below FLT_MIN, and -inf
  const float kMagic = 12582912.0f; // 1.5 * 2^23: adding it rounds to integer
  const float kd = add(fma(x, 1.44269502f, kMagic), -kMagic); // round(x/ln2)
  const int n = int(kd);
  float r = fma(kd, -0.693145752f, x); // ln2's high part (exact products)
  r = fma(kd, -1.42860677e-6f, r);     // and its low part
  float p = 1.98412698e-4f;            // 1/7!
  p = fma(p, r, 1.38888889e-3f);       // 1/6!
  p = fma(p, r, 8.33333377e-3f);       // 1/5!
  p = fma(p, r, 4.16666679e-2f);       // 1/4!
  p = fma(p, r, 1.66666672e-1f);       // 1/3!
  p = fma(p, r, 0.5f);
  p = fma(p, r, 1.0f);
  p = fma(p, r, 1.0f);
  if (n > 127) // 2^128 is no float: scale in two steps
    return mul(mul(p, from_bits(254u << 23)), 2.0f);
  return mul(p, from_bits(unsigned(n + 127) << 23));
}

/// 1 / (1 + e^-x), the router's score.
TILEC_XM_FN float sigmoid(float x) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(1.0f, add(1.0f, exp(-x)));
#else
  volatile float q = 1.0f / add(1.0f, exp(-x));
  return q;
#endif
}

/// g / (1 + e^-g), SiLU.
TILEC_XM_FN float silu(float g) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(g, add(1.0f, exp(-g)));
#else
  volatile float q = g / add(1.0f, exp(-g));
  return q;
#endif
}

} // namespace xm
} // namespace tilec

#endif // TILEC_RUNTIME_ABI_EXACTMATH_H
