// rnnkit fused CPU executor: forward and backward of one recurrent layer-direction over a whole
// sequence, for the Elman (tanh/relu), LSTM (layer norm, peepholes, projection) and GRU (layer norm)
// cells, with recurrent-dropout and zoneout masks, variable lengths and both directions.
//
// The design is Haste's (lmnt-com/haste): the input projection gx = x W_ih^T (+ LN_ih, + b_ih) is one
// GEMM done by the caller; per step there is one GEMM (h_{t-1} W_hh^T, plus h W_hr^T for a projected
// LSTM) and one fused pointwise pass written as plain loops over contiguous rows (vectorised by the
// compiler: -O3 -march=native -ffast-math, libmvec for exp/tanh). Backward runs pointwise per step plus
// one GEMM for dh_{t-1}; weight, bias, layer-norm and peephole gradients are big GEMMs / reductions
// over all steps after the loop. Forward stores only what backward needs.
//
// The equations are those of rnnkit/cells/*.py and the masking rules those of
// rnnkit/executors/reference.py (the specification):
//   - recurrent mask m (B, P): h_{t-1} * m enters W_hh only;
//   - zoneout weight z (T, B, n) or a scalar: s_t = lerp(s~_t, s_{t-1}, z) (torch.lerp's formula);
//   - lengths: at steps t >= length[b] the state is kept and the output is zero;
//   - reverse: t runs from T-1 down to 0.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

// Vectorised exp/tanh: glibc's libmvec provides SIMD variants, but its declarations are only visible
// under __FAST_MATH__, which -fno-finite-math-only (set by rnnkit._ext) turns off. Declare them so
// that GCC vectorises the pointwise loops (calls to _ZGVeN16v_expf etc., resolved from libmvec).
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__FAST_MATH__)
extern "C" {
__attribute__((__simd__("notinbranch"))) float expf(float) noexcept;
__attribute__((__simd__("notinbranch"))) float tanhf(float) noexcept;
__attribute__((__simd__("notinbranch"))) double exp(double) noexcept;
__attribute__((__simd__("notinbranch"))) double tanh(double) noexcept;
}
#endif

namespace {

using at::Tensor;
using OptT = std::optional<Tensor>;

constexpr double kEps = 1e-5;  // F.layer_norm's default, as in rnnkit.cells.base.layer_norm

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// torch.lerp(start, end, w): start + w (end - start) for |w| < 0.5, else end - (end - start)(1 - w)
// (written branch-free: a select here keeps GCC from vectorising the loops that call it)
template <typename T>
inline T lerp(T start, T end, T w) {
  const T d = end - start;
  const T low = T(std::abs(w) < T(0.5));
  return low * (start + w * d) + (T(1) - low) * (end - d * (T(1) - w));
}

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

template <typename T>
const T* ptr_or_null(const OptT& t) {
  return (t.has_value() && t->defined()) ? t->data_ptr<T>() : nullptr;
}

bool has(const OptT& t) { return t.has_value() && t->defined(); }

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

// mean and 1/sqrt(var + eps) of a row of n values (biased variance, as F.layer_norm)
template <typename T>
inline void row_stats(const T* x, int64_t n, T& mean, T& rstd) {
  T s = 0;
  #pragma GCC ivdep
  for (int64_t j = 0; j < n; ++j) s += x[j];
  mean = s / T(n);
  T v = 0;
  #pragma GCC ivdep
  for (int64_t j = 0; j < n; ++j) {
    T d = x[j] - mean;
    v += d * d;
  }
  rstd = T(1) / std::sqrt(v / T(n) + T(kEps));
}

// dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy * w
template <typename T>
inline void ln_backward_row(const T* dy, const T* w, const T* xhat, T rstd, int64_t n, T* dx) {
  T m1 = 0, m2 = 0;
  #pragma GCC ivdep
  for (int64_t j = 0; j < n; ++j) {
    T g = dy[j] * w[j];
    m1 += g;
    m2 += g * xhat[j];
  }
  m1 /= T(n);
  m2 /= T(n);
  #pragma GCC ivdep
  for (int64_t j = 0; j < n; ++j) dx[j] = rstd * (dy[j] * w[j] - m1 - xhat[j] * m2);
}

inline int64_t grain(int64_t per_row) {
  // rows per task: run inline unless a step's pointwise work is large
  int64_t g = 32768 / std::max<int64_t>(per_row, 1);
  return std::max<int64_t>(g, 1);
}

inline bool is_valid(const int64_t* len, int64_t t, int64_t b) { return !len || t < len[b]; }

enum Family { ELMAN_TANH = 0, ELMAN_RELU = 1, LSTM = 2, GRU = 3 };

// ------------------------------------------------------------------------------------------------
// forward
// ------------------------------------------------------------------------------------------------
template <typename T>
std::vector<Tensor> forward_impl(int64_t family, const Tensor& gx, const Tensor& h0, const OptT& c0,
                                 const Tensor& w_hh, const OptT& b_hh, const OptT& ln_hh_w,
                                 const OptT& ln_hh_b, const OptT& ln_c_w, const OptT& ln_c_b,
                                 const OptT& peep_i, const OptT& peep_f, const OptT& peep_o,
                                 const OptT& w_hr, const OptT& rmask, const OptT& zh_t,
                                 const OptT& zc_t, const OptT& lengths, bool reverse) {
  const int64_t L = gx.size(0), B = gx.size(1), Gt = gx.size(2);
  const int64_t P = h0.size(1);
  const int64_t H = w_hh.size(0) / (family == LSTM ? 4 : family == GRU ? 3 : 1);
  const bool proj = has(w_hr);
  const bool ln = has(ln_hh_w);
  const bool lnc = has(ln_c_w);
  const bool peep = has(peep_i);
  const bool rm = has(rmask);
  auto opts = gx.options();

  Tensor y = at::empty({L, B, P}, opts);
  Tensor h = h0.clone();
  Tensor HP = at::empty({L, B, P}, opts);                         // h_{t-1}
  Tensor HIN = rm ? at::empty({L, B, P}, opts) : HP;              // h_{t-1} * mask
  Tensor gh = at::empty({B, Gt}, opts);                           // h W_hh^T for one step
  Tensor XH = ln ? at::empty({L, B, Gt}, opts) : Tensor();        // LN_hh's xhat
  Tensor RH = ln ? at::empty({L, B}, opts) : Tensor();            // LN_hh's rstd
  Tensor Gs, C, CP, CT, TC, XC, RC, M, htil;
  if (family == LSTM) {
    C = c0->clone();
    Gs = at::empty({L, B, 4 * H}, opts);  // i f g o
    CP = at::empty({L, B, H}, opts);      // c_{t-1}
    CT = at::empty({L, B, H}, opts);      // candidate c~_t
    TC = at::empty({L, B, H}, opts);      // tanh(LN_c(c~_t))
    if (lnc) {
      XC = at::empty({L, B, H}, opts);
      RC = at::empty({L, B}, opts);
    }
    if (proj) {
      M = at::empty({L, B, H}, opts);     // o * tanh(.) before W_hr
      htil = at::empty({B, P}, opts);
    }
  } else if (family == GRU) {
    Gs = at::empty({L, B, 4 * H}, opts);  // r z n hn
  } else {
    Gs = at::empty({L, B, H}, opts);      // h~ (the activation)
  }

  const T* gxp = gx.data_ptr<T>();
  const T* bh = ptr_or_null<T>(b_hh);
  const T* lw = ptr_or_null<T>(ln_hh_w);
  const T* lb = ptr_or_null<T>(ln_hh_b);
  const T* lcw = ptr_or_null<T>(ln_c_w);
  const T* lcb = ptr_or_null<T>(ln_c_b);
  std::vector<T> zeros(H, T(0)), ones(H, T(1));
  const T* pi = peep ? ptr_or_null<T>(peep_i) : zeros.data();
  const T* pf = peep ? ptr_or_null<T>(peep_f) : zeros.data();
  const T* po = peep ? ptr_or_null<T>(peep_o) : zeros.data();
  const T* rmp = ptr_or_null<T>(rmask);
  Tensor len64;
  if (has(lengths)) len64 = lengths->to(at::kLong).contiguous();
  const int64_t* len = len64.defined() ? len64.data_ptr<int64_t>() : nullptr;
  Zone<T> zh(zh_t, B, P);
  Zone<T> zc(zc_t, B, H);
  Tensor w_hh_t = w_hh.t();
  Tensor w_hr_t = proj ? w_hr->t() : Tensor();

  T* yp = y.data_ptr<T>();
  T* hp = h.data_ptr<T>();
  T* cp = C.defined() ? C.data_ptr<T>() : nullptr;
  T* ghp = gh.data_ptr<T>();
  T* Gp = Gs.data_ptr<T>();

  for (int64_t k = 0; k < L; ++k) {
    const int64_t t = reverse ? L - 1 - k : k;
    T* HPt = HP.data_ptr<T>() + t * B * P;
    std::memcpy(HPt, hp, sizeof(T) * B * P);
    T* HINt = HIN.data_ptr<T>() + t * B * P;
    if (rm) {
      #pragma GCC ivdep
      for (int64_t i = 0; i < B * P; ++i) HINt[i] = hp[i] * rmp[i];
    }
    at::mm_out(gh, HIN[t], w_hh_t);
    const T* gxt = gxp + t * B * Gt;
    T* XHt = ln ? XH.data_ptr<T>() + t * B * Gt : nullptr;
    T* RHt = ln ? RH.data_ptr<T>() + t * B : nullptr;

    // the recurrent pre-activation row b: LN_hh(gh) + b_hh, written back into gh
    auto recurrent_row = [&](int64_t b) {
      T* g = ghp + b * Gt;
      if (ln) {
        T mean, rstd;
        row_stats(g, Gt, mean, rstd);
        RHt[b] = rstd;
        T* xh = XHt + b * Gt;
        #pragma GCC ivdep
        for (int64_t j = 0; j < Gt; ++j) {
          T xv = (g[j] - mean) * rstd;
          xh[j] = xv;
          g[j] = xv * lw[j] + lb[j];
        }
      }
      if (bh) {
        #pragma GCC ivdep
        for (int64_t j = 0; j < Gt; ++j) g[j] += bh[j];
      }
    };

    if (family == LSTM) {
      T* CPt = CP.data_ptr<T>() + t * B * H;
      std::memcpy(CPt, cp, sizeof(T) * B * H);
      T* CTt = CT.data_ptr<T>() + t * B * H;
      T* TCt = TC.data_ptr<T>() + t * B * H;
      T* XCt = lnc ? XC.data_ptr<T>() + t * B * H : nullptr;
      T* RCt = lnc ? RC.data_ptr<T>() + t * B : nullptr;
      T* Mt = proj ? M.data_ptr<T>() + t * B * H : nullptr;
      T* Gt_ = Gp + t * B * 4 * H;
      at::parallel_for(0, B, grain(8 * Gt), [&](int64_t b0, int64_t b1) {
        std::vector<T> mrow(proj ? 0 : H), xrow(lnc ? 0 : H);
        for (int64_t b = b0; b < b1; ++b) {
          recurrent_row(b);
          const bool v = is_valid(len, t, b);
          const T* a = ghp + b * Gt;
          const T* x = gxt + b * Gt;
          T* g = Gt_ + b * 4 * H;
          const T* cprev = CPt + b * H;
          T* ct = CTt + b * H;
          #pragma GCC ivdep
          for (int64_t j = 0; j < H; ++j) {
            T ai = x[j] + a[j];
            T af = x[H + j] + a[H + j];
            T ag = x[2 * H + j] + a[2 * H + j];
            ai += pi[j] * cprev[j];
            af += pf[j] * cprev[j];
            T iv = sigmoid(ai), fv = sigmoid(af), gv = std::tanh(ag);
            g[j] = iv;
            g[H + j] = fv;
            g[2 * H + j] = gv;
            ct[j] = fv * cprev[j] + iv * gv;
          }
          T mean = 0, rstd = 1;
          if (lnc) {
            row_stats(ct, H, mean, rstd);
            RCt[b] = rstd;
          }
          const T* cw = lnc ? lcw : ones.data();
          const T* cb = lnc ? lcb : zeros.data();
          T* tc = TCt + b * H;
          T* c = cp + b * H;
          T* hrow = hp + b * P;
          T* yrow = yp + (t * B + b) * P;
          const T* zcr = zc.row(t, b);
          const T* zhr = zh.row(t, b);
          // m = o * tanh(LN_c(c~)): into M (projection) or a scratch row (becomes h~)
          T* m = proj ? Mt + b * H : mrow.data();
          T* xc = lnc ? XCt + b * H : xrow.data();
          #pragma GCC ivdep
          for (int64_t j = 0; j < H; ++j) {
            T ov = sigmoid(x[3 * H + j] + a[3 * H + j] + po[j] * ct[j]);
            T xv = (ct[j] - mean) * rstd;
            xc[j] = xv;
            T tv = std::tanh(xv * cw[j] + cb[j]);
            g[3 * H + j] = ov;
            tc[j] = tv;
            m[j] = ov * tv;
          }
          commit_row(ct, cprev, zcr, c, static_cast<T*>(nullptr), H, v);
          if (!proj) commit_row(static_cast<const T*>(m), static_cast<const T*>(hrow), zhr, hrow, yrow, H, v);
        }
      });
      if (proj) {
        at::mm_out(htil, M[t], w_hr_t);
        const T* ht = htil.data_ptr<T>();
        for (int64_t b = 0; b < B; ++b) {
          const bool v = is_valid(len, t, b);
          T* hrow = hp + b * P;
          T* yrow = yp + (t * B + b) * P;
          commit_row(ht + b * P, static_cast<const T*>(hrow), zh.row(t, b), hrow, yrow, P, v);
        }
      }
    } else if (family == GRU) {
      T* Gt_ = Gp + t * B * 4 * H;
      at::parallel_for(0, B, grain(8 * Gt), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          recurrent_row(b);
          const bool v = is_valid(len, t, b);
          const T* a = ghp + b * Gt;
          const T* x = gxt + b * Gt;
          T* g = Gt_ + b * 4 * H;
          T* hrow = hp + b * P;
          const T* hprev = HPt + b * P;
          T* yrow = yp + (t * B + b) * P;
          const T* zhr = zh.row(t, b);
          #pragma GCC ivdep
          for (int64_t j = 0; j < H; ++j) {
            T r = sigmoid(x[j] + a[j]);
            T z = sigmoid(x[H + j] + a[H + j]);
            T hn = a[2 * H + j];
            T n = std::tanh(x[2 * H + j] + r * hn);
            g[j] = r;
            g[H + j] = z;
            g[2 * H + j] = n;
            g[3 * H + j] = hn;
            yrow[j] = (T(1) - z) * n + z * hprev[j];  // candidate, committed below
          }
          commit_row(static_cast<const T*>(yrow), hprev, zhr, hrow, yrow, H, v);
        }
      });
    } else {
      T* Gt_ = Gp + t * B * H;
      const bool relu = family == ELMAN_RELU;
      at::parallel_for(0, B, grain(4 * Gt), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          recurrent_row(b);
          const bool v = is_valid(len, t, b);
          const T* a = ghp + b * Gt;
          const T* x = gxt + b * Gt;
          T* g = Gt_ + b * H;
          T* hrow = hp + b * P;
          const T* hprev = HPt + b * P;
          T* yrow = yp + (t * B + b) * P;
          const T* zhr = zh.row(t, b);
          if (relu) {
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; ++j) {
              T pre = x[j] + a[j];
              g[j] = pre > T(0) ? pre : T(0);
            }
          } else {
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; ++j) g[j] = std::tanh(x[j] + a[j]);
          }
          commit_row(static_cast<const T*>(g), hprev, zhr, hrow, yrow, H, v);
        }
      });
    }
  }
  // saved for backward (undefined tensors where an option is off)
  return {y, h, C, HP, HIN, Gs, CP, CT, TC, XH, RH, XC, RC, M};
}

std::vector<Tensor> forward(int64_t family, const Tensor& gx, const Tensor& h0, const OptT& c0,
                            const Tensor& w_hh, const OptT& b_hh, const OptT& ln_hh_w,
                            const OptT& ln_hh_b, const OptT& ln_c_w, const OptT& ln_c_b,
                            const OptT& peep_i, const OptT& peep_f, const OptT& peep_o,
                            const OptT& w_hr, const OptT& rmask, const OptT& zh, const OptT& zc,
                            const OptT& lengths, bool reverse) {
  TORCH_CHECK(gx.is_contiguous() && h0.is_contiguous(), "fused_cpu: gx and h0 must be contiguous");
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "fused_cpu_forward", [&] {
    out = forward_impl<scalar_t>(family, gx, h0, c0, w_hh, b_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b,
                                 peep_i, peep_f, peep_o, w_hr, rmask, zh, zc, lengths, reverse);
  });
  return out;
}

// ------------------------------------------------------------------------------------------------
// backward
// ------------------------------------------------------------------------------------------------
// grads: dgx, dh0, dc0, dw_hh, db_hh, dln_hh_w, dln_hh_b, dln_c_w, dln_c_b, dpi, dpf, dpo, dw_hr
template <typename T>
std::vector<Tensor> backward_impl(int64_t family, const Tensor& dy_in, const Tensor& dhT_in,
                                  const OptT& dcT_in, const std::vector<Tensor>& saved,
                                  const Tensor& w_hh, const OptT& b_hh, const OptT& ln_hh_w,
                                  const OptT& ln_c_w, const OptT& peep_i, const OptT& peep_f,
                                  const OptT& peep_o, const OptT& w_hr, const OptT& rmask,
                                  const OptT& zh_t, const OptT& zc_t, const OptT& lengths,
                                  bool reverse) {
  const Tensor &HP = saved[0], &HIN = saved[1], &Gs = saved[2], &CP = saved[3], &CT = saved[4],
               &TC = saved[5], &XH = saved[6], &RH = saved[7], &XC = saved[8], &RC = saved[9],
               &M = saved[10];
  const int64_t L = HP.size(0), B = HP.size(1), P = HP.size(2);
  const int64_t Gt = w_hh.size(0);
  const int64_t H = Gt / (family == LSTM ? 4 : family == GRU ? 3 : 1);
  const bool proj = has(w_hr);
  const bool ln = has(ln_hh_w);
  const bool lnc = has(ln_c_w);
  const bool peep = has(peep_i);
  const bool rm = has(rmask);
  auto opts = HP.options();

  Tensor dy = dy_in.contiguous();
  Tensor dh = dhT_in.clone().contiguous();
  Tensor dc = family == LSTM ? dcT_in->clone().contiguous() : Tensor();
  Tensor DX = at::empty({L, B, Gt}, opts);                   // d gx (and, no LN, d gh_raw)
  Tensor DGH = family == GRU ? at::empty({L, B, Gt}, opts) : DX;  // d (LN_hh(gh) + b_hh)
  Tensor DGR = ln ? at::empty({L, B, Gt}, opts) : DGH;            // d (h W_hh^T)
  Tensor DHT = proj ? at::empty({L, B, P}, opts) : Tensor();       // d h~ (before W_hr)
  Tensor DCN = lnc ? at::empty({L, B, H}, opts) : Tensor();        // d LN_c(c~)
  Tensor dm = proj ? at::empty({B, H}, opts) : Tensor();
  Tensor dhin = at::empty({B, P}, opts);

  const T* dyp = dy.data_ptr<T>();
  T* dhp = dh.data_ptr<T>();
  T* dcp = dc.defined() ? dc.data_ptr<T>() : nullptr;
  const T* lw = ptr_or_null<T>(ln_hh_w);
  const T* lcw = ptr_or_null<T>(ln_c_w);
  std::vector<T> zeros(H, T(0)), ones(H, T(1));
  const T* pi = peep ? ptr_or_null<T>(peep_i) : zeros.data();
  const T* pf = peep ? ptr_or_null<T>(peep_f) : zeros.data();
  const T* po = peep ? ptr_or_null<T>(peep_o) : zeros.data();
  const T* rmp = ptr_or_null<T>(rmask);
  Tensor len64;
  if (has(lengths)) len64 = lengths->to(at::kLong).contiguous();
  const int64_t* len = len64.defined() ? len64.data_ptr<int64_t>() : nullptr;
  Zone<T> zh(zh_t, B, P);
  Zone<T> zc(zc_t, B, H);
  const T* Gp = Gs.data_ptr<T>();
  const T* HPp = HP.data_ptr<T>();

  for (int64_t k = 0; k < L; ++k) {
    const int64_t t = reverse ? k : L - 1 - k;
    const T* dyt = dyp + t * B * P;
    T* DXt = DX.data_ptr<T>() + t * B * Gt;
    T* DGHt = DGH.data_ptr<T>() + t * B * Gt;
    T* DGRt = DGR.data_ptr<T>() + t * B * Gt;

    if (family == LSTM) {
      const T* Gt_ = Gp + t * B * 4 * H;
      const T* CPt = CP.data_ptr<T>() + t * B * H;
      const T* CTt = CT.data_ptr<T>() + t * B * H;
      const T* TCt = TC.data_ptr<T>() + t * B * H;
      // d h~ (zoneout on h), and what of dh goes straight to h_{t-1}
      T* dht_all = proj ? DHT.data_ptr<T>() + t * B * P : nullptr;
      std::vector<T> dht_local;
      if (!proj) dht_local.resize(B * P);
      T* dht = proj ? dht_all : dht_local.data();
      for (int64_t b = 0; b < B; ++b) {
        const bool v = is_valid(len, t, b);
        T* d = dhp + b * P;
        T* o = dht + b * P;
        const T* zhr = zh.row(t, b);
        const T* dyr = dyt + b * P;
        #pragma GCC ivdep
        for (int64_t j = 0; j < P; ++j) {
          T g = d[j] + (v ? dyr[j] : T(0));
          T z = zhr[j];
          // lerp(new, old, z) = (1 - z) new + z old
          o[j] = v ? (T(1) - z) * g : T(0);
          d[j] = v ? z * g : g;
        }
      }
      const T* dmp = dht;
      if (proj) {
        at::mm_out(dm, DHT[t], *w_hr);
        dmp = dm.data_ptr<T>();
      }
      T* DCNt = lnc ? DCN.data_ptr<T>() + t * B * H : nullptr;
      const T* XCt = lnc ? XC.data_ptr<T>() + t * B * H : nullptr;
      const T* RCt = lnc ? RC.data_ptr<T>() + t * B : nullptr;
      const T* XHt = ln ? XH.data_ptr<T>() + t * B * Gt : nullptr;
      const T* RHt = ln ? RH.data_ptr<T>() + t * B : nullptr;
      at::parallel_for(0, B, grain(8 * Gt), [&](int64_t b0, int64_t b1) {
        std::vector<T> dct(H);
        for (int64_t b = b0; b < b1; ++b) {
          const bool v = is_valid(len, t, b);
          T* da = DXt + b * Gt;
          if (!v) {
            std::memset(da, 0, sizeof(T) * Gt);
            if (lnc) std::memset(DCNt + b * H, 0, sizeof(T) * H);
            if (ln) std::memset(DGRt + b * Gt, 0, sizeof(T) * Gt);
            continue;  // dc passes through unchanged
          }
          const T* g = Gt_ + b * 4 * H;
          const T* tc = TCt + b * H;
          const T* dmr = dmp + b * H;
          const T* cprev = CPt + b * H;
          const T* ct = CTt + b * H;
          T* dcr = dcp + b * H;
          const T* zcr = zc.row(t, b);
          if (lnc) {
            T* dcn = DCNt + b * H;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; ++j) {
              T o = g[3 * H + j];
              dcn[j] = dmr[j] * o * (T(1) - tc[j] * tc[j]);
            }
            ln_backward_row(dcn, lcw, XCt + b * H, RCt[b], H, dct.data());
          } else {
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; ++j) {
              T o = g[3 * H + j];
              dct[j] = dmr[j] * o * (T(1) - tc[j] * tc[j]);
            }
          }
          #pragma GCC ivdep
          for (int64_t j = 0; j < H; ++j) {
            const T iv = g[j], fv = g[H + j], gv = g[2 * H + j], ov = g[3 * H + j];
            T z = zcr[j];
            T dcin = dcr[j];
            T d_ct = dct[j] + (T(1) - z) * dcin;
            T do_pre = dmr[j] * tc[j] * ov * (T(1) - ov);
            d_ct += do_pre * po[j];
            T di_pre = d_ct * gv * iv * (T(1) - iv);
            T df_pre = d_ct * cprev[j] * fv * (T(1) - fv);
            T dg_pre = d_ct * iv * (T(1) - gv * gv);
            T dcprev = d_ct * fv + z * dcin;
            dcprev += di_pre * pi[j] + df_pre * pf[j];
            dcr[j] = dcprev;
            da[j] = di_pre;
            da[H + j] = df_pre;
            da[2 * H + j] = dg_pre;
            da[3 * H + j] = do_pre;
          }
          (void)ct;
          if (ln) ln_backward_row(da, lw, XHt + b * Gt, RHt[b], Gt, DGRt + b * Gt);
        }
      });
    } else {
      // GRU and Elman: d h~ = (1 - z) (dh + dy), dh_{t-1} = z (dh + dy) + ...
      const T* XHt = ln ? XH.data_ptr<T>() + t * B * Gt : nullptr;
      const T* RHt = ln ? RH.data_ptr<T>() + t * B : nullptr;
      const T* HPt = HPp + t * B * P;
      const bool gru = family == GRU;
      const bool relu = family == ELMAN_RELU;
      at::parallel_for(0, B, grain(8 * Gt), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const bool v = is_valid(len, t, b);
          T* d = dhp + b * P;
          T* dx = DXt + b * Gt;
          if (!v) {
            std::memset(dx, 0, sizeof(T) * Gt);
            if (gru) std::memset(DGHt + b * Gt, 0, sizeof(T) * Gt);
            if (ln) std::memset(DGRt + b * Gt, 0, sizeof(T) * Gt);
            continue;  // dh passes through unchanged
          }
          const T* dyr = dyt + b * P;
          const T* zhr = zh.row(t, b);
          if (gru) {
            const T* g = Gp + (t * B + b) * 4 * H;
            const T* hprev = HPt + b * P;
            T* dg = DGHt + b * Gt;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; ++j) {
              T gin = d[j] + dyr[j];
              T zz = zhr[j];
              T dht = (T(1) - zz) * gin;
              const T r = g[j], z = g[H + j], n = g[2 * H + j], hn = g[3 * H + j];
              T dn_pre = dht * (T(1) - z) * (T(1) - n * n);
              T dz_pre = dht * (hprev[j] - n) * z * (T(1) - z);
              T dr_pre = dn_pre * hn * r * (T(1) - r);
              d[j] = zz * gin + dht * z;
              dx[j] = dr_pre;
              dx[H + j] = dz_pre;
              dx[2 * H + j] = dn_pre;
              dg[j] = dr_pre;
              dg[H + j] = dz_pre;
              dg[2 * H + j] = dn_pre * r;
            }
            if (ln) ln_backward_row(dg, lw, XHt + b * Gt, RHt[b], Gt, DGRt + b * Gt);
          } else {
            const T* g = Gp + (t * B + b) * H;
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; ++j) {
              T gin = d[j] + dyr[j];
              T zz = zhr[j];
              T dht = (T(1) - zz) * gin;
              T a = g[j];
              T dtanh = dht * (T(1) - a * a);
              T drelu = a > T(0) ? dht : T(0);
              dx[j] = relu ? drelu : dtanh;
              d[j] = zz * gin;
            }
          }
        }
      });
    }
    // dh_{t-1} += (d gh_raw W_hh) * mask
    if (rm) {
      at::mm_out(dhin, DGR[t], w_hh);
      const T* di = dhin.data_ptr<T>();
      #pragma GCC ivdep
      for (int64_t i = 0; i < B * P; ++i) dhp[i] += di[i] * rmp[i];
    } else {
      dh.addmm_(DGR[t], w_hh);
    }
  }

  // parameter gradients over all steps at once
  const int64_t TB = L * B;
  Tensor dw_hh = at::mm(DGR.view({TB, Gt}).t(), HIN.view({TB, P}));
  Tensor db_hh = has(b_hh) ? DGH.view({TB, Gt}).sum(0) : Tensor();
  Tensor dln_w, dln_b, dlnc_w, dlnc_b, dpi, dpf, dpo, dw_hr;
  if (ln) {
    dln_w = (DGH * XH).view({TB, Gt}).sum(0);
    dln_b = DGH.view({TB, Gt}).sum(0);
  }
  if (lnc) {
    dlnc_w = (DCN * XC).view({TB, H}).sum(0);
    dlnc_b = DCN.view({TB, H}).sum(0);
  }
  if (peep) {
    auto DXv = DX.view({TB, 4, H});
    auto CPv = CP.view({TB, H});
    dpi = (DXv.select(1, 0) * CPv).sum(0);
    dpf = (DXv.select(1, 1) * CPv).sum(0);
    dpo = (DXv.select(1, 3) * CT.view({TB, H})).sum(0);
  }
  if (proj) dw_hr = at::mm(DHT.view({TB, P}).t(), M.view({TB, H}));
  return {DX, dh, dc, dw_hh, db_hh, dln_w, dln_b, dlnc_w, dlnc_b, dpi, dpf, dpo, dw_hr};
}

std::vector<Tensor> backward(int64_t family, const Tensor& dy, const Tensor& dhT, const OptT& dcT,
                             const std::vector<Tensor>& saved, const Tensor& w_hh,
                             const OptT& b_hh, const OptT& ln_hh_w, const OptT& ln_c_w,
                             const OptT& peep_i, const OptT& peep_f, const OptT& peep_o,
                             const OptT& w_hr, const OptT& rmask, const OptT& zh, const OptT& zc,
                             const OptT& lengths, bool reverse) {
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "fused_cpu_backward", [&] {
    out = backward_impl<scalar_t>(family, dy, dhT, dcT, saved, w_hh, b_hh, ln_hh_w, ln_c_w, peep_i,
                                  peep_f, peep_o, w_hr, rmask, zh, zc, lengths, reverse);
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "rnnkit fused CPU recurrent executor (forward/backward over a whole sequence)";
  m.def("forward", &forward, "fused forward over a sequence");
  m.def("backward", &backward, "fused backward over a sequence");
}
