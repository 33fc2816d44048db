// The family-agnostic sequence loop, forward and backward, of the cells whose state is h alone
// (Elman, GRU, IndRNN), and their streaming step. A family (families/<name>.h) derives from
// SingleStateFamily<Self> and declares:
//   kGates     blocks of H in gx and gh (G = kGates H)
//   kSaved     values per unit kept per step for backward
//   kRowCost   element-operations per gate value (the thread grain of the pointwise pass)
//   kDiagonal  weight_hh is a vector u and the recurrence u * h_{t-1} (no GEMM); the family then
//              gives diagonal_weight(params, options, buf) -> u as the step uses it
//   kOwnRecurrentGrad  d(gh) differs from d(gx) (else one buffer)
//   Rows<T>(params, options) with
//     forward(H, x, a, hprev, saved, scratch) -> candidate state (x: the input side of the
//       pre-activation, a: the recurrent side LN_hh(h W_hh^T) + b_hh; saved: kSaved H for backward;
//       scratch: H values the candidate may be written to)
//     backward(H, dht, saved, hprev, dx, dg, dh): from dht = d candidate, d gx and d gh rows, and
//       what reaches h_{t-1} other than through W_hh added to dh
//   extra_grads(params, DX, Gs, T*B, H, grads): gradients of the family's own parameters.
// The loop does everything else: the recurrent GEMM (packed per call), recurrent dropout, LN_hh and
// b_hh, zoneout, lengths, reverse, the batch split over the threads, and the gradients of weight_hh,
// bias_hh and LN_hh over all steps.
//
// Design (Haste's, lmnt-com/haste): the input projection x W_ih^T is one GEMM done by the caller; per
// step one GEMM (h_{t-1} W_hh^T) straight into BLAS / the packed kernel on raw pointers into
// preallocated buffers and one fused pointwise pass over contiguous rows; backward per step the
// pointwise pass and one GEMM for dh_{t-1}; the weight gradient one GEMM over all T*B rows after.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstring>
#include <vector>

#include "block_cache.h"
#include "masks.h"
#include "params.h"
#include "pointwise.h"
#include "step_gemm.h"
#include "step_scratch.h"
#include "threading.h"

namespace rnnkit {

// the recurrent side of the pre-activation, in place: a = LN_hh(a) + b_hh (LN's xhat and rstd kept)
template <typename T>
inline void recurrent_side(T* a, int64_t Gt, const T* lw, const T* lb, const T* bh, T* xh, T* rh) {
  if (lw) {
    T mean, rstd;
    row_stats(a, Gt, mean, rstd);
    *rh = rstd;
    #pragma GCC ivdep
    for (int64_t j = 0; j < Gt; ++j) {
      T xv = (a[j] - mean) * rstd;
      xh[j] = xv;
      a[j] = xv * lw[j] + lb[j];
    }
  }
  if (bh) {
    #pragma GCC ivdep
    for (int64_t j = 0; j < Gt; ++j) a[j] += bh[j];
  }
}

// weight_hh is (G, P), or (G,) for an element-wise recurrence (G == H == P there)
template <class F>
void check_recurrent_weight(const Tensor& w, int64_t Gt, int64_t P) {
  if constexpr (F::kDiagonal) {
    TORCH_CHECK(w.dim() == 1 && w.size(0) == Gt, "fused_cpu: weight_hh must be a vector of ", Gt);
  } else {
    TORCH_CHECK(w.dim() == 2 && w.size(0) == Gt && w.size(1) == P, "fused_cpu: weight_hh must be (",
                Gt, ", ", P, ")");
  }
}

template <class F, typename T>
const T* recurrent_diagonal(const KernelParams& p, const Options& o, std::vector<T>& buf) {
  if constexpr (F::kDiagonal) return F::template diagonal_weight<T>(p, o, buf);
  else return nullptr;
}

// saved for backward: HP (h_{t-1}), HIN (h_{t-1} * mask), Gs (the family's kSaved H), XH, RH (LN_hh)
template <class F, typename T>
SequenceResult single_state_forward(const SequenceArgs& A) {
  const Tensor& gx = A.gx;
  const KernelParams& p = A.params;
  TORCH_CHECK(has(p.weight_hh), "fused_cpu: weight_hh is required");
  const int64_t L = gx.size(0), B = gx.size(1), Gt = gx.size(2);
  const int64_t P = A.h0.size(1), H = Gt / F::kGates;
  TORCH_CHECK(P == H && Gt == F::kGates * H, "fused_cpu: gx (T, B, G) and h0 (B, H) disagree");
  check_recurrent_weight<F>(*p.weight_hh, Gt, P);
  const bool ln = has(p.layer_norm_hh_weight);
  const bool rm = has(A.rmask);
  auto opts = gx.options();

  Tensor y = empty_big({L, B, P}, opts);
  Tensor h = A.h0.clone();
  // what backward reads, per step; without backward (keep false) one step's worth, reused
  const int64_t LS = A.keep ? L : 1;
  Tensor HP = empty_big({LS, B, P}, opts);                        // h_{t-1}
  Tensor HIN = rm ? empty_big({LS, B, P}, opts) : HP;             // h_{t-1} * mask
  Tensor gh = at::empty({B, Gt}, opts);                           // the recurrent side, one step
  Tensor XH = ln ? empty_big({LS, B, Gt}, opts) : Tensor();       // LN_hh's xhat
  Tensor RH = ln ? empty_big({LS, B}, opts) : Tensor();           // LN_hh's rstd
  Tensor Gs = empty_big({LS, B, F::kSaved * H}, opts);

  const typename F::template Rows<T> rows(p, A.options);
  std::vector<T> ubuf;
  const T* u = recurrent_diagonal<F, T>(p, A.options, ubuf);
  const T* gxp = gx.data_ptr<T>();
  const T* bh = ptr_or_null<T>(p.bias_hh);
  const T* lw = ptr_or_null<T>(p.layer_norm_hh_weight);
  const T* lb = ptr_or_null<T>(p.layer_norm_hh_bias);
  const T* rmp = ptr_or_null<T>(A.rmask);
  const Lengths lengths(A.lengths);
  const int64_t* len = lengths.p;
  Zone<T> zh(A.zh, B, P);
  T* yp = y.data_ptr<T>();
  T* hp = h.data_ptr<T>();
  T* ghp = gh.data_ptr<T>();
  T* Gp = Gs.data_ptr<T>();
  T* HPp = HP.data_ptr<T>();
  T* HINp = HIN.data_ptr<T>();
  T* XHp = ln ? XH.data_ptr<T>() : nullptr;
  T* RHp = ln ? RH.data_ptr<T>() : nullptr;

  Prof prof;
  const StepWeight<T> Whh = F::kDiagonal ? StepWeight<T>{}
                                         : StepWeight<T>::xwT(p.weight_hh->data_ptr<T>(), Gt, P, L,
                                                                   A.options.bf16_gemms());
  over_batch(B, batch_chunks(B), prof, [&](int64_t r0, int64_t r1, int64_t, Prof&) {
  const int64_t nb = r1 - r0;
  for (int64_t k = 0; k < L; ++k) {
    const int64_t t = A.reverse ? L - 1 - k : k;
    const int64_t ts = A.keep ? t : 0;  // the step's slot in the saved buffers
    T* HPt = HPp + ts * B * P;
    std::memcpy(HPt + r0 * P, hp + r0 * P, sizeof(T) * nb * P);
    T* HINt = HINp + ts * B * P;
    if (rm) {
      #pragma GCC ivdep
      for (int64_t i = r0 * P; i < r1 * P; ++i) HINt[i] = hp[i] * rmp[i];
    }
    if constexpr (!F::kDiagonal) Whh.run(nb, HINt + r0 * P, ghp + r0 * Gt, T(0));
    const T* gxt = gxp + t * B * Gt;
    T* XHt = ln ? XHp + ts * B * Gt : nullptr;
    T* RHt = ln ? RHp + ts * B : nullptr;
    T* Gst = Gp + ts * B * F::kSaved * H;
    at::parallel_for(r0, r1, grain(F::kRowCost * Gt), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        T* a = ghp + b * Gt;
        if constexpr (F::kDiagonal) {
          const T* hin = HINt + b * P;
          #pragma GCC ivdep
          for (int64_t j = 0; j < Gt; ++j) a[j] = u[j] * hin[j];
        }
        recurrent_side(a, Gt, lw, lb, bh, ln ? XHt + b * Gt : nullptr, ln ? RHt + b : nullptr);
        T* hrow = hp + b * P;
        const T* hprev = HPt + b * P;
        T* yrow = yp + (t * B + b) * P;
        const T* cand = rows.forward(H, gxt + b * Gt, a, hprev, Gst + b * F::kSaved * H, yrow);
        commit_row(cand, hprev, zh.row(t, b), hrow, yrow, H, is_valid(len, t, b));
      }
    });
  }
  });
  return {y, h, Tensor(), Tensor(), {HP, HIN, Gs, XH, RH}};
}

template <class F, typename T>
BackwardResult single_state_backward(const BackwardArgs& A) {
  const Tensor &HP = A.saved[0], &HIN = A.saved[1], &Gs = A.saved[2], &XH = A.saved[3],
               &RH = A.saved[4];
  const KernelParams& p = A.params;
  const int64_t L = HP.size(0), B = HP.size(1), P = HP.size(2);
  const int64_t H = P, Gt = F::kGates * H;
  TORCH_CHECK(has(p.weight_hh), "fused_cpu: weight_hh is required");
  check_recurrent_weight<F>(*p.weight_hh, Gt, P);
  const bool ln = has(p.layer_norm_hh_weight);
  const bool rm = has(A.rmask);
  auto opts = HP.options();

  Tensor dy = A.dy.contiguous();
  Tensor dh = A.dhT.clone().contiguous();
  Tensor DX = empty_big({L, B, Gt}, opts);                                  // d gx
  Tensor DGH = F::kOwnRecurrentGrad ? empty_big({L, B, Gt}, opts) : DX;     // d (LN_hh(gh) + b_hh)
  Tensor DGR = ln ? empty_big({L, B, Gt}, opts) : DGH;                      // d gh (before LN_hh)
  Tensor dhin = at::empty({B, P}, opts);  // d candidate in the pointwise pass, then dh through W_hh

  const typename F::template Rows<T> rows(p, A.options);
  std::vector<T> ubuf;
  const T* u = recurrent_diagonal<F, T>(p, A.options, ubuf);
  const T* dyp = dy.data_ptr<T>();
  T* dhp = dh.data_ptr<T>();
  T* dip = dhin.data_ptr<T>();
  const T* lw = ptr_or_null<T>(p.layer_norm_hh_weight);
  const T* rmp = ptr_or_null<T>(A.rmask);
  const Lengths lengths(A.lengths);
  const int64_t* len = lengths.p;
  Zone<T> zh(A.zh, B, P);
  const T* Gp = Gs.data_ptr<T>();
  const T* HPp = HP.data_ptr<T>();
  const T* XHp = ln ? XH.data_ptr<T>() : nullptr;
  const T* RHp = ln ? RH.data_ptr<T>() : nullptr;
  T* DXp = DX.data_ptr<T>();
  T* DGHp = DGH.data_ptr<T>();
  T* DGRp = DGR.data_ptr<T>();

  Prof prof;
  const StepWeight<T> Whh = F::kDiagonal ? StepWeight<T>{}
                                         : StepWeight<T>::xw(p.weight_hh->data_ptr<T>(), Gt, P, L,
                                                                  A.options.bf16_gemms());
  over_batch(B, batch_chunks(B), prof, [&](int64_t r0, int64_t r1, int64_t, Prof&) {
  const int64_t nb = r1 - r0;
  for (int64_t k = 0; k < L; ++k) {
    const int64_t t = A.reverse ? k : L - 1 - k;
    const T* dyt = dyp + t * B * P;
    T* DXt = DXp + t * B * Gt;
    T* DGHt = DGHp + t * B * Gt;
    T* DGRt = DGRp + t * B * Gt;
    const T* HPt = HPp + t * B * P;
    at::parallel_for(r0, r1, grain(8 * Gt), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        T* d = dhp + b * P;
        T* dx = DXt + b * Gt;
        if (!is_valid(len, t, b)) {
          std::memset(dx, 0, sizeof(T) * Gt);
          if (F::kOwnRecurrentGrad) std::memset(DGHt + b * Gt, 0, sizeof(T) * Gt);
          if (ln) std::memset(DGRt + b * Gt, 0, sizeof(T) * Gt);
          continue;  // dh passes through unchanged
        }
        // the gradient reaching h_t, split over zoneout's lerp: the candidate's part and h_{t-1}'s
        const T* dyr = dyt + b * P;
        const T* zhr = zh.row(t, b);
        T* dht = dip + b * P;
        #pragma GCC ivdep
        for (int64_t j = 0; j < H; ++j) {
          const T gin = d[j] + dyr[j];
          const T z = zhr[j];
          dht[j] = (T(1) - z) * gin;
          d[j] = z * gin;
        }
        rows.backward(H, dht, Gp + (t * B + b) * F::kSaved * H, HPt + b * P, dx, DGHt + b * Gt, d);
        if (ln) ln_backward_row(DGHt + b * Gt, lw, XHp + (t * B + b) * Gt, RHp[t * B + b], Gt,
                                DGRt + b * Gt);
      }
    });
    // dh_{t-1} += (d gh_raw W_hh) * mask, or d gh_raw * u for an element-wise recurrence
    if constexpr (F::kDiagonal) {
      for (int64_t b = r0; b < r1; ++b) {
        const T* dg = DGRt + b * Gt;
        T* d = dhp + b * P;
        if (rm) {
          const T* m = rmp + b * P;
          #pragma GCC ivdep
          for (int64_t j = 0; j < H; ++j) d[j] += dg[j] * u[j] * m[j];
        } else {
          #pragma GCC ivdep
          for (int64_t j = 0; j < H; ++j) d[j] += dg[j] * u[j];
        }
      }
    } else if (rm) {
      Whh.run(nb, DGRt + r0 * Gt, dip + r0 * P, T(0));
      #pragma GCC ivdep
      for (int64_t i = r0 * P; i < r1 * P; ++i) dhp[i] += dip[i] * rmp[i];
    } else {
      Whh.run(nb, DGRt + r0 * Gt, dhp + r0 * P, T(1));
    }
  }
  });

  // parameter gradients over all steps at once
  const int64_t TB = L * B;
  BackwardResult out{DX, dh, Tensor(), {}};
  KernelParams& g = out.grads;
  if (F::kDiagonal) g.weight_hh = (DGR * HIN).view({TB, H}).sum(0);
  else g.weight_hh = weight_grad(DGR.view({TB, Gt}), HIN.view({TB, P}), A.options.bf16_gemms());
  if (has(p.bias_hh)) g.bias_hh = DGH.view({TB, Gt}).sum(0);
  if (ln) {
    g.layer_norm_hh_weight = (DGH * XH).view({TB, Gt}).sum(0);
    g.layer_norm_hh_bias = DGH.view({TB, Gt}).sum(0);
  }
  F::extra_grads(p, DX, Gs, TB, H, g);
  return out;
}

// One streaming step of a layer, after the projections gxr = x W_ih^T and (matrix recurrence) ghr =
// h W_hh^T (B x G each): the layer norms of both (LN_ih here too: the sequence run gets it from the
// caller), the biases, the family's row and zoneout's expectation (zh) into hn.
template <class F, typename T>
void single_state_step(const KernelParams& p, const Options& o, StepScratch<T>& s, int64_t B,
                       int64_t Gt, int64_t P, T* gxr, T* ghr, const T* hp, T zh, T* hn) {
  const int64_t H = Gt / F::kGates;
  const typename F::template Rows<T> rows(p, o);
  const T* u = recurrent_diagonal<F, T>(p, o, s.v[0]);
  const T* bi = ptr_or_null<T>(p.bias_ih);
  const T* bh = ptr_or_null<T>(p.bias_hh);
  const bool ln = has(p.layer_norm_hh_weight);
  s.v[1].resize(F::kSaved * H);
  s.v[2].resize(H);
  for (int64_t b = 0; b < B; ++b) {
    T* gxb = gxr + b * Gt;
    T* ghb = ghr + b * Gt;
    const T* hprev = hp + b * P;
    if constexpr (F::kDiagonal) {
      #pragma GCC ivdep
      for (int64_t j = 0; j < Gt; ++j) ghb[j] = u[j] * hprev[j];
    }
    if (ln) {  // LN over each whole projection, before its bias
      const T *liw = p.layer_norm_ih_weight->data_ptr<T>(), *lib = p.layer_norm_ih_bias->data_ptr<T>();
      const T *lhw = p.layer_norm_hh_weight->data_ptr<T>(), *lhb = p.layer_norm_hh_bias->data_ptr<T>();
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
    const T* cand = rows.forward(H, gxb, ghb, hprev, s.v[1].data(), s.v[2].data());
    T* out = hn + b * P;
    #pragma GCC ivdep
    for (int64_t j = 0; j < H; ++j) out[j] = lerp(cand[j], hprev[j], zh);
  }
}

// What a single-state family's header inherits: its sequence forward, backward and streaming step
// are the loops above.
template <class F>
struct SingleStateFamily {
  static constexpr bool kTwoStates = false;       // the state is h alone
  static constexpr bool kTakesRawInput = false;   // gx comes with b_ih (and LN_ih) applied

  template <typename T>
  static SequenceResult forward(const SequenceArgs& a) { return single_state_forward<F, T>(a); }
  template <typename T>
  static BackwardResult backward(const BackwardArgs& a) { return single_state_backward<F, T>(a); }
  template <typename T>
  static void step(const KernelParams& p, const Options& o, StepScratch<T>& s, int64_t B, int64_t Gt,
                   int64_t P, T* gxr, T* ghr, const T* hp, const T*, T zh, T, T* hn, T*) {
    single_state_step<F, T>(p, o, s, B, Gt, P, gxr, ghr, hp, zh, hn);
  }
};

}  // namespace rnnkit
