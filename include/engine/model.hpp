// A whole model of the classic Transformer family, built once from its weights and then read-only:
// one of nn.TransformerEncoderLayer, nn.TransformerEncoder, nn.TransformerDecoderLayer,
// nn.TransformerDecoder or nn.Transformer, with optional sinusoidal positional encoding added to
// its inputs. Tensor names are the module's state_dict() names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/arena.hpp"
#include "engine/layers.hpp"
#include "engine/profile.hpp"

namespace engine {

enum class Architecture { encoder_layer, encoder, decoder_layer, decoder, transformer };
const char* architecture_name(Architecture a);

struct PositionalConfig {
  PositionalLayout layout = PositionalLayout::interleaved;
  std::int64_t max_len = 512;
  std::int64_t first_position = 0;
};

// A language model around the stacks (the seed's TransformerModel): token embedding
// "embedding.weight" [vocab, d] (times sqrt(d_model) when scale_embedding), sinusoidal positions by
// absolute position, the stack under "transformer." (decoder-only: an nn.TransformerEncoder run
// causally, architecture encoder; encoder-decoder: an nn.Transformer sharing the embedding for
// source and target, architecture transformer), and the output projection "linear.weight" [vocab,
// d] (or the embedding itself when tie_weights) plus "linear.bias" [vocab].
struct LanguageModelHead {
  std::int64_t vocab = 0;
  bool scale_embedding = true;
  bool tie_weights = false;
};

struct ModelConfig {
  Architecture architecture = Architecture::encoder;
  LayerConfig layer;                     // d_model, heads, d_ff, activation, norm_first, layer_norm_eps
  std::int64_t num_encoder_layers = 0;   // encoder / transformer (1 for encoder_layer)
  std::int64_t num_decoder_layers = 0;   // decoder / transformer (1 for decoder_layer)
  bool encoder_norm = false;             // a final "norm" after the encoder stack
  bool decoder_norm = false;             // a final "norm" after the decoder stack
  std::optional<PositionalConfig> positional;  // added to src (and tgt) before the first layer
  std::optional<LanguageModelHead> lm;         // set for a language model (needs positional)

  bool has_encoder() const { return architecture == Architecture::encoder_layer || architecture == Architecture::encoder ||
                                    architecture == Architecture::transformer; }
  bool has_decoder() const { return architecture == Architecture::decoder_layer || architecture == Architecture::decoder ||
                                    architecture == Architecture::transformer; }
  // Every tensor the model needs, with its shape, under its state_dict name.
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected_tensors() const;
  // Throws engine::Error naming the field when the configuration is inconsistent.
  void validate() const;
};

class Model {
 public:
  // tensor(name, shape) returns that tensor's float32 data; it is read during construction only.
  using TensorSource = std::function<const float*(const std::string& name, const std::vector<std::int64_t>& shape)>;
  Model(const ModelConfig& config, const TensorSource& tensor);

  const ModelConfig& config() const { return config_; }
  std::int64_t d_model() const { return config_.layer.d_model; }
  bool is_language_model() const { return config_.lm.has_value(); }
  std::int64_t vocab() const { return config_.lm ? config_.lm->vocab : 0; }
  const TransformerEncoder* encoder() const { return encoder_ ? &*encoder_ : nullptr; }
  const TransformerDecoder* decoder() const { return decoder_ ? &*decoder_ : nullptr; }

  // Language models: out [B, S, d] = embedding[ids[b, s]] (x sqrt(d)) + pe[start[b] + s], start
  // null meaning 0. An id outside [0, vocab) or a position past max_len is an engine::Error.
  void embed(const std::int32_t* ids, std::int64_t batch, std::int64_t seq_len, const std::int32_t* start,
             float* out) const;
  // Language models: logits [rows, vocab] = hidden [rows, d] · Wᵀ + bias.
  void project_logits(const float* hidden, std::int64_t rows, float* logits) const;

  std::size_t workspace_floats(std::int64_t batch, std::int64_t src_len, std::int64_t tgt_len) const;

  // Encoder side, in place: src [B, Ss, d] -> the encoder's output (positional encoding first,
  // except in a language model, whose embed() adds the positions).
  void encode(float* src, std::int64_t batch, std::int64_t src_len, const AttentionMask& src_mask,
              float* workspace) const;
  // Decoder side, in place: tgt [B, St, d] -> the decoder's output, attending to memory [B, Sm, d].
  void decode(float* tgt, const float* memory, std::int64_t batch, std::int64_t tgt_len, std::int64_t memory_len,
              const AttentionMask& tgt_mask, const AttentionMask& memory_mask, float* workspace) const;

 private:
  ModelConfig config_;
  std::optional<TransformerEncoder> encoder_;
  std::optional<TransformerDecoder> decoder_;
  std::optional<SinusoidalPositionalEncoding> positional_;
  std::vector<float> embedding_;  // [vocab, d], scaled by sqrt(d) when the config says so
  float embedding_scale_ = 1.0f;
  PackedMatrix head_;             // the output projection, [d -> vocab]
  std::vector<float> head_bias_;  // [vocab]
};

}  // namespace engine

namespace engine {

struct SessionOptions {
  // Refuse (with an engine::Error, before allocating) a session whose arena would exceed this many
  // bytes. 0 means the machine's physical memory: a plan that could only end in the out-of-memory
  // killer is an error, never an attempt.
  std::size_t memory_limit_bytes = 0;
};

// Runs a Model. A session owns one arena, sized once for the largest batch and sequence lengths it
// will see; runs within those sizes take their workspace from it, so the steady state maps no new
// memory. A Model may be shared read-only by several sessions on several threads.
class Session {
 public:
  // max_tgt_len is needed only for models with a decoder.
  // Sizes are checked: each >= 1, batch x length <= 2^31 tokens, lengths within the positional
  // encoding's max_len, and the arena within options.memory_limit_bytes.
  Session(const Model& model, std::int64_t max_batch, std::int64_t max_src_len, std::int64_t max_tgt_len = 0,
          const SessionOptions& options = {});

  const Model& model() const { return model_; }
  std::size_t arena_bytes() const { return arena_.capacity(); }

  // Model::encode / Model::decode with the session's workspace. Sizes past what the session was
  // built for, null inputs, and masks whose sizes disagree with the inputs (see AttentionMask) are
  // an engine::Error naming the argument, the expected and the actual value. A session is used by
  // one thread at a time; several sessions may run one Model at once.
  void encode(float* src, std::int64_t batch, std::int64_t src_len, const AttentionMask& src_mask);
  void decode(float* tgt, const float* memory, std::int64_t batch, std::int64_t tgt_len, std::int64_t memory_len,
              const AttentionMask& tgt_mask, const AttentionMask& memory_mask);

  // Profiling: while on, each encode() / decode() replaces profile() with the records of its ops
  // (per layer and op, see engine/profile.hpp) and last_run_us() with its wall time. Off by
  // default; off, the timers cost one thread-local test per op.
  void set_profiling(bool on) { profiling_ = on; }
  const std::vector<ProfileRecord>& profile() const { return profile_; }
  double last_run_us() const { return last_run_us_; }

 private:
  template <class Run>
  void run_profiled(const Run& run);

  void check(const char* what, std::int64_t value, std::int64_t limit) const;

  const Model& model_;
  std::int64_t max_batch_, max_src_len_, max_tgt_len_;
  Arena arena_;
  float* workspace_ = nullptr;
  bool profiling_ = false;
  std::vector<ProfileRecord> profile_;
  double last_run_us_ = 0;
};

}  // namespace engine
