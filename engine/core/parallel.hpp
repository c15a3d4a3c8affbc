// Threading helpers over the one OpenMP pool the library uses.
#pragma once

#include <cstdint>

namespace engine::parallel {

// Threads an op should use for `work_items` independent items: num_threads(), but never more
// threads than items.
int threads_for(std::int64_t work_items);

// Splits [0, n) into `parts` contiguous ranges whose sizes differ by at most one; returns range i.
struct Range {
  std::int64_t begin, end;
};
inline Range split_range(std::int64_t n, int parts, int i) {
  const std::int64_t base = n / parts, extra = n % parts;
  const std::int64_t begin = i * base + (i < extra ? i : extra);
  return {begin, begin + base + (i < extra ? 1 : 0)};
}

}  // namespace engine::parallel
