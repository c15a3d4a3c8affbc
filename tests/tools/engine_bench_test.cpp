// engine-bench's options as a user meets them: a workload's JSON record read back, a user's model,
// a sweep with its plot, and bad options with a clear message and a non-zero exit.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "bench/timing.hpp"
#include "cli_runner.hpp"

namespace {

namespace fs = std::filesystem;
using engine::test::CliResult;
using engine::test::expect_cli_failures;
using engine::test::run_cli;
const std::string kModels = std::string(ENGINE_FIXTURES_DIR) + "/models/";

CliResult engine_bench(const std::string& args) { return run_cli(ENGINE_BENCH_PATH, args); }

// The statistic of ../shared/workloads.json: the median of the per-round medians, min and max over
// every rep. The rounds below are chosen so that the median of all nine reps (7) differs from it (6).
TEST(EngineBench, ReportsTheMedianOfTheRoundMedians) {
  const engine::bench::Stats s = engine::bench::summarize({{9.0, 1.0, 2.0}, {5.0, 7.0, 6.0}, {8.0, 8.0, 8.0}});
  EXPECT_EQ(s.median_s, 6.0);
  EXPECT_EQ(s.min_s, 1.0);
  EXPECT_EQ(s.max_s, 9.0);
  EXPECT_EQ(s.reps_s.size(), 9u);
  // An even number of rounds takes the mean of the middle two.
  EXPECT_EQ(engine::bench::summarize({{1.0}, {4.0}}).median_s, 2.5);
}

TEST(EngineBench, WritesOneJsonRecordPerWorkloadAndThreadCount) {
  const auto json = fs::temp_directory_path() / ("engine_bench_" + std::to_string(::getpid()) + ".json");
  const CliResult r = engine_bench("--workload W4 --threads 1,2 --quick --json " + json.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(json);
  const nlohmann::json j = nlohmann::json::parse(in);
  fs::remove(json);
  ASSERT_EQ(j.at("records").size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const auto& rec = j["records"][static_cast<std::size_t>(i)];
    EXPECT_EQ(rec.at("what"), "W4");
    EXPECT_EQ(rec.at("threads"), i + 1);
    const double lo = rec.at("min_ms"), mid = rec.at("median_ms"), hi = rec.at("max_ms");
    EXPECT_GT(lo, 0.0);
    EXPECT_LE(lo, mid);
    EXPECT_LE(mid, hi);
    EXPECT_NEAR(rec.at("spread_pct").get<double>(), 100.0 * (hi - lo) / mid, 1e-4);
    EXPECT_EQ(rec.at("reps"), 3);
    EXPECT_GT(rec.at("gflops_median").get<double>(), 0.0);
  }
}

TEST(EngineBench, SweepsAModelAndDrawsThePlot) {
  const auto plot = fs::temp_directory_path() / ("engine_bench_sweep_" + std::to_string(::getpid()) + ".svg");
  const CliResult r = engine_bench("--model " + kModels +
                                   "encoder_3_pre_gelu_norm_pe --batch 2 --sweep seq=8,16 --threads 1 "
                                   "--quick --plot " +
                                   plot.string());
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("needs gnuplot"), std::string::npos) << r.output;
    return;
  }
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("model b2 s8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model b2 s16"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2/2"), std::string::npos) << r.output;  // the progress bar's last step
  std::ifstream in(plot);
  std::stringstream svg;
  svg << in.rdbuf();
  fs::remove(plot);
  EXPECT_NE(svg.str().find("<svg"), std::string::npos);
}

TEST(EngineBench, BadOptionsExitNonZeroAndSayWhy) {
  expect_cli_failures(
      ENGINE_BENCH_PATH,
      {
          {"--workload W9", "unknown workload 'W9'"},
          {"--threads 1,x", "--threads must be a whole number from 1 to 1024, got 'x'"},
          {"--threads 0", "--threads must be a whole number"},
          {"--model /nonexistent --quick", "config.json: cannot open"},
          {"--sweep seq=128,256", "--sweep needs --model DIR or exactly one --workload"},
          {"--sweep len=1", "--sweep takes seq=N,N,..."},
          {"--workload W1_b1 --model " + kModels + "encoder_layer_post_relu", "give --workload or --model, not both"},
          {"--only nothing", "unknown section 'nothing'"},
          {"--bogus", "unknown argument '--bogus'"},
      });
}

}  // namespace
