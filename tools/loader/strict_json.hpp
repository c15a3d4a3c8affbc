// JSON as the loader reads it: nlohmann's parser (which rejects invalid UTF-8), plus a rule it
// lacks: a key that appears twice in one object is an error. nlohmann would keep the last one
// silently, and a weight file whose header names a tensor twice is ambiguous, so we refuse it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace engine::loader {

// Parses [begin, end); errors are engine::Error starting with `origin`, then `what` ("header",
// "config") and the parser's message or the duplicated key.
nlohmann::json parse_strict_json(const char* begin, const char* end, const std::string& origin, const char* what);

}  // namespace engine::loader
