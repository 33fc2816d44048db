// The GRU's kernel rows (rnnkit/cells/gru.py, torch.nn.GRU's equations): with x = LN_ih(x W_ih^T) +
// b_ih and a = LN_hh(h_{t-1} W_hh^T) + b_hh (blocks r z n),
//   r = sigmoid(x_r + a_r), z = sigmoid(x_z + a_z), n = tanh(x_n + r a_n), h~ = (1 - z) n + z h_{t-1}.
// The recurrence, its layer norm, masks and lengths are the single-state loop's (single_state.h).
#pragma once

#include "params.h"
#include "pointwise.h"
#include "single_state.h"

namespace rnnkit {

struct GruFamily : SingleStateFamily<GruFamily> {
  static constexpr int64_t kGates = 3;    // r z n
  static constexpr int64_t kSaved = 4;    // r z n and a_n
  static constexpr int64_t kRowCost = 8;
  static constexpr bool kDiagonal = false;
  static constexpr bool kOwnRecurrentGrad = true;  // d gh differs from d gx in the n block (r a_n)

  template <typename T>
  struct Rows {
    Rows(const KernelParams&, const Options&) {}
    const T* forward(int64_t H, const T* x, const T* a, const T* hprev, T* g, T* cand) const {
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
        cand[j] = (T(1) - z) * n + z * hprev[j];
      }
      return cand;
    }
    // dht = d candidate -> dx (d gx: r z n), dg (d gh: r z and r * d n), dh += the direct path
    void backward(int64_t H, const T* dht, const T* g, const T* hprev, T* dx, T* dg, T* dh) const {
      #pragma GCC ivdep
      for (int64_t j = 0; j < H; ++j) {
        const T d = dht[j];
        const T r = g[j], z = g[H + j], n = g[2 * H + j], hn = g[3 * H + j];
        T dn_pre = d * (T(1) - z) * (T(1) - n * n);
        T dz_pre = d * (hprev[j] - n) * z * (T(1) - z);
        T dr_pre = dn_pre * hn * r * (T(1) - r);
        dh[j] += d * z;
        dx[j] = dr_pre;
        dx[H + j] = dz_pre;
        dx[2 * H + j] = dn_pre;
        dg[j] = dr_pre;
        dg[H + j] = dz_pre;
        dg[2 * H + j] = dn_pre * r;
      }
    }
  };

  static void extra_grads(const KernelParams&, const Tensor&, const Tensor&, int64_t, int64_t,
                          KernelParams&) {}
};

template <typename Visit>
bool visit_gru(const std::string& name, const Options&, Visit&& visit) {
  if (name == "gru") return visit(GruFamily{}), true;
  return false;
}

}  // namespace rnnkit
