// Runs one of our command-line tools as a user would (through the shell), capturing its exit status
// and everything it printed on stdout and stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace engine::test {

struct CliResult {
  int exit_code;       // -1 when the tool did not exit normally (a crash)
  std::string output;  // stdout and stderr together
};

inline CliResult run_cli(const std::string& binary, const std::string& args) {
  const auto log = std::filesystem::temp_directory_path() /
                   ("engine_cli_" + std::to_string(::getpid()) + "_" + std::filesystem::path(binary).filename().string() +
                    ".log");
  const int status = std::system((binary + " " + args + " > " + log.string() + " 2>&1").c_str());
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  std::filesystem::remove(log);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text.str()};
}

}  // namespace engine::test
