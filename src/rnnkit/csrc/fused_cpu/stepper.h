// Stepper: one streaming time step of a whole stack (Recurrent.step), every family and option, no
// autograd. Bound once per module to its parameters (the tensors are the parameters themselves, so
// in-place updates are seen): converting ~20 optional tensors from Python on every call cost ~3 us
// at B=1, as much as a tenth of the step. Zoneout at evaluation: the scalars zh, zc.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "int8_gemv.h"
#include "params.h"
#include "step_scratch.h"

namespace rnnkit {

template <typename T>
using StepFn = void (*)(const KernelParams&, const Options&, StepScratch<T>&, int64_t B, int64_t G,
                        int64_t P, T* gxr, T* ghr, const T* hp, const T* cp, T zh, T zc, T* hn,
                        T* cn);

struct StepLayer {
  KernelParams params;
  Options options;
  bool two_states = false;
  StepFn<float> step32 = nullptr;
  StepFn<double> step64 = nullptr;
  // int8 weights (int8_gemv.h): copies, quantized again when the parameter's version counter moves
  std::shared_ptr<const Int8Weight> ih8, hh8;
  int64_t ih_version = 0, hh_version = 0;
  void quantize();  // (re)builds ih8 and, for a matrix recurrence, hh8
};

class Stepper {
 public:
  // layers[l] = (kernel family, the cell's options, its parameters by name incl. weight_ih).
  // int8: the projections take int8 copies of W_ih and a matrix W_hh (float32 modules only).
  Stepper(const std::vector<std::tuple<std::string, OptionDict, TensorDict>>& layers, double zh,
          double zc, bool residual, bool int8 = false);

  // x (B, I); h (L, B, P); c (L, B, H) for a two-state family -> [y (B, P), h_new (L, B, P), c_new].
  // Not reentrant (it keeps its scratch between calls): Python calls it holding the GIL.
  std::vector<Tensor> step(const Tensor& x, const Tensor& h, const OptT& c);

 private:
  template <typename T>
  std::vector<StepScratch<T>>& scratch();

  std::vector<StepLayer> layers_;
  std::vector<StepScratch<float>> scratch32_;
  std::vector<StepScratch<double>> scratch64_;
  double zh_, zc_;
  bool residual_;
};

}  // namespace rnnkit
