// Runs one of our command-line tools as a user would (through the shell), capturing its exit status
// and everything it printed on stdout and stderr.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace engine::test {

struct CliResult {
  int exit_code;       // -1 when the tool did not exit normally (a crash)
  std::string output;  // stdout and stderr together
};

inline CliResult run_cli(const std::string& binary, const std::string& args) {
  const auto log =
      std::filesystem::temp_directory_path() /
      ("engine_cli_" + std::to_string(::getpid()) + "_" + std::filesystem::path(binary).filename().string() + ".log");
  const int status = std::system((binary + " " + args + " > " + log.string() + " 2>&1").c_str());
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  std::filesystem::remove(log);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text.str()};
}

// A bad invocation and what the tool must say about it.
struct CliFailure {
  std::string args, needle;
};

// Each invocation must exit non-zero and print its needle.
inline void expect_cli_failures(const std::string& binary, const std::vector<CliFailure>& cases) {
  for (const CliFailure& c : cases) {
    const CliResult r = run_cli(binary, c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.output.find(c.needle), std::string::npos) << c.args << "\n" << r.output;
  }
}

}  // namespace engine::test
