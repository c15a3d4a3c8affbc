// Timing the way ../shared/workloads.json prescribes, so our numbers sit beside the peers':
// per round a warm-up (at least 2 calls and warmup_s), then reps; each rep is the mean of a
// calibrated inner loop of calls lasting at least `rep_target_s` (0.05 s for GEMMs and kernels,
// 0.1 s for whole layers: TimingPlan::for_layers). Implementations are interleaved within a round.
// Reported: the median of the per-round medians, with min and max over all reps.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <vector>

namespace engine::bench {

struct TimingPlan {
  int rounds = 3;
  int reps_per_round = 3;
  double rep_target_s = 0.05;       // workloads.json: rep_target_s_gemm
  double layer_rep_target_s = 0.1;  // workloads.json: rep_target_s_layer
  double warmup_s = 0.15;

  // The plan for timing whole layers or models.
  TimingPlan for_layers() const {
    TimingPlan p = *this;
    p.rep_target_s = layer_rep_target_s;
    return p;
  }
};

struct Stats {
  double median_s = 0, min_s = 0, max_s = 0;
  std::vector<double> reps_s;
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs fn at least twice and for at least warmup_s; returns the calls per rep that last at least
// rep_target_s (rounded up).
inline long calibrate(const std::function<void()>& fn, const TimingPlan& plan) {
  const auto t0 = std::chrono::steady_clock::now();
  long calls = 0;
  while (calls < 2 || seconds_since(t0) < plan.warmup_s) {
    fn();
    ++calls;
  }
  const double per_call = seconds_since(t0) / static_cast<double>(calls);
  return std::max(1L, static_cast<long>(std::ceil(plan.rep_target_s / per_call)));
}

inline double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline double time_rep(const std::function<void()>& fn, long calls) {
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < calls; ++i) fn();
  return seconds_since(t0) / static_cast<double>(calls);
}

// What is reported from each round's reps: the median of the round medians (workloads.json's
// statistic: one slow round moves it less than it moves the median of all reps), and the min and
// max over all reps.
inline Stats summarize(const std::vector<std::vector<double>>& reps_by_round) {
  Stats s;
  std::vector<double> round_medians;
  for (const std::vector<double>& reps : reps_by_round) {
    round_medians.push_back(median_of(reps));
    s.reps_s.insert(s.reps_s.end(), reps.begin(), reps.end());
  }
  s.median_s = median_of(round_medians);
  s.min_s = *std::min_element(s.reps_s.begin(), s.reps_s.end());
  s.max_s = *std::max_element(s.reps_s.begin(), s.reps_s.end());
  return s;
}

// Times every function of `fns` interleaved: each round warms each one up and takes its reps.
inline std::vector<Stats> time_interleaved(const std::vector<std::function<void()>>& fns, const TimingPlan& plan) {
  std::vector<std::vector<std::vector<double>>> reps(fns.size());  // [function][round][rep]
  for (int round = 0; round < plan.rounds; ++round)
    for (std::size_t f = 0; f < fns.size(); ++f) {
      const long calls = calibrate(fns[f], plan);
      reps[f].emplace_back();
      for (int r = 0; r < plan.reps_per_round; ++r) reps[f].back().push_back(time_rep(fns[f], calls));
    }
  std::vector<Stats> out;
  for (const auto& by_round : reps) out.push_back(summarize(by_round));
  return out;
}

}  // namespace engine::bench
