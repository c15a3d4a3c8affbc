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
  // More threads than cores is allowed (they time-share); past 1024 it is surely a mistake.
  if (threads < 0 || threads > 1024)
    fail("set_num_threads: threads must be in [0, 1024] (0 = OpenMP default), got ", threads);
  g_threads.store(threads);
}

int num_threads() {
  const int t = g_threads.load();
  return t > 0 ? t : omp_get_max_threads();
}

namespace parallel {
int threads_for(std::int64_t work_items) {
  // An op called from inside a parallel region (attention's per-head GEMMs) runs on the calling
  // thread alone: nested regions are inactive, and a split planned for more threads would
  // silently leave work undone.
  if (omp_in_parallel()) return 1;
  const int t = num_threads();
  if (work_items < 1) return 1;
  return work_items < t ? static_cast<int>(work_items) : t;
}
}  // namespace parallel
}  // namespace engine
