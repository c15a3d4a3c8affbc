#include "engine/core/cpu.hpp"

#include <sched.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "engine/error.hpp"

namespace engine {
namespace {

// __builtin_cpu_supports checks the OS-enabled state (XCR0) too, so an AVX-512 CPU under an OS that
// does not save zmm registers reports no AVX-512.
Isa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512cd"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
  return Isa::portable;
}

std::atomic<int> g_active{-1};
std::once_flag g_init;

void init_active() {
  std::call_once(g_init, [] {
    Isa isa = detected_isa();
    if (const char* cap = std::getenv("ENGINE_MAX_ISA"); cap != nullptr && *cap != '\0') {
      const Isa limit = cpu::parse_isa_name(cap);
      if (limit < isa) isa = limit;
    }
    int expected = -1;
    g_active.compare_exchange_strong(expected, static_cast<int>(isa));
  });
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::portable: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "unknown";
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa active_isa() {
  init_active();
  return static_cast<Isa>(g_active.load(std::memory_order_acquire));
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::portable, Isa::avx2, Isa::avx512})
    if (isa <= detected_isa()) out.push_back(isa);
  return out;
}

void set_active_isa(Isa isa) {
  if (isa > detected_isa())
    fail("set_active_isa: this CPU cannot run ", isa_name(isa), " (best available: ", isa_name(detected_isa()), ")");
  init_active();
  g_active.store(static_cast<int>(isa), std::memory_order_release);
}

namespace cpu {

Isa parse_isa_name(const char* text) {
  if (std::strcmp(text, "avx512") == 0) return Isa::avx512;
  if (std::strcmp(text, "avx2") == 0) return Isa::avx2;
  if (std::strcmp(text, "scalar") == 0 || std::strcmp(text, "portable") == 0) return Isa::portable;
  fail("ENGINE_MAX_ISA: unknown instruction set '", text, "' (expected avx512, avx2 or scalar)");
}

int core_count() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return 1;
}

}  // namespace cpu
}  // namespace engine
