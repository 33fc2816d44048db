// The weight gradients of a recurrent layer: dW[N, K] = dG^T X, summed over every step and batch row,
// with dG [M, N] (the gates' gradients) and X [M, K] (the layer's input, or h_{t-1}) row-major and
// M = T * B large.
//
// MKL's sgemm runs its AVX2 code path on AMD CPUs: 170-180 GF/s on two Zen 5 cores at (100 x 32 rows,
// 512 gates, 128 inputs), while the AVX-512 tile kernel of packed_gemm.h reaches ~460 GF/s on the
// input projection there. This is the same register tile (8 rows x 32 columns of C, 16 zmm
// accumulators) with the operands read where they lie, so nothing is transposed or packed:
//   - C row n, column k: sum over m of dG[m, n] * X[m, k];
//   - per m, the 8 rows' factors are 8 adjacent entries of one dG row (broadcasts) and the 32 columns
//     are 32 adjacent entries of one X row (two vector loads, masked for a partial last panel).
// The sum over m runs in blocks of kBlockM rows so that the X block and a strip of dG stay in L2
// while every tile of C passes over them. Threads own disjoint row ranges of C (no reduction).
#pragma once

#include <algorithm>
#include <cstdint>

#include "packed_gemm.h"

namespace rnnkit_packed {

#if defined(__AVX512F__)
template <int R, bool FULL>
inline void tile_tn(const float* G, int64_t ldg, const float* X, int64_t ldx, int64_t M, float* C,
                    int64_t ldc, __mmask16 m0, __mmask16 m1, bool accumulate) {
  __m512 c0[R], c1[R];
  for (int r = 0; r < R; ++r) {
    c0[r] = _mm512_setzero_ps();
    c1[r] = _mm512_setzero_ps();
  }
  for (int64_t m = 0; m < M; ++m) {
    const float* x = X + m * ldx;
    const __m512 b0 = FULL ? _mm512_loadu_ps(x) : _mm512_maskz_loadu_ps(m0, x);
    const __m512 b1 = FULL ? _mm512_loadu_ps(x + 16) : _mm512_maskz_loadu_ps(m1, x + 16);
    const float* g = G + m * ldg;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(g[r]);
      c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
    }
  }
  store_tile<R, FULL>(c0, c1, C, ldc, m0, m1, accumulate);
}

template <bool FULL>
inline void tile_tn_rows(int64_t rows, const float* G, int64_t ldg, const float* X, int64_t ldx,
                         int64_t M, float* C, int64_t ldc, __mmask16 m0, __mmask16 m1, bool acc) {
  switch (rows) {
    case 8: tile_tn<8, FULL>(G, ldg, X, ldx, M, C, ldc, m0, m1, acc); break;
    case 7: tile_tn<7, FULL>(G, ldg, X, ldx, M, C, ldc, m0, m1, acc); break;
    case 6: tile_tn<6, FULL>(G, ldg, X, ldx, M, C, ldc, m0, m1, acc); break;
    case 5: tile_tn<5, FULL>(G, ldg, X, ldx, M, C, ldc, m0, m1, acc); break;
    case 4: tile_tn<4, FULL>(G, ldg, X, ldx, M, C, ldc, m0, m1, acc); break;
    case 3: tile_tn<3, FULL>(G, ldg, X, ldx, M, C, ldc, m0, m1, acc); break;
    case 2: tile_tn<2, FULL>(G, ldg, X, ldx, M, C, ldc, m0, m1, acc); break;
    case 1: tile_tn<1, FULL>(G, ldg, X, ldx, M, C, ldc, m0, m1, acc); break;
    default: break;
  }
}
#endif

constexpr int64_t kBlockM = 256;

// Rows n0..n1 of C [N, K] = dG^T X (dG [M, N], X [M, K], C rows at stride K), overwritten.
inline void weight_grad_rows(int64_t M, int64_t N, int64_t K, const float* dG, const float* X,
                             float* C, int64_t n0, int64_t n1) {
#if defined(__AVX512F__)
  for (int64_t mb = 0; mb < M; mb += kBlockM) {
    const int64_t mc = std::min(kBlockM, M - mb);
    const bool accumulate = mb > 0;
    for (int64_t r = n0; r < n1; r += 8) {
      const int64_t rows = std::min<int64_t>(8, n1 - r);
      for (int64_t c = 0; c < K; c += kPanel) {
        const int64_t cols = std::min(kPanel, K - c);
        const __mmask16 m0 = first_bits(cols), m1 = first_bits(cols - 16);
        const float* g = dG + mb * N + r;
        const float* x = X + mb * K + c;
        float* out = C + r * K + c;
        if (cols == kPanel)
          tile_tn_rows<true>(rows, g, N, x, K, mc, out, K, m0, m1, accumulate);
        else
          tile_tn_rows<false>(rows, g, N, x, K, mc, out, K, m0, m1, accumulate);
      }
    }
  }
#else
  (void)M; (void)N; (void)K; (void)dG; (void)X; (void)C; (void)n0; (void)n1;
#endif
}

}  // namespace rnnkit_packed
