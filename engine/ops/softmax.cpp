// Masked softmax: validates, turns the masks into per-row arguments of the row kernel and splits
// the rows across threads. Key padding given as bools becomes one additive row per batch (0 or
// -inf) in per-thread scratch; nothing of size rows x cols is ever built.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/core/parallel.hpp"
#include "engine/error.hpp"
#include "engine/kernels/kernel_table.hpp"
#include "engine/ops.hpp"
#include "engine/ops/mask_rows.hpp"

namespace engine {

void masked_softmax(std::int64_t batch, std::int64_t rows, std::int64_t cols, const float* in, std::int64_t ld_in,
                    float* out, std::int64_t ld_out, float scale, const SoftmaxMask& mask) {
  using i64 = std::int64_t;
  if (batch < 1 || rows < 1 || cols < 1)
    fail("masked_softmax: batch, rows and cols must be >= 1, got batch=", batch, " rows=", rows, " cols=", cols);
  if (in == nullptr || out == nullptr) fail("masked_softmax: ", in == nullptr ? "input" : "output", " is null");
  if (ld_in < cols || ld_out < cols)
    fail("masked_softmax: row strides must be >= cols (", cols, "), got ld_in=", ld_in, " ld_out=", ld_out);
  if (!std::isfinite(scale)) fail("masked_softmax: scale must be finite, got ", scale);
  if (mask.valid_lengths != nullptr)
    for (i64 b = 0; b < batch; ++b)
      if (mask.valid_lengths[b] < 0 || mask.valid_lengths[b] > cols)
        fail("masked_softmax: valid_lengths[", b, "] must be in [0, ", cols, "], got ", mask.valid_lengths[b]);

  const kernels::KernelTable& kt = kernels::active();
  const i64 total_rows = batch * rows;
  const int threads = parallel::threads_for(total_rows * cols >= 4096 ? total_rows : 1);

  auto body = [&](int tid) {
    thread_local std::vector<float> key_bias;  // [cols]: 0 or -inf, this thread's current batch
    i64 bias_batch = -1;
    const auto range = parallel::split_range(total_rows, threads, tid);
    for (i64 r = range.begin; r < range.end; ++r) {
      const i64 b = r / rows, i = r % rows;
      const i64 visible = ops::visible_keys(mask.causal, mask.causal_offset,
                                            mask.valid_lengths != nullptr ? mask.valid_lengths + b : nullptr, i, cols);
      const float* bias_a = nullptr;
      if (mask.key_padding != nullptr) {
        if (bias_batch != b) {
          if (static_cast<i64>(key_bias.size()) < cols) key_bias.resize(static_cast<std::size_t>(cols));
          ops::mask_as_bias(mask.key_padding + b * cols, cols, key_bias.data());
          bias_batch = b;
        }
        bias_a = key_bias.data();
      }
      const float* bias_b = mask.additive != nullptr ? mask.additive + i * cols : nullptr;
      kt.softmax_row(visible, cols, in + r * ld_in, out + r * ld_out, scale, bias_a, bias_b);
    }
  };
  if (threads == 1) {
    body(0);
  } else {
#pragma omp parallel num_threads(threads)
    body(omp_get_thread_num());
  }
}

}  // namespace engine
