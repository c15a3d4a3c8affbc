// Google Benchmark: masked softmax throughput (bytes read + written per second) on attention-shaped
// rows: [batch·heads, S, S] scores, plain and causal; and the activations on an FFN-up-shaped
// [128, 3072] block, with values spread like LayerNorm outputs (N(0, 1)) and small ones (±0.35).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "engine/ops.hpp"

namespace {

void softmax_rows(benchmark::State& state, bool causal) {
  const std::int64_t batch = 12, S = state.range(0);
  engine::set_num_threads(static_cast<int>(state.range(1)));
  std::vector<float> x(static_cast<std::size_t>(batch * S * S)), y(x.size());
  std::mt19937 rng(0);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (float& v : x) v = dist(rng);
  engine::SoftmaxMask mask;
  mask.causal = causal;
  for (auto _ : state) {
    engine::masked_softmax(batch, S, S, x.data(), S, y.data(), S, 0.125f, mask);
    benchmark::DoNotOptimize(y.data());
  }
  // A causal row reads and writes only its visible part (and zero-fills the rest).
  const double bytes = static_cast<double>(x.size()) * sizeof(float) * (causal ? 1.5 : 2.0);
  state.counters["bytes/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_CAPTURE(softmax_rows, plain, false)->ArgsProduct({{128, 512}, {1, 2}})->UseRealTime();
BENCHMARK_CAPTURE(softmax_rows, causal, true)->ArgsProduct({{128, 512}, {1, 2}})->UseRealTime();

// Elements per second, in place, one thread. The input distribution matters for GELU(erf): an erf
// that branches on |x| is cheap when every lane is small and costly when lanes mix.
void activation_block(benchmark::State& state, engine::Activation act, float spread) {
  engine::set_num_threads(1);
  std::vector<float> src(128 * 3072), x(src.size());
  std::mt19937 rng(0);
  std::normal_distribution<float> dist(0.0f, spread);
  for (float& v : src) v = dist(rng);
  for (auto _ : state) {
    state.PauseTiming();
    x = src;
    state.ResumeTiming();
    engine::activation(act, static_cast<std::int64_t>(x.size()), x.data());
    benchmark::DoNotOptimize(x.data());
  }
  state.counters["elements/s"] =
      benchmark::Counter(static_cast<double>(x.size()), benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_CAPTURE(activation_block, gelu_erf_normal, engine::Activation::gelu_erf, 1.0f);
BENCHMARK_CAPTURE(activation_block, gelu_erf_small, engine::Activation::gelu_erf, 0.1f);
BENCHMARK_CAPTURE(activation_block, gelu_tanh_normal, engine::Activation::gelu_tanh, 1.0f);
BENCHMARK_CAPTURE(activation_block, relu_normal, engine::Activation::relu, 1.0f);

}  // namespace
