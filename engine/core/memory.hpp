// Memory for large, long-lived buffers: the arena, packed weights, GEMM scratch.
#pragma once

#include <cstddef>

namespace engine::memory {

inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

// `bytes` aligned to 64 bytes (0 gives a 64-byte block); from 2 MiB up, aligned to 2 MiB, and the
// whole 2 MiB pages inside it are advised as transparent huge pages. A partial last one stays in
// 4 KiB pages: this function rounds nothing up into the resident set (the arena rounds its own size
// up to whole huge pages). Release with std::free. Fails with engine::Error, naming `what`, when
// the memory is not there.
void* allocate(std::size_t bytes, const char* what);

}  // namespace engine::memory
