#pragma once
#include <cstdint>

#include "dtype.h"

namespace ddk {

// Samples are rows of a contiguous [S, L] array of float or double (the work type); the work arrays
// (centred, products, weights) have the same element type. Row statistics are kept in double.
struct PairwiseState {
  void* centred;  // [S, 2, L]: row i is rho_i = p_i - pi, then alpha_i = log p_i - c (pi, c: column means of p, log p)
  double* g;      // [S] sum_k rho_ik alpha_ik
  double* softmax_stats;  // [2, S] m_i = max_k x_ik, s_i = log sum_k exp((x_ik - m_i) / tau): log p_ik = (x_ik - m_i) / tau - s_i
  double* norms;  // [2, S] |rho_i| and |alpha_i| (as rounded to the work type)
};

struct PairwiseSums {
  double total;          // sum over i != j of exp(-D_ij)
  int64_t ill_pairs;     // pairs whose D cancels by more than the limit (see pairwise_epilogue)
};

void pairwise_prepare(const void* x, DType dtype, int64_t samples, int64_t length, double tau,
                      const PairwiseState& state, int num_threads);

// D_ij = g_i + g_j - N_ij - N_ji from N = rho alpha^T. Writes D (diagonal 0) when d is not null and, when
// weights is not null, V_ij = scale * exp(-D_ij) (0 on the diagonal) and row_sums_i = sum_j V_ij. Counts the
// pairs with D_ij < cancellation_limit * (|rho_i| + |rho_j|)(|alpha_i| + |alpha_j|): there the products' rounding
// is not small against D, and the caller redoes the work in double.
PairwiseSums pairwise_epilogue(const void* products, DType dtype, int64_t samples, const PairwiseState& state,
                               void* d, void* weights, double* row_sums, double scale, double cancellation_limit,
                               int num_threads);

// dloss/dx_i = (r_i rho_i - (V rho)_i + p_i (u_i - <p_i, u_i>)) / tau,  u_i = r_i alpha_i - (V alpha)_i,
// for a symmetric weight matrix V with row sums r; v_centred = V centred ([S, 2, L]: (V rho)_i, then (V alpha)_i,
// one product); written to grad (contiguous [S, L], grad_dtype).
void pairwise_gradient(const void* x, DType dtype, int64_t samples, int64_t length, double tau,
                       const PairwiseState& state, const void* v_centred, const double* row_sums, void* grad,
                       DType grad_dtype, int num_threads);

}  // namespace ddk
