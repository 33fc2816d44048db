// The Elman cell's kernel rows (rnnkit/cells/elman.py): h_t = act(x W_ih^T + b_ih + h_{t-1} W_hh^T
// + b_hh), act tanh, relu or modReLU_b (sign(z) max(|z| + b, 0), a learnt threshold b per unit).
// The recurrence and its GEMMs, masks and lengths are the single-state loop's (single_state.h); a row
// here maps the pre-activation halves x (input side) and a (recurrent side) to the candidate state.
#pragma once

#include "params.h"
#include "pointwise.h"
#include "single_state.h"

namespace rnnkit {

enum class Act { Tanh, Relu, ModRelu };

// modReLU_b(z) = sign(z) max(|z| + b, 0), with sign(0) = 0 as torch.sign
template <typename T>
inline T modrelu(T z, T b) {
  const T m = (z >= T(0) ? z : -z) + b;
  return m > T(0) ? (z > T(0) ? m : z < T(0) ? -m : T(0)) : T(0);
}

template <Act A>
struct ElmanFamily : SingleStateFamily<ElmanFamily<A>> {
  static constexpr int64_t kGates = 1;    // blocks of H in gx and gh
  static constexpr int64_t kSaved = 1;    // saved per unit and step: h~ = act(pre)
  static constexpr int64_t kRowCost = 4;  // element-operations per gate value (thread grain)
  static constexpr bool kDiagonal = false;
  static constexpr bool kOwnRecurrentGrad = false;  // d gh == d gx

  template <typename T>
  struct Rows {
    const T* threshold = nullptr;  // modReLU's b (H)
    Rows(const KernelParams& p, const Options&) {
      if constexpr (A == Act::ModRelu) {
        TORCH_CHECK(has(p.modrelu_bias), "fused_cpu: the modReLU Elman cell needs modrelu_bias");
        threshold = p.modrelu_bias->data_ptr<T>();
      }
    }
    // saved = h~ = act(x + a), which is also the candidate state
    const T* forward(int64_t H, const T* x, const T* a, const T*, T* saved, T*) const {
      T* g = saved;
      if constexpr (A == Act::Relu) {
        #pragma GCC ivdep
        for (int64_t j = 0; j < H; ++j) g[j] = relu(x[j] + a[j]);
      } else if constexpr (A == Act::ModRelu) {
        const T* mb = threshold;
        #pragma GCC ivdep
        for (int64_t j = 0; j < H; ++j) g[j] = modrelu(x[j] + a[j], mb[j]);
      } else {
        #pragma GCC ivdep
        for (int64_t j = 0; j < H; ++j) g[j] = tanh_(x[j] + a[j]);
      }
      return g;
    }
    // dht = d candidate -> dx = d pre-activation (d gh is the same buffer); nothing reaches h_{t-1}
    // but through W_hh
    void backward(int64_t H, const T* dht, const T* saved, const T*, T* dx, T*, T*) const {
      const T* g = saved;
      #pragma GCC ivdep
      for (int64_t j = 0; j < H; ++j) {
        const T a = g[j];
        if constexpr (A == Act::Relu) dx[j] = a > T(0) ? dht[j] : T(0);
        else if constexpr (A == Act::ModRelu) dx[j] = a != T(0) ? dht[j] : T(0);  // 1 where active
        else dx[j] = dht[j] * (T(1) - a * a);
      }
    }
  };

  // modReLU's threshold: dh/db = sign(h) where a unit is active, and DX is zero where it is not
  static void extra_grads(const KernelParams&, const Tensor& DX, const Tensor& Gs, int64_t TB,
                          int64_t H, KernelParams& grads) {
    if constexpr (A == Act::ModRelu) grads.modrelu_bias = (DX * Gs.sign()).view({TB, H}).sum(0);
  }
};

// The registration: kernel_family() names -> kernel.
template <typename Visit>
bool visit_elman(const std::string& name, const Options&, Visit&& visit) {
  if (name == "elman_tanh") return visit(ElmanFamily<Act::Tanh>{}), true;
  if (name == "elman_relu") return visit(ElmanFamily<Act::Relu>{}), true;
  if (name == "elman_modrelu") return visit(ElmanFamily<Act::ModRelu>{}), true;
  return false;
}

}  // namespace rnnkit
