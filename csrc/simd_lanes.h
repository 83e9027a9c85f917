// Vector registers as GCC vectors of accumulators, for each instruction set the CPU kernels are compiled for (see
// simd.h): namespaces ddk::baseline, ddk::avx2 and ddk::avx512, each compiled for its set, with
//   kRegisterBytes, FloatLanes, load_floats / store_floats (the first `width` floats of a row; the other lanes zero
//   / untouched) and, from simd_lanes.inc, Lanes<A>, load_lanes / store_lanes (any element type and column stride),
//   lane_total and for_each_index (a loop over compile-time indices).
// A kernel body compiled for each set goes through simd_each.inc (see multiscale_mse.cpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "dtype.h"
#include "simd.h"

#if DDK_SIMD_DISPATCH
#include <immintrin.h>
#endif

namespace ddk {

namespace baseline {
constexpr int kRegisterBytes = 16;  // one vector register; the series in it are processed together
typedef float FloatLanes __attribute__((vector_size(kRegisterBytes)));

inline FloatLanes load_floats(const float* row, int width) {
  FloatLanes v{};
  std::memcpy(&v, row, width * sizeof(float));
  return v;
}

inline void store_floats(float* row, int width, FloatLanes v) { std::memcpy(row, &v, width * sizeof(float)); }

#include "simd_lanes.inc"
}  // namespace baseline

#if DDK_SIMD_DISPATCH
DDK_TARGET_AVX2
namespace avx2 {
constexpr int kRegisterBytes = 32;
constexpr int kFloats = kRegisterBytes / sizeof(float);
typedef float FloatLanes __attribute__((vector_size(kRegisterBytes)));

inline __m256i first_lanes(int width) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(width), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline FloatLanes load_floats(const float* row, int width) {
  if (width == kFloats) return reinterpret_cast<FloatLanes>(_mm256_loadu_ps(row));
  return reinterpret_cast<FloatLanes>(_mm256_maskload_ps(row, first_lanes(width)));
}

inline void store_floats(float* row, int width, FloatLanes v) {
  if (width == kFloats) return _mm256_storeu_ps(row, reinterpret_cast<__m256>(v));
  _mm256_maskstore_ps(row, first_lanes(width), reinterpret_cast<__m256>(v));
}

#include "simd_lanes.inc"
}  // namespace avx2
DDK_TARGET_END

DDK_TARGET_AVX512
namespace avx512 {
constexpr int kRegisterBytes = 64;
constexpr int kFloats = kRegisterBytes / sizeof(float);
typedef float FloatLanes __attribute__((vector_size(kRegisterBytes)));

inline __mmask16 first_lanes(int width) { return static_cast<__mmask16>((1u << width) - 1); }

inline FloatLanes load_floats(const float* row, int width) {
  if (width == kFloats) return reinterpret_cast<FloatLanes>(_mm512_loadu_ps(row));
  return reinterpret_cast<FloatLanes>(_mm512_maskz_loadu_ps(first_lanes(width), row));
}

inline void store_floats(float* row, int width, FloatLanes v) {
  if (width == kFloats) return _mm512_storeu_ps(row, reinterpret_cast<__m512>(v));
  _mm512_mask_storeu_ps(row, first_lanes(width), reinterpret_cast<__m512>(v));
}

#include "simd_lanes.inc"
}  // namespace avx512
DDK_TARGET_END
#endif


// The bytes of one vector register of an instruction set, and how many accumulators of type A it holds: the
// width of a group of series in the kernels compiled for that set.
inline int register_bytes(Simd level) {
#if DDK_SIMD_DISPATCH
  if (level == Simd::Avx512) return avx512::kRegisterBytes;
  if (level == Simd::Avx2) return avx2::kRegisterBytes;
#endif
  (void)level;
  return baseline::kRegisterBytes;
}

template <typename A>
int register_lanes(Simd level) {
  return register_bytes(level) / static_cast<int>(sizeof(A));
}

}  // namespace ddk
