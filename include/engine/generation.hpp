// Incremental decoding for language models (ModelConfig::lm): prefill a batch of prompts, then
// step one token per sequence, with keys and values cached in the generator's arena.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/arena.hpp"
#include "engine/model.hpp"

namespace engine {

class Generator {
 public:
  // Sized once: max_batch sequences of up to max_len tokens each (prompt plus generated; at most the
  // positional encoding's max_len), and for encoder-decoder models sources of up to max_src_len
  // tokens. Everything (caches, activations, logits) lives in one arena; options as for Session.
  Generator(const Model& model, std::int64_t max_batch, std::int64_t max_len, std::int64_t max_src_len = 0,
            const SessionOptions& options = {});

  const Model& model() const { return model_; }
  std::size_t arena_bytes() const { return arena_.capacity(); }
  std::int64_t batch() const { return batch_; }
  // Tokens cached per sequence (prompt plus steps so far).
  std::span<const std::int32_t> lengths() const { return {lengths_, static_cast<std::size_t>(batch_)}; }

  // Starts a batch: runs every prompt (each at least one token; lengths may differ) and returns the
  // logits [batch, vocab] of each prompt's last token. Encoder-decoder models take one source per
  // prompt, encoded once; their cross-attention keys and values are cached for the steps.
  std::span<const float> prefill(const std::vector<std::vector<std::int32_t>>& prompts,
                                 const std::vector<std::vector<std::int32_t>>& sources = {});
  // Feeds one token per sequence (tokens [batch]) and returns the logits [batch, vocab] that follow.
  // A sequence that would outgrow max_len is an engine::Error naming it.
  std::span<const float> step(std::span<const std::int32_t> tokens);

  // Declares the first lengths[b] cache positions of sequence b filled, without computing them:
  // for benchmarks that time a step at a given context length, and for callers that fill or
  // restore the caches themselves. A decoder-only batch of lengths.size() sequences; an
  // encoder-decoder model must keep the batch (and source) of its last prefill.
  void set_lengths(std::span<const std::int32_t> lengths);

  // Greedy generation: prefill, then the argmax token step by step, up to max_new tokens per
  // sequence or until it emits eos (kept in the output; eos < 0 means none). Returns the new tokens
  // of each sequence; a finished sequence stops growing while the others go on.
  std::vector<std::vector<std::int32_t>> generate(const std::vector<std::vector<std::int32_t>>& prompts,
                                                  std::int64_t max_new, std::int32_t eos = -1,
                                                  const std::vector<std::vector<std::int32_t>>& sources = {});

 private:
  std::span<const float> run_tokens(const std::int32_t* ids, std::int64_t new_len, const AttentionMask& self_mask,
                                    std::int64_t kv_len);

  const Model& model_;
  bool encoder_decoder_;
  std::int64_t max_batch_, max_len_, max_src_len_;
  std::int64_t batch_ = 0, src_len_ = 0;  // the current batch's size and padded source length
  Arena arena_;
  std::vector<KvCache> self_caches_, memory_caches_;  // one per layer, views into the arena
  float* x_ = nullptr;          // [max_batch, max_len, d]: the tokens being run
  float* memory_ = nullptr;     // [max_batch, max_src_len, d]: the encoded source
  float* last_ = nullptr;       // [max_batch, d]: each sequence's last hidden state
  float* logits_ = nullptr;     // [max_batch, vocab]
  float* workspace_ = nullptr;  // the stacks' scratch
  std::int32_t* ids_ = nullptr;          // [max_batch, max(max_len, max_src_len)]: padded ids
  std::int32_t* lengths_ = nullptr;      // [max_batch]: tokens cached per sequence
  std::int32_t* src_lengths_ = nullptr;  // [max_batch]
  std::int32_t* visible_ = nullptr;      // [max_batch]: keys each query may see this call
};

}  // namespace engine
