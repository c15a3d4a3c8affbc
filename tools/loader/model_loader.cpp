#include "model_loader.hpp"

#include <deque>
#include <fstream>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include "engine/error.hpp"
#include "safetensors.hpp"
#include "strict_json.hpp"

namespace engine::loader {
namespace {

using nlohmann::json;

const json& field(const json& j, const std::string& origin, const char* name) {
  if (!j.contains(name)) fail(origin, ": missing field '", name, "'");
  return j.at(name);
}

std::int64_t integer(const json& j, const std::string& origin, const char* name) {
  const json& v = field(j, origin, name);
  if (!v.is_number_integer()) fail(origin, ": field '", name, "' must be an integer, got ", v.dump());
  return v.get<std::int64_t>();
}

std::int64_t integer_or(const json& j, const std::string& origin, const char* name, std::int64_t fallback) {
  return j.contains(name) ? integer(j, origin, name) : fallback;
}

bool boolean_or(const json& j, const std::string& origin, const char* name, bool fallback) {
  if (!j.contains(name)) return fallback;
  if (!j.at(name).is_boolean()) fail(origin, ": field '", name, "' must be true or false, got ", j.at(name).dump());
  return j.at(name).get<bool>();
}

std::string text(const json& j, const std::string& origin, const char* name) {
  const json& v = field(j, origin, name);
  if (!v.is_string()) fail(origin, ": field '", name, "' must be a string, got ", v.dump());
  return v.get<std::string>();
}

}  // namespace

ModelConfig parse_config(const std::string& json_text, const std::string& origin) {
  const json j = parse_strict_json(json_text.data(), json_text.data() + json_text.size(), origin, "file");
  if (!j.is_object()) fail(origin, ": must be a JSON object");
  if (text(j, origin, "format") != "engine-transformer")
    fail(origin, ": field 'format' must be \"engine-transformer\", got ", j.at("format").dump());
  if (integer(j, origin, "version") != 1) fail(origin, ": field 'version' must be 1, got ", j.at("version").dump());
  static const std::set<std::string> known = {
      "format", "version", "architecture", "d_model", "heads", "d_ff", "activation", "norm_first",
      "layer_norm_eps", "num_encoder_layers", "num_decoder_layers", "encoder_norm", "decoder_norm",
      "positional_encoding", "batch_first", "source", "lm"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key())) fail(origin, ": unknown field '", it.key(), "'");

  ModelConfig c;
  const std::string arch = text(j, origin, "architecture");
  if (arch == "encoder_layer") c.architecture = Architecture::encoder_layer;
  else if (arch == "encoder") c.architecture = Architecture::encoder;
  else if (arch == "decoder_layer") c.architecture = Architecture::decoder_layer;
  else if (arch == "decoder") c.architecture = Architecture::decoder;
  else if (arch == "transformer") c.architecture = Architecture::transformer;
  else fail(origin, ": field 'architecture' must be encoder_layer, encoder, decoder_layer, decoder or transformer, got \"", arch, "\"");
  c.layer.d_model = integer(j, origin, "d_model");
  c.layer.heads = integer(j, origin, "heads");
  c.layer.d_ff = integer(j, origin, "d_ff");
  const std::string act = text(j, origin, "activation");
  if (act == "relu") c.layer.activation = Activation::relu;
  else if (act == "gelu") c.layer.activation = Activation::gelu_erf;
  else fail(origin, ": field 'activation' must be \"relu\" or \"gelu\", got \"", act, "\"");
  c.layer.norm_first = boolean_or(j, origin, "norm_first", false);
  if (j.contains("layer_norm_eps")) {
    if (!j.at("layer_norm_eps").is_number()) fail(origin, ": field 'layer_norm_eps' must be a number");
    c.layer.layer_norm_eps = j.at("layer_norm_eps").get<float>();
  }
  c.num_encoder_layers = integer_or(j, origin, "num_encoder_layers", 0);
  c.num_decoder_layers = integer_or(j, origin, "num_decoder_layers", 0);
  c.encoder_norm = boolean_or(j, origin, "encoder_norm", false);
  c.decoder_norm = boolean_or(j, origin, "decoder_norm", false);
  if (j.contains("positional_encoding") && !j.at("positional_encoding").is_null()) {
    const json& p = j.at("positional_encoding");
    const std::string where = origin + ": positional_encoding";
    if (!p.is_object()) fail(where, " must be an object or null");
    if (text(p, where, "type") != "sinusoidal") fail(where, ": field 'type' must be \"sinusoidal\"");
    PositionalConfig pc;
    const std::string layout = p.contains("layout") ? text(p, where, "layout") : "interleaved";
    if (layout == "interleaved") pc.layout = PositionalLayout::interleaved;
    else if (layout == "concat") pc.layout = PositionalLayout::concatenated;
    else fail(where, ": field 'layout' must be \"interleaved\" or \"concat\", got \"", layout, "\"");
    pc.max_len = integer(p, where, "max_len");
    pc.first_position = integer_or(p, where, "first_position", 0);
    c.positional = pc;
  }
  if (j.contains("lm") && !j.at("lm").is_null()) {
    const json& l = j.at("lm");
    const std::string where = origin + ": lm";
    if (!l.is_object()) fail(where, " must be an object or null");
    for (auto it = l.begin(); it != l.end(); ++it)
      if (it.key() != "vocab" && it.key() != "scale_embedding" && it.key() != "tie_weights")
        fail(where, ": unknown field '", it.key(), "'");
    LanguageModelHead head;
    head.vocab = integer(l, where, "vocab");
    head.scale_embedding = boolean_or(l, where, "scale_embedding", true);
    head.tie_weights = boolean_or(l, where, "tie_weights", false);
    c.lm = head;
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  return c;
}

Model load_model(const std::string& dir, const LoadOptions& options) {
  const std::string config_path = dir + "/config.json";
  std::error_code ec;
  const auto config_bytes = std::filesystem::file_size(config_path, ec);
  if (ec) fail(config_path, ": cannot open (is '", dir, "' a model directory?)");
  if (config_bytes > kMaxConfigBytes)
    fail(config_path, ": file is ", config_bytes, " bytes, more than the ", kMaxConfigBytes, " a config may have");
  std::ifstream in(config_path);
  if (!in) fail(config_path, ": cannot open (is '", dir, "' a model directory?)");
  std::stringstream text_stream;
  text_stream << in.rdbuf();
  (void)parse_config(text_stream.str(), config_path);  // a broken config is reported before the weights are opened
  const SafetensorsFile weights(dir + "/model.safetensors");
  return load_model(text_stream.str(), config_path, weights, options);
}

Model load_model(const std::string& config_text, const std::string& config_origin, const SafetensorsFile& file,
                 const LoadOptions& options) {
  const ModelConfig config = parse_config(config_text, config_origin);
  const auto expected = config.expected_tensors();
  std::set<std::string> wanted;
  for (const auto& [name, shape] : expected) {
    wanted.insert(name);
    if (!file.has(name))
      fail(file.path(), ": missing tensor '", name, "' (", architecture_name(config.architecture), " with ",
           "d_model ", config.layer.d_model, " expects shape ", shape_string(shape), ")");
  }
  for (const auto& [name, info] : file.tensors())
    if (!wanted.count(name))
      fail(file.path(), ": unexpected tensor '", name, "' (not part of a ", architecture_name(config.architecture),
           " with this config)");
  std::deque<std::vector<float>> converted;  // F16 / BF16 tensors, alive (and not moved) while the model is built
  return Model(config, [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    converted.emplace_back();
    const float* data = file.floats(name, shape, converted.back());
    if (options.check_finite) {
      const std::int64_t n = file.info(name).numel();
      for (std::int64_t i = 0; i < n; ++i)
        if (!std::isfinite(data[i]))
          fail(file.path(), ": tensor '", name, "' element ", i, " is ", data[i], " (check_finite is on)");
    }
    return data;
  });
}

}  // namespace engine::loader
