// The instruction sets the CPU kernels are compiled for, and the one in use: the best this CPU supports,
// chosen at run time, so one portable build serves every x86-64 CPU.
// A kernel body compiled for several sets lives in a file included once per set (simd_each.inc):
//   DDK_TARGET_AVX2 / DDK_TARGET_AVX512 open a region compiled for that set, DDK_TARGET_END closes it.
#pragma once

namespace ddk {

enum class Simd : int { Baseline = 0, Avx2 = 1, Avx512 = 2 };

Simd best_simd();            // the best set this CPU and this build support
Simd active_simd();          // the set the kernels use: best_simd() unless lowered by set_simd
void set_simd(Simd level);   // throws std::invalid_argument above best_simd()
const char* simd_name(Simd level);

}  // namespace ddk

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DDK_SIMD_DISPATCH 1
#define DDK_TARGET_AVX2 _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define DDK_TARGET_AVX512 \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512\")")
#define DDK_TARGET_END _Pragma("GCC pop_options")
#else
#define DDK_SIMD_DISPATCH 0
#endif

// The one instruction-set selector: `name` (a function, or a function template's instantiation) from the namespace
// of instruction set `level` (baseline, avx2, avx512) that simd_each.inc compiled a kernel body into.
#if DDK_SIMD_DISPATCH
#define DDK_SIMD_SELECT(level, name)                                   \
  ((level) == ::ddk::Simd::Avx512 ? &avx512::name                      \
   : (level) == ::ddk::Simd::Avx2 ? &avx2::name : &baseline::name)
#else
#define DDK_SIMD_SELECT(level, name) ((void)(level), &baseline::name)
#endif
