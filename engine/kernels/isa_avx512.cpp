// AVX-512 instantiation of the kernels (compiled with -mavx512f/bw/dq/vl/cd -mfma).
// GEMM tile 12 x 32: 24 zmm accumulators, 2 B vectors and a broadcast per k step (MLAS's shape).
// KC 256 keeps a 32 KiB B panel in the 48 KiB L1; MC 192 keeps 192 KiB of packed A in L2.
#include "engine/kernels/kernels_impl.hpp"

namespace engine::kernels {
const KernelTable& avx512_table() {
  static const KernelTable table =
      make_table<xsimd::avx512bw, 6, 4>(Isa::avx512, "f32_gemm_6x64__avx512", 256, 192, 512);
  return table;
}
}  // namespace engine::kernels
