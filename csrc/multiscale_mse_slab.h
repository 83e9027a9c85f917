// The multiscale kernel's plan and slab: what multiscale_mse.cpp and its per-instruction-set body share.
#pragma once
#include <cstdint>

namespace ddk {

constexpr int kMaxScales = 8;
constexpr int kTileGroups = 4;     // groups (registers of series) in a slab: its state stays in registers
constexpr int64_t kChunkRows = 32;    // rows whose differences are buffered at a time (see multiscale_mse_rows.inc)
constexpr int64_t kPrefetchRows = 32; // the loads and the gradient's stores ask for the row this far ahead

struct ScalePlan {
  int count;
  int64_t size[kMaxScales];
  double coef[kMaxScales];  // 2 w_s / (count_s * s)
  int64_t ring_rows;        // gradient rows kept: a power of two, at least kChunkRows + the largest scale - 1
  int unit_scale;           // the index of a scale of 1, or -1
};

// Vectors of workspace a slab of `groups` groups needs (see multiscale_mse_rows.inc): the chunk buffer and the ring.
inline int64_t slab_workspace(const ScalePlan& plan, int64_t groups) {
  return (kChunkRows + plan.ring_rows) * groups;
}

// `columns` series over `len` rows: element t of series j at x[t * x_len + j * x_col] (likewise y and grad; grad
// may be null). With runs > 1 the slab is one group of `runs` runs of `columns` series, run r at x + r * x_run
// (likewise y and grad): the series of consecutive narrow blocks.
template <typename T>
struct Slab {
  const T* x;
  const T* y;
  T* grad;
  int64_t x_len, x_col, y_len, y_col, grad_len, grad_col, columns;
  int runs;
  int64_t x_run, y_run, grad_run;
};

}  // namespace ddk
