// Google Benchmark: scaled dot-product attention on the workloads' shapes, with q, k and v read
// from one [B, S, 3·d] QKV buffer as multi-head attention lays them out (row stride 3·d), and the
// output written into [B, S, d]. GFLOP/s counts the two products (halved under a causal mask).
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <span>
#include <vector>

#include "engine/attention.hpp"
#include "engine/ops.hpp"

namespace {

using i64 = std::int64_t;

engine::TensorView heads_of(float* base, i64 B, i64 S, i64 H, i64 dk, i64 row_stride) {
  return engine::TensorView(base, {B, S, H * dk}, {S * row_stride, row_stride, 1}).split(2, H, dk).transposed(1, 2);
}

enum class Mask { none, key_padding, causal };

// Arguments: batch, heads, seq, threads. d_k = 64.
void attention(benchmark::State& state, Mask kind) {
  const i64 B = state.range(0), H = state.range(1), S = state.range(2), dk = 64, d = H * dk;
  engine::set_num_threads(static_cast<int>(state.range(3)));
  std::vector<float> qkv(static_cast<std::size_t>(B * S * 3 * d)), out(static_cast<std::size_t>(B * S * d));
  std::mt19937 rng(0);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& v : qkv) v = dist(rng);
  std::vector<bool> padding_bits(static_cast<std::size_t>(B * S), false);
  // W1_b8's mask: the second half of the batch has its last quarter of keys padded.
  for (i64 b = B / 2; b < B; ++b)
    for (i64 j = S - S / 4; j < S; ++j) padding_bits[static_cast<std::size_t>(b * S + j)] = true;
  std::unique_ptr<bool[]> padding(new bool[static_cast<std::size_t>(B * S)]);
  for (std::size_t i = 0; i < padding_bits.size(); ++i) padding[i] = padding_bits[i];
  engine::AttentionMask mask;
  mask.causal = kind == Mask::causal;
  if (kind == Mask::key_padding) mask.key_padding = std::span<const bool>(padding.get(), static_cast<std::size_t>(B * S));
  const auto q = heads_of(qkv.data(), B, S, H, dk, 3 * d), k = heads_of(qkv.data() + d, B, S, H, dk, 3 * d),
             v = heads_of(qkv.data() + 2 * d, B, S, H, dk, 3 * d), o = heads_of(out.data(), B, S, H, dk, d);
  for (auto _ : state) {
    engine::scaled_dot_product_attention(q, k, v, o, mask);
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = 4.0 * static_cast<double>(B * H * S * S * dk) * (kind == Mask::causal ? 0.5 : 1.0);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// W1_b1, W3's per-layer attention, W1_b8 (key padding), W4 (causal).
BENCHMARK_CAPTURE(attention, W1_b1, Mask::none)->ArgsProduct({{1}, {12}, {128}, {1, 2}})->UseRealTime();
BENCHMARK_CAPTURE(attention, W3, Mask::none)->ArgsProduct({{8}, {8}, {128}, {1, 2}})->UseRealTime();
BENCHMARK_CAPTURE(attention, W1_b8, Mask::key_padding)->ArgsProduct({{8}, {12}, {128}, {1, 2}})->UseRealTime();
BENCHMARK_CAPTURE(attention, W4, Mask::causal)->ArgsProduct({{4}, {12}, {512}, {1, 2}})->UseRealTime();

}  // namespace
