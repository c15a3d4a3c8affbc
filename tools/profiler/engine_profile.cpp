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

#include "engine/core/profile_scope.hpp"
#include "engine/engine.hpp"
#include "model_loader.hpp"
#include "model_workloads.hpp"
#include "profile_report.hpp"

namespace {

using engine::fail;
using i64 = std::int64_t;

// W4 of ../shared/workloads.json: causal attention, q, k, v [4, 12, 512, 64].
class AttentionWorkload {
 public:
  AttentionWorkload() : q_(kN), k_(kN), v_(kN), o_(kN) {
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (auto* t : {&q_, &k_, &v_})
      for (float& x : *t) x = dist(rng);
  }
  void operator()() {
    auto view = [](std::vector<float>& t) { return engine::TensorView(t.data(), {4, 12, 512, 64}); };
    engine::AttentionMask mask;
    mask.causal = true;
    const engine::profile::LayerScope layer("W4", -1);
    const engine::profile::OpScope scope("attention", 2.0 * 2.0 * 48.0 * 512.0 * 513.0 / 2.0 * 64.0,
                                         4.0 * 4.0 * static_cast<double>(kN));
    engine::scaled_dot_product_attention(view(q_), view(k_), view(v_), view(o_), mask);
  }

 private:
  static constexpr std::size_t kN = 4 * 12 * 512 * 64;
  std::vector<float> q_, k_, v_, o_;
};

// A user's model on random inputs: the encoder and/or decoder of any exported model, or a
// language model's prefill.
class ModelWorkload {
 public:
  ModelWorkload(const std::string& dir, i64 batch, i64 seq) : model_(engine::loader::load_model(dir)), B_(batch), S_(seq) {
    const engine::ModelConfig& c = model_.config();
    if (c.positional && seq > c.positional->max_len)
      fail("--seq ", seq, " exceeds the model's positional max_len ", c.positional->max_len);
    std::mt19937 rng(0);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    input_.resize(static_cast<std::size_t>(batch * seq * model_.d_model()));
    for (float& x : input_) x = dist(rng);
    if (model_.is_language_model()) {
      generator_ = std::make_unique<engine::Generator>(model_, batch, seq, c.has_decoder() && c.has_encoder() ? seq : 0);
      std::uniform_int_distribution<std::int32_t> id(0, static_cast<std::int32_t>(model_.vocab() - 1));
      prompts_.assign(static_cast<std::size_t>(batch), {});
      for (auto& p : prompts_)
        for (i64 s = 0; s < seq; ++s) p.push_back(id(rng));
      if (c.has_encoder() && c.has_decoder()) sources_ = prompts_;
    } else {
      session_ = std::make_unique<engine::Session>(model_, batch, seq, seq);
      memory_.resize(input_.size());
      target_.resize(input_.size());
    }
  }
  void operator()() {
    if (generator_) {
      (void)generator_->prefill(prompts_, sources_);
      return;
    }
    const engine::ModelConfig& c = model_.config();
    std::copy(input_.begin(), input_.end(), memory_.begin());
    if (c.has_encoder()) session_->encode(memory_.data(), B_, S_, {});
    if (c.has_decoder()) {
      std::copy(input_.begin(), input_.end(), target_.begin());
      engine::AttentionMask causal;
      causal.causal = true;
      session_->decode(target_.data(), memory_.data(), B_, S_, S_, causal, {});
    }
  }

 private:
  engine::Model model_;
  i64 B_, S_;
  std::vector<float> input_, memory_, target_;
  std::unique_ptr<engine::Session> session_;
  std::unique_ptr<engine::Generator> generator_;
  std::vector<std::vector<std::int32_t>> prompts_, sources_;
};

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
    std::function<void()> run;
    std::string what;
    if (!model_dir.empty()) {
      auto mw = std::make_shared<ModelWorkload>(model_dir, batch, seq);
      run = [mw] { (*mw)(); };
      what = model_dir + " (batch " + std::to_string(batch) + ", seq " + std::to_string(seq) + ")";
    } else if (workload == "W4") {
      auto aw = std::make_shared<AttentionWorkload>();
      run = [aw] { (*aw)(); };
      what = "W4";
    } else {
      const engine::bench::LayerWorkload* found = nullptr;
      for (const auto& lw : engine::bench::layer_workloads())
        if (workload == lw.id) found = &lw;
      if (found == nullptr) fail("unknown workload '", workload, "' (expected W1_b1, W1_b8, W2, W3 or W4)");
      auto lw = std::make_shared<engine::bench::LayerWorkloadRun>(*found);
      run = [lw] { (*lw)(); };
      what = workload;
    }
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
