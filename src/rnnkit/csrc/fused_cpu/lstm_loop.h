// The LSTM's sequence loop, forward and backward (its rows: families/lstm.h). Its own loop rather than
// the single-state one (single_state.h): two states, the projection's second GEMM per step, the input
// layer norm inside the kernel, and the gradient sums in one pass after the loop.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstring>
#include <vector>

#include "block_cache.h"
#include "families/lstm.h"
#include "masks.h"
#include "params.h"
#include "step_gemm.h"
#include "step_scratch.h"
#include "threading.h"

namespace rnnkit {

// LSTM forward. gx = x W_ih^T (L, B, 4H) without bias or LN (the row adds b_ih + b_hh and applies
// LN_ih itself, so that the input layer norm, its backward and the bias gradients cost no extra pass).
// Returns y, h_T, c_T, CS (per-step c, zero past each length; if want_states), and what backward
// needs: HP (h_{t-1}), HIN (h_{t-1} * mask), Gs (i f g o), CP (c_{t-1}), CT (c~_t), TC, XH, RH, SI,
// XC, RC, M (o * tanh(.) before W_hr).
template <typename T>
SequenceResult lstm_forward(const SequenceArgs& args) {
  TORCH_CHECK(has(args.c0) && has(args.params.weight_hh), "fused_cpu: the LSTM needs c0 and weight_hh");
  const Tensor &gx = args.gx, &h0 = args.h0, &c0 = *args.c0;
  const KernelParams& K = args.params;
  const Tensor& w_hh = *K.weight_hh;
  const OptT &w_hr = K.weight_hr, &rmask = args.rmask, &zh_t = args.zh, &zc_t = args.zc, &lengths = args.lengths;
  const bool reverse = args.reverse, want_states = args.want_states, keep = args.keep;
  Prof prof;
  const int64_t L = gx.size(0), B = gx.size(1), Gt = gx.size(2);
  const int64_t P = h0.size(1), H = Gt / 4;
  const bool proj = has(w_hr);
  const bool rm = has(rmask);
  LstmBuffers<T> buf;
  const LstmP<T> p = lstm_params<T>(H, K, buf);
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
  const bool bf16 = args.options.bf16_gemms();
  const StepWeight<T> Whh = StepWeight<T>::xwT(whh, Gt, P, L, bf16);
  const StepWeight<T> Whr = proj ? StepWeight<T>::xwT(whr, P, H, L, bf16) : StepWeight<T>{};
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
  return {y, h, c, CS, {HP, HIN, Gs, CP, CT, TC, XH, RH, SI, XC, RC, M}};
}

// LSTM backward. saved = the forward's buffers (HP on); gx is read with layer norm (LN_ih's backward).
// The step does only what the next step waits for (d c_{t-1} and the gradient entering the dh GEMM);
// the bias, peephole and LN weight sums and LN_ih's backward are one pass over all T*B rows after the
// loop, split over the threads; the weight gradients one GEMM each over all T*B rows.
template <typename T>
BackwardResult lstm_backward(const BackwardArgs& args) {
  const std::vector<Tensor>& saved = args.saved;
  const Tensor &dy_in = args.dy, &dhT_in = args.dhT, &gx = args.gx;
  TORCH_CHECK(has(args.dcT), "fused_cpu: the LSTM's backward needs dc_T");
  const Tensor& dcT_in = *args.dcT;
  const OptT& dCS_in = args.dCS;
  const KernelParams& K = args.params;
  const Tensor& w_hh = *K.weight_hh;
  const OptT &b_ih = K.bias_ih, &b_hh = K.bias_hh, &ln_ih_w = K.layer_norm_ih_weight,
             &ln_hh_w = K.layer_norm_hh_weight, &peep_i = K.weight_peephole_i,
             &peep_f = K.weight_peephole_f, &peep_o = K.weight_peephole_o, &w_hr = K.weight_hr;
  const OptT &rmask = args.rmask, &zh_t = args.zh, &zc_t = args.zc, &lengths = args.lengths;
  const bool reverse = args.reverse;
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
  const bool bf16 = args.options.bf16_gemms();
  const StepWeight<T> Whh = StepWeight<T>::xw(whh, Gt, P, L, bf16);
  const StepWeight<T> Whr = proj ? StepWeight<T>::xw(whr, P, H, L, bf16) : StepWeight<T>{};
  const T* liw = ptr_or_null<T>(ln_ih_w);
  const T* lhw = ptr_or_null<T>(ln_hh_w);
  const T* lcw = ptr_or_null<T>(K.layer_norm_c_weight);
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
  Tensor dw_hh = weight_grad(DGR.view({TB, Gt}), HIN.view({TB, P}), bf16);
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
  if (proj) dw_hr = weight_grad(DHT.view({TB, P}), M.view({TB, H}), bf16);
  prof.lap(prof.other);
  prof.report("lstm backward", L, B, H);
  BackwardResult out{DX, dh, dc, {}};
  KernelParams& g = out.grads;
  g.weight_hh = dw_hh;
  g.bias_ih = db_ih;
  g.bias_hh = db_hh;
  g.layer_norm_ih_weight = dln_ih_w;
  g.layer_norm_ih_bias = dln_ih_b;
  g.layer_norm_hh_weight = dln_hh_w;
  g.layer_norm_hh_bias = dln_hh_b;
  g.layer_norm_c_weight = dlnc_w;
  g.layer_norm_c_bias = dlnc_b;
  g.weight_peephole_i = dpi;
  g.weight_peephole_f = dpf;
  g.weight_peephole_o = dpo;
  g.weight_hr = dw_hr;
  return out;
}

struct LstmFamily {
  static constexpr bool kTwoStates = true;      // (h, c)
  static constexpr bool kTakesRawInput = true;  // gx = x W_ih^T alone: b_ih and LN_ih applied here

  template <typename T>
  static SequenceResult forward(const SequenceArgs& a) { return lstm_forward<T>(a); }
  template <typename T>
  static BackwardResult backward(const BackwardArgs& a) { return lstm_backward<T>(a); }
  template <typename T>
  static void step(const KernelParams& p, const Options&, StepScratch<T>& s, int64_t B, int64_t Gt,
                   int64_t P, T* gxr, T* ghr, const T* hp, const T* cp, T zh, T zc, T* hn, T* cn) {
    lstm_step<T>(p, s, B, Gt, P, gxr, ghr, hp, cp, zh, zc, hn, cn);
  }
};

template <typename Visit>
bool visit_lstm(const std::string& name, const Options&, Visit&& visit) {
  if (name == "lstm") return visit(LstmFamily{}), true;
  return false;
}

}  // namespace rnnkit
