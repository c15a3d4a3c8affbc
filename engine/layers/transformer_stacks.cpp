// nn.TransformerEncoder / nn.TransformerDecoder: layers in order, then an optional final LayerNorm.
#include <algorithm>
#include <cmath>

#include "engine/core/profile_scope.hpp"
#include "engine/error.hpp"
#include "engine/layers.hpp"

namespace engine {
namespace {

template <class Layer>
std::int64_t common_d_model(const std::vector<Layer>& layers, const char* who) {
  if (layers.empty()) fail(who, ": needs at least one layer");
  const std::int64_t d = layers.front().config().d_model;
  for (std::size_t i = 1; i < layers.size(); ++i)
    if (layers[i].config().d_model != d)
      fail(who, ": layer ", i, " has d_model ", layers[i].config().d_model, " but layer 0 has ", d);
  return d;
}

void take_norm(const std::optional<LayerNormWeights>& norm, std::int64_t d, float eps, std::vector<float>& w,
               std::vector<float>& b, const char* who) {
  if (!norm) return;
  if (norm->weight == nullptr || norm->bias == nullptr) fail(who, ": norm.", norm->weight ? "bias" : "weight", " is null");
  if (!(eps > 0.0f) || !std::isfinite(eps)) fail(who, ": the final norm's eps must be positive and finite, got ", eps);
  w.assign(norm->weight, norm->weight + d);
  b.assign(norm->bias, norm->bias + d);
}

// The stack's final LayerNorm over x [rows, d], in place; nothing when the stack has none.
void apply_final_norm(const std::vector<float>& gamma, const std::vector<float>& beta, float eps, std::int64_t d,
                      float* x, std::int64_t rows, const char* stack) {
  if (gamma.empty()) return;
  const profile::LayerScope layer(stack, -1);
  const profile::OpScope scope("final_norm", 8.0 * static_cast<double>(rows * d), 8.0 * static_cast<double>(rows * d));
  layer_norm(rows, d, x, nullptr, gamma.data(), beta.data(), eps, x);
}

}  // namespace

TransformerEncoder::TransformerEncoder(std::vector<EncoderLayer> layers, const std::optional<LayerNormWeights>& final_norm,
                                       float final_norm_eps)
    : layers_(std::move(layers)), eps_(final_norm_eps) {
  take_norm(final_norm, common_d_model(layers_, "TransformerEncoder"), eps_, norm_w_, norm_b_, "TransformerEncoder");
}

std::size_t TransformerEncoder::workspace_floats(std::int64_t batch, std::int64_t seq_len) const {
  std::size_t most = 0;
  for (const auto& layer : layers_) most = std::max(most, layer.workspace_floats(batch, seq_len));
  return most;
}

void TransformerEncoder::forward(float* x, std::int64_t batch, std::int64_t seq_len, const AttentionMask& mask,
                                 float* workspace, AttentionPath path) const {
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const profile::LayerScope scope("encoder", static_cast<std::int32_t>(i));
    layers_[i].forward(x, batch, seq_len, mask, workspace, path);
  }
  final_norm(x, batch * seq_len, "encoder");
}

TransformerDecoder::TransformerDecoder(std::vector<DecoderLayer> layers, const std::optional<LayerNormWeights>& final_norm,
                                       float final_norm_eps)
    : layers_(std::move(layers)), eps_(final_norm_eps) {
  take_norm(final_norm, common_d_model(layers_, "TransformerDecoder"), eps_, norm_w_, norm_b_, "TransformerDecoder");
}

std::size_t TransformerDecoder::workspace_floats(std::int64_t batch, std::int64_t tgt_len, std::int64_t memory_len) const {
  std::size_t most = 0;
  for (const auto& layer : layers_) most = std::max(most, layer.workspace_floats(batch, tgt_len, memory_len));
  return most;
}

void TransformerDecoder::forward(float* x, const float* memory, std::int64_t batch, std::int64_t tgt_len,
                                 std::int64_t memory_len, const AttentionMask& self_mask,
                                 const AttentionMask& memory_mask, float* workspace, AttentionPath path) const {
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const profile::LayerScope scope("decoder", static_cast<std::int32_t>(i));
    layers_[i].forward(x, memory, batch, tgt_len, memory_len, self_mask, memory_mask, workspace, path);
  }
  final_norm(x, batch * tgt_len, "decoder");
}

namespace {
void check_caches(std::size_t caches, std::size_t layers, const char* who) {
  if (caches != layers) fail(who, ": got ", caches, " caches for ", layers, " layers");
}
}  // namespace

void TransformerEncoder::forward_cached(float* x, std::int64_t batch, std::int64_t new_len, const std::int32_t* start,
                                        std::span<const KvCache> caches, std::int64_t kv_len,
                                        const AttentionMask& mask, float* workspace) const {
  check_caches(caches.size(), layers_.size(), "TransformerEncoder::forward_cached");
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const profile::LayerScope scope("encoder", static_cast<std::int32_t>(i));
    layers_[i].forward_cached(x, batch, new_len, start, caches[i], kv_len, mask, workspace);
  }
  final_norm(x, batch * new_len, "encoder");
}

void TransformerDecoder::project_memory(const float* memory, std::int64_t batch, std::int64_t memory_len,
                                        std::span<const KvCache> memory_caches, float* workspace) const {
  check_caches(memory_caches.size(), layers_.size(), "TransformerDecoder::project_memory");
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const profile::LayerScope scope("decoder", static_cast<std::int32_t>(i));
    layers_[i].project_memory(memory, batch, memory_len, memory_caches[i], workspace);
  }
}

void TransformerDecoder::forward_cached(float* x, std::int64_t batch, std::int64_t new_len, const std::int32_t* start,
                                        std::span<const KvCache> self_caches, std::int64_t kv_len,
                                        const AttentionMask& self_mask, std::span<const KvCache> memory_caches,
                                        std::int64_t memory_len, const AttentionMask& memory_mask,
                                        float* workspace) const {
  check_caches(self_caches.size(), layers_.size(), "TransformerDecoder::forward_cached");
  check_caches(memory_caches.size(), layers_.size(), "TransformerDecoder::forward_cached");
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const profile::LayerScope scope("decoder", static_cast<std::int32_t>(i));
    layers_[i].forward_cached(x, batch, new_len, start, self_caches[i], kv_len, self_mask, memory_caches[i],
                              memory_len, memory_mask, workspace);
  }
  final_norm(x, batch * new_len, "decoder");
}

void TransformerEncoder::final_norm(float* x, std::int64_t rows, const char* stack) const {
  apply_final_norm(norm_w_, norm_b_, eps_, layers_.front().config().d_model, x, rows, stack);
}

void TransformerDecoder::final_norm(float* x, std::int64_t rows, const char* stack) const {
  apply_final_norm(norm_w_, norm_b_, eps_, layers_.front().config().d_model, x, rows, stack);
}

}  // namespace engine
