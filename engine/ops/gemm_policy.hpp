// Internal knobs of the GEMM op, for tests and tuning.
#pragma once

namespace engine::ops {

// Whether GEMM packs A into MR-row panels. automatic: when reading A in place would put the MR
// rows of a tile into too few cache sets (lda a multiple of a large power of two) and enough B
// panels share the packed block to pay for it. always / never force one path (tests run both).
enum class PackAPolicy { automatic, always, never };
void set_gemm_pack_a_policy(PackAPolicy policy);
PackAPolicy gemm_pack_a_policy();

}  // namespace engine::ops
