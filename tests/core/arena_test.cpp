// ArenaPlan / Arena: alignment, disjoint slots, bump allocation, exhaustion errors, moves.
#include "engine/arena.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/error.hpp"

namespace {

using engine::Arena;
using engine::ArenaPlan;
using engine::ArenaSlot;
using engine::kArenaAlignment;

std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// Runs `f` and returns the engine::Error message it throws (fails the test if it does not throw).
template <class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const engine::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected engine::Error";
  return {};
}

TEST(ArenaPlanTest, SlotsAreAlignedAndDisjoint) {
  ArenaPlan plan;
  const std::vector<std::size_t> counts = {1, 17, 16, 0, 100, 3, 64};
  std::vector<ArenaSlot> slots;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    std::string name = "b";
    name += std::to_string(i);  // (not "b" + to_string: GCC 12 warns -Wrestrict on that)
    slots.push_back(plan.reserve<float>(name, counts[i]));
  }
  std::size_t end = 0;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    EXPECT_EQ(slots[i].offset % kArenaAlignment, 0u) << "slot " << i;
    EXPECT_EQ(slots[i].bytes, counts[i] * sizeof(float)) << "slot " << i;
    EXPECT_GE(slots[i].offset, end) << "slot " << i << " overlaps the previous one";
    end = slots[i].offset + slots[i].bytes;
  }
  EXPECT_GE(plan.total_bytes(), end);
  EXPECT_EQ(plan.total_bytes() % kArenaAlignment, 0u);
  // 1, 17, 16, 0, 100, 3, 64 floats round up to 64, 128, 64, 0, 448, 64, 256 bytes.
  EXPECT_EQ(plan.total_bytes(), 64u + 128u + 64u + 0u + 448u + 64u + 256u);
}

TEST(ArenaPlanTest, ReserveOverflowThrowsNamingTheBuffer) {
  ArenaPlan plan;
  plan.reserve<float>("small", 8);
  const std::string msg = error_message([&] { plan.reserve_bytes("huge_buffer", SIZE_MAX - 10); });
  EXPECT_NE(msg.find("huge_buffer"), std::string::npos) << msg;
}

TEST(ArenaTest, AtReturnsBasePlusOffsetAlignedAndWritable) {
  ArenaPlan plan;
  const ArenaSlot a = plan.reserve<float>("a", 10);
  const ArenaSlot b = plan.reserve<double>("b", 7);
  const ArenaSlot c = plan.reserve<std::int32_t>("c", 33);
  Arena arena(plan);
  ASSERT_NE(arena.data(), nullptr);
  EXPECT_EQ(addr(arena.data()) % kArenaAlignment, 0u);
  EXPECT_GE(arena.capacity(), plan.total_bytes());
  EXPECT_EQ(arena.used(), 0u);

  float* pa = arena.at<float>(a);
  double* pb = arena.at<double>(b);
  std::int32_t* pc = arena.at<std::int32_t>(c);
  EXPECT_EQ(addr(pa), addr(arena.data() + a.offset));
  EXPECT_EQ(addr(pb), addr(arena.data() + b.offset));
  EXPECT_EQ(addr(pc), addr(arena.data() + c.offset));
  for (const void* p : {static_cast<const void*>(pa), static_cast<const void*>(pb), static_cast<const void*>(pc)})
    EXPECT_EQ(addr(p) % kArenaAlignment, 0u);

  // Fresh memory reads as zero; writes to one buffer do not reach the others.
  for (std::size_t i = 0; i < arena.capacity(); ++i) ASSERT_EQ(arena.data()[i], std::byte{0}) << "byte " << i;
  std::fill(pa, pa + 10, 1.0f);
  std::fill(pb, pb + 7, 2.0);
  std::fill(pc, pc + 33, 3);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(pa[i], 1.0f);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(pb[i], 2.0);
  for (int i = 0; i < 33; ++i) EXPECT_EQ(pc[i], 3);
}

TEST(ArenaTest, SlotOutsideTheArenaThrows) {
  ArenaPlan big;
  big.reserve<float>("first", 16);
  const ArenaSlot far = big.reserve<float>("far", 16);
  Arena small(64);  // holds only the first slot
  EXPECT_THROW(small.at<float>(far), engine::Error);
  EXPECT_THROW(small.at<float>(ArenaSlot{0, 65}), engine::Error);
  EXPECT_THROW(small.at<float>(ArenaSlot{SIZE_MAX - 4, 8}), engine::Error);  // offset + bytes wraps
  EXPECT_NO_THROW(small.at<float>(ArenaSlot{0, 64}));
  EXPECT_NO_THROW(small.at<float>(ArenaSlot{32, 32}));
}

TEST(ArenaTest, AllocateBumpsAlignedAndThrowsWhenExhausted) {
  Arena arena(256);
  ASSERT_EQ(arena.capacity(), 256u);
  float* a = arena.allocate<float>("a", 3);  // 12 bytes -> 64
  EXPECT_EQ(a, reinterpret_cast<float*>(arena.data()));
  EXPECT_EQ(arena.used(), 64u);
  float* b = arena.allocate<float>("b", 20);  // 80 bytes -> 128
  EXPECT_EQ(addr(b), addr(arena.data()) + 64);
  EXPECT_EQ(arena.used(), 192u);
  EXPECT_EQ(addr(b) % kArenaAlignment, 0u);

  const std::string msg = error_message([&] { arena.allocate<float>("attention_scores", 17); });  // 68 > 64 left
  EXPECT_NE(msg.find("attention_scores"), std::string::npos) << msg;
  EXPECT_NE(msg.find("68"), std::string::npos) << "message should give the size asked for: " << msg;
  EXPECT_EQ(arena.used(), 192u) << "a failed allocation must not consume space";

  float* c = arena.allocate<float>("c", 16);  // exactly the 64 bytes left
  EXPECT_EQ(addr(c), addr(arena.data()) + 192);
  EXPECT_EQ(arena.used(), 256u);
  EXPECT_THROW(arena.allocate<float>("one_more", 1), engine::Error);

  arena.reset();
  EXPECT_EQ(arena.used(), 0u);
  EXPECT_EQ(arena.allocate<float>("again", 1), a) << "reset() starts over at the base";
}

TEST(ArenaTest, CapacityRoundsUpToAlignment) {
  Arena arena(100);
  EXPECT_EQ(arena.capacity(), 128u);
  EXPECT_NO_THROW(arena.allocate_bytes("x", 128));
}

TEST(ArenaTest, LargeArenaIsZeroedAndAligned) {
  const std::size_t bytes = (std::size_t{4} << 20) + 192;  // takes the huge-page path
  Arena arena(bytes);
  ASSERT_GE(arena.capacity(), bytes);
  EXPECT_EQ(addr(arena.data()) % kArenaAlignment, 0u);
  const std::byte* p = arena.data();
  EXPECT_TRUE(std::all_of(p, p + arena.capacity(), [](std::byte v) { return v == std::byte{0}; }));
  p = arena.allocate_bytes("all", arena.capacity());
  EXPECT_EQ(p, arena.data());
}

TEST(ArenaTest, ZeroSizeArena) {
  Arena empty(0);
  EXPECT_EQ(empty.capacity(), 0u);
  EXPECT_EQ(empty.used(), 0u);
  EXPECT_THROW(empty.allocate<float>("x", 1), engine::Error);
  EXPECT_THROW(empty.at<float>(ArenaSlot{0, 4}), engine::Error);
  ArenaPlan plan;
  EXPECT_EQ(plan.total_bytes(), 0u);
  Arena from_empty_plan(plan);
  EXPECT_EQ(from_empty_plan.capacity(), 0u);
  Arena defaulted;
  EXPECT_EQ(defaulted.capacity(), 0u);
  EXPECT_EQ(defaulted.data(), nullptr);
  EXPECT_THROW(defaulted.allocate_bytes("y", 1), engine::Error);
}

TEST(ArenaTest, MoveTransfersOwnership) {
  Arena a(512);
  float* p = a.allocate<float>("p", 4);
  p[0] = 42.0f;
  std::byte* base = a.data();

  Arena b(std::move(a));
  EXPECT_EQ(b.data(), base);
  EXPECT_EQ(b.capacity(), 512u);
  EXPECT_EQ(b.used(), 64u);
  EXPECT_EQ(reinterpret_cast<float*>(b.data())[0], 42.0f);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_EQ(a.capacity(), 0u);
  EXPECT_EQ(a.used(), 0u);
  EXPECT_THROW(a.allocate<float>("after_move", 1), engine::Error);

  Arena c(64);
  c = std::move(b);
  EXPECT_EQ(c.data(), base);
  EXPECT_EQ(c.capacity(), 512u);
  EXPECT_EQ(c.used(), 64u);
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.capacity(), 0u);

  Arena& self = c;
  c = std::move(self);  // self-move keeps the buffer
  EXPECT_EQ(c.data(), base);
  EXPECT_EQ(c.capacity(), 512u);
}

}  // namespace
