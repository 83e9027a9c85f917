#pragma once
#include <cstdint>

#include "common.h"
#include "dtype.h"

namespace ddk {

// Spectra are complex arrays (interleaved re, im) of float (Float32) or double (Float64), seen as
// [outer, bins, inner] with strides in complex elements; bins = length / 2 + 1 (torch.fft.rfft, norm "backward").
// Gradients, when their pointer is not null, are written with strides gs (complex elements), in the form
// torch.fft.irfft(grad, n=length, norm="forward") turns into dloss/dx (interior bins carry half weight).

// mean over bins of c|a| (b null) or of c||a| - |b||; returns the loss.
double spectral_l1(const void* a, const Strides3& as, const void* b, const Strides3& bs, void* grad_a, void* grad_b,
                   const Strides3& gs, DType dtype, const Shape3& shape, int64_t length, double norm_scale,
                   int num_threads);

// KL(softmax(|t|/tau) || softmax(|s|/tau)) over bins 1 .. length/2, mean over every bin; returns the loss.
double spectral_kl(const void* s, const Strides3& ss, const void* t, const Strides3& ts, void* grad_s, void* grad_t,
                   const Strides3& gs, DType dtype, const Shape3& shape, int64_t length, double tau, int num_threads);

}  // namespace ddk
