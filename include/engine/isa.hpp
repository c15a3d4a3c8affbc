// Instruction-set selection. The library holds one copy of every kernel per instruction set and
// chooses once, at first use, the best one this CPU (and ENGINE_MAX_ISA) allows.
#pragma once

#include <cstddef>

#include <vector>

namespace engine {

// Ordered from least to most capable.
enum class Isa {
  portable,  // x86-64 baseline (SSE2) build of the xsimd kernels; runs anywhere
  avx2,      // AVX2 + FMA
  avx512,    // AVX-512 F/BW/DQ/VL/CD
};

const char* isa_name(Isa isa);

// Best instruction set the CPU and the operating system support.
Isa detected_isa();

// The instruction set the kernels run with: detected_isa() capped by the environment variable
// ENGINE_MAX_ISA=avx512|avx2|scalar ("scalar" selects the portable build). An unknown value is an
// engine::Error at first use.
Isa active_isa();

// Every instruction set this machine can run, least capable first.
std::vector<Isa> available_isas();

// Switches the kernels used by every op from now on (tests and benchmarks compare ISAs this way).
// Throws engine::Error if the CPU cannot run `isa`. Not thread-safe with concurrent ops.
void set_active_isa(Isa isa);

// Measures this machine's FP32 FMA peak in GFLOP/s with the active instruction set: every thread
// runs 16 independent chains of register-only vector FMAs, in five slices of about seconds / 5;
// the result is the FLOPs of a slice over the fastest slice's wall time. Used for "% of peak" in
// benchmarks and the profiler.
double measure_fma_peak_gflops(int threads = 1, double seconds = 0.2);

// Measures how fast `threads` threads read memory, in GB/s: a buffer of `bytes` (far larger than
// the caches) is filled once, then read whole five times, each thread summing its own contiguous
// share; the result is bytes over the fastest pass. Used for "% of bandwidth" where a workload is
// bound by reading weights (decoding at batch 1).
double measure_read_bandwidth_gbs(int threads = 1, std::size_t bytes = std::size_t{512} << 20);

}  // namespace engine
