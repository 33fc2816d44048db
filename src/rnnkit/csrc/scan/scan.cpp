// rnnkit scan executor, CPU: forward and backward of the cells that are linear in h (minGRU, minLSTM)
// over a whole sequence, with the gates fused into the recurrence.
//
// Every gate reads only x_t, so the caller does all of them in one input GEMM (gx, T x B x G*H) and
// what is left is an elementwise linear recurrence
//     h_t = a_t * h_{t-1} + b_t,        (a_t, b_t) = coefficients(gx_t)
// which this file runs sequentially over T and in parallel / vectorised over B x H: each (batch row,
// 64-unit chunk) is an independent work item that walks the whole sequence, so there is no
// synchronisation per step and each pass touches gx and y once (memory speed).
// Backward is the reverse linear recurrence dh_{t-1} = a_t * dh_t + dy_{t-1}, fused with the gate
// derivatives; it recomputes (a_t, b_t) from gx and reads h_{t-1} from the outputs y, so forward saves
// nothing beyond gx and y (which the caller holds anyway).
//
// Equations: rnnkit/cells/mingru.py and minlstm.py; masking rules: rnnkit/executors/reference.py:
//   - zoneout weight z (T, B, H) or a scalar: h_t = lerp(h~_t, h_{t-1}, z) (torch.lerp's formula);
//   - lengths: at steps t >= length[b] the state is kept and the output is zero;
//   - reverse: t runs from T-1 down to 0.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "api.h"
#include "pointwise.h"  // lerp, sigmoid (and libmvec.h: vectorised exp/log)

namespace {

using at::Tensor;
using OptT = std::optional<Tensor>;

constexpr int kMinGRU = 0;
constexpr int kMinLSTM = 1;
constexpr int64_t kChunk = 64;

using rnnkit::lerp;  // torch.lerp, as the fused loops (common/pointwise.h)

template <typename T>
inline T sigm(T x) {
  return rnnkit::sigmoid_libm(x);
}

// softplus(x) = max(x, 0) + log(1 + exp(-|x|))
template <typename T>
inline T softplus(T x) {
  return std::max(x, T(0)) + std::log(T(1) + std::exp(-std::abs(x)));
}

// candidate h~ = g(p) (G) or p, and its derivative
template <typename T, bool G>
inline T cand(T p) {
  if (!G) return p;
  const T pos = T(p >= T(0));
  return pos * (p + T(0.5)) + (T(1) - pos) * sigm(p);
}

template <typename T, bool G>
inline T dcand(T p) {
  if (!G) return T(1);
  const T pos = T(p >= T(0));
  const T s = sigm(p);
  return pos + (T(1) - pos) * s * (T(1) - s);
}

// (a, b) for units [0, n) of one row: gx row = [p0 | p1 | (p2)] blocks of H
template <typename T, int FAM, bool G>
inline void coefficients(const T* row, int64_t H, int64_t n, T* a, T* b) {
  const T* p0 = row;
  const T* p1 = row + H;
  if (FAM == kMinGRU) {
#pragma GCC ivdep
    for (int64_t j = 0; j < n; ++j) {
      a[j] = sigm(-p0[j]);
      b[j] = sigm(p0[j]) * cand<T, G>(p1[j]);
    }
  } else {
    const T* p2 = row + 2 * H;
#pragma GCC ivdep
    for (int64_t j = 0; j < n; ++j) {
      const T d = softplus(-p1[j]) - softplus(-p0[j]);  // log f - log i
      a[j] = sigm(d);
      b[j] = sigm(-d) * cand<T, G>(p2[j]);
    }
  }
}

struct Dims {
  int64_t T, B, H, GH;
};

template <typename T, int FAM, bool G>
void forward_impl(const Dims& d, const T* gx, const T* h0, const T* z, bool z_scalar, T z0,
                  const int64_t* lengths, bool reverse, T* y, T* hT) {
  const int64_t nchunks = (d.H + kChunk - 1) / kChunk;
  at::parallel_for(0, d.B * nchunks, 1, [&](int64_t i0, int64_t i1) {
    T a[kChunk], b[kChunk], h[kChunk];
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t bi = item / nchunks;
      const int64_t j0 = (item % nchunks) * kChunk;
      const int64_t n = std::min(kChunk, d.H - j0);
      const int64_t len = lengths ? lengths[bi] : d.T;
      for (int64_t j = 0; j < n; ++j) h[j] = h0[bi * d.H + j0 + j];
      for (int64_t s = 0; s < d.T; ++s) {
        const int64_t t = reverse ? d.T - 1 - s : s;
        T* yr = y + (t * d.B + bi) * d.H + j0;
        if (t >= len) {
          for (int64_t j = 0; j < n; ++j) yr[j] = T(0);
          continue;
        }
        coefficients<T, FAM, G>(gx + (t * d.B + bi) * d.GH + j0, d.H, n, a, b);
        if (z == nullptr && !z_scalar) {
#pragma GCC ivdep
          for (int64_t j = 0; j < n; ++j) h[j] = a[j] * h[j] + b[j];
        } else {
          const T* zr = z ? z + (t * d.B + bi) * d.H + j0 : nullptr;
#pragma GCC ivdep
          for (int64_t j = 0; j < n; ++j) {
            const T w = zr ? zr[j] : z0;
            h[j] = lerp(a[j] * h[j] + b[j], h[j], w);
          }
        }
        for (int64_t j = 0; j < n; ++j) yr[j] = h[j];
      }
      for (int64_t j = 0; j < n; ++j) hT[bi * d.H + j0 + j] = h[j];
    }
  });
}

template <typename T, int FAM, bool G>
void backward_impl(const Dims& d, const T* gx, const T* h0, const T* y, const T* dy, const T* dhT,
                   const T* z, bool z_scalar, T z0, const int64_t* lengths, bool reverse, T* dgx,
                   T* dh0) {
  const int64_t nchunks = (d.H + kChunk - 1) / kChunk;
  at::parallel_for(0, d.B * nchunks, 1, [&](int64_t i0, int64_t i1) {
    T gr[kChunk], dc[kChunk];
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t bi = item / nchunks;
      const int64_t j0 = (item % nchunks) * kChunk;
      const int64_t n = std::min(kChunk, d.H - j0);
      const int64_t len = lengths ? lengths[bi] : d.T;
      const T* h0r = h0 + bi * d.H + j0;
      for (int64_t j = 0; j < n; ++j) gr[j] = dhT ? dhT[bi * d.H + j0 + j] : T(0);
      for (int64_t s = d.T - 1; s >= 0; --s) {  // processing order, backwards
        const int64_t t = reverse ? d.T - 1 - s : s;
        const int64_t off_g = (t * d.B + bi) * d.GH + j0;
        if (t >= len) {
          for (int64_t k = 0; k < d.GH / d.H; ++k)
            for (int64_t j = 0; j < n; ++j) dgx[off_g + k * d.H + j] = T(0);
          continue;  // the state passes through unchanged: so does its gradient
        }
        const int64_t off_h = (t * d.B + bi) * d.H + j0;
        const T* dyr = dy + off_h;
        const T* prev;
        if (!reverse)
          prev = t == 0 ? h0r : y + off_h - d.B * d.H;
        else
          prev = (t + 1 < len) ? y + off_h + d.B * d.H : h0r;
        // gradient reaching h_t (total), then split over the zoneout lerp
        const T* zr = z ? z + off_h : nullptr;
        const bool zo = z != nullptr || z_scalar;
#pragma GCC ivdep
        for (int64_t j = 0; j < n; ++j) {
          const T gt = gr[j] + dyr[j];
          const T w = zo ? (zr ? zr[j] : z0) : T(0);
          dc[j] = gt * (T(1) - w);  // into the candidate a h + b
          gr[j] = gt * w;           // straight to h_{t-1}
        }
        const T* row = gx + off_g;
        T* drow = dgx + off_g;
        if (FAM == kMinGRU) {
#pragma GCC ivdep
          for (int64_t j = 0; j < n; ++j) {
            const T pz = row[j], ph = row[d.H + j];
            const T a = sigm(-pz), sz = sigm(pz);
            const T c = cand<T, G>(ph);
            drow[j] = dc[j] * (c - prev[j]) * sz * a;
            drow[d.H + j] = dc[j] * sz * dcand<T, G>(ph);
            gr[j] += dc[j] * a;
          }
        } else {
#pragma GCC ivdep
          for (int64_t j = 0; j < n; ++j) {
            const T pf = row[j], pi = row[d.H + j], ph = row[2 * d.H + j];
            const T dd = softplus(-pi) - softplus(-pf);
            const T fp = sigm(dd), ip = sigm(-dd);
            const T c = cand<T, G>(ph);
            const T ddd = dc[j] * (prev[j] - c) * fp * ip;
            drow[j] = ddd * sigm(-pf);
            drow[d.H + j] = -ddd * sigm(-pi);
            drow[2 * d.H + j] = dc[j] * ip * dcand<T, G>(ph);
            gr[j] += dc[j] * fp;
          }
        }
      }
      for (int64_t j = 0; j < n; ++j) dh0[bi * d.H + j0 + j] = gr[j];
    }
  });
}

void check(const Tensor& t, const char* what, const Tensor& like) {
  TORCH_CHECK(t.device().is_cpu(), what, " must be on the CPU");
  TORCH_CHECK(t.is_contiguous(), what, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), what, " has the wrong dtype");
}

template <typename F>
void dispatch(int64_t family, bool g, F&& f) {
  // f is a generic lambda taking integral constants (family, g)
  if (family == kMinGRU) {
    if (g) f(std::integral_constant<int, kMinGRU>{}, std::true_type{});
    else f(std::integral_constant<int, kMinGRU>{}, std::false_type{});
  } else if (family == kMinLSTM) {
    if (g) f(std::integral_constant<int, kMinLSTM>{}, std::true_type{});
    else f(std::integral_constant<int, kMinLSTM>{}, std::false_type{});
  } else {
    TORCH_CHECK(false, "unknown cell family ", family);
  }
}

// zoneout: undefined (none), 0-dim (scalar weight) or (T, B, H)
struct Zone {
  bool scalar = false;
  double value = 0.0;
  const Tensor* full = nullptr;
};

Zone zone_of(const OptT& z, const Tensor& like) {
  Zone out;
  if (!z.has_value() || !z->defined()) return out;
  if (z->dim() == 0) {
    out.scalar = true;
    out.value = z->item<double>();
    return out;
  }
  check(*z, "zoneout", like);
  out.full = &*z;
  return out;
}

}  // namespace

namespace rnnkit::scan_kernel {

std::vector<Tensor> forward(int64_t family, bool g, const Tensor& gx, const Tensor& h0,
                            const OptT& zoneout, const OptT& lengths, bool reverse) {
  check(gx, "gx", gx);
  check(h0, "h0", gx);
  const int64_t T = gx.size(0), B = gx.size(1), GH = gx.size(2), H = h0.size(1);
  TORCH_CHECK(h0.size(0) == B, "h0 batch mismatch");
  TORCH_CHECK(GH == (family == kMinGRU ? 2 : 3) * H, "gx has the wrong width");
  const Zone zo = zone_of(zoneout, gx);
  const int64_t* len = nullptr;
  if (lengths.has_value() && lengths->defined()) {
    TORCH_CHECK(lengths->scalar_type() == at::kLong && lengths->is_contiguous(), "lengths: int64");
    len = lengths->data_ptr<int64_t>();
  }
  auto y = at::empty({T, B, H}, gx.options());
  auto hT = at::empty({B, H}, gx.options());
  const Dims d{T, B, H, GH};
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "rnnkit_scan_forward", [&] {
    dispatch(family, g, [&](auto fam, auto gg) {
      forward_impl<scalar_t, decltype(fam)::value, decltype(gg)::value>(
          d, gx.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(),
          zo.full ? zo.full->data_ptr<scalar_t>() : nullptr, zo.scalar, scalar_t(zo.value), len,
          reverse, y.data_ptr<scalar_t>(), hT.data_ptr<scalar_t>());
    });
  });
  return {y, hT};
}

std::vector<Tensor> backward(int64_t family, bool g, const Tensor& gx, const Tensor& h0,
                             const Tensor& y, const Tensor& dy, const OptT& dhT,
                             const OptT& zoneout, const OptT& lengths, bool reverse) {
  check(gx, "gx", gx);
  check(h0, "h0", gx);
  check(y, "y", gx);
  check(dy, "dy", gx);
  const int64_t T = gx.size(0), B = gx.size(1), GH = gx.size(2), H = h0.size(1);
  const Zone zo = zone_of(zoneout, gx);
  const int64_t* len = nullptr;
  if (lengths.has_value() && lengths->defined()) len = lengths->data_ptr<int64_t>();
  const bool has_dhT = dhT.has_value() && dhT->defined();
  if (has_dhT) check(*dhT, "dhT", gx);
  auto dgx = at::empty_like(gx);
  auto dh0 = at::empty_like(h0);
  const Dims d{T, B, H, GH};
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "rnnkit_scan_backward", [&] {
    dispatch(family, g, [&](auto fam, auto gg) {
      backward_impl<scalar_t, decltype(fam)::value, decltype(gg)::value>(
          d, gx.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
          dy.data_ptr<scalar_t>(), has_dhT ? dhT->data_ptr<scalar_t>() : nullptr,
          zo.full ? zo.full->data_ptr<scalar_t>() : nullptr, zo.scalar, scalar_t(zo.value), len,
          reverse, dgx.data_ptr<scalar_t>(), dh0.data_ptr<scalar_t>());
    });
  });
  return {dgx, dh0};
}

}  // namespace rnnkit::scan_kernel

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "rnnkit scan executor (CPU): fused linear recurrence for minGRU / minLSTM";
  using namespace rnnkit::scan_kernel;
  m.def("forward", &forward, "fused forward over a sequence");
  m.def("backward", &backward, "fused backward over a sequence");
}
