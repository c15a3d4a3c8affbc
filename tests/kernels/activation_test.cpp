// Activations (engine::activation, the per-ISA activation kernel) and bias_add against double
// references, for every instruction set.
//
// Tolerance: relu and none are exact. GELU (erf and tanh forms): |got - ref| <= max(kGeluAbsTol,
// |ref| * kGeluRelTol) with kGeluAbsTol = 2e-7 and kGeluRelTol = 2e-6. GELU(erf), measured on a
// 1e-5 grid over [-10, 10]: relative error <= 6.5e-7 (avx2, avx512) and 8.7e-7 (portable: no FMA)
// wherever |ref| > 0.1; elsewhere the absolute error is <= 8.3e-8 (at x = -5.54, where the kernel
// stops at Φ = 0); at most 0.44 of the tolerance anywhere. bias_add is an exact float add.
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

constexpr double kGeluAbsTol = 2e-7;
constexpr double kGeluRelTol = 2e-6;
constexpr float kSentinel = -12345.0f;


const Activation kAllActivations[] = {Activation::none, Activation::relu, Activation::gelu_erf, Activation::gelu_tanh};

// Random values in [-10, 10] with special points sprinkled in.
std::vector<float> activation_inputs(std::size_t n, std::uint32_t seed) {
  auto x = random_vector(n, seed, -10.0f, 10.0f);
  const float specials[] = {0.0f,   -0.0f,  1e-30f, -1e-30f, 1e-7f, -1e-7f, std::numeric_limits<float>::denorm_min(),
                            30.0f,  -30.0f, 1.0f,   -1.0f,   3.0f,  -3.0f,  -5.5f,
                            10.0f,  -10.0f, 0.5f,   -0.5f};
  for (std::size_t i = 0; i < n; i += 3) x[i] = specials[(i / 3) % (sizeof specials / sizeof specials[0])];
  return x;
}

void expect_activation_close(Activation act, const std::vector<float>& in, const float* got, std::size_t n,
                             const std::string& what) {
  std::vector<double> want(n);
  for (std::size_t i = 0; i < n; ++i) want[i] = ref_activation(act, static_cast<double>(in[i]));
  const bool exact = act == Activation::none || act == Activation::relu;
  ASSERT_TRUE(all_close(got, want.data(), n, exact ? 0.0 : kGeluAbsTol, exact ? 0.0 : kGeluRelTol))
      << what << " act=" << activation_name(act);
}

class ActivationTest : public ::testing::TestWithParam<Isa> {};

TEST_P(ActivationTest, EveryLengthAgainstReference) {
  IsaScope scope(GetParam());
  std::vector<i64> lengths;
  for (i64 n = 1; n <= 49; ++n) lengths.push_back(n);
  lengths.push_back(1000);
  lengths.push_back(100003);
  for (Activation act : kAllActivations) {
    for (i64 n : lengths) {
      const std::size_t size = static_cast<std::size_t>(n);
      const auto in = activation_inputs(size, static_cast<std::uint32_t>(n));
      std::vector<float> x = in;
      x.push_back(kSentinel);
      activation(act, n, x.data());
      const std::string what = "n=" + std::to_string(n);
      expect_activation_close(act, in, x.data(), size, what);
      ASSERT_EQ(x[size], kSentinel) << what << " act=" << activation_name(act) << ": wrote past n";
    }
  }
}

TEST_P(ActivationTest, KernelDirectWithOffsets) {
  const kernels::KernelTable& kt = kernels::table_for(GetParam());
  const auto in = activation_inputs(128, 99);
  for (Activation act : kAllActivations)
    for (i64 n = 0; n <= 49; ++n)
      for (i64 offset : {0, 1, 5}) {
        std::vector<float> x = in;
        kt.activation(act, n, x.data() + offset);
        for (i64 i = 0; i < offset; ++i) ASSERT_EQ(x[static_cast<std::size_t>(i)], in[static_cast<std::size_t>(i)]);
        const std::vector<float> slice(in.begin() + offset, in.begin() + offset + n);
        expect_activation_close(act, slice, x.data() + offset, static_cast<std::size_t>(n),
                                "n=" + std::to_string(n) + " offset=" + std::to_string(offset));
        for (std::size_t i = static_cast<std::size_t>(offset + n); i < in.size(); ++i)
          ASSERT_EQ(x[i], in[i]) << "n=" << n << " offset=" << offset << ": wrote past n";
      }
}

TEST_P(ActivationTest, SpecialPoints) {
  IsaScope scope(GetParam());
  std::vector<float> x = {0.0f, -0.0f, 30.0f, -30.0f, 1e-30f};
  std::vector<float> r = x, ge = x, gt = x;
  activation(Activation::relu, static_cast<i64>(r.size()), r.data());
  activation(Activation::gelu_erf, static_cast<i64>(ge.size()), ge.data());
  activation(Activation::gelu_tanh, static_cast<i64>(gt.size()), gt.data());
  EXPECT_EQ(r, (std::vector<float>{0.0f, 0.0f, 30.0f, 0.0f, 1e-30f}));
  for (const auto* v : {&ge, &gt}) {
    EXPECT_EQ((*v)[0], 0.0f);
    EXPECT_EQ((*v)[1], 0.0f);
    EXPECT_EQ((*v)[2], 30.0f);  // GELU(x) == x once the CDF rounds to 1
    EXPECT_EQ((*v)[3], 0.0f);   // and 0 (possibly -0) once it rounds to 0
    EXPECT_FALSE(std::isnan((*v)[4]));
    EXPECT_NEAR((*v)[4], 5e-31f, 1e-36f);
  }
}

// xsimd's erf takes a cheap path only when every lane of a vector is small: vectors that mix small
// and large |x| must agree with the reference lane by lane, and the tails and +inf / NaN must hold.
TEST_P(ActivationTest, GeluErfTailsAndMixedLanes) {
  IsaScope scope(GetParam());
  std::vector<float> x = {INFINITY, std::numeric_limits<float>::quiet_NaN(), -13.5f, 13.5f, -0.25f, -INFINITY};
  activation(Activation::gelu_erf, static_cast<i64>(x.size()), x.data());
  EXPECT_EQ(x[0], INFINITY);
  EXPECT_EQ(x[5], 0.0f);  // the limit of x·Φ(x), not the -inf · 0 = NaN of the textbook formula
  EXPECT_TRUE(std::isnan(x[1]));
  EXPECT_EQ(x[2], 0.0f);  // Φ(-13.5) ~ 1e-41 is below FLT_MIN
  EXPECT_EQ(x[3], 13.5f);
  const double want = ref_activation(Activation::gelu_erf, -0.25);
  EXPECT_NEAR(x[4], want, std::fabs(want) * kGeluRelTol);
  // Alternating tiny / moderate / large magnitudes in every vector.
  std::vector<float> mixed(4099);
  const float pattern[] = {0.01f, -0.6f, 0.93f, -0.95f, 2.5f, -3.7f, 6.0f, -8.9f, 0.4f, -1.5f, 9.4f, -9.4f};
  for (std::size_t i = 0; i < mixed.size(); ++i)
    mixed[i] = pattern[i % (sizeof pattern / sizeof pattern[0])] * (1.0f + 1e-4f * static_cast<float>(i % 97));
  std::vector<float> got = mixed;
  activation(Activation::gelu_erf, static_cast<i64>(got.size()), got.data());
  expect_activation_close(Activation::gelu_erf, mixed, got.data(), got.size(), "mixed lanes");
}

TEST_P(ActivationTest, ThreadedIsBitwiseEqualToOneThread) {
  IsaScope scope(GetParam());
  ThreadGuard guard;
  for (i64 n : {16384, 16385, 100003}) {  // n >= 16384 takes the threaded path
    const auto in = activation_inputs(static_cast<std::size_t>(n), 5);
    for (Activation act : kAllActivations) {
      set_num_threads(1);
      std::vector<float> one = in;
      activation(act, n, one.data());
      for (int threads : {2, 3}) {
        set_num_threads(threads);
        std::vector<float> many = in;
        activation(act, n, many.data());
        EXPECT_EQ(many, one) << "n=" << n << " threads=" << threads << " act=" << activation_name(act);
      }
    }
  }
}

TEST_P(ActivationTest, BiasAddWithRowStride) {
  IsaScope scope(GetParam());
  for (i64 cols : {1, 3, 7, 8, 15, 16, 17, 31, 33, 48, 49, 100}) {
    for (i64 pad : {0, 1, 5}) {
      const i64 rows = 4, ld = cols + pad;
      const auto bias = random_vector(static_cast<std::size_t>(cols), 3, -2.0f, 2.0f);
      auto x = random_vector(static_cast<std::size_t>(rows * ld), 4, -2.0f, 2.0f);
      for (i64 r = 0; r < rows; ++r)
        for (i64 c = cols; c < ld; ++c) x[static_cast<std::size_t>(r * ld + c)] = kSentinel;
      const std::vector<float> x0 = x;
      bias_add(rows, cols, bias.data(), x.data(), ld);
      for (i64 r = 0; r < rows; ++r)
        for (i64 c = 0; c < ld; ++c) {
          const std::size_t i = static_cast<std::size_t>(r * ld + c);
          const float want = c < cols ? x0[i] + bias[static_cast<std::size_t>(c)] : kSentinel;
          ASSERT_EQ(x[i], want) << "cols=" << cols << " ld=" << ld << " r=" << r << " c=" << c;
        }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, ActivationTest, ::testing::ValuesIn(test_isas()), isa_param_name);

TEST(ActivationErrors, BadArgumentsNameTheProblem) {
  std::vector<float> x(16, 1.0f), b(4, 0.0f);
  expect_error([&] { activation(Activation::relu, -1, x.data()); }, "n must be >= 0");
  expect_error([&] { activation(Activation::relu, 4, nullptr); }, "x is null");
  EXPECT_NO_THROW(activation(Activation::relu, 0, nullptr));
  expect_error([&] { bias_add(0, 4, b.data(), x.data(), 4); }, "rows=0");
  expect_error([&] { bias_add(4, 0, b.data(), x.data(), 4); }, "cols=0");
  expect_error([&] { bias_add(4, 4, nullptr, x.data(), 4); }, "bias is null");
  expect_error([&] { bias_add(4, 4, b.data(), nullptr, 4); }, "x is null");
  expect_error([&] { bias_add(4, 4, b.data(), x.data(), 3); }, "ld must be >= cols");
}

}  // namespace
}  // namespace engine::test
