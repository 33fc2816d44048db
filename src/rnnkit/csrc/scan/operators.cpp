// The scan as torch operators (rnnkit::scan, rnnkit::scan_backward): CPU kernels and autograd in C++,
// so that a compiled graph calls them without the interpreter; the schemas and fake implementations
// are Python's (rnnkit/executors/custom_ops.py), as for the fused_cpu operators (fused_cpu/operators.cpp).

#include <torch/extension.h>
#include <torch/library.h>

#include "api.h"
#include "operator_autograd.h"

namespace rnnkit::scan_kernel {
namespace {

using at::Tensor;
using OptT = std::optional<Tensor>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr char kScan[] = "rnnkit::scan";
constexpr char kScanBackward[] = "rnnkit::scan_backward";

OptT contiguous(const OptT& t) {
  return t.has_value() && t->defined() ? OptT(t->contiguous()) : OptT();
}

std::tuple<Tensor, Tensor> scan_cpu(int64_t family, bool act_g, const Tensor& gx, const Tensor& h0,
                                    const OptT& z, const OptT& lengths, bool reverse) {
  auto out = forward(family, act_g, gx.contiguous(), h0.contiguous(), contiguous(z), lengths, reverse);
  return {out[0], out[1]};
}

std::tuple<Tensor, Tensor> scan_backward_cpu(int64_t family, bool act_g, const Tensor& gx, const Tensor& h0,
                                             const Tensor& y, const Tensor& dy, const OptT& dh,
                                             const OptT& z, const OptT& lengths, bool reverse) {
  auto out = backward(family, act_g, gx.contiguous(), h0.contiguous(), y.contiguous(), dy.contiguous(),
                      contiguous(dh), contiguous(z), lengths, reverse);
  return {out[0], out[1]};
}


OptT optional(const Tensor& t) { return t.defined() ? OptT(t) : OptT(); }
Tensor saved_or_none(const OptT& t) { return t.has_value() ? *t : Tensor(); }

// the scan keeps no buffer: its backward reads the inputs and the outputs y
struct Scan : torch::autograd::Function<Scan> {
  static variable_list forward(AutogradContext* ctx, int64_t family, bool act_g, const Tensor& gx,
                               const Tensor& h0, const OptT& z, const OptT& lengths, bool reverse) {
    auto [y, h] = [&] {
      at::AutoDispatchBelowADInplaceOrView guard;
      return rnnkit::OperatorAutograd<decltype(scan_cpu)>::handle<kScan>().call(family, act_g, gx, h0, z, lengths, reverse);
    }();
    ctx->saved_data["family"] = family;
    ctx->saved_data["act_g"] = act_g;
    ctx->saved_data["reverse"] = reverse;
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({gx, h0, y, saved_or_none(z), saved_or_none(lengths)});
    return {y, h};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto kept = ctx->get_saved_variables();
    const Tensor dy = grads[0].defined() ? grads[0] : at::zeros_like(kept[2]);
    auto [dgx, dh0] = rnnkit::OperatorAutograd<decltype(scan_backward_cpu)>::handle<kScanBackward>().call(ctx->saved_data["family"].toInt(), ctx->saved_data["act_g"].toBool(),
                                kept[0], kept[1], kept[2], dy, optional(grads[1]), optional(kept[3]),
                                optional(kept[4]), ctx->saved_data["reverse"].toBool());
    return {Tensor(), Tensor(), dgx, dh0, Tensor(), Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor> scan_autograd(int64_t family, bool act_g, const Tensor& gx, const Tensor& h0,
                                         const OptT& z, const OptT& lengths, bool reverse) {
  auto out = Scan::apply(family, act_g, gx, h0, z, lengths, reverse);
  return {out[0], out[1]};
}

}  // namespace
}  // namespace rnnkit::scan_kernel

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  using namespace rnnkit::scan_kernel;
  m.impl("scan", TORCH_FN(scan_cpu));
  m.impl("scan_backward", TORCH_FN(scan_backward_cpu));
}

TORCH_LIBRARY_IMPL(rnnkit, Autograd, m) {
  using namespace rnnkit::scan_kernel;
  m.impl("scan", TORCH_FN(scan_autograd));
  m.impl("scan_backward",
         TORCH_FN(rnnkit::OperatorAutograd<decltype(scan_backward_cpu)>::no_second_backward<kScanBackward>));
}
