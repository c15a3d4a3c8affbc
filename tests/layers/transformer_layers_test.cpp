// EncoderLayer and DecoderLayer against PyTorch's nn.TransformerEncoderLayer and
// nn.TransformerDecoderLayer (torch 1.13, eval, batch_first), from the fixtures that
// tools/make_layer_fixtures.py writes into tests/fixtures/layers: both norm orders, ReLU and GELU,
// causal masks, key padding on the source, target and memory, d_model 48 with 3 heads, S 17 and 9;
// stacks of 1 and 3 layers with and without a final norm, and nn.Transformer (2 + 2 layers).
//
// Tolerance: |got - torch| <= 1e-5 absolute (outputs are LayerNorm-scaled, |x| ~ 1-3).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "engine/layers.hpp"
#include "fixture_reader.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

using i64 = std::int64_t;
const std::string kDir = std::string(ENGINE_FIXTURES_DIR) + "/layers/";

MultiheadAttentionWeights mha_weights(Fixture& f, const std::string& prefix) {
  return {f.ptr(prefix + ".in_proj_weight"), f.ptr(prefix + ".in_proj_bias"), f.ptr(prefix + ".out_proj.weight"),
          f.ptr(prefix + ".out_proj.bias")};
}

LayerConfig config_of(Fixture& f) {
  LayerConfig c;
  c.d_model = f.integer("d_model");
  c.heads = f.integer("heads");
  c.d_ff = f.integer("d_ff");
  c.activation = f.text("activation") == "gelu" ? Activation::gelu_erf : Activation::relu;
  c.norm_first = f.flag("norm_first");
  c.layer_norm_eps = f.real("layer_norm_eps");
  return c;
}

void expect_matches(const std::vector<float>& got, const std::vector<float>& want, const std::string& where) {
  ASSERT_EQ(got.size(), want.size()) << where;
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5) << where << ", element " << i;
}

class LayerVsTorch : public ::testing::TestWithParam<std::string> {};

TEST_P(LayerVsTorch, MatchesFixture) {
  Fixture f(kDir + GetParam());
  const LayerConfig config = config_of(f);
  const i64 B = f.integer("batch");
  const std::vector<float>& expected = f.floats("expected");
  for (Isa isa : test_isas())
    for (AttentionPath path : {AttentionPath::materialized, AttentionPath::fused}) {
      IsaScope scope(isa);
      const std::string where = GetParam() + " on " + isa_name(isa) + (path == AttentionPath::fused ? " fused" : "");
      if (f.text("kind") == "encoder") {
        const EncoderLayer layer(config, {mha_weights(f, "self_attn"),
                                          {f.ptr("linear1.weight"), f.ptr("linear1.bias")},
                                          {f.ptr("linear2.weight"), f.ptr("linear2.bias")},
                                          {f.ptr("norm1.weight"), f.ptr("norm1.bias")},
                                          {f.ptr("norm2.weight"), f.ptr("norm2.bias")}});
        const i64 S = f.integer("src_len");
        AttentionMask mask;
        mask.causal = f.flag("src_mask");  // the fixture's float mask is the causal one
        if (f.flag("src_key_padding_mask")) mask.key_padding = f.bools("src_key_padding_mask");
        std::vector<float> x = f.floats("src"), ws(layer.workspace_floats(B, S));
        layer.forward(x.data(), B, S, mask, ws.data(), path);
        expect_matches(x, expected, where);
        // The float mask from the fixture, as an additive attention mask, gives the same.
        if (f.flag("src_mask")) {
          AttentionMask additive = mask;
          additive.causal = false;
          additive.attn_bias = f.floats("src_mask");
          x = f.floats("src");
          layer.forward(x.data(), B, S, additive, ws.data(), path);
          expect_matches(x, expected, where + " (additive mask)");
        }
      } else {
        const DecoderLayer layer(config, {mha_weights(f, "self_attn"), mha_weights(f, "multihead_attn"),
                                          {f.ptr("linear1.weight"), f.ptr("linear1.bias")},
                                          {f.ptr("linear2.weight"), f.ptr("linear2.bias")},
                                          {f.ptr("norm1.weight"), f.ptr("norm1.bias")},
                                          {f.ptr("norm2.weight"), f.ptr("norm2.bias")},
                                          {f.ptr("norm3.weight"), f.ptr("norm3.bias")}});
        const i64 St = f.integer("tgt_len"), Sm = f.integer("memory_len");
        AttentionMask self_mask, memory_mask;
        self_mask.causal = true;
        if (f.flag("tgt_key_padding_mask")) self_mask.key_padding = f.bools("tgt_key_padding_mask");
        if (f.flag("memory_key_padding_mask")) memory_mask.key_padding = f.bools("memory_key_padding_mask");
        std::vector<float> x = f.floats("tgt"), ws(layer.workspace_floats(B, St, Sm));
        layer.forward(x.data(), f.ptr("memory"), B, St, Sm, self_mask, memory_mask, ws.data(), path);
        expect_matches(x, expected, where);
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Torch, LayerVsTorch,
                         ::testing::Values("encoder_post_relu", "encoder_post_gelu_causal",
                                           "encoder_pre_relu_causal_padding", "encoder_pre_gelu", "decoder_post_relu",
                                           "decoder_post_gelu_padding", "decoder_pre_relu", "decoder_pre_gelu"));

EncoderLayer encoder_layer(Fixture& f, const LayerConfig& c, const std::string& p) {
  return EncoderLayer(c, {mha_weights(f, p + "self_attn"),
                          {f.ptr(p + "linear1.weight"), f.ptr(p + "linear1.bias")},
                          {f.ptr(p + "linear2.weight"), f.ptr(p + "linear2.bias")},
                          {f.ptr(p + "norm1.weight"), f.ptr(p + "norm1.bias")},
                          {f.ptr(p + "norm2.weight"), f.ptr(p + "norm2.bias")}});
}

DecoderLayer decoder_layer(Fixture& f, const LayerConfig& c, const std::string& p) {
  return DecoderLayer(c, {mha_weights(f, p + "self_attn"), mha_weights(f, p + "multihead_attn"),
                          {f.ptr(p + "linear1.weight"), f.ptr(p + "linear1.bias")},
                          {f.ptr(p + "linear2.weight"), f.ptr(p + "linear2.bias")},
                          {f.ptr(p + "norm1.weight"), f.ptr(p + "norm1.bias")},
                          {f.ptr(p + "norm2.weight"), f.ptr(p + "norm2.bias")},
                          {f.ptr(p + "norm3.weight"), f.ptr(p + "norm3.bias")}});
}

TransformerEncoder encoder_stack(Fixture& f, const LayerConfig& c, const std::string& p, i64 layers, bool norm) {
  std::vector<EncoderLayer> v;
  for (i64 i = 0; i < layers; ++i) v.push_back(encoder_layer(f, c, p + "layers." + std::to_string(i) + "."));
  std::optional<LayerNormWeights> final_norm;
  if (norm) final_norm = LayerNormWeights{f.ptr(p + "norm.weight"), f.ptr(p + "norm.bias")};
  return TransformerEncoder(std::move(v), final_norm);
}

TransformerDecoder decoder_stack(Fixture& f, const LayerConfig& c, const std::string& p, i64 layers, bool norm) {
  std::vector<DecoderLayer> v;
  for (i64 i = 0; i < layers; ++i) v.push_back(decoder_layer(f, c, p + "layers." + std::to_string(i) + "."));
  std::optional<LayerNormWeights> final_norm;
  if (norm) final_norm = LayerNormWeights{f.ptr(p + "norm.weight"), f.ptr(p + "norm.bias")};
  return TransformerDecoder(std::move(v), final_norm);
}

class StackVsTorch : public ::testing::TestWithParam<std::string> {};

TEST_P(StackVsTorch, MatchesFixture) {
  Fixture f(kDir + GetParam());
  const LayerConfig c = config_of(f);
  const i64 B = f.integer("batch"), Ss = f.integer("src_len"), St = f.integer("tgt_len");
  const std::string kind = f.text("kind");
  AttentionMask src_mask, tgt_mask, memory_mask;
  tgt_mask.causal = true;
  if (kind != "decoder") src_mask.key_padding = f.bools("src_key_padding_mask");
  if (kind != "encoder") {
    tgt_mask.key_padding = f.bools("tgt_key_padding_mask");
    memory_mask.key_padding = f.bools("memory_key_padding_mask");
  }
  for (Isa isa : test_isas()) {
    IsaScope scope(isa);
    const std::string where = GetParam() + " on " + isa_name(isa);
    std::vector<float> out;
    if (kind == "encoder") {
      const TransformerEncoder enc = encoder_stack(f, c, "", f.integer("layers"), f.flag("final_norm"));
      out = f.floats("src");
      std::vector<float> ws(enc.workspace_floats(B, Ss));
      enc.forward(out.data(), B, Ss, src_mask, ws.data());
    } else if (kind == "decoder") {
      const TransformerDecoder dec = decoder_stack(f, c, "", f.integer("layers"), f.flag("final_norm"));
      out = f.floats("tgt");
      std::vector<float> ws(dec.workspace_floats(B, St, Ss));
      dec.forward(out.data(), f.ptr("memory"), B, St, Ss, tgt_mask, memory_mask, ws.data());
    } else {  // nn.Transformer: encoder (final norm) over src, then decoder (final norm) over tgt
      const TransformerEncoder enc = encoder_stack(f, c, "encoder.", f.integer("encoder_layers"), true);
      const TransformerDecoder dec = decoder_stack(f, c, "decoder.", f.integer("decoder_layers"), true);
      std::vector<float> memory = f.floats("src");
      std::vector<float> ws(std::max(enc.workspace_floats(B, Ss), dec.workspace_floats(B, St, Ss)));
      enc.forward(memory.data(), B, Ss, src_mask, ws.data());
      out = f.floats("tgt");
      dec.forward(out.data(), memory.data(), B, St, Ss, tgt_mask, memory_mask, ws.data());
    }
    expect_matches(out, f.floats("expected"), where);
  }
}

INSTANTIATE_TEST_SUITE_P(Torch, StackVsTorch,
                         ::testing::Values("encoder_stack_1_post_relu", "encoder_stack_3_pre_gelu_norm",
                                           "decoder_stack_3_post_relu", "decoder_stack_1_pre_gelu_norm",
                                           "transformer_2_2_post_gelu"));

TEST(LayerErrors, BadConfigurationNamesTheField) {
  std::vector<float> w(3 * 48 * 48, 0.1f), b(3 * 48, 0.0f), f1(80 * 48, 0.1f), f2(48 * 80, 0.1f), g(48, 1.0f);
  EncoderLayerWeights weights{{w.data(), b.data(), w.data(), b.data()},
                              {f1.data(), nullptr},
                              {f2.data(), nullptr},
                              {g.data(), b.data()},
                              {g.data(), b.data()}};
  LayerConfig c;
  c.d_model = 48;
  c.heads = 5;
  c.d_ff = 80;
  expect_error([&] { EncoderLayer(c, weights); }, "d_model (48) must be divisible by the number of heads (5)");
  c.heads = 3;
  c.layer_norm_eps = 0.0f;
  expect_error([&] { EncoderLayer(c, weights); }, "layer_norm_eps");
  c.layer_norm_eps = 1e-5f;
  weights.norm2.bias = nullptr;
  expect_error([&] { EncoderLayer(c, weights); }, "norm2.bias");
}

// ---- positional encoding --------------------------------------------------------------------------

TEST(PositionalEncoding, InterleavedMatchesThePyTorchTutorialFormula) {
  const i64 d = 48, max_len = 600;
  const SinusoidalPositionalEncoding pe(d, max_len, PositionalLayout::interleaved);
  for (i64 p : {0, 1, 17, 599})
    for (i64 i = 0; i < d / 2; ++i) {
      const double div = std::exp(static_cast<double>(2 * i) * (-std::log(10000.0) / static_cast<double>(d)));
      EXPECT_NEAR(pe.table()[p * d + 2 * i], std::sin(static_cast<double>(p) * div), 1e-6) << p << "," << i;
      EXPECT_NEAR(pe.table()[p * d + 2 * i + 1], std::cos(static_cast<double>(p) * div), 1e-6) << p << "," << i;
    }
}

TEST(PositionalEncoding, ConcatenatedMatchesTensor2TensorAndFirstPositionShifts) {
  const i64 d = 16, half = 8;
  const SinusoidalPositionalEncoding pe(d, 50, PositionalLayout::concatenated, /*first_position=*/3);
  for (i64 p = 0; p < 50; ++p)
    for (i64 i = 0; i < half; ++i) {
      const double w = std::exp(-static_cast<double>(i) * std::log(10000.0) / static_cast<double>(half - 1));
      const double pos = static_cast<double>(p + 3);
      EXPECT_NEAR(pe.table()[p * d + i], std::sin(pos * w), 1e-6);
      EXPECT_NEAR(pe.table()[p * d + half + i], std::cos(pos * w), 1e-6);
    }
}

TEST(PositionalEncoding, AddsRowsAndRejectsSequencesPastMaxLen) {
  const SinusoidalPositionalEncoding pe(8, 10);
  std::vector<float> x(2 * 4 * 8, 1.0f);
  pe.add(x.data(), 2, 4, /*start=*/6);
  for (i64 b = 0; b < 2; ++b)
    for (i64 s = 0; s < 4; ++s)
      for (i64 c = 0; c < 8; ++c)
        ASSERT_FLOAT_EQ(x[static_cast<std::size_t>((b * 4 + s) * 8 + c)], 1.0f + pe.table()[(6 + s) * 8 + c]);
  expect_error([&] { pe.add(x.data(), 2, 4, 7); }, "exceed max_len 10");
  expect_error([&] { pe.add(x.data(), 1, 11); }, "exceed max_len 10");
  expect_error([&] { SinusoidalPositionalEncoding(7, 10); }, "d_model must be even");
}

}  // namespace
}  // namespace engine::test
