#pragma once
#include <cstdint>

#include "common.h"
#include "dtype.h"

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
                       void* grad_y, DType dtype, const Shape3& shape, bool amplitude, double norm_scale,
                       int num_threads);

// Spectral KL(softmax(|F(teacher)| / tau) || softmax(|F(student)| / tau)) over bins 1 .. len/2, the mean over every
// bin of every series, fused like spectral_l1_fft: writes dloss/dstudent and dloss/dteacher (null: not wanted).
double spectral_kl_fft(const void* student, const Strides3& ss, const void* teacher, const Strides3& ts,
                       void* grad_student, void* grad_teacher, DType dtype, const Shape3& shape, double tau,
                       int num_threads);

}  // namespace ddk
