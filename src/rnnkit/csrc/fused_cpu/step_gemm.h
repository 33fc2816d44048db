// The fused loops' GEMMs: the per-step recurrent GEMM (StepWeight: rnnkit's packed AVX-512 kernel for
// float32, AMX tiles for a bfloat16 module where the CPU has them, BLAS otherwise), the many-row GEMMs of the input projection (big_gemm), the weight
// gradients over all steps (weight_grad), and the streaming step's few-row products (small_xwT2).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "amx_gemm.h"
#include "blas.h"
#include "packed_gemm.h"
#include "weight_grad.h"

namespace rnnkit {

// Whether float32 GEMMs run on rnnkit's AVX-512 kernels (packed_gemm.h, weight_grad.h).
// RNNKIT_FUSED_NO_PACK=1 runs BLAS instead (read per call: benchmarks compare both in one process).
inline bool own_kernels_enabled() {
  const char* off = std::getenv("RNNKIT_FUSED_NO_PACK");
  return !(off && *off) && rnnkit_packed::packed_kernel_available();
}

// A recurrent weight as the per-step GEMMs read it: C[M, N] (+)= A[M, K] op(W), with op(W) = W^T for
// W [N, K] (the forward's h W_hh^T) or W for W [K, N] (the backward's dG W_hh). For float32 with the
// AVX-512 kernel (packed_gemm.h) it is packed once per call, when the loop has enough steps to pay
// for the copy; BLAS otherwise.
template <typename T>
struct StepWeight {
  const T* W = nullptr;
  int64_t K = 0, N = 0;
  bool transposed = false;
  rnnkit_packed::PackedB packed;
  rnnkit_amx::PackedTiles tiles;  // a bfloat16 module's weight on AMX (amx_gemm.h)

  static constexpr int64_t kMinSteps = 4;

  // bf16: the loop of a bfloat16 module (Options::bf16_gemms), whose weight is exact in bf16: on a
  // CPU with AMX the products take A rounded to bf16 (float32 accumulation); elsewhere float32.
  static StepWeight xwT(const T* W, int64_t N, int64_t K, int64_t steps, bool bf16 = false) {
    return make(W, K, N, true, steps, bf16);
  }
  static StepWeight xw(const T* W, int64_t K, int64_t N, int64_t steps, bool bf16 = false) {
    return make(W, K, N, false, steps, bf16);
  }
  // C[M, N] = A[M, K] op(W) + beta C (beta 0 or 1); A and C rows contiguous (strides K and N).
  void run(int64_t M, const T* A, T* C, T beta) const {
    if (M == 0) return;
    if constexpr (std::is_same<T, float>::value) {
      if (!tiles.empty()) {
        rnnkit_amx::gemm(M, A, K, tiles, C, N, beta != T(0));
        return;
      }
      if (!packed.empty() && K > 0) {
        rnnkit_packed::gemm_packed(M, A, K, packed, C, N, beta != T(0));
        return;
      }
    }
    gemm_rows<T>(transposed, M, N, K, A, W, C, beta);
  }

 private:
  static bool use_packed(int64_t steps) { return own_kernels_enabled() && steps >= kMinSteps; }
  static StepWeight make(const T* W, int64_t K, int64_t N, bool transposed, int64_t steps, bool bf16) {
    StepWeight s{W, K, N, transposed, {}, {}};
    if constexpr (std::is_same<T, float>::value) {
      if (bf16 && K > 0 && N > 0 && rnnkit_amx::available())
        rnnkit_amx::pack(W, K, N, transposed, s.tiles);
      else if (use_packed(steps))
        rnnkit_packed::pack(W, K, N, transposed, s.packed);
    }
    return s;
  }
};

// The many-row GEMMs (input projection and its dx, big_gemm) go in blocks of kBigGemmBlock rows and
// take our kernels from kMinKernelRows rows on (below, copying the weight does not pay); the weight
// gradients below use the same threshold.
constexpr int64_t kBigGemmBlock = 64;
constexpr int64_t kMinKernelRows = StepWeight<float>::kMinSteps * kBigGemmBlock;

// dW [N, K] = dG^T X for dG [M, N] and X [M, K]: a weight's gradient summed over every step. float32
// from kMinKernelRows (256) rows runs the AVX-512 kernel of weight_grad.h (rows of dW split over the
// threads; MKL's sgemm takes its AVX2 path on AMD CPUs), anything else at::mm.
// With bf16 (a bfloat16 module's run) both operands are rounded to bf16 and multiplied by ATen's
// bf16 GEMM (oneDNN: AMX or AVX512-BF16, float32 accumulation): the gradient is rounded to the
// module's bf16 anyway.
inline at::Tensor weight_grad(const at::Tensor& dG_in, const at::Tensor& X_in, bool bf16 = false) {
  if (bf16)
    return at::mm(dG_in.to(at::kBFloat16).t(), X_in.to(at::kBFloat16)).to(dG_in.scalar_type());
  const int64_t M = dG_in.size(0), N = dG_in.size(1), K = X_in.size(1);
  if (dG_in.scalar_type() != at::kFloat || X_in.scalar_type() != at::kFloat || M < kMinKernelRows ||
      N == 0 || K == 0 || !own_kernels_enabled())
    return at::mm(dG_in.t(), X_in);
  const at::Tensor dG = dG_in.contiguous(), X = X_in.contiguous();
  at::Tensor out = at::empty({N, K}, dG.options());
  const float* g = dG.data_ptr<float>();
  const float* x = X.data_ptr<float>();
  float* c = out.data_ptr<float>();
  at::parallel_for(0, (N + 7) / 8, 1, [&](int64_t t0, int64_t t1) {
    rnnkit_packed::weight_grad_rows(M, N, K, g, x, c, t0 * 8, std::min(N, t1 * 8));
  });
  return out;
}

// C[M, N] = A[M, K] op(W) over many rows (M = T * B), for float32 with the packed kernel: the rows
// split over the threads in blocks of 64, each block through every panel while its rows of A are in
// L1. LSTM fwd+bwd at (100,32,128,128), paired in one process: 0.88x the BLAS path's time with only
// the per-step GEMMs packed, 0.78x with the projection and its dx here too.
template <typename T>
void big_gemm(int64_t M, const T* A, const StepWeight<T>& W, T* C) {
  if (W.packed.empty()) {  // float64, no AVX-512, or too few rows: BLAS, threaded by itself
    W.run(M, A, C, T(0));
    return;
  }
  const int64_t blocks = (M + kBigGemmBlock - 1) / kBigGemmBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kBigGemmBlock, r1 = std::min(M, r0 + kBigGemmBlock);
      W.run(r1 - r0, A + r0 * W.K, C + r0 * W.N, T(0));
    }
  });
}

// R rows of W (K columns each, row-major) dotted with a into out[0], out[1], ...: R independent
// accumulators, since one accumulator chain is bound by the FMA latency (~16 B/cycle, about the
// L3's rate on one core); with 8 the loads are the limit.
template <typename T, int R>
inline void dot_rows(const T* a, const T* w, int64_t K, T* out) {
  T s[R] = {};
  for (int64_t j = 0; j < K; ++j) {
    const T v = a[j];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) s[r] += v * w[r * K + j];
  }
  for (int r = 0; r < R; ++r) out[r] = s[r];
}

// For a streaming step with a few rows: C1[B,N] = A1[B,K1] W1^T and C2[B,N] = A2[B,K2] W2^T in one
// pass over the rows of both weights (row dot products; BLAS's call overhead dominates here). The
// rows split over the threads in contiguous halves, so each thread reads the same weight rows at
// every step.
template <typename T>
void small_xwT2(int64_t B, int64_t N, int64_t K1, const T* A1, const T* W1, T* C1, int64_t K2,
                const T* A2, const T* W2, T* C2) {
  constexpr int R = 8;
  const int64_t blocks = (N + R - 1) / R;
  const int64_t per_block = R * B * (K1 + K2);
  const int64_t g = std::max<int64_t>((int64_t(1) << 16) / std::max<int64_t>(per_block, 1), 2);
  at::parallel_for(0, blocks, g, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t r = k * R;
      for (int64_t b = 0; b < B; ++b) {
        if (r + R <= N) {
          dot_rows<T, R>(A1 + b * K1, W1 + r * K1, K1, C1 + b * N + r);
          dot_rows<T, R>(A2 + b * K2, W2 + r * K2, K2, C2 + b * N + r);
        } else {
          for (int64_t q = r; q < N; ++q) {
            dot_rows<T, 1>(A1 + b * K1, W1 + q * K1, K1, C1 + b * N + q);
            dot_rows<T, 1>(A2 + b * K2, W2 + q * K2, K2, C2 + b * N + q);
          }
        }
      }
    }
  });
}

// The same for one product, C[B,N] = A[B,K] W^T (the streaming step of a family whose recurrence is
// not a matrix product): the rows of W split over the threads as above.
template <typename T>
void small_xwT(int64_t B, int64_t N, int64_t K, const T* A, const T* W, T* C) {
  constexpr int R = 8;
  const int64_t blocks = (N + R - 1) / R;
  const int64_t per_block = R * B * K;
  const int64_t g = std::max<int64_t>((int64_t(1) << 16) / std::max<int64_t>(per_block, 1), 2);
  at::parallel_for(0, blocks, g, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t r = k * R;
      for (int64_t b = 0; b < B; ++b) {
        if (r + R <= N) {
          dot_rows<T, R>(A + b * K, W + r * K, K, C + b * N + r);
        } else {
          for (int64_t q = r; q < N; ++q) dot_rows<T, 1>(A + b * K, W + q * K, K, C + b * N + q);
        }
      }
    }
  });
}

}  // namespace rnnkit
