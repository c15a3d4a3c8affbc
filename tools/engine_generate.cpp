// engine-generate: greedy generation with an exported language model (tools/lm_reference.py's
// TransformerModel, exported by tools/export_torch.py).
//
//   engine-generate --model DIR --prompt-ids 5,17,3 [--prompt-ids 4,2 ...] [--src-ids 8,9 ...]
//                   --max-new N [--eos ID] [--vocab vocab.json] [--threads N]
//
// Each --prompt-ids is one sequence of the batch (encoder-decoder models take one --src-ids per
// prompt, in the same order). Prints, per sequence, the generated ids, and their tokens when a
// vocabulary is given: a JSON list of strings (index = id) or an object {"token": id, ...}.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "model_loader.hpp"
#include "strict_json.hpp"

namespace {

using engine::fail;
using Ids = std::vector<std::int32_t>;

Ids parse_ids(const std::string& text, const char* flag) {
  Ids ids;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 0 || v > INT32_MAX)
      fail(flag, ": '", item, "' is not a token id (a non-negative integer) in '", text, "'");
    ids.push_back(static_cast<std::int32_t>(v));
  }
  if (ids.empty()) fail(flag, ": no token ids in '", text, "'");
  return ids;
}

std::vector<std::string> read_vocab(const std::string& path, std::int64_t vocab) {
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open the vocabulary");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // As the loader reads JSON: a token named twice in {token: id} is an error, not a silent overwrite.
  const nlohmann::json j = engine::loader::parse_strict_json(text.data(), text.data() + text.size(), path, "vocabulary");
  std::vector<std::string> tokens(static_cast<std::size_t>(vocab));
  if (j.is_array()) {
    if (static_cast<std::int64_t>(j.size()) != vocab)
      fail(path, ": the vocabulary lists ", j.size(), " tokens but the model has ", vocab);
    for (std::size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_string()) fail(path, ": entry ", i, " is not a string");
      tokens[i] = j[i].get<std::string>();
    }
  } else if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 || it.value().get<std::int64_t>() >= vocab)
        fail(path, ": token '", it.key(), "' has id ", it.value().dump(), ", outside [0, ", vocab, ")");
      tokens[it.value().get<std::size_t>()] = it.key();
    }
  } else {
    fail(path, ": the vocabulary must be a JSON list of tokens or an object {token: id}");
  }
  return tokens;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"engine-generate: greedy generation with an exported Transformer language model"};
  std::string model_dir, vocab_path;
  std::vector<std::string> prompt_args, src_args;
  long long max_new = 0, eos = -1;
  int threads = 0;
  app.add_option("--model", model_dir, "model directory (config.json + model.safetensors) with an lm section")
      ->required();
  app.add_option("--prompt-ids", prompt_args, "comma-separated prompt token ids; repeat for a batch")->required();
  app.add_option("--src-ids", src_args, "comma-separated source ids (encoder-decoder models), one per prompt");
  app.add_option("--max-new", max_new, "tokens to generate per sequence")->required()->check(CLI::Range(1, 1 << 24));
  app.add_option("--eos", eos, "end-of-sequence id: a sequence stops after emitting it");
  app.add_option("--vocab", vocab_path, "vocabulary: JSON list of tokens, or object {token: id}");
  app.add_option("--threads", threads, "threads (default: all cores)")->check(CLI::Range(1, 1024));
  CLI11_PARSE(app, argc, argv);

  try {
    if (threads > 0) engine::set_num_threads(threads);
    const engine::Model model = engine::loader::load_model(model_dir);
    if (!model.is_language_model())
      fail(model_dir, ": not a language model (config.json has no lm section; engine-run runs plain stacks)");
    std::vector<Ids> prompts, sources;
    for (const auto& p : prompt_args) prompts.push_back(parse_ids(p, "--prompt-ids"));
    for (const auto& s : src_args) sources.push_back(parse_ids(s, "--src-ids"));
    if (eos < -1 || eos >= model.vocab()) fail("--eos ", eos, " is outside the vocabulary [0, ", model.vocab(), ")");
    std::vector<std::string> tokens;
    if (!vocab_path.empty()) tokens = read_vocab(vocab_path, model.vocab());

    std::int64_t longest = 0, longest_src = 1;
    for (const auto& p : prompts) longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(p.size()));
    for (const auto& s : sources) longest_src = std::max<std::int64_t>(longest_src, static_cast<std::int64_t>(s.size()));
    const std::int64_t max_len = model.config().positional->max_len;
    if (longest + max_new - 1 > max_len)
      fail("a prompt of ", longest, " tokens plus --max-new ", max_new, " exceeds the model's max_len ", max_len);
    const bool seq2seq = model.config().architecture == engine::Architecture::transformer;
    engine::Generator generator(model, static_cast<std::int64_t>(prompts.size()), longest + max_new - 1,
                                seq2seq ? std::min(longest_src, max_len) : 0);
    const auto out = generator.generate(prompts, max_new, static_cast<std::int32_t>(eos), sources);
    for (const Ids& ids : out) {
      for (std::size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
      std::cout << "\n";
      if (!tokens.empty()) {
        for (std::size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << tokens[static_cast<std::size_t>(ids[i])];
        std::cout << "\n";
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "engine-generate: " << e.what() << "\n";
    return 1;
  }
}
