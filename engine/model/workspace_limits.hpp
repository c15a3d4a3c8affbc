// The limits a Session and a Generator put on what they are asked to size, before allocating.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/model.hpp"

namespace engine::model_limits {

// batch x length above 2^31 tokens is refused: it keeps every workspace product far from overflow.
void check_tokens(const char* who, std::int64_t batch, const char* length_name, std::int64_t length);

// A plan of `bytes` over options.memory_limit_bytes (the machine's physical memory when 0) is
// refused; `what` says what the plan is for.
void check_bytes(const char* who, const std::string& what, std::size_t bytes, const SessionOptions& options);

}  // namespace engine::model_limits
