#pragma once
#include <cstdint>
#include <vector>

#include "common.h"
#include "dtype.h"

namespace ddk {

struct MultiscaleResult {
  double loss;
  std::vector<double> per_scale;  // mean squared pooled difference at each scale
};

// Writes the gradient of the loss with respect to x (contiguous [outer, len, inner]) when grad is not null.
MultiscaleResult multiscale_mse(const void* x, const void* y, void* grad, DType dtype, const Shape3& shape,
                                const Strides3& xs, const Strides3& ys, const std::vector<int64_t>& scales,
                                const std::vector<double>& weights, int num_threads);

}  // namespace ddk
