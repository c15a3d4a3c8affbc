// Scaled dot-product attention: out = softmax(Q·Kᵀ·scale + masks)·V, per batch and head.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/arena.hpp"
#include "engine/ops.hpp"
#include "engine/tensor.hpp"

namespace engine {

// Masks, alone or together. None is ever expanded into a [B, H, Sq, Sk] tensor. A query row whose
// keys are all masked yields zeros (as PyTorch's newer SDPA does; the seed's -inf approach and
// torch 1.13's nn.MultiheadAttention give NaN there).
struct AttentionMask {
  // Causal: query row i sees keys j <= i + causal_offset (0 for self-attention; Sk - Sq for a
  // query block that continues a cache of Sk - Sq earlier positions).
  bool causal = false;
  std::int64_t causal_offset = 0;
  // The masks below are borrowed views; an empty one is absent. Their sizes are checked against
  // the shapes they meet (an engine::Error names the mask, the expected and the actual size).
  // Key padding as lengths: keys j >= valid_lengths[b] are ignored, 0 <= valid_lengths[b] <= Sk. [B]
  std::span<const std::int32_t> valid_lengths;
  // Key padding as bools: key_padding[b * Sk + j] == true means key j is ignored (PyTorch's
  // key_padding_mask). [B, Sk]
  std::span<const bool> key_padding;
  // Attention mask as bools, nn.MultiheadAttention's convention: attn_mask[i * Sk + j] == true means
  // query i may NOT attend to key j. [Sq, Sk] (F.scaled_dot_product_attention uses the opposite
  // convention.)
  std::span<const bool> attn_mask;
  // Attention mask as an additive float [Sq, Sk] (e.g. -inf above the diagonal). At most one of
  // attn_mask and attn_bias may be given.
  std::span<const float> attn_bias;
};

// Throws engine::Error when a mask's size disagrees with batch x q_len x k_len, a valid length
// lies outside [0, k_len], or both attention-mask forms are given. `who` and `name` start the
// message ("Session::encode", "src_mask"). Attention calls it; callers may check earlier.
void check_attention_mask(const AttentionMask& mask, std::int64_t batch, std::int64_t q_len, std::int64_t k_len,
                          const char* who, const char* name);

enum class AttentionPath {
  automatic,     // materialized while its 64 x Sk score block fits in L2 (Sk <= 4096), else fused
  materialized,  // scores for a block of query rows via GEMM, masked softmax, then P·V via GEMM
  fused,         // flash-style: query tiles against key tiles with an online softmax; never holds
                 // a row of Sk scores, skips key tiles that are entirely masked
};

// q [B, H, Sq, dk], k [B, H, Sk, dk], v [B, H, Sk, dv], out [B, H, Sq, dv]: any strides, except that
// the last dimension of each must be contiguous (stride 1), so heads split out of [B, S, H·dk] with
// TensorView::split + transposed are used in place. scale <= 0 means 1/sqrt(dk). Work is split over
// batch x head x query blocks; the result is bitwise identical for every thread count.
// Throws engine::Error naming the tensor and the expected and actual shape on bad input.
// Scratch: each thread needs O(64 x Sk) floats on the materialized path and O(64 x (256 + dv)) on
// the fused one, cache-line aligned. With `workspace`, it comes from that arena (one allocation,
// released before returning; an arena too small is an engine::Error); without, from per-thread
// buffers that grow on first use.
void scaled_dot_product_attention(const TensorView& q, const TensorView& k, const TensorView& v,
                                  const TensorView& out, const AttentionMask& mask = {}, float scale = 0.0f,
                                  AttentionPath path = AttentionPath::automatic, Arena* workspace = nullptr);

// Bytes of arena that scaled_dot_product_attention() needs for these views with num_threads()
// threads.
std::size_t attention_workspace_bytes(const TensorView& q, const TensorView& k, const TensorView& v,
                                      AttentionPath path = AttentionPath::automatic);

}  // namespace engine

namespace engine {

// nn.MultiheadAttention's parameters, PyTorch's layout (state_dict names in comments). Borrowed
// for the constructor only: the weights are packed into the layer.
struct MultiheadAttentionWeights {
  const float* in_proj_weight = nullptr;   // in_proj_weight  [3·d, d]: rows W_q | W_k | W_v
  const float* in_proj_bias = nullptr;     // in_proj_bias    [3·d], or null
  const float* out_proj_weight = nullptr;  // out_proj.weight [d, d]
  const float* out_proj_bias = nullptr;    // out_proj.bias   [d], or null
};

// Keys and values kept across calls for incremental decoding, one pair per attention layer:
// k and v are each [batch, heads, capacity, d_k], contiguous. Position p of sequence b, head h is
// row (b·heads + h)·capacity + p.
struct KvCache {
  float* k = nullptr;
  float* v = nullptr;
  std::int64_t capacity = 0;
};

// Multi-head attention: project Q, K, V, split d_model into heads x d_k, attend per head, merge,
// project out. Inputs and outputs are batch-first [B, S, d_model] rows, contiguous.
class MultiheadAttention {
 public:
  enum class Kind {
    self_attention,   // query = key = value: Q, K and V in one GEMM over the packed [3·d, d] weight
    cross_attention,  // Q from the query input, K and V from the memory (one [2·d, d] GEMM)
  };

  MultiheadAttention(Kind kind, std::int64_t d_model, std::int64_t heads, const MultiheadAttentionWeights& w);

  std::int64_t d_model() const { return d_; }
  std::int64_t heads() const { return heads_; }

  // Floats of scratch forward() needs for these sizes.
  std::size_t workspace_floats(std::int64_t batch, std::int64_t q_len, std::int64_t kv_len) const;

  // out [B, Sq, d] = attention(query [B, Sq, d], memory [B, Sk, d]); for self-attention memory must
  // be null (Sk = Sq). mask as for scaled_dot_product_attention. workspace holds at least
  // workspace_floats(B, Sq, Sk) floats, 64-byte aligned preferred; out must not alias the inputs.
  void forward(const float* query, const float* memory, std::int64_t batch, std::int64_t q_len, std::int64_t kv_len,
               const AttentionMask& mask, float* out, float* workspace,
               AttentionPath path = AttentionPath::automatic) const;

  // Self-attention of new tokens against a cache. x [B, T, d]: sequence b's tokens take positions
  // start[b] .. start[b] + T - 1, where their keys and values are written; then each query
  // attends to cache positions [0, kv_len) under `mask` (the caller's causal / valid_lengths say
  // which of them each sequence has). Workspace: workspace_floats(B, T, T).
  void forward_cached(const float* x, std::int64_t batch, std::int64_t new_len, const std::int32_t* start,
                      const KvCache& cache, std::int64_t kv_len, const AttentionMask& mask, float* out,
                      float* workspace) const;
  // Cross-attention: memory [B, Sm, d]'s keys and values into cache positions [0, Sm), once per
  // source. Workspace: workspace_floats(B, 1, Sm).
  void project_memory(const float* memory, std::int64_t batch, std::int64_t memory_len, const KvCache& cache,
                      float* workspace) const;
  // Cross-attention of query [B, T, d] against keys and values project_memory() left in the cache.
  // Workspace: workspace_floats(B, T, 1).
  void forward_from_cache(const float* query, std::int64_t batch, std::int64_t q_len, const KvCache& cache,
                          std::int64_t memory_len, const AttentionMask& mask, float* out, float* workspace) const;

 private:
  Kind kind_;
  std::int64_t d_, heads_;
  PackedMatrix w_q_or_qkv_;  // self: [3·d, d] packed; cross: W_q [d, d]
  PackedMatrix w_kv_;        // cross only: [2·d, d]
  PackedMatrix w_out_;
  std::vector<float> b_qkv_, b_out_;  // zeros where PyTorch has no bias
};

}  // namespace engine
