// Loads a model directory: config.json (schema in the README) and model.safetensors, whose tensor
// names are the PyTorch module's state_dict() names. Everything is validated before use: the
// config's fields and their consistency, then every expected tensor present with the shape the
// config implies, and no unexpected tensor. The returned Model owns packed copies of the weights,
// so the file is closed when this returns.
#pragma once

#include <string>

#include "engine/model.hpp"

namespace engine::loader {

// Parses and validates a config.json (the text itself; `origin` names it in errors).
ModelConfig parse_config(const std::string& json_text, const std::string& origin = "config.json");

// Reads dir/config.json and dir/model.safetensors.
Model load_model(const std::string& dir);

}  // namespace engine::loader
