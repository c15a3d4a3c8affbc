// Internal knobs of the GEMM op, for tests and tuning.
#pragma once

#include <cstdint>

namespace engine::ops {

// A is packed when op(B) spans at least this many NR-column panels (default 4; the environment
// variable ENGINE_GEMM_PACK_A_MIN_PANELS sets the default). 1 = always pack; a huge value = never.
void set_gemm_pack_a_min_panels(std::int64_t panels);
std::int64_t gemm_pack_a_min_panels();

}  // namespace engine::ops
