// What engine-profile makes of the engine's op records (engine/profile.hpp): a table per layer and
// op, a summary per op type, a Chrome trace-event file, and a roofline picture.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "engine/profile.hpp"

namespace engine::profiler {

struct OpTotals {
  std::string layer;  // "encoder.layers.0"; empty in the per-op-type summary
  std::string op;
  std::int64_t calls = 0;
  double total_us = 0, flops = 0, bytes = 0;
  double gflops() const { return total_us > 0 ? flops / total_us / 1e3 : 0.0; }
  double intensity() const { return bytes > 0 ? flops / bytes : 0.0; }  // FLOP per byte
};

struct Report {
  std::vector<OpTotals> by_layer_op;  // in the order the ops first ran
  std::vector<OpTotals> by_op;        // summed over layers, largest total first
  double wall_us = 0;                 // the runs' wall time, which the ops' shares refer to
  double ops_us = 0;                  // the sum of every op's time (<= wall_us)
  int runs = 0;
};

Report summarize(const std::vector<ProfileRecord>& records, double wall_us, int runs);

// The table: layer, op, calls, total ms, % of the wall time, GFLOP/s, % of peak, MB moved,
// FLOP/byte; then the summary by op type.
void print_report(std::ostream& out, const Report& report, double peak_gflops);

// Chrome's trace-event format: {"traceEvents": [{"name", "cat", "ph": "X", "ts", "dur", "pid",
// "tid", "args"}...]}, times in microseconds; opens in Perfetto and chrome://tracing.
void write_trace(std::ostream& out, const std::vector<ProfileRecord>& records);

// A roofline (log-log: FLOP/byte against GFLOP/s, the roofs min(peak, bandwidth x intensity)) with
// one point per op type, drawn by gnuplot into `path` (.svg or .png). Throws engine::Error when
// gnuplot is missing or fails.
void write_roofline(const std::string& path, const Report& report, double peak_gflops, double bandwidth_gbs);

}  // namespace engine::profiler
