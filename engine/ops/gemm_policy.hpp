// Internal knobs of the GEMM op, for tests and tuning.
#pragma once

namespace engine::ops {

// Whether GEMM packs A into MR-row panels. automatic: when reading A in place would put the MR
// rows of a tile into too few cache sets (lda a multiple of a large power of two) and enough B
// panels share the packed block to pay for it. always / never force one path (tests run both).
enum class PackAPolicy { automatic, always, never };
void set_gemm_pack_a_policy(PackAPolicy policy);
PackAPolicy gemm_pack_a_policy();

// Whether a plain (not prepacked) GEMM packs B per call. automatic: read B in place when it is not
// transposed, N is a multiple of NR and M <= 256; never: read in place whenever possible (tests);
// always: always pack.
enum class PackBPolicy { automatic, always, never };
void set_gemm_pack_b_policy(PackBPolicy policy);

}  // namespace engine::ops
