// AVX2 + FMA instantiation of the kernels (compiled with -mavx2 -mfma).
// GEMM tile 6 x 16: 12 ymm accumulators, 2 B vectors and a broadcast per k step.
#include "engine/kernels/kernels_impl.hpp"

namespace engine::kernels {
const KernelTable& avx2_table() {
  static const KernelTable table =
      make_table<xsimd::fma3<xsimd::avx2>, 6, 2>(Isa::avx2, "f32_gemm_6x16__avx2", 256, 144, 512);
  return table;
}
}  // namespace engine::kernels
