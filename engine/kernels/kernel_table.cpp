#include "engine/kernels/kernel_table.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <omp.h>
#include <vector>

#include "engine/error.hpp"

namespace engine::kernels {

const KernelTable& table_for(Isa isa) {
  if (isa > detected_isa()) fail("kernels: this CPU cannot run ", isa_name(isa));
  switch (isa) {
    case Isa::avx512: return avx512_table();
    case Isa::avx2: return avx2_table();
    case Isa::portable: break;
  }
  return portable_table();
}

const KernelTable& active() { return table_for(active_isa()); }

}  // namespace engine::kernels

namespace engine {

double measure_fma_peak_gflops(int threads, double seconds) {
  if (threads < 1) fail("measure_fma_peak_gflops: threads must be >= 1, got ", threads);
  const kernels::KernelTable& kt = kernels::active();
  const auto now = [] { return std::chrono::steady_clock::now(); };
  // Calibrate on one thread (which also wakes the core up), then time the real run.
  std::int64_t iters = 1 << 14;
  volatile float sink = 0.0f;
  for (;;) {
    const auto t0 = now();
    sink = sink + kt.fma_probe(iters);
    const double dt = std::chrono::duration<double>(now() - t0).count();
    if (dt >= seconds / 4 || iters > (std::int64_t{1} << 40)) {
      iters = static_cast<std::int64_t>(static_cast<double>(iters) * seconds / (dt > 0 ? dt : 1e-9));
      break;
    }
    iters *= 4;
  }
  // The best of five slices: the peak is what the core can do, and a slice that another tenant of
  // this machine interrupted says less about that than the fastest one.
  constexpr int kSlices = 5;
  iters = std::max<std::int64_t>(1, iters / kSlices);
  double best_dt = 0.0;
  for (int slice = 0; slice < kSlices; ++slice) {
    float total = 0.0f;
    const auto t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += kt.fma_probe(iters);
    const double dt = std::chrono::duration<double>(now() - t0).count();
    sink = sink + total;
    if (slice == 0 || dt < best_dt) best_dt = dt;
  }
  const double flops = static_cast<double>(iters) * 16.0 * kt.vector_floats * 2.0 * threads;
  return flops / best_dt / 1e9;
}

double measure_read_bandwidth_gbs(int threads, std::size_t bytes) {
  if (threads < 1) fail("measure_read_bandwidth_gbs: threads must be >= 1, got ", threads);
  const std::size_t words =
      std::max<std::size_t>(bytes / sizeof(std::uint64_t), std::size_t{1024} * static_cast<std::size_t>(threads));
  std::vector<std::uint64_t> buffer(words);  // zero-filled: every page is touched before timing
  for (std::size_t i = 0; i < words; i += 512) buffer[i] = i;
  volatile std::uint64_t sink = 0;
  double best_dt = 0.0;
  for (int pass = 0; pass < 5; ++pass) {
    std::uint64_t total = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const auto n = static_cast<std::size_t>(omp_get_num_threads()), t = static_cast<std::size_t>(omp_get_thread_num());
      const std::uint64_t* p = buffer.data() + words * t / n;
      const std::size_t count = words * (t + 1) / n - words * t / n;
      // Four independent sums so that the loads, not an add chain, set the pace.
      std::uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      std::size_t i = 0;
      for (; i + 4 <= count; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
      }
      for (; i < count; ++i) s0 += p[i];
      total += s0 + s1 + s2 + s3;
    }
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink + total;
    if (pass == 0 || dt < best_dt) best_dt = dt;
  }
  return static_cast<double>(words * sizeof(std::uint64_t)) / best_dt / 1e9;
}

}  // namespace engine
