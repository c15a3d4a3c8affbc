// engine-bench: what this CPU does with engine. With no arguments: the built-in workloads of
// ../shared/workloads.json (W1_b1, W1_b8, W2, W3 whole layers and W4 attention) at 1 thread and at
// the machine's core count, then decoding with a GPT-2-small-shaped language model.
//
//   engine-bench [--workload W1_b1,W2,...] [--model DIR [--batch B] [--seq S]] [--sweep seq=128,256,...]
//                [--plot FILE.svg|png] [--threads 1,2] [--reps N] [--rounds N] [--json FILE] [--quick]
//                [--only workloads,gemm,attention,softmax,decode,profiler] [--shapes NAME,...]
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "engine/kernels/kernel_table.hpp"
#include "decode_workload.hpp"
#include "gemm_runners.hpp"
#include "gnuplot.hpp"
#include "model_workloads.hpp"
#include "timing.hpp"
#include "workloads.hpp"

namespace {

using namespace engine::bench;

struct Options {
  std::vector<int> threads;
  std::vector<std::string> shapes;     // GEMM shapes; empty: all
  std::vector<std::string> workloads;  // empty: all five
  std::vector<std::string> sections{"workloads", "decode"};
  std::string model_dir;
  std::int64_t batch = 1, seq = 128;
  std::vector<std::int64_t> sweep;  // sequence lengths
  std::string plot_path = "engine-bench-sweep.svg";
  TimingPlan plan;
  std::string json_path;
};

const char* const kUsage =
    "usage: engine-bench [--workload W1_b1,W1_b8,W2,W3,W4] [--model DIR [--batch B] [--seq S]]\n"
    "                    [--sweep seq=128,256,512,1024 [--plot FILE.svg|png]] [--threads 1,2] [--reps N]\n"
    "                    [--rounds N] [--json FILE] [--quick] [--shapes NAME,...]\n"
    "                    [--only workloads,gemm,attention,softmax,decode,profiler]\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "engine-bench: " << message << "\n" << kUsage;
  std::exit(2);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

long parse_number(const std::string& text, const char* what, long lo, long hi) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || v < lo || v > hi)
    usage_error(std::string(what) + " must be a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) +
                ", got '" + text + "'");
  return v;
}
int parse_positive(const std::string& text, const char* what) {
  return static_cast<int>(parse_number(text, what, 1, 4096));
}

const std::vector<std::string> kWorkloadIds = {"W1_b1", "W1_b8", "W2", "W3", "W4"};

Options parse(int argc, char** argv) {
  Options o;
  bool sections_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--threads") {
      for (const auto& t : split_commas(value())) o.threads.push_back(static_cast<int>(parse_number(t, "--threads", 1, 1024)));
      if (o.threads.empty()) usage_error("--threads needs at least one number");
    } else if (arg == "--reps") {
      o.plan.reps_per_round = parse_positive(value(), "--reps");
    } else if (arg == "--rounds") {
      o.plan.rounds = parse_positive(value(), "--rounds");
    } else if (arg == "--workload") {
      o.workloads = split_commas(value());
      for (const auto& id : o.workloads)
        if (std::find(kWorkloadIds.begin(), kWorkloadIds.end(), id) == kWorkloadIds.end())
          usage_error("unknown workload '" + id + "' (expected W1_b1, W1_b8, W2, W3 or W4)");
      if (o.workloads.empty()) usage_error("--workload needs at least one id");
    } else if (arg == "--model") {
      o.model_dir = value();
    } else if (arg == "--batch") {
      o.batch = parse_number(value(), "--batch", 1, 4096);
    } else if (arg == "--seq") {
      o.seq = parse_number(value(), "--seq", 1, 1 << 20);
    } else if (arg == "--sweep") {
      const std::string v = value();
      if (v.rfind("seq=", 0) != 0) usage_error("--sweep takes seq=N,N,... (got '" + v + "')");
      for (const auto& n : split_commas(v.substr(4))) o.sweep.push_back(parse_number(n, "--sweep seq", 1, 1 << 20));
      if (o.sweep.empty()) usage_error("--sweep seq= needs at least one length");
    } else if (arg == "--plot") {
      o.plot_path = value();
    } else if (arg == "--shapes") {
      o.shapes = split_commas(value());
      for (const auto& name : o.shapes) {
        bool known = false;
        for (const auto& s : kGemmShapes) known = known || name == s.name;
        if (!known) usage_error("unknown shape '" + name + "' (see ../shared/workloads.json gemm.shapes)");
      }
    } else if (arg == "--only") {
      o.sections = split_commas(value());
      sections_given = true;
      for (auto& name : o.sections) {
        if (name == "layers") name = "workloads";  // its old name
        if (name != "workloads" && name != "gemm" && name != "attention" && name != "softmax" && name != "decode" &&
            name != "profiler")
          usage_error("unknown section '" + name +
                      "' for --only (expected workloads, gemm, attention, softmax, decode, profiler)");
      }
    } else if (arg == "--json") {
      o.json_path = value();
    } else if (arg == "--quick") {
      o.plan = TimingPlan{.rounds = 1, .reps_per_round = 3, .rep_target_s = 0.02, .layer_rep_target_s = 0.02,
                          .warmup_s = 0.05};
    } else if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else {
      usage_error("unknown argument '" + arg + "'");
    }
  }
  if (!o.model_dir.empty() && !o.workloads.empty()) usage_error("give --workload or --model, not both");
  // Asking for particular workloads, a model or a sweep means just that, unless --only says more.
  if (!sections_given && (!o.workloads.empty() || !o.model_dir.empty() || !o.sweep.empty()))
    o.sections = {"workloads"};
  if (!o.sweep.empty() && o.model_dir.empty() && o.workloads.size() != 1)
    usage_error("--sweep needs --model DIR or exactly one --workload");
  if (o.threads.empty()) {
    o.threads.push_back(1);
    if (omp_get_num_procs() > 1) o.threads.push_back(omp_get_num_procs());
  }
  if (o.workloads.empty()) o.workloads = kWorkloadIds;
  return o;
}

struct Row {
  std::string what;
  int threads;
  std::vector<std::string> impls;
  std::vector<Stats> stats;
  double flops;  // per call; 0 for bandwidth rows
  double bytes;  // per call
  std::int64_t seq = 0;  // workloads: the sequence length
};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// The workload `id` ("model" for --model) at sequence length `seq` (0: its own); in a sweep, the
// label says the length.
Runnable make_workload(const std::string& id, const Options& opt, std::int64_t seq) {
  if (id == "model") return make_model_workload(opt.model_dir, opt.batch, seq > 0 ? seq : opt.seq);
  Runnable r = make_builtin_workload(id, seq);
  if (seq > 0 && !opt.sweep.empty()) r.label += " seq=" + std::to_string(seq);
  return r;
}

// Latency and GFLOP/s against sequence length, one line per thread count, drawn by gnuplot.
void plot_sweep(const std::vector<Row>& rows, const Options& opt) {
  const std::string terminal = engine::profiler::picture_terminal(opt.plot_path, "--plot");
  const std::string data = opt.plot_path + ".dat";
  {
    std::ofstream d(data);
    for (std::size_t ti = 0; ti < opt.threads.size(); ++ti) {
      if (ti) d << "\n\n";
      for (const Row& r : rows)
        if (r.threads == opt.threads[ti] && r.seq > 0 && r.impls.size() == 1)
          d << r.seq << " " << r.stats[0].median_s * 1e3 << " " << r.flops / r.stats[0].median_s / 1e9 << "\n";
    }
  }
  std::ostringstream g;
  g << "set terminal " << terminal << "\nset output '" << opt.plot_path << "'\n"
    << "set multiplot layout 1,2 title 'engine-bench --sweep: "
    << (opt.model_dir.empty() ? opt.workloads.front() : opt.model_dir) << "'\n"
    << "set logscale x 2\nset grid\nset key top left\nset xlabel 'sequence length'\n"
    << "set ylabel 'latency (ms, median)'\nset logscale y\nplot ";
  for (std::size_t ti = 0; ti < opt.threads.size(); ++ti)
    g << (ti ? ", " : "") << "'" << data << "' index " << ti << " using 1:2 with linespoints lw 2 title '"
      << opt.threads[ti] << " thread(s)'";
  g << "\nunset logscale y\nset ylabel 'GFLOP/s'\nset yrange [0:*]\nplot ";
  for (std::size_t ti = 0; ti < opt.threads.size(); ++ti)
    g << (ti ? ", " : "") << "'" << data << "' index " << ti << " using 1:3 with linespoints lw 2 title '"
      << opt.threads[ti] << " thread(s)'";
  g << "\nunset multiplot\n";
  engine::profiler::run_gnuplot(g.str(), opt.plot_path, "--plot");
  std::filesystem::remove(data);
}

}  // namespace

int run_bench(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  const auto& kt = engine::kernels::active();
  std::cout << "engine-bench " << engine::version() << ": instruction set " << engine::isa_name(engine::active_isa())
            << " (GEMM micro-kernel " << kt.gemm_name << "), " << omp_get_num_procs() << " cores\n";

  std::vector<double> peak(opt.threads.size());
  for (std::size_t t = 0; t < opt.threads.size(); ++t) {
    peak[t] = engine::measure_fma_peak_gflops(opt.threads[t]);
    std::cout << "FP32 FMA peak, " << opt.threads[t] << " thread(s): " << fmt("%.1f", peak[t])
              << " GFLOP/s (16 register-only FMA chains per thread, best of 5 slices)\n";
  }
  std::cout << "timing: " << opt.plan.rounds << " rounds x " << opt.plan.reps_per_round << " reps of >= "
            << fmt("%g", opt.plan.layer_rep_target_s * 1e3) << " ms (layers) / " << fmt("%g", opt.plan.rep_target_s * 1e3)
            << " ms (kernels), implementations interleaved; median of the round medians [min-max over all reps]\n\n";

  auto wants = [&](const char* section) {
    return std::find(opt.sections.begin(), opt.sections.end(), section) != opt.sections.end();
  };
  std::vector<Row> rows;
  // The workloads: W1_b1, W1_b8, W2, W3 (whole layers), W4 (attention), or a user's model; with
  // --sweep, one of them at each sequence length.
  if (wants("workloads")) {
    const std::vector<std::int64_t> lengths = opt.sweep.empty() ? std::vector<std::int64_t>{0} : opt.sweep;
    const std::vector<std::string> ids = opt.model_dir.empty() ? opt.workloads : std::vector<std::string>{"model"};
    const std::size_t steps = lengths.size() * opt.threads.size() * ids.size();
    std::size_t done = 0;
    const bool progress = !opt.sweep.empty();
    const bool tty = ::isatty(2) != 0;
    std::printf("%-28s %3s %24s %10s %6s\n", "workload (ms)", "thr", "median [min-max]", "GFLOP/s", "%peak");
    for (std::size_t ti = 0; ti < opt.threads.size(); ++ti) {
      engine::set_num_threads(opt.threads[ti]);
      for (const std::string& id : ids)
        for (std::int64_t seq : lengths) {
          if (progress) {
            const int width = 30, filled = static_cast<int>(width * done / steps);
            std::fprintf(stderr, "%s[%s%s] %zu/%zu  %s seq=%lld, %d thread(s)%s", tty ? "\r" : "",
                         std::string(static_cast<std::size_t>(filled), '#').c_str(),
                         std::string(static_cast<std::size_t>(width - filled), ' ').c_str(), done, steps, id.c_str(),
                         static_cast<long long>(seq), opt.threads[ti], tty ? "   " : "\n");
            std::fflush(stderr);
          }
          const Runnable w = make_workload(id, opt, seq);
          Row row{w.label, opt.threads[ti], {"engine"}, {}, w.flops, 0};
          row.seq = seq > 0 ? seq : w.seq;
          row.stats = time_interleaved({w.run}, opt.plan.for_layers());
          const double gflops = row.flops / row.stats[0].median_s / 1e9;
          if (progress && tty) std::fprintf(stderr, "\r%*s\r", 80, "");
          std::printf("%-28s %3d %24s %10.1f %5.0f%%\n", w.label.c_str(), opt.threads[ti],
                      (fmt("%.2f", row.stats[0].median_s * 1e3) + " [" + fmt("%.2f", row.stats[0].min_s * 1e3) + "-" +
                       fmt("%.2f", row.stats[0].max_s * 1e3) + "]")
                          .c_str(),
                      gflops, 100.0 * gflops / peak[ti]);
          std::fflush(stdout);
          rows.push_back(std::move(row));
          ++done;
        }
    }
    if (progress) std::fprintf(stderr, "%s[%s] %zu/%zu  done\n", tty ? "\r" : "", std::string(30, '#').c_str(), done, steps);
    if (!opt.sweep.empty()) {
      plot_sweep(rows, opt);
      std::printf("wrote %s\n", opt.plot_path.c_str());
    }
    std::printf("\n");
  }

  // The profiler's cost: W1_b1 with its timers idle and with a collector recording every op.
  if (wants("profiler")) {
    std::printf("%-28s %3s %24s %24s %8s\n", "profiler (ms)", "thr", "timers idle", "timers recording", "on/off");
    for (std::size_t ti = 0; ti < opt.threads.size(); ++ti) {
      engine::set_num_threads(opt.threads[ti]);
      LayerWorkloadRun run(layer_workloads().front());
      Row row{"W1_b1_profiler", opt.threads[ti], {"timers_idle", "timers_recording"}, {}, nominal_flops(layer_workloads().front()), 0};
      row.stats = time_interleaved({[&] { run(); },
                                    [&] {
                                      // A fresh collector per call keeps the record list short, as a real
                                      // profiling run that reads its records after each run would.
                                      engine::ProfileCollector on;
                                      run();
                                    }},
                                   opt.plan.for_layers());
      auto cell = [&](std::size_t k) {
        return fmt("%.2f", row.stats[k].median_s * 1e3) + " [" + fmt("%.2f", row.stats[k].min_s * 1e3) + "-" +
               fmt("%.2f", row.stats[k].max_s * 1e3) + "]";
      };
      std::printf("%-28s %3d %24s %24s %8.3f\n", "W1_b1", opt.threads[ti], cell(0).c_str(), cell(1).c_str(),
                  row.stats[1].median_s / row.stats[0].median_s);
      rows.push_back(std::move(row));
    }
    std::printf("\n");
  }

  if (wants("gemm")) {
    const std::vector<GemmImpl> impls = {GemmImpl::ours, GemmImpl::onednn, GemmImpl::ours_packed,
                                         GemmImpl::onednn_packed};
    std::printf("%-22s %3s %22s %22s %6s %22s %22s %6s %6s\n", "GEMM (GFLOP/s)", "thr", "engine", "oneDNN", "ratio",
                "engine prepacked", "oneDNN prepacked", "ratio", "%peak");
    for (std::size_t ti = 0; ti < opt.threads.size(); ++ti) {
      const int threads = opt.threads[ti];
      engine::set_num_threads(threads);
      omp_set_num_threads(threads);  // oneDNN's pool size
      for (const auto& shape : kGemmShapes) {
        if (!opt.shapes.empty() && std::find(opt.shapes.begin(), opt.shapes.end(), shape.name) == opt.shapes.end())
          continue;
        GemmProblem problem(shape);
        Row row{shape.name, threads, {}, {}, problem.flops(), 0};
        std::vector<std::function<void()>> fns;
        for (GemmImpl impl : impls)
          if (impl_available(impl)) {
            fns.push_back(problem.make(impl));
            row.impls.push_back(impl_name(impl));
          }
        row.stats = time_interleaved(fns, opt.plan);
        auto gf = [&](std::size_t i) { return row.flops / row.stats[i].median_s / 1e9; };
        auto cell = [&](std::size_t i) {
          if (i >= row.stats.size()) return std::string("-");
          return fmt("%.1f", gf(i)) + " [" + fmt("%.0f", row.flops / row.stats[i].max_s / 1e9) + "-" +
                 fmt("%.0f", row.flops / row.stats[i].min_s / 1e9) + "]";
        };
        const bool dnnl = row.stats.size() == 4;
        // With oneDNN: columns engine, oneDNN, engine prepacked, oneDNN prepacked.
        const std::size_t ours = 0, ours_packed = dnnl ? 2 : 1;
        std::printf("%-22s %3d %22s %22s %6s %22s %22s %6s %5.0f%%\n", shape.name, threads, cell(ours).c_str(),
                    dnnl ? cell(1).c_str() : "-", dnnl ? fmt("%.2f", gf(0) / gf(1)).c_str() : "-",
                    cell(ours_packed).c_str(), dnnl ? cell(3).c_str() : "-",
                    dnnl ? fmt("%.2f", gf(2) / gf(3)).c_str() : "-", 100.0 * gf(ours_packed) / peak[ti]);
        std::fflush(stdout);
        rows.push_back(std::move(row));
      }
    }
  }

  // Attention: W4 of ../shared/workloads.json (q, k, v [4, 12, 512, 64], causal), then longer
  // sequences at batch 1, both paths. Scratch is per thread: materialized holds a 64 x S score
  // block, fused a 64 x 256 score tile and a 64 x dv output tile.
  if (wants("attention")) {
    std::printf("\n%-22s %3s %22s %22s %14s %14s\n", "attention (ms)", "thr", "fused", "materialized", "fused scratch",
                "mat. scratch");
    struct AttentionShape {
      const char* name;
      std::int64_t B, H, S, d;
    };
    for (int threads : opt.threads) {
      engine::set_num_threads(threads);
      for (const AttentionShape& a :
           {AttentionShape{"W4_causal_s512", 4, 12, 512, 64}, AttentionShape{"causal_s2048_b1", 1, 12, 2048, 64},
            AttentionShape{"causal_s4096_b1", 1, 12, 4096, 64}}) {
        const std::size_t n = static_cast<std::size_t>(a.B * a.H * a.S * a.d);
        std::vector<float> q(n), k(n), v(n), o(n);
        std::mt19937 rng(1);
        std::normal_distribution<float> dist(0.0f, 1.0f);
        for (auto* t : {&q, &k, &v})
          for (float& x : *t) x = dist(rng);
        auto view = [&](std::vector<float>& t) { return engine::TensorView(t.data(), {a.B, a.H, a.S, a.d}); };
        engine::AttentionMask mask;
        mask.causal = true;
        auto run = [&](engine::AttentionPath path) {
          return
              [&, path] { engine::scaled_dot_product_attention(view(q), view(k), view(v), view(o), mask, 0.0f, path); };
        };
        // Causal: about half of the S x S scores, two GEMMs of 2·d FLOPs per score.
        const double flops = 2.0 * 2.0 * static_cast<double>(a.B * a.H) * static_cast<double>(a.S) *
                             static_cast<double>(a.S + 1) / 2.0 * static_cast<double>(a.d);
        Row row{a.name, threads, {"fused", "materialized"}, {}, flops, 0};
        row.stats =
            time_interleaved({run(engine::AttentionPath::fused), run(engine::AttentionPath::materialized)}, opt.plan);
        auto cell = [&](std::size_t i) {
          return fmt("%.2f", row.stats[i].median_s * 1e3) + " [" + fmt("%.2f", row.stats[i].min_s * 1e3) + "-" +
                 fmt("%.2f", row.stats[i].max_s * 1e3) + "]";
        };
        const double fused_kib = 64.0 * (256 + a.d + 2) * 4 / 1024,
                     mat_kib = 64.0 * static_cast<double>(a.S) * 4 / 1024;
        std::printf("%-22s %3d %22s %22s %10.0f KiB %10.0f KiB\n", a.name, threads, cell(0).c_str(), cell(1).c_str(),
                    fused_kib, mat_kib);
        std::fflush(stdout);
        rows.push_back(std::move(row));
      }
    }
  }

  // Masked softmax over attention-shaped scores [12, S, S], plain and causal.
  if (wants("softmax")) {
    std::printf("\n%-22s %3s %22s\n", "softmax (GB/s)", "thr", "engine");
    for (int threads : opt.threads) {
      engine::set_num_threads(threads);
      for (bool causal : {false, true})
        for (std::int64_t S : {128, 512}) {
          const std::int64_t batch = 12;
          std::vector<float> x(static_cast<std::size_t>(batch * S * S)), y(x.size());
          std::mt19937 rng(0);
          std::normal_distribution<float> dist(0.0f, 3.0f);
          for (float& v : x) v = dist(rng);
          engine::SoftmaxMask mask;
          mask.causal = causal;
          const double bytes = static_cast<double>(x.size()) * sizeof(float) * 2.0;
          Row row{
              std::string(causal ? "causal" : "plain") + "_s" + std::to_string(S), threads, {"engine"}, {}, 0, bytes};
          row.stats = time_interleaved(
              {[&] { engine::masked_softmax(batch, S, S, x.data(), S, y.data(), S, 0.125f, mask); }}, opt.plan);
          std::printf(
              "%-22s %3d %22s\n", row.what.c_str(), threads,
              (fmt("%.1f", bytes / row.stats[0].median_s / 1e9) + " [" + fmt("%.0f", bytes / row.stats[0].max_s / 1e9) +
               "-" + fmt("%.0f", bytes / row.stats[0].min_s / 1e9) + "]")
                  .c_str());
          rows.push_back(std::move(row));
        }
    }
  }
  // Decoding: the GPT-2-small-shaped language model of decode_workload.hpp. Prefill of one prompt
  // of 128 and 512 tokens (tokens/s), then one step at contexts 128, 512 and 1024 for batches 1
  // and 8 (the caches are declared filled to that length, so each timed call is one step at that
  // context). Batch-1 decoding reads every weight once per token: its rate is set against the
  // measured read bandwidth.
  if (wants("decode")) {
    const std::unique_ptr<engine::Model> model = make_gpt2_small(1025);
    std::printf("\n%-22s %3s %22s %12s %10s %8s\n", "decode (ms)", "thr", "engine", "tokens/s", "GB/s", "%bw");
    for (std::size_t ti = 0; ti < opt.threads.size(); ++ti) {
      const int threads = opt.threads[ti];
      engine::set_num_threads(threads);
      const double bandwidth = engine::measure_read_bandwidth_gbs(threads);
      std::printf("%-22s %3d %22s %12s %10.1f %8s\n", "read bandwidth probe", threads, "-", "-", bandwidth, "-");
      auto report = [&](const std::string& what, const Stats& s, double tokens, double bytes) {
        const double gbs = bytes > 0 ? bytes / s.median_s / 1e9 : 0.0;
        std::printf("%-22s %3d %22s %12.1f %10s %8s\n", what.c_str(), threads,
                    (fmt("%.2f", s.median_s * 1e3) + " [" + fmt("%.2f", s.min_s * 1e3) + "-" +
                     fmt("%.2f", s.max_s * 1e3) + "]")
                        .c_str(),
                    tokens / s.median_s, bytes > 0 ? fmt("%.1f", gbs).c_str() : "-",
                    bytes > 0 ? fmt("%.0f%%", 100.0 * gbs / bandwidth).c_str() : "-");
        std::fflush(stdout);
      };
      for (std::int64_t len : {128, 512}) {
        engine::Generator gen(*model, 1, len);
        std::vector<std::vector<std::int32_t>> prompt(1);
        for (std::int64_t i = 0; i < len; ++i) prompt[0].push_back(static_cast<std::int32_t>((i * 7919) % 50257));
        Row row{"prefill_" + std::to_string(len), threads, {"engine"}, {}, 0, 0};
        row.stats = time_interleaved({[&] { (void)gen.prefill(prompt); }}, opt.plan);
        report(row.what, row.stats[0], static_cast<double>(len), 0);
        rows.push_back(std::move(row));
      }
      for (std::int64_t batch : {1, 8}) {
        engine::Generator gen(*model, batch, 1025);
        const std::vector<std::int32_t> tokens(static_cast<std::size_t>(batch), 42);
        for (std::int64_t context : {128, 512, 1024}) {
          const std::vector<std::int32_t> lengths(static_cast<std::size_t>(batch), static_cast<std::int32_t>(context));
          const double bytes = decode_step_bytes(model->config(), batch, context);
          Row row{"step_b" + std::to_string(batch) + "_ctx" + std::to_string(context), threads, {"engine"}, {}, 0,
                  bytes};
          row.stats = time_interleaved(
              {[&] {
                gen.set_lengths(lengths);
                (void)gen.step(tokens);
              }},
              opt.plan);
          report(row.what, row.stats[0], static_cast<double>(batch), bytes);
          rows.push_back(std::move(row));
        }
      }
    }
  }
  engine::set_num_threads(0);

  if (!opt.json_path.empty()) {
    std::ofstream out(opt.json_path);
    if (!out) {
      std::cerr << "engine-bench: cannot write --json file '" << opt.json_path << "'\n";
      return 1;
    }
    out.precision(9);
    out << "{\"isa\":\"" << engine::isa_name(engine::active_isa()) << "\",\"records\":[\n";
    bool first = true;
    for (const Row& r : rows)
      for (std::size_t i = 0; i < r.stats.size(); ++i) {
        out << (first ? "" : ",\n") << "{\"what\":\"" << r.what << "\",\"impl\":\"" << r.impls[i]
            << "\",\"threads\":" << r.threads << ",\"median_ms\":" << r.stats[i].median_s * 1e3
            << ",\"min_ms\":" << r.stats[i].min_s * 1e3 << ",\"max_ms\":" << r.stats[i].max_s * 1e3
            << ",\"spread_pct\":" << 100.0 * (r.stats[i].max_s - r.stats[i].min_s) / r.stats[i].median_s
            << ",\"reps\":" << r.stats[i].reps_s.size();
        if (r.seq > 0) out << ",\"seq\":" << r.seq;
        if (r.flops > 0) out << ",\"gflops_median\":" << r.flops / r.stats[i].median_s / 1e9;
        if (r.bytes > 0) out << ",\"gbytes_per_s_median\":" << r.bytes / r.stats[i].median_s / 1e9;
        out << "}";
        first = false;
      }
    out << "\n]}\n";
    std::cout << "\nwrote " << opt.json_path << "\n";
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run_bench(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "engine-bench: " << e.what() << "\n";
    return 1;
  }
}
