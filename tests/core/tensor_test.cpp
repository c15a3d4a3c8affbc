// TensorView: strides, transposes and head splits done without moving data, and argument errors.
#include "engine/tensor.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "engine/error.hpp"

namespace {

using engine::TensorView;

std::vector<float> iota_buffer(std::size_t n) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), 0.0f);
  return v;
}

TEST(TensorViewTest, ContiguousShapeAndStrides) {
  std::vector<float> buf = iota_buffer(2 * 3 * 4 * 5);
  const TensorView t(buf.data(), {2, 3, 4, 5});
  EXPECT_EQ(t.rank(), 4);
  EXPECT_EQ(t.data(), buf.data());
  EXPECT_EQ(t.numel(), 120);
  EXPECT_EQ(t.dim(0), 2);
  EXPECT_EQ(t.dim(3), 5);
  EXPECT_EQ(t.stride(0), 60);
  EXPECT_EQ(t.stride(1), 20);
  EXPECT_EQ(t.stride(2), 5);
  EXPECT_EQ(t.stride(3), 1);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.shape_string(), "[2, 3, 4, 5]");
  EXPECT_EQ(&t.at({1, 2, 3, 4}), buf.data() + 119);
  EXPECT_EQ(t.at({1, 0, 2, 1}), 60.0f + 10.0f + 1.0f);
  t.at({0, 1, 0, 0}) = -7.0f;  // a view writes through to the buffer
  EXPECT_EQ(buf[20], -7.0f);

  const TensorView v(buf.data(), {7});
  EXPECT_EQ(v.shape_string(), "[7]");
  EXPECT_EQ(v.stride(0), 1);
  EXPECT_EQ(TensorView().numel(), 0);
  EXPECT_EQ(TensorView().rank(), 0);
}

TEST(TensorViewTest, ExplicitStrides) {
  std::vector<float> buf = iota_buffer(40);
  // Every other column of a [4, 10] matrix: [4, 5] with strides {10, 2}.
  const TensorView t(buf.data(), {4, 5}, {10, 2});
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.at({3, 4}), 38.0f);
  EXPECT_EQ(t.at({1, 2}), 14.0f);
  // A padded row stride ([4, 5] inside rows of 10) is not contiguous either.
  EXPECT_FALSE(TensorView(buf.data(), {4, 5}, {10, 1}).is_contiguous());
  EXPECT_TRUE(TensorView(buf.data(), {4, 10}, {10, 1}).is_contiguous());
  // Size-1 dimensions may have any stride.
  EXPECT_TRUE(TensorView(buf.data(), {1, 10}, {999, 1}).is_contiguous());
  EXPECT_THROW(TensorView(buf.data(), {4, 5}, {1}), engine::Error);
}

TEST(TensorViewTest, TransposedSwapsShapeAndStrides) {
  std::vector<float> buf = iota_buffer(6);
  const TensorView m(buf.data(), {2, 3});
  const TensorView t = m.transposed(0, 1);
  EXPECT_EQ(t.data(), buf.data());
  EXPECT_EQ(t.shape_string(), "[3, 2]");
  EXPECT_EQ(t.stride(0), 1);
  EXPECT_EQ(t.stride(1), 3);
  EXPECT_FALSE(t.is_contiguous());
  for (std::int64_t i = 0; i < 2; ++i)
    for (std::int64_t j = 0; j < 3; ++j) EXPECT_EQ(&t.at({j, i}), &m.at({i, j}));
  // Transposing back restores the original view.
  const TensorView back = t.transposed(1, 0);
  EXPECT_TRUE(back.is_contiguous());
  EXPECT_EQ(back.shape_string(), "[2, 3]");
  EXPECT_EQ(back.at({1, 2}), 5.0f);
  // Swapping an axis with itself is the identity.
  EXPECT_TRUE(m.transposed(1, 1).is_contiguous());
}

// [B, S, d] -> split d into [H, dk] -> [B, S, H, dk] -> transpose(1, 2) -> [B, H, S, dk], no copy:
// element (b, h, s, k) must be the buffer element at b*S*d + s*d + h*dk + k.
TEST(TensorViewTest, SplitHeadsIsAZeroCopyView) {
  constexpr std::int64_t B = 2, S = 5, H = 3, dk = 4, d = H * dk;
  std::vector<float> buf = iota_buffer(static_cast<std::size_t>(B * S * d));
  const TensorView x(buf.data(), {B, S, d});
  const TensorView split = x.split(2, H, dk);
  EXPECT_EQ(split.rank(), 4);
  EXPECT_EQ(split.shape_string(), "[2, 5, 3, 4]");
  EXPECT_TRUE(split.is_contiguous());
  EXPECT_EQ(split.stride(2), dk);
  EXPECT_EQ(split.stride(3), 1);

  const TensorView heads = split.transposed(1, 2);
  EXPECT_EQ(heads.shape_string(), "[2, 3, 5, 4]");
  EXPECT_FALSE(heads.is_contiguous());
  EXPECT_EQ(heads.data(), buf.data());
  EXPECT_EQ(heads.numel(), B * S * d);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t s = 0; s < S; ++s)
        for (std::int64_t k = 0; k < dk; ++k) {
          const std::int64_t flat = b * S * d + s * d + h * dk + k;
          ASSERT_EQ(&heads.at({b, h, s, k}), buf.data() + flat) << b << "," << h << "," << s << "," << k;
          ASSERT_EQ(heads.at({b, h, s, k}), static_cast<float>(flat));
        }
}

TEST(TensorViewTest, SplitOfAMiddleAndOfAStridedAxis) {
  std::vector<float> buf = iota_buffer(6 * 7);
  const TensorView m(buf.data(), {6, 7});
  const TensorView s = m.split(0, 2, 3);  // [2, 3, 7]
  EXPECT_EQ(s.shape_string(), "[2, 3, 7]");
  EXPECT_EQ(s.stride(0), 21);
  EXPECT_EQ(s.stride(1), 7);
  EXPECT_EQ(s.stride(2), 1);
  EXPECT_EQ(&s.at({1, 2, 6}), &m.at({5, 6}));
  // Splitting a transposed (strided) axis keeps addressing the same elements.
  const TensorView t = m.transposed(0, 1);  // [7, 6], strides {1, 7}
  const TensorView ts = t.split(1, 3, 2);   // [7, 3, 2]
  for (std::int64_t i = 0; i < 7; ++i)
    for (std::int64_t a = 0; a < 3; ++a)
      for (std::int64_t b = 0; b < 2; ++b) ASSERT_EQ(&ts.at({i, a, b}), &m.at({a * 2 + b, i}));
}

TEST(TensorViewTest, ErrorsThrowEngineError) {
  std::vector<float> buf = iota_buffer(24);
  const TensorView t(buf.data(), {2, 3, 4});
  // Bad axes.
  EXPECT_THROW(t.dim(3), engine::Error);
  EXPECT_THROW(t.dim(-1), engine::Error);
  EXPECT_THROW(t.stride(5), engine::Error);
  EXPECT_THROW(t.transposed(0, 3), engine::Error);
  EXPECT_THROW(t.transposed(-1, 0), engine::Error);
  EXPECT_THROW(t.split(3, 1, 1), engine::Error);
  // Bad splits.
  EXPECT_THROW(t.split(2, 3, 2), engine::Error);  // 6 != 4
  EXPECT_THROW(t.split(2, 4, 4), engine::Error);
  EXPECT_THROW(t.split(2, -2, -2), engine::Error);  // product matches, but negative dimensions
  EXPECT_THROW(t.split(2, -1, -4), engine::Error);
  EXPECT_THROW(t.split(2, (std::int64_t{1} << 62) + 1, 4), engine::Error);  // product wraps to exactly 4
  const TensorView r4(buf.data(), {1, 2, 3, 4});
  EXPECT_THROW(r4.split(3, 2, 2), engine::Error);  // rank would exceed kMaxRank
  // Out-of-range indices and wrong index counts.
  EXPECT_THROW(t.at({2, 0, 0}), engine::Error);
  EXPECT_THROW(t.at({0, 3, 0}), engine::Error);
  EXPECT_THROW(t.at({0, 0, -1}), engine::Error);
  EXPECT_THROW(t.at({0, 0}), engine::Error);
  EXPECT_THROW(t.at({0, 0, 0, 0}), engine::Error);
  // Bad construction.
  EXPECT_THROW(TensorView(buf.data(), {}), engine::Error);
  EXPECT_THROW(TensorView(buf.data(), {1, 1, 1, 1, 1}), engine::Error);
  EXPECT_THROW(TensorView(buf.data(), {2, -3}), engine::Error);

  // Messages name the problem.
  try {
    t.at({0, 3, 0});
    FAIL() << "no throw";
  } catch (const engine::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[2, 3, 4]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("axis 1"), std::string::npos) << msg;
  }
  try {
    t.split(2, 3, 2);
    FAIL() << "no throw";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 3, 4]"), std::string::npos) << e.what();
  }
}

}  // namespace
