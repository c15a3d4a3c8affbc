// Plain scalar references with double accumulation: what every kernel is tested against.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "engine/ops.hpp"

namespace engine::test {

inline double ref_activation(Activation act, double x) {
  switch (act) {
    case Activation::none: return x;
    case Activation::relu: return x > 0.0 ? x : 0.0;
    case Activation::gelu_erf: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case Activation::gelu_tanh: {
      const double c = std::sqrt(2.0 / M_PI);
      return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
    }
  }
  return x;
}

// C = act(A·op(B) + beta·C + bias) in double; returns [M, N] row-major.
inline std::vector<double> ref_gemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda,
                                    const float* B, std::int64_t ldb, Transpose trans, const float* C0,
                                    std::int64_t ldc, float beta, const float* bias, Activation act) {
  std::vector<double> out(static_cast<std::size_t>(M * N));
  for (std::int64_t i = 0; i < M; ++i)
    for (std::int64_t j = 0; j < N; ++j) {
      double acc = 0.0;
      for (std::int64_t k = 0; k < K; ++k) {
        const double b = trans == Transpose::yes ? B[j * ldb + k] : B[k * ldb + j];
        acc += static_cast<double>(A[i * lda + k]) * b;
      }
      if (beta != 0.0f) acc += static_cast<double>(beta) * C0[i * ldc + j];
      if (bias != nullptr) acc += bias[j];
      out[static_cast<std::size_t>(i * N + j)] = ref_activation(act, acc);
    }
  return out;
}

// One masked softmax row in double, with the kernel's definition: keys j >= visible are masked,
// v = x·scale + bias_a + bias_b, a row with no finite v is all zeros.
inline std::vector<double> ref_softmax_row(std::int64_t visible, std::int64_t n, const float* x, double scale,
                                           const float* bias_a, const float* bias_b) {
  std::vector<double> v(static_cast<std::size_t>(n), -std::numeric_limits<double>::infinity());
  double mx = -std::numeric_limits<double>::infinity();
  for (std::int64_t j = 0; j < visible; ++j) {
    double t = x[j] * scale;
    if (bias_a) t += bias_a[j];
    if (bias_b) t += bias_b[j];
    v[static_cast<std::size_t>(j)] = t;
    mx = std::max(mx, t);
  }
  std::vector<double> y(static_cast<std::size_t>(n), 0.0);
  if (!(mx > -std::numeric_limits<double>::infinity())) return y;
  double sum = 0.0;
  for (std::int64_t j = 0; j < visible; ++j) sum += y[static_cast<std::size_t>(j)] = std::exp(v[static_cast<std::size_t>(j)] - mx);
  for (std::int64_t j = 0; j < visible; ++j) y[static_cast<std::size_t>(j)] /= sum;
  return y;
}

// LayerNorm of x + residual (residual may be null) in double.
inline std::vector<double> ref_layer_norm(std::int64_t n, const float* x, const float* residual, const float* gamma,
                                          const float* beta, double eps) {
  std::vector<double> s(static_cast<std::size_t>(n));
  double mean = 0.0;
  for (std::int64_t j = 0; j < n; ++j) mean += s[static_cast<std::size_t>(j)] = x[j] + (residual ? residual[j] : 0.0);
  mean /= static_cast<double>(n);
  double var = 0.0;
  for (double v : s) var += (v - mean) * (v - mean);
  var /= static_cast<double>(n);
  std::vector<double> y(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j)
    y[static_cast<std::size_t>(j)] = (s[static_cast<std::size_t>(j)] - mean) / std::sqrt(var + eps) * gamma[j] + beta[j];
  return y;
}

}  // namespace engine::test
