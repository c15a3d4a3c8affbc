// The umbrella header of the engine library.
#pragma once

#include "engine/arena.hpp"
#include "engine/attention.hpp"
#include "engine/error.hpp"
#include "engine/isa.hpp"
#include "engine/layers.hpp"
#include "engine/model.hpp"
#include "engine/generation.hpp"
#include "engine/ops.hpp"
#include "engine/profile.hpp"
#include "engine/tensor.hpp"

namespace engine {
// The library's version, "major.minor.patch".
const char* version();
}  // namespace engine
