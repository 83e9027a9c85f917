// Multi-scale pooling MSE, forward with the gradient in the same pass.
//   loss = sum_s w_s * mean_b(p_sb^2),  p_sb = (1/s) * sum_{t in block b} (x_t - y_t)   (blocks of s steps, remainder dropped)
//   dloss/dx_t = sum_s [t < (T/s)*s] * 2 w_s / (count_s * s) * p_{s, t/s},  dloss/dy = -dloss/dx
// The tensors are seen as [outer, T, inner] with arbitrary strides; the gradient is written contiguous. Every
// (outer, inner) pair is one series; a task takes a slab of up to four registers of series and streams its rows in
// time order, in chunks: per-scale block passes over the chunk's buffered differences, the gradient gathered in a
// ring of rows (multiscale_mse_rows.inc, compiled once per instruction set).
#include "multiscale_mse.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include <omp.h>

#include "dtype.h"
#include "multiscale_mse_slab.h"
#include "simd.h"
#include "simd_lanes.h"

namespace ddk {

#define DDK_KERNEL_BODY "multiscale_mse_rows.inc"
#include "simd_each.inc"
#undef DDK_KERNEL_BODY

namespace {

// The instruction set's slab kernel.
template <typename T>
using SlabKernel = void (*)(const Slab<T>&, int64_t, const ScalePlan&, void*, double*);

template <typename T>
SlabKernel<T> slab_kernel(Simd level) {
  return DDK_SIMD_SELECT(level, multiscale_slab<T>);
}

// Series layout: `blocks` slabs of `series` series each. Series run along inner, or along outer when inner is 1
// (time innermost), so a slab holds more than one series whenever the tensor does.
struct SeriesLayout {
  int64_t blocks, series;
  int64_t x_block, x_col, y_block, y_col, grad_block, grad_col;
};

SeriesLayout series_layout(const Shape3& shape, const Strides3& xs, const Strides3& ys) {
  if (shape.inner == 1 && shape.outer > 1) return {1, shape.outer, 0, xs.outer, 0, ys.outer, 0, shape.len};
  return {shape.outer, shape.inner, xs.outer, xs.inner, ys.outer, ys.inner, shape.len * shape.inner, 1};
}

template <typename T>
void multiscale_mse_kernel(const T* x, const T* y, T* grad, const Shape3& shape, const Strides3& xs,
                           const Strides3& ys, const ScalePlan& plan, std::vector<double>& block_sums,
                           int num_threads) {
  const Simd level = active_simd();
  const SlabKernel<T> kernel = slab_kernel<T>(level);
  const int64_t lanes = register_lanes<typename Acc<T>::type>(level);
  const SeriesLayout layout = series_layout(shape, xs, ys);
  // Blocks narrower than half a register: `packed` consecutive blocks share one, a task per register. Not done for
  // the last series of wider blocks: a separate task for them reads the rows' cache lines a second time, which
  // cost more than the lanes saved (this kernel runs near the memory bandwidth).
  const int64_t packed = layout.series <= lanes / 2 && layout.blocks > 1 ? lanes / layout.series : 1;
  // Otherwise each block's groups split evenly into tiles of at most kTileGroups groups, more of them when there are
  // few blocks (four tasks per thread).
  const int64_t groups = (layout.series + lanes - 1) / lanes;
  const int64_t wanted = (4 * static_cast<int64_t>(num_threads) + layout.blocks - 1) / layout.blocks;
  const int64_t tiles = std::min(groups, std::max(wanted, (groups + kTileGroups - 1) / kTileGroups));
  const int64_t tasks = packed > 1 ? (layout.blocks + packed - 1) / packed : layout.blocks * tiles;
  const int n = plan.count;
  const int64_t tile_groups = packed > 1 ? 1 : (groups + tiles - 1) / tiles;
  const int64_t workspace_bytes = slab_workspace(plan, tile_groups) * register_bytes(level);
  std::vector<double> task_sums(static_cast<size_t>(tasks) * n, 0.0);

#pragma omp parallel num_threads(num_threads)
  {
    const FlushSubnormals flush;
    std::vector<WorkspaceBlock> workspace((workspace_bytes + sizeof(WorkspaceBlock) - 1) / sizeof(WorkspaceBlock));
#pragma omp for schedule(guided)
    for (int64_t task = 0; task < tasks; ++task) {
      int64_t block = task * packed, first = 0, columns = layout.series;
      int runs = static_cast<int>(std::min(packed, layout.blocks - block));
      if (packed == 1) {
        block = task / tiles;
        const int64_t tile = task % tiles;
        first = tile * groups / tiles * lanes;
        columns = std::min((tile + 1) * groups / tiles * lanes, layout.series) - first;
        runs = 1;
      }
      const Slab<T> slab{x + block * layout.x_block + first * layout.x_col,
                         y + block * layout.y_block + first * layout.y_col,
                         grad != nullptr ? grad + block * layout.grad_block + first * layout.grad_col : nullptr,
                         xs.len, layout.x_col, ys.len, layout.y_col, shape.inner, layout.grad_col, columns,
                         runs, layout.x_block, layout.y_block, layout.grad_block};
      kernel(slab, shape.len, plan, workspace.data(), task_sums.data() + task * n);
    }
  }
  for (int64_t task = 0; task < tasks; ++task)
    for (int k = 0; k < n; ++k) block_sums[k] += task_sums[task * n + k];
}

}  // namespace

MultiscaleResult multiscale_mse(const void* x, const void* y, void* grad, DType dtype, const Shape3& shape,
                                const Strides3& xs, const Strides3& ys, const std::vector<int64_t>& scales,
                                const std::vector<double>& weights, int num_threads) {
  const size_t n = scales.size();
  if (n == 0 || n > kMaxScales || weights.size() != n)
    throw std::invalid_argument("multiscale_mse: 1 to 8 scales with one weight each");
  ScalePlan plan{static_cast<int>(n), {}, {}, 1, -1};
  std::vector<double> count(n), block_sums(n, 0.0);
  const int64_t largest = *std::max_element(scales.begin(), scales.end());
  for (size_t k = 0; k < n; ++k) {
    if (scales[k] < 1 || scales[k] > shape.len)
      throw std::invalid_argument("multiscale_mse: every scale must be between 1 and the length");
    count[k] = static_cast<double>(shape.outer) * static_cast<double>(shape.inner) *
               static_cast<double>(shape.len / scales[k]);
    plan.size[k] = scales[k];
    plan.coef[k] = 2.0 * weights[k] / (count[k] * static_cast<double>(scales[k]));
    if (scales[k] == 1 && plan.unit_scale < 0) plan.unit_scale = static_cast<int>(k);
  }
  // A row stays in the ring until the blocks holding it are complete, at most largest - 1 rows after the chunk.
  while (plan.ring_rows < kChunkRows + largest - 1) plan.ring_rows *= 2;
  dispatch_dtype(AnyDType{}, dtype, "multiscale_mse inputs", [&](auto tag) {
    using T = decltype(tag);
    multiscale_mse_kernel<T>(static_cast<const T*>(x), static_cast<const T*>(y), static_cast<T*>(grad), shape, xs, ys,
                             plan, block_sums, num_threads);
  });
  MultiscaleResult result{0.0, std::vector<double>(n)};
  for (size_t k = 0; k < n; ++k) {
    result.per_scale[k] = block_sums[k] / count[k];
    result.loss += weights[k] * result.per_scale[k];
  }
  return result;
}

}  // namespace ddk
