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

#ifndef RNNKIT_INT8_GRAIN_LOG  // bytes of int8 weights from which the products use the threads
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

// B rows of float32 activations quantized for int8_xw: bytes (rows of Kp, offset by 128) and scales
struct QuantizedActivations {
  std::vector<uint8_t> bytes;
  std::vector<float> scale;
};

inline void quantize_activations(int64_t B, const float* A, int64_t K, int64_t Kp, QuantizedActivations& out) {
  out.bytes.assign(size_t(B * Kp), 128);  // zero, offset
  out.scale.assign(size_t(B), 1.0f);
  for (int64_t b = 0; b < B; ++b) {
    const float* a = A + b * K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(a[k]));
    const float s = amax > 0.0f ? amax / 127.0f : 1.0f, inv = 1.0f / s;
    out.scale[size_t(b)] = s;
    uint8_t* row = out.bytes.data() + b * Kp;
    for (int64_t k = 0; k < K; ++k)
      row[k] = uint8_t(std::clamp<int32_t>(int32_t(std::nearbyint(a[k] * inv)), -127, 127) + 128);
  }
}

constexpr int64_t kInt8Group = 4;  // blocks of 16 rows per broadcast of the activations

inline int64_t int8_groups(const Int8Weight& W) {
  return (W.Np / kInt8Rows + kInt8Group - 1) / kInt8Group;
}

// Groups [g0, g1) of W's rows: C[b, r] for those rows and every b.
inline void int8_rows(int64_t B, const QuantizedActivations& act, const Int8Weight& W, float* C, int64_t g0,
                      int64_t g1) {
  const int64_t N = W.N, Kp = W.Kp, groups = Kp / kInt8Depth, blocks = W.Np / kInt8Rows;
  const int64_t stride = groups * kInt8Rows * kInt8Depth;
  alignas(64) int32_t acc[kInt8Group * kInt8Rows];
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t b0 = g * kInt8Group, nb = std::min(kInt8Group, blocks - b0);
    const int8_t* first = W.q.data() + b0 * stride;
    const int64_t r0 = b0 * kInt8Rows, rows = std::min(nb * kInt8Rows, N - r0);
    for (int64_t b = 0; b < B; ++b) {
      const uint8_t* a = act.bytes.data() + b * Kp;
      switch (nb) {
        case 4: block_dot<4>(a, first, stride, groups, acc); break;
        case 3: block_dot<3>(a, first, stride, groups, acc); break;
        case 2: block_dot<2>(a, first, stride, groups, acc); break;
        default: block_dot<1>(a, first, stride, groups, acc); break;
      }
      const float sa = act.scale[size_t(b)];
      for (int64_t r = 0; r < rows; ++r)
        C[b * N + r0 + r] = sa * W.scale[size_t(r0 + r)] * float(acc[r] - 128 * W.row_sum[size_t(r0 + r)]);
    }
  }
}

// C1[B, N1] = A1[B, K1] W1^T and, if W2, C2 = A2 W2^T (a step's two projections) in one parallel
// region over both weights' row groups: on two threads each core keeps about one weight in its L2
// from step to step. Small products run inline (a fork costs about a microsecond).
inline void int8_xwT2(int64_t B, const float* A1, const Int8Weight& W1, float* C1, const float* A2,
                      const Int8Weight* W2, float* C2) {
  thread_local QuantizedActivations act1, act2;
  quantize_activations(B, A1, W1.K, W1.Kp, act1);
  if (W2) quantize_activations(B, A2, W2->K, W2->Kp, act2);
  const int64_t n1 = int8_groups(W1), n2 = W2 ? int8_groups(*W2) : 0, total = n1 + n2;
  const int64_t bytes = B * (W1.Np * W1.Kp + (W2 ? W2->Np * W2->Kp : 0));
  const int64_t threads = std::max<int64_t>(at::get_num_threads(), 1);
  const int64_t grain = bytes < (int64_t(1) << RNNKIT_INT8_GRAIN_LOG) ? total : (total + threads - 1) / threads;
  const QuantizedActivations& a1 = act1;
  const QuantizedActivations& a2 = act2;
  at::parallel_for(0, total, std::max<int64_t>(grain, 1), [&](int64_t g0, int64_t g1) {
    if (g0 < n1) int8_rows(B, a1, W1, C1, g0, std::min(g1, n1));
    if (g1 > n1) int8_rows(B, a2, *W2, C2, std::max(g0, n1) - n1, g1 - n1);
  });
}

}  // namespace rnnkit
