// What a fused kernel is called with: the cell's parameters as NAMED fields (the names are the cell's
// torch parameter names, so Python passes its parameter dict as it is), the cell's options by name,
// and the per-call arguments of a sequence run (masks, lengths, direction) and of its backward.
//
// A parameter name that is not a field here is refused, never dropped: a family whose cell has a
// parameter of a new name adds the field (one line in KernelParams::fields).
#pragma once

#include <ATen/ATen.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rnnkit {

using at::Tensor;
using OptT = std::optional<Tensor>;
using TensorDict = std::map<std::string, Tensor>;
using OptionDict = std::map<std::string, std::string>;

inline bool has(const OptT& t) { return t.has_value() && t->defined(); }

template <typename T>
const T* ptr_or_null(const OptT& t) {
  return has(t) ? t->data_ptr<T>() : nullptr;
}

struct KernelParams {
  OptT weight_ih;  // the streaming step only (a sequence run gets x W_ih^T from the caller)
  OptT weight_hh;  // (G, P), or (H,) for an element-wise recurrence (IndRNN's u)
  OptT bias_ih, bias_hh;
  OptT layer_norm_ih_weight, layer_norm_ih_bias, layer_norm_hh_weight, layer_norm_hh_bias;
  OptT layer_norm_c_weight, layer_norm_c_bias;
  OptT weight_peephole_i, weight_peephole_f, weight_peephole_o;
  OptT weight_hr;
  OptT modrelu_bias;

  using Field = OptT KernelParams::*;
  static const std::vector<std::pair<const char*, Field>>& fields() {
    static const std::vector<std::pair<const char*, Field>> all = {
        {"weight_ih", &KernelParams::weight_ih},
        {"weight_hh", &KernelParams::weight_hh},
        {"bias_ih", &KernelParams::bias_ih},
        {"bias_hh", &KernelParams::bias_hh},
        {"layer_norm_ih_weight", &KernelParams::layer_norm_ih_weight},
        {"layer_norm_ih_bias", &KernelParams::layer_norm_ih_bias},
        {"layer_norm_hh_weight", &KernelParams::layer_norm_hh_weight},
        {"layer_norm_hh_bias", &KernelParams::layer_norm_hh_bias},
        {"layer_norm_c_weight", &KernelParams::layer_norm_c_weight},
        {"layer_norm_c_bias", &KernelParams::layer_norm_c_bias},
        {"weight_peephole_i", &KernelParams::weight_peephole_i},
        {"weight_peephole_f", &KernelParams::weight_peephole_f},
        {"weight_peephole_o", &KernelParams::weight_peephole_o},
        {"weight_hr", &KernelParams::weight_hr},
        {"modrelu_bias", &KernelParams::modrelu_bias},
    };
    return all;
  }

  // From the cell's parameters by name, made contiguous; an unknown name is an error.
  static KernelParams from(const TensorDict& named) {
    KernelParams p;
    for (const auto& [name, t] : named) {
      bool found = false;
      for (const auto& [field, member] : fields()) {
        if (name == field) {
          p.*member = t.defined() ? OptT(t.contiguous()) : OptT();
          found = true;
          break;
        }
      }
      TORCH_CHECK(found, "fused_cpu: no kernel parameter named '", name, "'");
    }
    return p;
  }

  // The defined fields by name (gradients come back this way).
  TensorDict named() const {
    TensorDict out;
    for (const auto& [field, member] : fields())
      if (has(this->*member)) out.emplace(field, *(this->*member));
    return out;
  }
};

// The cell's options by name, as strings (the Python side passes every option of the cell: a family
// reads the ones it needs, e.g. IndRNN's "nonlinearity").
struct Options {
  OptionDict values;
  std::string text(const std::string& name, const std::string& fallback) const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
  // Not a cell option: the executor's "gemm_precision" = "bf16" for a bfloat16 module. The loop keeps
  // float32 state and math; its per-step GEMMs run on AMX tiles where the CPU has them (amx_gemm.h)
  // and the weight gradients over all steps in ATen's bf16 GEMM, both with float32 accumulation.
  bool bf16_gemms() const { return text("gemm_precision", "") == "bf16"; }
  std::optional<double> number(const std::string& name) const {
    auto it = values.find(name);
    if (it == values.end() || it->second == "None") return std::nullopt;
    return std::strtod(it->second.c_str(), nullptr);
  }
};

// One sequence run of one layer-direction. gx: the input projection (T, B, G) as the family takes
// it (with b_ih and LN_ih applied, or without for a family that applies them itself: the LSTM).
struct SequenceArgs {
  Tensor gx, h0;
  OptT c0;  // the second state (the LSTM's c)
  KernelParams params;
  Options options;
  OptT rmask, zh, zc, lengths;
  bool reverse = false;
  bool want_states = false;  // the per-step second state as an output (the LSTM's c_t)
  bool keep = true;          // keep what backward needs (else one step's scratch)
};

struct BackwardArgs {
  Tensor dy, dhT;
  OptT dcT, dCS;  // gradients of the second state (final, per step)
  std::vector<Tensor> saved;  // the forward's buffers for backward
  Tensor gx;
  KernelParams params;
  Options options;
  OptT rmask, zh, zc, lengths;
  bool reverse = false;
};

// A sequence run's outputs: y (T, B, P), the final state(s), the per-step second state (if asked),
// and the buffers its backward reads.
struct SequenceResult {
  Tensor y, h, c, cs;
  std::vector<Tensor> saved;
};

struct BackwardResult {
  Tensor dgx, dh0, dc0;
  KernelParams grads;  // the gradient of each parameter the kernel took
};

}  // namespace rnnkit
