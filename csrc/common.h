// Types and constants the CPU kernels share.
#pragma once
#include <cstdint>

namespace ddk {

struct Shape3 { int64_t outer, len, inner; };        // a tensor seen as [outer, len, inner], len along the op's dim
struct Strides3 { int64_t outer, len, inner; };      // element strides of that view

// Room for vectors of any instruction set, aligned for vector moves: a task's workspace is a vector of these.
struct alignas(64) WorkspaceBlock { unsigned char bytes[64]; };

// At an interior bin of a spectrum, a magnitude at most kZeroTolerance * c * sqrt(T sum_t x_t^2) (Parseval: the
// spectrum's norm, c the norm's scale) is zero up to the transform's rounding: it gets the zero subgradient. The
// Triton kernels use the same value (ddkernels/kernels/spectral.py, checked equal by the tests).
constexpr double kZeroTolerance = 1e-6;

}  // namespace ddk
