// LayerNorm (engine::layer_norm and the per-ISA layer_norm_row kernel), with and without the fused
// residual add, against a double reference, for every instruction set.
//
// Tolerance: |got - ref| <= max(1e-5, |ref| * 1e-5) everywhere, including rows with a large mean
// (1e4) and a small spread, where a plain two-pass variance would already be off by ~1e-3 (the
// float mean is only good to half an ulp of 1e4); the kernel uses the corrected two-pass algorithm.
// Constant rows must give exactly beta, and sum_out must equal x + residual exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "engine/kernels/kernel_table.hpp"
#include "engine/ops.hpp"
#include "reference.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

using i64 = std::int64_t;

constexpr double kAbsTol = 1e-5;
constexpr double kRelTol = 1e-5;


const std::vector<i64>& all_cols() {
  static const std::vector<i64> cols = {1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 64, 65, 768, 1023};
  return cols;
}

// Compares out [rows, cols] against the reference row by row.
void expect_rows_close(i64 rows, i64 cols, const float* x, const float* residual, const float* gamma,
                       const float* beta, float eps, const float* out, double abs_tol, double rel_tol,
                       const std::string& what) {
  for (i64 r = 0; r < rows; ++r) {
    const auto want = ref_layer_norm(cols, x + r * cols, residual != nullptr ? residual + r * cols : nullptr, gamma,
                                     beta, static_cast<double>(eps));
    ASSERT_TRUE(all_close(out + r * cols, want.data(), static_cast<std::size_t>(cols), abs_tol, rel_tol))
        << what << ", row " << r;
  }
}

class LayerNormTest : public ::testing::TestWithParam<Isa> {};

TEST_P(LayerNormTest, EveryWidthWithAndWithoutResidualAndSumOut) {
  IsaScope scope(GetParam());
  for (i64 cols : all_cols()) {
    const i64 rows = 3;
    const std::size_t size = static_cast<std::size_t>(rows * cols);
    const auto seed = static_cast<std::uint32_t>(cols);
    const auto x = random_vector(size, seed, -2.0f, 2.0f);
    const auto res = random_vector(size, seed + 1, -1.0f, 1.0f);
    const auto gamma = random_vector(static_cast<std::size_t>(cols), seed + 2, 0.5f, 1.5f);
    const auto beta = random_vector(static_cast<std::size_t>(cols), seed + 3, -0.5f, 0.5f);
    for (float eps : {1e-5f, 1e-12f}) {
      for (int combo = 0; combo < 4; ++combo) {
        const bool with_residual = combo & 1, with_sum = combo & 2;
        const float* r = with_residual ? res.data() : nullptr;
        std::vector<float> out(size + 1, -9.0f), sum(size + 1, -9.0f);
        layer_norm(rows, cols, x.data(), r, gamma.data(), beta.data(), eps, out.data(), with_sum ? sum.data() : nullptr);
        const std::string what = "cols=" + std::to_string(cols) + " eps=" + std::to_string(eps) +
                                 " residual=" + std::to_string(with_residual) + " sum_out=" + std::to_string(with_sum);
        expect_rows_close(rows, cols, x.data(), r, gamma.data(), beta.data(), eps, out.data(), kAbsTol, kRelTol, what);
        EXPECT_EQ(out[size], -9.0f) << what << ": wrote past the end of out";
        if (with_sum) {
          for (std::size_t i = 0; i < size; ++i)
            ASSERT_EQ(sum[i], with_residual ? x[i] + res[i] : x[i]) << what << ": sum_out[" << i << "]";
          EXPECT_EQ(sum[size], -9.0f) << what << ": wrote past the end of sum_out";
        } else {
          for (float s : sum) ASSERT_EQ(s, -9.0f) << what << ": sum_out written although null";
        }
      }
    }
  }
}

TEST_P(LayerNormTest, KernelRowDirect) {
  const kernels::KernelTable& kt = kernels::table_for(GetParam());
  for (i64 n : all_cols()) {
    const auto seed = static_cast<std::uint32_t>(1000 + n);
    const std::size_t size = static_cast<std::size_t>(n);
    const auto x = random_vector(size, seed, -3.0f, 3.0f);
    const auto res = random_vector(size, seed + 1, -1.0f, 1.0f);
    const auto gamma = random_vector(size, seed + 2, -1.5f, 1.5f);
    const auto beta = random_vector(size, seed + 3, -0.5f, 0.5f);
    std::vector<float> y(size), s(size);
    kt.layer_norm_row(n, x.data(), res.data(), gamma.data(), beta.data(), 1e-5f, y.data(), s.data());
    const auto want = ref_layer_norm(n, x.data(), res.data(), gamma.data(), beta.data(), 1e-5f);
    ASSERT_TRUE(all_close(y.data(), want.data(), size, kAbsTol, kRelTol)) << "n=" << n;
    for (std::size_t i = 0; i < size; ++i) ASSERT_EQ(s[i], x[i] + res[i]) << "n=" << n << " i=" << i;
  }
}

TEST_P(LayerNormTest, InPlace) {
  IsaScope scope(GetParam());
  for (i64 cols : all_cols()) {
    const i64 rows = 4;
    const std::size_t size = static_cast<std::size_t>(rows * cols);
    const auto seed = static_cast<std::uint32_t>(50 + cols);
    const auto x = random_vector(size, seed, -2.0f, 2.0f);
    const auto res = random_vector(size, seed + 1, -1.0f, 1.0f);
    const auto gamma = random_vector(static_cast<std::size_t>(cols), seed + 2, 0.5f, 1.5f);
    const auto beta = random_vector(static_cast<std::size_t>(cols), seed + 3, -0.5f, 0.5f);
    const std::string c = "cols=" + std::to_string(cols);

    // out == x, no residual.
    std::vector<float> a = x;
    layer_norm(rows, cols, a.data(), nullptr, gamma.data(), beta.data(), 1e-5f, a.data());
    expect_rows_close(rows, cols, x.data(), nullptr, gamma.data(), beta.data(), 1e-5f, a.data(), kAbsTol, kRelTol,
                      "out == x " + c);
    // out == x with residual and sum_out.
    std::vector<float> b = x, sum(size);
    layer_norm(rows, cols, b.data(), res.data(), gamma.data(), beta.data(), 1e-5f, b.data(), sum.data());
    expect_rows_close(rows, cols, x.data(), res.data(), gamma.data(), beta.data(), 1e-5f, b.data(), kAbsTol, kRelTol,
                      "out == x, residual " + c);
    for (std::size_t i = 0; i < size; ++i) ASSERT_EQ(sum[i], x[i] + res[i]) << c << " i=" << i;
    // The pre-LN residual stream updated in place: sum_out == residual.
    std::vector<float> stream = res, out(size);
    layer_norm(rows, cols, x.data(), stream.data(), gamma.data(), beta.data(), 1e-5f, out.data(), stream.data());
    expect_rows_close(rows, cols, x.data(), res.data(), gamma.data(), beta.data(), 1e-5f, out.data(), kAbsTol,
                      kRelTol, "sum_out == residual " + c);
    for (std::size_t i = 0; i < size; ++i) ASSERT_EQ(stream[i], x[i] + res[i]) << c << " i=" << i;
  }
}

// Zero variance: every normalised value is 0, so every output is exactly beta, for any constant
// (including ones whose float row sum is inexact, e.g. 0.1 or 1e4 + 0.3) and even with eps = 1e-12,
// where a mean off by one ulp would otherwise be amplified by 1/sqrt(eps) = 1e6.
TEST_P(LayerNormTest, ConstantRows) {
  IsaScope scope(GetParam());
  for (i64 cols : all_cols()) {
    const auto gamma = random_vector(static_cast<std::size_t>(cols), 7, 0.5f, 1.5f);
    const auto beta = random_vector(static_cast<std::size_t>(cols), 8, -0.5f, 0.5f);
    for (float value : {0.0f, 1.0f, -3.0f, 0.5f, 1024.0f, 0.1f, -7.3f, 3.14159f, 1e4f + 0.3f, -1e-20f}) {
      for (float eps : {1e-5f, 1e-12f}) {
        for (bool with_residual : {false, true}) {
          // With the residual the constant row is the sum x + residual.
          std::vector<float> x(static_cast<std::size_t>(2 * cols), value), res(x.size(), 0.0f);
          if (with_residual)
            for (std::size_t i = 0; i < x.size(); ++i) {
              res[i] = 0.25f;
              x[i] = value - 0.25f;
            }
          std::vector<float> out(x.size());
          layer_norm(2, cols, x.data(), with_residual ? res.data() : nullptr, gamma.data(), beta.data(), eps,
                     out.data());
          for (std::size_t i = 0; i < out.size(); ++i)
            ASSERT_EQ(out[i], beta[i % static_cast<std::size_t>(cols)])
                << "cols=" << cols << " value=" << value << " eps=" << eps << " residual=" << with_residual << " i=" << i;
        }
      }
    }
  }
}

// Mean 1e4, spread +-1 (std 0.58): a one-pass E[x^2] - E[x]^2 variance would be wrong by orders of
// magnitude and a plain two-pass one is limited by the float mean (half an ulp of 1e4 is 4.9e-4,
// i.e. ~1e-3 in the output); the kernel's corrected two-pass meets the ordinary tolerance.
TEST_P(LayerNormTest, LargeOffsets) {
  IsaScope scope(GetParam());
  for (i64 cols : all_cols()) {
    const i64 rows = 3;
    const std::size_t size = static_cast<std::size_t>(rows * cols);
    auto x = random_vector(size, 11, -1.0f, 1.0f);
    for (float& v : x) v += 1e4f;
    const auto res = random_vector(size, 12, -0.25f, 0.25f);
    const auto gamma = random_vector(static_cast<std::size_t>(cols), 13, 0.5f, 1.5f);
    const auto beta = random_vector(static_cast<std::size_t>(cols), 14, -0.5f, 0.5f);
    // With a residual the op normalises the float sum x + residual (what sum_out holds), which near
    // 1e4 is itself rounded by up to 4.9e-4; the reference starts from that float sum.
    std::vector<float> float_sum(size);
    for (std::size_t i = 0; i < size; ++i) float_sum[i] = x[i] + res[i];
    for (bool with_residual : {false, true}) {
      for (float eps : {1e-5f, 1e-12f}) {
        std::vector<float> out(size);
        layer_norm(rows, cols, x.data(), with_residual ? res.data() : nullptr, gamma.data(), beta.data(), eps,
                   out.data());
        expect_rows_close(rows, cols, with_residual ? float_sum.data() : x.data(), nullptr, gamma.data(), beta.data(),
                          eps, out.data(), kAbsTol, kRelTol,
                          "offset 1e4 cols=" + std::to_string(cols) + (with_residual ? " residual" : "") +
                              " eps=" + std::to_string(eps));
      }
    }
  }
}

TEST_P(LayerNormTest, ResultsAreBitwiseIndependentOfThreadCount) {
  IsaScope scope(GetParam());
  ThreadGuard guard;
  const i64 rows = 37, cols = 768;  // rows * cols >= 8192: the threaded path
  const std::size_t size = static_cast<std::size_t>(rows * cols);
  const auto x = random_vector(size, 41, -2.0f, 2.0f);
  const auto res = random_vector(size, 42, -1.0f, 1.0f);
  const auto gamma = random_vector(static_cast<std::size_t>(cols), 43, 0.5f, 1.5f);
  const auto beta = random_vector(static_cast<std::size_t>(cols), 44, -0.5f, 0.5f);
  std::vector<float> first, first_sum;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<float> out(size), sum(size);
    layer_norm(rows, cols, x.data(), res.data(), gamma.data(), beta.data(), 1e-12f, out.data(), sum.data());
    if (threads == 1) {
      expect_rows_close(rows, cols, x.data(), res.data(), gamma.data(), beta.data(), 1e-12f, out.data(), kAbsTol,
                        kRelTol, "threads=1");
      first = out;
      first_sum = sum;
    } else {
      EXPECT_EQ(out, first) << "threads=" << threads;
      EXPECT_EQ(sum, first_sum) << "threads=" << threads;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, LayerNormTest, ::testing::ValuesIn(test_isas()), isa_param_name);

TEST(LayerNormErrors, BadArgumentsNameTheProblem) {
  std::vector<float> x(16, 1.0f), g(4, 1.0f), b(4, 0.0f), out(16);
  expect_error([&] { layer_norm(4, 4, x.data(), nullptr, g.data(), b.data(), 0.0f, out.data()); }, "eps");
  expect_error([&] { layer_norm(4, 4, x.data(), nullptr, g.data(), b.data(), -1e-5f, out.data()); }, "eps");
  expect_error([&] { layer_norm(4, 4, x.data(), nullptr, g.data(), b.data(), std::numeric_limits<float>::quiet_NaN(), out.data()); },
               "eps");
  expect_error([&] { layer_norm(4, 4, x.data(), nullptr, g.data(), b.data(), std::numeric_limits<float>::infinity(), out.data()); },
               "eps");
  expect_error([&] { layer_norm(4, 4, x.data(), nullptr, nullptr, b.data(), 1e-5f, out.data()); }, "gamma");
  expect_error([&] { layer_norm(4, 4, x.data(), nullptr, g.data(), nullptr, 1e-5f, out.data()); }, "beta");
  expect_error([&] { layer_norm(4, 4, nullptr, nullptr, g.data(), b.data(), 1e-5f, out.data()); }, "x is null");
  expect_error([&] { layer_norm(4, 4, x.data(), nullptr, g.data(), b.data(), 1e-5f, nullptr); }, "out is null");
  expect_error([&] { layer_norm(0, 4, x.data(), nullptr, g.data(), b.data(), 1e-5f, out.data()); }, "rows=0");
  expect_error([&] { layer_norm(4, 0, x.data(), nullptr, g.data(), b.data(), 1e-5f, out.data()); }, "cols=0");
}

}  // namespace
}  // namespace engine::test
