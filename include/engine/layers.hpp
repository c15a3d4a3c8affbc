// The classic Transformer's building blocks above attention: sinusoidal positional encoding, the
// feed-forward block, and encoder / decoder layers equivalent to nn.TransformerEncoderLayer and
// nn.TransformerDecoderLayer. Activations are batch-first [B, S, d_model] rows, contiguous.
// Weights are PyTorch's (state_dict layouts); a layer packs them when it is built and is then
// read-only, so one layer may be used by several threads at once with separate workspaces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "engine/attention.hpp"
#include "engine/ops.hpp"

namespace engine {

// ---- sinusoidal positional encoding -------------------------------------------------------------

enum class PositionalLayout {
  // pe[p, 2i] = sin(p / 10000^(2i/d)), pe[p, 2i+1] = cos(p / 10000^(2i/d)): the PyTorch tutorial,
  // the seed, OpenNMT-py.
  interleaved,
  // pe[p, i] = sin(p·w_i), pe[p, d/2 + i] = cos(p·w_i), w_i = 10000^(-i / (d/2 - 1)):
  // tensor2tensor and CTranslate2.
  concatenated,
};

// The table for positions first_position .. first_position + max_len - 1, computed once.
class SinusoidalPositionalEncoding {
 public:
  SinusoidalPositionalEncoding(std::int64_t d_model, std::int64_t max_len,
                               PositionalLayout layout = PositionalLayout::interleaved, std::int64_t first_position = 0);

  std::int64_t d_model() const { return d_; }
  std::int64_t max_len() const { return max_len_; }
  const float* table() const { return table_.data(); }  // [max_len, d_model]

  // x[b, s, :] += pe[start + s, :] for s < seq_len. A sequence past max_len is an engine::Error.
  void add(float* x, std::int64_t batch, std::int64_t seq_len, std::int64_t start = 0) const;

 private:
  std::int64_t d_, max_len_;
  std::vector<float> table_;
};

// ---- feed-forward ---------------------------------------------------------------------------------

struct LinearWeights {
  const float* weight = nullptr;  // [out_features, in_features] (nn.Linear.weight)
  const float* bias = nullptr;    // [out_features], or null
};

// linear2(act(linear1(x))), bias and activation fused into the first GEMM's epilogue.
class FeedForward {
 public:
  FeedForward(std::int64_t d_model, std::int64_t d_ff, Activation activation, const LinearWeights& linear1,
              const LinearWeights& linear2);
  std::int64_t d_model() const { return d_; }
  std::int64_t d_ff() const { return d_ff_; }
  Activation activation() const { return activation_; }
  std::size_t workspace_floats(std::int64_t rows) const { return static_cast<std::size_t>(rows * d_ff_); }
  // out[rows, d] = FFN(x[rows, d]); workspace holds workspace_floats(rows). out may not alias x.
  void forward(const float* x, std::int64_t rows, float* out, float* workspace) const;

 private:
  std::int64_t d_, d_ff_;
  Activation activation_;
  PackedMatrix w1_, w2_;
  std::vector<float> b1_, b2_;
};

// ---- encoder and decoder layers ------------------------------------------------------------------

struct LayerNormWeights {
  const float* weight = nullptr;  // [d_model] (gamma)
  const float* bias = nullptr;    // [d_model] (beta)
};

struct LayerConfig {
  std::int64_t d_model = 512;
  std::int64_t heads = 8;
  std::int64_t d_ff = 2048;
  Activation activation = Activation::relu;  // relu or gelu_erf (PyTorch's "gelu")
  bool norm_first = false;                   // pre-LN when true, post-LN (PyTorch's default) when false
  float layer_norm_eps = 1e-5f;
};

struct EncoderLayerWeights {
  MultiheadAttentionWeights self_attn;
  LinearWeights linear1, linear2;
  LayerNormWeights norm1, norm2;
};

// nn.TransformerEncoderLayer (batch_first, eval):
//   post-LN: x = norm1(x + self_attn(x));  x = norm2(x + ff(x))
//   pre-LN:  x = x + self_attn(norm1(x));  x = x + ff(norm2(x))
class EncoderLayer {
 public:
  EncoderLayer(const LayerConfig& config, const EncoderLayerWeights& weights);
  // From sublayers already built (their weights packed): a caller that makes the weights as it goes
  // never holds all of them unpacked at once. Sizes must agree with config.
  EncoderLayer(const LayerConfig& config, MultiheadAttention self_attn, FeedForward ff, const LayerNormWeights& norm1,
               const LayerNormWeights& norm2);
  const LayerConfig& config() const { return config_; }
  std::size_t workspace_floats(std::int64_t batch, std::int64_t seq_len) const;
  // x [B, S, d] is updated in place; mask applies to the self-attention.
  void forward(float* x, std::int64_t batch, std::int64_t seq_len, const AttentionMask& mask, float* workspace,
               AttentionPath path = AttentionPath::automatic) const;
  // The same for new tokens x [B, T, d] whose self-attention goes through a cache (see
  // MultiheadAttention::forward_cached). Workspace: workspace_floats(B, T).
  void forward_cached(float* x, std::int64_t batch, std::int64_t new_len, const std::int32_t* start,
                      const KvCache& cache, std::int64_t kv_len, const AttentionMask& mask, float* workspace) const;

 private:
  // The layer around a self-attention `attend(input, output, scratch)`.
  template <class Attend>
  void run(float* x, std::int64_t rows, float* workspace, const Attend& attend) const;

  LayerConfig config_;
  MultiheadAttention self_attn_;
  FeedForward ff_;
  std::vector<float> norm1_w_, norm1_b_, norm2_w_, norm2_b_;
};

struct DecoderLayerWeights {
  MultiheadAttentionWeights self_attn, cross_attn;  // cross_attn: PyTorch's "multihead_attn"
  LinearWeights linear1, linear2;
  LayerNormWeights norm1, norm2, norm3;
};

// nn.TransformerDecoderLayer (batch_first, eval):
//   post-LN: x = norm1(x + self_attn(x)); x = norm2(x + cross_attn(x, memory)); x = norm3(x + ff(x))
//   pre-LN:  x = x + self_attn(norm1(x)); x = x + cross_attn(norm2(x), memory); x = x + ff(norm3(x))
class DecoderLayer {
 public:
  DecoderLayer(const LayerConfig& config, const DecoderLayerWeights& weights);
  const LayerConfig& config() const { return config_; }
  std::size_t workspace_floats(std::int64_t batch, std::int64_t tgt_len, std::int64_t memory_len) const;
  // x [B, St, d] updated in place; memory [B, Sm, d]. self_mask applies to the self-attention (e.g.
  // causal, target key padding), memory_mask to the cross-attention (memory key padding).
  void forward(float* x, const float* memory, std::int64_t batch, std::int64_t tgt_len, std::int64_t memory_len,
               const AttentionMask& self_mask, const AttentionMask& memory_mask, float* workspace,
               AttentionPath path = AttentionPath::automatic) const;
  // Incremental decoding: cross-attention keys and values of memory [B, Sm, d] into memory_cache,
  // once per source. Workspace: workspace_floats(B, 1, Sm).
  void project_memory(const float* memory, std::int64_t batch, std::int64_t memory_len, const KvCache& memory_cache,
                      float* workspace) const;
  // New tokens x [B, T, d]: self-attention through self_cache (see
  // MultiheadAttention::forward_cached), cross-attention over memory_cache. Workspace:
  // workspace_floats(B, T, 1).
  void forward_cached(float* x, std::int64_t batch, std::int64_t new_len, const std::int32_t* start,
                      const KvCache& self_cache, std::int64_t kv_len, const AttentionMask& self_mask,
                      const KvCache& memory_cache, std::int64_t memory_len, const AttentionMask& memory_mask,
                      float* workspace) const;

 private:
  // The layer around `self_attend(input, output, scratch)` and `cross_attend(input, output, scratch)`.
  template <class SelfAttend, class CrossAttend>
  void run(float* x, std::int64_t rows, float* workspace, const SelfAttend& self_attend,
           const CrossAttend& cross_attend) const;

  LayerConfig config_;
  MultiheadAttention self_attn_, cross_attn_;
  FeedForward ff_;
  std::vector<float> norm_w_[3], norm_b_[3];
};

}  // namespace engine

namespace engine {

// ---- stacks ------------------------------------------------------------------------------------------

// nn.TransformerEncoder: the layers in order, then an optional final LayerNorm ("norm").
class TransformerEncoder {
 public:
  TransformerEncoder(std::vector<EncoderLayer> layers, const std::optional<LayerNormWeights>& final_norm = std::nullopt,
                     float final_norm_eps = 1e-5f);
  std::size_t num_layers() const { return layers_.size(); }
  std::size_t workspace_floats(std::int64_t batch, std::int64_t seq_len) const;
  // x [B, S, d] updated in place.
  void forward(float* x, std::int64_t batch, std::int64_t seq_len, const AttentionMask& mask, float* workspace,
               AttentionPath path = AttentionPath::automatic) const;
  // EncoderLayer::forward_cached through every layer, layer i with caches[i], then the final norm.
  void forward_cached(float* x, std::int64_t batch, std::int64_t new_len, const std::int32_t* start,
                      std::span<const KvCache> caches, std::int64_t kv_len, const AttentionMask& mask,
                      float* workspace) const;

 private:
  void final_norm(float* x, std::int64_t rows, const char* stack) const;

  std::vector<EncoderLayer> layers_;
  std::vector<float> norm_w_, norm_b_;  // empty: no final norm
  float eps_;
};

// nn.TransformerDecoder: the layers in order, then an optional final LayerNorm ("norm").
class TransformerDecoder {
 public:
  TransformerDecoder(std::vector<DecoderLayer> layers, const std::optional<LayerNormWeights>& final_norm = std::nullopt,
                     float final_norm_eps = 1e-5f);
  std::size_t num_layers() const { return layers_.size(); }
  std::size_t workspace_floats(std::int64_t batch, std::int64_t tgt_len, std::int64_t memory_len) const;
  void forward(float* x, const float* memory, std::int64_t batch, std::int64_t tgt_len, std::int64_t memory_len,
               const AttentionMask& self_mask, const AttentionMask& memory_mask, float* workspace,
               AttentionPath path = AttentionPath::automatic) const;
  // DecoderLayer::project_memory / forward_cached through every layer, layer i with caches[i].
  void project_memory(const float* memory, std::int64_t batch, std::int64_t memory_len,
                      std::span<const KvCache> memory_caches, float* workspace) const;
  void forward_cached(float* x, std::int64_t batch, std::int64_t new_len, const std::int32_t* start,
                      std::span<const KvCache> self_caches, std::int64_t kv_len, const AttentionMask& self_mask,
                      std::span<const KvCache> memory_caches, std::int64_t memory_len,
                      const AttentionMask& memory_mask, float* workspace) const;

 private:
  void final_norm(float* x, std::int64_t rows, const char* stack) const;

  std::vector<DecoderLayer> layers_;
  std::vector<float> norm_w_, norm_b_;
  float eps_;
};

}  // namespace engine
