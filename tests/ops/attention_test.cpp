// Scaled dot-product attention against a double-precision reference, both paths, every mask.
//
// Tolerance: |got - ref| <= max(2e-5, 1e-4·|ref|). Inputs are uniform in [-1, 1]; outputs are
// convex combinations of V rows, so the absolute error is what matters: float GEMMs over dk <= 128
// and softmax sums over Sk <= 513 stay well inside 2e-5.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "engine/arena.hpp"
#include "engine/attention.hpp"
#include "engine/error.hpp"
#include "engine/ops.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

using i64 = std::int64_t;

struct Case {
  i64 B, H, Sq, Sk, dk, dv;
  bool causal = false;
  i64 causal_offset = 0;
  bool lengths = false, padding = false, bool_mask = false, float_mask = false;
};

std::string describe(const Case& c) {
  return "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H) + " Sq=" + std::to_string(c.Sq) +
         " Sk=" + std::to_string(c.Sk) + " dk=" + std::to_string(c.dk) + " dv=" + std::to_string(c.dv) +
         (c.causal ? " causal(" + std::to_string(c.causal_offset) + ")" : "") + (c.lengths ? " lengths" : "") +
         (c.padding ? " padding" : "") + (c.bool_mask ? " bool_mask" : "") + (c.float_mask ? " float_mask" : "");
}

// Inputs and masks for one case, contiguous [B, H, S, d].
struct Problem {
  Case c;
  std::vector<float> q, k, v;
  std::vector<std::int32_t> lengths;
  std::unique_ptr<bool[]> padding, bool_mask;
  std::vector<float> float_mask;
  AttentionMask mask;

  explicit Problem(const Case& cs, std::uint32_t seed) : c(cs) {
    q = random_vector(static_cast<std::size_t>(c.B * c.H * c.Sq * c.dk), seed);
    k = random_vector(static_cast<std::size_t>(c.B * c.H * c.Sk * c.dk), seed + 1);
    v = random_vector(static_cast<std::size_t>(c.B * c.H * c.Sk * c.dv), seed + 2);
    mask.causal = c.causal;
    mask.causal_offset = c.causal_offset;
    if (c.lengths) {
      for (i64 b = 0; b < c.B; ++b) lengths.push_back(static_cast<std::int32_t>((b * 7 + c.Sk) % (c.Sk + 1)));
      lengths[0] = static_cast<std::int32_t>(c.Sk);
      if (c.B > 1) lengths[1] = 0;  // a fully padded sequence
      mask.valid_lengths = lengths;
    }
    if (c.padding) {
      padding.reset(new bool[static_cast<std::size_t>(c.B * c.Sk)]);
      for (i64 i = 0; i < c.B * c.Sk; ++i) padding[static_cast<std::size_t>(i)] = (i * 5 + 3) % 7 == 0;
      if (c.B > 2)
        for (i64 j = 0; j < c.Sk; ++j) padding[static_cast<std::size_t>(2 * c.Sk + j)] = true;  // all padded
      mask.key_padding = {padding.get(), static_cast<std::size_t>(c.B * c.Sk)};
    }
    if (c.bool_mask) {
      bool_mask.reset(new bool[static_cast<std::size_t>(c.Sq * c.Sk)]);
      for (i64 i = 0; i < c.Sq * c.Sk; ++i) bool_mask[static_cast<std::size_t>(i)] = (i * 3 + 1) % 5 == 0;
      for (i64 j = 0; j < c.Sk; ++j) bool_mask[static_cast<std::size_t>(j)] = true;  // row 0 sees nothing
      mask.attn_mask = {bool_mask.get(), static_cast<std::size_t>(c.Sq * c.Sk)};
    }
    if (c.float_mask) {
      float_mask = random_vector(static_cast<std::size_t>(c.Sq * c.Sk), seed + 3, -2.0f, 2.0f);
      for (i64 i = 0; i < c.Sq * c.Sk; i += 3) float_mask[static_cast<std::size_t>(i)] = -INFINITY;
      mask.attn_bias = float_mask;
    }
  }

  TensorView view(std::vector<float>& data, i64 S, i64 d) { return TensorView(data.data(), {c.B, c.H, S, d}); }

  // out[b, h, i, :] in double; fully masked rows are zeros.
  std::vector<double> reference() const {
    std::vector<double> out(static_cast<std::size_t>(c.B * c.H * c.Sq * c.dv), 0.0);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.dk));
    std::vector<double> s(static_cast<std::size_t>(c.Sk));
    for (i64 b = 0; b < c.B; ++b)
      for (i64 h = 0; h < c.H; ++h)
        for (i64 i = 0; i < c.Sq; ++i) {
          double mx = -std::numeric_limits<double>::infinity();
          for (i64 j = 0; j < c.Sk; ++j) {
            bool masked = (c.causal && j > i + c.causal_offset) || (c.lengths && j >= lengths[static_cast<std::size_t>(b)]) ||
                          (c.padding && padding[static_cast<std::size_t>(b * c.Sk + j)]) ||
                          (c.bool_mask && bool_mask[static_cast<std::size_t>(i * c.Sk + j)]);
            double t = -std::numeric_limits<double>::infinity();
            if (!masked) {
              t = 0.0;
              for (i64 d = 0; d < c.dk; ++d)
                t += static_cast<double>(q[static_cast<std::size_t>(((b * c.H + h) * c.Sq + i) * c.dk + d)]) *
                     k[static_cast<std::size_t>(((b * c.H + h) * c.Sk + j) * c.dk + d)];
              t *= scale;
              if (c.float_mask) t += float_mask[static_cast<std::size_t>(i * c.Sk + j)];
            }
            s[static_cast<std::size_t>(j)] = t;
            mx = std::max(mx, t);
          }
          if (!(mx > -std::numeric_limits<double>::infinity())) continue;
          double sum = 0.0;
          for (double& t : s) sum += t = std::exp(t - mx);
          for (i64 j = 0; j < c.Sk; ++j)
            for (i64 d = 0; d < c.dv; ++d)
              out[static_cast<std::size_t>(((b * c.H + h) * c.Sq + i) * c.dv + d)] +=
                  s[static_cast<std::size_t>(j)] / sum * v[static_cast<std::size_t>(((b * c.H + h) * c.Sk + j) * c.dv + d)];
        }
    return out;
  }

  std::vector<float> run(AttentionPath path) {
    std::vector<float> out(static_cast<std::size_t>(c.B * c.H * c.Sq * c.dv), std::numeric_limits<float>::quiet_NaN());
    scaled_dot_product_attention(view(q, c.Sq, c.dk), view(k, c.Sk, c.dk), view(v, c.Sk, c.dv),
                                 TensorView(out.data(), {c.B, c.H, c.Sq, c.dv}), mask, 0.0f, path);
    return out;
  }
};

class AttentionTest : public ::testing::TestWithParam<Isa> {
 protected:
  IsaScope scope_{GetParam()};
};

void check_both_paths(const Case& c, std::uint32_t seed) {
  Problem p(c, seed);
  const auto want = p.reference();
  for (AttentionPath path : {AttentionPath::materialized, AttentionPath::fused}) {
    const auto got = p.run(path);
    ASSERT_TRUE(all_close(got.data(), want.data(), want.size(), 2e-5, 1e-4))
        << describe(c) << (path == AttentionPath::fused ? " fused" : " materialized");
  }
}

TEST_P(AttentionTest, ShapesAcrossTileEdges) {
  std::uint32_t seed = 1;
  for (i64 dk : {16, 32, 64, 80, 128})
    for (i64 S : {1, 2, 7, 63, 64, 65}) check_both_paths({2, 3, S, S, dk, dk}, seed++);
  for (i64 Sq : {1, 7, 65})
    for (i64 Sk : {2, 63, 513}) check_both_paths({1, 2, Sq, Sk, 64, 64}, seed++);
  check_both_paths({1, 1, 513, 513, 32, 48}, seed++);  // dv != dk, several key tiles
  // Work items of 128 query rows (up to 256 keys, enough items per thread) and of 64, across
  // both block edges.
  for (i64 Sq : {127, 128, 129, 300})
    for (i64 Sk : {256, 257}) check_both_paths({2, 2, Sq, Sk, 32, 32}, seed++);
}

TEST_P(AttentionTest, EveryMaskCombination) {
  std::uint32_t seed = 100;
  for (int bits = 0; bits < 32; ++bits) {
    Case c{3, 2, 37, 70, 16, 16};
    c.causal = bits & 1;
    c.causal_offset = (bits & 1) ? 33 : 0;  // a query block continuing 33 cached positions
    c.lengths = bits & 2;
    c.padding = bits & 4;
    c.bool_mask = (bits & 8) && !(bits & 16);
    c.float_mask = bits & 16;
    check_both_paths(c, seed++);
  }
}

TEST_P(AttentionTest, CausalSelfAttentionAndOffsets) {
  std::uint32_t seed = 200;
  for (i64 offset : {-5, 0, 3, 600}) {
    Case c{2, 2, 300, 300, 32, 32};
    c.causal = true;
    c.causal_offset = offset;
    check_both_paths(c, seed++);
  }
  Case cache{1, 4, 1, 513, 64, 64};  // one new query after 512 cached keys
  cache.causal = true;
  cache.causal_offset = 512;
  check_both_paths(cache, seed++);
}

TEST_P(AttentionTest, FullyPaddedKeyTilesAreSkippedExactly) {
  // Keys 256..511 (a whole fused key tile) padded in batch 0: skipping the tile must give the
  // same answer as the materialized path and the reference.
  Case c{2, 2, 70, 700, 32, 32};
  c.padding = true;
  Problem p(c, 9);
  for (i64 j = 256; j < 512; ++j) p.padding[static_cast<std::size_t>(j)] = true;
  const auto want = p.reference();
  for (AttentionPath path : {AttentionPath::materialized, AttentionPath::fused}) {
    const auto got = p.run(path);
    ASSERT_TRUE(all_close(got.data(), want.data(), want.size(), 2e-5, 1e-4));
  }
}

TEST_P(AttentionTest, TrailingKeyPaddingIsNeverRead) {
  // Keys after a batch's last unpadded key are not computed at all (W1_b8 pads the last 32 of 128):
  // no trailing padding, 32 keys, all but the first, only the last; with padding inside the kept
  // range too, alone and with a causal mask. NaN in the skipped keys and values proves they are
  // never read; the rest must match the reference.
  std::uint32_t seed = 700;
  for (bool causal : {false, true}) {
    Case c{4, 2, 129, 128, 64, 64};
    c.padding = true;
    c.causal = causal;
    Problem p(c, seed++);
    const i64 kept[4] = {128, 96, 1, 127};
    for (i64 b = 0; b < c.B; ++b) {
      for (i64 j = kept[b]; j < c.Sk; ++j) p.padding[static_cast<std::size_t>(b * c.Sk + j)] = true;
      // The last kept key is a real one (Problem pads all of batch 2 and some keys of the others).
      p.padding[static_cast<std::size_t>(b * c.Sk + kept[b] - 1)] = false;
    }
    const auto want = p.reference();
    for (i64 b = 0; b < c.B; ++b)
      for (i64 h = 0; h < c.H; ++h)
        for (i64 j = kept[b]; j < c.Sk; ++j) {
          p.k[static_cast<std::size_t>(((b * c.H + h) * c.Sk + j) * c.dk)] = std::numeric_limits<float>::quiet_NaN();
          p.v[static_cast<std::size_t>(((b * c.H + h) * c.Sk + j) * c.dv)] = std::numeric_limits<float>::quiet_NaN();
        }
    for (AttentionPath path : {AttentionPath::materialized, AttentionPath::fused}) {
      const auto got = p.run(path);
      ASSERT_TRUE(all_close(got.data(), want.data(), want.size(), 2e-5, 1e-4))
          << describe(c) << (path == AttentionPath::fused ? " fused" : " materialized");
    }
  }
}

TEST_P(AttentionTest, FullyMaskedRowsAreZerosNeverNan) {
  Case c{3, 2, 9, 300, 16, 16};
  c.lengths = true;   // batch 1 has length 0
  c.padding = true;   // batch 2 is all padding
  c.bool_mask = true; // query row 0 sees nothing
  Problem p(c, 7);
  for (AttentionPath path : {AttentionPath::materialized, AttentionPath::fused}) {
    const auto got = p.run(path);
    for (float x : got) ASSERT_FALSE(std::isnan(x));
    for (i64 h = 0; h < c.H; ++h)
      for (i64 i = 0; i < c.Sq; ++i)
        for (i64 d = 0; d < c.dv; ++d) {
          ASSERT_EQ(got[static_cast<std::size_t>(((1 * c.H + h) * c.Sq + i) * c.dv + d)], 0.0f) << "length-0 batch";
          ASSERT_EQ(got[static_cast<std::size_t>(((2 * c.H + h) * c.Sq + i) * c.dv + d)], 0.0f) << "all-padded batch";
          ASSERT_EQ(got[static_cast<std::size_t>(((0 * c.H + h) * c.Sq + 0) * c.dv + d)], 0.0f) << "masked row 0";
        }
  }
}

TEST_P(AttentionTest, ThreadCountGivesBitwiseTheSameResult) {
  ThreadGuard guard;
  for (AttentionPath path : {AttentionPath::materialized, AttentionPath::fused})
    for (Case c : {Case{1, 1, 200, 200, 64, 64, true}, Case{2, 3, 65, 513, 32, 32, false, 0, true, true}}) {
      Problem p(c, 11);
      std::vector<float> first;
      for (int threads : {1, 2, 3, 5}) {
        set_num_threads(threads);
        const auto got = p.run(path);
        if (first.empty()) first = got;
        ASSERT_EQ(0, std::memcmp(first.data(), got.data(), got.size() * sizeof(float)))
            << describe(c) << " threads=" << threads;
      }
    }
}

TEST_P(AttentionTest, SplitHeadViewsNeedNoCopies) {
  // Q, K, V as [B, S, H*dk] activations; heads split with strides, output merged the same way.
  const i64 B = 2, S = 33, H = 3, dk = 16, d = H * dk;
  auto x = random_vector(static_cast<std::size_t>(B * S * 3 * d), 5);  // [B, S, 3d]: q | k | v
  auto heads = [&](float* base) {  // [B, S, d] at row stride 3d -> [B, H, S, dk]
    return TensorView(base, {B, S, d}, {S * 3 * d, 3 * d, 1}).split(2, H, dk).transposed(1, 2);
  };
  std::vector<float> merged(static_cast<std::size_t>(B * S * d));
  const TensorView out = TensorView(merged.data(), {B, S, d}).split(2, H, dk).transposed(1, 2);
  scaled_dot_product_attention(heads(x.data()), heads(x.data() + d), heads(x.data() + 2 * d), out);
  // The same through contiguous copies.
  Problem p({B, H, S, S, dk, dk}, 1);
  for (i64 b = 0; b < B; ++b)
    for (i64 s = 0; s < S; ++s)
      for (i64 h = 0; h < H; ++h)
        for (i64 e = 0; e < dk; ++e) {
          const std::size_t dst = static_cast<std::size_t>(((b * H + h) * S + s) * dk + e);
          const std::size_t src = static_cast<std::size_t>((b * S + s) * 3 * d + h * dk + e);
          p.q[dst] = x[src];
          p.k[dst] = x[src + static_cast<std::size_t>(d)];
          p.v[dst] = x[src + static_cast<std::size_t>(2 * d)];
        }
  const auto want = p.reference();
  for (i64 b = 0; b < B; ++b)
    for (i64 s = 0; s < S; ++s)
      for (i64 h = 0; h < H; ++h)
        for (i64 e = 0; e < dk; ++e) {
          const double w = want[static_cast<std::size_t>(((b * H + h) * S + s) * dk + e)];
          ASSERT_NEAR(merged[static_cast<std::size_t>((b * S + s) * d + h * dk + e)], w, 2e-5);
        }
}

TEST_P(AttentionTest, ScratchFromAnArenaGivesTheSameResultAndIsGivenBack) {
  for (AttentionPath path : {AttentionPath::materialized, AttentionPath::fused}) {
    Case c{2, 3, 70, 300, 32, 32, true};
    Problem p(c, 13);
    const auto without = p.run(path);
    const TensorView q = p.view(p.q, c.Sq, c.dk), k = p.view(p.k, c.Sk, c.dk), v = p.view(p.v, c.Sk, c.dv);
    const std::size_t bytes = attention_workspace_bytes(q, k, v, path);
    Arena arena(bytes + 64);
    (void)arena.allocate<float>("caller's buffer", 16);  // the op must leave this alone
    const std::size_t used = arena.used();
    std::vector<float> out(without.size());
    scaled_dot_product_attention(q, k, v, TensorView(out.data(), {c.B, c.H, c.Sq, c.dv}), p.mask, 0.0f, path, &arena);
    EXPECT_EQ(0, std::memcmp(out.data(), without.data(), out.size() * sizeof(float)));
    EXPECT_EQ(arena.used(), used) << "scratch given back";
    Arena small(bytes / 2);
    expect_error([&] { scaled_dot_product_attention(q, k, v, TensorView(out.data(), {c.B, c.H, c.Sq, c.dv}), p.mask,
                                                    0.0f, path, &small); },
                 "attention scratch");
  }
  // The fused path's scratch does not grow with the key length.
  std::vector<float> a(64 * 64), b(4096 * 64), b2(8192 * 64);
  const TensorView q(a.data(), {1, 1, 64, 64});
  EXPECT_EQ(attention_workspace_bytes(q, TensorView(b.data(), {1, 1, 4096, 64}), TensorView(b.data(), {1, 1, 4096, 64}),
                                      AttentionPath::fused),
            attention_workspace_bytes(q, TensorView(b2.data(), {1, 1, 8192, 64}),
                                      TensorView(b2.data(), {1, 1, 8192, 64}), AttentionPath::fused));
}

INSTANTIATE_TEST_SUITE_P(AllIsas, AttentionTest, ::testing::ValuesIn(test_isas()), isa_param_name);

TEST(AttentionErrors, BadInputNamesTheTensor) {
  std::vector<float> a(2 * 3 * 4 * 8, 0.0f), o(a.size());
  const TensorView q(a.data(), {2, 3, 4, 8}), out(o.data(), {2, 3, 4, 8});
  expect_error([&] { scaled_dot_product_attention(q, TensorView(a.data(), {2, 2, 4, 8}), q, out); }, "k has shape");
  expect_error([&] { scaled_dot_product_attention(q, q, q, TensorView(o.data(), {2, 3, 4, 7})); }, "out has shape");
  expect_error([&] { scaled_dot_product_attention(TensorView(a.data(), {2, 3, 32}), q, q, out); }, "rank 4");
  expect_error([&] { scaled_dot_product_attention(q, q, TensorView(a.data(), {2, 3, 4, 8}, {96, 32, 8, 2}), out); },
               "contiguous");
  std::vector<std::int32_t> lengths{4, 5};
  AttentionMask m;
  m.valid_lengths = lengths;
  expect_error([&] { scaled_dot_product_attention(q, q, q, out, m); }, "valid_lengths[1]");
  std::vector<float> bias(16, 0.0f);
  std::unique_ptr<bool[]> bools(new bool[16]());
  AttentionMask both;
  both.attn_bias = bias;
  both.attn_mask = {bools.get(), 16};
  expect_error([&] { scaled_dot_product_attention(q, q, q, out, both); }, "both as bools");
}

}  // namespace
}  // namespace engine::test
