// MultiheadAttention against PyTorch's nn.MultiheadAttention (torch 1.13, eval), from the golden
// fixtures that tools/make_mha_fixtures.py writes into tests/fixtures/mha.
//
// Tolerance: |got - torch| <= max(1e-5, 1e-5·|torch|). Rows that torch returns as NaN (every key
// masked: torch 1.13's behaviour) have a zero attention output here, the engine's definition, so the
// layer returns exactly out_proj(0) = out_proj.bias for them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/attention.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

using i64 = std::int64_t;
const std::string kFixtures = std::string(ENGINE_FIXTURES_DIR) + "/mha/";

template <class T>
std::vector<T> read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot open fixture " + path);
  const std::streamsize bytes = in.tellg();
  in.seekg(0);
  std::vector<T> data(static_cast<std::size_t>(bytes) / sizeof(T));
  in.read(reinterpret_cast<char*>(data.data()), bytes);
  return data;
}

std::map<std::string, std::string> read_meta(const std::string& dir) {
  std::ifstream in(dir + "meta.txt");
  if (!in) throw std::runtime_error("cannot open " + dir + "meta.txt");
  std::map<std::string, std::string> meta;
  for (std::string key, value; in >> key >> value;) meta[key] = value;
  return meta;
}

class MultiheadAttentionVsTorch : public ::testing::TestWithParam<std::string> {};

TEST_P(MultiheadAttentionVsTorch, MatchesFixture) {
  const std::string dir = kFixtures + GetParam() + "/";
  auto meta = read_meta(dir);
  const i64 d = std::stoll(meta["d_model"]), H = std::stoll(meta["heads"]), B = std::stoll(meta["batch"]);
  const i64 Sq = std::stoll(meta["q_len"]), Sk = std::stoll(meta["kv_len"]);
  const bool self = meta["kind"] == "self", bias = meta["bias"] == "1";
  const auto in_w = read_raw<float>(dir + "in_proj_weight.f32"), out_w = read_raw<float>(dir + "out_proj_weight.f32");
  std::vector<float> in_b, out_b;
  if (bias) {
    in_b = read_raw<float>(dir + "in_proj_bias.f32");
    out_b = read_raw<float>(dir + "out_proj_bias.f32");
  }
  ASSERT_EQ(in_w.size(), static_cast<std::size_t>(3 * d * d));
  const auto query = read_raw<float>(dir + "query.f32");
  const auto memory = self ? std::vector<float>{} : read_raw<float>(dir + "memory.f32");
  const auto expected = read_raw<float>(dir + "expected.f32");
  ASSERT_EQ(expected.size(), static_cast<std::size_t>(B * Sq * d));

  AttentionMask mask;
  std::vector<std::uint8_t> kpm_bytes, am_bytes;
  std::unique_ptr<bool[]> kpm, am;
  std::vector<float> am_float;
  if (meta["key_padding_mask"] == "1") {
    kpm_bytes = read_raw<std::uint8_t>(dir + "key_padding_mask.u8");
    kpm.reset(new bool[kpm_bytes.size()]);
    for (std::size_t i = 0; i < kpm_bytes.size(); ++i) kpm[i] = kpm_bytes[i] != 0;
    mask.key_padding = kpm.get();
  }
  if (meta["attn_mask"] == "float") {
    am_float = read_raw<float>(dir + "attn_mask.f32");
    mask.attn_bias = am_float.data();
  } else if (meta["attn_mask"] == "bool") {
    am_bytes = read_raw<std::uint8_t>(dir + "attn_mask.u8");
    am.reset(new bool[am_bytes.size()]);
    for (std::size_t i = 0; i < am_bytes.size(); ++i) am[i] = am_bytes[i] != 0;
    mask.attn_mask = am.get();
  }

  const MultiheadAttentionWeights w{in_w.data(), bias ? in_b.data() : nullptr, out_w.data(),
                                    bias ? out_b.data() : nullptr};
  for (Isa isa : test_isas())
    for (AttentionPath path : {AttentionPath::materialized, AttentionPath::fused}) {
      IsaScope scope(isa);
      const MultiheadAttention mha(self ? MultiheadAttention::Kind::self_attention
                                        : MultiheadAttention::Kind::cross_attention,
                                   d, H, w);
      std::vector<float> workspace(mha.workspace_floats(B, Sq, Sk)), out(static_cast<std::size_t>(B * Sq * d));
      mha.forward(query.data(), self ? nullptr : memory.data(), B, Sq, Sk, mask, out.data(), workspace.data(), path);
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
