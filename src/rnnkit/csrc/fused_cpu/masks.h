// The masking rules of rnnkit/executors/reference.py (the specification), as the fused loops apply
// them per row:
//   - recurrent mask m (B, P): h_{t-1} * m enters W_hh only;
//   - zoneout weight z (T, B, n) or a scalar: s_t = lerp(s~_t, s_{t-1}, z) (torch.lerp's formula);
//   - lengths: at steps t >= length[b] the state is kept and the output is zero;
//   - reverse: t runs from T-1 down to 0.
#pragma once

#include <ATen/ATen.h>

#include <cstring>
#include <vector>

#include "params.h"
#include "pointwise.h"

namespace rnnkit {

inline bool is_valid(const int64_t* len, int64_t t, int64_t b) { return !len || t < len[b]; }

// The lengths as int64 (kept alive by the object), or none.
struct Lengths {
  Tensor len64;
  const int64_t* p = nullptr;
  explicit Lengths(const OptT& lengths) {
    if (has(lengths)) {
      len64 = lengths->to(at::kLong).contiguous();
      p = len64.data_ptr<int64_t>();
    }
  }
};

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

}  // namespace rnnkit
