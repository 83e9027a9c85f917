// Pairwise softmax symmetric KL without the [S, S, L] tensor, on rows centred across samples.
//   p_i = softmax(a_i), a_i = x_i / tau;  D_ij = sum_k (p_ik - p_jk)(a_ik - a_jk) = g_i + g_j - N_ij - N_ji,
//   with rho = p - mean_i p, alpha = log p - mean_i log p (the centring and log p = a - lse_i cancel in the
//   differences), g_i = <rho_i, alpha_i>, N = rho alpha^T (a matrix product done by the caller).
//   backward with V = dloss/dD + its transpose, r = V 1:  dloss/da_i = r_i rho_i - (V rho)_i + J_i^T u_i,
//   u_i = r_i alpha_i - (V alpha)_i, J_i^T u = p_i (u - <p_i, u>).
// Centring keeps g and N small when the samples are nearly identical, so D ~ 1e-6 keeps float accuracy; log p
// instead of a keeps alpha O(log L) where p matters even for logits of 1e4. In u_i the row shift lse_i adds a
// constant per row, which J_i^T removes.
#include "pairwise_skl.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include <omp.h>

#include "dtype.h"

namespace ddk {
namespace {

constexpr int64_t kLanes = 8;  // independent partial results per reduction, so the loops vectorise

// sum_{k < n} f(k) in double over kLanes partial sums (then the tail and the lanes, in order).
template <typename Fn>
double lane_sum(int64_t n, Fn&& f) {
  double part[kLanes] = {0};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) part[j] += f(k + j);
  double total = 0;
  for (; k < n; ++k) total += f(k);
  for (int64_t j = 0; j < kLanes; ++j) total += part[j];
  return total;
}

template <typename T>
double row_lse(const T* row, int64_t length, double inv_tau) {
  double part[kLanes];
  std::fill(part, part + kLanes, -std::numeric_limits<double>::infinity());
  int64_t k = 0;
  for (; k + kLanes <= length; k += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) part[j] = std::max(part[j], static_cast<double>(row[k + j]));
  double top = -std::numeric_limits<double>::infinity();
  for (; k < length; ++k) top = std::max(top, static_cast<double>(row[k]));
  for (int64_t j = 0; j < kLanes; ++j) top = std::max(top, part[j]);
  top *= inv_tau;  // tau > 0
  // A NaN anywhere makes the sum NaN (std::max may skip it, exp of it does not).
  const double sum =
      lane_sum(length, [&](int64_t k) { return std::exp(static_cast<double>(row[k]) * inv_tau - top); });
  return top + std::log(sum);
}

// Column sums over rows of f(i, k), in double, each thread over a block of rows, then added in thread order.
template <typename Fn>
std::vector<double> column_sums(int64_t samples, int64_t length, int num_threads, Fn&& value) {
  std::vector<std::vector<double>> partial(num_threads, std::vector<double>(length, 0.0));
#pragma omp parallel num_threads(num_threads)
  {
    std::vector<double>& mine = partial[omp_get_thread_num()];
#pragma omp for schedule(static)
    for (int64_t i = 0; i < samples; ++i) value(i, mine.data());
  }
  std::vector<double> total(length, 0.0);
  for (const auto& part : partial)
    for (int64_t k = 0; k < length; ++k) total[k] += part[k];
  return total;
}

template <typename T>
void prepare_kernel(const T* x, int64_t samples, int64_t length, double tau, T* rho, T* alpha, double* g,
                    double* lse, double* norms, int num_threads) {
  const double inv_tau = 1.0 / tau;
#pragma omp parallel for num_threads(num_threads) schedule(static)
  for (int64_t i = 0; i < samples; ++i) lse[i] = row_lse(x + i * length, length, inv_tau);
  std::vector<double> mean_l = column_sums(samples, length, num_threads, [&](int64_t i, double* out) {
    const T* row = x + i * length;
    for (int64_t k = 0; k < length; ++k) out[k] += static_cast<double>(row[k]) * inv_tau - lse[i];
  });
  std::vector<double> mean_p = column_sums(samples, length, num_threads, [&](int64_t i, double* out) {
    const T* row = x + i * length;
    for (int64_t k = 0; k < length; ++k) out[k] += std::exp(static_cast<double>(row[k]) * inv_tau - lse[i]);
  });
  for (int64_t k = 0; k < length; ++k) {
    mean_l[k] /= static_cast<double>(samples);
    mean_p[k] /= static_cast<double>(samples);
  }
#pragma omp parallel for num_threads(num_threads) schedule(static)
  for (int64_t i = 0; i < samples; ++i) {
    const T* row = x + i * length;
    T* rho_row = rho + i * length;
    T* alpha_row = alpha + i * length;
    for (int64_t k = 0; k < length; ++k) {
      const double l = static_cast<double>(row[k]) * inv_tau - lse[i];
      rho_row[k] = static_cast<T>(std::exp(l) - mean_p[k]);
      alpha_row[k] = static_cast<T>(l - mean_l[k]);
    }
    // g and the norms from the rounded values, which the products see.
    auto dot = [&](const T* a, const T* b) {
      return lane_sum(length, [&](int64_t k) { return static_cast<double>(a[k]) * static_cast<double>(b[k]); });
    };
    g[i] = dot(rho_row, alpha_row);
    norms[i] = std::sqrt(dot(rho_row, rho_row));
    norms[samples + i] = std::sqrt(dot(alpha_row, alpha_row));
  }
}

constexpr int64_t kTile = 32;  // the epilogue reads N in kTile x kTile tiles and their transposed partners

template <typename T>
PairwiseSums epilogue_kernel(const T* products, int64_t samples, const double* g, const double* norms, T* d,
                             T* weights, double* row_sums, double scale, double cancellation_limit, int num_threads) {
  const int64_t blocks = (samples + kTile - 1) / kTile;
  const double* norm_rho = norms;
  const double* norm_alpha = norms + samples;
  std::vector<double> sums(samples, 0.0);
  std::vector<int64_t> ill(samples, 0);
#pragma omp parallel for num_threads(num_threads) schedule(dynamic, 1)
  for (int64_t ib = 0; ib < blocks; ++ib) {
    const int64_t i0 = ib * kTile, i1 = std::min(samples, i0 + kTile);
    double total[kTile] = {0}, weight_total[kTile] = {0};
    int64_t ill_pairs[kTile] = {0};
    double transposed[kTile][kTile];
    for (int64_t j0 = 0; j0 < samples; j0 += kTile) {
      const int64_t j1 = std::min(samples, j0 + kTile);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i) transposed[i - i0][j - j0] = static_cast<double>(products[j * samples + i]);
      for (int64_t i = i0; i < i1; ++i) {
        const T* row = products + i * samples;
        for (int64_t j = j0; j < j1; ++j) {
          // Both sums commute exactly, so D comes out exactly symmetric; D >= 0 up to rounding.
          const double dij = (g[i] + g[j]) - (static_cast<double>(row[j]) + transposed[i - i0][j - j0]);
          const double e = j == i ? 0.0 : std::exp(-dij);
          total[i - i0] += e;
          const double magnitude = (norm_rho[i] + norm_rho[j]) * (norm_alpha[i] + norm_alpha[j]);
          ill_pairs[i - i0] += (j != i && dij < cancellation_limit * magnitude) ? 1 : 0;
          if (d != nullptr) d[i * samples + j] = j == i ? T(0) : static_cast<T>(dij);
          if (weights != nullptr) {
            const T w = static_cast<T>(scale * e);
            weights[i * samples + j] = w;
            weight_total[i - i0] += static_cast<double>(w);
          }
        }
      }
    }
    for (int64_t i = i0; i < i1; ++i) {
      sums[i] = total[i - i0];
      ill[i] = ill_pairs[i - i0];
      if (row_sums != nullptr) row_sums[i] = weight_total[i - i0];
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
void gradient_kernel(const T* x, int64_t samples, int64_t length, double tau, const T* rho, const T* alpha,
                     const double* lse, const T* v_rho, const T* v_alpha, const double* row_sums, G* grad,
                     int num_threads) {
  const double inv_tau = 1.0 / tau;
#pragma omp parallel num_threads(num_threads)
  {
    std::vector<double> p(length), u(length);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < samples; ++i) {
      const int64_t base = i * length;
      for (int64_t k = 0; k < length; ++k) {
        p[k] = std::exp(static_cast<double>(x[base + k]) * inv_tau - lse[i]);
        u[k] = row_sums[i] * static_cast<double>(alpha[base + k]) - static_cast<double>(v_alpha[base + k]);
      }
      const double inner = lane_sum(length, [&](int64_t k) { return p[k] * u[k]; });
      for (int64_t k = 0; k < length; ++k) {
        const double direct = row_sums[i] * static_cast<double>(rho[base + k]) - static_cast<double>(v_rho[base + k]);
        grad[base + k] = from_float<G>(static_cast<typename Acc<G>::type>((direct + p[k] * (u[k] - inner)) * inv_tau));
      }
    }
  }
}

template <typename Fn>
void dispatch_work(int dtype, Fn&& fn) {
  if (dtype == 0) return fn(float{});
  if (dtype == 1) return fn(double{});
  throw std::invalid_argument("ddkernels._C: pairwise work arrays must be float32 or float64");
}

}  // namespace

void pairwise_prepare(const void* x, int dtype, int64_t samples, int64_t length, double tau,
                      const PairwiseState& state, int num_threads) {
  dispatch_work(dtype, [&](auto tag) {
    using T = decltype(tag);
    prepare_kernel<T>(static_cast<const T*>(x), samples, length, tau, static_cast<T*>(state.rho),
                      static_cast<T*>(state.alpha), state.g, state.lse, state.norms, num_threads);
  });
}

PairwiseSums pairwise_epilogue(const void* products, int dtype, int64_t samples, const PairwiseState& state,
                               void* d, void* weights, double* row_sums, double scale, double cancellation_limit,
                               int num_threads) {
  PairwiseSums result{0.0, 0};
  dispatch_work(dtype, [&](auto tag) {
    using T = decltype(tag);
    result = epilogue_kernel<T>(static_cast<const T*>(products), samples, state.g, state.norms, static_cast<T*>(d),
                                static_cast<T*>(weights), row_sums, scale, cancellation_limit, num_threads);
  });
  return result;
}

void pairwise_gradient(const void* x, int dtype, int64_t samples, int64_t length, double tau,
                       const PairwiseState& state, const void* v_rho, const void* v_alpha, const double* row_sums,
                       void* grad, int grad_dtype, int num_threads) {
  dispatch_work(dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_dtype(grad_dtype, [&](auto grad_tag) {
      using G = decltype(grad_tag);
      gradient_kernel<T, G>(static_cast<const T*>(x), samples, length, tau, static_cast<const T*>(state.rho),
                            static_cast<const T*>(state.alpha), state.lse, static_cast<const T*>(v_rho),
                            static_cast<const T*>(v_alpha), row_sums, static_cast<G*>(grad), num_threads);
    });
  });
}

}  // namespace ddk
