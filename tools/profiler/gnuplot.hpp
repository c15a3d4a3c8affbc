// Pictures are drawn by gnuplot (Debian's gnuplot-nox), not by hand: the caller writes the plot
// commands, this runs them.
#pragma once

#include <string>

namespace engine::profiler {

// "svg" or "png" for a path ending in .svg or .png; an engine::Error naming `flag` otherwise.
std::string picture_terminal(const std::string& path, const char* flag);

// Runs gnuplot on `commands` (which must set the terminal and output). engine::Error naming
// `flag` when gnuplot is missing or fails.
void run_gnuplot(const std::string& commands, const std::string& output_path, const char* flag);

}  // namespace engine::profiler
