// IndRNN's kernel (rnnkit/cells/indrnn.py): h_t = act(x W_ih^T + b_ih + u * h_{t-1} + b_hh), act relu
// or tanh, u = weight_hh a vector (H,): an element-wise recurrence, so the single-state loop runs it
// without a GEMM per step (kDiagonal: u * h_{t-1} forward, dh_{t-1} = u * d pre backward, du summed
// over the rows). The activation rows are the Elman cell's (the same function of the pre-activation).
// recurrent_max clamps u: the sequence run gets u already clamped from Python (autograd handles the
// clamp), the streaming step clamps here (it is bound to the raw parameter).
#pragma once

#include <algorithm>
#include <vector>

#include "elman.h"
#include "params.h"
#include "single_state.h"

namespace rnnkit {

template <Act A>
struct IndRNNFamily : SingleStateFamily<IndRNNFamily<A>> {
  static constexpr int64_t kGates = 1;
  static constexpr int64_t kSaved = 1;
  static constexpr int64_t kRowCost = 4;
  static constexpr bool kDiagonal = true;
  static constexpr bool kOwnRecurrentGrad = false;

  template <typename T>
  using Rows = typename ElmanFamily<A>::template Rows<T>;

  // u as the step uses it: clamp(u, -recurrent_max, recurrent_max) when the option is set
  template <typename T>
  static const T* diagonal_weight(const KernelParams& p, const Options& o, std::vector<T>& buf) {
    const T* u = p.weight_hh->data_ptr<T>();
    const std::optional<double> bound = o.number("recurrent_max");
    if (!bound) return u;
    const int64_t H = p.weight_hh->numel();
    const T m = T(*bound);
    buf.resize(H);
    for (int64_t j = 0; j < H; ++j) buf[j] = std::min(std::max(u[j], -m), m);
    return buf.data();
  }

  static void extra_grads(const KernelParams&, const Tensor&, const Tensor&, int64_t, int64_t,
                          KernelParams&) {}
};

template <typename Visit>
bool visit_indrnn(const std::string& name, const Options& o, Visit&& visit) {
  if (name != "indrnn") return false;
  const std::string act = o.text("nonlinearity", "relu");
  TORCH_CHECK(act == "relu" || act == "tanh", "fused_cpu: IndRNN nonlinearity ", act);
  if (act == "tanh") visit(IndRNNFamily<Act::Tanh>{});
  else visit(IndRNNFamily<Act::Relu>{});
  return true;
}

}  // namespace rnnkit
