// Google Benchmark: our SGEMM against oneDNN's f32 matmul on the eleven workload shapes, at 1 and
// 2 threads, plain and with prepacked weights. Counter GFLOP/s (reported as FLOP/s).
#include <benchmark/benchmark.h>
#include <omp.h>

#include "engine/ops.hpp"
#include "gemm_runners.hpp"

namespace {

using engine::bench::GemmImpl;

void run_gemm(benchmark::State& state, engine::bench::GemmShape shape, GemmImpl impl, int threads) {
  engine::set_num_threads(threads);
  omp_set_num_threads(threads);  // oneDNN's OpenMP runtime reads the pool size from here
  engine::bench::GemmProblem problem(shape);
  auto run = problem.make(impl);
  run();  // warm-up: first-touch of C, primitive JIT
  for (auto _ : state) run();
  state.counters["FLOP/s"] = benchmark::Counter(problem.flops(), benchmark::Counter::kIsIterationInvariantRate);
}

const bool registered = [] {
  for (const auto& shape : engine::bench::kGemmShapes)
    for (int threads : {1, 2})
      for (GemmImpl impl : {GemmImpl::ours, GemmImpl::onednn, GemmImpl::ours_packed, GemmImpl::onednn_packed}) {
        if (!engine::bench::impl_available(impl)) continue;
        const std::string name = std::string("gemm/") + shape.name + "/" + engine::bench::impl_name(impl) +
                                 "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), run_gemm, shape, impl, threads)->UseRealTime()->MinTime(0.2);
      }
  return true;
}();

}  // namespace
