// Types and constants the CPU kernels share.
#pragma once
#include <cstdint>

#if defined(__SSE2__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace ddk {

struct Shape3 { int64_t outer, len, inner; };        // a tensor seen as [outer, len, inner], len along the op's dim
struct Strides3 { int64_t outer, len, inner; };      // element strides of that view

// Room for vectors of any instruction set, aligned for vector moves: a task's workspace is a vector of these.
struct alignas(64) WorkspaceBlock { unsigned char bytes[64]; };

// At an interior bin of a spectrum, a magnitude at most kZeroTolerance * c * sqrt(T sum_t x_t^2) (Parseval: the
// spectrum's norm, c the norm's scale) is zero up to the transform's rounding: it gets the zero subgradient. The
// Triton kernels use the same value (ddkernels/kernels/spectral.py, checked equal by the tests).
constexpr double kZeroTolerance = 1e-6;

// While alive, the calling thread flushes subnormal numbers to zero, as results and as operands (x86's FTZ and DAZ
// bits, Arm's FZ bit); the previous mode comes back on exit (the mode is per thread, and OpenMP's threads are
// shared with torch's). Softmax tails (a probability e^-90 in float) then cost what normal numbers cost, where
// each subnormal operation took ~100 cycles (a feature-axis spectral KL ran 7x slower); values change only below
// the smallest normal number (1.2e-38 in float). Every parallel region of the kernels makes one per thread.
class FlushSubnormals {
 public:
  FlushSubnormals() {
#if defined(__SSE2__) || defined(_M_X64)
    saved_ = _mm_getcsr();
    _mm_setcsr(saved_ | 0x8040u);  // FTZ (bit 15) and DAZ (bit 6)
#elif defined(__aarch64__)
    __asm__ volatile("mrs %0, fpcr" : "=r"(saved_));
    __asm__ volatile("msr fpcr, %0" : : "r"(saved_ | (uint64_t{1} << 24)));  // FZ
#endif
  }
  ~FlushSubnormals() {
#if defined(__SSE2__) || defined(_M_X64)
    _mm_setcsr(static_cast<unsigned int>(saved_));
#elif defined(__aarch64__)
    __asm__ volatile("msr fpcr, %0" : : "r"(saved_));
#endif
  }
  FlushSubnormals(const FlushSubnormals&) = delete;
  FlushSubnormals& operator=(const FlushSubnormals&) = delete;

 private:
  uint64_t saved_ = 0;
};

}  // namespace ddk
