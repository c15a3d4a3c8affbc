// The scoped timers inside the engine (include/engine/profile.hpp describes what they record).
// OpScope and LayerScope cost one thread-local load and a branch when no collector is active.
#pragma once

#include <cstdint>

#include "engine/profile.hpp"

namespace engine::profile {

// The collector active on this thread, or null.
ProfileCollector* active();

// Labels the records made inside it with a stack and layer index.
class LayerScope {
 public:
  LayerScope(const char* stack, std::int32_t layer);
  ~LayerScope();
  LayerScope(const LayerScope&) = delete;
  LayerScope& operator=(const LayerScope&) = delete;

 private:
  bool on_;
  const char* outer_stack_;
  std::int32_t outer_layer_;
};

// Times one op call.
class OpScope {
 public:
  OpScope(const char* op, double flops, double bytes) : collector_(active()) {
    if (collector_ != nullptr) begin(op, flops, bytes);
  }
  ~OpScope() {
    if (collector_ != nullptr) end();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  void begin(const char* op, double flops, double bytes);
  void end();

  ProfileCollector* collector_;
  const char* op_ = nullptr;
  double flops_ = 0, bytes_ = 0, start_us_ = 0;
};

// Nominal costs, float32.
inline double gemm_flops(std::int64_t m, std::int64_t n, std::int64_t k) {
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}
inline double gemm_bytes(std::int64_t m, std::int64_t n, std::int64_t k) {
  return 4.0 * (static_cast<double>(m) * static_cast<double>(k) + static_cast<double>(k) * static_cast<double>(n) +
                static_cast<double>(m) * static_cast<double>(n));
}

}  // namespace engine::profile
