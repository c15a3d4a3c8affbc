#include <omp.h>
#include <algorithm>

#include "engine/core/parallel.hpp"
#include "engine/error.hpp"
#include "engine/kernels/kernel_table.hpp"
#include "engine/ops.hpp"

namespace engine {

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::none: return "none";
    case Activation::relu: return "relu";
    case Activation::gelu_erf: return "gelu_erf";
    case Activation::gelu_tanh: return "gelu_tanh";
  }
  return "unknown";
}

void activation(Activation act, std::int64_t n, float* x) {
  if (n < 0) fail("activation: n must be >= 0, got ", n);
  if (n == 0) return;
  if (x == nullptr) fail("activation: x is null");
  const kernels::KernelTable& kt = kernels::active();
  // Chunks are multiples of 64 elements so every thread count sees the same vector/tail split.
  constexpr std::int64_t kChunk = 64;
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  const int threads = parallel::threads_for(n >= 16384 ? chunks : 1);
  if (threads == 1) {
    kt.activation(act, n, x);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const auto range = parallel::split_range(chunks, threads, omp_get_thread_num());
    const std::int64_t begin = range.begin * kChunk, end = std::min(range.end * kChunk, n);
    if (begin < end) kt.activation(act, end - begin, x + begin);
  }
}

void add(std::int64_t n, const float* src, float* dst) {
  if (n < 0) fail("add: n must be >= 0, got ", n);
  if (n == 0) return;
  if (src == nullptr || dst == nullptr) fail("add: ", src == nullptr ? "src" : "dst", " is null");
  kernels::active().bias_add(n, src, dst);
}

void bias_add(std::int64_t rows, std::int64_t cols, const float* bias, float* x, std::int64_t ld) {
  if (rows < 1 || cols < 1) fail("bias_add: rows and cols must be >= 1, got rows=", rows, " cols=", cols);
  if (bias == nullptr || x == nullptr) fail("bias_add: ", bias == nullptr ? "bias" : "x", " is null");
  if (ld < cols) fail("bias_add: ld must be >= cols (", cols, "), got ", ld);
  const kernels::KernelTable& kt = kernels::active();
  for (std::int64_t r = 0; r < rows; ++r) kt.bias_add(cols, bias, x + r * ld);
}

}  // namespace engine
