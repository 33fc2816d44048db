// The per-step GEMMs of the fused recurrent loops: C[M,N] (+)= A[M,K] B[K,N] with M the rows of one
// batch chunk (1 to a few dozen), B a recurrent weight read at every step.
//
// MKL's sgemm reaches 60-80 GF/s on one core at these shapes (16 x 128 x 512, 16 x 512 x 128) on our
// AVX-512 machines; a register-tiled kernel over a B laid out once per sequence reaches ~115 GF/s
// (measured in isolation, same machine). So for float32 on AVX-512, B is packed into panels of 32
// columns (K rows of 32 contiguous floats each, the last panel zero-padded) and every step runs an
// 8-row x 32-column tile kernel: 16 accumulators in zmm registers, two panel loads and eight
// broadcasts of A per k. Without AVX-512, and for float64 (used by gradcheck), the caller's BLAS
// path runs instead (PackedB stays empty).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace rnnkit_packed {

constexpr int64_t kPanel = 32;

struct PackedB {
  int64_t K = 0, N = 0;
  std::vector<float> data;  // panels * K * kPanel floats
  bool empty() const { return data.empty(); }
};

inline bool packed_kernel_available() {
#if defined(__AVX512F__)
  return true;
#else
  return false;
#endif
}

// Lays out B [K, N] in panels: B = W^T for W [N, K] row-major (transposed: the forward's h W^T), or
// B = W for W [K, N] row-major (the backward's dG W).
inline void pack(const float* W, int64_t K, int64_t N, bool transposed, PackedB& out) {
  out.K = K;
  out.N = N;
  const int64_t panels = (N + kPanel - 1) / kPanel;
  out.data.assign(size_t(panels * K * kPanel), 0.0f);
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t n0 = p * kPanel, cols = std::min(kPanel, N - n0);
    float* panel = out.data.data() + p * K * kPanel;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < cols; ++j)
        panel[k * kPanel + j] = transposed ? W[(n0 + j) * K + k] : W[k * N + n0 + j];
  }
}

#if defined(__AVX512F__)
// Writes R rows x 32 columns of accumulators (c0: columns 0-15, c1: 16-31) to C (stride ldc), added
// to what C holds if accumulate. FULL: all 32 columns are real; otherwise masked by m0/m1 (masked
// stores are slow on AMD's Zen 4: only the last, partial panel uses them).
template <int R, bool FULL>
inline void store_tile(__m512 (&c0)[R], __m512 (&c1)[R], float* C, int64_t ldc, __mmask16 m0,
                       __mmask16 m1, bool accumulate) {
  for (int r = 0; r < R; ++r) {
    float* c = C + r * ldc;
    if constexpr (FULL) {
      if (accumulate) {
        c0[r] = _mm512_add_ps(c0[r], _mm512_loadu_ps(c));
        c1[r] = _mm512_add_ps(c1[r], _mm512_loadu_ps(c + 16));
      }
      _mm512_storeu_ps(c, c0[r]);
      _mm512_storeu_ps(c + 16, c1[r]);
    } else {
      if (accumulate) {
        c0[r] = _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(m0, c));
        c1[r] = _mm512_add_ps(c1[r], _mm512_maskz_loadu_ps(m1, c + 16));
      }
      _mm512_mask_storeu_ps(c, m0, c0[r]);
      _mm512_mask_storeu_ps(c + 16, m1, c1[r]);
    }
  }
}

// R rows of A (stride lda) times one panel into C (stride ldc); FULL and m0/m1 as store_tile.
template <int R, bool FULL>
inline void tile(const float* A, int64_t lda, const float* panel, int64_t K, float* C, int64_t ldc,
                 __mmask16 m0, __mmask16 m1, bool accumulate) {
  __m512 c0[R], c1[R];
  for (int r = 0; r < R; ++r) {
    c0[r] = _mm512_setzero_ps();
    c1[r] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    const __m512 b0 = _mm512_loadu_ps(panel + k * kPanel);
    const __m512 b1 = _mm512_loadu_ps(panel + k * kPanel + 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + k]);
      c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
    }
  }
  store_tile<R, FULL>(c0, c1, C, ldc, m0, m1, accumulate);
}

// every row block of one panel
template <bool FULL>
inline void panel_rows(int64_t M, const float* A, int64_t lda, const float* panel, int64_t K,
                       float* C, int64_t ldc, __mmask16 m0, __mmask16 m1, bool accumulate) {
  int64_t r = 0;
  for (; r + 8 <= M; r += 8)
    tile<8, FULL>(A + r * lda, lda, panel, K, C + r * ldc, ldc, m0, m1, accumulate);
  const float* Ar = A + r * lda;
  float* Cr = C + r * ldc;
  switch (M - r) {
    case 7: tile<7, FULL>(Ar, lda, panel, K, Cr, ldc, m0, m1, accumulate); break;
    case 6: tile<6, FULL>(Ar, lda, panel, K, Cr, ldc, m0, m1, accumulate); break;
    case 5: tile<5, FULL>(Ar, lda, panel, K, Cr, ldc, m0, m1, accumulate); break;
    case 4: tile<4, FULL>(Ar, lda, panel, K, Cr, ldc, m0, m1, accumulate); break;
    case 3: tile<3, FULL>(Ar, lda, panel, K, Cr, ldc, m0, m1, accumulate); break;
    case 2: tile<2, FULL>(Ar, lda, panel, K, Cr, ldc, m0, m1, accumulate); break;
    case 1: tile<1, FULL>(Ar, lda, panel, K, Cr, ldc, m0, m1, accumulate); break;
    default: break;
  }
}

inline __mmask16 first_bits(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}
#endif

// C[M, N] = A[M, K] B (+ C if accumulate); A rows at stride lda, C rows at stride ldc.
inline void gemm_packed(int64_t M, const float* A, int64_t lda, const PackedB& B, float* C,
                        int64_t ldc, bool accumulate) {
#if defined(__AVX512F__)
  const int64_t K = B.K, N = B.N;
  const int64_t panels = (N + kPanel - 1) / kPanel;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t cols = std::min(kPanel, N - p * kPanel);
    const __mmask16 m0 = first_bits(cols), m1 = first_bits(cols - 16);
    const float* panel = B.data.data() + p * K * kPanel;
    if (cols == kPanel)
      panel_rows<true>(M, A, lda, panel, K, C + p * kPanel, ldc, m0, m1, accumulate);
    else
      panel_rows<false>(M, A, lda, panel, K, C + p * kPanel, ldc, m0, m1, accumulate);
  }
#else
  (void)M; (void)A; (void)lda; (void)B; (void)C; (void)ldc; (void)accumulate;
#endif
}

}  // namespace rnnkit_packed
