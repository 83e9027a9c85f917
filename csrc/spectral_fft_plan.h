// The fused FFT kernels' plan and unit of work: what spectral_fft.cpp and its per-instruction-set body share.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "dtype.h"
#include "simd_lanes.h"

namespace ddk {

struct FftStage {
  int radix;
  int64_t span;            // length of the sub-transforms this stage combines
  size_t twiddle_offset;   // this stage's twiddles: [part][j < span][q - 1 < radix - 1], part 0 re, 1 im
  size_t root_offset;      // this stage's DFT matrix e^{-2 pi i q m / radix}: [part][q][m]
};

// Decimation-in-time mixed-radix plan for one length: stages smallest sub-transforms first, the input position
// of every sample, and in double and float the twiddles e^{-2 pi i q j / (span * radix)} and each radix's DFT
// matrix.
struct FftPlan {
  int64_t length;
  std::vector<FftStage> stages;
  std::vector<int64_t> position;
  std::vector<double> twiddles64;
  std::vector<float> twiddles32;

  template <typename A>
  const A* table(size_t offset) const {
    if constexpr (std::is_same_v<A, double>) {
      return twiddles64.data() + offset;
    } else {
      return twiddles32.data() + offset;
    }
  }
  template <typename A>
  const A* twiddles(const FftStage& stage, int part) const {
    return table<A>(stage.twiddle_offset + part * stage.span * (stage.radix - 1));
  }
  template <typename A>
  const A* roots(const FftStage& stage, int part) const {
    return table<A>(stage.root_offset + part * stage.radix * stage.radix);
  }
};

// One complex transform's two slots of up to one register of series each: element t of slot s's series j of run r
// at x[s][t * x_len[s] + j * x_col[s] + r * x_run[s]] (minus y[s][t * y_len + j * y_col + r * y_run] when y[s] is
// set); gradients written to grad[s][t * grad_len + j * grad_col + r * grad_run].
template <typename T>
struct FftUnit {
  const T* x[2];
  const T* y[2];
  typename Acc<T>::type* grad[2];
  LaneRuns lanes[2];
  int64_t x_len[2], x_col[2], x_run[2], y_len, y_col, y_run, grad_len, grad_col, grad_run;
};

}  // namespace ddk
