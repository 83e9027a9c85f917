// Python bindings of the CPU kernels as ddkernels._C. Tensors arrive as raw data pointers (ints),
// element-type codes (see dtype.h) and element strides; the caller keeps the tensors alive.
#include <array>
#include <string>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "linear_unroll.h"
#include "multiscale_mse.h"
#include "pairwise_skl.h"
#include "simd.h"
#include "spectral.h"
#include "spectral_fft.h"

namespace py = pybind11;

namespace {

void* as_pointer(uintptr_t address) { return reinterpret_cast<void*>(address); }

// An element-type code as the DType enum; the kernels' dispatcher rejects a code it does not take.
ddk::DType element_type(int code) { return static_cast<ddk::DType>(code); }

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
    result = ddk::multiscale_mse(as_pointer(x), as_pointer(y), as_pointer(grad), element_type(dtype),
                                 {shape[0], shape[1], shape[2]}, {x_strides[0], x_strides[1], x_strides[2]},
                                 {y_strides[0], y_strides[1], y_strides[2]}, scales, weights, num_threads);
  }
  return py::make_tuple(result.loss, result.per_scale);
}

// The three entries of an [outer, len, inner] shape or stride list.
std::array<int64_t, 3> three(const std::vector<int64_t>& values, const char* name) {
  if (values.size() != 3) throw std::invalid_argument(std::string(name) + " must have 3 entries");
  return {values[0], values[1], values[2]};
}

double spectral_l1(uintptr_t a, std::vector<int64_t> a_strides, uintptr_t b, std::vector<int64_t> b_strides,
                   uintptr_t grad_a, uintptr_t grad_b, std::vector<int64_t> grad_strides, int dtype,
                   std::vector<int64_t> shape, int64_t length, double norm_scale, int num_threads) {
  const auto n = three(shape, "spectral_l1: shape");
  const auto as = three(a_strides, "spectral_l1: a_strides"), bs = three(b_strides, "spectral_l1: b_strides");
  const auto gs = three(grad_strides, "spectral_l1: grad_strides");
  py::gil_scoped_release release;
  return ddk::spectral_l1(as_pointer(a), {as[0], as[1], as[2]}, as_pointer(b), {bs[0], bs[1], bs[2]},
                          as_pointer(grad_a), as_pointer(grad_b), {gs[0], gs[1], gs[2]}, element_type(dtype),
                          {n[0], n[1], n[2]}, length, norm_scale, num_threads);
}

double spectral_kl(uintptr_t s, std::vector<int64_t> s_strides, uintptr_t t, std::vector<int64_t> t_strides,
                   uintptr_t grad_s, uintptr_t grad_t, std::vector<int64_t> grad_strides, int dtype,
                   std::vector<int64_t> shape, int64_t length, double tau, int num_threads) {
  const auto n = three(shape, "spectral_kl: shape");
  const auto ss = three(s_strides, "spectral_kl: s_strides"), ts = three(t_strides, "spectral_kl: t_strides");
  const auto gs = three(grad_strides, "spectral_kl: grad_strides");
  py::gil_scoped_release release;
  return ddk::spectral_kl(as_pointer(s), {ss[0], ss[1], ss[2]}, as_pointer(t), {ts[0], ts[1], ts[2]},
                          as_pointer(grad_s), as_pointer(grad_t), {gs[0], gs[1], gs[2]}, element_type(dtype),
                          {n[0], n[1], n[2]}, length, tau, num_threads);
}

double spectral_l1_fft(uintptr_t x, std::vector<int64_t> x_strides, uintptr_t y, std::vector<int64_t> y_strides,
                       uintptr_t grad_x, uintptr_t grad_y, int dtype, std::vector<int64_t> shape, bool amplitude,
                       double norm_scale, int num_threads) {
  const auto n = three(shape, "spectral_l1_fft: shape");
  const auto xs = three(x_strides, "spectral_l1_fft: x_strides"), ys = three(y_strides, "spectral_l1_fft: y_strides");
  py::gil_scoped_release release;
  return ddk::spectral_l1_fft(as_pointer(x), {xs[0], xs[1], xs[2]}, as_pointer(y), {ys[0], ys[1], ys[2]},
                              as_pointer(grad_x), as_pointer(grad_y), element_type(dtype), {n[0], n[1], n[2]},
                              amplitude, norm_scale, num_threads);
}

double spectral_kl_fft(uintptr_t s, std::vector<int64_t> s_strides, uintptr_t t, std::vector<int64_t> t_strides,
                       uintptr_t grad_s, uintptr_t grad_t, int dtype, std::vector<int64_t> shape, double tau,
                       int num_threads) {
  const auto n = three(shape, "spectral_kl_fft: shape");
  const auto ss = three(s_strides, "spectral_kl_fft: s_strides"), ts = three(t_strides, "spectral_kl_fft: t_strides");
  py::gil_scoped_release release;
  return ddk::spectral_kl_fft(as_pointer(s), {ss[0], ss[1], ss[2]}, as_pointer(t), {ts[0], ts[1], ts[2]},
                              as_pointer(grad_s), as_pointer(grad_t), element_type(dtype), {n[0], n[1], n[2]}, tau,
                              num_threads);
}

ddk::PairwiseState pairwise_state(uintptr_t centred, uintptr_t g, uintptr_t softmax_stats, uintptr_t norms) {
  return {as_pointer(centred), static_cast<double*>(as_pointer(g)), static_cast<double*>(as_pointer(softmax_stats)),
          static_cast<double*>(as_pointer(norms))};
}

void pairwise_prepare(uintptr_t x, int dtype, int64_t samples, int64_t length, double tau, uintptr_t centred,
                      uintptr_t g, uintptr_t softmax_stats, uintptr_t norms, int num_threads) {
  py::gil_scoped_release release;
  ddk::pairwise_prepare(as_pointer(x), element_type(dtype), samples, length, tau,
                        pairwise_state(centred, g, softmax_stats, norms), num_threads);
}

py::tuple pairwise_epilogue(uintptr_t products, int dtype, int64_t samples, uintptr_t g, uintptr_t norms, uintptr_t d,
                            uintptr_t weights, uintptr_t row_sums, double scale, double cancellation_limit,
                            int num_threads) {
  ddk::PairwiseSums sums;
  {
    py::gil_scoped_release release;
    sums = ddk::pairwise_epilogue(as_pointer(products), element_type(dtype), samples, pairwise_state(0, g, 0, norms),
                                  as_pointer(d), as_pointer(weights), static_cast<double*>(as_pointer(row_sums)),
                                  scale, cancellation_limit, num_threads);
  }
  return py::make_tuple(sums.total, sums.ill_pairs);
}

void pairwise_gradient(uintptr_t x, int dtype, int64_t samples, int64_t length, double tau, uintptr_t centred,
                       uintptr_t softmax_stats, uintptr_t v_centred, uintptr_t row_sums, uintptr_t grad, int grad_dtype,
                       int num_threads) {
  py::gil_scoped_release release;
  ddk::pairwise_gradient(as_pointer(x), element_type(dtype), samples, length, tau,
                         pairwise_state(centred, 0, softmax_stats, 0),
                         as_pointer(v_centred), static_cast<double*>(as_pointer(row_sums)), as_pointer(grad),
                         element_type(grad_dtype), num_threads);
}

ddk::UnrollShape unroll_shape(const std::vector<int64_t>& shape) {
  if (shape.size() != 6)
    throw std::invalid_argument("linear_unroll: shape must be (sets, rows, horizon, channels, steps, seq_len)");
  return {shape[0], shape[1], shape[2], shape[3], shape[4], shape[5]};
}

ddk::UnrollInputs unroll_inputs(const std::vector<uintptr_t>& inputs) {
  if (inputs.size() != 5)
    throw std::invalid_argument("linear_unroll: inputs must be (kernel, trend_rowsum, std, offset, step_size)");
  const auto at = [&](int i) { return static_cast<const double*>(as_pointer(inputs[i])); };
  return {at(0), at(1), at(2), at(3), at(4)};
}

// The five arrays of a state or of the sums (see linear_unroll.h), in that header's order.
std::array<double*, 5> five(const std::vector<uintptr_t>& arrays, const char* name) {
  if (arrays.size() != 5) throw std::invalid_argument(std::string(name) + " must have 5 arrays");
  std::array<double*, 5> out;
  for (int i = 0; i < 5; ++i) out[i] = static_cast<double*>(as_pointer(arrays[i]));
  return out;
}

void linear_unroll_forward(std::vector<int64_t> shape, std::vector<uintptr_t> inputs, std::vector<uintptr_t> start,
                           bool train_affine, double eps2, std::vector<uintptr_t> sums, uintptr_t tape,
                           int num_threads) {
  const auto s = five(start, "linear_unroll_forward: start"), o = five(sums, "linear_unroll_forward: sums");
  const ddk::UnrollShape dims = unroll_shape(shape);
  const ddk::UnrollInputs in = unroll_inputs(inputs);
  py::gil_scoped_release release;
  ddk::linear_unroll_forward(dims, in, {s[0], s[1], s[2], s[3], s[4]}, train_affine, eps2,
                             {o[0], o[1], o[2], o[3], o[4]}, static_cast<double*>(as_pointer(tape)), num_threads);
}

void linear_unroll_backward(std::vector<int64_t> shape, std::vector<uintptr_t> inputs, bool train_affine, double eps2,
                            uintptr_t tape, std::vector<uintptr_t> grad_sums, std::vector<uintptr_t> grad_inputs,
                            std::vector<uintptr_t> grad_start, int num_threads) {
  const auto g = five(grad_sums, "linear_unroll_backward: grad_sums");
  const auto gi = five(grad_inputs, "linear_unroll_backward: grad_inputs");
  const auto gs = five(grad_start, "linear_unroll_backward: grad_start");
  const ddk::UnrollShape dims = unroll_shape(shape);
  const ddk::UnrollInputs in = unroll_inputs(inputs);
  py::gil_scoped_release release;
  ddk::linear_unroll_backward(dims, in, train_affine, eps2, static_cast<const double*>(as_pointer(tape)),
                              {g[0], g[1], g[2], g[3], g[4]}, gi[0], gi[1], gi[2], gi[3], gi[4],
                              {gs[0], gs[1], gs[2], gs[3], gs[4]}, num_threads);
}

ddk::Simd simd_by_name(const std::string& name) {
  for (ddk::Simd level : {ddk::Simd::Baseline, ddk::Simd::Avx2, ddk::Simd::Avx512})
    if (name == ddk::simd_name(level)) return level;
  throw std::invalid_argument("set_simd: level must be 'baseline', 'avx2' or 'avx512', got '" + name + "'");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.attr("ZERO_TOLERANCE") = ddk::kZeroTolerance;
  m.doc() = "ddkernels CPU kernels (C++17, OpenMP; no libtorch)";
  m.def("multiscale_mse", &multiscale_mse, py::arg("x"), py::arg("y"), py::arg("grad"), py::arg("dtype"),
        py::arg("shape"), py::arg("x_strides"), py::arg("y_strides"), py::arg("scales"), py::arg("weights"),
        py::arg("num_threads"),
        "Multi-scale pooling MSE over [outer, len, inner] views; writes dloss/dx to grad (0: skip). "
        "Returns (loss, per_scale_mse).");
  m.def("simd", [] { return std::string(ddk::simd_name(ddk::active_simd())); },
        "The instruction set the vectorised kernels use: 'baseline', 'avx2' or 'avx512'.");
  m.def("simd_levels", [] {
    std::vector<std::string> levels;
    for (int level = 0; level <= static_cast<int>(ddk::best_simd()); ++level)
      levels.push_back(ddk::simd_name(static_cast<ddk::Simd>(level)));
    return levels;
  }, "The instruction sets this CPU and build support, best last.");
  m.def("set_simd", [](const std::string& name) { ddk::set_simd(simd_by_name(name)); }, py::arg("level"),
        "Use instruction set `level` (one of simd_levels()) from now on; for tests and benchmarks.");
  m.def("spectral_l1", &spectral_l1, py::arg("a"), py::arg("a_strides"), py::arg("b"), py::arg("b_strides"),
        py::arg("grad_a"), py::arg("grad_b"), py::arg("grad_strides"), py::arg("dtype"), py::arg("shape"),
        py::arg("length"), py::arg("norm_scale"), py::arg("num_threads"),
        "Spectral L1 on rFFT spectra [outer, bins, inner] (b = 0: complex mode on a = rfft(input - target)); "
        "writes irfft-ready gradients with grad_strides to grad_a / grad_b (0: skip). Returns the loss.");
  m.def("spectral_kl", &spectral_kl, py::arg("s"), py::arg("s_strides"), py::arg("t"), py::arg("t_strides"),
        py::arg("grad_s"), py::arg("grad_t"), py::arg("grad_strides"), py::arg("dtype"), py::arg("shape"),
        py::arg("length"), py::arg("tau"), py::arg("num_threads"),
        "Spectral KL(teacher || student) on rFFT spectra [outer, bins, inner]; writes irfft-ready gradients with "
        "grad_strides to grad_s / grad_t (0: skip). Returns the loss.");
  m.def("fft_length_supported", &ddk::fft_length_supported, py::arg("length"),
        "Whether spectral_l1_fft takes this length (at least 2, prime factors up to 13).");
  m.def("spectral_l1_fft", &spectral_l1_fft, py::arg("x"), py::arg("x_strides"), py::arg("y"), py::arg("y_strides"),
        py::arg("grad_x"), py::arg("grad_y"), py::arg("dtype"), py::arg("shape"), py::arg("amplitude"),
        py::arg("norm_scale"), py::arg("num_threads"),
        "Fused spectral L1 on [outer, len, inner] views: FFT over len, loss and gradients in one pass; writes "
        "dloss/dx and dloss/dy (amplitude mode; 0: skip) contiguous in the accumulation type. Returns the loss.");
  m.def("spectral_kl_fft", &spectral_kl_fft, py::arg("s"), py::arg("s_strides"), py::arg("t"), py::arg("t_strides"),
        py::arg("grad_s"), py::arg("grad_t"), py::arg("dtype"), py::arg("shape"), py::arg("tau"),
        py::arg("num_threads"),
        "Fused spectral KL(teacher || student) on [outer, len, inner] views; writes dloss/dstudent and "
        "dloss/dteacher (0: skip) contiguous in the accumulation type. Returns the loss.");
  m.def("pairwise_prepare", &pairwise_prepare, py::arg("x"), py::arg("dtype"), py::arg("samples"), py::arg("length"),
        py::arg("tau"), py::arg("centred"), py::arg("g"), py::arg("softmax_stats"), py::arg("norms"),
        py::arg("num_threads"),
        "Row statistics of the pairwise symmetric KL: centred ([S, 2, L]: centred softmax rho_i, then centred "
        "log-softmax alpha_i), g, softmax_stats, norms.");
  m.def("pairwise_epilogue", &pairwise_epilogue, py::arg("products"), py::arg("dtype"), py::arg("samples"),
        py::arg("g"), py::arg("norms"), py::arg("d"), py::arg("weights"), py::arg("row_sums"), py::arg("scale"),
        py::arg("cancellation_limit"), py::arg("num_threads"),
        "D from N = rho alpha^T; writes D and/or weights scale * exp(-D) with row sums (0: skip). "
        "Returns (sum over i != j of exp(-D_ij), number of pairs that cancel beyond the limit).");
  m.def("pairwise_gradient", &pairwise_gradient, py::arg("x"), py::arg("dtype"), py::arg("samples"),
        py::arg("length"), py::arg("tau"), py::arg("centred"), py::arg("softmax_stats"), py::arg("v_centred"),
        py::arg("row_sums"), py::arg("grad"), py::arg("grad_dtype"), py::arg("num_threads"),
        "dloss/dx from V centred ([S, 2, L]: V rho, then V alpha per row) and the row sums of the symmetric "
        "weights V.");
  m.def("linear_unroll_forward", &linear_unroll_forward, py::arg("shape"), py::arg("inputs"), py::arg("start"),
        py::arg("train_affine"), py::arg("eps2"), py::arg("sums"), py::arg("tape"), py::arg("num_threads"),
        "DLinear's unrolled SGD steps in window space (float64, contiguous): shape (sets, rows, horizon, channels, "
        "steps, seq_len), inputs (kernel, trend_rowsum, std, offset, step_size), start and sums as in "
        "csrc/linear_unroll.h; writes the sums and the tape.");
  m.def("linear_unroll_backward", &linear_unroll_backward, py::arg("shape"), py::arg("inputs"),
        py::arg("train_affine"), py::arg("eps2"), py::arg("tape"), py::arg("grad_sums"), py::arg("grad_inputs"),
        py::arg("grad_start"), py::arg("num_threads"),
        "The reverse sweep of linear_unroll_forward: from dloss/dsums, writes dloss/d the inputs and the start.");
}
