// e^x for x <= ln2 / 2 (softmax terms), branch-free so loops over it vectorise: Cody-Waite reduction x = n ln2 + r,
// |r| <= ln2 / 2, and a Taylor polynomial (float: degree 7, under 2 ulp; double: degree 11, relative error
// under 1e-15); 0 below the smallest normal result.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

namespace ddk {

inline float exp_nonpositive(float x) {
  const float clamped = std::max(x, -87.0f);
  const int32_t whole = static_cast<int32_t>(clamped * 1.44269504088896341f - 0.5f);  // round(x / ln2), x <= 0
  const float n = static_cast<float>(whole);
  const float r = (clamped - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float poly = 1.0f / 5040.0f;
  poly = poly * r + 1.0f / 720.0f;
  poly = poly * r + 1.0f / 120.0f;
  poly = poly * r + 1.0f / 24.0f;
  poly = poly * r + 1.0f / 6.0f;
  poly = poly * r + 0.5f;
  poly = poly * r + 1.0f;
  poly = poly * r + 1.0f;
  const int32_t bits = (whole + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x >= -87.0f ? poly * scale : (x < -87.0f ? 0.0f : x);  // NaN stays NaN
}

inline double exp_nonpositive(double x) {
  // n = round(x / ln2) from the rounding of an add to 1.5 * 2^52, whose low mantissa bits then hold n: the
  // whole reduction stays in 64-bit float and integer lanes, which SSE2 vectorises.
  constexpr double kShifter = 6755399441055744.0;
  const double clamped = std::max(x, -708.0);
  const double shifted = clamped * 1.4426950408889634 + kShifter;
  const double n = shifted - kShifter;
  const double r = (clamped - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
  double poly = 1.0 / 39916800.0;
  poly = poly * r + 1.0 / 3628800.0;
  poly = poly * r + 1.0 / 362880.0;
  poly = poly * r + 1.0 / 40320.0;
  poly = poly * r + 1.0 / 5040.0;
  poly = poly * r + 1.0 / 720.0;
  poly = poly * r + 1.0 / 120.0;
  poly = poly * r + 1.0 / 24.0;
  poly = poly * r + 1.0 / 6.0;
  poly = poly * r + 0.5;
  poly = poly * r + 1.0;
  poly = poly * r + 1.0;
  uint64_t bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  bits = (bits + 1023) << 52;  // the exponent field of 2^n; the shifter's own bits shift out
  double scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x >= -708.0 ? poly * scale : (x < -708.0 ? 0.0 : x);  // NaN stays NaN
}

}  // namespace ddk
