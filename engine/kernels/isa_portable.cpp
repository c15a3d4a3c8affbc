// Portable instantiation of the kernels: the x86-64 baseline (SSE2), no extra flags, so it runs on
// every x86-64 CPU. GEMM tile 6 x 8: 12 xmm accumulators.
#include "engine/kernels/kernels_impl.hpp"

namespace engine::kernels {
const KernelTable& portable_table() {
  static const KernelTable table =
      make_table<xsimd::sse2, 6, 2>(Isa::portable, "f32_gemm_6x8__sse2", 256, 96, 512);
  return table;
}
}  // namespace engine::kernels
