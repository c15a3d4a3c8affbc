// Multi-head attention with nn.MultiheadAttention's weights. The forward pass reads like the seed:
//   qkv  = x · in_proj_weightᵀ + in_proj_bias          // (B·S, 3·d)
//   q, k, v = split heads of qkv with strides           // (B, H, S, d_k) views, no copies
//   ctx  = softmax(q·kᵀ/√d_k + masks)·v                 // written straight into (B, S, H·d_k)
//   out  = ctx · out_proj.weightᵀ + out_proj.bias       // (B·S, d)
#include <algorithm>

#include "engine/attention.hpp"
#include "engine/core/profile_scope.hpp"
#include "engine/error.hpp"

namespace engine {
namespace {
using i64 = std::int64_t;

// [B, S, H·dk] rows at row stride `row_stride` (floats), starting at `base`, as [B, H, S, dk].
TensorView heads_view(const float* base, i64 B, i64 S, i64 H, i64 dk, i64 row_stride) {
  return TensorView(const_cast<float*>(base), {B, S, H * dk}, {S * row_stride, row_stride, 1})
      .split(2, H, dk)
      .transposed(1, 2);
}
// Nominal attention cost: two GEMMs over every (query, key) pair, halved under a causal mask; q, k,
// v read and the output written once.
double attention_flops(i64 B, i64 Sq, i64 Sk, i64 d, bool causal) {
  return 4.0 * static_cast<double>(B * Sq) * static_cast<double>(Sk) * static_cast<double>(d) * (causal ? 0.5 : 1.0);
}
double attention_bytes(i64 B, i64 Sq, i64 Sk, i64 d) { return 4.0 * static_cast<double>(B * d) * (2.0 * Sq + 2.0 * Sk); }

// A cache's first kv_len positions as [B, H, kv_len, dk].
TensorView cache_view(float* base, i64 B, i64 H, i64 kv_len, i64 dk, i64 capacity) {
  return TensorView(base, {B, H, kv_len, dk}, {H * capacity * dk, capacity * dk, dk, 1});
}

// rows [B, T, H·dk] at row stride `row_stride` -> cache positions start[b] + t (start null: 0).
void scatter_to_cache(const float* rows, i64 row_stride, i64 B, i64 T, i64 H, i64 dk, const std::int32_t* start,
                      float* cache, i64 capacity) {
  for (i64 b = 0; b < B; ++b)
    for (i64 t = 0; t < T; ++t) {
      const float* src = rows + (b * T + t) * row_stride;
      const i64 p = (start != nullptr ? start[b] : 0) + t;
      for (i64 h = 0; h < H; ++h) std::copy_n(src + h * dk, dk, cache + ((b * H + h) * capacity + p) * dk);
    }
}

}  // namespace

MultiheadAttention::MultiheadAttention(Kind kind, i64 d_model, i64 heads, const MultiheadAttentionWeights& w)
    : kind_(kind), d_(d_model), heads_(heads) {
  if (d_model < 1 || heads < 1) fail("MultiheadAttention: d_model and heads must be >= 1, got ", d_model, " and ", heads);
  if (d_model % heads != 0)
    fail("MultiheadAttention: d_model (", d_model, ") must be divisible by the number of heads (", heads, ")");
  if (w.in_proj_weight == nullptr) fail("MultiheadAttention: in_proj_weight is null");
  if (w.out_proj_weight == nullptr) fail("MultiheadAttention: out_proj.weight is null");
  const i64 d = d_model;
  if (kind == Kind::self_attention) {
    w_q_or_qkv_ = pack_matrix(d, 3 * d, w.in_proj_weight, d, Transpose::yes);
  } else {
    w_q_or_qkv_ = pack_matrix(d, d, w.in_proj_weight, d, Transpose::yes);
    w_kv_ = pack_matrix(d, 2 * d, w.in_proj_weight + d * d, d, Transpose::yes);
  }
  w_out_ = pack_matrix(d, d, w.out_proj_weight, d, Transpose::yes);
  b_qkv_.assign(static_cast<std::size_t>(3 * d), 0.0f);
  b_out_.assign(static_cast<std::size_t>(d), 0.0f);
  if (w.in_proj_bias != nullptr) std::copy_n(w.in_proj_bias, 3 * d, b_qkv_.begin());
  if (w.out_proj_bias != nullptr) std::copy_n(w.out_proj_bias, d, b_out_.begin());
}

std::size_t MultiheadAttention::workspace_floats(i64 batch, i64 q_len, i64 kv_len) const {
  // self: qkv (B·S, 3d) + ctx (B·S, d); cross: q (B·Sq, d) + kv (B·Sk, 2d) + ctx (B·Sq, d)
  const i64 floats = kind_ == Kind::self_attention ? batch * q_len * 4 * d_
                                                   : batch * q_len * 2 * d_ + batch * kv_len * 2 * d_;
  return static_cast<std::size_t>(floats);
}

void MultiheadAttention::forward(const float* query, const float* memory, i64 batch, i64 q_len, i64 kv_len,
                                 const AttentionMask& mask, float* out, float* workspace, AttentionPath path) const {
  if (query == nullptr || out == nullptr || workspace == nullptr)
    fail("MultiheadAttention::forward: ", query == nullptr ? "query" : out == nullptr ? "out" : "workspace", " is null");
  if (batch < 1 || q_len < 1 || kv_len < 1)
    fail("MultiheadAttention::forward: batch, q_len and kv_len must be >= 1, got ", batch, ", ", q_len, ", ", kv_len);
  const i64 d = d_, H = heads_, dk = d_ / heads_;
  if (kind_ == Kind::self_attention) {
    if (memory != nullptr) fail("MultiheadAttention::forward: self-attention takes no memory (pass null)");
    if (kv_len != q_len)
      fail("MultiheadAttention::forward: self-attention needs kv_len == q_len, got ", kv_len, " and ", q_len);
    float* qkv = workspace;                  // (B·S, 3·d)
    float* ctx = qkv + batch * q_len * 3 * d;  // (B·S, d)
    const i64 rows = batch * q_len;
    {
      profile::OpScope scope("qkv_projection", profile::gemm_flops(rows, 3 * d, d), profile::gemm_bytes(rows, 3 * d, d));
      gemm_packed(rows, query, d, w_q_or_qkv_, qkv, 3 * d, 0.0f, {b_qkv_.data(), Activation::none});
    }
    {
      profile::OpScope scope("attention", attention_flops(batch, q_len, q_len, d, mask.causal),
                             attention_bytes(batch, q_len, q_len, d));
      scaled_dot_product_attention(heads_view(qkv, batch, q_len, H, dk, 3 * d),
                                   heads_view(qkv + d, batch, q_len, H, dk, 3 * d),
                                   heads_view(qkv + 2 * d, batch, q_len, H, dk, 3 * d),
                                   heads_view(ctx, batch, q_len, H, dk, d), mask, 0.0f, path);
    }
    profile::OpScope scope("output_projection", profile::gemm_flops(rows, d, d), profile::gemm_bytes(rows, d, d));
    gemm_packed(rows, ctx, d, w_out_, out, d, 0.0f, {b_out_.data(), Activation::none});
    return;
  }
  if (memory == nullptr) fail("MultiheadAttention::forward: cross-attention needs the memory (got null)");
  float* q = workspace;                     // (B·Sq, d)
  float* kv = q + batch * q_len * d;        // (B·Sk, 2·d): K | V
  float* ctx = kv + batch * kv_len * 2 * d;  // (B·Sq, d)
  const i64 q_rows = batch * q_len, kv_rows = batch * kv_len;
  {
    profile::OpScope scope("cross_q_projection", profile::gemm_flops(q_rows, d, d), profile::gemm_bytes(q_rows, d, d));
    gemm_packed(q_rows, query, d, w_q_or_qkv_, q, d, 0.0f, {b_qkv_.data(), Activation::none});
  }
  {
    profile::OpScope scope("cross_kv_projection", profile::gemm_flops(kv_rows, 2 * d, d),
                           profile::gemm_bytes(kv_rows, 2 * d, d));
    gemm_packed(kv_rows, memory, d, w_kv_, kv, 2 * d, 0.0f, {b_qkv_.data() + d, Activation::none});
  }
  {
    profile::OpScope scope("cross_attention", attention_flops(batch, q_len, kv_len, d, false),
                           attention_bytes(batch, q_len, kv_len, d));
    scaled_dot_product_attention(heads_view(q, batch, q_len, H, dk, d), heads_view(kv, batch, kv_len, H, dk, 2 * d),
                                 heads_view(kv + d, batch, kv_len, H, dk, 2 * d),
                                 heads_view(ctx, batch, q_len, H, dk, d), mask, 0.0f, path);
  }
  profile::OpScope scope("cross_output_projection", profile::gemm_flops(q_rows, d, d), profile::gemm_bytes(q_rows, d, d));
  gemm_packed(q_rows, ctx, d, w_out_, out, d, 0.0f, {b_out_.data(), Activation::none});
}

void MultiheadAttention::forward_cached(const float* x, i64 batch, i64 new_len, const std::int32_t* start,
                                        const KvCache& cache, i64 kv_len, const AttentionMask& mask, float* out,
                                        float* workspace) const {
  if (kind_ != Kind::self_attention) fail("MultiheadAttention::forward_cached: needs a self-attention layer");
  if (x == nullptr || start == nullptr || cache.k == nullptr || cache.v == nullptr || out == nullptr ||
      workspace == nullptr)
    fail("MultiheadAttention::forward_cached: null argument");
  if (batch < 1 || new_len < 1 || kv_len < 1 || kv_len > cache.capacity)
    fail("MultiheadAttention::forward_cached: need batch, new_len >= 1 and 1 <= kv_len <= capacity ", cache.capacity,
         ", got ", batch, ", ", new_len, ", ", kv_len);
  for (i64 b = 0; b < batch; ++b)
    if (start[b] < 0 || start[b] + new_len > cache.capacity)
      fail("MultiheadAttention::forward_cached: sequence ", b, " would hold positions ", start[b], "..",
           start[b] + new_len - 1, " of a cache of ", cache.capacity);
  const i64 d = d_, H = heads_, dk = d_ / heads_;
  float* qkv = workspace;                      // (B·T, 3·d)
  float* ctx = qkv + batch * new_len * 3 * d;  // (B·T, d)
  const i64 rows = batch * new_len;
  {
    profile::OpScope scope("qkv_projection", profile::gemm_flops(rows, 3 * d, d), profile::gemm_bytes(rows, 3 * d, d));
    gemm_packed(rows, x, d, w_q_or_qkv_, qkv, 3 * d, 0.0f, {b_qkv_.data(), Activation::none});
    scatter_to_cache(qkv + d, 3 * d, batch, new_len, H, dk, start, cache.k, cache.capacity);
    scatter_to_cache(qkv + 2 * d, 3 * d, batch, new_len, H, dk, start, cache.v, cache.capacity);
  }
  {
    profile::OpScope scope("attention", attention_flops(batch, new_len, kv_len, d, false),
                           attention_bytes(batch, new_len, kv_len, d));
    scaled_dot_product_attention(heads_view(qkv, batch, new_len, H, dk, 3 * d),
                                 cache_view(cache.k, batch, H, kv_len, dk, cache.capacity),
                                 cache_view(cache.v, batch, H, kv_len, dk, cache.capacity),
                                 heads_view(ctx, batch, new_len, H, dk, d), mask);
  }
  profile::OpScope scope("output_projection", profile::gemm_flops(rows, d, d), profile::gemm_bytes(rows, d, d));
  gemm_packed(rows, ctx, d, w_out_, out, d, 0.0f, {b_out_.data(), Activation::none});
}

void MultiheadAttention::project_memory(const float* memory, i64 batch, i64 memory_len, const KvCache& cache,
                                        float* workspace) const {
  if (kind_ != Kind::cross_attention) fail("MultiheadAttention::project_memory: needs a cross-attention layer");
  if (memory == nullptr || cache.k == nullptr || cache.v == nullptr || workspace == nullptr)
    fail("MultiheadAttention::project_memory: null argument");
  if (batch < 1 || memory_len < 1 || memory_len > cache.capacity)
    fail("MultiheadAttention::project_memory: memory_len ", memory_len, " must be in [1, capacity ", cache.capacity, "]");
  const i64 d = d_, H = heads_, dk = d_ / heads_;
  float* kv = workspace;  // (B·Sm, 2·d): K | V
  const i64 rows = batch * memory_len;
  profile::OpScope scope("cross_kv_projection", profile::gemm_flops(rows, 2 * d, d), profile::gemm_bytes(rows, 2 * d, d));
  gemm_packed(rows, memory, d, w_kv_, kv, 2 * d, 0.0f, {b_qkv_.data() + d, Activation::none});
  scatter_to_cache(kv, 2 * d, batch, memory_len, H, dk, nullptr, cache.k, cache.capacity);
  scatter_to_cache(kv + d, 2 * d, batch, memory_len, H, dk, nullptr, cache.v, cache.capacity);
}

void MultiheadAttention::forward_from_cache(const float* query, i64 batch, i64 q_len, const KvCache& cache,
                                            i64 memory_len, const AttentionMask& mask, float* out,
                                            float* workspace) const {
  if (kind_ != Kind::cross_attention) fail("MultiheadAttention::forward_from_cache: needs a cross-attention layer");
  if (query == nullptr || cache.k == nullptr || cache.v == nullptr || out == nullptr || workspace == nullptr)
    fail("MultiheadAttention::forward_from_cache: null argument");
  if (batch < 1 || q_len < 1 || memory_len < 1 || memory_len > cache.capacity)
    fail("MultiheadAttention::forward_from_cache: need batch, q_len >= 1 and memory_len in [1, ", cache.capacity,
         "], got ", batch, ", ", q_len, ", ", memory_len);
  const i64 d = d_, H = heads_, dk = d_ / heads_;
  float* q = workspace;                  // (B·T, d)
  float* ctx = q + batch * q_len * d;    // (B·T, d)
  const i64 rows = batch * q_len;
  {
    profile::OpScope scope("cross_q_projection", profile::gemm_flops(rows, d, d), profile::gemm_bytes(rows, d, d));
    gemm_packed(rows, query, d, w_q_or_qkv_, q, d, 0.0f, {b_qkv_.data(), Activation::none});
  }
  {
    profile::OpScope scope("cross_attention", attention_flops(batch, q_len, memory_len, d, false),
                           attention_bytes(batch, q_len, memory_len, d));
    scaled_dot_product_attention(heads_view(q, batch, q_len, H, dk, d),
                                 cache_view(cache.k, batch, H, memory_len, dk, cache.capacity),
                                 cache_view(cache.v, batch, H, memory_len, dk, cache.capacity),
                                 heads_view(ctx, batch, q_len, H, dk, d), mask);
  }
  profile::OpScope scope("cross_output_projection", profile::gemm_flops(rows, d, d), profile::gemm_bytes(rows, d, d));
  gemm_packed(rows, ctx, d, w_out_, out, d, 0.0f, {b_out_.data(), Activation::none});
}

}  // namespace engine
