// The model loader end to end: PyTorch modules exported by tools/export_torch.py (fixtures from
// tools/make_model_fixtures.py) load and reproduce PyTorch's outputs; broken model directories get
// errors that name the field or tensor.
//
// Tolerance: |got - torch| <= 1e-5 absolute (LayerNorm-scaled outputs after up to 4 layers).
#include "model_loader.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model.hpp"
#include "fixture_reader.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

using i64 = std::int64_t;
const std::string kModels = std::string(ENGINE_FIXTURES_DIR) + "/models/";

class LoadedModelVsTorch : public ::testing::TestWithParam<std::string> {};

TEST_P(LoadedModelVsTorch, ReproducesPyTorch) {
  const std::string dir = kModels + GetParam();
  Fixture f(dir);
  const i64 B = f.integer("batch"), Ss = f.integer("src_len"), St = f.integer("tgt_len");
  AttentionMask src_mask, tgt_mask, memory_mask;
  src_mask.causal = f.flag("src_causal");
  tgt_mask.causal = f.flag("tgt_causal");
  if (f.flag("src_key_padding_mask")) src_mask.key_padding = f.bools("src_key_padding_mask");
  if (f.flag("tgt_key_padding_mask")) tgt_mask.key_padding = f.bools("tgt_key_padding_mask");
  if (f.flag("memory_key_padding_mask")) memory_mask.key_padding = f.bools("memory_key_padding_mask");
  ThreadGuard threads;
  for (Isa isa : test_isas()) {
    IsaScope scope(isa);  // weights are packed for the active ISA, so load under it
    const Model model = loader::load_model(dir);
    const ModelConfig& c = model.config();
    std::vector<float> first_out;  // at 1 thread; 2 and 3 threads must give the same bits
    for (int t : {1, 2, 3}) {
      set_num_threads(t);
      std::vector<float> ws(model.workspace_floats(B, Ss, St));
      std::vector<float> out;
      if (c.has_encoder() && !c.has_decoder()) {
        out = f.floats("src");
        model.encode(out.data(), B, Ss, src_mask, ws.data());
      } else if (c.has_decoder() && !c.has_encoder()) {
        out = f.floats("tgt");
        model.decode(out.data(), f.ptr("src"), B, St, Ss, tgt_mask, memory_mask, ws.data());
      } else {
        std::vector<float> memory = f.floats("src");
        model.encode(memory.data(), B, Ss, src_mask, ws.data());
        out = f.floats("tgt");
        model.decode(out.data(), memory.data(), B, St, Ss, tgt_mask, memory_mask, ws.data());
      }
      if (t > 1) {
        ASSERT_EQ(0, std::memcmp(out.data(), first_out.data(), out.size() * sizeof(float)))
            << GetParam() << " on " << isa_name(isa) << ": " << t << " threads differ from 1";
        continue;
      }
      first_out = out;
      const auto& want = f.floats("expected");
      ASSERT_EQ(out.size(), want.size());
      for (std::size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], want[i], 1e-5) << GetParam() << " on " << isa_name(isa) << ", element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Exported, LoadedModelVsTorch,
                         ::testing::Values("encoder_layer_post_relu", "encoder_3_pre_gelu_norm_pe",
                                           "decoder_layer_post_gelu_seq_first", "decoder_1_pre_relu_norm",
                                           "transformer_2_2_post_relu_pe_concat"));

TEST(Session, RunsWithinItsSizesRepeatablyAndRejectsLarger) {
  const std::string dir = kModels + "transformer_2_2_post_relu_pe_concat";
  Fixture f(dir);
  const Model model = loader::load_model(dir);
  const i64 B = f.integer("batch"), Ss = f.integer("src_len"), St = f.integer("tgt_len");
  Session session(model, B, Ss + 3, St + 1);  // sized above what it runs
  AttentionMask src_mask, tgt_mask, memory_mask;
  src_mask.key_padding = f.bools("src_key_padding_mask");
  tgt_mask.causal = true;
  tgt_mask.key_padding = f.bools("tgt_key_padding_mask");
  memory_mask.key_padding = f.bools("memory_key_padding_mask");
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    std::vector<float> memory = f.floats("src"), out = f.floats("tgt");
    session.encode(memory.data(), B, Ss, src_mask);
    session.decode(out.data(), memory.data(), B, St, Ss, tgt_mask, memory_mask);
    if (run == 0) {
      first = out;
      const auto& want = f.floats("expected");
      for (std::size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], want[i], 1e-5) << "element " << i;
    } else {
      ASSERT_EQ(out, first) << "run " << run << " differs from run 0";
    }
  }
  std::vector<float> big(static_cast<std::size_t>((B + 1) * (Ss + 4) * model.d_model()));
  expect_error([&] { session.encode(big.data(), B + 1, Ss, {}); }, "batch 3 exceeds the 2 this session was sized for");
  expect_error([&] { session.encode(big.data(), B, Ss + 4, {}); }, "src_len 21 exceeds the 20");
  expect_error([&] { session.decode(big.data(), big.data(), B, St + 2, Ss, {}, {}); }, "tgt_len 11 exceeds the 10");
  expect_error([&] { Session(model, 1, 8); }, "needs max_tgt_len");
}

// ---- broken model directories ------------------------------------------------------------------------

class BrokenModelDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("engine_model_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    std::filesystem::copy(kModels + "encoder_3_pre_gelu_norm_pe", dir_, std::filesystem::copy_options::recursive);
    std::ifstream in(dir_ / "config.json");
    std::stringstream s;
    s << in.rdbuf();
    config_ = s.str();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Replaces the first match of `pattern` in the good config.json, writes it, expects the error.
  void expect_config_error(const std::string& pattern, const std::string& replacement, const std::string& needle) {
    const std::string changed =
        std::regex_replace(config_, std::regex(pattern), replacement, std::regex_constants::format_first_only);
    ASSERT_NE(changed, config_) << "pattern " << pattern << " did not match";
    std::ofstream(dir_ / "config.json") << changed;
    SCOPED_TRACE(pattern + " -> " + replacement);
    expect_error([&] { (void)loader::load_model(dir_.string()); }, needle);
  }

  std::filesystem::path dir_;
  std::string config_;
};

TEST_F(BrokenModelDir, ConfigErrorsNameTheField) {
  expect_config_error("\"d_model\": 48", "\"d_model\": \"48\"", "field 'd_model' must be an integer");
  expect_config_error("\"heads\": 3", "\"heads\": 5", "d_model (48) must be divisible by heads (5)");
  expect_config_error("\"heads\": 3", "\"heads\": 0", "heads must be in [1, d_model]");
  expect_config_error("\"d_ff\": 80", "\"d_ff\": 0", "d_ff must be in");
  expect_config_error("\"d_ff\": 80", "\"d_ff\": 100000000000", "d_ff must be in");
  expect_config_error("\"activation\": \"gelu\"", "\"activation\": \"swish\"", "field 'activation'");
  expect_config_error("\"architecture\": \"encoder\"", "\"architecture\": \"lstm\"", "field 'architecture'");
  expect_config_error("\"version\": 1", "\"version\": 2", "field 'version' must be 1");
  expect_config_error("\"layer_norm_eps\": 1e-05", "\"layer_norm_eps\": -1", "layer_norm_eps must be a positive");
  expect_config_error("\"d_model\": 48,", "\"d_model\": 48, \"colour\": 1,", "unknown field 'colour'");
  expect_config_error("\"d_model\": 48,", "", "missing field 'd_model'");
  expect_config_error("\"max_len\": 64", "\"max_len\": 0", "positional_encoding.max_len");
  expect_config_error("\\{", "[", "not valid JSON");
}

TEST_F(BrokenModelDir, ConfigThatDisagreesWithTheWeights) {
  expect_config_error("\"num_encoder_layers\": 3", "\"num_encoder_layers\": 4", "missing tensor 'layers.3.");
  expect_config_error("\"num_encoder_layers\": 3", "\"num_encoder_layers\": 2", "unexpected tensor 'layers.2.");
  expect_config_error("\"encoder_norm\": true", "\"encoder_norm\": false", "unexpected tensor 'norm.");
  expect_config_error("\"d_ff\": 80", "\"d_ff\": 96",
                      "'layers.0.linear1.weight' has shape [80, 48], expected [96, 48]");
  expect_config_error("\"d_model\": 48", "\"d_model\": 96", "has shape");
}

TEST_F(BrokenModelDir, MissingFilesAreNamed) {
  expect_error([&] { (void)loader::load_model((dir_ / "nope").string()); }, "config.json: cannot open");
  std::filesystem::remove(dir_ / "model.safetensors");
  expect_error([&] { (void)loader::load_model(dir_.string()); }, "model.safetensors: cannot open");
}

}  // namespace
}  // namespace engine::test
