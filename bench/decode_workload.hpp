// The decoding workload: a GPT-2-small-shaped decoder-only language model (12 pre-LN layers,
// d_model 768, 12 heads, d_ff 3072, GELU, vocabulary 50257, output tied to the embedding, as
// GPT-2) with random weights drawn like PyTorch's defaults (Linear: U(±1/sqrt(fan_in)); LayerNorm
// 1 and 0), from a fixed seed.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/generation.hpp"

namespace engine::bench {

inline ModelConfig gpt2_small_config(std::int64_t max_len) {
  ModelConfig c;
  c.architecture = Architecture::encoder;
  c.layer.d_model = 768;
  c.layer.heads = 12;
  c.layer.d_ff = 3072;
  c.layer.activation = Activation::gelu_erf;
  c.layer.norm_first = true;
  c.num_encoder_layers = 12;
  c.encoder_norm = true;
  c.positional = PositionalConfig{PositionalLayout::interleaved, max_len, 0};
  c.lm = LanguageModelHead{50257, true, true};
  return c;
}

// Builds the model; the random weights live only while it is built (the model keeps packed copies).
inline std::unique_ptr<Model> make_gpt2_small(std::int64_t max_len) {
  const ModelConfig config = gpt2_small_config(max_len);
  std::uint64_t state = 0x9E3779B97F4A7C15ull;  // xorshift64*: fast enough for 124 M weights
  const auto uniform = [&state](float bound) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    const std::uint64_t r = state * 0x2545F4914F6CDD1Dull;
    return bound * (2.0f * static_cast<float>(r >> 40) / static_cast<float>(1ull << 24) - 1.0f);
  };
  std::map<std::string, std::vector<float>> weights;
  for (const auto& [name, shape] : config.expected_tensors()) {
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    std::vector<float>& w = weights[name];
    w.resize(static_cast<std::size_t>(n));
    const bool norm = name.find("norm") != std::string::npos;
    const float bound = 1.0f / std::sqrt(static_cast<float>(shape.back()));
    if (norm)
      std::fill(w.begin(), w.end(), name.ends_with(".weight") ? 1.0f : 0.0f);
    else
      for (float& x : w) x = uniform(bound);
  }
  return std::make_unique<Model>(config, [&](const std::string& name, const std::vector<std::int64_t>&) {
    return weights.at(name).data();
  });
}

// Bytes a decode step must read at least: every weight once (float32) plus each sequence's cached
// keys and values.
inline double decode_step_bytes(const ModelConfig& c, std::int64_t batch, std::int64_t context) {
  const double d = static_cast<double>(c.layer.d_model), ff = static_cast<double>(c.layer.d_ff);
  const double layers = static_cast<double>(c.num_encoder_layers);
  const double layer_params = 4 * d * d + 2 * d * ff + 4 * d + ff + d + 4 * d;
  const double head = static_cast<double>(c.lm->vocab) * (d + 1);
  const double kv = 2.0 * layers * static_cast<double>(batch * context) * d;
  return 4.0 * (layers * layer_params + head + kv);
}

}  // namespace engine::bench
