// Pointwise math shared by rnnkit's C++ extensions (fused_cpu and scan): the activations, torch.lerp
// (zoneout's mix) and layer norm's row statistics and backward. Everything here is plain arithmetic
// on scalars or contiguous rows so that GCC vectorises the loops that call it (-O3 -march=native
// -ffast-math; libmvec.h for exp/log/tanh).
#pragma once

#include <cmath>
#include <cstdint>

#include "libmvec.h"

namespace rnnkit {

constexpr double kLayerNormEps = 1e-5;  // F.layer_norm's default, as in rnnkit.cells.base.layer_norm

// exp for the float pointwise passes: Cephes' expf polynomial (range reduction by ln 2, degree-6
// polynomial, 2^n by exponent bits), ~1 ulp on the clamped range, written as plain arithmetic so
// that GCC vectorises it in registers. libmvec's vector expf/tanhf are calls that clobber every
// vector register, so loops with several of them spill around each call; this is ~2x faster there.
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);  // (std::fmin/fmax block vectorisation)
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

// sigmoid for the fused loops: libm's exp for double, exp_approx for float
template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
template <>
inline float sigmoid(float x) {
  return 1.0f / (1.0f + exp_approx(-x));
}

// sigmoid through libm's (libmvec's) exp for both types: the scan kernels' (memory-bound, so the
// call's cost does not show there)
template <typename T>
inline T sigmoid_libm(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// tanh: libm's for double; for float 1 - 2 / (1 + e^{2x}) (absolute error ~1e-7, float's epsilon)
template <typename T>
inline T tanh_(T x) {
  return std::tanh(x);
}
template <>
inline float tanh_(float x) {
  return 1.0f - 2.0f / (1.0f + exp_approx(2.0f * x));
}

template <typename T>
inline T relu(T x) {
  return x > T(0) ? x : T(0);
}

// torch.lerp(start, end, w): start + w (end - start) for |w| < 0.5, else end - (end - start)(1 - w)
// (written branch-free: a select here keeps GCC from vectorising the loops that call it)
template <typename T>
inline T lerp(T start, T end, T w) {
  const T d = end - start;
  const T low = T(std::abs(w) < T(0.5));
  return low * (start + w * d) + (T(1) - low) * (end - d * (T(1) - w));
}

// mean and 1/sqrt(var + eps) of a row of n values (biased variance, as F.layer_norm), in one pass:
// sums of x - x[0] and of its square (the shift keeps the one-pass variance accurate when |mean| is
// large next to the spread; the reductions vectorise under -ffast-math).
template <typename T>
inline void row_stats(const T* x, int64_t n, T& mean, T& rstd) {
  const T x0 = x[0];
  T s = 0, s2 = 0;
  #pragma GCC ivdep
  for (int64_t j = 0; j < n; ++j) {
    const T d = x[j] - x0;
    s += d;
    s2 += d * d;
  }
  const T m = s / T(n);
  mean = x0 + m;
  const T v = s2 / T(n) - m * m;
  rstd = T(1) / std::sqrt((v > T(0) ? v : T(0)) + T(kLayerNormEps));
}

// dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy * w
template <typename T>
inline void ln_backward_row(const T* dy, const T* w, const T* xhat, T rstd, int64_t n, T* dx) {
  T m1 = 0, m2 = 0;
  #pragma GCC ivdep
  for (int64_t j = 0; j < n; ++j) {
    T g = dy[j] * w[j];
    m1 += g;
    m2 += g * xhat[j];
  }
  m1 /= T(n);
  m2 /= T(n);
  #pragma GCC ivdep
  for (int64_t j = 0; j < n; ++j) dx[j] = rstd * (dy[j] * w[j] - m1 - xhat[j] * m2);
}

}  // namespace rnnkit
