#include "engine/core/memory.hpp"

#include <sys/mman.h>

#include <cstdlib>

#include "engine/error.hpp"

namespace engine::memory {

// Huge pages matter twice here: a fresh 4 KiB page costs ~11 us to fault in on this machine, and
// the GEMMs stream megabytes of weights and activations whose 4 KiB translations do not fit the
// TLB. Packed weights and the benchmark's workspace on huge pages, `engine-profile`, 1 thread, old
// and new builds alternated: W3 162.8 -> 160.6 ms (4 runs), W1_b8 59.5 -> 58.7 (5 runs).
void* allocate(std::size_t bytes, const char* what) {
  constexpr std::size_t kLine = 64;
  const bool huge = bytes >= kHugePageBytes;
  void* p = nullptr;
  if (posix_memalign(&p, huge ? kHugePageBytes : kLine, bytes > 0 ? bytes : kLine) != 0)
    fail(what, ": cannot allocate ", bytes, " bytes");
  // Advice only: where transparent huge pages are off, the memory works the same in 4 KiB pages.
  if (huge) madvise(p, bytes / kHugePageBytes * kHugePageBytes, MADV_HUGEPAGE);
  return p;
}

}  // namespace engine::memory
