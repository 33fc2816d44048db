// The streaming step's projections with int8 weights (Recurrent.step_precision = "int8"): dynamic
// quantization as torch's quantize_dynamic does it. Each weight row is quantized once, symmetric
// (scale max|w| / 127); at every step each row of the activations (x or h) is quantized symmetric
// too and offset by 128 to unsigned bytes, the products summed in int32 (AVX512-VNNI's vpdpbusd:
// 64 byte products per instruction, 16 rows at once) and scaled back to float32: C[b, r] = s_a[b] s_w[r]
// (sum_k (a_q + 128) w_q - 128 sum_k w_q). Padding: activation bytes past K are 128 (zero) against zero
// weights, so they add nothing.
//
// Why: at B=1 the float32 step streams its weights from L2/L3 (2 MiB for an LSTM layer at H=256);
// int8 weights are a quarter of that and four times the multiply-adds per instruction.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>
#endif

namespace rnnkit {

#ifndef RNNKIT_INT8_GRAIN_LOG
#define RNNKIT_INT8_GRAIN_LOG 17
#endif
constexpr int64_t kInt8Rows = 16;  // output rows per block: the 16 int32 lanes of one zmm
constexpr int64_t kInt8Depth = 4;  // bytes of K per lane per vpdpbusd

// W quantized and laid out for vpdpbusd with a broadcast activation: per block of 16 rows, for each
// group of 4 values of K, the 16 rows' 4 bytes side by side (64 bytes), so that lane r of one
// instruction accumulates row r's dot product (no horizontal sums). N and K are zero-padded.
struct Int8Weight {
  int64_t N = 0, K = 0, Np = 0, Kp = 0;
  std::vector<int8_t> q;         // Np / 16 blocks x Kp / 4 groups x 16 rows x 4 bytes
  std::vector<float> scale;      // per row (Np): max|w| / 127 (1 for a zero row)
  std::vector<int32_t> row_sum;  // per row (Np): sum of q, for the activations' +128 offset
};

// W [N, K] row-major, float32
inline Int8Weight quantize_rows(const float* W, int64_t N, int64_t K) {
  Int8Weight out;
  out.N = N;
  out.K = K;
  out.Np = (N + kInt8Rows - 1) / kInt8Rows * kInt8Rows;
  out.Kp = (K + kInt8Depth - 1) / kInt8Depth * kInt8Depth;
  out.q.assign(size_t(out.Np * out.Kp), 0);
  out.scale.assign(size_t(out.Np), 1.0f);
  out.row_sum.assign(size_t(out.Np), 0);
  const int64_t groups = out.Kp / kInt8Depth;
  for (int64_t r = 0; r < N; ++r) {
    const float* w = W + r * K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(w[k]));
    const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
    out.scale[size_t(r)] = s;
    int32_t sum = 0;
    int8_t* block = out.q.data() + (r / kInt8Rows) * groups * kInt8Rows * kInt8Depth;
    for (int64_t k = 0; k < K; ++k) {
      const int32_t v = std::clamp<int32_t>(int32_t(std::nearbyint(w[k] / s)), -127, 127);
      block[(k / kInt8Depth) * kInt8Rows * kInt8Depth + (r % kInt8Rows) * kInt8Depth + k % kInt8Depth] =
          int8_t(v);
      sum += v;
    }
    out.row_sum[size_t(r)] = sum;
  }
  return out;
}

// NB blocks of 16 rows (consecutive in q, `stride` bytes apart): acc[16 j + r] = sum_k a[k] q_j[r][k]
// (a unsigned, groups x 4 bytes). One broadcast of a's 4 bytes serves the NB blocks' instructions.
template <int NB>
inline void block_dot(const uint8_t* a, const int8_t* block, int64_t stride, int64_t groups, int32_t* acc) {
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  __m512i s[NB];
  for (int j = 0; j < NB; ++j) s[j] = _mm512_setzero_si512();
  for (int64_t g = 0; g < groups; ++g) {
    int32_t a4;
    std::memcpy(&a4, a + g * kInt8Depth, 4);
    const __m512i av = _mm512_set1_epi32(a4);
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j)
      s[j] = _mm512_dpbusd_epi32(s[j], av, _mm512_loadu_si512(block + j * stride + g * 64));
  }
  for (int j = 0; j < NB; ++j) _mm512_storeu_si512(acc + j * kInt8Rows, s[j]);
#else
  for (int j = 0; j < NB; ++j) {
    const int8_t* q = block + j * stride;
    int32_t* out = acc + j * kInt8Rows;
    for (int64_t r = 0; r < kInt8Rows; ++r) out[r] = 0;
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t r = 0; r < kInt8Rows; ++r)
        for (int64_t d = 0; d < kInt8Depth; ++d)
          out[r] += int32_t(a[g * kInt8Depth + d]) * int32_t(q[g * 64 + r * kInt8Depth + d]);
  }
#endif
}

// C[B, N] = A[B, K] W^T with W quantized (quantize_rows); A float32, rows contiguous.
inline void int8_xwT(int64_t B, const float* A, const Int8Weight& W, float* C) {
  const int64_t N = W.N, K = W.K, Kp = W.Kp, groups = Kp / kInt8Depth;
  thread_local std::vector<uint8_t> aq;
  thread_local std::vector<float> sa;
  aq.assign(size_t(B * Kp), 128);  // zero, offset
  sa.assign(size_t(B), 1.0f);
  for (int64_t b = 0; b < B; ++b) {
    const float* a = A + b * K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(a[k]));
    const float s = amax > 0.0f ? amax / 127.0f : 1.0f, inv = 1.0f / s;
    sa[size_t(b)] = s;
    uint8_t* out = aq.data() + b * Kp;
    for (int64_t k = 0; k < K; ++k)
      out[k] = uint8_t(std::clamp<int32_t>(int32_t(std::nearbyint(a[k] * inv)), -127, 127) + 128);
  }
  const int64_t blocks = W.Np / kInt8Rows;
  // threads only for large products: a fork costs about as much as 64 blocks at K=256
  const int64_t grain = std::max<int64_t>((int64_t(1) << RNNKIT_INT8_GRAIN_LOG) / std::max<int64_t>(kInt8Rows * B * Kp, 1), 8);
  const uint8_t* aqp = aq.data();
  const float* sap = sa.data();
  constexpr int64_t kGroup = 4;  // blocks per broadcast
  const int64_t stride = groups * kInt8Rows * kInt8Depth;
  const int64_t quads = (blocks + kGroup - 1) / kGroup;
  at::parallel_for(0, quads, std::max<int64_t>(grain / kGroup, 1), [&](int64_t k0, int64_t k1) {
    alignas(64) int32_t acc[kGroup * kInt8Rows];
    for (int64_t quad = k0; quad < k1; ++quad) {
      const int64_t b0 = quad * kGroup, nb = std::min(kGroup, blocks - b0);
      const int8_t* first = W.q.data() + b0 * stride;
      const int64_t r0 = b0 * kInt8Rows, rows = std::min(nb * kInt8Rows, N - r0);
      for (int64_t b = 0; b < B; ++b) {
        const uint8_t* a = aqp + b * Kp;
        switch (nb) {
          case 4: block_dot<4>(a, first, stride, groups, acc); break;
          case 3: block_dot<3>(a, first, stride, groups, acc); break;
          case 2: block_dot<2>(a, first, stride, groups, acc); break;
          default: block_dot<1>(a, first, stride, groups, acc); break;
        }
        for (int64_t r = 0; r < rows; ++r)
          C[b * N + r0 + r] = sap[b] * W.scale[size_t(r0 + r)] *
                              float(acc[r] - 128 * W.row_sum[size_t(r0 + r)]);
      }
    }
  });
}

}  // namespace rnnkit
