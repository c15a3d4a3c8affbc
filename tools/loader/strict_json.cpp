#include "strict_json.hpp"

#include <set>
#include <vector>

#include "engine/error.hpp"

namespace engine::loader {
namespace {
constexpr int kMaxJsonDepth = 64;  // objects and arrays nested deeper are an error
}

nlohmann::json parse_strict_json(const char* begin, const char* end, const std::string& origin, const char* what) {
  using nlohmann::json;
  std::vector<std::set<std::string>> keys_per_open_object;
  std::string duplicate;
  const json::parser_callback_t track_keys = [&](int depth, json::parse_event_t event, json& parsed) {
    // nlohmann parses and destroys without recursion but prints recursively (dump(), in our error
    // messages): a few hundred thousand levels, which fit in a config under kMaxConfigBytes,
    // overflowed the stack. Neither a header nor a config nests more than 3 levels.
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth)
      fail(origin, ": ", what, " nests objects and arrays deeper than ", kMaxJsonDepth, " levels");
    if (event == json::parse_event_t::object_start) {
      keys_per_open_object.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      keys_per_open_object.pop_back();
    } else if (event == json::parse_event_t::key && duplicate.empty() &&
               !keys_per_open_object.back().insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json parsed;
  try {
    parsed = json::parse(begin, end, track_keys);
  } catch (const json::exception& e) {
    fail(origin, ": ", what, " is not valid JSON (", e.what(), ")");
  }
  if (!duplicate.empty()) fail(origin, ": ", what, " names '", duplicate, "' twice in one object");
  return parsed;
}

}  // namespace engine::loader
