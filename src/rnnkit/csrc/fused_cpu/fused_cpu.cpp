// rnnkit fused CPU executor: forward and backward of one recurrent layer-direction over a whole
// sequence, for the Elman (tanh/relu), LSTM (layer norm, peepholes, projection) and GRU (layer norm)
// cells, with recurrent-dropout and zoneout masks, variable lengths and both directions; plus
// `Stepper`, one streaming time step of a whole stack in one call (no autograd), for Recurrent.step().
//
// The design is Haste's (lmnt-com/haste): the input projection x W_ih^T is one GEMM done by the caller
// (for the LSTM without its bias: the kernel adds b_ih + b_hh and applies LN_ih itself, so that the
// input layer norm, its backward and the bias gradients cost no extra pass over memory); per step
// there is one GEMM (h_{t-1} W_hh^T, plus h W_hr^T for a projected LSTM), called straight into BLAS
// on raw pointers into preallocated buffers (no per-step tensor or allocation), and one fused
// pointwise pass written as plain loops over contiguous rows (vectorised by the compiler: -O3
// -march=native -ffast-math, libmvec for exp/tanh). Backward runs pointwise per step plus one GEMM for
// dh_{t-1}; the LSTM's step does only what the next step waits for (d c_{t-1} and the gradient that
// enters the dh GEMM); its bias, peephole and LN_hh-weight sums and LN_ih's backward are one pass over
// all T*B rows after the loop, split over the threads (the GRU/Elman backward still accumulates them
// in its step); the weight gradients are one GEMM each over all T*B rows after the loop.
// Large buffers come from a cache of freed blocks (BlockCache below): fresh ones cost a page fault per
// 4 KiB on every call, measured as much as the whole pointwise work. `project` does the caller's input
// projection into that cache too.
//
// The equations are those of rnnkit/cells/*.py and the masking rules those of
// rnnkit/executors/reference.py (the specification):
//   - recurrent mask m (B, P): h_{t-1} * m enters W_hh only;
//   - zoneout weight z (T, B, n) or a scalar: s_t = lerp(s~_t, s_{t-1}, z) (torch.lerp's formula);
//   - lengths: at steps t >= length[b] the state is kept and the output is zero;
//   - reverse: t runs from T-1 down to 0.
//
// Profiling: RNNKIT_FUSED_PROFILE=1 prints, per LSTM call, the milliseconds spent in the per-step
// GEMMs, the per-step pointwise passes, the backward's pass after the loop and the rest (mostly the
// weight-gradient GEMMs) on stderr.

#include <torch/extension.h>
#include <ATen/EmptyTensor.h>
#include <ATen/Parallel.h>

#include <dlfcn.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "packed_gemm.h"
#include "weight_grad.h"
#include "libmvec.h"

namespace {

using at::Tensor;
using OptT = std::optional<Tensor>;

constexpr double kEps = 1e-5;  // F.layer_norm's default, as in rnnkit.cells.base.layer_norm

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

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
template <>
inline float sigmoid(float x) {
  return 1.0f / (1.0f + exp_approx(-x));
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

// torch.lerp(start, end, w): start + w (end - start) for |w| < 0.5, else end - (end - start)(1 - w)
// (written branch-free: a select here keeps GCC from vectorising the loops that call it)
template <typename T>
inline T lerp(T start, T end, T w) {
  const T d = end - start;
  const T low = T(std::abs(w) < T(0.5));
  return low * (start + w * d) + (T(1) - low) * (end - d * (T(1) - w));
}

// state = valid ? lerp(cand, prev, z) : prev; out = valid ? state : 0 (out may be null).
// Kept out of line: inlined into the parallel_for lambdas, GCC does not vectorise these loops.
template <typename T>
__attribute__((noinline)) void commit_row(const T* cand, const T* prev, const T* z, T* state, T* out,
                                          int64_t n, bool valid) {
  if (valid) {
#pragma GCC ivdep
    for (int64_t j = 0; j < n; ++j) state[j] = lerp(cand[j], prev[j], z[j]);
    if (out) std::memcpy(out, state, sizeof(T) * n);
  } else {
    if (state != prev) std::memcpy(state, prev, sizeof(T) * n);
    if (out) std::memset(out, 0, sizeof(T) * n);
  }
}

template <typename T>
const T* ptr_or_null(const OptT& t) {
  return (t.has_value() && t->defined()) ? t->data_ptr<T>() : nullptr;
}

bool has(const OptT& t) { return t.has_value() && t->defined(); }

// A zoneout weight: none (weight 0: lerp(new, old, 0) == new), one scalar, or (T, B, n) contiguous.
// row(t, b) always points at n readable values, so the pointwise loops load unconditionally
// (a conditional load blocks vectorisation).
template <typename T>
struct Zone {
  const T* p = nullptr;
  std::vector<T> fill;
  int64_t B = 0, n = 0;
  Zone(const OptT& z, int64_t B_, int64_t n_) : B(B_), n(n_) {
    if (has(z) && z->dim() > 0) {
      p = z->data_ptr<T>();
    } else {
      fill.assign(n, has(z) ? z->item<T>() : T(0));
    }
  }
  inline const T* row(int64_t t, int64_t b) const { return p ? p + (t * B + b) * n : fill.data(); }
};

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
  rstd = T(1) / std::sqrt((v > T(0) ? v : T(0)) + T(kEps));
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

// Rows per parallel task for a pointwise pass whose rows cost `per_row` element-operations. The
// pointwise passes are cheap next to the per-step GEMM; on 2 threads, waking the second thread for
// them costs more than it saves (and hurts badly on a busy machine), so a step's pointwise pass runs
// on one thread unless it is large: 2^19 element-operations per task splits the LSTM's pass (32 H per
// row) from B x H = 64 x 512 on, where it was measured to pay (layer-norm LSTM 1.32x -> 1.15x
// torch.nn.LSTM at (200,64,512,512), 2 threads), and leaves 64 x 256 on one thread.
// RNNKIT_FUSED_GRAIN overrides the threshold (for tuning).
inline int64_t grain(int64_t per_row) {
  static const int64_t work = [] {
    const char* s = std::getenv("RNNKIT_FUSED_GRAIN");
    return s ? std::max<int64_t>(std::atoll(s), 1) : int64_t(1) << 19;
  }();
  return std::max<int64_t>(work / std::max<int64_t>(per_row, 1), 1);
}

inline bool is_valid(const int64_t* len, int64_t t, int64_t b) { return !len || t < len[b]; }

// rows [0, n) in tasks of `g` rows; fn(b0, b1, slot) where slot < slots indexes per-thread scratch.
// One task runs inline (slot 0) without entering a parallel region.
template <typename F>
inline void for_rows(int64_t n, int64_t g, int64_t slots, const F& fn) {
  if (n <= g || slots <= 1) {
    fn(int64_t(0), n, int64_t(0));
    return;
  }
  at::parallel_for(0, n, g, [&](int64_t b0, int64_t b1) {
    const int64_t slot = at::get_thread_num();
    TORCH_CHECK(slot >= 0 && slot < slots, "fused_cpu: thread slot out of range");
    fn(b0, b1, slot);
  });
}


// Large buffers (the activations saved for backward, the gradient buffers) come from a small cache of
// freed blocks rather than from malloc: glibc maps blocks of this size anew (or trims its heap) after
// a free, depending on its heap's history, and then each call pays a page fault per 4 KiB, first
// touched inside the time loop; under load that costs as much as the pointwise work. A block goes
// back to the cache when its tensor dies. The free blocks kept total at most the peak of the blocks in
// use at once (so memory stays within twice what the calls needed, whatever the mix of sizes) and at
// most 1 GiB (RNNKIT_FUSED_CACHE_MB overrides; 0 turns the cache off).
class BlockCache {
 public:
  static BlockCache& get() {
    static BlockCache* c = new BlockCache;  // never destroyed: tensors may die at exit
    return *c;
  }
  void* take(size_t n) {
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = free_.lower_bound(n);
      if (it != free_.end() && it->first <= n + n / 4) {  // best fit, at most 25% wasted
        void* p = it->second;
        held_ -= it->first;
        size_[p] = it->first;
        use(it->first);
        free_.erase(it);
        return p;
      }
    }
    void* p = std::aligned_alloc(kAlign, round(n));
    TORCH_CHECK(p != nullptr, "fused_cpu: out of memory allocating ", n, " bytes");
    std::lock_guard<std::mutex> g(mu_);
    size_[p] = round(n);
    use(round(n));
    return p;
  }
  void give(void* p) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = size_.find(p);
    const size_t n = it->second;
    size_.erase(it);
    live_ -= n;
    free_.emplace(n, p);
    held_ += n;
    while (held_ > std::min(limit(), peak_)) {  // drop the largest free blocks first
      auto last = std::prev(free_.end());
      held_ -= last->first;
      std::free(last->second);
      free_.erase(last);
    }
  }

 private:
  static constexpr size_t kAlign = 64;
  static size_t limit() {
    static const size_t n = [] {
      const char* s = std::getenv("RNNKIT_FUSED_CACHE_MB");
      return s ? size_t(std::max<long long>(std::atoll(s), 0)) << 20 : size_t(1) << 30;
    }();
    return n;
  }
  static size_t round(size_t n) { return (std::max<size_t>(n, 1) + kAlign - 1) / kAlign * kAlign; }
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> size_;
  size_t held_ = 0, live_ = 0, peak_ = 0;  // bytes: free in the cache, in use, most in use at once
  void use(size_t n) {
    live_ += n;
    peak_ = std::max(peak_, live_);
  }
};

inline Tensor empty_big(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  int64_t numel = 1;
  for (int64_t d : sizes) numel *= d;
  const size_t n = size_t(numel) * opts.dtype().itemsize();
  if (n < (size_t(1) << 20)) return at::empty(sizes, opts);  // malloc keeps small blocks mapped
  void* p = BlockCache::get().take(n);
  return at::from_blob(p, sizes, [](void* q) { BlockCache::get().give(q); }, opts);
}

enum Family { ELMAN_TANH = 0, ELMAN_RELU = 1, LSTM = 2, GRU = 3, ELMAN_MODRELU = 4 };
// The modReLU Elman's per-unit threshold b travels in the peephole-i slot of the argument lists
// (the Elman cell has no peepholes); its gradient comes back in that slot too.

// modReLU_b(z) = sign(z) max(|z| + b, 0), with sign(0) = 0 as torch.sign
template <typename T>
inline T modrelu(T z, T b) {
  const T m = (z >= T(0) ? z : -z) + b;
  return m > T(0) ? (z > T(0) ? m : z < T(0) ? -m : T(0)) : T(0);
}

// ---- GEMMs on raw row-major pointers (BLAS is column-major: C^T = op(W) A^T) ----------------------
// Straight into the BLAS that torch links (sgemm_/dgemm_, found at load time): no tensor views, no
// dispatcher, no allocation per step. Where torch exports no BLAS, at::mm_out on wrapped buffers.
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
Tensor wrap(const T* p, at::IntArrayRef sizes) {
  return at::from_blob(const_cast<T*>(p), sizes, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

// C[M, N] = beta C + A[M, K] op(W), rows contiguous: op(W) = W^T for W [N, K] (transposed, the
// forward's x W^T) or W for W [K, N] (the backward's dG W). BLAS is column-major, so it computes
// C^T = op(W)^T A^T.
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
  Tensor c = wrap(C, {M, N});
  Tensor w = transposed ? wrap(W, {N, K}).t() : wrap(W, {K, N});
  Tensor prod = at::mm(wrap(A, {M, K}), w);
  if (beta == T(0)) c.copy_(prod); else c.add_(prod);
}

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

  static constexpr int64_t kMinSteps = 4;

  static StepWeight xwT(const T* W, int64_t N, int64_t K, int64_t steps) {
    StepWeight s{W, K, N, true, {}};
    if constexpr (std::is_same<T, float>::value)
      if (use_packed(steps)) rnnkit_packed::pack(W, K, N, true, s.packed);
    return s;
  }
  static StepWeight xw(const T* W, int64_t K, int64_t N, int64_t steps) {
    StepWeight s{W, K, N, false, {}};
    if constexpr (std::is_same<T, float>::value)
      if (use_packed(steps)) rnnkit_packed::pack(W, K, N, false, s.packed);
    return s;
  }
  // C[M, N] = A[M, K] op(W) + beta C (beta 0 or 1); A and C rows contiguous (strides K and N).
  void run(int64_t M, const T* A, T* C, T beta) const {
    if (M == 0) return;
    if constexpr (std::is_same<T, float>::value) {
      if (!packed.empty() && K > 0) {
        rnnkit_packed::gemm_packed(M, A, K, packed, C, N, beta != T(0));
        return;
      }
    }
    gemm_rows<T>(transposed, M, N, K, A, W, C, beta);
  }

 private:
  static bool use_packed(int64_t steps) { return own_kernels_enabled() && steps >= kMinSteps; }
};

// The many-row GEMMs (input projection and its dx, big_gemm) go in blocks of kBigGemmBlock rows and
// take our kernels from kMinKernelRows rows on (below, copying the weight does not pay); the weight
// gradients below use the same threshold.
constexpr int64_t kBigGemmBlock = 64;
constexpr int64_t kMinKernelRows = StepWeight<float>::kMinSteps * kBigGemmBlock;

// dW [N, K] = dG^T X for dG [M, N] and X [M, K]: a weight's gradient summed over every step. float32
// from kMinKernelRows (256) rows runs the AVX-512 kernel of weight_grad.h (rows of dW split over the
// threads; MKL's sgemm takes its AVX2 path on AMD CPUs), anything else at::mm.
Tensor weight_grad(const Tensor& dG_in, const Tensor& X_in) {
  const int64_t M = dG_in.size(0), N = dG_in.size(1), K = X_in.size(1);
  if (dG_in.scalar_type() != at::kFloat || X_in.scalar_type() != at::kFloat || M < kMinKernelRows ||
      N == 0 || K == 0 || !own_kernels_enabled())
    return at::mm(dG_in.t(), X_in);
  const Tensor dG = dG_in.contiguous(), X = X_in.contiguous();
  Tensor out = at::empty({N, K}, dG.options());
  const float* g = dG.data_ptr<float>();
  const float* x = X.data_ptr<float>();
  float* c = out.data_ptr<float>();
  at::parallel_for(0, (N + 7) / 8, 1, [&](int64_t t0, int64_t t1) {
    rnnkit_packed::weight_grad_rows(M, N, K, g, x, c, t0 * 8, std::min(N, t1 * 8));
  });
  return out;
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

// ---- optional phase timing -------------------------------------------------------------------------
struct Prof {
  bool on;
  double gemm = 0, pointwise = 0, other = 0, after = 0, loop = 0;  // loop: wall of a split loop
  std::chrono::steady_clock::time_point last;
  Prof() : on(std::getenv("RNNKIT_FUSED_PROFILE") != nullptr) {
    if (on) last = std::chrono::steady_clock::now();
  }
  inline void lap(double& into) {
    if (!on) return;
    auto now = std::chrono::steady_clock::now();
    into += std::chrono::duration<double>(now - last).count();
    last = now;
  }
  void add(const Prof& o) {
    gemm += o.gemm;
    pointwise += o.pointwise;
    other += o.other;
    after += o.after;
  }
  void report(const char* what, int64_t L, int64_t B, int64_t H) const {
    if (on)
      std::fprintf(stderr, "rnnkit fused_cpu %s L=%ld B=%ld H=%ld: step GEMMs %.3f ms, pointwise %.3f ms, "
                   "pointwise after the loop %.3f ms, other %.3f ms, split loop wall %.3f ms\n", what,
                   (long)L, (long)B, (long)H, gemm * 1e3, pointwise * 1e3, after * 1e3, other * 1e3,
                   loop * 1e3);
  }
};

// ---- splitting the batch over the threads ------------------------------------------------------
// The recurrence of batch row b reads only row b of the previous state (and the shared weights), so
// the batch splits into independent chunks, one per thread, each running the whole time loop with
// single-threaded GEMMs on its rows and its own pointwise pass: no synchronisation per step. Splitting
// each step's GEMM over the threads instead (MKL's own threading) scales worse at these sizes
// (measured, 2 threads: a 32 x 128 x 512 sgemm takes 34 us on both threads, each 16-row half 27.5 us
// on one) and pays a fork/join per step. Chunks keep at least 8 rows (RNNKIT_FUSED_CHUNK_ROWS
// overrides; a large value turns the split off).
inline int64_t batch_chunks(int64_t B) {
  static const int64_t min_rows = [] {
    const char* s = std::getenv("RNNKIT_FUSED_CHUNK_ROWS");
    return s ? std::max<int64_t>(std::atoll(s), 1) : int64_t(8);
  }();
  const int64_t threads = at::get_num_threads();
  if (threads <= 1 || at::in_parallel_region()) return 1;
  return std::max<int64_t>(std::min<int64_t>(threads, B / min_rows), 1);
}

// fn(r0, r1, chunk, prof) for each chunk of rows of [0, B), on its own thread; one chunk runs inline
// (with the caller's prof; with several, chunk 0's timings are reported).
template <typename F>
inline void over_batch(int64_t B, int64_t chunks, Prof& prof, const F& fn) {
  if (chunks <= 1) {
    fn(int64_t(0), B, int64_t(0), prof);
    return;
  }
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      Prof local;
      const auto start = std::chrono::steady_clock::now();
      fn(B * c / chunks, B * (c + 1) / chunks, c, local);
      if (local.on)
        std::fprintf(stderr, "rnnkit fused_cpu chunk %ld (thread %d): %.3f ms (GEMMs %.3f)\n", (long)c,
                     at::get_thread_num(),
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() * 1e3,
                     local.gemm * 1e3);
      if (c == 0) prof.add(local);
    }
  });
  prof.lap(prof.loop);  // the split loop's wall time (its gemm/pointwise above are chunk 0's)
}

// The rows [r0, r1) of a chunk: inline on the chunk's thread when the batch is split, else (one chunk,
// the whole batch) for_rows over the threads.
template <typename F>
inline void chunk_rows(bool split, int64_t r0, int64_t r1, int64_t chunk, int64_t g, int64_t slots,
                       const F& fn) {
  if (split) {
    fn(r0, r1, chunk);
  } else {
    for_rows(r1, g, slots, fn);
  }
}

// ---- the LSTM's pointwise step, shared by the sequence forward and the streaming step -------------
template <typename T>
struct LstmP {
  int64_t H = 0, Gt = 0;
  const T* bias = nullptr;  // b_ih + b_hh (+ LN_ih's and LN_hh's biases with LN), zeros if none (Gt)
  const T *liw = nullptr, *lhw = nullptr;                         // LN_ih, LN_hh weights
  const T *lcw = nullptr, *lcb = nullptr;                         // LN_c
  const T *pi = nullptr, *pf = nullptr, *po = nullptr;            // peepholes (zeros without)
  bool ln = false, peep = false;
};

// Where one row's new state goes: c_t = lerp(c~_t, c_{t-1}, zc) into c (and cs, the per-step copy);
// without projection h_t = lerp(m, h_{t-1}, zh) into h and y. Rows that do not commit (past their
// length, or projected h) point these at scratch.
template <typename T>
struct LstmOut {
  const T* zc;
  T *c, *cs;
  const T *hprev, *zh;
  T *h, *y;
};

// One row: from the raw projections gxr = W_ih x and ghr = W_hh h_{t-1} (Gt each) and c_{t-1},
// the gate activations g (i f g o), the candidate cell ct, tc = tanh(LN_c(ct)), m = o * tc; and what
// backward needs: xh (LN_hh's xhat, Gt), si = (mean, rstd) of LN_ih, rh (LN_hh's rstd), xc (LN_c's
// xhat, H), rc (its rstd). `pre` is Gt of scratch. Three passes: the layer norms of both projections
// (after one pass of statistics each), the i f g gates with c_t and LN_c's statistics, the o gate
// with LN_c and the new h; the state commit is fused into the last two.
// (out of line: inlined into the parallel_for lambdas, GCC leaves some loops scalar)
template <typename T, bool LN, bool PEEP>
__attribute__((noinline)) void lstm_row(const LstmP<T>& p, const T* gxr, const T* ghr, const T* cprev, T* pre, T* xh,
                     T* g, T* ct, T* tc, T* m, T* xc, T* si, T* rh, T* rc, const LstmOut<T>& o) {
  const int64_t H = p.H, Gt = p.Gt;
  const T* bs = p.bias;
  if constexpr (LN) {
    T mi, ri, mh, rhv;
    row_stats(gxr, Gt, mi, ri);
    row_stats(ghr, Gt, mh, rhv);
    si[0] = mi;
    si[1] = ri;
    *rh = rhv;
    const T *liw = p.liw, *lhw = p.lhw;
    #pragma GCC ivdep
    for (int64_t j = 0; j < Gt; ++j) {
      T xv = (ghr[j] - mh) * rhv;
      xh[j] = xv;
      pre[j] = ((gxr[j] - mi) * ri) * liw[j] + xv * lhw[j] + bs[j];
    }
  } else {
    #pragma GCC ivdep
    for (int64_t j = 0; j < Gt; ++j) pre[j] = gxr[j] + ghr[j] + bs[j];
  }
  const T *pi = p.pi, *pf = p.pf, *po = p.po;
  const T* zc = o.zc;
  T* cn = o.c;
  T* cs = o.cs;
  T s = 0, s2 = 0;
  #pragma GCC ivdep
  for (int64_t j = 0; j < H; ++j) {
    const T cp = cprev[j];
    T ai = pre[j], af = pre[H + j];
    if constexpr (PEEP) {
      ai += pi[j] * cp;
      af += pf[j] * cp;
    }
    T iv = sigmoid(ai), fv = sigmoid(af), gv = tanh_(pre[2 * H + j]);
    g[j] = iv;
    g[H + j] = fv;
    g[2 * H + j] = gv;
    const T c = fv * cp + iv * gv;
    ct[j] = c;
    const T cv = lerp(c, cp, zc[j]);
    cn[j] = cv;
    cs[j] = cv;
    if constexpr (LN) {
      s += c;
      s2 += c * c;
    }
  }
  T mean = 0, rstd = 1;
  if constexpr (LN) {
    mean = s / T(H);
    const T v = s2 / T(H) - mean * mean;
    rstd = T(1) / std::sqrt((v > T(0) ? v : T(0)) + T(kEps));
    *rc = rstd;
  }
  const T *cw = p.lcw, *cb = p.lcb;
  const T *hprev = o.hprev, *zh = o.zh;
  T *hn = o.h, *y = o.y;
  #pragma GCC ivdep
  for (int64_t j = 0; j < H; ++j) {
    const T c = ct[j];
    T ao = pre[3 * H + j];
    if constexpr (PEEP) ao += po[j] * c;
    const T ov = sigmoid(ao);
    T tv;
    if constexpr (LN) {
      T xv = (c - mean) * rstd;
      xc[j] = xv;
      tv = tanh_(xv * cw[j] + cb[j]);
    } else {
      tv = tanh_(c);
    }
    g[3 * H + j] = ov;
    tc[j] = tv;
    const T mv = ov * tv;
    m[j] = mv;
    const T hv = lerp(mv, hprev[j], zh[j]);
    hn[j] = hv;
    y[j] = hv;
  }
}

template <typename T>
inline void lstm_row_any(const LstmP<T>& p, const T* gxr, const T* ghr, const T* cprev, T* pre,
                         T* xh, T* g, T* ct, T* tc, T* m, T* xc, T* si, T* rh, T* rc,
                         const LstmOut<T>& o) {
  if (p.ln) {
    if (p.peep) lstm_row<T, true, true>(p, gxr, ghr, cprev, pre, xh, g, ct, tc, m, xc, si, rh, rc, o);
    else lstm_row<T, true, false>(p, gxr, ghr, cprev, pre, xh, g, ct, tc, m, xc, si, rh, rc, o);
  } else {
    if (p.peep) lstm_row<T, false, true>(p, gxr, ghr, cprev, pre, xh, g, ct, tc, m, xc, si, rh, rc, o);
    else lstm_row<T, false, false>(p, gxr, ghr, cprev, pre, xh, g, ct, tc, m, xc, si, rh, rc, o);
  }
}

template <typename T>
struct LstmBuffers {  // what lstm_params keeps alive
  std::vector<T> zeros, bias;
};

template <typename T>
LstmP<T> lstm_params(int64_t H, const OptT& b_ih, const OptT& b_hh, const OptT& ln_ih_w,
                     const OptT& ln_ih_b, const OptT& ln_hh_w, const OptT& ln_hh_b,
                     const OptT& ln_c_w, const OptT& ln_c_b, const OptT& peep_i,
                     const OptT& peep_f, const OptT& peep_o, LstmBuffers<T>& buf) {
  LstmP<T> p;
  p.H = H;
  p.Gt = 4 * H;
  buf.zeros.assign(H, T(0));
  p.ln = has(ln_hh_w);
  // every constant added to the pre-activations, summed once
  buf.bias.assign(4 * H, T(0));
  for (const OptT* b : {&b_ih, &b_hh, &ln_ih_b, &ln_hh_b}) {
    if (!has(*b) || (!p.ln && (b == &ln_ih_b || b == &ln_hh_b))) continue;
    const T* bp = (*b)->data_ptr<T>();
    for (int64_t j = 0; j < 4 * H; ++j) buf.bias[j] += bp[j];
  }
  p.bias = buf.bias.data();
  if (p.ln) {
    p.liw = ln_ih_w->data_ptr<T>();
    p.lhw = ln_hh_w->data_ptr<T>();
    p.lcw = ln_c_w->data_ptr<T>();
    p.lcb = ln_c_b->data_ptr<T>();
  }
  p.peep = has(peep_i);
  p.pi = p.peep ? peep_i->data_ptr<T>() : buf.zeros.data();
  p.pf = p.peep ? peep_f->data_ptr<T>() : buf.zeros.data();
  p.po = p.peep ? peep_o->data_ptr<T>() : buf.zeros.data();
  return p;
}

Tensor contig(const OptT& t) { return has(t) ? t->contiguous() : Tensor(); }

// ------------------------------------------------------------------------------------------------
// LSTM forward. gx = x W_ih^T (L, B, 4H) without bias or LN.
// returns y, h_T, c_T, CS (per-step c, zero past each length; if want_states), then what backward
// needs: HP (h_{t-1}), HIN (h_{t-1} * mask), Gs (i f g o), CP (c_{t-1}), CT (c~_t), TC, XH, RH, SI,
// XC, RC, M (o * tanh(.) before W_hr)
// ------------------------------------------------------------------------------------------------
template <typename T>
std::vector<Tensor> lstm_forward_impl(const Tensor& gx, const Tensor& h0, const Tensor& c0,
                                      const Tensor& w_hh, const OptT& b_ih, const OptT& b_hh,
                                      const OptT& ln_ih_w, const OptT& ln_ih_b,
                                      const OptT& ln_hh_w, const OptT& ln_hh_b, const OptT& ln_c_w,
                                      const OptT& ln_c_b, const OptT& peep_i, const OptT& peep_f,
                                      const OptT& peep_o, const OptT& w_hr, const OptT& rmask,
                                      const OptT& zh_t, const OptT& zc_t, const OptT& lengths,
                                      bool reverse, bool want_states, bool keep) {
  Prof prof;
  const int64_t L = gx.size(0), B = gx.size(1), Gt = gx.size(2);
  const int64_t P = h0.size(1), H = Gt / 4;
  const bool proj = has(w_hr);
  const bool rm = has(rmask);
  LstmBuffers<T> buf;
  const LstmP<T> p = lstm_params<T>(H, b_ih, b_hh, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w,
                                    ln_c_b, peep_i, peep_f, peep_o, buf);
  const bool ln = p.ln;
  auto opts = gx.options();

  Tensor y = empty_big({L, B, P}, opts);
  Tensor h = h0.clone();
  Tensor c = c0.clone();
  Tensor CS = want_states ? empty_big({L, B, H}, opts) : Tensor();
  // what backward reads, per step; without backward (keep false) one step's worth, reused
  const int64_t LS = keep ? L : 1;
  Tensor HP = empty_big({LS, B, P}, opts);
  Tensor HIN = rm ? empty_big({LS, B, P}, opts) : HP;
  Tensor Gs = empty_big({LS, B, Gt}, opts);
  Tensor CP = empty_big({LS, B, H}, opts);
  Tensor CT = empty_big({LS, B, H}, opts);
  Tensor TC = empty_big({LS, B, H}, opts);
  Tensor XH = ln ? empty_big({LS, B, Gt}, opts) : Tensor();
  Tensor RH = ln ? empty_big({LS, B}, opts) : Tensor();
  Tensor SI = ln ? empty_big({LS, B, 2}, opts) : Tensor();
  Tensor XC = ln ? empty_big({LS, B, H}, opts) : Tensor();
  Tensor RC = ln ? empty_big({LS, B}, opts) : Tensor();
  Tensor M = proj ? empty_big({LS, B, H}, opts) : Tensor();
  Tensor gh = at::empty({B, Gt}, opts);
  Tensor htil = proj ? at::empty({B, P}, opts) : Tensor();
  const int64_t nthreads = at::get_num_threads();
  const int64_t S = 2 * Gt + 6 * H;  // per-thread scratch: pre, xh, m, xc, 4 sinks for LstmOut
  std::vector<T> scratch(nthreads * S);

  const T* gxp = gx.data_ptr<T>();
  const T* whh = w_hh.data_ptr<T>();
  const T* whr = proj ? w_hr->data_ptr<T>() : nullptr;
  const StepWeight<T> Whh = StepWeight<T>::xwT(whh, Gt, P, L);
  const StepWeight<T> Whr = proj ? StepWeight<T>::xwT(whr, P, H, L) : StepWeight<T>{};
  const T* rmp = ptr_or_null<T>(rmask);
  Tensor len64;
  if (has(lengths)) len64 = lengths->to(at::kLong).contiguous();
  const int64_t* len = len64.defined() ? len64.data_ptr<int64_t>() : nullptr;
  Zone<T> zh(zh_t, B, P);
  Zone<T> zc(zc_t, B, H);
  T* yp = y.data_ptr<T>();
  T* hp = h.data_ptr<T>();
  T* cp = c.data_ptr<T>();
  T* csp = want_states ? CS.data_ptr<T>() : nullptr;
  T* ghp = gh.data_ptr<T>();
  T* HPp = HP.data_ptr<T>();
  T* HINp = HIN.data_ptr<T>();
  T* Gp = Gs.data_ptr<T>();
  T* CPp = CP.data_ptr<T>();
  T* CTp = CT.data_ptr<T>();
  T* TCp = TC.data_ptr<T>();
  T* XHp = ln ? XH.data_ptr<T>() : nullptr;
  T* RHp = ln ? RH.data_ptr<T>() : nullptr;
  T* SIp = ln ? SI.data_ptr<T>() : nullptr;
  T* XCp = ln ? XC.data_ptr<T>() : nullptr;
  T* RCp = ln ? RC.data_ptr<T>() : nullptr;
  T* Mp = proj ? M.data_ptr<T>() : nullptr;
  T* htp = proj ? htil.data_ptr<T>() : nullptr;
  prof.lap(prof.other);

  const int64_t chunks = batch_chunks(B);
  over_batch(B, chunks, prof, [&](int64_t r0, int64_t r1, int64_t chunk, Prof& prof) {
  const int64_t nb = r1 - r0;
  for (int64_t k = 0; k < L; ++k) {
    const int64_t t = reverse ? L - 1 - k : k;
    const int64_t ts = keep ? t : 0;  // the step's slot in the saved buffers
    T* HPt = HPp + ts * B * P;
    std::memcpy(HPt + r0 * P, hp + r0 * P, sizeof(T) * nb * P);
    T* HINt = HINp + ts * B * P;
    if (rm) {
      #pragma GCC ivdep
      for (int64_t i = r0 * P; i < r1 * P; ++i) HINt[i] = hp[i] * rmp[i];
    }
    T* CPt = CPp + ts * B * H;
    std::memcpy(CPt + r0 * H, cp + r0 * H, sizeof(T) * nb * H);
    prof.lap(prof.pointwise);
    Whh.run(nb, HINt + r0 * P, ghp + r0 * Gt, T(0));
    prof.lap(prof.gemm);
    chunk_rows(chunks > 1, r0, r1, chunk, grain(8 * Gt), nthreads,
               [&](int64_t b0, int64_t b1, int64_t slot) {
      T* pre = scratch.data() + slot * S;
      T* xhs = pre + Gt;
      T* ms = xhs + Gt;
      T* xcs = ms + H;
      T* sink = xcs + H;  // 4 * H
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t tb = t * B + b, sb = ts * B + b;  // sb: row in the saved buffers
        const bool v = is_valid(len, t, b);
        T* m = proj ? Mp + sb * H : ms;
        LstmOut<T> o;
        o.zc = zc.row(t, b);
        o.c = v ? cp + b * H : sink;
        o.cs = (v && csp) ? csp + tb * H : sink + H;
        const bool commit_h = v && !proj;
        o.hprev = commit_h ? HPt + b * P : buf.zeros.data();
        o.zh = commit_h ? zh.row(t, b) : buf.zeros.data();
        o.h = commit_h ? hp + b * P : sink + 2 * H;
        o.y = commit_h ? yp + tb * P : sink + 3 * H;
        lstm_row_any(p, gxp + tb * Gt, ghp + b * Gt, CPt + b * H, pre, ln ? XHp + sb * Gt : xhs,
                     Gp + sb * Gt, CTp + sb * H, TCp + sb * H, m, ln ? XCp + sb * H : xcs,
                     ln ? SIp + sb * 2 : pre, ln ? RHp + sb : pre, ln ? RCp + sb : pre, o);
        if (!v) {  // state kept, outputs zero
          if (csp) std::memset(csp + tb * H, 0, sizeof(T) * H);
          if (!proj) std::memset(yp + tb * P, 0, sizeof(T) * P);
        }
      }
    });
    prof.lap(prof.pointwise);
    if (proj) {
      Whr.run(nb, Mp + (ts * B + r0) * H, htp + r0 * P, T(0));
      prof.lap(prof.gemm);
      for (int64_t b = r0; b < r1; ++b) {
        T* hrow = hp + b * P;
        commit_row(static_cast<const T*>(htp + b * P), static_cast<const T*>(hrow), zh.row(t, b),
                   hrow, yp + (t * B + b) * P, P, is_valid(len, t, b));
      }
      prof.lap(prof.pointwise);
    }
  }
  });
  prof.report("lstm forward", L, B, H);
  return {y, h, c, CS, HP, HIN, Gs, CP, CT, TC, XH, RH, SI, XC, RC, M};
}

std::vector<Tensor> lstm_forward(const Tensor& gx, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_hh, const OptT& b_ih, const OptT& b_hh,
                                 const OptT& ln_ih_w, const OptT& ln_ih_b, const OptT& ln_hh_w,
                                 const OptT& ln_hh_b, const OptT& ln_c_w, const OptT& ln_c_b,
                                 const OptT& peep_i, const OptT& peep_f, const OptT& peep_o,
                                 const OptT& w_hr, const OptT& rmask, const OptT& zh,
                                 const OptT& zc, const OptT& lengths, bool reverse,
                                 bool want_states, bool keep) {
  TORCH_CHECK(gx.is_contiguous() && h0.is_contiguous() && c0.is_contiguous() &&
                  w_hh.is_contiguous(),
              "fused_cpu: gx, h0, c0 and w_hh must be contiguous");
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "fused_cpu_lstm_forward", [&] {
    out = lstm_forward_impl<scalar_t>(gx, h0, c0, w_hh, b_ih, b_hh, ln_ih_w, ln_ih_b, ln_hh_w,
                                      ln_hh_b, ln_c_w, ln_c_b, peep_i, peep_f, peep_o, w_hr,
                                      rmask, zh, zc, lengths, reverse, want_states, keep);
  });
  return out;
}

// ---- the LSTM's backward pointwise step --------------------------------------------------------
template <typename T>
struct LstmBwdP {
  int64_t H;
  const T *lhw, *lcw, *pi, *pf, *po;
};

// One row of one step: g (i f g o), tc, dm = d(o * tc), c_{t-1}, the zoneout weight of c, dc (d c_t
// in, d c_{t-1} out), da (d pre-activations out); with LN, LN_c's xc/rc, LN_hh's xh/rh and dgr (d of
// the raw recurrent projection, what the dh GEMM reads). Only what the next step waits for is done
// here; the rest is lstm_bwd_peep / lstm_bwd_ln_ih, after the loop on every thread.
template <typename T>
struct BwdRow {
  const T *g, *tc, *dm, *cprev, *zc;
  T *dc, *da, *dcn, *acc;
  const T* xc = nullptr;
  T rc = 0;
  const T* xh = nullptr;
  T rh = 0;
  T* dgr = nullptr;
};

template <typename T, bool LN, bool PEEP>
__attribute__((noinline)) void lstm_bwd_row(const LstmBwdP<T>& p, const BwdRow<T>& r) {
  const int64_t H = p.H;
  const T *g = r.g, *tc = r.tc, *dmr = r.dm, *cprev = r.cprev, *zcr = r.zc;
  T *dcr = r.dc, *da = r.da, *dcn = r.dcn;
  const T *pi = p.pi, *pf = p.pf, *po = p.po, *lcw = p.lcw, *xc = r.xc;
  // LN_c's backward needs two row means of d(LN_c out) first; it also feeds LN_c's weight/bias sums
  T mc1 = 0, mc2 = 0;
  if constexpr (LN) {
    T* a_cw = r.acc + 3 * 4 * H;
    T* a_cb = a_cw + H;
    #pragma GCC ivdep
    for (int64_t j = 0; j < H; ++j) {
      const T d = dmr[j] * g[3 * H + j] * (T(1) - tc[j] * tc[j]);
      dcn[j] = d;
      a_cw[j] += d * xc[j];
      a_cb[j] += d;
      const T dw = d * lcw[j];
      mc1 += dw;
      mc2 += dw * xc[j];
    }
    mc1 /= T(H);
    mc2 /= T(H);
  }
  const T rc = r.rc;
  const T* lhw = p.lhw;
  const T* xh = r.xh;
  T mh1 = 0, mh2 = 0;  // LN_hh's row means, accumulated as da is produced
  #pragma GCC ivdep
  for (int64_t j = 0; j < H; ++j) {
    const T iv = g[j], fv = g[H + j], gv = g[2 * H + j], ov = g[3 * H + j];
    const T z = zcr[j];
    const T dcin = dcr[j];
    const T tv = tc[j];
    T d_ct;
    if constexpr (LN) d_ct = rc * (dcn[j] * lcw[j] - mc1 - xc[j] * mc2);
    else d_ct = dmr[j] * ov * (T(1) - tv * tv);
    d_ct += (T(1) - z) * dcin;
    const T do_pre = dmr[j] * tv * ov * (T(1) - ov);
    if constexpr (PEEP) d_ct += do_pre * po[j];
    const T di_pre = d_ct * gv * iv * (T(1) - iv);
    const T df_pre = d_ct * cprev[j] * fv * (T(1) - fv);
    const T dg_pre = d_ct * iv * (T(1) - gv * gv);
    T dcprev = d_ct * fv + z * dcin;
    if constexpr (PEEP) dcprev += di_pre * pi[j] + df_pre * pf[j];
    dcr[j] = dcprev;
    da[j] = di_pre;
    da[H + j] = df_pre;
    da[2 * H + j] = dg_pre;
    da[3 * H + j] = do_pre;
    if constexpr (LN) {
      const T w0 = di_pre * lhw[j], w1 = df_pre * lhw[H + j];
      const T w2 = dg_pre * lhw[2 * H + j], w3 = do_pre * lhw[3 * H + j];
      mh1 += (w0 + w1) + (w2 + w3);
      mh2 += (w0 * xh[j] + w1 * xh[H + j]) + (w2 * xh[2 * H + j] + w3 * xh[3 * H + j]);
    }
  }
  if constexpr (LN) {
    const int64_t Gt = 4 * H;
    mh1 /= T(Gt);
    mh2 /= T(Gt);
    const T rh = r.rh;
    T* dgr = r.dgr;
    #pragma GCC ivdep
    for (int64_t j = 0; j < Gt; ++j) dgr[j] = rh * (da[j] * lhw[j] - mh1 - xh[j] * mh2);
  }
}

template <typename T>
inline void lstm_bwd_row_any(const LstmBwdP<T>& p, const BwdRow<T>& r, bool ln, bool peep) {
  if (ln) {
    if (peep) lstm_bwd_row<T, true, true>(p, r);
    else lstm_bwd_row<T, true, false>(p, r);
  } else {
    if (peep) lstm_bwd_row<T, false, true>(p, r);
    else lstm_bwd_row<T, false, false>(p, r);
  }
}

// peephole gradients of one row: sums of di * c_{t-1}, df * c_{t-1}, do * c~_t (a: 3 H)
template <typename T>
__attribute__((noinline)) void lstm_bwd_peep(int64_t H, const T* da, const T* cprev, const T* ct,
                                             T* a) {
  T *a_pi = a, *a_pf = a + H, *a_po = a + 2 * H;
  #pragma GCC ivdep
  for (int64_t j = 0; j < H; ++j) {
    a_pi[j] += da[j] * cprev[j];
    a_pf[j] += da[H + j] * cprev[j];
    a_po[j] += da[3 * H + j] * ct[j];
  }
}

// With layer norm, one row: the sums for the biases (a[0, Gt)), LN_hh's weight (a[Gt, 2Gt)) and
// LN_ih's weight (a[2Gt, 3Gt)), then da <- LN_ih's backward of da (xi recomputed from gx).
template <typename T>
__attribute__((noinline)) void lstm_bwd_ln_ih(int64_t Gt, T* da, const T* gxr, T mi, T ri,
                                              const T* liw, const T* xh, T* a) {
  T *a_sum = a, *a_hw = a + Gt, *a_iw = a + 2 * Gt;
  T m1 = 0, m2 = 0;
  #pragma GCC ivdep
  for (int64_t j = 0; j < Gt; ++j) {
    const T d = da[j];
    const T xi = (gxr[j] - mi) * ri;
    a_sum[j] += d;
    a_hw[j] += d * xh[j];
    a_iw[j] += d * xi;
    const T dw = d * liw[j];
    m1 += dw;
    m2 += dw * xi;
  }
  m1 /= T(Gt);
  m2 /= T(Gt);
  #pragma GCC ivdep
  for (int64_t j = 0; j < Gt; ++j) {
    const T xi = (gxr[j] - mi) * ri;
    da[j] = ri * (da[j] * liw[j] - m1 - xi * m2);
  }
}

// ------------------------------------------------------------------------------------------------
// LSTM backward. saved = forward's outputs from HP on, plus gx (needed with layer norm).
// grads: dgx, dh0, dc0, dw_hh, db_ih, db_hh, dln_ih_w, dln_ih_b, dln_hh_w, dln_hh_b, dln_c_w,
//        dln_c_b, dpi, dpf, dpo, dw_hr
// ------------------------------------------------------------------------------------------------
template <typename T>
std::vector<Tensor> lstm_backward_impl(const Tensor& dy_in, const Tensor& dhT_in,
                                       const Tensor& dcT_in, const OptT& dCS_in,
                                       const std::vector<Tensor>& saved, const Tensor& gx,
                                       const Tensor& w_hh, const OptT& b_ih, const OptT& b_hh,
                                       const OptT& ln_ih_w, const OptT& ln_hh_w,
                                       const OptT& ln_c_w, const OptT& peep_i, const OptT& peep_f,
                                       const OptT& peep_o, const OptT& w_hr, const OptT& rmask,
                                       const OptT& zh_t, const OptT& zc_t, const OptT& lengths,
                                       bool reverse) {
  Prof prof;
  const Tensor &HP = saved[0], &HIN = saved[1], &Gs = saved[2], &CP = saved[3], &CT = saved[4],
               &TC = saved[5], &XH = saved[6], &RH = saved[7], &SI = saved[8], &XC = saved[9],
               &RC = saved[10], &M = saved[11];
  const int64_t L = HP.size(0), B = HP.size(1), P = HP.size(2);
  const int64_t Gt = w_hh.size(0), H = Gt / 4;
  const bool proj = has(w_hr);
  const bool ln = has(ln_hh_w);
  const bool peep = has(peep_i);
  const bool rm = has(rmask);
  auto opts = HP.options();

  Tensor dy = dy_in.contiguous();
  Tensor dh = dhT_in.clone().contiguous();
  Tensor dc = dcT_in.clone().contiguous();
  Tensor dCS = has(dCS_in) ? dCS_in->contiguous() : Tensor();
  Tensor DX = empty_big({L, B, Gt}, opts);                   // d gx (d pre-activation without LN)
  Tensor DGR = ln ? empty_big({L, B, Gt}, opts) : DX;        // d (h W_hh^T)
  Tensor DHT = proj ? empty_big({L, B, P}, opts) : Tensor(); // d h~ (before W_hr)
  Tensor dm = proj ? at::empty({B, H}, opts) : Tensor();
  Tensor dhin = rm ? at::empty({B, P}, opts) : Tensor();
  std::vector<T> dht_local(proj ? 0 : B * P);

  // per-thread accumulators: sum da | sum da*xh | sum da*xi | sum dcn*xc | sum dcn | pi | pf | po
  const int64_t nthreads = at::get_num_threads();
  const int64_t A = 3 * Gt + 5 * H;
  std::vector<T> acc(nthreads * A, T(0));
  const int64_t S = H;  // per-thread scratch: dcn
  std::vector<T> scratch(nthreads * S);

  const T* dyp = dy.data_ptr<T>();
  T* dhp = dh.data_ptr<T>();
  T* dcp = dc.data_ptr<T>();
  const T* dcsp = dCS.defined() ? dCS.data_ptr<T>() : nullptr;
  const T* whh = w_hh.data_ptr<T>();
  const T* whr = proj ? w_hr->data_ptr<T>() : nullptr;
  const StepWeight<T> Whh = StepWeight<T>::xw(whh, Gt, P, L);
  const StepWeight<T> Whr = proj ? StepWeight<T>::xw(whr, P, H, L) : StepWeight<T>{};
  const T* liw = ptr_or_null<T>(ln_ih_w);
  const T* lhw = ptr_or_null<T>(ln_hh_w);
  const T* lcw = ptr_or_null<T>(ln_c_w);
  std::vector<T> zeros(H, T(0));
  const T* pi = peep ? peep_i->data_ptr<T>() : zeros.data();
  const T* pf = peep ? peep_f->data_ptr<T>() : zeros.data();
  const T* po = peep ? peep_o->data_ptr<T>() : zeros.data();
  const LstmBwdP<T> bp{H, lhw, lcw, pi, pf, po};
  const T* rmp = ptr_or_null<T>(rmask);
  Tensor len64;
  if (has(lengths)) len64 = lengths->to(at::kLong).contiguous();
  const int64_t* len = len64.defined() ? len64.data_ptr<int64_t>() : nullptr;
  Zone<T> zh(zh_t, B, P);
  Zone<T> zc(zc_t, B, H);
  const T* Gp = Gs.data_ptr<T>();
  const T* CPp = CP.data_ptr<T>();
  const T* CTp = CT.data_ptr<T>();
  const T* TCp = TC.data_ptr<T>();
  const T* gxp = ln ? gx.data_ptr<T>() : nullptr;
  const T* XHp = ln ? XH.data_ptr<T>() : nullptr;
  const T* RHp = ln ? RH.data_ptr<T>() : nullptr;
  const T* SIp = ln ? SI.data_ptr<T>() : nullptr;
  const T* XCp = ln ? XC.data_ptr<T>() : nullptr;
  const T* RCp = ln ? RC.data_ptr<T>() : nullptr;
  T* DXp = DX.data_ptr<T>();
  T* DGRp = DGR.data_ptr<T>();
  T* DHTp = proj ? DHT.data_ptr<T>() : nullptr;
  T* dmp_buf = proj ? dm.data_ptr<T>() : nullptr;
  prof.lap(prof.other);

  const int64_t chunks = batch_chunks(B);
  over_batch(B, chunks, prof, [&](int64_t r0, int64_t r1, int64_t chunk, Prof& prof) {
  const int64_t nb = r1 - r0;
  for (int64_t k = 0; k < L; ++k) {
    const int64_t t = reverse ? k : L - 1 - k;
    const T* dyt = dyp + t * B * P;
    // d h~ (zoneout on h), and what of dh goes straight to h_{t-1}
    T* dht = proj ? DHTp + t * B * P : dht_local.data();
    for (int64_t b = r0; b < r1; ++b) {
      const bool v = is_valid(len, t, b);
      T* d = dhp + b * P;
      T* o = dht + b * P;
      const T* zhr = zh.row(t, b);
      const T* dyr = dyt + b * P;
      if (v) {
        #pragma GCC ivdep
        for (int64_t j = 0; j < P; ++j) {
          T g = d[j] + dyr[j];
          T z = zhr[j];
          o[j] = (T(1) - z) * g;  // lerp(new, old, z) = (1 - z) new + z old
          d[j] = z * g;
        }
      } else {
        std::memset(o, 0, sizeof(T) * P);
      }
    }
    prof.lap(prof.pointwise);
    const T* dmp = dht;
    if (proj) {
      Whr.run(nb, dht + r0 * P, dmp_buf + r0 * H, T(0));
      dmp = dmp_buf;
      prof.lap(prof.gemm);
    }
    chunk_rows(chunks > 1, r0, r1, chunk, grain(8 * Gt), nthreads,
               [&](int64_t b0, int64_t b1, int64_t tid) {
      T* ac = acc.data() + tid * A;
      T* dcn = scratch.data() + tid * S;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t tb = t * B + b;
        T* da = DXp + tb * Gt;
        if (!is_valid(len, t, b)) {
          std::memset(da, 0, sizeof(T) * Gt);
          if (ln) std::memset(DGRp + tb * Gt, 0, sizeof(T) * Gt);
          continue;  // dc passes through unchanged
        }
        T* dcr = dcp + b * H;
        if (dcsp) {
          const T* ds = dcsp + tb * H;
          #pragma GCC ivdep
          for (int64_t j = 0; j < H; ++j) dcr[j] += ds[j];
        }
        BwdRow<T> r{Gp + tb * Gt, TCp + tb * H, dmp + b * H, CPp + tb * H, zc.row(t, b), dcr, da,
                    dcn, ac};
        if (ln) {
          r.xc = XCp + tb * H;
          r.rc = RCp[tb];
          r.xh = XHp + tb * Gt;
          r.rh = RHp[tb];
          r.dgr = DGRp + tb * Gt;
        }
        lstm_bwd_row_any(bp, r, ln, peep);
      }
    });
    prof.lap(prof.pointwise);
    // dh_{t-1} += (d gh_raw W_hh) * mask
    if (rm) {
      T* di = dhin.data_ptr<T>();
      Whh.run(nb, DGRp + (t * B + r0) * Gt, di + r0 * P, T(0));
      #pragma GCC ivdep
      for (int64_t i = r0 * P; i < r1 * P; ++i) dhp[i] += di[i] * rmp[i];
    } else {
      Whh.run(nb, DGRp + (t * B + r0) * Gt, dhp + r0 * P, T(1));
    }
    prof.lap(prof.gemm);
  }
  });

  // The gradients that nothing in the loop waits for, in one pass over all rows on every thread:
  // biases, peepholes, LN_hh's weight and LN_ih's weight and backward (d gx, in place of da).
  const int64_t TB = L * B;
  for_rows(TB, std::max<int64_t>((int64_t(1) << 16) / Gt, 1), nthreads,
           [&](int64_t r0, int64_t r1, int64_t tid) {
    T* ac = acc.data() + tid * A;
    for (int64_t tb = r0; tb < r1; ++tb) {
      if (!is_valid(len, tb / B, tb % B)) continue;  // da is zero there
      T* da = DXp + tb * Gt;
      if (peep) lstm_bwd_peep(H, da, CPp + tb * H, CTp + tb * H, ac + 3 * Gt + 2 * H);
      if (ln) {
        lstm_bwd_ln_ih(Gt, da, gxp + tb * Gt, SIp[tb * 2], SIp[tb * 2 + 1], liw, XHp + tb * Gt, ac);
      } else {
        T* a_sum = ac;
        #pragma GCC ivdep
        for (int64_t j = 0; j < Gt; ++j) a_sum[j] += da[j];
      }
    }
  });
  prof.lap(prof.after);

  // reduce the per-thread accumulators (fixed order)
  for (int64_t r = 1; r < nthreads; ++r)
    for (int64_t j = 0; j < A; ++j) acc[j] += acc[r * A + j];
  auto vec = [&](int64_t off, int64_t n) {
    Tensor out = at::empty({n}, opts);
    std::memcpy(out.data_ptr<T>(), acc.data() + off, sizeof(T) * n);
    return out;
  };
  Tensor dw_hh = weight_grad(DGR.view({TB, Gt}), HIN.view({TB, P}));
  Tensor db_ih = has(b_ih) ? vec(0, Gt) : Tensor();
  Tensor db_hh = has(b_hh) ? vec(0, Gt) : Tensor();
  Tensor dln_ih_w, dln_ih_b, dln_hh_w, dln_hh_b, dlnc_w, dlnc_b, dpi, dpf, dpo, dw_hr;
  if (ln) {
    dln_hh_w = vec(Gt, Gt);
    dln_hh_b = vec(0, Gt);
    dln_ih_w = vec(2 * Gt, Gt);
    dln_ih_b = vec(0, Gt);
    dlnc_w = vec(3 * Gt, H);
    dlnc_b = vec(3 * Gt + H, H);
  }
  if (peep) {
    dpi = vec(3 * Gt + 2 * H, H);
    dpf = vec(3 * Gt + 3 * H, H);
    dpo = vec(3 * Gt + 4 * H, H);
  }
  if (proj) dw_hr = weight_grad(DHT.view({TB, P}), M.view({TB, H}));
  prof.lap(prof.other);
  prof.report("lstm backward", L, B, H);
  return {DX, dh, dc, dw_hh, db_ih, db_hh, dln_ih_w, dln_ih_b, dln_hh_w, dln_hh_b, dlnc_w, dlnc_b,
          dpi, dpf, dpo, dw_hr};
}

std::vector<Tensor> lstm_backward(const Tensor& dy, const Tensor& dhT, const Tensor& dcT,
                                  const OptT& dCS, const std::vector<Tensor>& saved,
                                  const Tensor& gx, const Tensor& w_hh, const OptT& b_ih,
                                  const OptT& b_hh, const OptT& ln_ih_w, const OptT& ln_hh_w,
                                  const OptT& ln_c_w, const OptT& peep_i, const OptT& peep_f,
                                  const OptT& peep_o, const OptT& w_hr, const OptT& rmask,
                                  const OptT& zh, const OptT& zc, const OptT& lengths,
                                  bool reverse) {
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "fused_cpu_lstm_backward", [&] {
    out = lstm_backward_impl<scalar_t>(dy, dhT, dcT, dCS, saved, gx, w_hh, b_ih, b_hh, ln_ih_w,
                                       ln_hh_w, ln_c_w, peep_i, peep_f, peep_o, w_hr, rmask, zh,
                                       zc, lengths, reverse);
  });
  return out;
}

// ------------------------------------------------------------------------------------------------
// GRU and Elman (the LSTM has its own forward and backward above)
// ------------------------------------------------------------------------------------------------
// forward
// ------------------------------------------------------------------------------------------------
template <typename T>
std::vector<Tensor> forward_impl(int64_t family, const Tensor& gx, const Tensor& h0, const OptT& c0,
                                 const Tensor& w_hh, const OptT& b_hh, const OptT& ln_hh_w,
                                 const OptT& ln_hh_b, const OptT& ln_c_w, const OptT& ln_c_b,
                                 const OptT& peep_i, const OptT& peep_f, const OptT& peep_o,
                                 const OptT& w_hr, const OptT& rmask, const OptT& zh_t,
                                 const OptT& zc_t, const OptT& lengths, bool reverse, bool keep) {
  const int64_t L = gx.size(0), B = gx.size(1), Gt = gx.size(2);
  const int64_t P = h0.size(1);
  const int64_t H = w_hh.size(0) / (family == LSTM ? 4 : family == GRU ? 3 : 1);
  const bool proj = has(w_hr);
  const bool ln = has(ln_hh_w);
  const bool lnc = has(ln_c_w);
  const bool peep = family == LSTM && has(peep_i);
  const bool rm = has(rmask);
  auto opts = gx.options();

  Tensor y = empty_big({L, B, P}, opts);
  Tensor h = h0.clone();
  // what backward reads, per step; without backward (keep false) one step's worth, reused
  const int64_t LS = keep ? L : 1;
  Tensor HP = empty_big({LS, B, P}, opts);                        // h_{t-1}
  Tensor HIN = rm ? empty_big({LS, B, P}, opts) : HP;             // h_{t-1} * mask
  Tensor gh = at::empty({B, Gt}, opts);                           // h W_hh^T for one step
  Tensor XH = ln ? empty_big({LS, B, Gt}, opts) : Tensor();       // LN_hh's xhat
  Tensor RH = ln ? empty_big({LS, B}, opts) : Tensor();           // LN_hh's rstd
  Tensor Gs, C, CP, CT, TC, XC, RC, M, htil;
  if (family == LSTM) {
    C = c0->clone();
    Gs = empty_big({L, B, 4 * H}, opts);  // i f g o
    CP = empty_big({L, B, H}, opts);      // c_{t-1}
    CT = empty_big({L, B, H}, opts);      // candidate c~_t
    TC = empty_big({L, B, H}, opts);      // tanh(LN_c(c~_t))
    if (lnc) {
      XC = empty_big({L, B, H}, opts);
      RC = empty_big({L, B}, opts);
    }
    if (proj) {
      M = empty_big({L, B, H}, opts);     // o * tanh(.) before W_hr
      htil = at::empty({B, P}, opts);
    }
  } else if (family == GRU) {
    Gs = empty_big({LS, B, 4 * H}, opts);  // r z n hn
  } else {
    Gs = empty_big({LS, B, H}, opts);      // h~ (the activation)
  }

  const T* gxp = gx.data_ptr<T>();
  const T* bh = ptr_or_null<T>(b_hh);
  const T* lw = ptr_or_null<T>(ln_hh_w);
  const T* lb = ptr_or_null<T>(ln_hh_b);
  const T* lcw = ptr_or_null<T>(ln_c_w);
  const T* lcb = ptr_or_null<T>(ln_c_b);
  std::vector<T> zeros(H, T(0)), ones(H, T(1));
  const T* pi = peep ? ptr_or_null<T>(peep_i) : zeros.data();
  const T* pf = peep ? ptr_or_null<T>(peep_f) : zeros.data();
  const T* po = peep ? ptr_or_null<T>(peep_o) : zeros.data();
  const T* rmp = ptr_or_null<T>(rmask);
  Tensor len64;
  if (has(lengths)) len64 = lengths->to(at::kLong).contiguous();
  const int64_t* len = len64.defined() ? len64.data_ptr<int64_t>() : nullptr;
  Zone<T> zh(zh_t, B, P);
  Zone<T> zc(zc_t, B, H);
  Tensor w_hh_t = w_hh.t();
  Tensor w_hr_t = proj ? w_hr->t() : Tensor();

  T* yp = y.data_ptr<T>();
  T* hp = h.data_ptr<T>();
  T* cp = C.defined() ? C.data_ptr<T>() : nullptr;
  T* ghp = gh.data_ptr<T>();
  T* Gp = Gs.data_ptr<T>();

  Prof prof;
  const StepWeight<T> Whh = StepWeight<T>::xwT(w_hh.data_ptr<T>(), Gt, P, L);
  over_batch(B, batch_chunks(B), prof, [&](int64_t r0, int64_t r1, int64_t, Prof&) {
  const int64_t nb = r1 - r0;
  for (int64_t k = 0; k < L; ++k) {
    const int64_t t = reverse ? L - 1 - k : k;
    const int64_t ts = keep ? t : 0;  // the step's slot in the saved buffers
    T* HPt = HP.data_ptr<T>() + ts * B * P;
    std::memcpy(HPt + r0 * P, hp + r0 * P, sizeof(T) * nb * P);
    T* HINt = HIN.data_ptr<T>() + ts * B * P;
    if (rm) {
      #pragma GCC ivdep
      for (int64_t i = r0 * P; i < r1 * P; ++i) HINt[i] = hp[i] * rmp[i];
    }
    Whh.run(nb, HINt + r0 * P, ghp + r0 * Gt, T(0));
    const T* gxt = gxp + t * B * Gt;
    T* XHt = ln ? XH.data_ptr<T>() + ts * B * Gt : nullptr;
    T* RHt = ln ? RH.data_ptr<T>() + ts * B : nullptr;

    // the recurrent pre-activation row b: LN_hh(gh) + b_hh, written back into gh
    auto recurrent_row = [&](int64_t b) {
      T* g = ghp + b * Gt;
      if (ln) {
        T mean, rstd;
        row_stats(g, Gt, mean, rstd);
        RHt[b] = rstd;
        T* xh = XHt + b * Gt;
        #pragma GCC ivdep
        for (int64_t j = 0; j < Gt; ++j) {
          T xv = (g[j] - mean) * rstd;
          xh[j] = xv;
          g[j] = xv * lw[j] + lb[j];
        }
      }
      if (bh) {
        #pragma GCC ivdep
        for (int64_t j = 0; j < Gt; ++j) g[j] += bh[j];
      }
    };

    if (family == GRU) {
      T* Gt_ = Gp + ts * B * 4 * H;
      at::parallel_for(r0, r1, grain(8 * Gt), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          recurrent_row(b);
          const bool v = is_valid(len, t, b);
          const T* a = ghp + b * Gt;
          const T* x = gxt + b * Gt;
          T* g = Gt_ + b * 4 * H;
          T* hrow = hp + b * P;
          const T* hprev = HPt + b * P;
          T* yrow = yp + (t * B + b) * P;
          const T* zhr = zh.row(t, b);
          #pragma GCC ivdep
          for (int64_t j = 0; j < H; ++j) {
            T r = sigmoid(x[j] + a[j]);
            T z = sigmoid(x[H + j] + a[H + j]);
            T hn = a[2 * H + j];
            T n = tanh_(x[2 * H + j] + r * hn);
            g[j] = r;
            g[H + j] = z;
            g[2 * H + j] = n;
            g[3 * H + j] = hn;
            yrow[j] = (T(1) - z) * n + z * hprev[j];  // candidate, committed below
          }
          commit_row(static_cast<const T*>(yrow), hprev, zhr, hrow, yrow, H, v);
        }
      });
    } else {
      T* Gt_ = Gp + ts * B * H;
      const bool relu = family == ELMAN_RELU;
      const T* mb = family == ELMAN_MODRELU ? peep_i->data_ptr<T>() : nullptr;
      at::parallel_for(r0, r1, grain(4 * Gt), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          recurrent_row(b);
          const bool v = is_valid(len, t, b);
          const T* a = ghp + b * Gt;
          const T* x = gxt + b * Gt;
          T* g = Gt_ + b * H;
          T* hrow = hp + b * P;
          const T* hprev = HPt + b * P;
          T* yrow = yp + (t * B + b) * P;
          const T* zhr = zh.row(t, b);
          if (relu) {
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; ++j) {
              T pre = x[j] + a[j];
              g[j] = pre > T(0) ? pre : T(0);
            }
          } else if (mb) {
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; ++j) g[j] = modrelu(x[j] + a[j], mb[j]);
          } else {
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; ++j) g[j] = tanh_(x[j] + a[j]);
          }
          commit_row(static_cast<const T*>(g), hprev, zhr, hrow, yrow, H, v);
        }
      });
    }
  }
  });
  // saved for backward (undefined tensors where an option is off)
  return {y, h, C, HP, HIN, Gs, CP, CT, TC, XH, RH, XC, RC, M};
}

std::vector<Tensor> forward(int64_t family, const Tensor& gx, const Tensor& h0, const OptT& c0,
                            const Tensor& w_hh, const OptT& b_hh, const OptT& ln_hh_w,
                            const OptT& ln_hh_b, const OptT& ln_c_w, const OptT& ln_c_b,
                            const OptT& peep_i, const OptT& peep_f, const OptT& peep_o,
                            const OptT& w_hr, const OptT& rmask, const OptT& zh, const OptT& zc,
                            const OptT& lengths, bool reverse, bool keep) {
  TORCH_CHECK(gx.is_contiguous() && h0.is_contiguous(), "fused_cpu: gx and h0 must be contiguous");
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "fused_cpu_forward", [&] {
    out = forward_impl<scalar_t>(family, gx, h0, c0, w_hh, b_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b,
                                 peep_i, peep_f, peep_o, w_hr, rmask, zh, zc, lengths, reverse,
                                 keep);
  });
  return out;
}

// ------------------------------------------------------------------------------------------------
// backward
// ------------------------------------------------------------------------------------------------
// grads: dgx, dh0, dc0, dw_hh, db_hh, dln_hh_w, dln_hh_b, dln_c_w, dln_c_b, dpi, dpf, dpo, dw_hr
template <typename T>
std::vector<Tensor> backward_impl(int64_t family, const Tensor& dy_in, const Tensor& dhT_in,
                                  const OptT& dcT_in, const std::vector<Tensor>& saved,
                                  const Tensor& w_hh, const OptT& b_hh, const OptT& ln_hh_w,
                                  const OptT& ln_c_w, const OptT& peep_i, const OptT& peep_f,
                                  const OptT& peep_o, const OptT& w_hr, const OptT& rmask,
                                  const OptT& zh_t, const OptT& zc_t, const OptT& lengths,
                                  bool reverse) {
  const Tensor &HP = saved[0], &HIN = saved[1], &Gs = saved[2], &CP = saved[3], &CT = saved[4],
               &TC = saved[5], &XH = saved[6], &RH = saved[7], &XC = saved[8], &RC = saved[9],
               &M = saved[10];
  const int64_t L = HP.size(0), B = HP.size(1), P = HP.size(2);
  const int64_t Gt = w_hh.size(0);
  const int64_t H = Gt / (family == LSTM ? 4 : family == GRU ? 3 : 1);
  const bool proj = has(w_hr);
  const bool ln = has(ln_hh_w);
  const bool lnc = has(ln_c_w);
  const bool peep = family == LSTM && has(peep_i);
  const bool rm = has(rmask);
  auto opts = HP.options();

  Tensor dy = dy_in.contiguous();
  Tensor dh = dhT_in.clone().contiguous();
  Tensor dc = family == LSTM ? dcT_in->clone().contiguous() : Tensor();
  Tensor DX = empty_big({L, B, Gt}, opts);                   // d gx (and, no LN, d gh_raw)
  // d (LN_hh(gh) + b_hh), d (h W_hh^T)
  Tensor DGH = family == GRU ? empty_big({L, B, Gt}, opts) : DX;
  Tensor DGR = ln ? empty_big({L, B, Gt}, opts) : DGH;
  Tensor DHT = proj ? empty_big({L, B, P}, opts) : Tensor();       // d h~ (before W_hr)
  Tensor DCN = lnc ? empty_big({L, B, H}, opts) : Tensor();        // d LN_c(c~)
  Tensor dm = proj ? at::empty({B, H}, opts) : Tensor();
  Tensor dhin = at::empty({B, P}, opts);

  const T* dyp = dy.data_ptr<T>();
  T* dhp = dh.data_ptr<T>();
  T* dcp = dc.defined() ? dc.data_ptr<T>() : nullptr;
  const T* lw = ptr_or_null<T>(ln_hh_w);
  const T* lcw = ptr_or_null<T>(ln_c_w);
  std::vector<T> zeros(H, T(0)), ones(H, T(1));
  const T* pi = peep ? ptr_or_null<T>(peep_i) : zeros.data();
  const T* pf = peep ? ptr_or_null<T>(peep_f) : zeros.data();
  const T* po = peep ? ptr_or_null<T>(peep_o) : zeros.data();
  const T* rmp = ptr_or_null<T>(rmask);
  Tensor len64;
  if (has(lengths)) len64 = lengths->to(at::kLong).contiguous();
  const int64_t* len = len64.defined() ? len64.data_ptr<int64_t>() : nullptr;
  Zone<T> zh(zh_t, B, P);
  Zone<T> zc(zc_t, B, H);
  const T* Gp = Gs.data_ptr<T>();
  const T* HPp = HP.data_ptr<T>();

  Prof prof;
  const StepWeight<T> Whh = StepWeight<T>::xw(w_hh.data_ptr<T>(), Gt, P, L);
  over_batch(B, batch_chunks(B), prof, [&](int64_t r0, int64_t r1, int64_t, Prof&) {
  const int64_t nb = r1 - r0;
  for (int64_t k = 0; k < L; ++k) {
    const int64_t t = reverse ? k : L - 1 - k;
    const T* dyt = dyp + t * B * P;
    T* DXt = DX.data_ptr<T>() + t * B * Gt;
    T* DGHt = DGH.data_ptr<T>() + t * B * Gt;
    T* DGRt = DGR.data_ptr<T>() + t * B * Gt;

    {
      const T* XHt = ln ? XH.data_ptr<T>() + t * B * Gt : nullptr;
      const T* RHt = ln ? RH.data_ptr<T>() + t * B : nullptr;
      const T* HPt = HPp + t * B * P;
      const bool gru = family == GRU;
      const bool relu = family == ELMAN_RELU;
      const bool modrelu_family = family == ELMAN_MODRELU;
      at::parallel_for(r0, r1, grain(8 * Gt), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const bool v = is_valid(len, t, b);
          T* d = dhp + b * P;
          T* dx = DXt + b * Gt;
          if (!v) {
            std::memset(dx, 0, sizeof(T) * Gt);
            if (gru) std::memset(DGHt + b * Gt, 0, sizeof(T) * Gt);
            if (ln) std::memset(DGRt + b * Gt, 0, sizeof(T) * Gt);
            continue;  // dh passes through unchanged
          }
          const T* dyr = dyt + b * P;
          const T* zhr = zh.row(t, b);
          if (gru) {
            const T* g = Gp + (t * B + b) * 4 * H;
            const T* hprev = HPt + b * P;
            T* dg = DGHt + b * Gt;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; ++j) {
              T gin = d[j] + dyr[j];
              T zz = zhr[j];
              T dht = (T(1) - zz) * gin;
              const T r = g[j], z = g[H + j], n = g[2 * H + j], hn = g[3 * H + j];
              T dn_pre = dht * (T(1) - z) * (T(1) - n * n);
              T dz_pre = dht * (hprev[j] - n) * z * (T(1) - z);
              T dr_pre = dn_pre * hn * r * (T(1) - r);
              d[j] = zz * gin + dht * z;
              dx[j] = dr_pre;
              dx[H + j] = dz_pre;
              dx[2 * H + j] = dn_pre;
              dg[j] = dr_pre;
              dg[H + j] = dz_pre;
              dg[2 * H + j] = dn_pre * r;
            }
            if (ln) ln_backward_row(dg, lw, XHt + b * Gt, RHt[b], Gt, DGRt + b * Gt);
          } else {
            const T* g = Gp + (t * B + b) * H;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; ++j) {
              T gin = d[j] + dyr[j];
              T zz = zhr[j];
              T dht = (T(1) - zz) * gin;
              T a = g[j];
              T dtanh = dht * (T(1) - a * a);
              T drelu = a > T(0) ? dht : T(0);
              T dmod = a != T(0) ? dht : T(0);  // modReLU: 1 where the unit is active
              dx[j] = relu ? drelu : modrelu_family ? dmod : dtanh;
              d[j] = zz * gin;
            }
          }
        }
      });
    }
    // dh_{t-1} += (d gh_raw W_hh) * mask
    if (rm) {
      T* di = dhin.data_ptr<T>();
      Whh.run(nb, DGR.data_ptr<T>() + (t * B + r0) * Gt, di + r0 * P, T(0));
      #pragma GCC ivdep
      for (int64_t i = r0 * P; i < r1 * P; ++i) dhp[i] += di[i] * rmp[i];
    } else {
      Whh.run(nb, DGR.data_ptr<T>() + (t * B + r0) * Gt, dhp + r0 * P, T(1));
    }
  }
  });

  // parameter gradients over all steps at once
  const int64_t TB = L * B;
  Tensor dw_hh = weight_grad(DGR.view({TB, Gt}), HIN.view({TB, P}));
  Tensor db_hh = has(b_hh) ? DGH.view({TB, Gt}).sum(0) : Tensor();
  Tensor dln_w, dln_b, dlnc_w, dlnc_b, dpi, dpf, dpo, dw_hr;
  if (ln) {
    dln_w = (DGH * XH).view({TB, Gt}).sum(0);
    dln_b = DGH.view({TB, Gt}).sum(0);
  }
  if (lnc) {
    dlnc_w = (DCN * XC).view({TB, H}).sum(0);
    dlnc_b = DCN.view({TB, H}).sum(0);
  }
  if (peep) {
    auto DXv = DX.view({TB, 4, H});
    auto CPv = CP.view({TB, H});
    dpi = (DXv.select(1, 0) * CPv).sum(0);
    dpf = (DXv.select(1, 1) * CPv).sum(0);
    dpo = (DXv.select(1, 3) * CT.view({TB, H})).sum(0);
  }
  if (proj) dw_hr = weight_grad(DHT.view({TB, P}), M.view({TB, H}));
  // modReLU's threshold: dh/db = sign(h) where a unit is active, and DX is zero where it is not
  if (family == ELMAN_MODRELU) dpi = (DX * Gs.sign()).view({TB, H}).sum(0);
  return {DX, dh, dc, dw_hh, db_hh, dln_w, dln_b, dlnc_w, dlnc_b, dpi, dpf, dpo, dw_hr};
}

std::vector<Tensor> backward(int64_t family, const Tensor& dy, const Tensor& dhT, const OptT& dcT,
                             const std::vector<Tensor>& saved, const Tensor& w_hh,
                             const OptT& b_hh, const OptT& ln_hh_w, const OptT& ln_c_w,
                             const OptT& peep_i, const OptT& peep_f, const OptT& peep_o,
                             const OptT& w_hr, const OptT& rmask, const OptT& zh, const OptT& zc,
                             const OptT& lengths, bool reverse) {
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "fused_cpu_backward", [&] {
    out = backward_impl<scalar_t>(family, dy, dhT, dcT, saved, w_hh, b_hh, ln_hh_w, ln_c_w, peep_i,
                                  peep_f, peep_o, w_hr, rmask, zh, zc, lengths, reverse);
  });
  return out;
}


// ------------------------------------------------------------------------------------------------
// Stepper: one streaming time step of a whole stack (Recurrent.step), every family and option, no
// autograd. Bound once per module to its parameters (the tensors are the parameters themselves, so
// in-place updates are seen): converting ~20 optional tensors from Python on every call cost ~3 us
// at B=1, as much as a tenth of the step. Zoneout at evaluation: the scalars zh, zc.
// ------------------------------------------------------------------------------------------------
struct StepLayer {
  int64_t family;
  Tensor w_ih, w_hh;
  OptT b_ih, b_hh, ln_ih_w, ln_ih_b, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, peep_i, peep_f, peep_o, w_hr;
};

// One layer's per-step buffers, kept between calls: allocating and zeroing a dozen vectors cost
// about 1 us of a 17 us step at H=256.
template <typename T>
struct StepScratch {
  std::vector<T> gxr, ghr, pre, xh, g, ct, tc, xc, m, zcv, sink, htil;
  LstmBuffers<T> buf;
};

// One layer: x (B, I), h (B, P), c (B, H) for the LSTM -> hn (B, P), cn (B, H).
template <typename T>
void step_layer(StepLayer& L, StepScratch<T>& s, int64_t B, int64_t I, const T* xp, int64_t P,
                const T* hp, const T* cp, T zh, T zc, T* hn, T* cn) {
  const int64_t Gt = L.w_hh.size(0);
  s.gxr.resize(B * Gt);
  s.ghr.resize(B * Gt);
  T* gxr = s.gxr.data();
  T* ghr = s.ghr.data();
  if (B <= 4) {
    small_xwT2<T>(B, Gt, I, xp, L.w_ih.data_ptr<T>(), gxr, P, hp, L.w_hh.data_ptr<T>(), ghr);
  } else {
    gemm_rows<T>(true, B, Gt, I, xp, L.w_ih.data_ptr<T>(), gxr, T(0));
    gemm_rows<T>(true, B, Gt, P, hp, L.w_hh.data_ptr<T>(), ghr, T(0));
  }
  if (L.family == LSTM) {
    const int64_t H = Gt / 4;
    const LstmP<T> p = lstm_params<T>(H, L.b_ih, L.b_hh, L.ln_ih_w, L.ln_ih_b, L.ln_hh_w,
                                      L.ln_hh_b, L.ln_c_w, L.ln_c_b, L.peep_i, L.peep_f, L.peep_o,
                                      s.buf);
    const bool proj = has(L.w_hr);
    for (auto* v : {&s.pre, &s.xh, &s.g}) v->resize(Gt);
    for (auto* v : {&s.ct, &s.tc, &s.xc}) v->resize(H);
    s.m.resize(B * H);
    s.sink.resize(3 * H);
    s.zcv.assign(H, zc);
    T si[2], rh, rc;
    for (int64_t b = 0; b < B; ++b) {
      // h is committed below (after W_hr when projected): its part of LstmOut goes to the sinks
      const LstmOut<T> o{s.zcv.data(), cn + b * H, s.sink.data(), s.buf.zeros.data(),
                         s.buf.zeros.data(), s.sink.data() + H, s.sink.data() + 2 * H};
      lstm_row_any(p, gxr + b * Gt, ghr + b * Gt, cp + b * H, s.pre.data(), s.xh.data(),
                   s.g.data(), s.ct.data(), s.tc.data(), s.m.data() + b * H, s.xc.data(), si, &rh,
                   &rc, o);
    }
    const T* hcand = s.m.data();
    if (proj) {
      s.htil.resize(B * P);
      gemm_rows<T>(true, B, P, H, s.m.data(), L.w_hr->data_ptr<T>(), s.htil.data(), T(0));
      hcand = s.htil.data();
    }
    for (int64_t i = 0; i < B * P; ++i) hn[i] = lerp(hcand[i], hp[i], zh);
    return;
  }
  const int64_t H = Gt / (L.family == GRU ? 3 : 1);
  const T* bi = ptr_or_null<T>(L.b_ih);
  const T* bh = ptr_or_null<T>(L.b_hh);
  const bool ln = has(L.ln_hh_w);
  for (int64_t b = 0; b < B; ++b) {
    T* gxb = gxr + b * Gt;
    T* ghb = ghr + b * Gt;
    if (ln) {  // GRU only: LN over each whole projection, before its bias
      const T *liw = L.ln_ih_w->data_ptr<T>(), *lib = L.ln_ih_b->data_ptr<T>();
      const T *lhw = L.ln_hh_w->data_ptr<T>(), *lhb = L.ln_hh_b->data_ptr<T>();
      T mi, ri, mh, rhv;
      row_stats(gxb, Gt, mi, ri);
      row_stats(ghb, Gt, mh, rhv);
      for (int64_t j = 0; j < Gt; ++j) {
        gxb[j] = (gxb[j] - mi) * ri * liw[j] + lib[j];
        ghb[j] = (ghb[j] - mh) * rhv * lhw[j] + lhb[j];
      }
    }
    if (bi)
      for (int64_t j = 0; j < Gt; ++j) gxb[j] += bi[j];
    if (bh)
      for (int64_t j = 0; j < Gt; ++j) ghb[j] += bh[j];
    const T* hprev = hp + b * P;
    T* out = hn + b * P;
    if (L.family == GRU) {
      #pragma GCC ivdep
      for (int64_t j = 0; j < H; ++j) {
        T r = sigmoid(gxb[j] + ghb[j]);
        T z = sigmoid(gxb[H + j] + ghb[H + j]);
        T n = tanh_(gxb[2 * H + j] + r * ghb[2 * H + j]);
        out[j] = lerp((T(1) - z) * n + z * hprev[j], hprev[j], zh);
      }
    } else if (L.family == ELMAN_MODRELU) {
      const T* mb = L.peep_i->data_ptr<T>();
      #pragma GCC ivdep
      for (int64_t j = 0; j < H; ++j) out[j] = lerp(modrelu(gxb[j] + ghb[j], mb[j]), hprev[j], zh);
    } else if (L.family == ELMAN_RELU) {
      #pragma GCC ivdep
      for (int64_t j = 0; j < H; ++j) {
        T pre = gxb[j] + ghb[j];
        out[j] = lerp(pre > T(0) ? pre : T(0), hprev[j], zh);
      }
    } else {
      #pragma GCC ivdep
      for (int64_t j = 0; j < H; ++j) out[j] = lerp(tanh_(gxb[j] + ghb[j]), hprev[j], zh);
    }
  }
}

class Stepper {
 public:
  // layers[l] = [W_ih, W_hh, b_ih, b_hh, LN_ih w/b, LN_hh w/b, LN_c w/b, peephole i/f/o, W_hr]
  // (None where the cell has no such parameter), families[l] its kernel family.
  Stepper(const std::vector<std::vector<OptT>>& layers, const std::vector<int64_t>& families,
          double zh, double zc, bool residual)
      : zh_(zh), zc_(zc), residual_(residual) {
    TORCH_CHECK(!layers.empty() && layers.size() == families.size(),
                "fused_cpu.Stepper: one family per layer");
    for (size_t l = 0; l < layers.size(); ++l) {
      const auto& a = layers[l];
      TORCH_CHECK(a.size() == 14, "fused_cpu.Stepper: 14 tensors per layer");
      TORCH_CHECK(has(a[0]) && has(a[1]), "fused_cpu.Stepper: W_ih and W_hh are required");
      TORCH_CHECK(a[0]->is_contiguous() && a[1]->is_contiguous(),
                  "fused_cpu.Stepper: the weights must be contiguous");
      layers_.push_back(StepLayer{families[l], *a[0], *a[1], a[2], a[3], a[4], a[5], a[6], a[7],
                                  a[8], a[9], a[10], a[11], a[12], a[13]});
    }
  }

  // x (B, I); h (L, B, P); c (L, B, H) for the LSTM -> [y (B, P), h_new (L, B, P), c_new].
  // Not reentrant (it keeps its scratch between calls): Python calls it holding the GIL.
  std::vector<Tensor> step(const Tensor& x, const Tensor& h, const OptT& c) {
    const int64_t L = static_cast<int64_t>(layers_.size());
    TORCH_CHECK(x.dim() == 2 && h.dim() == 3 && h.size(0) == L && h.size(1) == x.size(0),
                "fused_cpu.Stepper.step: x (B, I) and h (L, B, P) expected");
    const bool lstm = layers_[0].family == LSTM;
    TORCH_CHECK(lstm == has(c), "fused_cpu.Stepper.step: c is given exactly for the LSTM");
    const Tensor xc = x.contiguous(), hc = h.contiguous();
    const Tensor cc = lstm ? c->contiguous() : Tensor();
    // fresh outputs straight from the CPU allocator: through the dispatcher (empty_like, select for
    // y) they cost ~0.3 us each, a tenth of a small step; y is its own tensor, as in the Python step
    const auto fresh = [&](at::IntArrayRef sizes) { return at::detail::empty_cpu(sizes, x.scalar_type()); };
    const int64_t B = x.size(0), P = h.size(2), H = lstm ? cc.size(2) : 0;
    Tensor h_new = fresh(hc.sizes()), c_new = lstm ? fresh(cc.sizes()) : Tensor();
    Tensor y = fresh({B, P});
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_cpu_step", [&] {
      using T = scalar_t;
      const T* inp = xc.data_ptr<T>();
      int64_t I = x.size(1);
      std::vector<T> res;  // a residual layer's output, which is not its state
      for (int64_t l = 0; l < L; ++l) {
        const T* hp = hc.data_ptr<T>() + l * B * P;
        T* hn = h_new.data_ptr<T>() + l * B * P;
        const T* cp = lstm ? cc.data_ptr<T>() + l * B * H : nullptr;
        T* cn = lstm ? c_new.data_ptr<T>() + l * B * H : nullptr;
        TORCH_CHECK(layers_[l].w_ih.size(1) == I, "fused_cpu.Stepper.step: input size");
        step_layer<T>(layers_[l], scratch<T>(l), B, I, inp, P, hp, cp, T(zh_), T(zc_), hn, cn);
        if (residual_ && l > 0) {
          std::vector<T> sum(B * P);
          for (int64_t i = 0; i < B * P; ++i) sum[i] = hn[i] + inp[i];
          res.swap(sum);
          inp = res.data();
        } else {
          inp = hn;
        }
        I = P;
      }
      std::memcpy(y.data_ptr<T>(), inp, sizeof(T) * B * P);
    });
    if (lstm) return {y, h_new, c_new};
    return {y, h_new};
  }

 private:
  template <typename T>
  StepScratch<T>& scratch(int64_t layer) {
    auto& all = [this]() -> std::vector<StepScratch<T>>& {
      if constexpr (std::is_same<T, float>::value) return scratch32_;
      else return scratch64_;
    }();
    if (all.size() != layers_.size()) all.resize(layers_.size());
    return all[layer];
  }

  std::vector<StepLayer> layers_;
  std::vector<StepScratch<float>> scratch32_;
  std::vector<StepScratch<double>> scratch64_;
  double zh_, zc_;
  bool residual_;
};

}  // namespace

// ------------------------------------------------------------------------------------------------
// The input projection x W^T (+ b) over all steps, and its backward, with the large results in the
// block cache (a fresh (T, B, G) buffer from malloc costs a page fault per 4 KiB on every call).
// x (..., I) and w (G, I) contiguous.
// ------------------------------------------------------------------------------------------------
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

Tensor project(const Tensor& x, const Tensor& w, const OptT& b) {
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous(), "fused_cpu: x and w must be contiguous");
  const int64_t I = w.size(1), G = w.size(0), N = I ? x.numel() / I : 0;
  std::vector<int64_t> sizes(x.sizes().begin(), x.sizes().end());
  sizes.back() = G;
  Tensor out = empty_big(sizes, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_cpu_project", [&] {
    using T = scalar_t;
    big_gemm<T>(N, x.data_ptr<T>(), StepWeight<T>::xwT(w.data_ptr<T>(), G, I, N / kBigGemmBlock),
                out.data_ptr<T>());
  });
  if (has(b)) out.add_(*b);
  return out;
}

std::vector<Tensor> project_backward(const Tensor& dgx_in, const Tensor& x, const Tensor& w,
                                     bool need_dx, bool need_dw, bool need_db) {
  Tensor dgx = dgx_in.contiguous();
  const int64_t I = w.size(1), G = w.size(0), N = I ? x.numel() / I : 0;
  Tensor dx, dw, db;
  if (need_dx) {
    dx = empty_big(x.sizes(), x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_cpu_project_backward", [&] {
      using T = scalar_t;
      big_gemm<T>(N, dgx.data_ptr<T>(), StepWeight<T>::xw(w.data_ptr<T>(), G, I, N / kBigGemmBlock),
                  dx.data_ptr<T>());
    });
  }
  if (need_dw) dw = weight_grad(dgx.view({N, G}), x.view({N, I}));
  if (need_db) db = dgx.view({N, G}).sum(0);
  return {dx, dw, db};
}

// bernoulli_mask.cpp
at::Tensor bernoulli_mask(at::IntArrayRef sizes, int64_t seed, int64_t threshold,
                          at::ScalarType dtype);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "rnnkit fused CPU recurrent executor (forward/backward over a sequence; streaming step)";
  m.def("forward", &forward, "fused forward over a sequence (GRU, Elman); keep: what backward needs");
  m.def("backward", &backward, "fused backward over a sequence (GRU, Elman)");
  m.def("lstm_forward", &lstm_forward,
        "fused LSTM forward over a sequence; keep: what backward needs (else one step's scratch)");
  m.def("lstm_backward", &lstm_backward, "fused LSTM backward over a sequence");
  py::class_<Stepper>(m, "Stepper", "one streaming time step of a whole stack (no autograd)")
      .def(py::init<const std::vector<std::vector<OptT>>&, const std::vector<int64_t>&, double,
                    double, bool>())
      .def("step", &Stepper::step, py::arg("x"), py::arg("h"), py::arg("c") = py::none());
  m.def("project", &project, "input projection x W^T (+ b) into the block cache");
  m.def("project_backward", &project_backward, "gradients of project: dx, dw, db");
  m.def("bernoulli_mask", &bernoulli_mask, "counter-based Bernoulli mask (see bernoulli_mask.cpp)");
}
