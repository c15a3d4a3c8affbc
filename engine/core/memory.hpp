// Memory for large, long-lived buffers: the arena, packed weights, GEMM scratch.
#pragma once

#include <cstddef>

namespace engine::memory {

inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

// `bytes` (> 0) aligned to 64 bytes; from 2 MiB up, aligned to 2 MiB, and the whole 2 MiB pages
// inside it are advised as transparent huge pages (a partial last one stays in 4 KiB pages, so
// nothing is rounded up into the resident set). Release with std::free. Fails with engine::Error,
// naming `what`, when the memory is not there.
void* allocate(std::size_t bytes, const char* what);

}  // namespace engine::memory
