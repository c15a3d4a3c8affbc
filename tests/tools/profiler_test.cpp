// The profiler: a session's records (every layer and op, positive times, sums within the wall
// time), that profiling changes no output bit, the report's arithmetic, the trace file parsed back,
// and engine-profile's options and errors as a user meets them.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli_runner.hpp"
#include "engine/model.hpp"
#include "fixture_reader.hpp"
#include "model_loader.hpp"
#include "profile_report.hpp"

namespace engine::test {
namespace {

const std::string kModels = std::string(ENGINE_FIXTURES_DIR) + "/models/";

TEST(Profiler, SessionRecordsEveryLayerAndOpAndChangesNoBit) {
  const std::string dir = kModels + "transformer_2_2_post_relu_pe_concat";
  Fixture f(dir);
  const Model model = loader::load_model(dir);
  const std::int64_t B = f.integer("batch"), Ss = f.integer("src_len"), St = f.integer("tgt_len");
  Session session(model, B, Ss, St);
  std::vector<float> plain = f.floats("src"), profiled = f.floats("src");
  session.encode(plain.data(), B, Ss, {});
  EXPECT_TRUE(session.profile().empty());
  session.set_profiling(true);
  session.encode(profiled.data(), B, Ss, {});
  EXPECT_EQ(0, std::memcmp(plain.data(), profiled.data(), plain.size() * sizeof(float)));

  std::set<std::string> seen;
  double sum_us = 0;
  for (const ProfileRecord& r : session.profile()) {
    seen.insert(r.layer_name() + " " + r.op);
    EXPECT_GT(r.duration_us, 0.0) << r.layer_name() << " " << r.op;
    EXPECT_GE(r.start_us, 0.0);
    EXPECT_LE(r.start_us + r.duration_us, session.last_run_us() + 1e-3);
    sum_us += r.duration_us;
  }
  for (int layer = 0; layer < 2; ++layer)
    for (const char* op :
         {"qkv_projection", "attention", "output_projection", "add_norm", "ffn_up_activation", "ffn_down"})
      EXPECT_TRUE(seen.count("encoder.layers." + std::to_string(layer) + " " + op)) << layer << " " << op;
  EXPECT_TRUE(seen.count("encoder final_norm"));
  EXPECT_TRUE(seen.count("model positional_encoding"));
  // Ops do not overlap on the calling thread, so their sum fits in the wall time, and they are most of it.
  EXPECT_LE(sum_us, session.last_run_us());
  EXPECT_GE(sum_us, 0.5 * session.last_run_us());

  std::vector<float> memory = plain, tgt = f.floats("tgt");
  AttentionMask causal;
  causal.causal = true;
  session.decode(tgt.data(), memory.data(), B, St, Ss, causal, {});
  seen.clear();
  for (const ProfileRecord& r : session.profile()) seen.insert(r.layer_name() + " " + r.op);
  for (int layer = 0; layer < 2; ++layer)
    for (const char* op :
         {"qkv_projection", "attention", "output_projection", "cross_q_projection", "cross_kv_projection",
          "cross_attention", "cross_output_projection", "add_norm", "ffn_up_activation", "ffn_down"})
      EXPECT_TRUE(seen.count("decoder.layers." + std::to_string(layer) + " " + op)) << layer << " " << op;
}

std::vector<ProfileRecord> made_up_records() {
  // Two layers, two runs: qkv 100 us at 2 GFLOP, attention 50 us at 0.5 GFLOP, per call.
  std::vector<ProfileRecord> r;
  double t = 0;
  for (int run = 0; run < 2; ++run)
    for (int layer = 0; layer < 2; ++layer) {
      r.push_back({"encoder", layer, "qkv_projection", 0, t, 100, 2e9, 1e6});
      r.push_back({"encoder", layer, "attention", 0, t + 100, 50, 0.5e9, 4e6});
      t += 150;
    }
  return r;
}

TEST(Profiler, ReportSumsPerLayerOpAndPerOpType) {
  const auto report = profiler::summarize(made_up_records(), 1000.0, 2);
  ASSERT_EQ(report.by_layer_op.size(), 4u);
  EXPECT_EQ(report.by_layer_op[0].layer, "encoder.layers.0");
  EXPECT_EQ(report.by_layer_op[0].op, "qkv_projection");
  EXPECT_EQ(report.by_layer_op[0].calls, 2);
  EXPECT_DOUBLE_EQ(report.by_layer_op[0].total_us, 200.0);
  EXPECT_DOUBLE_EQ(report.by_layer_op[0].gflops(), 4e9 / 200e-6 / 1e9);
  EXPECT_DOUBLE_EQ(report.by_layer_op[1].intensity(), 0.5e9 / 4e6);
  ASSERT_EQ(report.by_op.size(), 2u);
  EXPECT_EQ(report.by_op[0].op, "qkv_projection");  // largest first
  EXPECT_EQ(report.by_op[0].calls, 4);
  EXPECT_DOUBLE_EQ(report.by_op[0].total_us, 400.0);
  EXPECT_DOUBLE_EQ(report.ops_us, 600.0);
  std::ostringstream table;
  profiler::print_report(table, report, 100.0);
  EXPECT_NE(table.str().find("encoder.layers.1"), std::string::npos);
  EXPECT_NE(table.str().find("60.0%"), std::string::npos) << table.str();  // 600 of 1000 us in ops
}

TEST(Profiler, TraceIsChromeTraceEventJson) {
  const auto records = made_up_records();
  std::stringstream out;
  profiler::write_trace(out, records);
  const nlohmann::json j = nlohmann::json::parse(out.str());
  ASSERT_TRUE(j.at("traceEvents").is_array());
  ASSERT_EQ(j.at("traceEvents").size(), records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& e = j["traceEvents"][i];
    EXPECT_EQ(e.at("ph"), "X");
    EXPECT_EQ(e.at("name"), records[i].op);
    EXPECT_EQ(e.at("cat"), records[i].layer_name());
    EXPECT_DOUBLE_EQ(e.at("ts").get<double>(), records[i].start_us);
    EXPECT_DOUBLE_EQ(e.at("dur").get<double>(), records[i].duration_us);
    EXPECT_EQ(e.at("tid"), records[i].thread);
    EXPECT_TRUE(e.at("pid").is_number_integer());
  }
}

CliResult engine_profile(const std::string& args) { return run_cli(ENGINE_PROFILE_PATH, args); }

TEST(EngineProfile, ProfilesAModelAndWritesATrace) {
  const auto trace =
      std::filesystem::temp_directory_path() / ("engine_profile_trace_" + std::to_string(::getpid()) + ".json");
  const CliResult r = engine_profile("--model " + kModels +
                                     "transformer_2_2_post_relu_pe_concat --batch 2 --seq 16 "
                                     "--threads 1 --runs 2 --trace " +
                                     trace.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* needle : {"encoder.layers.1", "decoder.layers.0", "cross_attention", "by op type", "2 run(s)"})
    EXPECT_NE(r.output.find(needle), std::string::npos) << needle << "\n" << r.output;
  std::ifstream in(trace);
  const nlohmann::json j = nlohmann::json::parse(in);
  std::filesystem::remove(trace);
  EXPECT_GT(j.at("traceEvents").size(), 20u);
}

TEST(EngineProfile, BadOptionsExitNonZeroAndSayWhy) {
  expect_cli_failures(
      ENGINE_PROFILE_PATH,
      {
          {"--workload W9", "unknown workload 'W9' (expected W1_b1, W1_b8, W2, W3 or W4)"},
          {"--workload W1_b1 --threads 0", "--threads"},
          {"--workload W1_b1 --threads 1,2", "--threads"},
          {"--model /nonexistent", "config.json: cannot open"},
          {"", "give --workload ID or --model DIR"},
          {"--workload W1_b1 --model " + kModels + "encoder_layer_post_relu", "excludes"},
          {"--model " + kModels + "encoder_3_pre_gelu_norm_pe --seq 65",
           "--seq 65 exceeds the model's positional max_len 64"},
          {"--model " + kModels + "encoder_layer_post_relu --seq 4 --roofline /tmp/x.pdf", "must end in .svg or .png"},
      });
}

}  // namespace
}  // namespace engine::test
