#include "engine/engine.hpp"

namespace engine {
const char* version() { return "0.1.0"; }
}  // namespace engine
