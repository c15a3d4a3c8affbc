// Incremental decoding against two references: PyTorch (tools/lm_reference.py's TransformerModel,
// greedy for 50 steps by full recomputation, fixtures from tools/make_lm_fixtures.py) and the
// engine's own full recomputation of every sequence at every step. Both model shapes, pre- and
// post-LN, tied and untied heads, scaled and unscaled embeddings; the two prompts of a batch have
// different lengths (and, for encoder-decoder models, different source lengths).
//
// Tolerances: logits within 1e-4 of PyTorch's (|logits| reach ~30 here, after up to 4 layers and a
// vocabulary projection); cached vs recomputed logits within 1e-5 relative to max(1, |logit|).
// Token ids must be equal: the fixtures record each step's margin between the best two logits
// (at least 8e-4 here), far above either tolerance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/generation.hpp"
#include "fixture_reader.hpp"
#include "model_loader.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

using i64 = std::int64_t;
using Ids = std::vector<std::int32_t>;
const std::string kLm = std::string(ENGINE_FIXTURES_DIR) + "/lm/";

Ids ids_of(Fixture& f, const std::string& name) {
  Ids out;
  for (float v : f.floats(name)) out.push_back(static_cast<std::int32_t>(v));
  return out;
}

struct Case {
  Fixture fixture;
  bool encoder_decoder;
  std::vector<Ids> prompts, sources, generated;
  explicit Case(const std::string& name) : fixture(kLm + name) {
    encoder_decoder = fixture.flag("encoder_decoder");
    for (i64 i = 0; i < fixture.integer("prompts"); ++i) {
      prompts.push_back(ids_of(fixture, "prompt" + std::to_string(i)));
      generated.push_back(ids_of(fixture, "generated" + std::to_string(i)));
      if (encoder_decoder) sources.push_back(ids_of(fixture, "source" + std::to_string(i)));
    }
  }
};

std::int32_t argmax(std::span<const float> row) {
  return static_cast<std::int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

// The engine without a cache: the whole sequence (source) run from scratch; the last position's logits.
std::vector<float> recompute(const Model& model, const Ids& ids, const Ids& source) {
  const i64 d = model.d_model(), T = static_cast<i64>(ids.size());
  const bool encoder_decoder = model.config().architecture == Architecture::transformer;
  std::vector<float> x(static_cast<std::size_t>(T * d));
  std::vector<float> ws(model.workspace_floats(1, encoder_decoder ? static_cast<i64>(source.size()) : T, T));
  model.embed(ids.data(), 1, T, nullptr, x.data());
  AttentionMask causal;
  causal.causal = true;
  if (encoder_decoder) {
    const i64 S = static_cast<i64>(source.size());
    std::vector<float> memory(static_cast<std::size_t>(S * d));
    model.embed(source.data(), 1, S, nullptr, memory.data());
    model.encode(memory.data(), 1, S, {}, ws.data());
    model.decode(x.data(), memory.data(), 1, T, S, causal, {}, ws.data());
  } else {
    model.encode(x.data(), 1, T, causal, ws.data());
  }
  std::vector<float> logits(static_cast<std::size_t>(model.vocab()));
  model.project_logits(x.data() + (T - 1) * d, 1, logits.data());
  return logits;
}

class LanguageModel : public ::testing::TestWithParam<std::string> {};

TEST_P(LanguageModel, GreedyMatchesPyTorchAndTheCacheMatchesRecomputation) {
  Case c(GetParam());
  const i64 steps = c.fixture.integer("steps");
  for (Isa isa : test_isas()) {
    SCOPED_TRACE(isa_name(isa));
    IsaScope scope(isa);
    const Model model = loader::load_model(kLm + GetParam());
    const i64 V = model.vocab();
    Generator gen(model, 2, 96, 16);
    std::vector<Ids> sequences = c.prompts;  // prompt + generated so far, per sequence
    std::span<const float> logits = gen.prefill(c.prompts, c.sources);
    for (i64 step = 0; step < steps; ++step) {
      Ids next;
      for (std::size_t b = 0; b < c.prompts.size(); ++b) {
        SCOPED_TRACE("sequence " + std::to_string(b) + ", step " + std::to_string(step));
        const auto row = logits.subspan(b * static_cast<std::size_t>(V), static_cast<std::size_t>(V));
        const float* torch_row = c.fixture.floats("logits" + std::to_string(b)).data() + step * V;
        for (i64 v = 0; v < V; ++v) ASSERT_NEAR(row[static_cast<std::size_t>(v)], torch_row[v], 1e-4) << "logit " << v;
        const std::vector<float> full = recompute(model, sequences[b], c.encoder_decoder ? c.sources[b] : Ids{});
        for (i64 v = 0; v < V; ++v)
          ASSERT_NEAR(row[static_cast<std::size_t>(v)], full[static_cast<std::size_t>(v)],
                      1e-5 * std::max(1.0f, std::fabs(full[static_cast<std::size_t>(v)])))
              << "cached vs recomputed, logit " << v;
        next.push_back(argmax(row));
        ASSERT_EQ(next.back(), c.generated[b][static_cast<std::size_t>(step)]);
        sequences[b].push_back(next.back());
      }
      if (step + 1 < steps) logits = gen.step(next);
    }
    for (std::size_t b = 0; b < c.prompts.size(); ++b)
      EXPECT_EQ(gen.lengths()[b], static_cast<std::int32_t>(c.prompts[b].size() + steps - 1));
    // generate() is the same loop: the same ids.
    EXPECT_EQ(gen.generate(c.prompts, steps, -1, c.sources), c.generated);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LanguageModel,
                         ::testing::Values("gpt_post_relu", "gpt_pre_gelu_tied", "seq2seq_post_relu",
                                           "seq2seq_pre_gelu_unscaled"));

TEST(Generator, StopsAtEndOfSequence) {
  Case c("gpt_post_relu");
  const Model model = loader::load_model(kLm + "gpt_post_relu");
  Generator gen(model, 2, 96);
  // Sequence 0's 5th generated token as the eos id: sequence 0 stops there (eos included), the
  // other runs on to max_new unless it meets the same id first.
  const std::int32_t eos = c.generated[0][4];
  const auto out = gen.generate(c.prompts, 20, eos);
  const auto first_eos = std::find(c.generated[0].begin(), c.generated[0].end(), eos) - c.generated[0].begin();
  EXPECT_EQ(out[0], Ids(c.generated[0].begin(), c.generated[0].begin() + first_eos + 1));
  const auto other_eos = std::find(c.generated[1].begin(), c.generated[1].begin() + 20, eos) - c.generated[1].begin();
  const auto other_len = std::min<std::ptrdiff_t>(20, other_eos + 1);
  EXPECT_EQ(out[1], Ids(c.generated[1].begin(), c.generated[1].begin() + other_len));
}

TEST(Generator, BadInputGetsClearErrors) {
  const Model gpt = loader::load_model(kLm + "gpt_post_relu");
  const Model seq2seq = loader::load_model(kLm + "seq2seq_post_relu");
  Generator gen(gpt, 2, 8);
  expect_error([&] { (void)gen.step(Ids{1}); }, "no batch; call prefill first");
  expect_error([&] { (void)gen.prefill({{1, 2}, {}}); }, "prompt 1 is empty");
  expect_error([&] { (void)gen.prefill({{1, 48}}); }, "prompt 0 token 1 is id 48, outside the vocabulary [0, 48)");
  expect_error([&] { (void)gen.prefill({{1}, {2}, {3}}); }, "got 3 prompts, expected 1 to 2");
  expect_error([&] { (void)gen.prefill({Ids(9, 1)}); }, "prompt 0 has 9 tokens, more than max_len 8");
  expect_error([&] { (void)gen.prefill({{1}}, {{2}}); }, "a decoder-only model takes no sources");
  (void)gen.prefill({Ids(6, 1), {2}});
  expect_error([&] { (void)gen.step(Ids{1}); }, "got 1 tokens for a batch of 2");
  expect_error([&] { (void)gen.step(Ids{1, -1}); }, "token 1 is id -1, outside the vocabulary");
  (void)gen.step(Ids{1, 1});
  (void)gen.step(Ids{1, 1});
  // Sequence 0 now holds 8 tokens: the cache is full.
  expect_error([&] { (void)gen.step(Ids{1, 1}); }, "sequence 0 already holds 8 tokens; one more would outgrow the cache of max_len 8");
  expect_error([&] { (void)gen.generate({Ids(5, 1)}, 5); }, "with max_new 5 it would outgrow the cache of max_len 8");
  expect_error([&] { Generator g(gpt, 1, 97); }, "max_len must be in [1, 96]");
  expect_error([&] { Generator g(gpt, 1, 8, 0, {.memory_limit_bytes = 1024}); }, "over the memory limit of 1024 bytes");
  Generator s2s(seq2seq, 1, 8, 4);
  expect_error([&] { (void)s2s.prefill({{1}}); }, "needs one source per prompt, got 0 sources for 1 prompts");
  expect_error([&] { (void)s2s.prefill({{1}}, {{1, 2, 3, 4, 5}}); }, "source 0 has 5 tokens, more than max_src_len 4");
  expect_error([&] { (void)s2s.prefill({{1}}, {{}}); }, "source 0 is empty");
  expect_error([&] { Generator g(seq2seq, 1, 8); }, "needs max_src_len in [1, 96]");
  const Model plain = loader::load_model(std::string(ENGINE_FIXTURES_DIR) + "/models/encoder_layer_post_relu");
  expect_error([&] { Generator g(plain, 1, 8); }, "not a language model");
}

}  // namespace
}  // namespace engine::test
