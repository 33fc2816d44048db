// The streaming Stepper (stepper.h): per layer both projections, then the family's step rows (the
// same row functions as the sequence loops, families/<name>.h), zoneout's expectation and residuals.

#include <torch/extension.h>
#include <ATen/EmptyTensor.h>

#include <cstring>

#include "blas.h"
#include "families.h"
#include "step_gemm.h"
#include "stepper.h"

namespace rnnkit {

Stepper::Stepper(const std::vector<std::tuple<std::string, OptionDict, TensorDict>>& layers,
                 double zh, double zc, bool residual, bool int8)
    : zh_(zh), zc_(zc), residual_(residual) {
  TORCH_CHECK(!layers.empty(), "fused_cpu.Stepper: no layers");
  for (const auto& [family, options, params] : layers) {
    StepLayer layer{KernelParams::from(params), Options{options}};
    const KernelParams& p = layer.params;
    TORCH_CHECK(has(p.weight_ih) && has(p.weight_hh), "fused_cpu.Stepper: W_ih and W_hh are required");
    TORCH_CHECK(params.at("weight_ih").is_contiguous() && params.at("weight_hh").is_contiguous(),
                "fused_cpu.Stepper: the weights must be contiguous");
    const bool found = with_family(family, layer.options, [&](auto fam) {
      using F = decltype(fam);
      layer.two_states = F::kTwoStates;
      layer.step32 = &F::template step<float>;
      layer.step64 = &F::template step<double>;
    });
    TORCH_CHECK(found, "fused_cpu.Stepper: no kernel family '", family, "'");
    if (int8) {
      TORCH_CHECK(p.weight_ih->scalar_type() == at::kFloat, "fused_cpu.Stepper: int8 needs float32 weights");
      layer.quantize();
    }
    TORCH_CHECK(layers_.empty() || layers_[0].two_states == layer.two_states,
                "fused_cpu.Stepper: every layer has the same state");
    layers_.push_back(std::move(layer));
  }
}

void StepLayer::quantize() {
  const Tensor& wih = *params.weight_ih;
  ih8 = std::make_shared<const Int8Weight>(quantize_rows(wih.data_ptr<float>(), wih.size(0), wih.size(1)));
  ih_version = wih._version();
  if (params.weight_hh->dim() == 2) {
    const Tensor& whh = *params.weight_hh;
    hh8 = std::make_shared<const Int8Weight>(quantize_rows(whh.data_ptr<float>(), whh.size(0), whh.size(1)));
    hh_version = whh._version();
  }
}

template <typename T>
std::vector<StepScratch<T>>& Stepper::scratch() {
  auto& all = [this]() -> std::vector<StepScratch<T>>& {
    if constexpr (std::is_same<T, float>::value) return scratch32_;
    else return scratch64_;
  }();
  if (all.size() != layers_.size()) all.resize(layers_.size());
  return all;
}

// One layer: x (B, I), h (B, P), c (B, H) for a two-state family -> hn (B, P), cn (B, H).
template <typename T>
void step_layer(StepLayer& L, StepScratch<T>& s, int64_t B, int64_t I, const T* xp, int64_t P,
                const T* hp, const T* cp, T zh, T zc, T* hn, T* cn) {
  const KernelParams& p = L.params;
  const int64_t Gt = p.weight_ih->size(0);
  s.gxr.resize(B * Gt);
  s.ghr.resize(B * Gt);
  T* gxr = s.gxr.data();
  T* ghr = s.ghr.data();
  const T* wih = p.weight_ih->data_ptr<T>();
  if constexpr (std::is_same<T, float>::value) {
    if (L.ih8) {  // int8 weights (int8_gemv.h); an element-wise recurrence is the family's own
      if (p.weight_ih->_version() != L.ih_version ||
          (L.hh8 && p.weight_hh->_version() != L.hh_version))
        L.quantize();  // the parameters were updated in place
      int8_xwT2(B, xp, *L.ih8, gxr, hp, L.hh8.get(), ghr);
      L.step32(p, L.options, s, B, Gt, P, gxr, ghr, hp, cp, zh, zc, hn, cn);
      return;
    }
  }
  if (p.weight_hh->dim() == 2) {  // a matrix recurrence: h W_hh^T with x W_ih^T
    const T* whh = p.weight_hh->data_ptr<T>();
    if (B <= 4) {
      small_xwT2<T>(B, Gt, I, xp, wih, gxr, P, hp, whh, ghr);
    } else {
      gemm_rows<T>(true, B, Gt, I, xp, wih, gxr, T(0));
      gemm_rows<T>(true, B, Gt, P, hp, whh, ghr, T(0));
    }
  } else if (B <= 4) {  // element-wise: the family's rows compute the recurrent side
    small_xwT<T>(B, Gt, I, xp, wih, gxr);
  } else {
    gemm_rows<T>(true, B, Gt, I, xp, wih, gxr, T(0));
  }
  StepFn<T> fn;
  if constexpr (std::is_same<T, float>::value) fn = L.step32;
  else fn = L.step64;
  fn(p, L.options, s, B, Gt, P, gxr, ghr, hp, cp, zh, zc, hn, cn);
}

std::vector<Tensor> Stepper::step(const Tensor& x, const Tensor& h, const OptT& c) {
  const int64_t L = static_cast<int64_t>(layers_.size());
  TORCH_CHECK(x.dim() == 2 && h.dim() == 3 && h.size(0) == L && h.size(1) == x.size(0),
              "fused_cpu.Stepper.step: x (B, I) and h (L, B, P) expected");
  const bool two = layers_[0].two_states;
  TORCH_CHECK(two == has(c), "fused_cpu.Stepper.step: c is given exactly for a two-state family");
  TORCH_CHECK(!layers_[0].ih8 || x.scalar_type() == at::kFloat,
              "fused_cpu.Stepper.step: an int8 Stepper steps float32 inputs");
  const Tensor xc = x.contiguous(), hc = h.contiguous();
  const Tensor cc = two ? c->contiguous() : Tensor();
  // fresh outputs straight from the CPU allocator: through the dispatcher (empty_like, select for
  // y) they cost ~0.3 us each, a tenth of a small step; y is its own tensor, as in the Python step
  const auto fresh = [&](at::IntArrayRef sizes) { return at::detail::empty_cpu(sizes, x.scalar_type()); };
  const int64_t B = x.size(0), P = h.size(2), H = two ? cc.size(2) : 0;
  Tensor h_new = fresh(hc.sizes()), c_new = two ? fresh(cc.sizes()) : Tensor();
  Tensor y = fresh({B, P});
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_cpu_step", [&] {
    using T = scalar_t;
    auto& scratches = scratch<T>();
    const T* inp = xc.data_ptr<T>();
    int64_t I = x.size(1);
    std::vector<T> res;  // a residual layer's output, which is not its state
    for (int64_t l = 0; l < L; ++l) {
      const T* hp = hc.data_ptr<T>() + l * B * P;
      T* hn = h_new.data_ptr<T>() + l * B * P;
      const T* cp = two ? cc.data_ptr<T>() + l * B * H : nullptr;
      T* cn = two ? c_new.data_ptr<T>() + l * B * H : nullptr;
      TORCH_CHECK(layers_[l].params.weight_ih->size(1) == I, "fused_cpu.Stepper.step: input size");
      step_layer<T>(layers_[l], scratches[l], B, I, inp, P, hp, cp, T(zh_), T(zc_), hn, cn);
      if (residual_ && l > 0) {
        std::vector<T> sum(B * P);
        for (int64_t i = 0; i < B * P; ++i) sum[i] = hn[i] + inp[i];
        res.swap(sum);
        inp = res.data();
      } else {
        inp = hn;
      }
      I = P;
    }
    std::memcpy(y.data_ptr<T>(), inp, sizeof(T) * B * P);
  });
  if (two) return {y, h_new, c_new};
  return {y, h_new};
}

}  // namespace rnnkit
