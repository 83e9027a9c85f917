// DLinear's unrolled SGD on the MSE in window space, and its reverse sweep (ddkernels/trainers/linear_unroll.py).
//   forward, per step: sh = w_c L + b_c (tau - 1) + beta, g = (2/N) s (s sh + o), s = a / (w_c + eps^2);
//     L -= eta (K h + u q^T), tau -= eta (h^T u + seq_len q), beta -= 2 eta sum_c pc_c, (w, b) -= eta (gw, gb),
//     with h = w_c g, pc_c = sum of g over channel c's rows, q = sum_c b_c pc_c; sums of h, q and sum_c pc_c kept.
//   backward: the same recurrence in reverse (adjoints of L, tau, beta, w, b carried from the last step to the
//     first), each step's intermediates recomputed from the state saved on the tape.
// L = z W^T holds the weight's action on the set's features z, so a step costs rows^2 x horizon, not
// rows x features x horizon, and nothing of size features is touched; all work is in double.
#include "linear_unroll.h"

#include <algorithm>
#include <vector>

#include "common.h"
#include "simd.h"
#include "simd_lanes.h"

namespace ddk {

namespace {

// One set's views of the inputs.
struct SetInputs {
  const double *kernel, *u, *std, *offset;
  double eta;
};

// The state's offsets inside one tape entry.
struct TapeLayout {
  int64_t linear, trend_sum, bias, weight, shift, size;
  explicit TapeLayout(const UnrollShape& s)
      : linear(0), trend_sum(s.rows * s.horizon), bias(trend_sum + s.horizon), weight(bias + s.horizon),
        shift(weight + s.channels), size(shift + s.channels) {}
};

// One set's scratch arrays: a step's gradients (g, h [rows, P]; per_channel [C, P]; weight, shift [C]; bias,
// q [P]) and the products and sums of the steps and of the reverse sweep.
struct SetWork {
  double *g, *h, *per_channel, *weight, *shift, *bias, *q, *product, *grad_h, *row_sums, *grad_per_channel,
      *channel_sums;
};

// Adjoints of one set's fixed inputs, accumulated over the steps.
struct InputGradients {
  double *kernel, *u, *std, *offset, *eta;
};

// A workspace for SetWork, owned outside the target regions.
class SetWorkspace {
 public:
  explicit SetWorkspace(const UnrollShape& s) {
    const int64_t np = s.rows * s.horizon, cp = s.channels * s.horizon;
    storage_.assign(4 * np + 2 * cp + 2 * s.channels + 6 * s.horizon + 3 * s.channels, 0.0);
    double* at = storage_.data();
    const auto take = [&at](int64_t count) { double* piece = at; at += count; return piece; };
    work_ = {take(np), take(np), take(cp), take(s.channels), take(s.channels), take(s.horizon), take(s.horizon),
             take(np), take(np), take(4 * s.horizon), take(cp), take(3 * s.channels)};
  }
  const SetWork& work() const { return work_; }

 private:
  std::vector<double> storage_;
  SetWork work_;
};

}  // namespace

#define DDK_KERNEL_BODY "linear_unroll_sets.inc"
#include "simd_each.inc"
#undef DDK_KERNEL_BODY

namespace {

int set_threads(int num_threads, int64_t sets) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, sets)));
}

}  // namespace

void linear_unroll_forward(const UnrollShape& shape, const UnrollInputs& in, const UnrollState& start,
                           bool train_affine, double eps2, const UnrollSums& sums, double* tape, int num_threads) {
  const TapeLayout t(shape);
  const int64_t n = shape.rows, P = shape.horizon, C = shape.channels;
  const auto run_steps = DDK_SIMD_SELECT(active_simd(), forward_set);
#pragma omp parallel for schedule(static) num_threads(set_threads(num_threads, shape.sets))
  for (int64_t set = 0; set < shape.sets; ++set) {
    const FlushSubnormals flush;
    const SetWorkspace workspace(shape);
    const SetInputs set_in{in.kernel + set * n * n, in.trend_rowsum + set * n, in.std + set * n,
                           in.offset + set * n * P, in.step_size[set]};
    std::vector<double> state(t.size);
    std::copy(start.linear + set * n * P, start.linear + (set + 1) * n * P, state.begin() + t.linear);
    std::copy(start.trend_sum + set * P, start.trend_sum + (set + 1) * P, state.begin() + t.trend_sum);
    std::copy(start.bias + set * P, start.bias + (set + 1) * P, state.begin() + t.bias);
    std::copy(start.weight + set * C, start.weight + (set + 1) * C, state.begin() + t.weight);
    std::copy(start.shift + set * C, start.shift + (set + 1) * C, state.begin() + t.shift);
    run_steps(shape, set_in, t, state.data(), train_affine, eps2, workspace.work(), sums.h + set * n * P,
                sums.q + set * P, sums.bias_grad + set * P,
              tape == nullptr ? nullptr : tape + set * shape.steps * t.size);
    std::copy(state.begin() + t.weight, state.begin() + t.weight + C, sums.weight + set * C);
    std::copy(state.begin() + t.shift, state.begin() + t.shift + C, sums.shift + set * C);
  }
}

void linear_unroll_backward(const UnrollShape& shape, const UnrollInputs& in, bool train_affine, double eps2,
                            const double* tape, const UnrollSums& grad_sums, double* grad_kernel,
                            double* grad_trend_rowsum, double* grad_std, double* grad_offset, double* grad_step_size,
                            const UnrollState& grad_start, int num_threads) {
  const TapeLayout t(shape);
  const int64_t n = shape.rows, P = shape.horizon, C = shape.channels;
  const auto run_reverse = DDK_SIMD_SELECT(active_simd(), backward_set);
#pragma omp parallel for schedule(static) num_threads(set_threads(num_threads, shape.sets))
  for (int64_t set = 0; set < shape.sets; ++set) {
    const FlushSubnormals flush;
    const SetWorkspace workspace(shape);
    const SetInputs set_in{in.kernel + set * n * n, in.trend_rowsum + set * n, in.std + set * n,
                           in.offset + set * n * P, in.step_size[set]};
    std::vector<double> adjoint(t.size, 0.0);
    std::copy(grad_sums.weight + set * C, grad_sums.weight + (set + 1) * C, adjoint.begin() + t.weight);
    std::copy(grad_sums.shift + set * C, grad_sums.shift + (set + 1) * C, adjoint.begin() + t.shift);
    const InputGradients grad{grad_kernel + set * n * n, grad_trend_rowsum + set * n, grad_std + set * n,
                              grad_offset + set * n * P, grad_step_size + set};
    run_reverse(shape, set_in, t, train_affine, eps2, tape + set * shape.steps * t.size, grad_sums.h + set * n * P,
                 grad_sums.q + set * P, grad_sums.bias_grad + set * P, workspace.work(), adjoint.data(), grad);
    std::copy(adjoint.begin() + t.linear, adjoint.begin() + t.linear + n * P, grad_start.linear + set * n * P);
    std::copy(adjoint.begin() + t.trend_sum, adjoint.begin() + t.trend_sum + P, grad_start.trend_sum + set * P);
    std::copy(adjoint.begin() + t.bias, adjoint.begin() + t.bias + P, grad_start.bias + set * P);
    std::copy(adjoint.begin() + t.weight, adjoint.begin() + t.weight + C, grad_start.weight + set * C);
    std::copy(adjoint.begin() + t.shift, adjoint.begin() + t.shift + C, grad_start.shift + set * C);
  }
}

}  // namespace ddk
