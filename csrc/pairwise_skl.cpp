// Pairwise softmax symmetric KL without the [S, S, L] tensor, on rows centred across samples.
//   p_i = softmax(a_i), a_i = x_i / tau;  D_ij = sum_k (p_ik - p_jk)(a_ik - a_jk) = g_i + g_j - N_ij - N_ji,
//   with rho = p - mean_i p, alpha = log p - mean_i log p (the centring and log p = a - lse_i cancel in the
//   differences), g_i = <rho_i, alpha_i>, N = rho alpha^T (a matrix product done by the caller).
//   backward with V = dloss/dD + its transpose, r = V 1:  dloss/da_i = r_i rho_i - (V rho)_i + J_i^T u_i,
//   u_i = r_i alpha_i - (V alpha)_i, J_i^T u = p_i (u - <p_i, u>).
// Centring keeps g and N small when the samples are nearly identical, so D ~ 1e-6 keeps float accuracy; log p
// instead of a keeps alpha O(log L) where p matters even for logits of 1e4. In u_i the row shift lse_i adds a
// constant per row, which J_i^T removes. The row and tile work is vectorised along rows (pairwise_skl_rows.inc,
// compiled once per instruction set) and shared among threads by rows, column blocks or row tiles.
#include "pairwise_skl.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "common.h"
#include "dtype.h"
#include "pairwise_skl_rows.h"
#include "simd.h"
#include "simd_lanes.h"

namespace ddk {

#define DDK_KERNEL_BODY "pairwise_skl_rows.inc"
#include "simd_each.inc"
#undef DDK_KERNEL_BODY

namespace {

template <typename T>
RowKernels<T> active_kernels() {
  return DDK_SIMD_SELECT(active_simd(), row_kernels<T>)();
}

constexpr int64_t kColumnBlock = 512;  // columns per task of the column means

// The softmax rows' statistics (row max m_i, log-sum s_i), then their column means, then the centred rows.
template <typename T>
void prepare_kernel(const T* x, int64_t samples, int64_t length, double tau, T* centred, double* g,
                    double* softmax_stats, double* norms, int num_threads) {
  const RowKernels<T> kernels = active_kernels<T>();
  const double inv_tau = 1.0 / tau;
  double* row_max = softmax_stats;
  double* log_sum = softmax_stats + samples;
#pragma omp parallel num_threads(num_threads)
  {
    const FlushSubnormals flush;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < samples; ++i)
      std::tie(row_max[i], log_sum[i]) = kernels.softmax(x + i * length, length, inv_tau, centred + 2 * i * length);
  }
  std::vector<T> mean_p(length, T(0)), mean_l(length, T(0));
  const int64_t column_blocks = (length + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel num_threads(num_threads)
  {
    const FlushSubnormals flush;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < column_blocks; ++b)
      kernels.column_terms(x, centred, 2 * length, samples, length, b * kColumnBlock,
                           std::min(length, (b + 1) * kColumnBlock), inv_tau, row_max, log_sum, mean_p.data(),
                           mean_l.data());
  }
  const T inv_samples = static_cast<T>(1.0 / static_cast<double>(samples));
  for (int64_t k = 0; k < length; ++k) {
    mean_p[k] *= inv_samples;
    mean_l[k] *= inv_samples;
  }
#pragma omp parallel num_threads(num_threads)
  {
    const FlushSubnormals flush;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < samples; ++i) {
      T* const rho = centred + 2 * i * length;
      const CentredRow row = kernels.centre(x + i * length, length, inv_tau, row_max[i], log_sum[i], mean_p.data(),
                                            mean_l.data(), rho, rho + length);
      g[i] = row.g;
      norms[i] = row.norm_rho;
      norms[samples + i] = row.norm_alpha;
    }
  }
}

constexpr int kTile = 32;  // the epilogue reads N in kTile x kTile tiles and their transposed partners

template <typename T>
PairwiseSums epilogue_kernel(const T* products, int64_t samples, const double* g, const double* norms, T* d,
                             T* weights, double* row_sums, double scale, double cancellation_limit, int num_threads) {
  const RowKernels<T> kernels = active_kernels<T>();
  const int64_t blocks = (samples + kTile - 1) / kTile;
  std::vector<double> sums(samples, 0.0);
  std::vector<int64_t> ill(samples, 0);
#pragma omp parallel num_threads(num_threads)
  {
    const FlushSubnormals flush;
#pragma omp for schedule(dynamic, 1)
    for (int64_t ib = 0; ib < blocks; ++ib) {
      const int64_t i0 = ib * kTile, i1 = std::min(samples, i0 + kTile);
      alignas(64) double pair[kTile][kTile];
      for (int64_t j0 = 0; j0 < samples; j0 += kTile) {
        const int width = static_cast<int>(std::min<int64_t>(kTile, samples - j0));
        for (int64_t i = i0; i < i1; ++i)
          for (int c = 0; c < kTile; ++c)
            pair[i - i0][c] = c < width ? static_cast<double>(products[i * samples + j0 + c]) : 0.0;
        for (int c = 0; c < width; ++c)
          for (int64_t i = i0; i < i1; ++i) pair[i - i0][c] += static_cast<double>(products[(j0 + c) * samples + i]);
        for (int64_t i = i0; i < i1; ++i) {
          const TileSums tile = kernels.epilogue(
              i, j0, width, pair[i - i0], g, norms, norms + samples, scale, cancellation_limit,
              d != nullptr ? d + i * samples + j0 : nullptr, weights != nullptr ? weights + i * samples + j0 : nullptr);
          sums[i] += tile.total;
          ill[i] += tile.ill_pairs;
          if (row_sums != nullptr) row_sums[i] = (j0 == 0 ? 0.0 : row_sums[i]) + tile.weight_total;
        }
      }
    }
  }
  PairwiseSums result{0.0, 0};
  for (int64_t i = 0; i < samples; ++i) {
    result.total += sums[i];
    result.ill_pairs += ill[i];
  }
  return result;
}

template <typename T, typename G>
void gradient_kernel(const T* x, int64_t samples, int64_t length, double tau, const T* centred,
                     const double* softmax_stats, const T* v_centred, const double* row_sums, G* grad,
                     int num_threads) {
  const RowKernels<T> kernels = active_kernels<T>();
  const double inv_tau = 1.0 / tau;
#pragma omp parallel num_threads(num_threads)
  {
    const FlushSubnormals flush;
    std::vector<double> p(length), u(length);
    std::vector<T> row(std::is_same_v<G, T> ? 0 : length);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < samples; ++i) {
      const int64_t base = i * length, pair = 2 * i * length;
      T* out = nullptr;
      if constexpr (std::is_same_v<G, T>) out = grad + base; else out = row.data();
      kernels.gradient(x + base, length, inv_tau, softmax_stats[i], softmax_stats[samples + i], centred + pair,
                       centred + pair + length, v_centred + pair, v_centred + pair + length, row_sums[i], out,
                       p.data(), u.data());
      if constexpr (!std::is_same_v<G, T>)
        for (int64_t k = 0; k < length; ++k)
          grad[base + k] = from_float<G>(static_cast<typename Acc<G>::type>(row[k]));
    }
  }
}

}  // namespace

void pairwise_prepare(const void* x, DType dtype, int64_t samples, int64_t length, double tau,
                      const PairwiseState& state, int num_threads) {
  dispatch_dtype(WorkDType{}, dtype, "pairwise work arrays", [&](auto tag) {
    using T = decltype(tag);
    prepare_kernel<T>(static_cast<const T*>(x), samples, length, tau, static_cast<T*>(state.centred), state.g,
                      state.softmax_stats, state.norms, num_threads);
  });
}

PairwiseSums pairwise_epilogue(const void* products, DType dtype, int64_t samples, const PairwiseState& state,
                               void* d, void* weights, double* row_sums, double scale, double cancellation_limit,
                               int num_threads) {
  PairwiseSums result{0.0, 0};
  dispatch_dtype(WorkDType{}, dtype, "pairwise work arrays", [&](auto tag) {
    using T = decltype(tag);
    result = epilogue_kernel<T>(static_cast<const T*>(products), samples, state.g, state.norms, static_cast<T*>(d),
                                static_cast<T*>(weights), row_sums, scale, cancellation_limit, num_threads);
  });
  return result;
}

void pairwise_gradient(const void* x, DType dtype, int64_t samples, int64_t length, double tau,
                       const PairwiseState& state, const void* v_centred, const double* row_sums, void* grad,
                       DType grad_dtype, int num_threads) {
  dispatch_dtype(WorkDType{}, dtype, "pairwise work arrays", [&](auto tag) {
    using T = decltype(tag);
    dispatch_dtype(AnyDType{}, grad_dtype, "pairwise gradient", [&](auto grad_tag) {
      using G = decltype(grad_tag);
      gradient_kernel<T, G>(static_cast<const T*>(x), samples, length, tau, static_cast<const T*>(state.centred),
                            state.softmax_stats, static_cast<const T*>(v_centred), row_sums, static_cast<G*>(grad),
                            num_threads);
    });
  });
}

}  // namespace ddk
