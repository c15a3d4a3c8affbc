// engine-generate as a user runs it: the PyTorch greedy ids for the fixture prompts (batch of two
// prompts of different lengths, and a seq2seq model with sources), tokens from a vocabulary file,
// and clear errors with a non-zero exit for bad invocations.
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

namespace engine::test {
namespace {

const std::string kLm = std::string(ENGINE_FIXTURES_DIR) + "/lm/";

CliResult run(const std::string& args) { return run_cli(ENGINE_GENERATE_PATH, args); }

// "a,b,c" and "a b c" for a fixture's float-coded ids.
std::string joined(const std::vector<float>& ids, const char* sep) {
  std::string out;
  for (std::size_t i = 0; i < ids.size(); ++i) out += (i ? sep : "") + std::to_string(static_cast<int>(ids[i]));
  return out;
}

TEST(EngineGenerate, PrintsPyTorchsGreedyIds) {
  for (const std::string name : {"gpt_post_relu", "seq2seq_post_relu"}) {
    Fixture f(kLm + name);
    std::string args = "--model " + kLm + name + " --max-new 50";
    std::string want;
    for (int i = 0; i < 2; ++i) {
      args += " --prompt-ids " + joined(f.floats("prompt" + std::to_string(i)), ",");
      if (f.flag("encoder_decoder")) args += " --src-ids " + joined(f.floats("source" + std::to_string(i)), ",");
      want += joined(f.floats("generated" + std::to_string(i)), " ") + "\n";
    }
    const CliResult r = run(args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output, want) << name;
  }
}

TEST(EngineGenerate, PrintsTokensFromAVocabularyAndStopsAtEos) {
  Fixture f(kLm + "gpt_post_relu");
  const auto vocab =
      std::filesystem::temp_directory_path() / ("engine_generate_vocab_" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream out(vocab);
    out << "[";
    for (int i = 0; i < 48; ++i) out << (i ? "," : "") << "\"w" << i << "\"";
    out << "]";
  }
  const auto& gen = f.floats("generated0");
  const int eos = static_cast<int>(gen[2]);
  const CliResult r = run("--model " + kLm + "gpt_post_relu --prompt-ids " + joined(f.floats("prompt0"), ",") +
                          " --max-new 10 --eos " + std::to_string(eos) + " --vocab " + vocab.string());
  std::filesystem::remove(vocab);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::size_t stop = 0;
  while (static_cast<int>(gen[stop]) != eos) ++stop;
  std::string ids, tokens;
  for (std::size_t i = 0; i <= stop; ++i) {
    // Appends, not "literal" + std::string: GCC 12 warns falsely (-Wrestrict) on the latter.
    const std::string id = std::to_string(static_cast<int>(gen[i]));
    ids.append(i ? " " : "").append(id);
    tokens.append(i ? " w" : "w").append(id);
  }
  EXPECT_EQ(r.output, ids + "\n" + tokens + "\n");
}

TEST(EngineGenerate, BadInvocationsExitNonZeroAndSayWhy) {
  const std::string gpt = "--model " + kLm + "gpt_post_relu";
  const auto duplicate_vocab = std::filesystem::temp_directory_path() /
                               ("engine_generate_duplicate_vocab_" + std::to_string(::getpid()) + ".json");
  std::ofstream(duplicate_vocab) << R"({"a": 1, "a": 2})";
  expect_cli_failures(
      ENGINE_GENERATE_PATH,
      {
          {"--model " + std::string(ENGINE_FIXTURES_DIR) + "/models/encoder_layer_post_relu --prompt-ids 1 --max-new 2",
           "not a language model"},
          {gpt + " --prompt-ids 3,x --max-new 2", "--prompt-ids: 'x' is not a token id"},
          {gpt + " --prompt-ids 3,48 --max-new 2", "prompt 0 token 1 is id 48, outside the vocabulary [0, 48)"},
          {gpt + " --prompt-ids 3 --max-new 200", "plus --max-new 200 exceeds the model's max_len 96"},
          {gpt + " --prompt-ids 3 --max-new 2 --eos 99", "--eos 99 is outside the vocabulary"},
          {gpt + " --prompt-ids 3 --max-new 2 --src-ids 4", "a decoder-only model takes no sources"},
          {"--model " + kLm + "seq2seq_post_relu --prompt-ids 3 --max-new 2", "needs one source per prompt"},
          {gpt + " --prompt-ids 3 --max-new 2 --vocab /nonexistent.json", "cannot open the vocabulary"},
          {gpt + " --prompt-ids 3 --max-new 2 --vocab " + duplicate_vocab.string(), "vocabulary names 'a' twice"},
          {gpt + " --prompt-ids 3 --max-new 0", "--max-new"},
      });
  std::filesystem::remove(duplicate_vocab);
}

}  // namespace
}  // namespace engine::test
