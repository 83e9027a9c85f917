// Element types the kernels read and write, and their conversions to and from float.
// float16 and bfloat16 are handled as raw 16-bit patterns, so no compiler extension is needed.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace ddk {

enum class DType : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };

inline float to_float(float v) { return v; }
inline double to_float(double v) { return v; }

inline float to_float(BFloat16 v) {
  uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float to_float(Half v) {
  uint32_t sign = (v.bits & 0x8000u) << 16;
  uint32_t exponent = (v.bits >> 10) & 0x1fu;
  uint32_t mantissa = v.bits & 0x3ffu;
  uint32_t u;
  if (exponent == 0x1f) {
    u = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    u = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    u = sign;
  } else {  // subnormal half: normalise
    int shift = 0;
    while ((mantissa & 0x400u) == 0) { mantissa <<= 1; ++shift; }
    mantissa &= 0x3ffu;
    u = sign | (static_cast<uint32_t>(113 - shift) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <typename T> inline T from_float(float v);
template <typename T> inline T from_float(double v);
template <> inline float from_float<float>(float v) { return v; }
template <> inline double from_float<double>(double v) { return v; }

template <> inline BFloat16 from_float<BFloat16>(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return BFloat16{static_cast<uint16_t>((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return BFloat16{static_cast<uint16_t>(u >> 16)};
}

template <> inline Half from_float<Half>(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) return Half{static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u))};
  if (abs >= 0x477ff000u) return Half{static_cast<uint16_t>(sign | 0x7c00u)};  // rounds to inf
  if (abs < 0x38800000u) {  // result is subnormal or zero
    if (abs < 0x33000000u) return Half{sign};
    uint32_t exponent = abs >> 23;
    uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exponent;  // 14 + (113 - exponent) - 1
    uint32_t half_mantissa = mantissa >> shift;
    uint32_t remainder = mantissa & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);
    if (remainder > halfway || (remainder == halfway && (half_mantissa & 1u))) ++half_mantissa;
    return Half{static_cast<uint16_t>(sign | half_mantissa)};
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);  // round to nearest even at bit 13
  return Half{static_cast<uint16_t>(sign | (((rounded >> 23) - 112) << 10) | ((rounded >> 13) & 0x3ffu))};
}

// Accumulation type: double for double, float for everything narrower.
template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::Float32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::Float64; };
template <> struct DTypeOf<Half> { static constexpr DType value = DType::Float16; };
template <> struct DTypeOf<BFloat16> { static constexpr DType value = DType::BFloat16; };

// The element types a kernel takes.
template <typename... Ts> struct DTypes {};
using AnyDType = DTypes<float, double, Half, BFloat16>;
using WorkDType = DTypes<float, double>;  // work arrays and spectra

// The one dtype dispatcher: returns fn(T{}) for the type T among `types` whose DType is `dtype`; `what` names the
// argument in the error for any other.
template <typename First, typename... Rest, typename Fn>
decltype(auto) dispatch_dtype(DTypes<First, Rest...> types, DType dtype, const char* what, Fn&& fn) {
  if (dtype == DTypeOf<First>::value) return fn(First{});
  if constexpr (sizeof...(Rest) > 0) {
    return dispatch_dtype(DTypes<Rest...>{}, dtype, what, std::forward<Fn>(fn));
  } else {
    (void)types;
    throw std::invalid_argument(std::string("ddkernels._C: unsupported element type for ") + what);
  }
}

}  // namespace ddk
