// Scaled dot-product attention: out = softmax(Q·Kᵀ·scale + masks)·V, per batch and head.
#pragma once

#include <cstdint>

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
  // Key padding as lengths: keys j >= valid_lengths[b] are ignored. [B], or null.
  const std::int32_t* valid_lengths = nullptr;
  // Key padding as bools: key_padding[b * Sk + j] == true means key j is ignored (PyTorch's
  // key_padding_mask). [B, Sk], or null.
  const bool* key_padding = nullptr;
  // Attention mask as bools, nn.MultiheadAttention's convention: attn_mask[i * Sk + j] == true means
  // query i may NOT attend to key j. [Sq, Sk], or null. (F.scaled_dot_product_attention uses the
  // opposite convention.)
  const bool* attn_mask = nullptr;
  // Attention mask as an additive float [Sq, Sk] (e.g. -inf above the diagonal), or null. At most
  // one of attn_mask and attn_bias may be given.
  const float* attn_bias = nullptr;
};

enum class AttentionPath {
  automatic,     // fused for long key sequences, materialized for short ones
  materialized,  // scores for a block of query rows via GEMM, masked softmax, then P·V via GEMM
  fused,         // flash-style: query tiles against key tiles with an online softmax; never holds
                 // a row of Sk scores, skips key tiles that are entirely masked
};

// q [B, H, Sq, dk], k [B, H, Sk, dk], v [B, H, Sk, dv], out [B, H, Sq, dv]: any strides, except that
// the last dimension of each must be contiguous (stride 1), so heads split out of [B, S, H·dk] with
// TensorView::split + transposed are used in place. scale <= 0 means 1/sqrt(dk). Work is split over
// batch x head x query blocks; the result is bitwise identical for every thread count.
// Throws engine::Error naming the tensor and the expected and actual shape on bad input.
void scaled_dot_product_attention(const TensorView& q, const TensorView& k, const TensorView& v,
                                  const TensorView& out, const AttentionMask& mask = {}, float scale = 0.0f,
                                  AttentionPath path = AttentionPath::automatic);

}  // namespace engine
