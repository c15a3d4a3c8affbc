// CPU feature detection (internal; the public face is engine/isa.hpp).
#pragma once

#include "engine/isa.hpp"

namespace engine::cpu {

// Parses an ENGINE_MAX_ISA value ("avx512", "avx2", "scalar"/"portable"); throws engine::Error
// naming the variable and the accepted values otherwise.
Isa parse_isa_name(const char* text);

// Number of cores the process may use (sched_getaffinity), at least 1.
int core_count();

}  // namespace engine::cpu
