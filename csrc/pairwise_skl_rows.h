// The pairwise kernels' row results and per-instruction-set kernel table: what pairwise_skl.cpp and its
// per-instruction-set body (pairwise_skl_rows.inc) share.
#pragma once
#include <cstdint>
#include <utility>

namespace ddk {

struct CentredRow {
  double g, norm_rho, norm_alpha;
};

struct TileSums {
  double total;         // sum of exp(-D_ij), j != i
  double weight_total;  // sum of the rounded weights
  int64_t ill_pairs;
};

// The row and tile kernels of pairwise_skl_rows.inc, of one instruction set.
template <typename T>
struct RowKernels {
  std::pair<double, double> (*softmax)(const T*, int64_t, double, T*);
  void (*column_terms)(const T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, double, const double*,
                       const double*, T*, T*);
  CentredRow (*centre)(const T*, int64_t, double, double, double, const T*, const T*, T*, T*);
  TileSums (*epilogue)(int64_t, int64_t, int, const double*, const double*, const double*, const double*, double,
                       double, T*, T*);
  void (*gradient)(const T*, int64_t, double, double, double, const T*, const T*, const T*, const T*, double, T*,
                   double*, double*);
};

}  // namespace ddk
