#include "profile_report.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "engine/error.hpp"
#include "gnuplot.hpp"

namespace engine::profiler {

Report summarize(const std::vector<ProfileRecord>& records, double wall_us, int runs) {
  Report r;
  r.wall_us = wall_us;
  r.runs = runs;
  std::map<std::pair<std::string, std::string>, std::size_t> row_of;
  std::map<std::string, std::size_t> op_row;
  for (const ProfileRecord& rec : records) {
    const auto key = std::make_pair(rec.layer_name(), std::string(rec.op));
    auto it = row_of.find(key);
    if (it == row_of.end()) {
      it = row_of.emplace(key, r.by_layer_op.size()).first;
      r.by_layer_op.push_back({key.first, key.second});
    }
    auto op = op_row.find(key.second);
    if (op == op_row.end()) {
      op = op_row.emplace(key.second, r.by_op.size()).first;
      r.by_op.push_back({"", key.second});
    }
    for (OpTotals* t : {&r.by_layer_op[it->second], &r.by_op[op->second]}) {
      ++t->calls;
      t->total_us += rec.duration_us;
      t->flops += rec.flops;
      t->bytes += rec.bytes;
    }
    r.ops_us += rec.duration_us;
  }
  std::stable_sort(r.by_op.begin(), r.by_op.end(),
                   [](const OpTotals& a, const OpTotals& b) { return a.total_us > b.total_us; });
  return r;
}

namespace {

void print_rows(std::ostream& out, const std::vector<OpTotals>& rows, const Report& r, double peak, bool with_layer) {
  char line[256];
  for (const OpTotals& t : rows) {
    std::snprintf(line, sizeof line, "%-20s %-24s %6lld %10.3f %6.1f%% %9.1f %6.1f%% %10.2f %7.1f\n",
                  with_layer ? t.layer.c_str() : "(all layers)", t.op.c_str(), static_cast<long long>(t.calls),
                  t.total_us / 1e3, r.wall_us > 0 ? 100.0 * t.total_us / r.wall_us : 0.0, t.gflops(),
                  peak > 0 ? 100.0 * t.gflops() / peak : 0.0, t.bytes / 1e6, t.intensity());
    out << line;
  }
}

}  // namespace

void print_report(std::ostream& out, const Report& r, double peak_gflops) {
  char head[256];
  std::snprintf(head, sizeof head, "%-20s %-24s %6s %10s %7s %9s %7s %10s %7s\n", "layer", "op", "calls", "total ms",
                "%", "GFLOP/s", "%peak", "MB moved", "FLOP/B");
  out << head;
  print_rows(out, r.by_layer_op, r, peak_gflops, true);
  out << "\nby op type\n" << head;
  print_rows(out, r.by_op, r, peak_gflops, false);
  char tail[256];
  std::snprintf(tail, sizeof tail,
                "\n%d run(s): %.3f ms wall in all, %.3f ms in timed ops (%.1f%%), %.3f ms per run\n", r.runs,
                r.wall_us / 1e3, r.ops_us / 1e3, r.wall_us > 0 ? 100.0 * r.ops_us / r.wall_us : 0.0,
                r.runs > 0 ? r.wall_us / 1e3 / r.runs : 0.0);
  out << tail;
}

void write_trace(std::ostream& out, const std::vector<ProfileRecord>& records) {
  out << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  char buf[512];
  for (std::size_t i = 0; i < records.size(); ++i) {
    const ProfileRecord& r = records[i];
    std::snprintf(buf, sizeof buf,
                  "%s{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":1,\"tid\":%d,"
                  "\"args\":{\"layer\":\"%s\",\"gflop\":%.6f,\"mbytes\":%.6f}}",
                  i ? ",\n" : "", r.op, r.layer_name().c_str(), r.start_us, r.duration_us, r.thread,
                  r.layer_name().c_str(), r.flops / 1e9, r.bytes / 1e6);
    out << buf;
  }
  out << "\n]}\n";
}

void write_roofline(const std::string& path, const Report& report, double peak_gflops, double bandwidth_gbs) {
  const std::string terminal = picture_terminal(path, "--roofline");
  // One data block per op type (gnuplot's "index"), so each gets its own marker and key entry.
  const std::string data = path + ".dat";
  std::vector<std::string> names;
  double lo = 1e9, hi = 0;
  {
    std::ofstream d(data);
    for (const OpTotals& t : report.by_op) {
      if (t.flops <= 0 || t.bytes <= 0 || t.total_us <= 0) continue;
      d << (names.empty() ? "" : "\n\n") << t.intensity() << " " << t.gflops() << "\n";
      names.push_back(t.op);
      lo = std::min(lo, t.intensity());
      hi = std::max(hi, t.intensity());
    }
  }
  if (names.empty()) fail("--roofline: no op with FLOPs and bytes to place");
  const double ridge = peak_gflops / bandwidth_gbs;
  const double x0 = std::min(lo, ridge) / 4, x1 = std::max(hi, ridge) * 4;
  std::ostringstream g;
  g << "set terminal " << terminal << "\nset output '" << path << "'\n"
    << "set title 'Roofline: op types against the measured FMA peak (" << peak_gflops
    << " GFLOP/s) and read bandwidth (" << bandwidth_gbs << " GB/s)'\n"
    << "set logscale xy\nset xlabel 'arithmetic intensity (FLOP/byte)'\nset ylabel 'GFLOP/s'\n"
    << "set xrange [" << x0 << ":" << x1 << "]\nset yrange [" << peak_gflops / 1000 << ":" << peak_gflops * 2
    << "]\nset grid\nset key outside right top\n"
    << "roof(x) = (" << bandwidth_gbs << " * x < " << peak_gflops << ") ? " << bandwidth_gbs << " * x : "
    << peak_gflops << "\n"
    << "plot roof(x) with lines lw 2 lc rgb 'black' title 'roofline'";
  for (std::size_t i = 0; i < names.size(); ++i)
    g << ", '" << data << "' index " << i << " using 1:2 with points pt " << (5 + 2 * (i % 4)) << " ps 1.6 title '"
      << names[i] << "'";
  g << "\n";
  run_gnuplot(g.str(), path, "--roofline");
  std::filesystem::remove(data);
}

}  // namespace engine::profiler
