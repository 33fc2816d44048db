// The LSTM's kernel rows (rnnkit/cells/lstm.py): with layer norm (LN_ih, LN_hh over the 4H
// pre-activations, LN_c on the cell before its tanh), peepholes (i and f read c_{t-1}, o reads c_t)
// and a projection h = W_hr (o * tanh(.)):
//   i f g o = sigmoid, sigmoid, tanh, sigmoid of LN_ih(x W_ih^T) + LN_hh(h W_hh^T) + b_ih + b_hh
//   c_t = f c_{t-1} + i g,  h_t = o tanh(LN_c(c_t)) (then W_hr).
// The forward row is shared by the sequence loop (lstm_loop.h) and the streaming step; the backward
// rows are the loop's. Its loop is its own: two states, the projection GEMM and a pass after the loop.
#pragma once

#include <cmath>
#include <cstring>
#include <vector>

#include "params.h"
#include "pointwise.h"
#include "blas.h"
#include "step_scratch.h"

namespace rnnkit {

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
    rstd = T(1) / std::sqrt((v > T(0) ? v : T(0)) + T(kLayerNormEps));
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
LstmP<T> lstm_params(int64_t H, const KernelParams& k, LstmBuffers<T>& buf) {
  LstmP<T> p;
  p.H = H;
  p.Gt = 4 * H;
  buf.zeros.assign(H, T(0));
  p.ln = has(k.layer_norm_hh_weight);
  // every constant added to the pre-activations, summed once
  buf.bias.assign(4 * H, T(0));
  for (const OptT* b : {&k.bias_ih, &k.bias_hh, &k.layer_norm_ih_bias, &k.layer_norm_hh_bias}) {
    if (!has(*b) || (!p.ln && (b == &k.layer_norm_ih_bias || b == &k.layer_norm_hh_bias))) continue;
    const T* bp = (*b)->data_ptr<T>();
    for (int64_t j = 0; j < 4 * H; ++j) buf.bias[j] += bp[j];
  }
  p.bias = buf.bias.data();
  if (p.ln) {
    p.liw = k.layer_norm_ih_weight->data_ptr<T>();
    p.lhw = k.layer_norm_hh_weight->data_ptr<T>();
    p.lcw = k.layer_norm_c_weight->data_ptr<T>();
    p.lcb = k.layer_norm_c_bias->data_ptr<T>();
  }
  p.peep = has(k.weight_peephole_i);
  p.pi = p.peep ? k.weight_peephole_i->data_ptr<T>() : buf.zeros.data();
  p.pf = p.peep ? k.weight_peephole_f->data_ptr<T>() : buf.zeros.data();
  p.po = p.peep ? k.weight_peephole_o->data_ptr<T>() : buf.zeros.data();
  return p;
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

// One streaming step of an LSTM layer after its projections gxr = x W_ih^T and ghr = h W_hh^T (B x
// 4H): the row above for every batch row, then W_hr (projected) and zoneout's expectation on h.
template <typename T>
void lstm_step(const KernelParams& k, StepScratch<T>& s, int64_t B, int64_t Gt,
               int64_t P, const T* gxr, const T* ghr, const T* hp, const T* cp, T zh, T zc, T* hn,
               T* cn) {
  const int64_t H = Gt / 4;
  LstmBuffers<T> buf;  // kept in the scratch between calls
  buf.zeros.swap(s.v[10]);
  buf.bias.swap(s.v[11]);
  const LstmP<T> p = lstm_params<T>(H, k, buf);
  const bool proj = has(k.weight_hr);
  auto &pre = s.v[0], &xh = s.v[1], &g = s.v[2], &ct = s.v[3], &tc = s.v[4], &xc = s.v[5],
       &m = s.v[6], &zcv = s.v[7], &sink = s.v[8], &htil = s.v[9];
  for (auto* v : {&pre, &xh, &g}) v->resize(Gt);
  for (auto* v : {&ct, &tc, &xc}) v->resize(H);
  m.resize(B * H);
  sink.resize(3 * H);
  zcv.assign(H, zc);
  T si[2], rh, rc;
  for (int64_t b = 0; b < B; ++b) {
    // h is committed below (after W_hr when projected): its part of LstmOut goes to the sinks
    const LstmOut<T> o{zcv.data(), cn + b * H, sink.data(), buf.zeros.data(), buf.zeros.data(),
                       sink.data() + H, sink.data() + 2 * H};
    lstm_row_any(p, gxr + b * Gt, ghr + b * Gt, cp + b * H, pre.data(), xh.data(), g.data(),
                 ct.data(), tc.data(), m.data() + b * H, xc.data(), si, &rh, &rc, o);
  }
  const T* hcand = m.data();
  if (proj) {
    htil.resize(B * P);
    gemm_rows<T>(true, B, P, H, m.data(), k.weight_hr->data_ptr<T>(), htil.data(), T(0));
    hcand = htil.data();
  }
  for (int64_t i = 0; i < B * P; ++i) hn[i] = lerp(hcand[i], hp[i], zh);
  buf.zeros.swap(s.v[10]);
  buf.bias.swap(s.v[11]);
}

}  // namespace rnnkit
