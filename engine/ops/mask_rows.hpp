// How a row's masks become kernel arguments, shared by masked_softmax and attention (internal).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace engine::ops {

// Keys [0, result) of query row i are not masked by position: causal (row i sees keys
// <= i + causal_offset) and per-batch valid length (null: none). An offset of cols or more shows
// every key, and keeps i + offset + 1 from overflowing.
inline std::int64_t visible_keys(bool causal, std::int64_t causal_offset, const std::int32_t* valid_length,
                                 std::int64_t i, std::int64_t cols) {
  std::int64_t visible = cols;
  if (causal && causal_offset < cols) visible = std::min(cols, std::max<std::int64_t>(0, i + causal_offset + 1));
  if (valid_length != nullptr) visible = std::min<std::int64_t>(visible, *valid_length);
  return visible;
}

// out[j] = 0 for an attended key, -inf for a masked one (true), for n bool flags.
inline void mask_as_bias(const bool* masked, std::int64_t n, float* out) {
  for (std::int64_t j = 0; j < n; ++j) out[j] = masked[j] ? -INFINITY : 0.0f;
}

}  // namespace engine::ops
