// engine-bench: what this CPU does with engine's kernels, beside oneDNN on the same shapes in the
// same run. For now it measures the GEMM shapes of ../shared/workloads.json, attention (W4 and
// longer sequences) and the masked softmax; the whole-model workloads (W1..W3) come with the layers.
//
//   engine-bench [--threads 1,2] [--reps N] [--rounds N] [--shapes NAME,NAME] [--only layers,gemm,attention,softmax,decode]
//                [--json FILE] [--quick]
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "engine/kernels/kernel_table.hpp"
#include "decode_workload.hpp"
#include "gemm_runners.hpp"
#include "model_workloads.hpp"
#include "timing.hpp"
#include "workloads.hpp"

namespace {

using namespace engine::bench;

struct Options {
  std::vector<int> threads;
  std::vector<std::string> shapes;  // empty: all
  std::vector<std::string> sections{"layers", "gemm", "attention", "softmax", "decode"};
  TimingPlan plan;
  std::string json_path;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "engine-bench: " << message << "\n"
            << "usage: engine-bench [--threads 1,2] [--reps N] [--rounds N] [--shapes NAME,...] [--only "
               "layers,gemm,attention,softmax,decode] [--json FILE] [--quick]\n";
  std::exit(2);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int parse_positive(const std::string& text, const char* what) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || v < 1 || v > 4096)
    usage_error(std::string(what) + " must be a whole number from 1 to 4096, got '" + text + "'");
  return static_cast<int>(v);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--threads") {
      for (const auto& t : split_commas(value())) o.threads.push_back(parse_positive(t, "--threads"));
      if (o.threads.empty()) usage_error("--threads needs at least one number");
    } else if (arg == "--reps") {
      o.plan.reps_per_round = parse_positive(value(), "--reps");
    } else if (arg == "--rounds") {
      o.plan.rounds = parse_positive(value(), "--rounds");
    } else if (arg == "--shapes") {
      o.shapes = split_commas(value());
      for (const auto& name : o.shapes) {
        bool known = false;
        for (const auto& s : kGemmShapes) known = known || name == s.name;
        if (!known) usage_error("unknown shape '" + name + "' (see ../shared/workloads.json gemm.shapes)");
      }
    } else if (arg == "--only") {
      o.sections = split_commas(value());
      for (const auto& name : o.sections)
        if (name != "layers" && name != "gemm" && name != "attention" && name != "softmax" && name != "decode")
          usage_error("unknown section '" + name + "' for --only (expected layers, gemm, attention, softmax, decode)");
    } else if (arg == "--json") {
      o.json_path = value();
    } else if (arg == "--quick") {
      o.plan = TimingPlan{1, 3, 0.02, 0.05};
    } else if (arg == "--help" || arg == "-h") {
      std::cout << "usage: engine-bench [--threads 1,2] [--reps N] [--rounds N] [--shapes NAME,...] [--only "
                   "layers,gemm,attention,softmax,decode] [--json FILE] [--quick]\n";
      std::exit(0);
    } else {
      usage_error("unknown argument '" + arg + "'");
    }
  }
  if (o.threads.empty()) {
    o.threads.push_back(1);
    if (omp_get_num_procs() > 1) o.threads.push_back(omp_get_num_procs());
  }
  return o;
}

struct Row {
  std::string what;
  int threads;
  std::vector<std::string> impls;
  std::vector<Stats> stats;
  double flops;  // per call; 0 for bandwidth rows
  double bytes;  // per call
};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
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
  std::cout << "timing: " << opt.plan.rounds << " rounds x " << opt.plan.reps_per_round
            << " reps, implementations interleaved; median [min-max] over all reps\n\n";

  auto wants = [&](const char* section) {
    return std::find(opt.sections.begin(), opt.sections.end(), section) != opt.sections.end();
  };
  std::vector<Row> rows;
  // Whole layers: W1_b1, W1_b8, W2, W3 of ../shared/workloads.json.
  if (wants("layers")) {
    std::printf("%-22s %3s %22s %10s %6s\n", "layers (ms)", "thr", "engine", "GFLOP/s", "%peak");
    for (std::size_t ti = 0; ti < opt.threads.size(); ++ti) {
      engine::set_num_threads(opt.threads[ti]);
      for (const auto& w : layer_workloads()) {
        LayerWorkloadRun run(w);
        Row row{w.id, opt.threads[ti], {"engine"}, {}, nominal_flops(w), 0};
        row.stats = time_interleaved({[&] { run(); }}, opt.plan);
        const double gflops = row.flops / row.stats[0].median_s / 1e9;
        std::printf("%-22s %3d %22s %10.1f %5.0f%%\n", w.id, opt.threads[ti],
                    (fmt("%.2f", row.stats[0].median_s * 1e3) + " [" + fmt("%.2f", row.stats[0].min_s * 1e3) + "-" +
                     fmt("%.2f", row.stats[0].max_s * 1e3) + "]")
                        .c_str(),
                    gflops, 100.0 * gflops / peak[ti]);
        std::fflush(stdout);
        rows.push_back(std::move(row));
      }
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
    out << "{\"isa\":\"" << engine::isa_name(engine::active_isa()) << "\",\"records\":[\n";
    bool first = true;
    for (const Row& r : rows)
      for (std::size_t i = 0; i < r.stats.size(); ++i) {
        out << (first ? "" : ",\n") << "{\"what\":\"" << r.what << "\",\"impl\":\"" << r.impls[i]
            << "\",\"threads\":" << r.threads << ",\"median_ms\":" << r.stats[i].median_s * 1e3
            << ",\"min_ms\":" << r.stats[i].min_s * 1e3 << ",\"max_ms\":" << r.stats[i].max_s * 1e3;
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
