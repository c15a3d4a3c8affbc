// The determinism promise: a model's outputs are the same bits for 1, 2 and 3 threads, on every
// instruction set. The exported fixtures check it too, but they are small enough that their GEMMs
// run on one thread; this model is large enough that every GEMM, attention and norm is split
// across threads (and unevenly at 3), with every kind of mask.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/model.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

using i64 = std::int64_t;

TEST(Determinism, TransformerGivesTheSameBitsForOneTwoAndThreeThreads) {
  ModelConfig config;
  config.architecture = Architecture::transformer;
  config.layer.d_model = 128;
  config.layer.heads = 4;
  config.layer.d_ff = 512;
  config.layer.activation = Activation::gelu_erf;
  config.num_encoder_layers = 2;
  config.num_decoder_layers = 2;
  config.encoder_norm = config.decoder_norm = true;
  config.positional = PositionalConfig{};

  // Weights: N(0, 0.1), LayerNorm gammas around 1, from a fixed seed.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  std::map<std::string, std::vector<float>> weights;
  for (const auto& [name, shape] : config.expected_tensors()) {
    i64 n = 1;
    for (i64 d : shape) n *= d;
    auto& w = weights[name];
    w.resize(static_cast<std::size_t>(n));
    const bool gamma = name.find("norm") != std::string::npos && name.ends_with(".weight");
    for (float& x : w) x = (gamma ? 1.0f : 0.0f) + normal(rng);
  }
  const auto source = [&](const std::string& name, const std::vector<i64>&) { return weights.at(name).data(); };

  const i64 B = 3, Ss = 70, St = 45, d = config.layer.d_model;
  std::vector<float> src(static_cast<std::size_t>(B * Ss * d)), tgt(static_cast<std::size_t>(B * St * d));
  std::normal_distribution<float> unit(0.0f, 1.0f);
  for (float& x : src) x = unit(rng);
  for (float& x : tgt) x = unit(rng);
  std::vector<std::int32_t> src_lengths = {70, 33, 1};
  std::unique_ptr<bool[]> memory_padding(new bool[static_cast<std::size_t>(B * Ss)]());
  for (i64 j = 50; j < Ss; ++j) memory_padding[static_cast<std::size_t>(Ss + j)] = true;
  AttentionMask src_mask, tgt_mask, memory_mask;
  src_mask.valid_lengths = src_lengths;
  tgt_mask.causal = true;
  memory_mask.key_padding = {memory_padding.get(), static_cast<std::size_t>(B * Ss)};

  ThreadGuard threads;
  for (Isa isa : test_isas()) {
    IsaScope scope(isa);
    const Model model(config, source);
    Session session(model, B, Ss, St);
    std::vector<float> first;
    for (int t : {1, 2, 3}) {
      SCOPED_TRACE(std::string(isa_name(isa)) + ", " + std::to_string(t) + " threads");
      set_num_threads(t);
      std::vector<float> memory = src, out = tgt;
      session.encode(memory.data(), B, Ss, src_mask);
      session.decode(out.data(), memory.data(), B, St, Ss, tgt_mask, memory_mask);
      for (float x : out) ASSERT_TRUE(std::isfinite(x));
      if (t == 1) {
        first = out;
        continue;
      }
      std::size_t differing = 0;
      for (std::size_t i = 0; i < out.size(); ++i) differing += std::memcmp(&out[i], &first[i], sizeof(float)) != 0;
      EXPECT_EQ(differing, 0u) << "elements differing from the 1-thread output";
    }
  }
}

}  // namespace
}  // namespace engine::test
