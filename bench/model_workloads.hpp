// The workloads of ../shared/workloads.json: W1_b1, W1_b8, W2, W3 (whole layers) built from
// engine's layers with random weights at PyTorch's default-init scales (fixed seed, no denormals):
// Linear weights and biases U(±1/√fan_in), in_proj xavier U(±√(6/(d + 3d))), zero attention biases,
// LayerNorm 1 / 0; W4 (attention alone); and a user's model directory on random inputs.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/arena.hpp"
#include "engine/core/profile_scope.hpp"
#include "engine/error.hpp"
#include "engine/generation.hpp"
#include "engine/layers.hpp"
#include "engine/profile.hpp"
#include "model_loader.hpp"

namespace engine::bench {

struct LayerWorkload {
  const char* id;
  std::int64_t layers, d_model, heads, d_ff;
  Activation activation;
  bool norm_first;
  std::int64_t batch, seq;
  bool sinusoidal;
  enum class Mask { none, key_padding, causal } mask;
};

inline const std::vector<LayerWorkload>& layer_workloads() {
  static const std::vector<LayerWorkload> w = {
      {"W1_b1", 1, 768, 12, 3072, Activation::gelu_erf, false, 1, 128, false, LayerWorkload::Mask::none},
      {"W1_b8", 1, 768, 12, 3072, Activation::gelu_erf, false, 8, 128, false, LayerWorkload::Mask::key_padding},
      {"W2", 1, 768, 12, 3072, Activation::gelu_erf, true, 1, 1024, false, LayerWorkload::Mask::causal},
      {"W3", 6, 512, 8, 2048, Activation::relu, false, 8, 128, true, LayerWorkload::Mask::none},
  };
  return w;
}

// Nominal FLOPs, as the peers count them: per layer the four projections, the two FFN GEMMs, and
// Q·Kᵀ and P·V over the full S x S (masks not subtracted).
inline double nominal_flops(const LayerWorkload& w) {
  const double rows = static_cast<double>(w.batch * w.seq), d = static_cast<double>(w.d_model);
  const double per_layer = 2.0 * rows * (4.0 * d * d + 2.0 * d * static_cast<double>(w.d_ff)) +
                           4.0 * static_cast<double>(w.batch) * static_cast<double>(w.seq * w.seq) * d;
  return per_layer * static_cast<double>(w.layers);
}

// A ready-to-run instance: the encoder stack, its input, mask and workspace.
class LayerWorkloadRun {
 public:
  explicit LayerWorkloadRun(const LayerWorkload& w) : w_(w) {
    std::mt19937 rng(0);
    auto uniform = [&](std::vector<float>& v, std::size_t n, float bound) {
      std::uniform_real_distribution<float> dist(-bound, bound);
      v.resize(n);
      for (float& x : v) x = dist(rng);
    };
    const std::int64_t d = w.d_model, f = w.d_ff;
    std::vector<EncoderLayer> layers;
    for (std::int64_t l = 0; l < w.layers; ++l) {
      // Sublayer by sublayer, so that only one sublayer's weights are ever held unpacked (peak RSS).
      const std::vector<float> zeros(static_cast<std::size_t>(3 * d), 0.0f), ones(static_cast<std::size_t>(d), 1.0f);
      LayerConfig c;
      c.d_model = d;
      c.heads = w.heads;
      c.d_ff = f;
      c.activation = w.activation;
      c.norm_first = w.norm_first;
      MultiheadAttention attention = [&] {
        std::vector<float> in_proj, out_proj;
        uniform(in_proj, static_cast<std::size_t>(3 * d * d), std::sqrt(6.0f / static_cast<float>(4 * d)));
        uniform(out_proj, static_cast<std::size_t>(d * d), 1.0f / std::sqrt(static_cast<float>(d)));
        return MultiheadAttention(MultiheadAttention::Kind::self_attention, d, w.heads,
                                  {in_proj.data(), zeros.data(), out_proj.data(), zeros.data()});
      }();
      FeedForward ff = [&] {
        std::vector<float> w1, b1, w2, b2;
        uniform(w1, static_cast<std::size_t>(f * d), 1.0f / std::sqrt(static_cast<float>(d)));
        uniform(b1, static_cast<std::size_t>(f), 1.0f / std::sqrt(static_cast<float>(d)));
        uniform(w2, static_cast<std::size_t>(d * f), 1.0f / std::sqrt(static_cast<float>(f)));
        uniform(b2, static_cast<std::size_t>(d), 1.0f / std::sqrt(static_cast<float>(f)));
        return FeedForward(d, f, w.activation, {w1.data(), b1.data()}, {w2.data(), b2.data()});
      }();
      layers.emplace_back(c, std::move(attention), std::move(ff), LayerNormWeights{ones.data(), zeros.data()},
                          LayerNormWeights{ones.data(), zeros.data()});
    }
    encoder_ = std::make_unique<TransformerEncoder>(std::move(layers));
    if (w.sinusoidal) pe_ = std::make_unique<SinusoidalPositionalEncoding>(d, w.seq);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    input_.resize(static_cast<std::size_t>(w.batch * w.seq * d));
    for (float& x : input_) x = normal(rng);
    x_ = input_;
    // In an arena, as a Session holds it: on huge pages, touched once here.
    const std::size_t workspace_floats = encoder_->workspace_floats(w.batch, w.seq);
    arena_ = Arena(workspace_floats * sizeof(float));
    workspace_ = arena_.allocate<float>("workspace", workspace_floats);
    if (w.mask == LayerWorkload::Mask::key_padding) {  // batches 4..7: positions 96..127 padded
      padding_.reset(new bool[static_cast<std::size_t>(w.batch * w.seq)]());
      for (std::int64_t b = 4; b < w.batch; ++b)
        for (std::int64_t s = w.seq - 32; s < w.seq; ++s) padding_[static_cast<std::size_t>(b * w.seq + s)] = true;
      mask_.key_padding = {padding_.get(), static_cast<std::size_t>(w.batch * w.seq)};
    }
    mask_.causal = w.mask == LayerWorkload::Mask::causal;
  }

  void operator()() {
    std::copy(input_.begin(), input_.end(), x_.begin());
    if (pe_) pe_->add(x_.data(), w_.batch, w_.seq);
    encoder_->forward(x_.data(), w_.batch, w_.seq, mask_, workspace_);
  }

 private:
  LayerWorkload w_;
  std::unique_ptr<TransformerEncoder> encoder_;
  std::unique_ptr<SinusoidalPositionalEncoding> pe_;
  std::vector<float> input_, x_;
  Arena arena_;
  float* workspace_ = nullptr;  // [encoder_->workspace_floats()] in arena_
  std::unique_ptr<bool[]> padding_;
  AttentionMask mask_;
};

// W4 of ../shared/workloads.json: causal attention alone, q, k, v [batch, heads, seq, dk] (W4:
// [4, 12, 512, 64]).
class AttentionWorkload {
 public:
  explicit AttentionWorkload(std::int64_t batch = 4, std::int64_t heads = 12, std::int64_t seq = 512,
                             std::int64_t dk = 64)
      : B_(batch), H_(heads), S_(seq), dk_(dk), n_(static_cast<std::size_t>(batch * heads * seq * dk)),
        q_(n_), k_(n_), v_(n_), o_(n_) {
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (auto* t : {&q_, &k_, &v_})
      for (float& x : *t) x = dist(rng);
  }
  // Causal: about half of the S x S scores, two GEMMs of 2·dk FLOPs per score.
  double flops() const {
    return 2.0 * 2.0 * static_cast<double>(B_ * H_) * static_cast<double>(S_) * static_cast<double>(S_ + 1) / 2.0 *
           static_cast<double>(dk_);
  }
  void operator()() {
    auto view = [&](std::vector<float>& t) { return TensorView(t.data(), {B_, H_, S_, dk_}); };
    AttentionMask mask;
    mask.causal = true;
    const profile::LayerScope layer("attention", -1);
    const profile::OpScope scope("attention", flops(), 4.0 * 4.0 * static_cast<double>(n_));
    scaled_dot_product_attention(view(q_), view(k_), view(v_), view(o_), mask);
  }

 private:
  std::int64_t B_, H_, S_, dk_;
  std::size_t n_;
  std::vector<float> q_, k_, v_, o_;
};

// A user's model on random inputs: the encoder and/or decoder of any exported model, or a
// language model's prefill.
class ModelWorkload {
 public:
  ModelWorkload(const std::string& dir, std::int64_t batch, std::int64_t seq) : model_(loader::load_model(dir)), B_(batch), S_(seq) {
    const ModelConfig& c = model_.config();
    if (c.positional && seq > c.positional->max_len)
      engine::fail("--seq ", seq, " exceeds the model's positional max_len ", c.positional->max_len);
    std::mt19937 rng(0);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    input_.resize(static_cast<std::size_t>(batch * seq * model_.d_model()));
    for (float& x : input_) x = dist(rng);
    if (model_.is_language_model()) {
      generator_ = std::make_unique<Generator>(model_, batch, seq, c.has_decoder() && c.has_encoder() ? seq : 0);
      std::uniform_int_distribution<std::int32_t> id(0, static_cast<std::int32_t>(model_.vocab() - 1));
      prompts_.assign(static_cast<std::size_t>(batch), {});
      for (auto& p : prompts_)
        for (std::int64_t s = 0; s < seq; ++s) p.push_back(id(rng));
      if (c.has_encoder() && c.has_decoder()) sources_ = prompts_;
    } else {
      session_ = std::make_unique<Session>(model_, batch, seq, seq);
      memory_.resize(input_.size());
      target_.resize(input_.size());
    }
  }
  void operator()() {
    if (generator_) {
      (void)generator_->prefill(prompts_, sources_);
      return;
    }
    const ModelConfig& c = model_.config();
    std::copy(input_.begin(), input_.end(), memory_.begin());
    if (c.has_encoder()) session_->encode(memory_.data(), B_, S_, {});
    if (c.has_decoder()) {
      std::copy(input_.begin(), input_.end(), target_.begin());
      AttentionMask causal;
      causal.causal = true;
      session_->decode(target_.data(), memory_.data(), B_, S_, S_, causal, {});
    }
  }

 private:
  Model model_;
  std::int64_t B_, S_;
  std::vector<float> input_, memory_, target_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<Generator> generator_;
  std::vector<std::vector<std::int32_t>> prompts_, sources_;
};

// One workload ready to time or profile, by id.
struct Runnable {
  std::string label;
  std::function<void()> run;
  double flops = 0;  // nominal, per call
  std::int64_t seq = 0;
};

// W1_b1, W1_b8, W2, W3 or W4, at sequence length `seq` (0: the workload's own). An unknown id is an
// engine::Error naming the ids there are.
inline Runnable make_builtin_workload(const std::string& id, std::int64_t seq = 0) {
  Runnable r;
  r.label = id;
  if (id == "W4") {
    auto a = std::make_shared<AttentionWorkload>(4, 12, seq > 0 ? seq : 512, 64);
    r.flops = a->flops();
    r.run = [a] { (*a)(); };
    r.seq = seq > 0 ? seq : 512;
    return r;
  }
  for (const LayerWorkload& w : layer_workloads())
    if (id == w.id) {
      LayerWorkload resized = w;
      if (seq > 0) resized.seq = seq;
      auto run = std::make_shared<LayerWorkloadRun>(resized);
      r.flops = nominal_flops(resized);
      r.run = [run] { (*run)(); };
      r.seq = resized.seq;
      return r;
    }
  engine::fail("unknown workload '", id, "' (expected W1_b1, W1_b8, W2, W3 or W4)");
}

// A model directory on random inputs; its nominal FLOPs are what the profiler's records of one run
// add up to.
inline Runnable make_model_workload(const std::string& dir, std::int64_t batch, std::int64_t seq) {
  Runnable r;
  auto m = std::make_shared<ModelWorkload>(dir, batch, seq);
  {
    ProfileCollector collector;
    (*m)();
    for (const ProfileRecord& rec : collector.records()) r.flops += rec.flops;
  }
  r.run = [m] { (*m)(); };
  r.label = "model b" + std::to_string(batch) + " s" + std::to_string(seq);
  r.seq = seq;
  return r;
}

}  // namespace engine::bench
