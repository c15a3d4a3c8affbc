// engine-run end to end, as a user runs it: exported model directories and .npy inputs in, a .npy
// out that matches PyTorch's output (|got - torch| <= 1e-5); bad invocations exit non-zero with a
// message naming the problem.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "cli_runner.hpp"
#include "fixture_reader.hpp"
#include "npy.hpp"

namespace engine::test {
namespace {

const std::string kModels = std::string(ENGINE_FIXTURES_DIR) + "/models/";

CliResult run(const std::string& args) { return run_cli(ENGINE_RUN_PATH, args); }

class EngineRun : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineRun, MatchesPyTorchThroughNpyFiles) {
  const std::string dir = kModels + GetParam();
  Fixture f(dir);
  const std::string out = (std::filesystem::temp_directory_path() /
                           ("engine_run_out_" + GetParam() + "_" + std::to_string(::getpid()) + ".npy"))
                              .string();
  std::string args = "--model " + dir + " --src " + dir + "/src.npy --out " + out + " --threads 2";
  if (std::filesystem::exists(dir + "/tgt.npy")) args += " --tgt " + dir + "/tgt.npy";
  for (const char* m : {"src_key_padding_mask", "tgt_key_padding_mask", "memory_key_padding_mask"})
    if (f.flag(m)) {
      std::string flag = std::string("--") + m;
      for (char& ch : flag)
        if (ch == '_') ch = '-';
      args += " " + flag + " " + dir + "/" + m + ".npy";
    }
  if (f.flag("src_causal")) args += " --src-causal";
  if (f.flag("tgt_causal")) args += " --tgt-causal";
  const CliResult r = run(args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const npy::Array got = npy::read(out), want = npy::read(dir + "/expected.npy");
  std::filesystem::remove(out);
  ASSERT_EQ(got.shape, want.shape);
  for (std::int64_t i = 0; i < got.numel(); ++i) ASSERT_NEAR(got.f32()[i], want.f32()[i], 1e-5) << "element " << i;
}

INSTANTIATE_TEST_SUITE_P(Exported, EngineRun,
                         ::testing::Values("encoder_layer_post_relu", "encoder_3_pre_gelu_norm_pe",
                                           "decoder_layer_post_gelu_seq_first", "decoder_1_pre_relu_norm",
                                           "transformer_2_2_post_relu_pe_concat"));

TEST(EngineRunErrors, BadInvocationsExitNonZeroAndSayWhy) {
  const std::string t = kModels + "transformer_2_2_post_relu_pe_concat";
  const std::string e = kModels + "encoder_layer_post_relu";
  expect_cli_failures(
      ENGINE_RUN_PATH,
      {
          {"--src x.npy --out o.npy", "--model is required"},
          {"--model /nonexistent --src x.npy --out o.npy", "config.json: cannot open"},
          {"--model " + t + " --src " + t + "/src.npy --out /tmp/o.npy", "--tgt is required"},
          {"--model " + e + " --src " + e + "/src.npy --tgt " + e + "/src.npy --out /tmp/o.npy", "has no decoder"},
          {"--model " + t + " --src " + t + "/tgt.npy --tgt " + t + "/tgt.npy --src-key-padding-mask " + t +
               "/src_key_padding_mask.npy --out /tmp/o.npy",
           "--src-key-padding-mask must have shape [2, 9], got [2, 17]"},
          {"--model " + e + " --src " + e + "/src_key_padding_mask.npy --out /tmp/o.npy", "--src must be float32"},
          {"--model " + e + " --src " + e + "/missing.npy --out /tmp/o.npy", "missing.npy: cannot open"},
          {"--model " + e + " --src " + e + "/src.npy --out /tmp/o.npy --threads 0", "--threads"},
      });
}

}  // namespace
}  // namespace engine::test
