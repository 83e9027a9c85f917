#pragma once
#include <cstdint>

#include "multiscale_mse.h"

namespace ddk {

// Lengths the fused FFT kernels take: every prime factor at most 13 (all the lengths forecasting uses).
bool fft_length_supported(int64_t length);

// Spectral L1 over time (the len axis of [outer, len, inner] views with element strides xs, ys) with its gradient,
// fused: reads x and y once, transforms in registers and cache, writes dloss/dx and dloss/dy (contiguous
// [outer, len, inner] of the accumulation type: double for double, float otherwise; null: not wanted).
//   complex:   loss = c * mean_k |F(x - y)_k|        amplitude: loss = c * mean_k ||F(x)_k| - |F(y)_k||
// F = the unnormalised rFFT, c = the norm's scale, the mean over every bin 0 .. len/2 of every series. In complex
// mode grad_y is not written (it is -grad_x). Returns the loss.
double spectral_l1_fft(const void* x, const Strides3& xs, const void* y, const Strides3& ys, void* grad_x,
                       void* grad_y, int dtype, const Shape3& shape, bool amplitude, double norm_scale,
                       int num_threads);

}  // namespace ddk
