// LayerNorm (with optional fused residual add), activations and bias add: validate, split rows
// across threads, call the row kernels of the active instruction set.
#include <omp.h>

#include <cmath>

#include "engine/core/parallel.hpp"
#include "engine/error.hpp"
#include "engine/kernels/kernel_table.hpp"
#include "engine/ops.hpp"

namespace engine {

void layer_norm(std::int64_t rows, std::int64_t cols, const float* x, const float* residual, const float* gamma,
                const float* beta, float eps, float* out, float* sum_out) {
  using i64 = std::int64_t;
  if (rows < 1 || cols < 1) fail("layer_norm: rows and cols must be >= 1, got rows=", rows, " cols=", cols);
  if (x == nullptr || out == nullptr) fail("layer_norm: ", x == nullptr ? "x" : "out", " is null");
  if (gamma == nullptr || beta == nullptr) fail("layer_norm: ", gamma == nullptr ? "gamma" : "beta", " is null");
  if (!(eps > 0.0f) || !std::isfinite(eps)) fail("layer_norm: eps must be a positive finite number, got ", eps);
  const kernels::KernelTable& kt = kernels::active();
  const int threads = parallel::threads_for(rows * cols >= 8192 ? rows : 1);
  auto body = [&](int tid) {
    const auto range = parallel::split_range(rows, threads, tid);
    for (i64 r = range.begin; r < range.end; ++r)
      kt.layer_norm_row(cols, x + r * cols, residual != nullptr ? residual + r * cols : nullptr, gamma, beta, eps,
                        out + r * cols, sum_out != nullptr ? sum_out + r * cols : nullptr);
  };
  if (threads == 1) {
    body(0);
  } else {
#pragma omp parallel num_threads(threads)
    body(omp_get_thread_num());
  }
}

}  // namespace engine
