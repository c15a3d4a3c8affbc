// The tensor arena: one 64-byte-aligned block, sized once from a plan, that hands out buffers
// without touching the heap again. Pages are touched when the arena is created so that the steady
// state takes no page faults.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace engine {

inline constexpr std::size_t kArenaAlignment = 64;

// A slot reserved in a plan: where a buffer will live inside the arena.
struct ArenaSlot {
  std::size_t offset = 0;
  std::size_t bytes = 0;
};

// Collects the buffers a computation needs before any memory exists.
class ArenaPlan {
 public:
  // Reserves `count` elements of T, aligned to 64 bytes; `name` appears in error messages.
  template <class T>
  ArenaSlot reserve(const std::string& name, std::size_t count) {
    return reserve_bytes(name, count * sizeof(T));
  }
  ArenaSlot reserve_bytes(const std::string& name, std::size_t bytes);
  std::size_t total_bytes() const { return total_; }

 private:
  std::size_t total_ = 0;
};

class Arena {
 public:
  Arena() = default;
  // Allocates (and touches) `bytes` bytes; 0 is allowed and makes an empty arena.
  explicit Arena(std::size_t bytes);
  explicit Arena(const ArenaPlan& plan) : Arena(plan.total_bytes()) {}
  ~Arena();
  Arena(Arena&& other) noexcept;
  Arena& operator=(Arena&& other) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  std::size_t capacity() const { return capacity_; }
  std::size_t used() const { return used_; }
  std::byte* data() const { return base_; }

  // The buffer a plan reserved. Throws engine::Error if the slot lies outside this arena.
  template <class T>
  T* at(const ArenaSlot& slot) const {
    return reinterpret_cast<T*>(checked_at(slot));
  }

  // Bump allocation for callers that size as they go; throws engine::Error naming `name` and the
  // sizes when the arena is exhausted (never falls back to the heap).
  template <class T>
  T* allocate(const char* name, std::size_t count) {
    return reinterpret_cast<T*>(allocate_bytes(name, count * sizeof(T)));
  }
  std::byte* allocate_bytes(const char* name, std::size_t bytes);

  // Forgets every bump allocation (the memory stays).
  void reset() { used_ = 0; }
  // Forgets the bump allocations made since used() returned `mark` (scoped scratch).
  void release(std::size_t mark) { used_ = mark < used_ ? mark : used_; }

 private:
  std::byte* checked_at(const ArenaSlot& slot) const;

  std::byte* base_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t used_ = 0;
};

}  // namespace engine
