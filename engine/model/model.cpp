#include "engine/model.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "engine/core/profile_scope.hpp"
#include "engine/error.hpp"
#include "workspace_limits.hpp"

namespace engine {
namespace {

using i64 = std::int64_t;
using Shape = std::vector<i64>;
using TensorList = std::vector<std::pair<std::string, Shape>>;

void add_mha(TensorList& out, const std::string& p, i64 d) {
  out.push_back({p + "in_proj_weight", {3 * d, d}});
  out.push_back({p + "in_proj_bias", {3 * d}});
  out.push_back({p + "out_proj.weight", {d, d}});
  out.push_back({p + "out_proj.bias", {d}});
}

void add_layer(TensorList& out, const std::string& p, const LayerConfig& c, bool decoder) {
  add_mha(out, p + "self_attn.", c.d_model);
  if (decoder) add_mha(out, p + "multihead_attn.", c.d_model);
  out.push_back({p + "linear1.weight", {c.d_ff, c.d_model}});
  out.push_back({p + "linear1.bias", {c.d_ff}});
  out.push_back({p + "linear2.weight", {c.d_model, c.d_ff}});
  out.push_back({p + "linear2.bias", {c.d_model}});
  for (int n = 1; n <= (decoder ? 3 : 2); ++n) {
    out.push_back({p + "norm" + std::to_string(n) + ".weight", {c.d_model}});
    out.push_back({p + "norm" + std::to_string(n) + ".bias", {c.d_model}});
  }
}

void add_stack(TensorList& out, const std::string& p, const LayerConfig& c, i64 layers, bool norm, bool decoder) {
  for (i64 i = 0; i < layers; ++i) add_layer(out, p + "layers." + std::to_string(i) + ".", c, decoder);
  if (norm) {
    out.push_back({p + "norm.weight", {c.d_model}});
    out.push_back({p + "norm.bias", {c.d_model}});
  }
}

MultiheadAttentionWeights mha(const Model::TensorSource& t, const std::string& p, i64 d) {
  return {t(p + "in_proj_weight", {3 * d, d}), t(p + "in_proj_bias", {3 * d}), t(p + "out_proj.weight", {d, d}),
          t(p + "out_proj.bias", {d})};
}

LinearWeights linear(const Model::TensorSource& t, const std::string& p, i64 out, i64 in) {
  return {t(p + ".weight", {out, in}), t(p + ".bias", {out})};
}

LayerNormWeights norm(const Model::TensorSource& t, const std::string& p, i64 d) {
  return {t(p + ".weight", {d}), t(p + ".bias", {d})};
}

EncoderLayer make_encoder_layer(const Model::TensorSource& t, const std::string& p, const LayerConfig& c) {
  const i64 d = c.d_model;
  return EncoderLayer(c, {mha(t, p + "self_attn.", d), linear(t, p + "linear1", c.d_ff, d),
                          linear(t, p + "linear2", d, c.d_ff), norm(t, p + "norm1", d), norm(t, p + "norm2", d)});
}

DecoderLayer make_decoder_layer(const Model::TensorSource& t, const std::string& p, const LayerConfig& c) {
  const i64 d = c.d_model;
  return DecoderLayer(c, {mha(t, p + "self_attn.", d), mha(t, p + "multihead_attn.", d),
                          linear(t, p + "linear1", c.d_ff, d), linear(t, p + "linear2", d, c.d_ff),
                          norm(t, p + "norm1", d), norm(t, p + "norm2", d), norm(t, p + "norm3", d)});
}

}  // namespace

const char* architecture_name(Architecture a) {
  switch (a) {
    case Architecture::encoder_layer: return "encoder_layer";
    case Architecture::encoder: return "encoder";
    case Architecture::decoder_layer: return "decoder_layer";
    case Architecture::decoder: return "decoder";
    case Architecture::transformer: return "transformer";
  }
  return "?";
}

void ModelConfig::validate() const {
  const LayerConfig& c = layer;
  constexpr i64 kMaxDim = i64{1} << 20;
  if (c.d_model < 1 || c.d_model > kMaxDim) fail("config: d_model must be in [1, ", kMaxDim, "], got ", c.d_model);
  if (c.heads < 1 || c.heads > c.d_model) fail("config: heads must be in [1, d_model], got ", c.heads);
  if (c.d_model % c.heads != 0) fail("config: d_model (", c.d_model, ") must be divisible by heads (", c.heads, ")");
  if (c.d_ff < 1 || c.d_ff > kMaxDim) fail("config: d_ff must be in [1, ", kMaxDim, "], got ", c.d_ff);
  if (c.activation != Activation::relu && c.activation != Activation::gelu_erf)
    fail("config: activation must be relu or gelu, got ", activation_name(c.activation));
  if (!(c.layer_norm_eps > 0.0f) || !std::isfinite(c.layer_norm_eps))
    fail("config: layer_norm_eps must be a positive finite number, got ", c.layer_norm_eps);
  const bool enc = has_encoder(), dec = has_decoder();
  const i64 want_enc = architecture == Architecture::encoder_layer ? 1 : num_encoder_layers;
  const i64 want_dec = architecture == Architecture::decoder_layer ? 1 : num_decoder_layers;
  if (enc && (want_enc < 1 || want_enc > 1000))
    fail("config: num_encoder_layers must be in [1, 1000] for ", architecture_name(architecture), ", got ", want_enc);
  if (dec && (want_dec < 1 || want_dec > 1000))
    fail("config: num_decoder_layers must be in [1, 1000] for ", architecture_name(architecture), ", got ", want_dec);
  if (!enc && num_encoder_layers != 0)
    fail("config: num_encoder_layers must be 0 for ", architecture_name(architecture), ", got ", num_encoder_layers);
  if (!dec && num_decoder_layers != 0)
    fail("config: num_decoder_layers must be 0 for ", architecture_name(architecture), ", got ", num_decoder_layers);
  if ((architecture == Architecture::encoder_layer || !enc) && encoder_norm)
    fail("config: encoder_norm needs an encoder stack (architecture encoder or transformer)");
  if ((architecture == Architecture::decoder_layer || !dec) && decoder_norm)
    fail("config: decoder_norm needs a decoder stack (architecture decoder or transformer)");
  if (lm) {
    if (lm->vocab < 1 || lm->vocab > (i64{1} << 24))
      fail("config: lm.vocab must be in [1, 16777216], got ", lm->vocab);
    if (architecture != Architecture::encoder && architecture != Architecture::transformer)
      fail("config: a language model is decoder-only (architecture encoder, run causally) or encoder-decoder "
           "(architecture transformer), got ", architecture_name(architecture));
    if (!positional) fail("config: a language model needs positional_encoding (its max_len bounds the sequence)");
    if (positional->first_position != 0) fail("config: a language model's positions start at 0");
  }
  if (positional) {
    if (positional->max_len < 1 || positional->max_len > (i64{1} << 24))
      fail("config: positional_encoding.max_len must be in [1, 16777216], got ", positional->max_len);
    if (c.d_model % 2 != 0) fail("config: sinusoidal positional encoding needs an even d_model, got ", c.d_model);
    // The table is max_len x d_model floats, built up front: keep it under 256 MiB.
    if (positional->max_len * c.d_model > (i64{1} << 26))
      fail("config: positional_encoding.max_len x d_model = ", positional->max_len, " x ", c.d_model,
           " exceeds the 2^26-float (256 MiB) table limit");
    if (positional->first_position < 0)
      fail("config: positional_encoding.first_position must be >= 0, got ", positional->first_position);
  }
}

std::vector<std::pair<std::string, std::vector<std::int64_t>>> ModelConfig::expected_tensors() const {
  TensorList out;
  const std::string root = lm ? "transformer." : "";
  if (lm) out.push_back({"embedding.weight", {lm->vocab, layer.d_model}});
  switch (architecture) {
    case Architecture::encoder_layer: add_layer(out, root, layer, false); break;
    case Architecture::decoder_layer: add_layer(out, root, layer, true); break;
    case Architecture::encoder: add_stack(out, root, layer, num_encoder_layers, encoder_norm, false); break;
    case Architecture::decoder: add_stack(out, root, layer, num_decoder_layers, decoder_norm, true); break;
    case Architecture::transformer:
      add_stack(out, root + "encoder.", layer, num_encoder_layers, encoder_norm, false);
      add_stack(out, root + "decoder.", layer, num_decoder_layers, decoder_norm, true);
      break;
  }
  if (lm) {
    if (!lm->tie_weights) out.push_back({"linear.weight", {lm->vocab, layer.d_model}});
    out.push_back({"linear.bias", {lm->vocab}});
  }
  return out;
}

Model::Model(const ModelConfig& config, const TensorSource& t) : config_(config) {
  config_.validate();
  const LayerConfig& c = config_.layer;
  const i64 d = c.d_model;
  const std::string root = config_.lm ? "transformer." : "";
  const std::string enc_prefix = root + (config_.architecture == Architecture::transformer ? "encoder." : "");
  const std::string dec_prefix = root + (config_.architecture == Architecture::transformer ? "decoder." : "");
  if (config_.architecture == Architecture::encoder_layer) {
    std::vector<EncoderLayer> layers;
    layers.push_back(make_encoder_layer(t, "", c));
    encoder_.emplace(std::move(layers));
  } else if (config_.has_encoder()) {
    std::vector<EncoderLayer> layers;
    for (i64 i = 0; i < config_.num_encoder_layers; ++i)
      layers.push_back(make_encoder_layer(t, enc_prefix + "layers." + std::to_string(i) + ".", c));
    std::optional<LayerNormWeights> n;
    if (config_.encoder_norm) n = norm(t, enc_prefix + "norm", d);
    encoder_.emplace(std::move(layers), n, c.layer_norm_eps);
  }
  if (config_.architecture == Architecture::decoder_layer) {
    std::vector<DecoderLayer> layers;
    layers.push_back(make_decoder_layer(t, "", c));
    decoder_.emplace(std::move(layers));
  } else if (config_.has_decoder()) {
    std::vector<DecoderLayer> layers;
    for (i64 i = 0; i < config_.num_decoder_layers; ++i)
      layers.push_back(make_decoder_layer(t, dec_prefix + "layers." + std::to_string(i) + ".", c));
    std::optional<LayerNormWeights> n;
    if (config_.decoder_norm) n = norm(t, dec_prefix + "norm", d);
    decoder_.emplace(std::move(layers), n, c.layer_norm_eps);
  }
  if (config_.positional)
    positional_.emplace(d, config_.positional->max_len, config_.positional->layout, config_.positional->first_position);
  if (config_.lm) {
    const i64 V = config_.lm->vocab;
    const float* table = t("embedding.weight", {V, d});
    embedding_.assign(table, table + V * d);
    embedding_scale_ = config_.lm->scale_embedding ? std::sqrt(static_cast<float>(d)) : 1.0f;
    const float* w = config_.lm->tie_weights ? table : t("linear.weight", {V, d});
    head_ = pack_matrix(d, V, w, d, Transpose::yes);
    const float* bias = t("linear.bias", {V});
    head_bias_.assign(bias, bias + V);
  }
}

void Model::embed(const std::int32_t* ids, i64 batch, i64 seq_len, const std::int32_t* start, float* out) const {
  if (!config_.lm) fail("Model::embed: not a language model");
  if (ids == nullptr || out == nullptr) fail("Model::embed: ", ids == nullptr ? "ids" : "out", " is null");
  const i64 d = d_model(), V = config_.lm->vocab;
  const profile::OpScope scope("embedding", 2.0 * static_cast<double>(batch * seq_len * d),
                               12.0 * static_cast<double>(batch * seq_len * d));
  for (i64 b = 0; b < batch; ++b) {
    const i64 first = start != nullptr ? start[b] : 0;
    if (first < 0 || first + seq_len > positional_->max_len())
      fail("Model::embed: sequence ", b, " would use positions ", first, "..", first + seq_len - 1,
           " past the positional encoding's max_len ", positional_->max_len());
    for (i64 s = 0; s < seq_len; ++s) {
      const std::int32_t id = ids[b * seq_len + s];
      if (id < 0 || id >= V) fail("Model::embed: token id ", id, " (sequence ", b, ", position ", s, ") is outside the vocabulary [0, ", V, ")");
      const float* e = embedding_.data() + id * d;
      const float* pe = positional_->table() + (first + s) * d;
      float* o = out + (b * seq_len + s) * d;
      // (e * scale) + pe, rounded as torch rounds embedding(x) * math.sqrt(d) + pe
      for (i64 i = 0; i < d; ++i) o[i] = e[i] * embedding_scale_ + pe[i];
    }
  }
}

void Model::project_logits(const float* hidden, i64 rows, float* logits) const {
  if (!config_.lm) fail("Model::project_logits: not a language model");
  const profile::OpScope scope("lm_head", profile::gemm_flops(rows, config_.lm->vocab, d_model()),
                               profile::gemm_bytes(rows, config_.lm->vocab, d_model()));
  gemm_packed(rows, hidden, d_model(), head_, logits, config_.lm->vocab, 0.0f, {head_bias_.data(), Activation::none});
}

std::size_t Model::workspace_floats(i64 batch, i64 src_len, i64 tgt_len) const {
  std::size_t most = 0;
  if (encoder_) most = std::max(most, encoder_->workspace_floats(batch, src_len));
  if (decoder_) most = std::max(most, decoder_->workspace_floats(batch, tgt_len, src_len));
  return most;
}

void Model::encode(float* src, i64 batch, i64 src_len, const AttentionMask& src_mask, float* workspace) const {
  if (!encoder_) fail("Model::encode: a ", architecture_name(config_.architecture), " model has no encoder");
  if (positional_ && !config_.lm) {
    const profile::OpScope scope("positional_encoding", static_cast<double>(batch * src_len * d_model()),
                                 12.0 * static_cast<double>(batch * src_len * d_model()));
    positional_->add(src, batch, src_len);
  }
  encoder_->forward(src, batch, src_len, src_mask, workspace);
}

void Model::decode(float* tgt, const float* memory, i64 batch, i64 tgt_len, i64 memory_len,
                   const AttentionMask& tgt_mask, const AttentionMask& memory_mask, float* workspace) const {
  if (!decoder_) fail("Model::decode: a ", architecture_name(config_.architecture), " model has no decoder");
  if (positional_ && !config_.lm) {
    const profile::OpScope scope("positional_encoding", static_cast<double>(batch * tgt_len * d_model()),
                                 12.0 * static_cast<double>(batch * tgt_len * d_model()));
    positional_->add(tgt, batch, tgt_len);
  }
  decoder_->forward(tgt, memory, batch, tgt_len, memory_len, tgt_mask, memory_mask, workspace);
}

}  // namespace engine

namespace engine {

namespace {

std::size_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) : SIZE_MAX;
}

}  // namespace

namespace model_limits {

void check_tokens(const char* who, std::int64_t batch, const char* length_name, std::int64_t length) {
  constexpr std::int64_t kMaxTokens = std::int64_t{1} << 31;
  if (length > kMaxTokens / batch)
    fail(who, ": max_batch x ", length_name, " = ", batch, " x ", length, " exceeds 2^31 tokens");
}

void check_bytes(const char* who, const std::string& what, std::size_t bytes, const SessionOptions& options) {
  if (options.memory_limit_bytes != 0 && bytes > options.memory_limit_bytes)
    fail(who, ": ", what, " needs ", bytes, " bytes, over the memory limit of ", options.memory_limit_bytes, " bytes");
  if (options.memory_limit_bytes == 0 && bytes > physical_memory_bytes())
    fail(who, ": ", what, " needs ", bytes, " bytes, over the ", physical_memory_bytes(), " bytes of physical memory");
}

}  // namespace model_limits

Session::Session(const Model& model, std::int64_t max_batch, std::int64_t max_src_len, std::int64_t max_tgt_len,
                 const SessionOptions& options)
    : model_(model), max_batch_(max_batch), max_src_len_(max_src_len), max_tgt_len_(max_tgt_len) {
  if (max_batch < 1) fail("Session: max_batch must be >= 1, got ", max_batch);
  if (max_src_len < 1) fail("Session: max_src_len must be >= 1, got ", max_src_len);
  if (model.config().has_decoder() && max_tgt_len < 1)
    fail("Session: a model with a decoder needs max_tgt_len >= 1, got ", max_tgt_len);
  for (const auto& [name, len] : {std::pair{"max_src_len", max_src_len}, std::pair{"max_tgt_len", max_tgt_len}}) {
    model_limits::check_tokens("Session", max_batch, name, len);
    const auto& pe = model.config().positional;
    if (pe && pe->first_position + len > pe->max_len)
      fail("Session: ", name, " ", len, " exceeds the positional encoding's max_len ", pe->max_len,
           pe->first_position ? " (after first_position)" : "");
  }
  ArenaPlan plan;
  const ArenaSlot slot = plan.reserve<float>("model workspace", model.workspace_floats(max_batch, max_src_len,
                                                                                      std::max<std::int64_t>(1, max_tgt_len)));
  model_limits::check_bytes("Session",
                            "the workspace for batch " + std::to_string(max_batch) + ", max_src_len " +
                                std::to_string(max_src_len) + ", max_tgt_len " + std::to_string(max_tgt_len),
                            plan.total_bytes(), options);
  arena_ = Arena(plan);
  workspace_ = arena_.at<float>(slot);
}

void Session::check(const char* what, std::int64_t value, std::int64_t limit) const {
  if (value < 1) fail("Session: ", what, " must be >= 1, got ", value);
  if (value > limit) fail("Session: ", what, " ", value, " exceeds the ", limit, " this session was sized for");
}

template <class Run>
void Session::run_profiled(const Run& run) {
  if (!profiling_) {
    run();
    return;
  }
  ProfileCollector collector;
  run();
  last_run_us_ = collector.now_us();
  profile_ = collector.records();
}

void Session::encode(float* src, std::int64_t batch, std::int64_t src_len, const AttentionMask& src_mask) {
  if (!model_.config().has_encoder())
    fail("Session::encode: a ", architecture_name(model_.config().architecture), " model has no encoder");
  if (src == nullptr) fail("Session::encode: src is null");
  check("batch", batch, max_batch_);
  check("src_len", src_len, max_src_len_);
  check_attention_mask(src_mask, batch, src_len, src_len, "Session::encode", "src_mask");
  run_profiled([&] { model_.encode(src, batch, src_len, src_mask, workspace_); });
}

void Session::decode(float* tgt, const float* memory, std::int64_t batch, std::int64_t tgt_len,
                     std::int64_t memory_len, const AttentionMask& tgt_mask, const AttentionMask& memory_mask) {
  if (!model_.config().has_decoder())
    fail("Session::decode: a ", architecture_name(model_.config().architecture), " model has no decoder");
  if (tgt == nullptr) fail("Session::decode: tgt is null");
  if (memory == nullptr) fail("Session::decode: memory is null");
  check("batch", batch, max_batch_);
  check("tgt_len", tgt_len, max_tgt_len_);
  check("memory_len", memory_len, max_src_len_);
  check_attention_mask(tgt_mask, batch, tgt_len, tgt_len, "Session::decode", "tgt_mask");
  check_attention_mask(memory_mask, batch, tgt_len, memory_len, "Session::decode", "memory_mask");
  run_profiled([&] { model_.decode(tgt, memory, batch, tgt_len, memory_len, tgt_mask, memory_mask, workspace_); });
}

}  // namespace engine
