// MultiheadAttention against PyTorch's nn.MultiheadAttention (torch 1.13, eval), from the golden
// fixtures that tools/make_mha_fixtures.py writes into tests/fixtures/mha.
//
// Tolerance: |got - torch| <= max(1e-5, 1e-5·|torch|). Rows that torch returns as NaN (every key
// masked: torch 1.13's behaviour) have a zero attention output here, the engine's definition, so the
// layer returns exactly out_proj(0) = out_proj.bias for them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/attention.hpp"
#include "fixture_reader.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

using i64 = std::int64_t;
const std::string kFixtures = std::string(ENGINE_FIXTURES_DIR) + "/mha/";

class MultiheadAttentionVsTorch : public ::testing::TestWithParam<std::string> {};

TEST_P(MultiheadAttentionVsTorch, MatchesFixture) {
  Fixture f(kFixtures + GetParam());
  const i64 d = f.integer("d_model"), H = f.integer("heads"), B = f.integer("batch");
  const i64 Sq = f.integer("q_len"), Sk = f.integer("kv_len");
  const bool self = f.text("kind") == "self", bias = f.flag("bias");
  ASSERT_EQ(f.floats("in_proj_weight").size(), static_cast<std::size_t>(3 * d * d));
  const std::vector<float>& expected = f.floats("expected");
  ASSERT_EQ(expected.size(), static_cast<std::size_t>(B * Sq * d));
  AttentionMask mask;
  if (f.flag("key_padding_mask")) mask.key_padding = f.bools("key_padding_mask");
  if (f.text("attn_mask") == "float") mask.attn_bias = f.floats("attn_mask");
  if (f.text("attn_mask") == "bool") mask.attn_mask = f.bools("attn_mask");
  const float* query = f.ptr("query");
  const float* memory = self ? nullptr : f.ptr("memory");
  const float* out_b = bias ? f.ptr("out_proj_bias") : nullptr;

  const MultiheadAttentionWeights w{f.ptr("in_proj_weight"), bias ? f.ptr("in_proj_bias") : nullptr,
                                    f.ptr("out_proj_weight"), out_b};
  for (Isa isa : test_isas())
    for (AttentionPath path : {AttentionPath::materialized, AttentionPath::fused}) {
      IsaScope scope(isa);
      const MultiheadAttention mha(self ? MultiheadAttention::Kind::self_attention
                                        : MultiheadAttention::Kind::cross_attention,
                                   d, H, w);
      std::vector<float> workspace(mha.workspace_floats(B, Sq, Sk)), out(static_cast<std::size_t>(B * Sq * d));
      mha.forward(query, memory, B, Sq, Sk, mask, out.data(), workspace.data(), path);
      for (std::size_t i = 0; i < out.size(); ++i) {
        const std::string where = GetParam() + " on " + isa_name(isa) +
                                  (path == AttentionPath::fused ? " fused" : " materialized") + ", element " +
                                  std::to_string(i);
        if (std::isnan(expected[i])) {
          // The attention of a fully masked row is zeros, so the layer's output is out_proj(0): the bias.
          const float want = bias ? out_b[i % static_cast<std::size_t>(d)] : 0.0f;
          ASSERT_EQ(out[i], want) << where << ": torch gives NaN for a fully masked row, the engine out_proj(0)";
        } else {
          ASSERT_NEAR(out[i], expected[i], std::max(1e-5, 1e-5 * std::fabs(expected[i]))) << where;
        }
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Torch, MultiheadAttentionVsTorch,
                         ::testing::Values("self_plain", "self_key_padding", "self_causal", "self_causal_key_padding",
                                           "self_bool_mask", "self_no_bias", "cross_plain", "cross_key_padding"));

TEST(MultiheadAttentionErrors, BadConfigurationNamesTheProblem) {
  std::vector<float> w(3 * 48 * 48, 0.0f), o(48 * 48, 0.0f);
  const MultiheadAttentionWeights weights{w.data(), nullptr, o.data(), nullptr};
  expect_error([&] { MultiheadAttention(MultiheadAttention::Kind::self_attention, 48, 5, weights); },
               "must be divisible by the number of heads (5)");
  expect_error([&] { MultiheadAttention(MultiheadAttention::Kind::self_attention, 48, 3, {}); }, "in_proj_weight");
  const MultiheadAttention self(MultiheadAttention::Kind::self_attention, 48, 3, weights);
  std::vector<float> x(2 * 5 * 48), out(x.size()), ws(self.workspace_floats(2, 5, 5));
  expect_error([&] { self.forward(x.data(), nullptr, 2, 5, 6, {}, out.data(), ws.data()); }, "kv_len == q_len");
  expect_error([&] { self.forward(x.data(), x.data(), 2, 5, 5, {}, out.data(), ws.data()); }, "no memory");
}

}  // namespace
}  // namespace engine::test
