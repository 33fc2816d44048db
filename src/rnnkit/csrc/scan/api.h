// The scan extension's entry points (scan.cpp), for its Python module and its operators (operators.cpp):
// family 0 = minGRU, 1 = minLSTM; g: whether the candidate goes through the g activation.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace rnnkit::scan_kernel {

// [y, h_T]
std::vector<at::Tensor> forward(int64_t family, bool g, const at::Tensor& gx, const at::Tensor& h0,
                                const std::optional<at::Tensor>& zoneout,
                                const std::optional<at::Tensor>& lengths, bool reverse);

// [d gx, d h0] from the inputs, the outputs y and their gradients
std::vector<at::Tensor> backward(int64_t family, bool g, const at::Tensor& gx, const at::Tensor& h0,
                                 const at::Tensor& y, const at::Tensor& dy,
                                 const std::optional<at::Tensor>& dhT,
                                 const std::optional<at::Tensor>& zoneout,
                                 const std::optional<at::Tensor>& lengths, bool reverse);

}  // namespace rnnkit::scan_kernel
