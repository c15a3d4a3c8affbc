// engine-profile: which layer and op costs what.
//
//   engine-profile --workload W1_b1|W1_b8|W2|W3|W4 | --model DIR [--batch B] [--seq S]
//                  [--threads N] [--runs N] [--trace FILE.json] [--roofline FILE.svg|png]
//
// Runs the workload (or the model on random inputs) twice to warm up, then --runs times under a
// ProfileCollector, and prints per layer and op: calls, total ms, share of the wall time, GFLOP/s,
// % of the measured FMA peak, bytes moved and arithmetic intensity; then a summary per op type.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "model_workloads.hpp"
#include "profile_report.hpp"

namespace {
using engine::fail;
using i64 = std::int64_t;
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"engine-profile: time per layer and op of a built-in workload or a model"};
  std::string workload, model_dir, trace_path, roofline_path;
  i64 batch = 1, seq = 128;
  int threads = 0, runs = 5;
  auto* w = app.add_option("--workload", workload, "built-in workload: W1_b1, W1_b8, W2, W3 or W4");
  auto* m = app.add_option("--model", model_dir, "a model directory (config.json + model.safetensors)");
  w->excludes(m);
  app.add_option("--batch", batch, "batch for --model (default 1)")->check(CLI::Range(1, 4096));
  app.add_option("--seq", seq, "sequence length for --model (default 128)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--threads", threads, "threads (default: all cores)")->check(CLI::Range(1, 1024));
  app.add_option("--runs", runs, "timed runs after two warm-up runs (default 5)")->check(CLI::Range(1, 100000));
  app.add_option("--trace", trace_path, "write the timed runs as a Chrome trace-event JSON file");
  app.add_option("--roofline", roofline_path, "draw a roofline of the op types (.svg or .png, needs gnuplot)");
  CLI11_PARSE(app, argc, argv);

  try {
    if (workload.empty() && model_dir.empty()) fail("give --workload ID or --model DIR");
    if (threads > 0) {
      engine::set_num_threads(threads);
      omp_set_num_threads(threads);
    }
    const int used_threads = threads > 0 ? threads : omp_get_max_threads();
    const engine::bench::Runnable workload_run = model_dir.empty()
                                                     ? engine::bench::make_builtin_workload(workload)
                                                     : engine::bench::make_model_workload(model_dir, batch, seq);
    const std::function<void()>& run = workload_run.run;
    const std::string what = model_dir.empty() ? workload
                                               : model_dir + " (batch " + std::to_string(batch) + ", seq " +
                                                     std::to_string(seq) + ")";
    run();
    run();  // warm-up: caches, page faults, thread pools
    std::vector<engine::ProfileRecord> records;
    double wall_us = 0;
    {
      engine::ProfileCollector collector;
      for (int i = 0; i < runs; ++i) {
        const double t0 = collector.now_us();
        run();
        wall_us += collector.now_us() - t0;
      }
      records = collector.records();
    }
    const double peak = engine::measure_fma_peak_gflops(used_threads);
    const engine::profiler::Report report = engine::profiler::summarize(records, wall_us, runs);
    std::cout << "engine-profile: " << what << ", " << used_threads << " thread(s), " << runs
              << " timed run(s) after 2 warm-up runs; FMA peak " << peak << " GFLOP/s\n\n";
    engine::profiler::print_report(std::cout, report, peak);
    if (!trace_path.empty()) {
      std::ofstream out(trace_path);
      if (!out) fail("--trace: cannot write '", trace_path, "'");
      engine::profiler::write_trace(out, records);
      std::cout << "wrote " << trace_path << " (open it in https://ui.perfetto.dev or chrome://tracing)\n";
    }
    if (!roofline_path.empty()) {
      const double bandwidth = engine::measure_read_bandwidth_gbs(used_threads);
      engine::profiler::write_roofline(roofline_path, report, peak, bandwidth);
      std::cout << "wrote " << roofline_path << " (read bandwidth " << bandwidth << " GB/s)\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "engine-profile: " << e.what() << "\n";
    return 1;
  }
}
