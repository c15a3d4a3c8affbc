// Google Benchmark: masked softmax throughput (bytes read + written per second) on attention-shaped
// rows: [batch·heads, S, S] scores, plain and causal.
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

}  // namespace
