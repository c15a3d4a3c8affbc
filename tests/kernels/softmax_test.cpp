// Masked softmax (engine::masked_softmax and the per-ISA softmax_row kernel) against a double
// reference, for every instruction set.
//
// Tolerance: |got - ref| <= max(1e-6, |ref| * rel) with rel = 1e-5 + 4 * 2^-24 * S, where S is the
// largest |score| (x * scale + masks) among the row's unmasked keys. Outputs lie in [0, 1]; exp's
// ~1 ulp and the float sum of at most a thousand terms stay well under 1e-5 relative. The S term is
// the unavoidable rounding of the float scores themselves (each carries up to ~|score| * 2^-24 of
// absolute error, which softmax turns into relative error of the outputs): it matters only for
// hostile rows like x * 1000 (S = 1000 -> 2.4e-4), and is < 2e-6 for ordinary rows (S < 8).
// Each unmasked row must also sum to 1 within 1e-5, masked keys must come out exactly 0.0f and
// fully masked rows exactly all zeros (never NaN).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <memory>
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

constexpr double kAbsTol = 1e-6;
constexpr double kRelTol = 1e-5;
constexpr double kSumTol = 1e-5;
constexpr double kScoreRounding = 4.0 / 16777216.0;  // 4 * 2^-24 per unit of |score|
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kSentinel = 12345.0f;  // fills row padding, which must stay untouched

// Resets the thread count to the default when a test ends, even on failure.

struct RefSoftmax {
  std::vector<double> y;          // [batch * rows, cols]
  std::vector<double> max_score;  // per row: the largest finite |score| among unmasked keys
};

// Independent double reference for the whole op: key k of row (b, i) is masked when the causal
// rule, the valid length or the key padding says so; the additive mask is added to the score.
RefSoftmax ref_masked_softmax(i64 batch, i64 rows, i64 cols, const float* in, i64 ld_in, float scale,
                              const SoftmaxMask& m) {
  const double ninf = -std::numeric_limits<double>::infinity();
  RefSoftmax ref;
  ref.y.assign(static_cast<std::size_t>(batch * rows * cols), 0.0);
  ref.max_score.assign(static_cast<std::size_t>(batch * rows), 0.0);
  std::vector<double> v(static_cast<std::size_t>(cols));
  for (i64 b = 0; b < batch; ++b)
    for (i64 i = 0; i < rows; ++i) {
      const float* x = in + (b * rows + i) * ld_in;
      double mx = ninf;
      for (i64 k = 0; k < cols; ++k) {
        const bool masked = (m.causal && k > i + m.causal_offset) ||
                            (m.valid_lengths != nullptr && k >= m.valid_lengths[b]) ||
                            (m.key_padding != nullptr && m.key_padding[b * cols + k]);
        double t = ninf;
        if (!masked) {
          t = static_cast<double>(x[k]) * static_cast<double>(scale);
          if (m.additive != nullptr) t += m.additive[i * cols + k];
        }
        v[static_cast<std::size_t>(k)] = t;
        mx = std::max(mx, t);
        if (std::isfinite(t)) {
          double& ms = ref.max_score[static_cast<std::size_t>(b * rows + i)];
          ms = std::max(ms, std::fabs(t));
        }
      }
      double* y = ref.y.data() + (b * rows + i) * cols;
      if (!(mx > ninf)) continue;  // fully masked: zeros
      double sum = 0.0;
      for (i64 k = 0; k < cols; ++k) sum += y[k] = std::exp(v[static_cast<std::size_t>(k)] - mx);
      for (i64 k = 0; k < cols; ++k) y[k] /= sum;
    }
  return ref;
}

// Checks `got` (row stride ld_out) against the reference, plus the structural properties: exact
// zeros where the reference is exactly zero (masked keys, fully masked rows), no NaN, rows summing
// to 1, row padding untouched.
void expect_matches(i64 batch, i64 rows, i64 cols, const std::vector<float>& got, i64 ld_out,
                    const RefSoftmax& want, const std::string& what) {
  for (i64 r = 0; r < batch * rows; ++r) {
    const float* g = got.data() + r * ld_out;
    const double* w = want.y.data() + r * cols;
    const double rel_tol = kRelTol + kScoreRounding * want.max_score[static_cast<std::size_t>(r)];
    ASSERT_TRUE(all_close(g, w, static_cast<std::size_t>(cols), kAbsTol, rel_tol)) << what << ", row " << r;
    double sum = 0.0, want_sum = 0.0;
    for (i64 k = 0; k < cols; ++k) {
      ASSERT_FALSE(std::isnan(g[k])) << what << ", row " << r << " key " << k;
      if (w[k] == 0.0) {
        ASSERT_EQ(g[k], 0.0f) << what << ": masked key must be exactly 0, row " << r << " key " << k;
      }
      sum += g[k];
      want_sum += w[k];
    }
    if (want_sum == 0.0)
      EXPECT_EQ(sum, 0.0) << what << ": fully masked row " << r;
    else
      EXPECT_NEAR(sum, 1.0, kSumTol) << what << ", row " << r;
    for (i64 k = cols; k < ld_out; ++k)
      ASSERT_EQ(g[k], kSentinel) << what << ": row padding written, row " << r << " col " << k;
  }
}

// Runs masked_softmax out of place with padded strides and checks it.
void run_and_check(i64 batch, i64 rows, i64 cols, const std::vector<float>& in, i64 ld_in, float scale,
                   const SoftmaxMask& mask, const std::string& what, i64 ld_out = -1) {
  if (ld_out < 0) ld_out = cols;
  std::vector<float> out(static_cast<std::size_t>(batch * rows * ld_out), kSentinel);
  masked_softmax(batch, rows, cols, in.data(), ld_in, out.data(), ld_out, scale, mask);
  const auto want = ref_masked_softmax(batch, rows, cols, in.data(), ld_in, scale, mask);
  expect_matches(batch, rows, cols, out, ld_out, want, what);
}

class SoftmaxTest : public ::testing::TestWithParam<Isa> {};

TEST_P(SoftmaxTest, RandomRowsEveryLength) {
  IsaScope scope(GetParam());
  std::vector<i64> lengths;
  for (i64 n = 1; n <= 49; ++n) lengths.push_back(n);
  for (i64 n : {63, 64, 65, 127, 128, 129, 513, 1000}) lengths.push_back(n);
  for (i64 cols : lengths) {
    const i64 batch = 2, rows = 3;
    const auto in = random_vector(static_cast<std::size_t>(batch * rows * cols), static_cast<std::uint32_t>(cols), -6.0f, 6.0f);
    run_and_check(batch, rows, cols, in, cols, 0.37f, {}, "cols=" + std::to_string(cols));
  }
}

TEST_P(SoftmaxTest, KernelRowDirectWithVisibleAndBiases) {
  const kernels::KernelTable& kt = kernels::table_for(GetParam());
  for (i64 n = 1; n <= 70; ++n) {
    const auto x = random_vector(static_cast<std::size_t>(n), static_cast<std::uint32_t>(100 + n), -8.0f, 8.0f);
    auto bias_a = random_vector(static_cast<std::size_t>(n), static_cast<std::uint32_t>(200 + n), -2.0f, 2.0f);
    const auto bias_b = random_vector(static_cast<std::size_t>(n), static_cast<std::uint32_t>(300 + n), -2.0f, 2.0f);
    for (i64 j = 1; j < n; j += 3) bias_a[static_cast<std::size_t>(j)] = -kInf;
    for (i64 visible : {i64{0}, i64{1}, n / 2, n - 1, n}) {
      for (int biases = 0; biases < 4; ++biases) {
        const float* ba = (biases & 1) ? bias_a.data() : nullptr;
        const float* bb = (biases & 2) ? bias_b.data() : nullptr;
        std::vector<float> y(static_cast<std::size_t>(n) + 1, kSentinel);
        kt.softmax_row(visible, n, x.data(), y.data(), 0.5f, ba, bb);
        const auto want = ref_softmax_row(visible, n, x.data(), 0.5, ba, bb);
        const std::string what = "n=" + std::to_string(n) + " visible=" + std::to_string(visible) +
                                 " biases=" + std::to_string(biases);
        ASSERT_TRUE(all_close(y.data(), want.data(), static_cast<std::size_t>(n), kAbsTol, kRelTol)) << what;
        for (i64 j = 0; j < n; ++j)
          if (want[static_cast<std::size_t>(j)] == 0.0) {
            ASSERT_EQ(y[static_cast<std::size_t>(j)], 0.0f) << what << " j=" << j;
          }
        ASSERT_EQ(y[static_cast<std::size_t>(n)], kSentinel) << what << ": wrote past n";
      }
    }
  }
}

TEST_P(SoftmaxTest, WhatLiesPastVisibleIsNeverRead) {
  // Rows whose last partial vector ends inside the row are computed a whole vector at a time, with
  // the lanes past `visible` masked: NaN, +inf or huge values there must not reach the result. Both
  // the plain row and the online (flash) row from a fresh state, which must give the same weights
  // before normalisation.
  const kernels::KernelTable& kt = kernels::table_for(GetParam());
  const float garbage[] = {std::numeric_limits<float>::quiet_NaN(), kInf, -kInf, 3e38f};
  for (i64 n : {i64{16}, i64{17}, i64{48}, i64{64}, i64{70}})
    for (i64 visible = 0; visible <= n; ++visible)
      for (float g : garbage) {
        auto x = random_vector(static_cast<std::size_t>(n), static_cast<std::uint32_t>(500 + n + visible), -8.0f, 8.0f);
        for (i64 j = visible; j < n; ++j) x[static_cast<std::size_t>(j)] = g;
        const auto bias = random_vector(static_cast<std::size_t>(n), static_cast<std::uint32_t>(600 + n), -2.0f, 2.0f);
        const auto want = ref_softmax_row(visible, n, x.data(), 0.25, bias.data(), nullptr);
        const std::string what = "n=" + std::to_string(n) + " visible=" + std::to_string(visible) +
                                 " garbage=" + std::to_string(g);
        std::vector<float> y(static_cast<std::size_t>(n) + 1, kSentinel);
        kt.softmax_row(visible, n, x.data(), y.data(), 0.25f, bias.data(), nullptr);
        ASSERT_TRUE(all_close(y.data(), want.data(), static_cast<std::size_t>(n), kAbsTol, kRelTol)) << what;
        ASSERT_EQ(y[static_cast<std::size_t>(n)], kSentinel) << what << ": wrote past n";

        std::vector<float> s(x);
        s.push_back(kSentinel);
        float running_max = -kInf, running_sum = 0.0f;
        kt.online_softmax_row(visible, n, s.data(), 0.25f, bias.data(), nullptr, &running_max, &running_sum);
        ASSERT_EQ(s[static_cast<std::size_t>(n)], kSentinel) << what << ": online row wrote past n";
        for (i64 j = 0; j < n; ++j) {
          const double normalised = running_sum > 0.0f ? s[static_cast<std::size_t>(j)] / running_sum : 0.0;
          ASSERT_NEAR(normalised, want[static_cast<std::size_t>(j)], kAbsTol + kRelTol * want[static_cast<std::size_t>(j)])
              << what << " online j=" << j;
          if (j >= visible) {
            ASSERT_EQ(s[static_cast<std::size_t>(j)], 0.0f) << what << " online j=" << j;
          }
        }
      }
}

TEST_P(SoftmaxTest, RowsInRegistersMatchThePassesBitForBit) {
  // A row of a few whole vectors is kept in registers; any other row takes the three passes. A row
  // of n = 8·W or fewer whole vectors must give the same bits as that row padded to n + 1 (which
  // takes the passes: n + 1 is never a whole number of vectors), for every visible length, every
  // pair of biases, a score so large that the others' exponentials underflow to 0, and a NaN (whose
  // row is NaN, its masked keys still 0); in place as out of place, writing nothing past n.
  const kernels::KernelTable& kt = kernels::table_for(GetParam());
  const i64 width = kt.vector_floats;
  for (i64 n = width; n <= 8 * width; n += width)
    for (i64 visible = 0; visible <= n; ++visible)
      for (int variant = 0; variant < 4; ++variant)
        for (int biases = 0; biases < 4; ++biases) {
          const auto floats = static_cast<std::size_t>(n);
          auto x = random_vector(floats + 1, static_cast<std::uint32_t>(700 + n + visible), -9.0f, 9.0f);
          auto bias_a = random_vector(floats + 1, static_cast<std::uint32_t>(800 + n), -2.0f, 2.0f);
          const auto bias_b = random_vector(floats + 1, static_cast<std::uint32_t>(900 + n), -2.0f, 2.0f);
          for (i64 j = 2; j < n; j += 5) bias_a[static_cast<std::size_t>(j)] = -kInf;
          if (variant == 1 && visible > 0) x[static_cast<std::size_t>(visible / 2)] = 80.0f;
          if (variant == 2 && visible > 0) x[static_cast<std::size_t>(visible / 2)] = 1000.0f;  // others underflow
          if (variant == 3 && visible > 0)
            x[static_cast<std::size_t>(visible - 1)] = std::numeric_limits<float>::quiet_NaN();
          const float* ba = (biases & 1) ? bias_a.data() : nullptr;
          const float* bb = (biases & 2) ? bias_b.data() : nullptr;
          std::vector<float> in_registers(floats + 1, kSentinel), passes(floats + 1, kSentinel);
          kt.softmax_row(visible, n, x.data(), in_registers.data(), 0.3f, ba, bb);
          kt.softmax_row(visible, n + 1, x.data(), passes.data(), 0.3f, ba, bb);
          std::vector<float> in_place(x);
          kt.softmax_row(visible, n, in_place.data(), in_place.data(), 0.3f, ba, bb);
          const std::string what = "n=" + std::to_string(n) + " visible=" + std::to_string(visible) +
                                   " variant=" + std::to_string(variant) + " biases=" + std::to_string(biases);
          ASSERT_EQ(std::memcmp(in_registers.data(), passes.data(), floats * sizeof(float)), 0) << what;
          ASSERT_EQ(std::memcmp(in_place.data(), passes.data(), floats * sizeof(float)), 0) << what << " in place";
          ASSERT_EQ(in_registers[floats], kSentinel) << what << ": wrote past n";
          for (std::size_t j = static_cast<std::size_t>(visible); j < floats; ++j)
            ASSERT_EQ(in_registers[j], 0.0f) << what << " j=" << j;
        }
}

TEST_P(SoftmaxTest, HostileValues) {
  IsaScope scope(GetParam());
  for (i64 cols : {1, 5, 16, 17, 33, 64, 129}) {
    const std::size_t n = static_cast<std::size_t>(cols);
    const std::string c = " cols=" + std::to_string(cols);
    // All negative, moderate and very large magnitude (exp of the raw values would underflow).
    run_and_check(1, 2, cols, random_vector(2 * n, 1, -5.0f, -1.0f), cols, 1.0f, {}, "negative" + c);
    run_and_check(1, 2, cols, random_vector(2 * n, 2, -1000.0f, -900.0f), cols, 1.0f, {}, "very negative" + c);
    // Near exp overflow: exp(88) alone would be 1.65e38; the max subtraction must keep it finite.
    run_and_check(1, 2, cols, random_vector(2 * n, 3, 80.0f, 88.0f), cols, 1.0f, {}, "near overflow" + c);
    run_and_check(1, 2, cols, random_vector(2 * n, 4, -88.0f, 88.0f), cols, 1.0f, {}, "+-88" + c);
    // Scores in [100, 300]: exp of the raw values overflows and the spread exceeds exp's range.
    run_and_check(1, 2, cols, random_vector(2 * n, 5, 100.0f, 300.0f), cols, 1.0f, {}, "past overflow" + c);
    // Large scale on moderate inputs.
    run_and_check(1, 2, cols, random_vector(2 * n, 6, -1.0f, 1.0f), cols, 1000.0f, {}, "scale 1000" + c);
  }
  // Extreme finite values: the two maxima share everything, the rest is 0.
  const std::vector<float> extreme = {3e38f, -3e38f, 0.0f, 3e38f, -1.0f};
  std::vector<float> out(extreme.size());
  masked_softmax(1, 1, 5, extreme.data(), 5, out.data(), 5, 1.0f);
  EXPECT_EQ(out, (std::vector<float>{0.5f, 0.0f, 0.0f, 0.5f, 0.0f}));
}

TEST_P(SoftmaxTest, TiesGiveUniformRows) {
  IsaScope scope(GetParam());
  for (i64 cols : {1, 2, 7, 16, 31, 48, 49, 64, 513}) {
    for (float value : {0.0f, 5.0f, -7.25f, 88.0f, -1000.0f}) {
      const std::vector<float> in(static_cast<std::size_t>(2 * cols), value);
      std::vector<float> out(in.size());
      masked_softmax(1, 2, cols, in.data(), cols, out.data(), cols, 1.0f);
      const float want = 1.0f / static_cast<float>(cols);  // exp(0) = 1 exactly, sum = cols exactly
      for (float y : out) ASSERT_EQ(y, want) << "cols=" << cols << " value=" << value;
    }
  }
}

TEST_P(SoftmaxTest, ExactlyOneUnmaskedKeyGivesOne) {
  IsaScope scope(GetParam());
  for (i64 cols : {1, 3, 16, 17, 40, 65}) {
    const auto in = random_vector(static_cast<std::size_t>(cols), 7, -50.0f, 50.0f);
    std::vector<float> out(static_cast<std::size_t>(cols), kSentinel);
    const std::int32_t one = 1;
    SoftmaxMask m;
    m.valid_lengths = &one;
    masked_softmax(1, 1, cols, in.data(), cols, out.data(), cols, 1.0f, m);
    for (i64 k = 0; k < cols; ++k) ASSERT_EQ(out[static_cast<std::size_t>(k)], k == 0 ? 1.0f : 0.0f) << "lengths cols=" << cols;

    // Key padding leaving only the last key, causal with row 0 seeing key 0, additive -inf but one.
    const i64 last = cols - 1;
    std::unique_ptr<bool[]> pad(new bool[static_cast<std::size_t>(cols)]);  // vector<bool> has no data()
    for (i64 k = 0; k < cols; ++k) pad[static_cast<std::size_t>(k)] = k != last;
    SoftmaxMask mp;
    mp.key_padding = pad.get();
    masked_softmax(1, 1, cols, in.data(), cols, out.data(), cols, 1.0f, mp);
    for (i64 k = 0; k < cols; ++k) ASSERT_EQ(out[static_cast<std::size_t>(k)], k == last ? 1.0f : 0.0f) << "padding cols=" << cols;

    SoftmaxMask mc;
    mc.causal = true;
    masked_softmax(1, 1, cols, in.data(), cols, out.data(), cols, 1.0f, mc);
    for (i64 k = 0; k < cols; ++k) ASSERT_EQ(out[static_cast<std::size_t>(k)], k == 0 ? 1.0f : 0.0f) << "causal cols=" << cols;

    std::vector<float> add(static_cast<std::size_t>(cols), -kInf);
    add[static_cast<std::size_t>(cols / 2)] = 3.0f;
    SoftmaxMask ma;
    ma.additive = add.data();
    masked_softmax(1, 1, cols, in.data(), cols, out.data(), cols, 1.0f, ma);
    for (i64 k = 0; k < cols; ++k) ASSERT_EQ(out[static_cast<std::size_t>(k)], k == cols / 2 ? 1.0f : 0.0f) << "additive cols=" << cols;
  }
}

TEST_P(SoftmaxTest, FullyMaskedRowsAreZerosNeverNan) {
  IsaScope scope(GetParam());
  for (i64 cols : {1, 7, 16, 17, 64, 100}) {
    const i64 batch = 2, rows = 4, ld = cols + 3;
    const auto in = random_vector(static_cast<std::size_t>(batch * rows * ld), 9, -3.0f, 3.0f);
    const std::size_t out_size = static_cast<std::size_t>(batch * rows * ld);
    auto check_all_zero = [&](const SoftmaxMask& m, i64 zero_rows, const std::string& what) {
      std::vector<float> out(out_size, std::numeric_limits<float>::quiet_NaN());  // must be overwritten
      masked_softmax(batch, rows, cols, in.data(), ld, out.data(), ld, 1.0f, m);
      for (i64 r = 0; r < batch * rows; ++r) {
        if (r % rows >= zero_rows) continue;
        for (i64 k = 0; k < cols; ++k)
          ASSERT_EQ(out[static_cast<std::size_t>(r * ld + k)], 0.0f) << what << " cols=" << cols << " row " << r << " key " << k;
      }
      // And the rest agrees with the reference (out of place, padded strides).
      run_and_check(batch, rows, cols, in, ld, 1.0f, m, what + " cols=" + std::to_string(cols), ld);
    };
    SoftmaxMask causal_neg;
    causal_neg.causal = true;
    causal_neg.causal_offset = -2;  // rows 0 and 1 see nothing
    check_all_zero(causal_neg, 2, "causal offset -2");
    causal_neg.causal_offset = -rows - 5;  // no row sees anything
    check_all_zero(causal_neg, rows, "causal offset -rows-5");

    const std::vector<std::int32_t> zero_len(static_cast<std::size_t>(batch), 0);
    SoftmaxMask lens;
    lens.valid_lengths = zero_len.data();
    check_all_zero(lens, rows, "valid_lengths 0");

    std::unique_ptr<bool[]> pad(new bool[static_cast<std::size_t>(batch * cols)]);
    for (i64 k = 0; k < batch * cols; ++k) pad[static_cast<std::size_t>(k)] = true;
    SoftmaxMask padded;
    padded.key_padding = pad.get();
    check_all_zero(padded, rows, "key_padding all true");

    const std::vector<float> add(static_cast<std::size_t>(rows * cols), -kInf);
    SoftmaxMask additive;
    additive.additive = add.data();
    check_all_zero(additive, rows, "additive all -inf");
  }
}

// Every combination of the four masks, with batch > 1 and padded strides on both sides.
TEST_P(SoftmaxTest, EveryMaskCombination) {
  IsaScope scope(GetParam());
  for (i64 cols : {5, 16, 37, 70}) {
    const i64 batch = 3, rows = 6, ld_in = cols + 3, ld_out = cols + 5;
    const auto in = random_vector(static_cast<std::size_t>(batch * rows * ld_in), static_cast<std::uint32_t>(cols), -4.0f, 4.0f);
    const std::vector<std::int32_t> lengths = {static_cast<std::int32_t>(cols), 1, static_cast<std::int32_t>(cols / 2 + 1)};
    std::unique_ptr<bool[]> pad(new bool[static_cast<std::size_t>(batch * cols)]);
    for (i64 b = 0; b < batch; ++b)
      for (i64 k = 0; k < cols; ++k) pad[static_cast<std::size_t>(b * cols + k)] = b == 2 ? true : (k % 3 == 1 + b);
    pad[static_cast<std::size_t>(2 * cols + cols - 1)] = false;  // batch 2: only the last key unpadded
    auto add = random_vector(static_cast<std::size_t>(rows * cols), 77, -1.5f, 1.5f);
    for (i64 i = 0; i < rows; ++i)
      for (i64 k = 0; k < cols; ++k)
        if ((i + 2 * k) % 5 == 0) add[static_cast<std::size_t>(i * cols + k)] = -kInf;

    struct CausalCase {
      bool on;
      i64 offset;
    };
    for (CausalCase cc : {CausalCase{false, 0}, CausalCase{true, 0}, CausalCase{true, 3}, CausalCase{true, -2},
                          CausalCase{true, 1000}}) {
      for (int combo = 0; combo < 8; ++combo) {
        SoftmaxMask m;
        m.causal = cc.on;
        m.causal_offset = cc.offset;
        if (combo & 1) m.valid_lengths = lengths.data();
        if (combo & 2) m.key_padding = pad.get();
        if (combo & 4) m.additive = add.data();
        const std::string what = "cols=" + std::to_string(cols) + " causal=" + std::to_string(cc.on) + " offset=" +
                                 std::to_string(cc.offset) + " lengths=" + std::to_string(combo & 1) +
                                 " padding=" + std::to_string((combo >> 1) & 1) + " additive=" + std::to_string(combo >> 2);
        run_and_check(batch, rows, cols, in, ld_in, 0.8f, m, what, ld_out);
      }
    }
  }
}

TEST_P(SoftmaxTest, InPlaceMatchesOutOfPlace) {
  IsaScope scope(GetParam());
  for (i64 cols : {1, 17, 48, 65, 300}) {
    const i64 batch = 2, rows = 5, ld = cols + 2;
    auto data = random_vector(static_cast<std::size_t>(batch * rows * ld), 21, -5.0f, 5.0f);
    for (i64 r = 0; r < batch * rows; ++r)
      for (i64 k = cols; k < ld; ++k) data[static_cast<std::size_t>(r * ld + k)] = kSentinel;
    const std::vector<std::int32_t> lengths = {static_cast<std::int32_t>(cols), static_cast<std::int32_t>((cols + 1) / 2)};
    auto add = random_vector(static_cast<std::size_t>(rows * cols), 22, -1.0f, 1.0f);
    add[0] = -kInf;
    for (int combo = 0; combo < 2; ++combo) {
      SoftmaxMask m;
      if (combo == 1) {
        m.causal = true;
        m.causal_offset = 1;
        m.valid_lengths = lengths.data();
        m.additive = add.data();
      }
      std::vector<float> separate(data.size(), kSentinel);
      masked_softmax(batch, rows, cols, data.data(), ld, separate.data(), ld, 0.6f, m);
      std::vector<float> inplace = data;
      masked_softmax(batch, rows, cols, inplace.data(), ld, inplace.data(), ld, 0.6f, m);
      EXPECT_EQ(inplace, separate) << "cols=" << cols << " combo=" << combo;
      const auto want = ref_masked_softmax(batch, rows, cols, data.data(), ld, 0.6f, m);
      expect_matches(batch, rows, cols, inplace, ld, want, "in place cols=" + std::to_string(cols));
    }
  }
}

TEST_P(SoftmaxTest, ResultsAreBitwiseIndependentOfThreadCount) {
  IsaScope scope(GetParam());
  ThreadGuard guard;
  const i64 batch = 4, rows = 33, cols = 129, ld = 131;  // 132 rows x 129 cols: the threaded path
  const auto in = random_vector(static_cast<std::size_t>(batch * rows * ld), 31, -6.0f, 6.0f);
  const std::vector<std::int32_t> lengths = {129, 64, 1, 100};
  std::unique_ptr<bool[]> pad(new bool[static_cast<std::size_t>(batch * cols)]);
  for (i64 k = 0; k < batch * cols; ++k) pad[static_cast<std::size_t>(k)] = k % 7 == 3;
  const auto add = random_vector(static_cast<std::size_t>(rows * cols), 32, -1.0f, 1.0f);
  for (int combo = 0; combo < 2; ++combo) {
    SoftmaxMask m;
    if (combo == 1) {
      m.causal = true;
      m.causal_offset = 40;
      m.valid_lengths = lengths.data();
      m.key_padding = pad.get();
      m.additive = add.data();
    }
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      std::vector<float> out(static_cast<std::size_t>(batch * rows * ld), kSentinel);
      masked_softmax(batch, rows, cols, in.data(), ld, out.data(), ld, 0.25f, m);
      if (threads == 1) {
        first = out;
        const auto want = ref_masked_softmax(batch, rows, cols, in.data(), ld, 0.25f, m);
        expect_matches(batch, rows, cols, out, ld, want, "threads=1 combo=" + std::to_string(combo));
      } else {
        EXPECT_EQ(out, first) << "threads=" << threads << " combo=" << combo;
      }
    }
  }
}

TEST_P(SoftmaxTest, NanInARowMakesTheRowNan) {
  // A NaN score is a bug upstream; hiding it behind a plausible distribution would be worse.
  IsaScope scope(GetParam());
  for (i64 cols : {4, 17, 64}) {
    auto in = random_vector(static_cast<std::size_t>(cols), 41);
    in[static_cast<std::size_t>(cols / 2)] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> out(static_cast<std::size_t>(cols));
    masked_softmax(1, 1, cols, in.data(), cols, out.data(), cols, 1.0f);
    for (i64 k = 0; k < cols; ++k) EXPECT_TRUE(std::isnan(out[static_cast<std::size_t>(k)])) << "cols=" << cols << " k=" << k;
  }
}

TEST_P(SoftmaxTest, HugeCausalOffsetsShowEveryKeyOrNone) {
  IsaScope scope(GetParam());
  const i64 rows = 3, cols = 5;
  const auto in = random_vector(static_cast<std::size_t>(rows * cols), 42);
  std::vector<float> out(in.size());
  SoftmaxMask m;
  m.causal = true;
  m.causal_offset = std::numeric_limits<i64>::max();
  masked_softmax(1, rows, cols, in.data(), cols, out.data(), cols, 1.0f, m);
  const auto want = ref_masked_softmax(1, rows, cols, in.data(), cols, 1.0f, SoftmaxMask{});
  expect_matches(1, rows, cols, out, cols, want, "offset INT64_MAX = no causal limit");
  m.causal_offset = std::numeric_limits<i64>::min();
  masked_softmax(1, rows, cols, in.data(), cols, out.data(), cols, 1.0f, m);
  for (float v : out) EXPECT_EQ(v, 0.0f) << "offset INT64_MIN hides every key";
}

INSTANTIATE_TEST_SUITE_P(AllIsas, SoftmaxTest, ::testing::ValuesIn(test_isas()), isa_param_name);

// Bad arguments throw engine::Error whose message names the argument.
TEST(SoftmaxErrors, BadArgumentsNameTheProblem) {
  std::vector<float> in(64, 0.0f), out(64, 0.0f);
  expect_error([&] { masked_softmax(1, 0, 4, in.data(), 4, out.data(), 4, 1.0f); }, "rows=0");
  expect_error([&] { masked_softmax(0, 1, 4, in.data(), 4, out.data(), 4, 1.0f); }, "batch=0");
  expect_error([&] { masked_softmax(1, 1, 0, in.data(), 4, out.data(), 4, 1.0f); }, "cols=0");
  expect_error([&] { masked_softmax(1, 2, 4, in.data(), 3, out.data(), 4, 1.0f); }, "ld_in=3");
  expect_error([&] { masked_softmax(1, 2, 4, in.data(), 4, out.data(), 3, 1.0f); }, "ld_out=3");
  expect_error([&] { masked_softmax(1, 1, 4, nullptr, 4, out.data(), 4, 1.0f); }, "input");
  expect_error([&] { masked_softmax(1, 1, 4, in.data(), 4, nullptr, 4, 1.0f); }, "output");
  expect_error([&] { masked_softmax(1, 1, 4, in.data(), 4, out.data(), 4, std::numeric_limits<float>::quiet_NaN()); },
               "scale");
  expect_error([&] { masked_softmax(1, 1, 4, in.data(), 4, out.data(), 4, kInf); }, "scale");
  const std::vector<std::int32_t> too_long = {4, 5};
  SoftmaxMask m;
  m.valid_lengths = too_long.data();
  expect_error([&] { masked_softmax(2, 1, 4, in.data(), 4, out.data(), 4, 1.0f, m); }, "valid_lengths[1]");
  const std::vector<std::int32_t> negative = {-1};
  m.valid_lengths = negative.data();
  expect_error([&] { masked_softmax(1, 1, 4, in.data(), 4, out.data(), 4, 1.0f, m); }, "valid_lengths[0]");
}

}  // namespace
}  // namespace engine::test
