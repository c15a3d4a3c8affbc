// Loads a model directory: config.json (schema in the README) and model.safetensors, whose tensor
// names are the PyTorch module's state_dict() names. Everything is validated before use: the
// config's fields and their consistency, then every expected tensor present with the shape the
// config implies, and no unexpected tensor. The returned Model owns packed copies of the weights,
// so the file is closed when this returns.
#pragma once

#include <cstddef>
#include <string>

#include "engine/model.hpp"

namespace engine::loader {

class SafetensorsFile;

struct LoadOptions {
  // Scan every weight for NaN and ±Inf and refuse the model, naming the tensor and the element.
  // Off by default: the scan reads every byte once more, and without it a NaN weight simply
  // propagates to the outputs it touches (the engine never masks it).
  bool check_finite = false;
};

// config.json is read whole; a larger file is refused before reading it.
constexpr std::size_t kMaxConfigBytes = 1u << 20;

// Parses and validates a config.json (the text itself; `origin` names it in errors).
ModelConfig parse_config(const std::string& json_text, const std::string& origin = "config.json");

// Reads dir/config.json and dir/model.safetensors.
Model load_model(const std::string& dir, const LoadOptions& options = {});

// The same from a config's text and an opened weight file (what load_model does after reading).
Model load_model(const std::string& config_text, const std::string& config_origin, const SafetensorsFile& weights,
                 const LoadOptions& options = {});

}  // namespace engine::loader
