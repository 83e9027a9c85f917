#pragma once
#include <cstdint>

namespace ddk {

// Sizes of an unroll: `sets` independent problems of `rows` = samples x channels rows (row r has channel
// r % channels), a horizon of `horizon` steps, `steps` SGD steps. All arrays are contiguous double, set-major.
struct UnrollShape {
  int64_t sets, rows, horizon, channels, steps, seq_len;
};

// The fixed inputs of a set: kernel K = z z^T [rows, rows], trend row sums u = z_t 1 [rows], RevIN's std a [rows]
// and offset o = mean - y [rows, horizon]; the step size eta [sets].
struct UnrollInputs {
  const double *kernel, *trend_rowsum, *std, *offset, *step_size;
};

// The state of the student in window space: linear = z W^T [rows, horizon], trend_sum = W_t 1 [horizon],
// bias = b_s + b_t [horizon], RevIN's affine weight and bias [channels].
struct UnrollState {
  double *linear, *trend_sum, *bias, *weight, *shift;
};

// What the caller needs to rebuild the student after the steps: sums over the steps of h = (dMSE/dshifted) w
// [rows, horizon], q = sum_c b_c (dMSE/dshifted summed over samples)_c [horizon] and of the bias gradient
// [horizon]; and the final affine weight and bias [channels].
struct UnrollSums {
  double *h, *q, *bias_grad, *weight, *shift;
};

// Runs the steps from `start`, writes `sums` and the state before every step to `tape`
// (steps x [rows x horizon | horizon | horizon | channels | channels] per set; null: no reverse sweep to come).
void linear_unroll_forward(const UnrollShape& shape, const UnrollInputs& in, const UnrollState& start,
                           bool train_affine, double eps2, const UnrollSums& sums, double* tape, int num_threads);

// The reverse sweep: from dloss/dsums (`grad_sums`) and the tape, dloss/d the inputs (grad_kernel, grad_trend_rowsum,
// grad_std, grad_offset, grad_step_size) and dloss/d the start state (`grad_start`).
void linear_unroll_backward(const UnrollShape& shape, const UnrollInputs& in, bool train_affine, double eps2,
                            const double* tape, const UnrollSums& grad_sums, double* grad_kernel,
                            double* grad_trend_rowsum, double* grad_std, double* grad_offset, double* grad_step_size,
                            const UnrollState& grad_start, int num_threads);

}  // namespace ddk
