#include "simd.h"

#include <atomic>
#include <stdexcept>
#include <string>

namespace ddk {
namespace {

Simd detect() {
#if DDK_SIMD_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq"))
    return Simd::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Simd::Avx2;
#endif
  return Simd::Baseline;
}

std::atomic<int>& active_level() {
  static std::atomic<int> level{static_cast<int>(best_simd())};
  return level;
}

}  // namespace

Simd best_simd() {
  static const Simd best = detect();
  return best;
}

Simd active_simd() { return static_cast<Simd>(active_level().load()); }

void set_simd(Simd level) {
  if (static_cast<int>(level) < 0 || static_cast<int>(level) > static_cast<int>(best_simd()))
    throw std::invalid_argument(std::string("simd level must be at most ") + simd_name(best_simd()) +
                                " on this CPU and build");
  active_level().store(static_cast<int>(level));
}

const char* simd_name(Simd level) {
  switch (level) {
    case Simd::Avx512: return "avx512";
    case Simd::Avx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace ddk
