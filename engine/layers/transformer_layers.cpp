// nn.TransformerEncoderLayer and nn.TransformerDecoderLayer, read like the seed's diary:
//   post-LN: x = LayerNorm(x + sublayer(x))        pre-LN: x = x + sublayer(LayerNorm(x))
// The residual add is fused into the LayerNorm that follows it wherever the order allows.
#include <algorithm>
#include <cmath>
#include <utility>

#include "engine/core/profile_scope.hpp"
#include "engine/error.hpp"
#include "engine/layers.hpp"

namespace engine {
namespace {

using i64 = std::int64_t;

void check_config(const LayerConfig& c, const char* who) {
  if (c.d_model < 1 || c.heads < 1 || c.d_ff < 1)
    fail(who, ": d_model, heads and d_ff must be >= 1, got ", c.d_model, ", ", c.heads, ", ", c.d_ff);
  if (c.d_model % c.heads != 0)
    fail(who, ": d_model (", c.d_model, ") must be divisible by the number of heads (", c.heads, ")");
  if (!(c.layer_norm_eps > 0.0f) || !std::isfinite(c.layer_norm_eps))
    fail(who, ": layer_norm_eps must be a positive finite number, got ", c.layer_norm_eps);
}

void copy_norm(const LayerNormWeights& w, i64 d, std::vector<float>& gamma, std::vector<float>& beta, const char* name) {
  if (w.weight == nullptr || w.bias == nullptr) fail("layer: ", name, w.weight == nullptr ? ".weight" : ".bias", " is null");
  gamma.assign(w.weight, w.weight + d);
  beta.assign(w.bias, w.bias + d);
}

// LayerNorm (optionally after a residual add) over rows x d: about 8 FLOPs per element; reads x
// (and the residual), writes the result (and the sum).
profile::OpScope add_norm_scope(i64 rows, i64 d, bool residual) {
  const double n = static_cast<double>(rows * d);
  return {"add_norm", 8.0 * n, 4.0 * n * (residual ? 4.0 : 2.0)};
}

}  // namespace

EncoderLayer::EncoderLayer(const LayerConfig& config, const EncoderLayerWeights& w)
    : config_((check_config(config, "EncoderLayer"), config)),
      self_attn_(MultiheadAttention::Kind::self_attention, config.d_model, config.heads, w.self_attn),
      ff_(config.d_model, config.d_ff, config.activation, w.linear1, w.linear2) {
  copy_norm(w.norm1, config.d_model, norm1_w_, norm1_b_, "norm1");
  copy_norm(w.norm2, config.d_model, norm2_w_, norm2_b_, "norm2");
}

EncoderLayer::EncoderLayer(const LayerConfig& config, MultiheadAttention self_attn, FeedForward ff,
                           const LayerNormWeights& norm1, const LayerNormWeights& norm2)
    : config_((check_config(config, "EncoderLayer"), config)), self_attn_(std::move(self_attn)), ff_(std::move(ff)) {
  if (self_attn_.d_model() != config.d_model || self_attn_.heads() != config.heads)
    fail("EncoderLayer: self_attn has d_model ", self_attn_.d_model(), " and ", self_attn_.heads(),
         " heads, the config ", config.d_model, " and ", config.heads);
  if (ff_.d_model() != config.d_model || ff_.d_ff() != config.d_ff || ff_.activation() != config.activation)
    fail("EncoderLayer: the feed-forward block (d_model ", ff_.d_model(), ", d_ff ", ff_.d_ff(),
         ") disagrees with the config (", config.d_model, ", ", config.d_ff, ") or its activation");
  copy_norm(norm1, config.d_model, norm1_w_, norm1_b_, "norm1");
  copy_norm(norm2, config.d_model, norm2_w_, norm2_b_, "norm2");
}

std::size_t EncoderLayer::workspace_floats(i64 batch, i64 seq_len) const {
  const i64 rows = batch * seq_len;
  // sublayer output (rows, d) | normed input (rows, d) | attention's or the FFN's own scratch
  return static_cast<std::size_t>(2 * rows * config_.d_model) +
         std::max(self_attn_.workspace_floats(batch, seq_len, seq_len), ff_.workspace_floats(rows));
}

void EncoderLayer::forward(float* x, i64 batch, i64 seq_len, const AttentionMask& mask, float* workspace,
                           AttentionPath path) const {
  if (x == nullptr || workspace == nullptr) fail("EncoderLayer::forward: ", x == nullptr ? "x" : "workspace", " is null");
  run(x, batch * seq_len, workspace, [&](const float* in, float* out, float* scratch) {
    self_attn_.forward(in, nullptr, batch, seq_len, seq_len, mask, out, scratch, path);
  });
}

void EncoderLayer::forward_cached(float* x, i64 batch, i64 new_len, const std::int32_t* start, const KvCache& cache,
                                  i64 kv_len, const AttentionMask& mask, float* workspace) const {
  if (x == nullptr || workspace == nullptr)
    fail("EncoderLayer::forward_cached: ", x == nullptr ? "x" : "workspace", " is null");
  run(x, batch * new_len, workspace, [&](const float* in, float* out, float* scratch) {
    self_attn_.forward_cached(in, batch, new_len, start, cache, kv_len, mask, out, scratch);
  });
}

template <class Attend>
void EncoderLayer::run(float* x, i64 rows, float* workspace, const Attend& attend) const {
  const i64 d = config_.d_model;
  const float eps = config_.layer_norm_eps;
  float* sub = workspace;             // (rows, d): the sublayer's output
  float* normed = sub + rows * d;     // (rows, d): LayerNorm(x) for pre-LN
  float* inner = normed + rows * d;   // attention's or the FFN's scratch
  const auto norm = [&](const float* residual, const std::vector<float>& gamma, const std::vector<float>& beta,
                        float* out, float* sum_out) {
    const auto scope = add_norm_scope(rows, d, residual != nullptr);
    layer_norm(rows, d, x, residual, gamma.data(), beta.data(), eps, out, sum_out);
  };
  if (!config_.norm_first) {
    attend(x, sub, inner);
    norm(sub, norm1_w_, norm1_b_, x, nullptr);  // x = norm1(x + attn)
    ff_.forward(x, rows, sub, inner);
    norm(sub, norm2_w_, norm2_b_, x, nullptr);  // x = norm2(x + ff)
    return;
  }
  norm(nullptr, norm1_w_, norm1_b_, normed, nullptr);
  attend(normed, sub, inner);
  norm(sub, norm2_w_, norm2_b_, normed, /*sum_out=*/x);  // x = x + attn, and normed = norm2(x) in the same pass
  ff_.forward(normed, rows, sub, inner);
  const profile::OpScope scope("add_norm", static_cast<double>(rows * d), 12.0 * static_cast<double>(rows * d));
  add(rows * d, sub, x);  // x = x + ff
}

DecoderLayer::DecoderLayer(const LayerConfig& config, const DecoderLayerWeights& w)
    : config_((check_config(config, "DecoderLayer"), config)),
      self_attn_(MultiheadAttention::Kind::self_attention, config.d_model, config.heads, w.self_attn),
      cross_attn_(MultiheadAttention::Kind::cross_attention, config.d_model, config.heads, w.cross_attn),
      ff_(config.d_model, config.d_ff, config.activation, w.linear1, w.linear2) {
  copy_norm(w.norm1, config.d_model, norm_w_[0], norm_b_[0], "norm1");
  copy_norm(w.norm2, config.d_model, norm_w_[1], norm_b_[1], "norm2");
  copy_norm(w.norm3, config.d_model, norm_w_[2], norm_b_[2], "norm3");
}

std::size_t DecoderLayer::workspace_floats(i64 batch, i64 tgt_len, i64 memory_len) const {
  const i64 rows = batch * tgt_len;
  return static_cast<std::size_t>(2 * rows * config_.d_model) +
         std::max({self_attn_.workspace_floats(batch, tgt_len, tgt_len),
                   cross_attn_.workspace_floats(batch, tgt_len, memory_len), ff_.workspace_floats(rows)});
}

void DecoderLayer::forward(float* x, const float* memory, i64 batch, i64 tgt_len, i64 memory_len,
                           const AttentionMask& self_mask, const AttentionMask& memory_mask, float* workspace,
                           AttentionPath path) const {
  if (x == nullptr || memory == nullptr || workspace == nullptr)
    fail("DecoderLayer::forward: ", x == nullptr ? "x" : memory == nullptr ? "memory" : "workspace", " is null");
  run(
      x, batch * tgt_len, workspace,
      [&](const float* in, float* out, float* scratch) {
        self_attn_.forward(in, nullptr, batch, tgt_len, tgt_len, self_mask, out, scratch, path);
      },
      [&](const float* in, float* out, float* scratch) {
        cross_attn_.forward(in, memory, batch, tgt_len, memory_len, memory_mask, out, scratch, path);
      });
}

void DecoderLayer::project_memory(const float* memory, i64 batch, i64 memory_len, const KvCache& memory_cache,
                                  float* workspace) const {
  cross_attn_.project_memory(memory, batch, memory_len, memory_cache, workspace);
}

void DecoderLayer::forward_cached(float* x, i64 batch, i64 new_len, const std::int32_t* start,
                                  const KvCache& self_cache, i64 kv_len, const AttentionMask& self_mask,
                                  const KvCache& memory_cache, i64 memory_len, const AttentionMask& memory_mask,
                                  float* workspace) const {
  if (x == nullptr || workspace == nullptr)
    fail("DecoderLayer::forward_cached: ", x == nullptr ? "x" : "workspace", " is null");
  run(
      x, batch * new_len, workspace,
      [&](const float* in, float* out, float* scratch) {
        self_attn_.forward_cached(in, batch, new_len, start, self_cache, kv_len, self_mask, out, scratch);
      },
      [&](const float* in, float* out, float* scratch) {
        cross_attn_.forward_from_cache(in, batch, new_len, memory_cache, memory_len, memory_mask, out, scratch);
      });
}

template <class SelfAttend, class CrossAttend>
void DecoderLayer::run(float* x, i64 rows, float* workspace, const SelfAttend& self_attend,
                       const CrossAttend& cross_attend) const {
  const i64 d = config_.d_model;
  const float eps = config_.layer_norm_eps;
  float* sub = workspace;            // (rows, d): the sublayer's output
  float* normed = sub + rows * d;    // (rows, d): LayerNorm(x) for pre-LN
  float* inner = normed + rows * d;  // attention's or the FFN's scratch
  const auto norm = [&](int i, const float* residual, float* out, float* sum_out) {
    const auto scope = add_norm_scope(rows, d, residual != nullptr);
    layer_norm(rows, d, x, residual, norm_w_[i].data(), norm_b_[i].data(), eps, out, sum_out);
  };
  if (!config_.norm_first) {
    self_attend(x, sub, inner);
    norm(0, sub, x, nullptr);  // x = norm1(x + self_attn(x))
    cross_attend(x, sub, inner);
    norm(1, sub, x, nullptr);  // x = norm2(x + cross_attn(x, memory))
    ff_.forward(x, rows, sub, inner);
    norm(2, sub, x, nullptr);  // x = norm3(x + ff(x))
    return;
  }
  norm(0, nullptr, normed, nullptr);
  self_attend(normed, sub, inner);
  norm(1, sub, normed, x);  // x += self_attn; normed = norm2(x)
  cross_attend(normed, sub, inner);
  norm(2, sub, normed, x);  // x += cross_attn; normed = norm3(x)
  ff_.forward(normed, rows, sub, inner);
  const profile::OpScope scope("add_norm", static_cast<double>(rows * d), 12.0 * static_cast<double>(rows * d));
  add(rows * d, sub, x);    // x += ff
}

}  // namespace engine
