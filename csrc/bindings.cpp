// Python bindings of the CPU kernels as ddkernels._C. Tensors arrive as raw data pointers (ints),
// element-type codes (see dtype.h) and element strides; the caller keeps the tensors alive.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "multiscale_mse.h"

namespace py = pybind11;

namespace {

void* as_pointer(uintptr_t address) { return reinterpret_cast<void*>(address); }

py::tuple multiscale_mse(uintptr_t x, uintptr_t y, uintptr_t grad, int dtype, std::vector<int64_t> shape,
                         std::vector<int64_t> x_strides, std::vector<int64_t> y_strides, std::vector<int64_t> scales,
                         std::vector<double> weights, int num_threads) {
  if (shape.size() != 3 || x_strides.size() != 3 || y_strides.size() != 3)
    throw std::invalid_argument("multiscale_mse: shape and strides must have 3 entries");
  if (scales.empty() || scales.size() != weights.size())
    throw std::invalid_argument("multiscale_mse: scales and weights must be non-empty and of equal length");
  ddk::MultiscaleResult result;
  {
    py::gil_scoped_release release;
    result = ddk::multiscale_mse(as_pointer(x), as_pointer(y), as_pointer(grad), dtype,
                                 {shape[0], shape[1], shape[2]}, {x_strides[0], x_strides[1], x_strides[2]},
                                 {y_strides[0], y_strides[1], y_strides[2]}, scales, weights, num_threads);
  }
  return py::make_tuple(result.loss, result.per_scale);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "ddkernels CPU kernels (C++17, OpenMP; no libtorch)";
  m.def("multiscale_mse", &multiscale_mse, py::arg("x"), py::arg("y"), py::arg("grad"), py::arg("dtype"),
        py::arg("shape"), py::arg("x_strides"), py::arg("y_strides"), py::arg("scales"), py::arg("weights"),
        py::arg("num_threads"),
        "Multi-scale pooling MSE over [outer, len, inner] views; writes dloss/dx to grad (0: skip). "
        "Returns (loss, per_scale_mse).");
}
