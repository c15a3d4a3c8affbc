#include "gnuplot.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/error.hpp"

namespace engine::profiler {

std::string picture_terminal(const std::string& path, const char* flag) {
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext != ".svg" && ext != ".png") fail(flag, ": '", path, "' must end in .svg or .png");
  return ext == ".svg" ? "svg size 960,640 dynamic noenhanced font 'sans,12'" : "png size 960,640 noenhanced";
}

void run_gnuplot(const std::string& commands, const std::string& output_path, const char* flag) {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0)
    fail(flag, " needs gnuplot (Debian: apt-get install gnuplot-nox)");
  const std::string script = output_path + ".gp";
  {
    std::ofstream out(script);
    if (!out) fail(flag, ": cannot write '", script, "'");
    out << commands;
  }
  const int rc = std::system(("gnuplot '" + script + "' 2>&1").c_str());
  if (rc != 0) fail(flag, ": gnuplot failed (exit status ", rc, ") on ", script);
  std::filesystem::remove(script);
}

}  // namespace engine::profiler
