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

#include <omp.h>

namespace ddk {
namespace {

constexpr int64_t kColumns = 16;  // columns of the inner dimension processed together
constexpr double kZeroTolerance = 1e-6;

struct Tasks {
  int64_t chunks, count;
  explicit Tasks(const Shape3& shape)
      : chunks((shape.inner + kColumns - 1) / kColumns), count(shape.outer * ((shape.inner + kColumns - 1) / kColumns)) {}
};

inline bool interior_bin(int64_t k, int64_t length) { return k > 0 && 2 * k != length; }

// Weight of bin k in irfft's Hermitian sum: 1 for DC and Nyquist, 1/2 for the interior bins counted twice.
inline double hermitian_weight(int64_t k, int64_t length) { return interior_bin(k, length) ? 0.5 : 1.0; }

// Per column of a task: the magnitude below which an interior bin counts as zero (see kZeroTolerance).
template <typename T>
void zero_floor(const T* spec, const Strides3& ss, int64_t o, int64_t i0, int64_t width, int64_t bins,
                int64_t length, double* floor) {
  std::fill(floor, floor + kColumns, 0.0);
  for (int64_t k = 0; k < bins; ++k) {
    const T* sk = spec + 2 * (o * ss.outer + k * ss.len + i0 * ss.inner);
    const double weight = interior_bin(k, length) ? 2.0 : 1.0;
    for (int64_t j = 0; j < width; ++j) {
      const double re = sk[2 * j * ss.inner], im = sk[2 * j * ss.inner + 1];
      floor[j] += weight * (re * re + im * im);
    }
  }
  for (int64_t j = 0; j < width; ++j) floor[j] = kZeroTolerance * std::sqrt(floor[j]);
}

template <typename T>
double l1_kernel(const T* a, const Strides3& as, const T* b, const Strides3& bs, T* grad_a, T* grad_b,
                 const Shape3& shape, int64_t length, double norm_scale, int num_threads) {
  const Tasks tasks(shape);
  const int64_t bins = shape.len, inner = shape.inner;
  const double count = static_cast<double>(shape.outer) * static_cast<double>(bins) * static_cast<double>(inner);
  const bool amplitude = b != nullptr;
  std::vector<double> task_sums(tasks.count, 0.0);
#pragma omp parallel for num_threads(num_threads) schedule(static)
  for (int64_t task = 0; task < tasks.count; ++task) {
    const int64_t o = task / tasks.chunks, i0 = (task % tasks.chunks) * kColumns;
    const int64_t width = std::min(kColumns, inner - i0);
    double a_floor[kColumns] = {0}, b_floor[kColumns] = {0};
    if (grad_a != nullptr) zero_floor(a, as, o, i0, width, bins, length, a_floor);
    if (grad_b != nullptr) zero_floor(b, bs, o, i0, width, bins, length, b_floor);
    double sum = 0;
    for (int64_t k = 0; k < bins; ++k) {
      const bool interior = interior_bin(k, length);
      const T coef = static_cast<T>(norm_scale * hermitian_weight(k, length) / count);
      const T* ak = a + 2 * (o * as.outer + k * as.len + i0 * as.inner);
      const T* bk = amplitude ? b + 2 * (o * bs.outer + k * bs.len + i0 * bs.inner) : nullptr;
      const int64_t out = 2 * ((o * bins + k) * inner + i0);
      for (int64_t j = 0; j < width; ++j) {
        const T are = ak[2 * j * as.inner], aim = ak[2 * j * as.inner + 1];
        const T amag = std::sqrt(are * are + aim * aim);
        T sign = 1, bre = 0, bim = 0, bmag = 0;
        if (amplitude) {
          bre = bk[2 * j * bs.inner];
          bim = bk[2 * j * bs.inner + 1];
          bmag = std::sqrt(bre * bre + bim * bim);
          const T diff = amag - bmag;
          sign = static_cast<T>((diff > 0) - (diff < 0));
          sum += std::fabs(static_cast<double>(diff));
        } else {
          sum += static_cast<double>(amag);
        }
        if (grad_a != nullptr) {
          const T g = amag > (interior ? a_floor[j] : 0.0) ? sign * coef / amag : T(0);
          grad_a[out + 2 * j] = g * are;
          grad_a[out + 2 * j + 1] = g * aim;
        }
        if (grad_b != nullptr) {
          const T g = bmag > (interior ? b_floor[j] : 0.0) ? -sign * coef / bmag : T(0);
          grad_b[out + 2 * j] = g * bre;
          grad_b[out + 2 * j + 1] = g * bim;
        }
      }
    }
    task_sums[task] = sum;
  }
  double total = 0;
  for (double v : task_sums) total += v;
  return norm_scale * total / count;
}

template <typename T>
void write_kl_gradient(T* grad, const T* spec, const Strides3& ss, const std::vector<T>& mag,
                       const std::vector<T>& derivative, int64_t o, int64_t i0, int64_t width, int64_t bins,
                       int64_t inner, int64_t length) {
  double floor[kColumns];
  zero_floor(spec, ss, o, i0, width, bins, length, floor);
  for (int64_t k = 0; k < bins; ++k) {
    T* out = grad + 2 * ((o * bins + k) * inner + i0);
    if (k == 0) {
      std::fill(out, out + 2 * width, T(0));
      continue;
    }
    const T weight = static_cast<T>(hermitian_weight(k, length));
    const T* sk = spec + 2 * (o * ss.outer + k * ss.len + i0 * ss.inner);
    for (int64_t j = 0; j < width; ++j) {
      const int64_t m = (k - 1) * kColumns + j;
      const T g = mag[m] > (interior_bin(k, length) ? floor[j] : 0.0) ? weight * derivative[m] / mag[m] : T(0);
      out[2 * j] = g * sk[2 * j * ss.inner];
      out[2 * j + 1] = g * sk[2 * j * ss.inner + 1];
    }
  }
}

template <typename T>
double kl_kernel(const T* s, const Strides3& ss, const T* t, const Strides3& ts, T* grad_s, T* grad_t,
                 const Shape3& shape, int64_t length, double tau, int num_threads) {
  const Tasks tasks(shape);
  const int64_t bins = shape.len, inner = shape.inner, used = length / 2;
  const double count = static_cast<double>(shape.outer) * static_cast<double>(used) * static_cast<double>(inner);
  const double inv_tau = 1.0 / tau, grad_scale = 1.0 / (tau * count);
  std::vector<double> task_sums(tasks.count, 0.0);
#pragma omp parallel num_threads(num_threads)
  {
    // Log-softmax in double: log p - log q cancels, and the teacher's gradient needs it to float accuracy.
    std::vector<T> mag_s(used * kColumns), mag_t(used * kColumns), derivative(used * kColumns);
    std::vector<double> log_q(used * kColumns), log_p(used * kColumns);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks.count; ++task) {
      const int64_t o = task / tasks.chunks, i0 = (task % tasks.chunks) * kColumns;
      const int64_t width = std::min(kColumns, inner - i0);
      double max_s[kColumns] = {0}, max_t[kColumns] = {0};  // logits are magnitudes / tau >= 0
      for (int64_t k = 1; k <= used; ++k) {
        const T* sk = s + 2 * (o * ss.outer + k * ss.len + i0 * ss.inner);
        const T* tk = t + 2 * (o * ts.outer + k * ts.len + i0 * ts.inner);
        T* ms = mag_s.data() + (k - 1) * kColumns;
        T* mt = mag_t.data() + (k - 1) * kColumns;
        for (int64_t j = 0; j < width; ++j) {
          const T sre = sk[2 * j * ss.inner], sim = sk[2 * j * ss.inner + 1];
          const T tre = tk[2 * j * ts.inner], tim = tk[2 * j * ts.inner + 1];
          ms[j] = std::sqrt(sre * sre + sim * sim);
          mt[j] = std::sqrt(tre * tre + tim * tim);
          max_s[j] = std::max(max_s[j], ms[j] * inv_tau);
          max_t[j] = std::max(max_t[j], mt[j] * inv_tau);
        }
      }
      double sum_s[kColumns] = {0}, sum_t[kColumns] = {0};
      for (int64_t k = 0; k < used; ++k)
        for (int64_t j = 0; j < width; ++j) {
          sum_s[j] += std::exp(mag_s[k * kColumns + j] * inv_tau - max_s[j]);
          sum_t[j] += std::exp(mag_t[k * kColumns + j] * inv_tau - max_t[j]);
        }
      double lse_s[kColumns], lse_t[kColumns], kl[kColumns] = {0};
      for (int64_t j = 0; j < width; ++j) {
        lse_s[j] = max_s[j] + std::log(sum_s[j]);
        lse_t[j] = max_t[j] + std::log(sum_t[j]);
      }
      for (int64_t k = 0; k < used; ++k)
        for (int64_t j = 0; j < width; ++j) {
          const int64_t m = k * kColumns + j;
          log_q[m] = mag_s[m] * inv_tau - lse_s[j];
          log_p[m] = mag_t[m] * inv_tau - lse_t[j];
          kl[j] += std::exp(log_p[m]) * (log_p[m] - log_q[m]);
        }
      double total = 0;
      for (int64_t j = 0; j < width; ++j) total += kl[j];
      task_sums[task] = total;
      if (grad_s != nullptr) {
        for (int64_t k = 0; k < used; ++k)
          for (int64_t j = 0; j < width; ++j) {
            const int64_t m = k * kColumns + j;
            derivative[m] = static_cast<T>((std::exp(log_q[m]) - std::exp(log_p[m])) * grad_scale);
          }
        write_kl_gradient(grad_s, s, ss, mag_s, derivative, o, i0, width, bins, inner, length);
      }
      if (grad_t != nullptr) {
        for (int64_t k = 0; k < used; ++k)
          for (int64_t j = 0; j < width; ++j) {
            const int64_t m = k * kColumns + j;
            derivative[m] = static_cast<T>(std::exp(log_p[m]) * (log_p[m] - log_q[m] - kl[j]) * grad_scale);
          }
        write_kl_gradient(grad_t, t, ts, mag_t, derivative, o, i0, width, bins, inner, length);
      }
    }
  }
  double total = 0;
  for (double v : task_sums) total += v;
  return total / count;
}

template <typename Fn>
double dispatch_float(int dtype, Fn&& fn) {
  if (dtype == 0) return fn(float{});
  if (dtype == 1) return fn(double{});
  throw std::invalid_argument("ddkernels._C: spectra must be complex64 or complex128");
}

}  // namespace

double spectral_l1(const void* a, const Strides3& as, const void* b, const Strides3& bs, void* grad_a, void* grad_b,
                   int dtype, const Shape3& shape, int64_t length, double norm_scale, int num_threads) {
  return dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    return l1_kernel<T>(static_cast<const T*>(a), as, static_cast<const T*>(b), bs, static_cast<T*>(grad_a),
                        static_cast<T*>(grad_b), shape, length, norm_scale, num_threads);
  });
}

double spectral_kl(const void* s, const Strides3& ss, const void* t, const Strides3& ts, void* grad_s, void* grad_t,
                   int dtype, const Shape3& shape, int64_t length, double tau, int num_threads) {
  return dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    return kl_kernel<T>(static_cast<const T*>(s), ss, static_cast<const T*>(t), ts, static_cast<T*>(grad_s),
                        static_cast<T*>(grad_t), shape, length, tau, num_threads);
  });
}

}  // namespace ddk
