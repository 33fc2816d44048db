// The fused_cpu extension's Python module (rnnkit/executors/fused_cpu.py, streaming.py).
// Layout of this folder: docs/design.md, "The C++ kernels".

#include <torch/extension.h>

#include "amx_gemm.h"
#include "api.h"
#include "stepper.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace rnnkit;
  m.doc() = "rnnkit fused CPU recurrent executor (forward/backward over a sequence; streaming step)";
  m.def("forward", &sequence_forward,
        "fused forward over a sequence of the family named: [y, h_T, c_T, per-step c, *saved]",
        py::arg("family"), py::arg("options"), py::arg("gx"), py::arg("h0"), py::arg("c0"),
        py::arg("params"), py::arg("rmask"), py::arg("zh"), py::arg("zc"), py::arg("lengths"),
        py::arg("reverse"), py::arg("want_states"), py::arg("keep"));
  m.def("backward", &sequence_backward,
        "fused backward over a sequence: ([dgx, dh0, dc0], {parameter: gradient})");
  m.def("families", &families, "the kernel families: name -> {states, raw_input}");
  py::class_<Stepper>(m, "Stepper", "one streaming time step of a whole stack (no autograd)")
      .def(py::init<const std::vector<std::tuple<std::string, OptionDict, TensorDict>>&, double,
                    double, bool, bool>(),
           py::arg("layers"), py::arg("zh"), py::arg("zc"), py::arg("residual"), py::arg("int8") = false)
      .def("step", &Stepper::step, py::arg("x"), py::arg("h"), py::arg("c") = py::none());
  m.def("project", &project, "input projection x W^T (+ b) into the block cache");
  m.def("project_backward", &project_backward, "gradients of project: dx, dw, db");
  m.def("amx_available", &rnnkit_amx::available,
        "whether a bfloat16 module's per-step GEMMs run on AMX tiles here (amx_gemm.h)");
  m.def("bernoulli_mask", &bernoulli_mask, "counter-based Bernoulli mask (see bernoulli_mask.cpp)");
}
