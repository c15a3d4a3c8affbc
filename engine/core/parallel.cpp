#include "engine/core/parallel.hpp"

#include <omp.h>

#include <atomic>

#include "engine/error.hpp"
#include "engine/ops.hpp"

namespace engine {
namespace {
std::atomic<int> g_threads{0};
}

void set_num_threads(int threads) {
  if (threads < 0) fail("set_num_threads: threads must be >= 0 (0 = OpenMP default), got ", threads);
  g_threads.store(threads);
}

int num_threads() {
  const int t = g_threads.load();
  return t > 0 ? t : omp_get_max_threads();
}

namespace parallel {
int threads_for(std::int64_t work_items) {
  const int t = num_threads();
  if (work_items < 1) return 1;
  return work_items < t ? static_cast<int>(work_items) : t;
}
}  // namespace parallel
}  // namespace engine
