// Shared test helpers: random data, the tolerance rule, and the per-ISA parameterisation.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "engine/isa.hpp"
#include "engine/ops.hpp"

namespace engine::test {

inline std::vector<float> random_vector(std::size_t n, std::uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// |got - want| <= max(abs_tol, |want| * rel_tol) (XNNPACK's rule). Reports the first offender.
inline ::testing::AssertionResult all_close(const float* got, const double* want, std::size_t n, double abs_tol,
                                            double rel_tol) {
  for (std::size_t i = 0; i < n; ++i) {
    const double tol = std::max(abs_tol, std::fabs(want[i]) * rel_tol);
    if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= tol) || std::isnan(got[i]) != std::isnan(want[i]))
      return ::testing::AssertionFailure() << "element " << i << ": got " << got[i] << ", want " << want[i]
                                           << " (tolerance " << tol << ")";
  }
  return ::testing::AssertionSuccess();
}

// Runs the body of a parameterised test with the kernels of one instruction set, restoring the
// previous choice afterwards.
class IsaScope {
 public:
  explicit IsaScope(Isa isa) : previous_(active_isa()) { set_active_isa(isa); }
  ~IsaScope() { set_active_isa(previous_); }

 private:
  Isa previous_;
};

// Every instruction set this machine runs, capped by ENGINE_MAX_ISA (so a run with
// ENGINE_MAX_ISA=avx2 exercises only avx2 and scalar).
inline std::vector<Isa> test_isas() {
  std::vector<Isa> out;
  for (Isa isa : available_isas())
    if (isa <= active_isa()) out.push_back(isa);
  return out;
}

inline std::string isa_param_name(const ::testing::TestParamInfo<Isa>& info) { return isa_name(info.param); }

// Expects `call()` to throw engine::Error whose message contains `needle`.
template <class Call>
void expect_error(Call&& call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "expected engine::Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Restores the default thread count when a test that changed it ends.
struct ThreadGuard {
  ~ThreadGuard() { set_num_threads(0); }
};

}  // namespace engine::test
