// A sequence run of one layer-direction, forward and backward, for the family named by the caller
// (CellSpec.kernel_family()): families.h finds its loop (single_state.h or the LSTM's lstm_loop.h).

#include <torch/extension.h>

#include "api.h"
#include "families.h"

namespace rnnkit {

std::vector<Tensor> sequence_forward(const std::string& family, const OptionDict& options,
                                     const Tensor& gx, const Tensor& h0, const OptT& c0,
                                     const TensorDict& params, const OptT& rmask, const OptT& zh,
                                     const OptT& zc, const OptT& lengths, bool reverse,
                                     bool want_states, bool keep) {
  TORCH_CHECK(gx.is_contiguous() && h0.is_contiguous(), "fused_cpu: gx and h0 must be contiguous");
  SequenceArgs args{gx, h0, c0, KernelParams::from(params), Options{options}, rmask, zh, zc,
                    lengths, reverse, want_states, keep};
  if (has(c0)) args.c0 = c0->contiguous();
  SequenceResult r;
  const bool found = with_family(family, args.options, [&](auto fam) {
    using F = decltype(fam);
    AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "fused_cpu_forward", [&] {
      r = F::template forward<scalar_t>(args);
    });
  });
  TORCH_CHECK(found, "fused_cpu: no kernel family '", family, "'");
  std::vector<Tensor> out = {r.y, r.h, r.c, r.cs};
  out.insert(out.end(), r.saved.begin(), r.saved.end());
  return out;
}

std::tuple<std::vector<Tensor>, TensorDict> sequence_backward(
    const std::string& family, const OptionDict& options, const Tensor& dy, const Tensor& dhT,
    const OptT& dcT, const OptT& dCS, const std::vector<Tensor>& saved, const Tensor& gx,
    const TensorDict& params, const OptT& rmask, const OptT& zh, const OptT& zc,
    const OptT& lengths, bool reverse) {
  BackwardArgs args{dy, dhT, dcT, dCS, saved, gx, KernelParams::from(params), Options{options},
                    rmask, zh, zc, lengths, reverse};
  BackwardResult r;
  const bool found = with_family(family, args.options, [&](auto fam) {
    using F = decltype(fam);
    AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "fused_cpu_backward", [&] {
      r = F::template backward<scalar_t>(args);
    });
  });
  TORCH_CHECK(found, "fused_cpu: no kernel family '", family, "'");
  return {{r.dgx, r.dh0, r.dc0}, r.grads.named()};
}

std::map<std::string, std::map<std::string, int64_t>> families() {
  std::map<std::string, std::map<std::string, int64_t>> out;
  for (const std::string& name : family_names()) {
    with_family(name, Options{}, [&](auto fam) {
      using F = decltype(fam);
      out[name] = {{"states", F::kTwoStates ? 2 : 1}, {"raw_input", F::kTakesRawInput ? 1 : 0}};
    });
  }
  return out;
}

}  // namespace rnnkit
