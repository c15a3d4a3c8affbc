#include "engine/arena.hpp"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "engine/core/memory.hpp"
#include "engine/error.hpp"

namespace engine {
namespace {
std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }
}  // namespace

ArenaSlot ArenaPlan::reserve_bytes(const std::string& name, std::size_t bytes) {
  const std::size_t aligned = round_up(bytes, kArenaAlignment);
  if (aligned < bytes || total_ + aligned < total_) fail("arena plan: buffer '", name, "' of ", bytes, " bytes overflows");
  ArenaSlot slot{total_, bytes};
  total_ += aligned;
  return slot;
}

Arena::Arena(std::size_t bytes) {
  if (bytes == 0) return;
  capacity_ = round_up(bytes, kArenaAlignment);
  // A large arena is rounded up to whole huge pages, so that all of it is on them.
  const std::size_t size =
      capacity_ >= memory::kHugePageBytes ? round_up(capacity_, memory::kHugePageBytes) : capacity_;
  base_ = static_cast<std::byte*>(memory::allocate(size, "arena"));
  std::memset(base_, 0, capacity_);  // touch every page now, not in the hot path
}

Arena::~Arena() { std::free(base_); }

Arena::Arena(Arena&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)),
      used_(std::exchange(other.used_, 0)) {}

Arena& Arena::operator=(Arena&& other) noexcept {
  if (this != &other) {
    std::free(base_);
    base_ = std::exchange(other.base_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    used_ = std::exchange(other.used_, 0);
  }
  return *this;
}

std::byte* Arena::checked_at(const ArenaSlot& slot) const {
  if (slot.offset > capacity_ || slot.bytes > capacity_ - slot.offset)
    fail("arena: slot [", slot.offset, ", +", slot.bytes, ") lies outside the arena of ", capacity_, " bytes");
  return base_ + slot.offset;
}

std::byte* Arena::allocate_bytes(const char* name, std::size_t bytes) {
  const std::size_t aligned = round_up(bytes, kArenaAlignment);
  if (aligned < bytes || aligned > capacity_ - used_)
    fail("arena: buffer '", name, "' needs ", bytes, " bytes but only ", capacity_ - used_, " of ",
         capacity_, " are left");
  std::byte* p = base_ + used_;
  used_ += aligned;
  return p;
}

}  // namespace engine
