// Vector registers as GCC vectors of accumulators, for each instruction set the CPU kernels are compiled for (see
// simd.h): namespaces ddk::baseline, ddk::avx2 and ddk::avx512, each compiled for its set, with
//   kRegisterBytes, FloatLanes, load_floats / store_floats (`width` floats of a row as lanes first .. first + width
//   - 1; the other lanes zero / untouched) and, from simd_lanes.inc, Lanes<A>, load_lanes / store_lanes (any element type and column stride),
//   load_runs / store_runs / prefetch_runs (a group in LaneRuns), lane_total and for_each_index (a loop over
//   compile-time indices).
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

// Where a group's series lie: `runs` runs of `run_width` series each, in lanes r * run_width .. (runs > 1: the last
// series of consecutive blocks, packed so that narrow blocks fill a register; see load_runs).
struct LaneRuns {
  int runs, run_width;
  int width() const { return runs * run_width; }
};

// The address of lane 0 when lanes first .. of a masked load or store come from row: the masked lanes are not
// accessed, so it may lie before row.
inline float* lane_zero(const float* row, int first) {
  return reinterpret_cast<float*>(reinterpret_cast<uintptr_t>(row) - first * sizeof(float));
}

namespace baseline {
constexpr int kRegisterBytes = 16;  // one vector register; the series in it are processed together
typedef float FloatLanes __attribute__((vector_size(kRegisterBytes)));

inline FloatLanes load_floats(const float* row, int width, int first) {
  float lanes[kRegisterBytes / sizeof(float)] = {};
  std::memcpy(lanes + first, row, width * sizeof(float));
  FloatLanes v;
  std::memcpy(&v, lanes, sizeof v);
  return v;
}

inline void store_floats(float* row, int width, int first, FloatLanes v) {
  float lanes[kRegisterBytes / sizeof(float)];
  std::memcpy(lanes, &v, sizeof v);
  std::memcpy(row, lanes + first, width * sizeof(float));
}

#include "simd_lanes.inc"
}  // namespace baseline

#if DDK_SIMD_DISPATCH
DDK_TARGET_AVX2
namespace avx2 {
constexpr int kRegisterBytes = 32;
constexpr int kFloats = kRegisterBytes / sizeof(float);
typedef float FloatLanes __attribute__((vector_size(kRegisterBytes)));

// Lanes first .. first + width - 1.
inline __m256i lane_range(int width, int first) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(first), lane),
                             _mm256_cmpgt_epi32(_mm256_set1_epi32(first + width), lane));
}

inline FloatLanes load_floats(const float* row, int width, int first) {
  if (width == kFloats) return reinterpret_cast<FloatLanes>(_mm256_loadu_ps(row));
  return reinterpret_cast<FloatLanes>(_mm256_maskload_ps(lane_zero(row, first), lane_range(width, first)));
}

inline void store_floats(float* row, int width, int first, FloatLanes v) {
  if (width == kFloats) return _mm256_storeu_ps(row, reinterpret_cast<__m256>(v));
  _mm256_maskstore_ps(lane_zero(row, first), lane_range(width, first), reinterpret_cast<__m256>(v));
}

#include "simd_lanes.inc"
}  // namespace avx2
DDK_TARGET_END

DDK_TARGET_AVX512
namespace avx512 {
constexpr int kRegisterBytes = 64;
constexpr int kFloats = kRegisterBytes / sizeof(float);
typedef float FloatLanes __attribute__((vector_size(kRegisterBytes)));

// Lanes first .. first + width - 1.
inline __mmask16 lane_range(int width, int first) { return static_cast<__mmask16>(((1u << width) - 1) << first); }

inline FloatLanes load_floats(const float* row, int width, int first) {
  if (width == kFloats) return reinterpret_cast<FloatLanes>(_mm512_loadu_ps(row));
  return reinterpret_cast<FloatLanes>(_mm512_maskz_loadu_ps(lane_range(width, first), lane_zero(row, first)));
}

inline void store_floats(float* row, int width, int first, FloatLanes v) {
  if (width == kFloats) return _mm512_storeu_ps(row, reinterpret_cast<__m512>(v));
  _mm512_mask_storeu_ps(lane_zero(row, first), lane_range(width, first), reinterpret_cast<__m512>(v));
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
