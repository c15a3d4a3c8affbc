// The quiet steady state: after a warm-up run, a Session runs a model again and again without a
// single heap allocation and without a fresh page fault (a fresh 4 KiB page costs ~11 us here).
// This binary replaces operator new to count allocations, so it is kept apart from engine_tests.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "engine/model.hpp"
#include "fixture_reader.hpp"
#include "model_loader.hpp"

namespace {
std::atomic<long> g_allocations{0};
}

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace engine::test {
namespace {

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

TEST(SteadyState, NoAllocationsAndNoPageFaultsAfterWarmUp) {
  const std::string dir = std::string(ENGINE_FIXTURES_DIR) + "/models/transformer_2_2_post_relu_pe_concat";
  Fixture f(dir);
  const Model model = loader::load_model(dir);
  const std::int64_t B = f.integer("batch"), Ss = f.integer("src_len"), St = f.integer("tgt_len");
  Session session(model, B, Ss, St);
  AttentionMask src_mask, tgt_mask, memory_mask;
  src_mask.key_padding = f.bools("src_key_padding_mask");
  tgt_mask.causal = true;
  tgt_mask.key_padding = f.bools("tgt_key_padding_mask");
  memory_mask.key_padding = f.bools("memory_key_padding_mask");
  const std::vector<float> src0 = f.floats("src"), tgt0 = f.floats("tgt");
  std::vector<float> memory = src0, out = tgt0;
  auto run = [&] {
    std::copy(src0.begin(), src0.end(), memory.begin());
    std::copy(tgt0.begin(), tgt0.end(), out.begin());
    session.encode(memory.data(), B, Ss, src_mask);
    session.decode(out.data(), memory.data(), B, St, Ss, tgt_mask, memory_mask);
  };
  run();  // warm-up: per-thread scratch grows to its size here
  run();
  const long allocations = g_allocations.load(), faults = minor_faults();
  for (int i = 0; i < 50; ++i) run();
  EXPECT_EQ(g_allocations.load() - allocations, 0) << "heap allocations in 50 steady-state runs";
  EXPECT_EQ(minor_faults() - faults, 0) << "minor page faults in 50 steady-state runs";
}

}  // namespace
}  // namespace engine::test
