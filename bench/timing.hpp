// Timing the way ../shared/workloads.json prescribes, so our numbers sit beside the peers':
// per round a warm-up, then reps; each rep is the mean of a calibrated inner loop of calls lasting
// at least `rep_target_s`. Implementations are interleaved within a round. Reported: the median of
// all reps, with min and max.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace engine::bench {

struct TimingPlan {
  int rounds = 3;
  int reps_per_round = 3;
  double rep_target_s = 0.05;
  double warmup_s = 0.15;
};

struct Stats {
  double median_s = 0, min_s = 0, max_s = 0;
  std::vector<double> reps_s;
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs fn at least twice and for at least warmup_s; returns the calls per rep that last
// rep_target_s.
inline long calibrate(const std::function<void()>& fn, const TimingPlan& plan) {
  const auto t0 = std::chrono::steady_clock::now();
  long calls = 0;
  while (calls < 2 || seconds_since(t0) < plan.warmup_s) {
    fn();
    ++calls;
  }
  const double per_call = seconds_since(t0) / static_cast<double>(calls);
  return std::max(1L, static_cast<long>(plan.rep_target_s / per_call));
}

inline double time_rep(const std::function<void()>& fn, long calls) {
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < calls; ++i) fn();
  return seconds_since(t0) / static_cast<double>(calls);
}

// Times every function of `fns` interleaved: each round warms each one up and takes its reps.
inline std::vector<Stats> time_interleaved(const std::vector<std::function<void()>>& fns, const TimingPlan& plan) {
  std::vector<Stats> out(fns.size());
  for (int round = 0; round < plan.rounds; ++round)
    for (std::size_t f = 0; f < fns.size(); ++f) {
      const long calls = calibrate(fns[f], plan);
      for (int r = 0; r < plan.reps_per_round; ++r) out[f].reps_s.push_back(time_rep(fns[f], calls));
    }
  for (Stats& s : out) {
    std::vector<double> v = s.reps_s;
    std::sort(v.begin(), v.end());
    s.min_s = v.front();
    s.max_s = v.back();
    s.median_s = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  }
  return out;
}

}  // namespace engine::bench
