// GEMMs on raw row-major pointers, straight into the BLAS that torch links (sgemm_/dgemm_, found at
// load time): no tensor views, no dispatcher, no allocation per call. Where torch exports no BLAS,
// at::mm on wrapped buffers. BLAS is column-major: C^T = op(W) A^T.
#pragma once

#include <ATen/ATen.h>

#include <dlfcn.h>

#include <cstring>
#include <type_traits>

namespace rnnkit {

extern "C" {
typedef void (*sgemm_fn)(const char*, const char*, const int*, const int*, const int*, const float*,
                         const float*, const int*, const float*, const int*, const float*, float*,
                         const int*);
typedef void (*dgemm_fn)(const char*, const char*, const int*, const int*, const int*, const double*,
                         const double*, const int*, const double*, const int*, const double*,
                         double*, const int*);
}

template <typename F>
F blas_symbol(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

inline void blas_gemm(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda,
                      const float* b, int ldb, float beta, float* c, int ldc) {
  static const sgemm_fn f = blas_symbol<sgemm_fn>("sgemm_");
  f(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
inline void blas_gemm(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda,
                      const double* b, int ldb, double beta, double* c, int ldc) {
  static const dgemm_fn f = blas_symbol<dgemm_fn>("dgemm_");
  f(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
template <typename T>
bool have_blas() {
  static const bool ok = std::is_same<T, float>::value ? blas_symbol<sgemm_fn>("sgemm_") != nullptr
                                                       : blas_symbol<dgemm_fn>("dgemm_") != nullptr;
  return ok;
}

template <typename T>
at::Tensor wrap(const T* p, at::IntArrayRef sizes) {
  return at::from_blob(const_cast<T*>(p), sizes,
                       at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

// C[M, N] = beta C + A[M, K] op(W), rows contiguous: op(W) = W^T for W [N, K] (transposed, the
// forward's x W^T) or W for W [K, N] (the backward's dG W).
template <typename T>
inline void gemm_rows(bool transposed, int64_t M, int64_t N, int64_t K, const T* A, const T* W, T* C,
                      T beta) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (beta == T(0)) std::memset(C, 0, sizeof(T) * M * N);
    return;
  }
  if (have_blas<T>()) {
    blas_gemm(transposed ? 'T' : 'N', 'N', int(N), int(M), int(K), T(1), W, int(transposed ? K : N), A,
              int(K), beta, C, int(N));
    return;
  }
  at::Tensor c = wrap(C, {M, N});
  at::Tensor w = transposed ? wrap(W, {N, K}).t() : wrap(W, {K, N});
  at::Tensor prod = at::mm(wrap(A, {M, K}), w);
  if (beta == T(0)) c.copy_(prod); else c.add_(prod);
}

}  // namespace rnnkit
