// The feed-forward block: linear2(act(linear1(x))), bias and activation fused into linear1's GEMM.
#include <algorithm>

#include "engine/core/profile_scope.hpp"
#include "engine/error.hpp"
#include "engine/layers.hpp"

namespace engine {

FeedForward::FeedForward(std::int64_t d_model, std::int64_t d_ff, Activation activation, const LinearWeights& linear1,
                         const LinearWeights& linear2)
    : d_(d_model), d_ff_(d_ff), activation_(activation) {
  if (d_model < 1 || d_ff < 1) fail("feed-forward: d_model and d_ff must be >= 1, got ", d_model, " and ", d_ff);
  if (linear1.weight == nullptr) fail("feed-forward: linear1.weight is null");
  if (linear2.weight == nullptr) fail("feed-forward: linear2.weight is null");
  w1_ = pack_matrix(d_model, d_ff, linear1.weight, d_model, Transpose::yes);  // linear1.weight [d_ff, d]
  w2_ = pack_matrix(d_ff, d_model, linear2.weight, d_ff, Transpose::yes);     // linear2.weight [d, d_ff]
  b1_.assign(static_cast<std::size_t>(d_ff), 0.0f);
  b2_.assign(static_cast<std::size_t>(d_model), 0.0f);
  if (linear1.bias != nullptr) std::copy_n(linear1.bias, d_ff, b1_.begin());
  if (linear2.bias != nullptr) std::copy_n(linear2.bias, d_model, b2_.begin());
}

void FeedForward::forward(const float* x, std::int64_t rows, float* out, float* workspace) const {
  if (x == nullptr || out == nullptr || workspace == nullptr)
    fail("feed-forward: ", x == nullptr ? "x" : out == nullptr ? "out" : "workspace", " is null");
  float* hidden = workspace;  // (rows, d_ff)
  {
    profile::OpScope scope("ffn_up_activation", profile::gemm_flops(rows, d_ff_, d_), profile::gemm_bytes(rows, d_ff_, d_));
    gemm_packed(rows, x, d_, w1_, hidden, d_ff_, 0.0f, {b1_.data(), activation_});
  }
  profile::OpScope scope("ffn_down", profile::gemm_flops(rows, d_, d_ff_), profile::gemm_bytes(rows, d_, d_ff_));
  gemm_packed(rows, hidden, d_ff_, w2_, out, d_, 0.0f, {b2_.data(), Activation::none});
}

}  // namespace engine
