// Per-op timing of the engine's forward passes. Scoped timers sit in the layers and ops; they do
// nothing (one thread-local pointer test) unless a ProfileCollector is alive on the calling thread,
// and then append one record per op call: which stack and layer, which op, when, how long, and the
// op's nominal FLOPs and bytes moved.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace engine {

struct ProfileRecord {
  const char* stack = "";  // "encoder", "decoder" or "model" (static strings)
  std::int32_t layer = -1;  // layer index within the stack; -1 outside layers
  const char* op = "";      // "qkv_projection", "attention", "output_projection", "add_norm",
                            // "ffn_up_activation", "ffn_down", "cross_q_projection", ...
  std::int32_t thread = 0;  // small per-thread index (the caller's thread; ops fan out inside)
  double start_us = 0;      // since the collector started
  double duration_us = 0;
  double flops = 0;  // nominal: 2·M·N·K for a GEMM, 4·B·H·Sq·Sk'·dk for attention, ...
  double bytes = 0;  // nominal: every operand read once, every result written once (float32)

  std::string layer_name() const;  // "encoder.layers.3", or the stack alone outside layers
};

// Collects the records of every engine call made on this thread while it lives (collectors nest:
// the innermost collects). Not copyable; records() may be read while it lives.
class ProfileCollector {
 public:
  ProfileCollector();
  ~ProfileCollector();
  ProfileCollector(const ProfileCollector&) = delete;
  ProfileCollector& operator=(const ProfileCollector&) = delete;

  const std::vector<ProfileRecord>& records() const { return records_; }
  void clear() { records_.clear(); }
  // Microseconds since the collector started (the records' clock).
  double now_us() const;

 private:
  friend struct ProfileAccess;
  std::vector<ProfileRecord> records_;
  std::int64_t origin_ns_ = 0;
  ProfileCollector* outer_ = nullptr;
};

}  // namespace engine
