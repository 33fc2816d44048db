// The kernels as torch operators (rnnkit::fused_rnn, lstm_layer, fused_rnn_train, fused_rnn_backward,
// project, project_backward): their CPU kernels and autograd, registered here so that a compiled graph
// calls C++ straight from the dispatcher. Python declares the schemas and the fake implementations
// (rnnkit/executors/custom_ops.py, which documents each operator); as Python kernels the same
// operators cost 15-40 us of interpreter per call, which made a compiled training step of a small
// 2-layer LSTM 1.07x eager (benchmarks/compile.py).

#include <torch/extension.h>
#include <torch/library.h>

#include <functional>
#include <sstream>

#include "operator_autograd.h"
#include "api.h"

namespace rnnkit {
namespace {

using at::IntArrayRef;
using at::TensorList;
using std::string;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The buffer layout codes of fused_rnn_train (custom_ops.layout_codes): a buffer of its own, one the
// options leave undefined, or (>= 0) the same tensor as the earlier buffer of that index.
constexpr int64_t kOwnBuffer = -1;
constexpr int64_t kUndefinedBuffer = -2;

constexpr char kFusedRnn[] = "rnnkit::fused_rnn";
constexpr char kLstmLayer[] = "rnnkit::lstm_layer";
constexpr char kFusedRnnBackward[] = "rnnkit::fused_rnn_backward";
constexpr char kProjectBackward[] = "rnnkit::project_backward";

OptT contiguous(const OptT& t) { return has(t) ? OptT(t->contiguous()) : OptT(); }

OptionDict decode_options(const string& text) {
  OptionDict out;
  std::stringstream items(text);
  string item;
  while (std::getline(items, item, ';')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    TORCH_CHECK(eq != string::npos, "rnnkit: malformed kernel option '", item, "'");
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

TensorDict named_params(const string& names, TensorList params) {
  TensorDict out;
  std::stringstream items(names);
  string name;
  size_t i = 0;
  while (std::getline(items, name, ',')) {
    TORCH_CHECK(i < params.size(), "rnnkit: more parameter names than parameters");
    out[name] = params[i++].contiguous();
  }
  TORCH_CHECK(i == params.size(), "rnnkit: ", params.size(), " parameters for ", i, " names");
  return out;
}

Tensor empty_like_none(const Tensor& like) { return like.new_empty({0}); }

// --- CPU kernels -----------------------------------------------------------------------------------

std::tuple<Tensor, Tensor, Tensor> fused_rnn_cpu(const string& family, const string& options,
                                                 const string& names, const Tensor& gx, const Tensor& h0,
                                                 const OptT& c0, TensorList params, const OptT& rmask,
                                                 const OptT& zh, const OptT& zc, const OptT& lengths,
                                                 bool reverse) {
  auto out = sequence_forward(family, decode_options(options), gx.contiguous(), h0.contiguous(),
                              contiguous(c0), named_params(names, params), contiguous(rmask),
                              contiguous(zh), contiguous(zc), lengths, reverse, false, false);
  return {out[0], out[1], out[2].defined() ? out[2] : empty_like_none(h0)};
}

std::tuple<Tensor, Tensor, Tensor> lstm_layer_cpu(const string& options, const Tensor& x, const Tensor& h0,
                                                  const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                                                  const OptT& b_ih, const OptT& b_hh, int64_t small_lstm) {
  // the kernel auto would run for this batch (fused_cpu.SMALL_LSTM): chosen here, where the batch is known
  if (x.size(1) * w_hh.size(1) > small_lstm) {
    std::vector<Tensor> weights = {w_ih, w_hh};
    if (has(b_ih)) weights.insert(weights.end(), {*b_ih, *b_hh});
    auto [y, h, c] = at::lstm(x, {h0.unsqueeze(0), c0.unsqueeze(0)}, weights, has(b_ih), 1, 0.0,
                              false, false, false);
    return {y, h[0], c[0]};
  }
  TensorDict named = {{"weight_hh", w_hh.contiguous()}};
  if (has(b_ih)) named["bias_ih"] = b_ih->contiguous();
  if (has(b_hh)) named["bias_hh"] = b_hh->contiguous();
  auto out = sequence_forward("lstm", decode_options(options), at::linear(x, w_ih).contiguous(),
                              h0.contiguous(), c0.contiguous(), named, {}, {}, {}, {}, false, false,
                              false);
  return {out[0], out[1], out[2]};
}

std::tuple<Tensor, Tensor, Tensor, std::vector<Tensor>> fused_rnn_train_cpu(
    const string& family, const string& options, const string& names, const Tensor& gx,
    const Tensor& h0, const OptT& c0, TensorList params, const OptT& rmask, const OptT& zh,
    const OptT& zc, const OptT& lengths, bool reverse, IntArrayRef layout) {
  auto out = sequence_forward(family, decode_options(options), gx.contiguous(), h0.contiguous(),
                              contiguous(c0), named_params(names, params), contiguous(rmask),
                              contiguous(zh), contiguous(zc), lengths, reverse, false, true);
  const size_t n = out.size() - 4;
  TORCH_CHECK(n == layout.size(), "fused_rnn_train: ", n, " buffers for a layout of ", layout.size());
  std::vector<Tensor> saved;
  for (size_t i = 0; i < n; ++i) {
    const Tensor& t = out[4 + i];
    const int64_t kind = layout[i];
    // a layout that does not describe the kernel would give wrong gradients: checked, never trusted
    if (kind == kOwnBuffer) {
      TORCH_CHECK(t.defined(), "fused_rnn_train: buffer ", i, " is undefined, its layout says not");
      saved.push_back(t);
      continue;
    }
    if (kind == kUndefinedBuffer) {
      TORCH_CHECK(!t.defined(), "fused_rnn_train: buffer ", i, " is defined, its layout says not");
    } else {
      TORCH_CHECK(kind >= 0 && size_t(kind) < i && t.defined() && out[4 + kind].defined() &&
                      t.data_ptr() == out[4 + kind].data_ptr(),
                  "fused_rnn_train: buffer ", i, " is not buffer ", kind, " as its layout says");
    }
    saved.push_back(empty_like_none(gx));  // an operator's outputs alias nothing
  }
  return {out[0], out[1], out[2].defined() ? out[2] : empty_like_none(h0), saved};
}

std::tuple<Tensor, Tensor, Tensor, std::vector<Tensor>> fused_rnn_backward_cpu(
    const string& family, const string& options, const string& names, const Tensor& dy,
    const Tensor& dh, const OptT& dc, TensorList saved, IntArrayRef layout, const Tensor& gx,
    const Tensor& h0, const OptT& c0, TensorList params, const OptT& rmask, const OptT& zh,
    const OptT& zc, const OptT& lengths, bool reverse) {
  TORCH_CHECK(saved.size() == layout.size(), "fused_rnn_backward: buffers and layout differ in length");
  std::vector<Tensor> buffers;
  for (size_t i = 0; i < saved.size(); ++i) {
    const int64_t kind = layout[i];
    buffers.push_back(kind == kOwnBuffer ? saved[i] : kind == kUndefinedBuffer ? Tensor() : buffers.at(kind));
  }
  const TensorDict named = named_params(names, params);
  auto [states, grads] = sequence_backward(
      family, decode_options(options), dy.contiguous(), dh.contiguous(), contiguous(dc), {}, buffers,
      gx.contiguous(), named, contiguous(rmask), contiguous(zh), contiguous(zc), lengths, reverse);
  std::vector<Tensor> dparams;
  std::stringstream items(names);
  string name;
  for (size_t i = 0; std::getline(items, name, ','); ++i) {
    auto it = grads.find(name);
    dparams.push_back(it != grads.end() && it->second.defined() ? it->second : at::zeros_like(params[i]));
  }
  return {states[0], states[1], states[2].defined() ? states[2] : empty_like_none(h0), dparams};
}

Tensor project_cpu(const Tensor& x, const Tensor& w, const OptT& b) {
  return project(x.contiguous(), w.contiguous(), contiguous(b));
}

std::tuple<Tensor, Tensor, Tensor> project_backward_cpu(const Tensor& dgx, const Tensor& x, const Tensor& w,
                                                        bool need_dx, bool need_dw, bool need_db) {
  auto out = project_backward(dgx.contiguous(), x.contiguous(), w.contiguous(), need_dx, need_dw, need_db);
  for (auto& t : out)
    if (!t.defined()) t = empty_like_none(x);
  return {out[0], out[1], out[2]};
}

// --- autograd --------------------------------------------------------------------------------------

constexpr char kFusedRnnTrain[] = "rnnkit::fused_rnn_train";
constexpr char kProject[] = "rnnkit::project";

const auto& train_op() { return OperatorAutograd<decltype(fused_rnn_train_cpu)>::handle<kFusedRnnTrain>(); }
const auto& backward_op() {
  return OperatorAutograd<decltype(fused_rnn_backward_cpu)>::handle<kFusedRnnBackward>();
}
const auto& project_op() { return OperatorAutograd<decltype(project_cpu)>::handle<kProject>(); }
const auto& project_backward_op() {
  return OperatorAutograd<decltype(project_backward_cpu)>::handle<kProjectBackward>();
}

Tensor saved_or_none(const OptT& t) { return has(t) ? *t : Tensor(); }
OptT optional(const Tensor& t) { return t.defined() ? OptT(t) : OptT(); }

// fused_rnn_train's gradient is the operator fused_rnn_backward, so a compiled graph's backward holds it
struct FusedRnnTrain : torch::autograd::Function<FusedRnnTrain> {
  static variable_list forward(AutogradContext* ctx, string family, string options, string names,
                               const Tensor& gx, const Tensor& h0, const OptT& c0, TensorList params,
                               const OptT& rmask, const OptT& zh, const OptT& zc, const OptT& lengths,
                               bool reverse, IntArrayRef layout) {
    auto [y, h, c, saved] = [&] {
      at::AutoDispatchBelowADInplaceOrView guard;
      return train_op().call(family, options, names, gx, h0, c0, params, rmask, zh, zc, lengths,
                             reverse, layout);
    }();
    ctx->saved_data["family"] = family;
    ctx->saved_data["options"] = options;
    ctx->saved_data["names"] = names;
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["layout"] = layout.vec();
    ctx->saved_data["params"] = int64_t(params.size());
    ctx->set_materialize_grads(false);
    variable_list keep = {gx, h0, saved_or_none(c0), saved_or_none(rmask), saved_or_none(zh),
                          saved_or_none(zc), saved_or_none(lengths)};
    keep.insert(keep.end(), params.begin(), params.end());
    keep.insert(keep.end(), saved.begin(), saved.end());
    ctx->save_for_backward(keep);
    ctx->mark_non_differentiable(saved);
    variable_list out = {y, h, c};
    out.insert(out.end(), saved.begin(), saved.end());
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto kept = ctx->get_saved_variables();
    const int64_t n = ctx->saved_data["params"].toInt();
    const Tensor &gx = kept[0], &h0 = kept[1];
    const OptT c0 = optional(kept[2]);
    const std::vector<Tensor> params(kept.begin() + 7, kept.begin() + 7 + n);
    const std::vector<Tensor> saved(kept.begin() + 7 + n, kept.end());
    const Tensor dy = grads[0].defined() ? grads[0] : gx.new_zeros({gx.size(0), gx.size(1), h0.size(1)});
    const Tensor dh = grads[1].defined() ? grads[1] : at::zeros_like(h0);
    OptT dc;
    if (c0) dc = grads[2].defined() ? grads[2] : at::zeros_like(*c0);
    const auto layout = ctx->saved_data["layout"].toIntVector();
    auto [dgx, dh0, dc0, dparams] = backward_op().call(
        ctx->saved_data["family"].toStringRef(), ctx->saved_data["options"].toStringRef(),
        ctx->saved_data["names"].toStringRef(), dy, dh, dc, saved, layout, gx, h0, c0, params,
        optional(kept[3]), optional(kept[4]), optional(kept[5]), optional(kept[6]),
        ctx->saved_data["reverse"].toBool());
    // one gradient per argument of forward, a tensor list's tensors one each
    variable_list out = {Tensor(), Tensor(), Tensor(), dgx, dh0, c0 ? dc0 : Tensor()};
    out.insert(out.end(), dparams.begin(), dparams.end());
    out.insert(out.end(), 6, Tensor());  // rmask, zh, zc, lengths, reverse, layout
    return out;
  }
};

std::tuple<Tensor, Tensor, Tensor, std::vector<Tensor>> fused_rnn_train_autograd(
    const string& family, const string& options, const string& names, const Tensor& gx,
    const Tensor& h0, const OptT& c0, TensorList params, const OptT& rmask, const OptT& zh,
    const OptT& zc, const OptT& lengths, bool reverse, IntArrayRef layout) {
  auto out = FusedRnnTrain::apply(family, options, names, gx, h0, c0, params, rmask, zh, zc, lengths,
                                  reverse, layout);
  return {out[0], out[1], out[2], std::vector<Tensor>(out.begin() + 3, out.end())};
}

struct Project : torch::autograd::Function<Project> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, const OptT& b) {
    ctx->saved_data["bias"] = has(b);
    ctx->save_for_backward({x, w});
    at::AutoDispatchBelowADInplaceOrView guard;
    return project_op().call(x, w, b);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto kept = ctx->get_saved_variables();
    const bool need_dx = ctx->needs_input_grad(0), need_dw = ctx->needs_input_grad(1);
    const bool need_db = ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2);
    auto [dx, dw, db] = project_backward_op().call(grads[0], kept[0], kept[1], need_dx, need_dw, need_db);
    return {need_dx ? dx : Tensor(), need_dw ? dw : Tensor(), need_db ? db : Tensor()};
  }
};

Tensor project_autograd(const Tensor& x, const Tensor& w, const OptT& b) {
  return Project::apply(x, w, b);
}

}  // namespace
}  // namespace rnnkit

TORCH_LIBRARY_IMPL(rnnkit, CPU, m) {
  using namespace rnnkit;
  m.impl("fused_rnn", TORCH_FN(fused_rnn_cpu));
  m.impl("lstm_layer", TORCH_FN(lstm_layer_cpu));
  m.impl("fused_rnn_train", TORCH_FN(fused_rnn_train_cpu));
  m.impl("fused_rnn_backward", TORCH_FN(fused_rnn_backward_cpu));
  m.impl("project", TORCH_FN(project_cpu));
  m.impl("project_backward", TORCH_FN(project_backward_cpu));
}

TORCH_LIBRARY_IMPL(rnnkit, Autograd, m) {
  using namespace rnnkit;
  m.impl("fused_rnn_train", TORCH_FN(fused_rnn_train_autograd));
  m.impl("project", TORCH_FN(project_autograd));
  m.impl("fused_rnn", TORCH_FN(OperatorAutograd<decltype(fused_rnn_cpu)>::inference_only<kFusedRnn>));
  m.impl("lstm_layer", TORCH_FN(OperatorAutograd<decltype(lstm_layer_cpu)>::inference_only<kLstmLayer>));
  m.impl("fused_rnn_backward",
         TORCH_FN(OperatorAutograd<decltype(fused_rnn_backward_cpu)>::no_second_backward<kFusedRnnBackward>));
  m.impl("project_backward",
         TORCH_FN(OperatorAutograd<decltype(project_backward_cpu)>::no_second_backward<kProjectBackward>));
}
