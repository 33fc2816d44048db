// The extension's entry points, as bindings.cpp exposes them to Python (rnnkit/executors/fused_cpu.py
// and streaming.py): a sequence run of any family by name, its backward, the streaming Stepper, the
// input projection and the Bernoulli masks.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "params.h"

namespace rnnkit {

// [y, h_T, c_T, per-step c, *buffers for backward] (undefined tensors where the family has none)
std::vector<Tensor> sequence_forward(const std::string& family, const OptionDict& options,
                                     const Tensor& gx, const Tensor& h0, const OptT& c0,
                                     const TensorDict& params, const OptT& rmask, const OptT& zh,
                                     const OptT& zc, const OptT& lengths, bool reverse,
                                     bool want_states, bool keep);

// ([dgx, dh0, dc0], {parameter name: gradient})
std::tuple<std::vector<Tensor>, TensorDict> sequence_backward(
    const std::string& family, const OptionDict& options, const Tensor& dy, const Tensor& dhT,
    const OptT& dcT, const OptT& dCS, const std::vector<Tensor>& saved, const Tensor& gx,
    const TensorDict& params, const OptT& rmask, const OptT& zh, const OptT& zc,
    const OptT& lengths, bool reverse);

// name -> {"states": 1 or 2, "raw_input": whether gx comes without b_ih / LN_ih}
std::map<std::string, std::map<std::string, int64_t>> families();

Tensor project(const Tensor& x, const Tensor& w, const OptT& b);
std::vector<Tensor> project_backward(const Tensor& dgx_in, const Tensor& x, const Tensor& w,
                                     bool need_dx, bool need_dw, bool need_db);

}  // namespace rnnkit

// bernoulli_mask.cpp
at::Tensor bernoulli_mask(at::IntArrayRef sizes, int64_t seed, int64_t threshold,
                          at::ScalarType dtype);
