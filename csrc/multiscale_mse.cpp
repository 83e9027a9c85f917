// Multi-scale pooling MSE, forward with the gradient in the same pass.
//   loss = sum_s w_s * mean_b(p_sb^2),  p_sb = (1/s) * sum_{t in block b} (x_t - y_t)   (blocks of s steps, remainder dropped)
//   dloss/dx_t = sum_s [t < (T/s)*s] * 2 w_s / (count_s * s) * p_{s, t/s},  dloss/dy = -dloss/dx
// The tensors are seen as [outer, T, inner] with arbitrary strides; the gradient is written contiguous.
#include "multiscale_mse.h"

#include <algorithm>
#include <vector>

#include <omp.h>

#include "dtype.h"

namespace ddk {
namespace {

constexpr int64_t kColumns = 16;  // columns of the inner dimension processed together

template <typename T>
void multiscale_mse_kernel(const T* x, const T* y, T* grad, const Shape3& shape, const Strides3& xs,
                           const Strides3& ys, const std::vector<int64_t>& scales, const std::vector<double>& coef,
                           std::vector<double>& block_sums, int num_threads) {
  using A = typename Acc<T>::type;
  const int64_t len = shape.len, inner = shape.inner;
  const int64_t chunks = (inner + kColumns - 1) / kColumns;
  const int64_t tasks = shape.outer * chunks;
  const size_t n = scales.size();
  std::vector<int64_t> pooled_offset(n + 1, 0);
  for (size_t k = 0; k < n; ++k) pooled_offset[k + 1] = pooled_offset[k] + (len / scales[k]) * kColumns;
  std::vector<double> task_sums(static_cast<size_t>(tasks) * n, 0.0);

#pragma omp parallel num_threads(num_threads)
  {
    std::vector<A> diff(len * kColumns);
    std::vector<A> pooled(pooled_offset[n]);
    std::vector<A> gsum(grad != nullptr ? len * kColumns : 0);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t o = task / chunks, i0 = (task % chunks) * kColumns;
      const int64_t width = std::min(kColumns, inner - i0);
      const T* xb = x + o * xs.outer + i0 * xs.inner;
      const T* yb = y + o * ys.outer + i0 * ys.inner;
      if (width < kColumns) std::fill(diff.begin(), diff.end(), A(0));
      if (xs.inner == 1 && ys.inner == 1) {
        for (int64_t t = 0; t < len; ++t) {
          const T* xr = xb + t * xs.len;
          const T* yr = yb + t * ys.len;
          A* dr = diff.data() + t * kColumns;
          for (int64_t j = 0; j < width; ++j) dr[j] = static_cast<A>(to_float(xr[j])) - static_cast<A>(to_float(yr[j]));
        }
      } else {
        for (int64_t t = 0; t < len; ++t) {
          A* dr = diff.data() + t * kColumns;
          for (int64_t j = 0; j < width; ++j)
            dr[j] = static_cast<A>(to_float(xb[t * xs.len + j * xs.inner])) -
                    static_cast<A>(to_float(yb[t * ys.len + j * ys.inner]));
        }
      }
      for (size_t k = 0; k < n; ++k) {
        const int64_t s = scales[k], blocks = len / s;
        const A inv_s = A(1) / static_cast<A>(s);
        A* pk = pooled.data() + pooled_offset[k];
        double squares[kColumns] = {0};
        for (int64_t b = 0; b < blocks; ++b) {
          A block[kColumns] = {0};
          for (int64_t r = 0; r < s; ++r) {
            const A* dr = diff.data() + (b * s + r) * kColumns;
            for (int64_t j = 0; j < kColumns; ++j) block[j] += dr[j];
          }
          A* pb = pk + b * kColumns;
          for (int64_t j = 0; j < kColumns; ++j) {
            pb[j] = block[j] * inv_s;
            squares[j] += static_cast<double>(pb[j]) * static_cast<double>(pb[j]);
          }
        }
        double total = 0;
        for (int64_t j = 0; j < kColumns; ++j) total += squares[j];
        task_sums[task * n + k] = total;
      }
      if (grad != nullptr) {
        std::fill(gsum.begin(), gsum.end(), A(0));
        for (size_t k = 0; k < n; ++k) {
          const int64_t s = scales[k], blocks = len / s;
          const A c = static_cast<A>(coef[k]);
          const A* pk = pooled.data() + pooled_offset[k];
          for (int64_t b = 0; b < blocks; ++b) {
            const A* pb = pk + b * kColumns;
            for (int64_t r = 0; r < s; ++r) {
              A* gr = gsum.data() + (b * s + r) * kColumns;
              for (int64_t j = 0; j < kColumns; ++j) gr[j] += c * pb[j];
            }
          }
        }
        T* gb = grad + o * len * inner + i0;
        for (int64_t t = 0; t < len; ++t) {
          const A* gr = gsum.data() + t * kColumns;
          T* out = gb + t * inner;
          for (int64_t j = 0; j < width; ++j) out[j] = from_float<T>(gr[j]);
        }
      }
    }
  }
  for (int64_t task = 0; task < tasks; ++task)
    for (size_t k = 0; k < n; ++k) block_sums[k] += task_sums[task * n + k];
}

}  // namespace

MultiscaleResult multiscale_mse(const void* x, const void* y, void* grad, int dtype, const Shape3& shape,
                                const Strides3& xs, const Strides3& ys, const std::vector<int64_t>& scales,
                                const std::vector<double>& weights, int num_threads) {
  const size_t n = scales.size();
  std::vector<double> count(n), coef(n), block_sums(n, 0.0);
  for (size_t k = 0; k < n; ++k) {
    count[k] = static_cast<double>(shape.outer) * static_cast<double>(shape.inner) *
               static_cast<double>(shape.len / scales[k]);
    coef[k] = 2.0 * weights[k] / (count[k] * static_cast<double>(scales[k]));
  }
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    multiscale_mse_kernel<T>(static_cast<const T*>(x), static_cast<const T*>(y), static_cast<T*>(grad), shape, xs, ys,
                             scales, coef, block_sums, num_threads);
  });
  MultiscaleResult result{0.0, std::vector<double>(n)};
  for (size_t k = 0; k < n; ++k) {
    result.per_scale[k] = block_sums[k] / count[k];
    result.loss += weights[k] * result.per_scale[k];
  }
  return result;
}

}  // namespace ddk
