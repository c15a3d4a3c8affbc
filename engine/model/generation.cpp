// Prefill and step for language models. Each sequence b has lengths_[b] tokens cached; a call runs
// T new tokens per sequence at positions lengths_[b] .. lengths_[b] + T - 1 (prefill: the padded
// prompts, T = the longest; step: T = 1), writes their keys and values into the caches there, and
// lets each query see its sequence's cached keys (causally within the call). Padded prompt
// positions write keys the first steps overwrite, and no real query ever sees them.
#include "engine/generation.hpp"

#include <algorithm>

#include "engine/error.hpp"
#include "workspace_limits.hpp"

namespace engine {
namespace {
using i64 = std::int64_t;
using Sequences = std::vector<std::vector<std::int32_t>>;

// Checks a batch of token sequences (`what` names them in errors: "prompt", "source"): each holds
// 1 to `limit` tokens, every id in [0, vocab). Returns the longest length.
i64 check_sequences(const Sequences& seqs, const char* what, i64 limit, const char* limit_name, i64 vocab) {
  i64 longest = 0;
  for (std::size_t b = 0; b < seqs.size(); ++b) {
    const auto& seq = seqs[b];
    if (seq.empty()) fail("Generator::prefill: ", what, " ", b, " is empty (it needs at least one token)");
    if (static_cast<i64>(seq.size()) > limit)
      fail("Generator::prefill: ", what, " ", b, " has ", seq.size(), " tokens, more than ", limit_name, " ", limit);
    for (std::size_t s = 0; s < seq.size(); ++s)
      if (seq[s] < 0 || seq[s] >= vocab)
        fail("Generator::prefill: ", what, " ", b, " token ", s, " is id ", seq[s], ", outside the vocabulary [0, ",
             vocab, ")");
    longest = std::max<i64>(longest, static_cast<i64>(seq.size()));
  }
  return longest;
}

// ids [seqs.size(), width] = the sequences, padded with id 0 (which no real query ever sees).
void pad_into(std::int32_t* ids, const Sequences& seqs, i64 width) {
  for (std::size_t b = 0; b < seqs.size(); ++b) {
    std::int32_t* row = ids + static_cast<i64>(b) * width;
    std::fill_n(row, width, 0);
    std::copy(seqs[b].begin(), seqs[b].end(), row);
  }
}

}  // namespace

Generator::Generator(const Model& model, i64 max_batch, i64 max_len, i64 max_src_len, const SessionOptions& options)
    : model_(model),
      encoder_decoder_(model.config().architecture == Architecture::transformer),
      max_batch_(max_batch),
      max_len_(max_len),
      max_src_len_(max_src_len) {
  const ModelConfig& c = model.config();
  if (!c.lm) fail("Generator: the model is not a language model (its config has no lm section)");
  if (max_batch < 1 || max_batch > (i64{1} << 20)) fail("Generator: max_batch must be in [1, 2^20], got ", max_batch);
  if (max_len < 1 || max_len > c.positional->max_len)
    fail("Generator: max_len must be in [1, ", c.positional->max_len, "] (the positional encoding's max_len), got ",
         max_len);
  if (encoder_decoder_ && (max_src_len < 1 || max_src_len > c.positional->max_len))
    fail("Generator: an encoder-decoder model needs max_src_len in [1, ", c.positional->max_len, "], got ",
         max_src_len);
  if (!encoder_decoder_) max_src_len_ = 0;
  model_limits::check_tokens("Generator", max_batch, "max_len", max_len);
  model_limits::check_tokens("Generator", max_batch, "max_src_len", max_src_len_);

  const i64 d = model.d_model(), V = model.vocab(), B = max_batch;
  const i64 layers = encoder_decoder_ ? c.num_decoder_layers : c.num_encoder_layers;
  ArenaPlan plan;
  std::vector<ArenaSlot> self_k, self_v, mem_k, mem_v;
  for (i64 i = 0; i < layers; ++i) {
    self_k.push_back(plan.reserve<float>("self-attention keys", static_cast<std::size_t>(B * max_len * d)));
    self_v.push_back(plan.reserve<float>("self-attention values", static_cast<std::size_t>(B * max_len * d)));
    if (encoder_decoder_) {
      mem_k.push_back(plan.reserve<float>("cross-attention keys", static_cast<std::size_t>(B * max_src_len * d)));
      mem_v.push_back(plan.reserve<float>("cross-attention values", static_cast<std::size_t>(B * max_src_len * d)));
    }
  }
  const i64 id_cols = std::max(max_len, max_src_len_);
  const ArenaSlot x = plan.reserve<float>("tokens", static_cast<std::size_t>(B * max_len * d));
  const ArenaSlot memory = plan.reserve<float>("memory", static_cast<std::size_t>(B * max_src_len_ * d));
  const ArenaSlot last = plan.reserve<float>("last hidden", static_cast<std::size_t>(B * d));
  const ArenaSlot logits = plan.reserve<float>("logits", static_cast<std::size_t>(B * V));
  const ArenaSlot workspace =
      plan.reserve<float>("workspace", model.workspace_floats(B, encoder_decoder_ ? max_src_len_ : max_len, max_len));
  const ArenaSlot ids = plan.reserve<std::int32_t>("ids", static_cast<std::size_t>(B * id_cols));
  const ArenaSlot lengths = plan.reserve<std::int32_t>("lengths", static_cast<std::size_t>(B));
  const ArenaSlot src_lengths = plan.reserve<std::int32_t>("source lengths", static_cast<std::size_t>(B));
  const ArenaSlot visible = plan.reserve<std::int32_t>("visible keys", static_cast<std::size_t>(B));
  model_limits::check_bytes("Generator",
                            "batch " + std::to_string(B) + ", max_len " + std::to_string(max_len) + ", max_src_len " +
                                std::to_string(max_src_len_),
                            plan.total_bytes(), options);
  arena_ = Arena(plan);
  for (i64 i = 0; i < layers; ++i) {
    self_caches_.push_back({arena_.at<float>(self_k[i]), arena_.at<float>(self_v[i]), max_len});
    if (encoder_decoder_)
      memory_caches_.push_back({arena_.at<float>(mem_k[i]), arena_.at<float>(mem_v[i]), max_src_len_});
  }
  x_ = arena_.at<float>(x);
  memory_ = arena_.at<float>(memory);
  last_ = arena_.at<float>(last);
  logits_ = arena_.at<float>(logits);
  workspace_ = arena_.at<float>(workspace);
  ids_ = arena_.at<std::int32_t>(ids);
  lengths_ = arena_.at<std::int32_t>(lengths);
  src_lengths_ = arena_.at<std::int32_t>(src_lengths);
  visible_ = arena_.at<std::int32_t>(visible);
}

std::span<const float> Generator::prefill(const std::vector<std::vector<std::int32_t>>& prompts,
                                          const std::vector<std::vector<std::int32_t>>& sources) {
  batch_ = 0;  // until this prefill succeeds, there is no batch to step
  const i64 B = static_cast<i64>(prompts.size()), V = model_.vocab();
  if (B < 1 || B > max_batch_) fail("Generator::prefill: got ", B, " prompts, expected 1 to ", max_batch_);
  const i64 longest = check_sequences(prompts, "prompt", max_len_, "max_len", V);
  if (encoder_decoder_) {
    if (static_cast<i64>(sources.size()) != B)
      fail("Generator::prefill: an encoder-decoder model needs one source per prompt, got ", sources.size(),
           " sources for ", B, " prompts");
    src_len_ = check_sequences(sources, "source", max_src_len_, "max_src_len", V);
    pad_into(ids_, sources, src_len_);
    for (i64 b = 0; b < B; ++b)
      src_lengths_[b] = static_cast<std::int32_t>(sources[static_cast<std::size_t>(b)].size());
    model_.embed(ids_, B, src_len_, nullptr, memory_);
    AttentionMask src_mask;
    src_mask.valid_lengths = {src_lengths_, static_cast<std::size_t>(B)};
    model_.encoder()->forward(memory_, B, src_len_, src_mask, workspace_);
    model_.decoder()->project_memory(memory_, B, src_len_, memory_caches_, workspace_);
  } else if (!sources.empty()) {
    fail("Generator::prefill: a decoder-only model takes no sources");
  }

  batch_ = B;
  pad_into(ids_, prompts, longest);
  for (i64 b = 0; b < B; ++b) {
    lengths_[b] = 0;
    visible_[b] = static_cast<std::int32_t>(prompts[static_cast<std::size_t>(b)].size());
  }
  AttentionMask mask;
  mask.causal = true;
  mask.valid_lengths = {visible_, static_cast<std::size_t>(B)};
  try {
    return run_tokens(ids_, longest, mask, longest);
  } catch (...) {
    batch_ = 0;
    throw;
  }
}

std::span<const float> Generator::step(std::span<const std::int32_t> tokens) {
  if (batch_ == 0) fail("Generator::step: no batch; call prefill first");
  if (static_cast<i64>(tokens.size()) != batch_)
    fail("Generator::step: got ", tokens.size(), " tokens for a batch of ", batch_, " sequences");
  i64 kv_len = 0;
  for (i64 b = 0; b < batch_; ++b) {
    if (lengths_[b] + 1 > max_len_)
      fail("Generator::step: sequence ", b, " already holds ", lengths_[b],
           " tokens; one more would outgrow the cache of max_len ", max_len_);
    if (tokens[static_cast<std::size_t>(b)] < 0 || tokens[static_cast<std::size_t>(b)] >= model_.vocab())
      fail("Generator::step: token ", b, " is id ", tokens[static_cast<std::size_t>(b)],
           ", outside the vocabulary [0, ", model_.vocab(), ")");
    visible_[b] = lengths_[b] + 1;
    kv_len = std::max<i64>(kv_len, visible_[b]);
  }
  std::copy(tokens.begin(), tokens.end(), ids_);
  AttentionMask mask;  // one query per sequence: it sees its own keys, no causal mask needed
  mask.valid_lengths = {visible_, static_cast<std::size_t>(batch_)};
  return run_tokens(ids_, 1, mask, kv_len);
}

void Generator::set_lengths(std::span<const std::int32_t> lengths) {
  const i64 B = static_cast<i64>(lengths.size());
  if (B < 1 || B > max_batch_) fail("Generator::set_lengths: got ", B, " lengths, expected 1 to ", max_batch_);
  if (encoder_decoder_ && B != batch_)
    fail("Generator::set_lengths: an encoder-decoder model keeps the batch of ", batch_, " of its last prefill, got ",
         B);
  for (i64 b = 0; b < B; ++b)
    if (lengths[static_cast<std::size_t>(b)] < 1 || lengths[static_cast<std::size_t>(b)] > max_len_)
      fail("Generator::set_lengths: length ", b, " is ", lengths[static_cast<std::size_t>(b)], ", outside [1, ",
           max_len_, "]");
  std::copy(lengths.begin(), lengths.end(), lengths_);
  batch_ = B;
}

std::span<const float> Generator::run_tokens(const std::int32_t* ids, i64 new_len, const AttentionMask& self_mask,
                                             i64 kv_len) {
  const i64 B = batch_, d = model_.d_model(), V = model_.vocab();
  model_.embed(ids, B, new_len, lengths_, x_);
  if (encoder_decoder_) {
    AttentionMask memory_mask;
    memory_mask.valid_lengths = {src_lengths_, static_cast<std::size_t>(B)};
    model_.decoder()->forward_cached(x_, B, new_len, lengths_, self_caches_, kv_len, self_mask, memory_caches_,
                                     src_len_, memory_mask, workspace_);
  } else {
    model_.encoder()->forward_cached(x_, B, new_len, lengths_, self_caches_, kv_len, self_mask, workspace_);
  }
  // Each sequence's last real token: visible_[b] keys end with it.
  for (i64 b = 0; b < B; ++b) {
    const i64 row = visible_[b] - 1 - lengths_[b];
    std::copy_n(x_ + (b * new_len + row) * d, d, last_ + b * d);
    lengths_[b] = visible_[b];
  }
  model_.project_logits(last_, B, logits_);
  return {logits_, static_cast<std::size_t>(B * V)};
}

std::vector<std::vector<std::int32_t>> Generator::generate(const std::vector<std::vector<std::int32_t>>& prompts,
                                                           i64 max_new, std::int32_t eos,
                                                           const std::vector<std::vector<std::int32_t>>& sources) {
  if (max_new < 0) fail("Generator::generate: max_new must be >= 0, got ", max_new);
  for (std::size_t b = 0; b < prompts.size(); ++b)
    if (static_cast<i64>(prompts[b].size()) + max_new - 1 > max_len_)
      fail("Generator::generate: prompt ", b, " has ", prompts[b].size(), " tokens; with max_new ", max_new,
           " it would outgrow the cache of max_len ", max_len_);
  const std::size_t B = prompts.size();
  std::vector<std::vector<std::int32_t>> out(B);
  if (max_new == 0) return out;
  std::span<const float> logits = prefill(prompts, sources);
  const i64 V = model_.vocab();
  std::vector<std::int32_t> next(B);
  std::vector<bool> done(B, false);
  for (i64 n = 0; n < max_new; ++n) {
    bool all_done = true;
    for (std::size_t b = 0; b < B; ++b) {
      const float* row = logits.data() + static_cast<i64>(b) * V;
      next[b] = static_cast<std::int32_t>(std::max_element(row, row + V) - row);  // first maximum, as torch.argmax
      if (!done[b]) {
        out[b].push_back(next[b]);
        done[b] = next[b] == eos;
      }
      all_done = all_done && done[b];
    }
    if (all_done || n + 1 == max_new) break;
    logits = step(next);
  }
  return out;
}

}  // namespace engine
