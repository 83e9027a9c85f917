// Fused spectral losses on CPU: a mixed-radix FFT over time in the tensor's own layout, vectorised across series
// (one register of series per lane vector, two real series per complex transform), with the L1 or KL epilogue and
// the adjoint transform in the same pass (spectral_fft_lanes.inc, compiled once per instruction set).
//   KL: see spectral_kl_fft in spectral_fft.h; L1:
//   loss = c * mean_k |S_k| (S = F(x - y)) or c * mean_k ||F(x)_k| - |F(y)_k||
//   dloss/dx_t = Re sum_{k <= T/2} G_k e^{2 pi i k t / T},  G_k = (c / count) * sign * S_k / |S_k|
// (0 where a magnitude is 0, or at an interior bin below the zero floor of spectral.cpp; sign is that of
// |F(x)_k| - |F(y)_k| in amplitude mode and 1 in complex mode).
#include "spectral_fft.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <vector>

#include <omp.h>

#include "dtype.h"
#include "simd.h"
#include "simd_lanes.h"
#include "spectral_fft_plan.h"

namespace ddk {
namespace {

constexpr int kMaxRadix = 13;
// Odd radices first, so the last stages have radix 4 or 2: then DC and Nyquist come out of sums and differences of
// the sub-transforms' DC terms alone, and each slot's DC and Nyquist take none of the other slot's rounding.
constexpr int kRadices[] = {3, 5, 7, 11, 13, 4, 2};

std::vector<int> factorize(int64_t length) {
  std::vector<int> radices;
  for (int p : kRadices) {
    while (length % p == 0) {
      radices.push_back(p);
      length /= p;
    }
  }
  if (length != 1) radices.clear();
  return radices;
}

FftPlan make_plan(int64_t length) {
  const std::vector<int> radices = factorize(length);
  FftPlan plan{length, {}, std::vector<int64_t>(length), {}, {}};
  int64_t span = 1;
  const double two_pi = 6.283185307179586476925286766559;
  for (int p : radices) {
    const int64_t block = span * p;
    const FftStage stage{p, span, plan.twiddles64.size(), plan.twiddles64.size() + 2 * span * (p - 1)};
    std::vector<double> re(span * (p - 1)), im(span * (p - 1));
    for (int64_t j = 0; j < span; ++j)
      for (int q = 1; q < p; ++q) {
        const double angle = two_pi * static_cast<double>((q * j) % block) / static_cast<double>(block);
        re[j * (p - 1) + q - 1] = std::cos(angle);
        im[j * (p - 1) + q - 1] = -std::sin(angle);
      }
    plan.twiddles64.insert(plan.twiddles64.end(), re.begin(), re.end());
    plan.twiddles64.insert(plan.twiddles64.end(), im.begin(), im.end());
    std::vector<double> roots(2 * p * p);
    for (int q = 0; q < p; ++q)
      for (int m = 0; m < p; ++m) {
        roots[q * p + m] = std::cos(two_pi * ((q * m) % p) / p);
        roots[p * p + q * p + m] = -std::sin(two_pi * ((q * m) % p) / p);
      }
    plan.twiddles64.insert(plan.twiddles64.end(), roots.begin(), roots.end());
    plan.stages.push_back(stage);
    span = block;
  }
  plan.twiddles32.assign(plan.twiddles64.begin(), plan.twiddles64.end());
  // Sample t of a transform whose last stage has radix p sits at (t mod p) * (T / p) + its position in the
  // sub-transform of samples t mod p, t mod p + p, ... (length T / p, the earlier stages).
  for (int64_t t = 0; t < length; ++t) {
    int64_t rest = t, sub = length, pos = 0;
    for (size_t s = radices.size(); s-- > 0;) {
      const int p = radices[s];
      sub /= p;
      pos += (rest % p) * sub;
      rest /= p;
    }
    plan.position[t] = pos;
  }
  return plan;
}

}  // namespace

#define DDK_KERNEL_BODY "spectral_fft_lanes.inc"
#include "simd_each.inc"
#undef DDK_KERNEL_BODY

namespace {

// The instruction set's unit kernels.
template <typename T>
struct UnitKernels {
  void (*l1)(const FftUnit<T>&, const FftUnit<T>*, const FftPlan&, bool, double, void*, double*);
  void (*kl)(const FftUnit<T>&, const FftUnit<T>*, const FftPlan&, double, double, void*, double*);
};

template <typename T>
UnitKernels<T> unit_kernels(Simd level) {
  return {DDK_SIMD_SELECT(level, l1_fft_unit<T>), DDK_SIMD_SELECT(level, kl_fft_unit<T>)};
}

enum class Loss { L1Complex, L1Amplitude, KL };

// Series in register-wide groups: in each of `blocks` blocks of `series` series, `full` whole groups; the last
// `tail` series of tail_blocks consecutive blocks share a group, which follows those blocks' whole groups (the
// rows they share cache lines with are still in cache).
struct SeriesGroups {
  int64_t blocks, series, lanes, full, tail, tail_blocks, per_span, count;

  SeriesGroups(int64_t blocks_, int64_t series_, int64_t lanes_)
      : blocks(blocks_), series(series_), lanes(lanes_), full(series_ / lanes_), tail(series_ % lanes_),
        tail_blocks(tail > 0 ? lanes_ / tail : 1), per_span(tail_blocks * full + (tail > 0 ? 1 : 0)),
        count(blocks_ * full + (tail > 0 ? (blocks_ + tail_blocks - 1) / tail_blocks : 0)) {}

  struct Group {
    int64_t block, first;
    LaneRuns lanes;
  };

  Group operator[](int64_t g) const {
    const int64_t span = g / per_span, i = g % per_span, block = span * tail_blocks;
    const int64_t span_blocks = std::min(tail_blocks, blocks - block);
    if (i < span_blocks * full) return {block + i / full, (i % full) * lanes, {1, static_cast<int>(lanes)}};
    return {block, full * lanes, {static_cast<int>(span_blocks), static_cast<int>(tail)}};
  }
};

// Sum over units of their loss terms; `parameter` is the norm's scale c (L1) or tau (KL).
template <typename T>
double fft_kernel(const T* x, const Strides3& xs, const T* y, const Strides3& ys, typename Acc<T>::type* grad_x,
                  typename Acc<T>::type* grad_y, const Shape3& shape, Loss loss, double parameter, int num_threads) {
  const FftPlan plan = make_plan(shape.len);
  const Simd level = active_simd();
  const UnitKernels<T> kernel = unit_kernels<T>(level);
  const bool two_arguments = loss != Loss::L1Complex;  // one series' two arguments per unit
  // Series along inner, or along outer when inner is 1 (time innermost).
  const bool along_outer = shape.inner == 1 && shape.outer > 1;
  const int64_t x_block = along_outer ? 0 : xs.outer, x_col = along_outer ? xs.outer : xs.inner;
  const int64_t y_block = along_outer ? 0 : ys.outer, y_col = along_outer ? ys.outer : ys.inner;
  const int64_t g_block = along_outer ? 0 : shape.len * shape.inner, g_col = along_outer ? shape.len : 1;
  const SeriesGroups groups(along_outer ? 1 : shape.outer, along_outer ? shape.outer : shape.inner,
                            register_lanes<typename Acc<T>::type>(level));
  // Two groups per task: the two slots of one transform (complex mode), or two transforms whose gradients share
  // the adjoint (two arguments, no target gradient); else one group per task.
  const bool paired = !two_arguments || grad_y == nullptr;
  const int64_t tasks = paired ? (groups.count + 1) / 2 : groups.count;
  const int64_t half = shape.len / 2;
  const int64_t workspace_bytes = 2 * (2 * shape.len + 6 * (half + 1)) * register_bytes(level);
  const double rows = static_cast<double>(shape.outer) * static_cast<double>(shape.inner);
  const double count = rows * (loss == Loss::KL ? half : half + 1);
  std::vector<double> task_sums(tasks, 0.0);
  auto fill_slot = [&](FftUnit<T>& unit, int s, int64_t g, bool target) {
    const typename SeriesGroups::Group group = groups[g];
    unit.lanes[s] = group.lanes;
    unit.x[s] = target ? y + group.block * y_block + group.first * y_col
                       : x + group.block * x_block + group.first * x_col;
    unit.x_len[s] = target ? ys.len : xs.len;
    unit.x_col[s] = target ? y_col : x_col;
    unit.x_run[s] = target ? y_block : x_block;
    unit.y[s] = two_arguments ? nullptr : y + group.block * y_block + group.first * y_col;
    auto* grad = target ? grad_y : grad_x;
    unit.grad[s] = grad != nullptr ? grad + group.block * g_block + group.first * g_col : nullptr;
  };
  auto make_unit = [&](int64_t g) {
    FftUnit<T> unit{};
    unit.y_len = ys.len;
    unit.y_col = y_col;
    unit.y_run = y_block;
    unit.grad_len = shape.inner;
    unit.grad_col = g_col;
    unit.grad_run = g_block;
    if (two_arguments) {  // slot 1 holds the target's series
      fill_slot(unit, 0, g, false);
      fill_slot(unit, 1, g, true);
    } else {
      fill_slot(unit, 0, g, false);
      if (g + 1 < groups.count) fill_slot(unit, 1, g + 1, false);
    }
    return unit;
  };
#pragma omp parallel num_threads(num_threads)
  {
    const FlushSubnormals flush;
    std::vector<WorkspaceBlock> workspace((workspace_bytes + sizeof(WorkspaceBlock) - 1) / sizeof(WorkspaceBlock));
#pragma omp for schedule(dynamic, 2)  // tasks of packed narrow blocks take longer
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t g = paired ? 2 * task : task;
      const FftUnit<T> unit = make_unit(g);
      FftUnit<T> partner{};
      const bool has_partner = two_arguments && paired && g + 1 < groups.count;
      if (has_partner) partner = make_unit(g + 1);
      if (loss == Loss::KL) {
        kernel.kl(unit, has_partner ? &partner : nullptr, plan, parameter, 1.0 / (parameter * count),
                  workspace.data(), &task_sums[task]);
      } else {
        kernel.l1(unit, has_partner ? &partner : nullptr, plan, loss == Loss::L1Amplitude, parameter / count,
                  workspace.data(), &task_sums[task]);
      }
    }
  }
  double total = 0;
  for (double v : task_sums) total += v;
  return (loss == Loss::KL ? 1.0 : parameter) * total / count;
}

}  // namespace

bool fft_length_supported(int64_t length) { return length >= 2 && !factorize(length).empty(); }

namespace {

double run_fft_kernel(const void* x, const Strides3& xs, const void* y, const Strides3& ys, void* grad_x,
                      void* grad_y, DType dtype, const Shape3& shape, Loss loss, double parameter, int num_threads) {
  if (!fft_length_supported(shape.len))
    throw std::invalid_argument("spectral fft kernels: the length must be at least 2 with prime factors up to 13");
  double value = 0;
  dispatch_dtype(AnyDType{}, dtype, "spectral inputs", [&](auto tag) {
    using T = decltype(tag);
    using A = typename Acc<T>::type;
    value = fft_kernel<T>(static_cast<const T*>(x), xs, static_cast<const T*>(y), ys, static_cast<A*>(grad_x),
                          static_cast<A*>(grad_y), shape, loss, parameter, num_threads);
  });
  return value;
}

}  // namespace

double spectral_l1_fft(const void* x, const Strides3& xs, const void* y, const Strides3& ys, void* grad_x,
                       void* grad_y, DType dtype, const Shape3& shape, bool amplitude, double norm_scale,
                       int num_threads) {
  return run_fft_kernel(x, xs, y, ys, grad_x, grad_y, dtype, shape, amplitude ? Loss::L1Amplitude : Loss::L1Complex,
                        norm_scale, num_threads);
}

double spectral_kl_fft(const void* student, const Strides3& ss, const void* teacher, const Strides3& ts,
                       void* grad_student, void* grad_teacher, DType dtype, const Shape3& shape, double tau,
                       int num_threads) {
  return run_fft_kernel(student, ss, teacher, ts, grad_student, grad_teacher, dtype, shape, Loss::KL, tau,
                        num_threads);
}

}  // namespace ddk
