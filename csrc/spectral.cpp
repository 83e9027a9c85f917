// Epilogues of the spectral losses on rFFT spectra S = rfft(x) (torch.fft, norm "backward"); c = the norm's scale.
//   L1:  loss = mean_k c|S_k| ("complex", S = rfft(input - target)) or mean_k c||A_k| - |B_k|| ("amplitude")
//        dloss/dS_k = (c / N) sign(.) S_k / |S_k|            (0 where |S_k| = 0 or the two magnitudes are equal)
//   KL:  loss = (1/N) sum_rows sum_k p_k (log p_k - log q_k),  q = softmax(|S|/tau), p = softmax(|T|/tau), k = 1..T/2
//        dloss/d|S_k| = (q_k - p_k) / (tau N),  dloss/d|T_k| = p_k (log p_k - log q_k - KL_row) / (tau N)
// Each gradient is written with the interior bins halved, so irfft(., norm="forward") is the adjoint of rfft.
// An interior bin's magnitude at most kZeroTolerance * c * sqrt(T sum_t x_t^2) (Parseval: the spectrum's norm) is
// zero up to the FFT's rounding (a constant series comes out near 1e-7 of that there): it gets the zero subgradient.
#include "spectral.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace ddk {
namespace {


inline bool interior_bin(int64_t k, int64_t length) { return k > 0 && 2 * k != length; }

// Weight of bin k in irfft's Hermitian sum: 1 for DC and Nyquist, 1/2 for the interior bins counted twice.
inline double hermitian_weight(int64_t k, int64_t length) { return interior_bin(k, length) ? 0.5 : 1.0; }

// One row (o, i) of a spectrum or gradient: bin k's real part at base[offset + k * step], its imaginary part after
// it. The base may be null for a gradient that is not wanted; such a row is never read or written.
template <typename P>
struct Row {
  P* base;
  int64_t offset, step;
  Row(P* data, const Strides3& s, int64_t o, int64_t i)
      : base(data), offset(2 * (o * s.outer + i * s.inner)), step(2 * s.len) {}
  P& re(int64_t k) const { return base[offset + k * step]; }
  P& im(int64_t k) const { return base[offset + k * step + 1]; }
};

// The magnitude below which an interior bin counts as zero (see kZeroTolerance), from the row's energy.
template <typename T>
double zero_floor(const Row<const T>& row, int64_t bins, int64_t length) {
  double energy = 0;
  for (int64_t k = 0; k < bins; ++k) {
    const double re = row.re(k), im = row.im(k);
    energy += (interior_bin(k, length) ? 2.0 : 1.0) * (re * re + im * im);
  }
  return kZeroTolerance * std::sqrt(energy);
}

double ordered_sum(const std::vector<double>& values) {
  double total = 0;
  for (double v : values) total += v;
  return total;
}

template <typename T>
double l1_kernel(const T* a, const Strides3& as, const T* b, const Strides3& bs, T* grad_a, T* grad_b,
                 const Strides3& gs, const Shape3& shape, int64_t length, double norm_scale, int num_threads) {
  const int64_t bins = shape.len, inner = shape.inner, rows = shape.outer * inner;
  const double count = static_cast<double>(rows) * static_cast<double>(bins);
  const bool amplitude = b != nullptr;
  std::vector<double> row_sums(rows, 0.0);
#pragma omp parallel num_threads(num_threads)
  {
    const FlushSubnormals flush;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t o = r / inner, i = r % inner;
      const Row<const T> ar(a, as, o, i), br(amplitude ? b : a, amplitude ? bs : as, o, i);
      const Row<T> ga(grad_a, gs, o, i), gb(grad_b, gs, o, i);
      const double a_floor = grad_a != nullptr ? zero_floor(ar, bins, length) : 0.0;
      const double b_floor = grad_b != nullptr ? zero_floor(br, bins, length) : 0.0;
      double sum = 0;
      for (int64_t k = 0; k < bins; ++k) {
        const bool interior = interior_bin(k, length);
        const T coef = static_cast<T>(norm_scale * hermitian_weight(k, length) / count);
        const T are = ar.re(k), aim = ar.im(k);
        const T amag = std::sqrt(are * are + aim * aim);
        T sign = 1, bre = 0, bim = 0, bmag = 0;
        if (amplitude) {
          bre = br.re(k);
          bim = br.im(k);
          bmag = std::sqrt(bre * bre + bim * bim);
          const T diff = amag - bmag;
          sign = static_cast<T>((diff > 0) - (diff < 0));
          sum += std::fabs(static_cast<double>(diff));
        } else {
          sum += static_cast<double>(amag);
        }
        if (grad_a != nullptr) {
          const T g = amag > (interior ? a_floor : 0.0) ? sign * coef / amag : T(0);
          ga.re(k) = g * are;
          ga.im(k) = g * aim;
        }
        if (grad_b != nullptr) {
          const T g = bmag > (interior ? b_floor : 0.0) ? -sign * coef / bmag : T(0);
          gb.re(k) = g * bre;
          gb.im(k) = g * bim;
        }
      }
      row_sums[r] = sum;
    }
  }
  return norm_scale * ordered_sum(row_sums) / count;
}

// Writes grad_k = w_k * derivative_k * S_k / |S_k| (0 at bin 0 and below the zero floor).
template <typename T>
void write_kl_gradient(const Row<T>& grad, const Row<const T>& spec, const std::vector<double>& mag,
                       const std::vector<double>& derivative, int64_t bins, int64_t length) {
  const double floor = zero_floor(spec, bins, length);
  grad.re(0) = T(0);
  grad.im(0) = T(0);
  for (int64_t k = 1; k < bins; ++k) {
    const double m = mag[k - 1];
    const bool resolved = m > (interior_bin(k, length) ? floor : 0.0);
    const double g = resolved ? hermitian_weight(k, length) * derivative[k - 1] / m : 0.0;
    grad.re(k) = static_cast<T>(g * spec.re(k));
    grad.im(k) = static_cast<T>(g * spec.im(k));
  }
}

template <typename T>
double kl_kernel(const T* s, const Strides3& ss, const T* t, const Strides3& ts, T* grad_s, T* grad_t,
                 const Strides3& gs, const Shape3& shape, int64_t length, double tau, int num_threads) {
  const int64_t bins = shape.len, inner = shape.inner, rows = shape.outer * inner, used = length / 2;
  const double count = static_cast<double>(rows) * static_cast<double>(used);
  const double inv_tau = 1.0 / tau, grad_scale = 1.0 / (tau * count);
  std::vector<double> row_sums(rows, 0.0);
#pragma omp parallel num_threads(num_threads)
  {
    const FlushSubnormals flush;
    // Logits and log-softmax differences in double: log p - log q cancels, and the teacher's gradient needs it.
    std::vector<double> mag_s(used), mag_t(used), q(used), p(used), derivative(used);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t o = r / inner, i = r % inner;
      const Row<const T> sr(s, ss, o, i), tr(t, ts, o, i);
      double max_s = 0, max_t = 0;  // logits are magnitudes / tau >= 0
      for (int64_t k = 0; k < used; ++k) {
        const double sre = sr.re(k + 1), sim = sr.im(k + 1), tre = tr.re(k + 1), tim = tr.im(k + 1);
        mag_s[k] = std::sqrt(sre * sre + sim * sim);
        mag_t[k] = std::sqrt(tre * tre + tim * tim);
        max_s = std::max(max_s, mag_s[k] * inv_tau);
        max_t = std::max(max_t, mag_t[k] * inv_tau);
      }
      double sum_s = 0, sum_t = 0;
      for (int64_t k = 0; k < used; ++k) {
        q[k] = std::exp(static_cast<T>(mag_s[k] * inv_tau - max_s));  // at the input's precision
        p[k] = std::exp(static_cast<T>(mag_t[k] * inv_tau - max_t));
        sum_s += q[k];
        sum_t += p[k];
      }
      const double lse_gap = (max_t + std::log(sum_t)) - (max_s + std::log(sum_s));  // lse_t - lse_s
      double kl = 0;
      for (int64_t k = 0; k < used; ++k) {
        q[k] /= sum_s;
        p[k] /= sum_t;
        kl += p[k] * ((mag_t[k] - mag_s[k]) * inv_tau - lse_gap);
      }
      row_sums[r] = kl;
      if (grad_s != nullptr) {
        for (int64_t k = 0; k < used; ++k) derivative[k] = (q[k] - p[k]) * grad_scale;
        write_kl_gradient(Row<T>(grad_s, gs, o, i), sr, mag_s, derivative, bins, length);
      }
      if (grad_t != nullptr) {
        for (int64_t k = 0; k < used; ++k)
          derivative[k] = p[k] * ((mag_t[k] - mag_s[k]) * inv_tau - lse_gap - kl) * grad_scale;
        write_kl_gradient(Row<T>(grad_t, gs, o, i), tr, mag_t, derivative, bins, length);
      }
    }
  }
  return ordered_sum(row_sums) / count;
}

}  // namespace

double spectral_l1(const void* a, const Strides3& as, const void* b, const Strides3& bs, void* grad_a, void* grad_b,
                   const Strides3& gs, DType dtype, const Shape3& shape, int64_t length, double norm_scale,
                   int num_threads) {
  return dispatch_dtype(WorkDType{}, dtype, "spectral_l1 spectra", [&](auto tag) {
    using T = decltype(tag);
    return l1_kernel<T>(static_cast<const T*>(a), as, static_cast<const T*>(b), bs, static_cast<T*>(grad_a),
                        static_cast<T*>(grad_b), gs, shape, length, norm_scale, num_threads);
  });
}

double spectral_kl(const void* s, const Strides3& ss, const void* t, const Strides3& ts, void* grad_s, void* grad_t,
                   const Strides3& gs, DType dtype, const Shape3& shape, int64_t length, double tau, int num_threads) {
  return dispatch_dtype(WorkDType{}, dtype, "spectral_kl spectra", [&](auto tag) {
    using T = decltype(tag);
    return kl_kernel<T>(static_cast<const T*>(s), ss, static_cast<const T*>(t), ts, static_cast<T*>(grad_s),
                        static_cast<T*>(grad_t), gs, shape, length, tau, num_threads);
  });
}

}  // namespace ddk
