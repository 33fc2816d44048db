// Autograd kernels of rnnkit's operators that have no gradient formula of their own: an inference-only
// operator (fused_rnn, lstm_layer) and a backward operator (fused_rnn_backward, scan_backward,
// project_backward) run, and a backward through their outputs raises (as torch.library.custom_op's
// do without register_autograd): the fused kernels have no double backward, and a silently zero one
// would be wrong (eager recomputes higher-order gradients with the reference loop instead:
// rnnkit/executors/recompute.py).
//
//   m.impl("op", TORCH_FN((OperatorAutograd<decltype(op_cpu)>::no_second_backward<kOpName>)));
//
// with `static constexpr char kOpName[] = "rnnkit::op";`. Both call the operator again below autograd
// through the dispatcher, so graph capture (fake tensors, functionalization) records it.
#pragma once

#include <torch/autograd.h>

#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace rnnkit {

namespace operator_autograd_detail {

using at::Tensor;
using torch::autograd::variable_list;

inline void collect(std::vector<Tensor>& out, const Tensor& t) {
  if (t.defined()) out.push_back(t);
}
inline void collect(std::vector<Tensor>& out, const std::optional<Tensor>& t) {
  if (t.has_value() && t->defined()) out.push_back(*t);
}
inline void collect(std::vector<Tensor>& out, at::TensorList list) {
  out.insert(out.end(), list.begin(), list.end());
}
template <typename T>
void collect(std::vector<Tensor>&, const T&) {}

template <typename... Args>
std::vector<Tensor> tensors_of(const Args&... args) {
  std::vector<Tensor> out;
  (collect(out, args), ...);
  return out;
}

inline bool any_requires_grad(const std::vector<Tensor>& tensors) {
  if (!at::GradMode::is_enabled()) return false;
  for (const Tensor& t : tensors)
    if (t.requires_grad()) return true;
  return false;
}

// results <-> one flat list (a tensor list may only come last)
inline void flatten_into(variable_list& out, const Tensor& t) { out.push_back(t); }
inline void flatten_into(variable_list& out, const std::vector<Tensor>& list) {
  out.insert(out.end(), list.begin(), list.end());
}
template <typename... Ts>
variable_list flatten(const std::tuple<Ts...>& result) {
  variable_list out;
  std::apply([&](const auto&... part) { (flatten_into(out, part), ...); }, result);
  return out;
}

template <typename T>
T take(const variable_list& flat, size_t& i) {
  if constexpr (std::is_same_v<T, Tensor>) {
    return flat.at(i++);
  } else {
    static_assert(std::is_same_v<T, std::vector<Tensor>>, "an operator returns tensors and one list");
    std::vector<Tensor> rest(flat.begin() + i, flat.end());
    i = flat.size();
    return rest;
  }
}
template <typename Tuple, size_t... I>
Tuple unflatten(const variable_list& flat, std::index_sequence<I...>) {
  size_t i = 0;
  return Tuple{take<std::tuple_element_t<I, Tuple>>(flat, i)...};
}

// outputs whose backward raises `message`
struct RefusesBackward : torch::autograd::Function<RefusesBackward> {
  static variable_list forward(torch::autograd::AutogradContext* ctx, const std::string& message,
                               at::TensorList /*inputs: the differentiable ones*/,
                               const std::function<variable_list()>& run) {
    ctx->saved_data["message"] = message;
    return run();
  }
  static variable_list backward(torch::autograd::AutogradContext* ctx, variable_list) {
    TORCH_CHECK(false, ctx->saved_data["message"].toStringRef());
    return {};
  }
};

}  // namespace operator_autograd_detail

template <typename Signature>
struct OperatorAutograd;

template <typename R, typename... Args>
struct OperatorAutograd<R(Args...)> {
  template <const char* Name>
  static const c10::TypedOperatorHandle<R(Args...)>& handle() {
    static const auto h = c10::Dispatcher::singleton().findSchemaOrThrow(Name, "").typed<R(Args...)>();
    return h;
  }

  template <const char* Name>
  static R below_autograd(Args... args) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return handle<Name>().call(args...);
  }

  // outputs without a gradient: a backward through them raises
  template <const char* Name>
  static R inference_only(Args... args) {
    return refusing_backward<Name>(
        std::string(Name) + " has no gradient (an inference operator); rnnkit's modules call it only "
        "where no gradient is needed", args...);
  }

  template <const char* Name>
  static R no_second_backward(Args... args) {
    return refusing_backward<Name>(
        "double backward through " + std::string(Name) + " (a compiled graph's rnnkit kernel backward) "
        "is not supported; take higher-order gradients in eager mode, where rnnkit recomputes them with "
        "the reference loop", args...);
  }

  template <const char* Name>
  static R refusing_backward(const std::string& message, Args... args) {
    namespace d = operator_autograd_detail;
    const std::vector<at::Tensor> inputs = d::tensors_of(args...);
    if (!d::any_requires_grad(inputs)) return below_autograd<Name>(args...);
    auto flat = d::RefusesBackward::apply(message, at::TensorList(inputs),
                                          std::function<d::variable_list()>([&] {
                                            return d::flatten(below_autograd<Name>(args...));
                                          }));
    return d::unflatten<R>(flat, std::make_index_sequence<std::tuple_size_v<R>>{});
  }
};

}  // namespace rnnkit
