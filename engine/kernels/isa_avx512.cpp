// AVX-512 instantiation of the kernels (compiled with -mavx512f/bw/dq/vl/cd -mfma).
// GEMM tile 6 x 64: 24 zmm accumulators, 4 B vectors and 6 broadcasts per k step. KC 256 makes a
// 64 KiB B panel (streamed from L2, the next one prefetched); MC 192 keeps 192 KiB of packed A in
// the 1 MiB L2. Prepacked weights take 768-row K blocks (ops/gemm.cpp). Other tiles measured in the
// layer GEMMs: 12 x 32 and 8 x 48 slower, 4 x 96 and 5 x 80 no faster (engine/kernels/README.md).
#include "engine/kernels/kernels_impl.hpp"

namespace engine::kernels {
const KernelTable& avx512_table() {
  static const KernelTable table =
      make_table<xsimd::avx512bw, 6, 4>(Isa::avx512, "f32_gemm_6x64__avx512", 256, 192, 512);
  return table;
}
}  // namespace engine::kernels
