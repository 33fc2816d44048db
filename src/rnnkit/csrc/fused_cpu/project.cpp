// The input projection x W^T (+ b) over all steps, and its backward, with the large results in the
// block cache (a fresh (T, B, G) buffer from malloc costs a page fault per 4 KiB on every call).
// x (..., I) and w (G, I) contiguous.

#include <torch/extension.h>

#include "api.h"
#include "block_cache.h"
#include "step_gemm.h"

namespace rnnkit {

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

}  // namespace rnnkit
