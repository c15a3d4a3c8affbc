// SGEMM against the double-precision reference, for every instruction set, at every tile edge.
//
// Tolerance: |got - ref| <= max(abs_tol, |ref| * rel_tol) with rel_tol = 2e-6 * sqrt(K) + 1e-6 and
// abs_tol = 4e-6 * sqrt(K): inputs are uniform in [-1, 1], so float rounding of a length-K dot
// product grows like sqrt(K) · eps; GELU adds its own ~1e-6 relative error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "engine/kernels/kernel_table.hpp"
#include "engine/ops.hpp"
#include "engine/ops/gemm_internal.hpp"
#include "engine/ops/gemm_policy.hpp"
#include "reference.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

using i64 = std::int64_t;

struct GemmCase {
  i64 M, N, K;
  Transpose trans = Transpose::no;
  float beta = 0.0f;
  bool bias = false;
  Activation act = Activation::none;
  i64 pad_a = 0, pad_b = 0, pad_c = 0;  // extra elements per row: non-contiguous leading dimensions
  bool packed = false;
  i64 b_offset = -1;  // >= 0: B starts this many floats past a 64-byte boundary (else wherever it lands)
};

std::string describe(const GemmCase& c) {
  return "M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         (c.trans == Transpose::yes ? " B^T" : " B") + " beta=" + std::to_string(static_cast<int>(c.beta)) +
         (c.bias ? " bias" : "") + " act=" + activation_name(c.act) + (c.packed ? " packed" : "") +
         " pads=" + std::to_string(c.pad_a) + "," + std::to_string(c.pad_b) + "," + std::to_string(c.pad_c) +
         (c.b_offset >= 0 ? " B " + std::to_string(c.b_offset) + " floats past a line" : "");
}

// The tolerance of the header comment, for a length-K dot product.
double abs_tol_for(i64 K) { return 4e-6 * std::sqrt(static_cast<double>(K)); }
double rel_tol_for(i64 K) { return 2e-6 * std::sqrt(static_cast<double>(K)) + 1e-6; }

void run_case_once(const GemmCase& c, std::uint32_t seed);

// Every case runs four times: A packed or read in place, B packed or read in place (when it can be).
void run_case(const GemmCase& c, std::uint32_t seed) {
  for (ops::PackAPolicy a_policy : {ops::PackAPolicy::always, ops::PackAPolicy::never})
    for (ops::PackBPolicy b_policy : {ops::PackBPolicy::always, ops::PackBPolicy::never}) {
      ops::set_gemm_pack_a_policy(a_policy);
      ops::set_gemm_pack_b_policy(b_policy);
      SCOPED_TRACE(std::string(a_policy == ops::PackAPolicy::always ? "A packed" : "A in place") +
                   (b_policy == ops::PackBPolicy::always ? ", B packed" : ", B in place where possible"));
      run_case_once(c, seed);
    }
  ops::set_gemm_pack_a_policy(ops::PackAPolicy::automatic);
  ops::set_gemm_pack_b_policy(ops::PackBPolicy::automatic);
}

void run_case_once(const GemmCase& c, std::uint32_t seed) {
  const i64 lda = c.K + c.pad_a;
  const i64 ldb = (c.trans == Transpose::yes ? c.K : c.N) + c.pad_b;
  const i64 ldc = c.N + c.pad_c;
  const i64 b_rows = c.trans == Transpose::yes ? c.N : c.K;
  const auto A = random_vector(static_cast<std::size_t>(c.M * lda), seed);
  const auto B_values = random_vector(static_cast<std::size_t>(b_rows * ldb), seed + 1);
  // B_values, or a copy of it placed c.b_offset floats past a 64-byte boundary.
  std::vector<float> B_placed(c.b_offset >= 0 ? B_values.size() + 16 + static_cast<std::size_t>(c.b_offset) : 0);
  const float* B = B_values.data();
  if (c.b_offset >= 0) {
    void* start = B_placed.data();
    std::size_t space = B_placed.size() * sizeof(float);
    float* line = static_cast<float*>(std::align(64, sizeof(float), start, space));
    std::memcpy(line + c.b_offset, B_values.data(), B_values.size() * sizeof(float));
    B = line + c.b_offset;
  }
  const auto bias = random_vector(static_cast<std::size_t>(c.N), seed + 2);
  auto C = random_vector(static_cast<std::size_t>(c.M * ldc), seed + 3);
  const std::vector<float> C0 = C;
  const float* bias_ptr = c.bias ? bias.data() : nullptr;
  const auto want = ref_gemm(c.M, c.N, c.K, A.data(), lda, B, ldb, c.trans, C0.data(), ldc, c.beta, bias_ptr, c.act);

  const GemmEpilogue ep{bias_ptr, c.act};
  if (c.packed) {
    const PackedMatrix P = pack_matrix(c.K, c.N, B, ldb, c.trans);
    gemm_packed(c.M, A.data(), lda, P, C.data(), ldc, c.beta, ep);
  } else {
    gemm(c.M, c.N, c.K, A.data(), lda, B, ldb, c.trans, C.data(), ldc, c.beta, ep);
  }
  const double abs_tol = abs_tol_for(c.K);
  const double rel_tol = rel_tol_for(c.K);
  std::vector<float> got(static_cast<std::size_t>(c.M * c.N));
  for (i64 i = 0; i < c.M; ++i)
    for (i64 j = 0; j < c.N; ++j) got[static_cast<std::size_t>(i * c.N + j)] = C[static_cast<std::size_t>(i * ldc + j)];
  ASSERT_TRUE(all_close(got.data(), want.data(), got.size(), abs_tol, rel_tol)) << describe(c);
  // The padding between rows of C must be untouched.
  for (i64 i = 0; i < c.M; ++i)
    for (i64 j = c.N; j < ldc; ++j)
      ASSERT_EQ(C[static_cast<std::size_t>(i * ldc + j)], C0[static_cast<std::size_t>(i * ldc + j)])
          << "padding of C written at row " << i << " col " << j << ", " << describe(c);
}

class GemmTest : public ::testing::TestWithParam<Isa> {
 protected:
  IsaScope scope_{GetParam()};
  const kernels::GemmBlocking& blk() const { return kernels::table_for(GetParam()).gemm; }
};

// Sizes just below, at and above a block size b, plus 1.
std::vector<i64> edges(i64 b) {
  std::vector<i64> v{1};
  for (i64 d : {b - 1, b, b + 1})
    if (d >= 1) v.push_back(d);
  return v;
}

TEST_P(GemmTest, RegisterTileEdges) {
  // Every M around MR (and 2·MR) against every N around NR (and 2·NR), both op(B) forms; MR + 2
  // and 2·MR + 2 end, with A in place, in two tiles of MR / 2 + 1 rows.
  std::uint32_t seed = 1;
  std::vector<i64> ms = edges(blk().mr), ns = edges(blk().nr);
  for (i64 m : {blk().mr + 2, 2 * blk().mr + 1, 2 * blk().mr + 2}) ms.push_back(m);
  ns.push_back(2 * blk().nr - 1);
  for (i64 m : ms)
    for (i64 n : ns)
      for (Transpose t : {Transpose::no, Transpose::yes}) run_case({m, n, 13, t}, seed++);
}

TEST_P(GemmTest, RightEdgeOfEveryVectorWidth) {
  // The last, partial NR panel computes ceil(cols / W) vectors: straight into C when cols fills
  // whole vectors, else through a temporary. Every width from 1 to NR - 1 columns past a full
  // panel, C padded (a store past N would show), both forms of B, accumulating, bias, activation,
  // plain and prepacked; and a bottom edge of fewer than MR rows.
  std::uint32_t seed = 150;
  const i64 w = kernels::table_for(GetParam()).vector_floats, nr = blk().nr;
  for (i64 cols = 1; cols < nr; ++cols) {
    if (cols > 3 && cols % w != 0 && cols % w != 1 && cols % w != w - 1) continue;  // a sample around each width
    const Transpose t = cols % 2 ? Transpose::yes : Transpose::no;
    run_case({2 * blk().mr + 1, nr + cols, 19, t, 1.0f, true, Activation::relu, 0, 0, 5}, seed++);
    run_case({blk().mr - 1, nr + cols, 33, t, 0.0f, false, Activation::none, 0, 0, 3, true}, seed++);
  }
}

TEST_P(GemmTest, KBlockEdges) {
  std::uint32_t seed = 100;
  for (i64 k : edges(blk().kc)) {
    run_case({blk().mr + 1, blk().nr + 3, k, Transpose::no}, seed++);
    run_case({blk().mr + 1, blk().nr + 3, k, Transpose::yes, 1.0f}, seed++);
  }
  run_case({7, 19, 2 * blk().kc + 1, Transpose::no, 1.0f, true, Activation::relu}, seed++);
}

TEST_P(GemmTest, CacheBlockEdges) {
  std::uint32_t seed = 200;
  // Rows: around an MC block at full depth (two K blocks), and around the taller block of a
  // shallow product (rows_per_block).
  for (i64 k : {i64{blk().kc} + 3, i64{37}})
    for (i64 m : edges(kernels::rows_per_block(blk(), k)))
      run_case({m, 2 * blk().nr + 5, k, Transpose::no, 0.0f, true}, seed++);
  for (i64 n : edges(blk().nc)) run_case({blk().mr + 2, n, 29, Transpose::yes}, seed++);
}

// A shallow product takes more rows per block, so that its block of A holds as many floats as an
// MC x KC one, in whole tiles.
TEST_P(GemmTest, RowsPerBlockKeepTheBytesOfAFullBlock) {
  const kernels::GemmBlocking& b = blk();
  for (i64 k : {i64{1}, i64{37}, i64{64}, i64{b.kc} - 1, i64{b.kc}, i64{b.kc} + 1, 4 * i64{b.kc}}) {
    const i64 rows = kernels::rows_per_block(b, k);
    SCOPED_TRACE("K=" + std::to_string(k) + " rows=" + std::to_string(rows));
    EXPECT_EQ(rows % b.mr, 0);
    if (k >= b.kc) {
      EXPECT_EQ(rows, b.mc);
    } else {
      EXPECT_LE(rows * k, i64{b.mc} * b.kc);
      EXPECT_GT((rows + b.mr) * k, i64{b.mc} * b.kc);
    }
  }
}

TEST_P(GemmTest, PrimesAndOddStrides) {
  std::uint32_t seed = 300;
  for (i64 m : {2, 3, 5, 11, 31, 97})
    for (i64 n : {3, 17, 53})
      run_case({m, n, 41, m % 2 ? Transpose::yes : Transpose::no, 0.0f, false, Activation::none, 3, 5, 7}, seed++);
  run_case({127, 131, 257, Transpose::no, 1.0f, true, Activation::gelu_erf, 1, 2, 3}, seed++);
}

TEST_P(GemmTest, EveryEpilogueAndBeta) {
  std::uint32_t seed = 400;
  for (Activation act : {Activation::none, Activation::relu, Activation::gelu_erf, Activation::gelu_tanh})
    for (float beta : {0.0f, 1.0f})
      for (bool bias : {false, true})
        for (Transpose t : {Transpose::no, Transpose::yes})
          run_case({blk().mr + 5, blk().nr + 7, 70, t, beta, bias, act}, seed++);
}

TEST_P(GemmTest, BReadInPlaceAndCopiedPanelByPanel) {
  // B read in place with K x N >= 2^17 is copied panel by panel, in K blocks of 768: the first
  // panel by its first tile, every later one by the full tiles of the panel before, spread over
  // their k steps, when there are any (else by its own first tile again), and read from the copy
  // by the rest. One tile, several, the bottom edge, two MC blocks, every epilogue, a padded ldb,
  // one K block and a bit, two and three blocks; one full tile to share a panel's copy (12 rows),
  // K blocks that are no whole number of four k steps (770 = 768 + 2, 1538), and the last rows
  // split in two.
  std::uint32_t seed = 450;
  run_case({7, 256, 512, Transpose::no}, seed++);
  run_case({6, 256, 512, Transpose::no, 1.0f}, seed++);
  run_case({128, 320, 768, Transpose::no, 1.0f, true, Activation::relu, 0, 16, 0}, seed++);
  run_case({200, 192, 700, Transpose::no, 0.0f, true, Activation::gelu_erf, 3, 0, 5}, seed++);
  run_case({2 * blk().mc + 7, 256, 600, Transpose::no, 1.0f, false, Activation::none}, seed++);
  run_case({13, 256, 769, Transpose::no, 0.0f, true, Activation::gelu_tanh}, seed++);
  run_case({20, 128, 1536, Transpose::no, 1.0f, true, Activation::relu, 0, 3, 0}, seed++);
  run_case({7, 192, 2311, Transpose::no, 0.0f, false, Activation::none}, seed++);
  run_case({12, 256, 512, Transpose::no}, seed++);
  run_case({19, 192, 770, Transpose::no, 1.0f, true, Activation::relu, 0, 5, 0}, seed++);
  run_case({2 * blk().mr + 2, 256, 1538, Transpose::no, 0.0f, true, Activation::gelu_erf}, seed++);
}

TEST_P(GemmTest, BAtAnyAlignment) {
  // B read in place starting on a 64-byte boundary or 1, 4 or 15 floats past one, where every
  // vector load straddles two lines: one contiguous panel, two panels, narrow B one K block deep
  // (K = 1000), a padded ldb, one tile (no panel copy) against several, panels copied by their
  // first tile (K x N >= 2^17), and 512 rows (B packed as the first rows compute).
  std::uint32_t seed = 460;
  for (i64 offset : {0, 1, 4, 15}) {
    run_case({3 * blk().mr + 1, blk().nr, 128, Transpose::no, 0.0f, false, Activation::none, 0, 0, 0, false, offset},
             seed++);
    run_case({2 * blk().mr, 2 * blk().nr, 100, Transpose::no, 1.0f, true, Activation::relu, 0, 0, 0, false, offset},
             seed++);
    run_case({4 * blk().mr + 5, 64, 1000, Transpose::no, 0.0f, true, Activation::none, 0, 0, 3, false, offset},
             seed++);
    run_case({blk().mr + 1, blk().nr, 77, Transpose::no, 1.0f, false, Activation::none, 0, 1, 0, false, offset},
             seed++);
    run_case({blk().mr, 2 * blk().nr, 50, Transpose::no, 0.0f, false, Activation::none, 0, 0, 0, false, offset},
             seed++);
    run_case({2 * blk().mr + 1, 256, 512, Transpose::no, 1.0f, true, Activation::relu, 0, 0, 0, false, offset},
             seed++);
    run_case({512, 256, 40, Transpose::no, 0.0f, false, Activation::none, 0, 0, 0, false, offset}, seed++);
  }
}

TEST_P(GemmTest, NarrowBIsOneKBlockUpTo1024Deep) {
  // N <= 64 with K <= 1024 runs as one K block (P·V in attention); K = 1025 goes back to KC blocks.
  std::uint32_t seed = 470;
  for (i64 k : {i64{blk().kc} + 1, i64{700}, i64{1024}, i64{1025}})
    for (Transpose t : {Transpose::no, Transpose::yes}) {
      run_case({blk().mr * 3 + 1, 64, k, t, 1.0f, true, Activation::relu}, seed++);
      run_case({2 * blk().mc + 5, 37, k, t, 0.0f, false, Activation::none, 0, 3, 2}, seed++);
    }
}

TEST_P(GemmTest, PackedWeightsMatchUnpacked) {
  std::uint32_t seed = 500;
  // A prepacked weight is packed in K blocks of 768 rows, one block when K <= 768: both sides of
  // the ISA's own KC and of one, two and three blocks.
  for (Transpose t : {Transpose::no, Transpose::yes})
    for (i64 k : {i64{1}, i64{64}, i64{blk().kc} + 1, i64{767}, i64{768}, i64{769}, 2 * i64{blk().kc} + 3,
                  i64{1535}, i64{1536}, i64{1537}, i64{2311}}) {
      run_case({29, 2 * blk().nr + 1, k, t, 0.0f, true, Activation::gelu_erf, 0, 2, 0, true}, seed++);
      run_case({1, 96, k, t, 1.0f, false, Activation::relu, 0, 0, 4, true}, seed++);
    }
  // A plain product with >= 512 rows packs all of op(B) the same way: two K blocks and a bit.
  run_case({513, 4 * blk().nr + 1, 1537, Transpose::yes, 1.0f, true, Activation::relu}, seed++);
}

TEST_P(GemmTest, ProductsOnTheFirstColumnsOfACallersPacking) {
  // Attention packs a head's keys once (pack_b_on_this_thread) and multiplies each query block by
  // the first N columns it needs (gemm_packed_columns): every N up to the packed width, K across
  // the K block, both forms of B, against the reference on those columns.
  std::uint32_t seed = 600;
  for (Transpose t : {Transpose::no, Transpose::yes})
    for (i64 K : {1, 64, blk().kc + 3}) {
      const i64 nr = blk().nr, packed_n = 2 * nr + 5, M = blk().mr + 2, lda = K + 1;
      const i64 ldb = (t == Transpose::yes ? K : packed_n) + 3;
      const auto A = random_vector(static_cast<std::size_t>(M * lda), seed++);
      const auto B = random_vector(static_cast<std::size_t>((t == Transpose::yes ? packed_n : K) * ldb), seed++);
      std::vector<float> packed(static_cast<std::size_t>(ops::packed_b_floats(K, packed_n)));
      ops::pack_b_on_this_thread(K, packed_n, B.data(), ldb, t, packed.data());
      for (i64 N : {i64{1}, nr - 1, nr, nr + 1, packed_n}) {
        const auto want = ref_gemm(M, N, K, A.data(), lda, B.data(), ldb, t, nullptr, N, 0.0f, nullptr, Activation::none);
        std::vector<float> C(static_cast<std::size_t>(M * N), -7.0f);
        ops::gemm_packed_columns(M, N, K, A.data(), lda, packed.data(), packed_n, C.data(), N);
        ASSERT_TRUE(all_close(C.data(), want.data(), want.size(), abs_tol_for(K), rel_tol_for(K)))
            << "K=" << K << " N=" << N << (t == Transpose::yes ? " B^T" : " B");
      }
      std::vector<float> C(static_cast<std::size_t>(M * (packed_n + 1)));
      expect_error([&] { ops::gemm_packed_columns(M, packed_n + 1, K, A.data(), lda, packed.data(), packed_n, C.data(),
                                                  packed_n + 1); },
                   "exceeds the packed width");
    }
}

TEST_P(GemmTest, ResultsAreBitwiseIndependentOfThreadCount) {
  const i64 M = 3 * blk().mc + 7, N = 3 * blk().nr + 5, K = blk().kc + 9;
  const auto A = random_vector(static_cast<std::size_t>(M * K), 7);
  const auto B = random_vector(static_cast<std::size_t>(N * K), 8);
  const auto bias = random_vector(static_cast<std::size_t>(N), 9);
  std::vector<float> first;
  for (int threads : {1, 2, 3, 4}) {
    set_num_threads(threads);
    std::vector<float> C(static_cast<std::size_t>(M * N));
    gemm(M, N, K, A.data(), K, B.data(), K, Transpose::yes, C.data(), N, 0.0f, {bias.data(), Activation::gelu_erf});
    if (first.empty()) first = C;
    ASSERT_EQ(0, std::memcmp(first.data(), C.data(), C.size() * sizeof(float))) << threads << " threads differ from 1";
  }
  set_num_threads(0);
}

TEST_P(GemmTest, ColumnSplitsWalkTheirRowsOutOfPhase) {
  // Threads that split C by columns walk their rows out of phase: every other column range starts
  // halfway down each block of rows and wraps around, where it walks the block row by row. 2-4
  // threads against the reference: small packed blocks walked tile row by tile row (K = 64,
  // N = 128), ragged bottoms (M = 131, 134: the last MR + 2 rows split in two), one panel per
  // thread too deep for that walk (K = 300, N = 2·NR: the column walk) and a right edge as one
  // thread's only panel (N = NR + 5), blocks of several panels (N = 4·NR + 5, which start at row
  // 0), B transposed (packed) and not (read in place: no phase), prepacked, C's rows off a cache
  // line (padded ldc), A packed and in place.
  std::uint32_t seed = 800;
  for (int threads : {2, 3, 4}) {
    set_num_threads(threads);
    for (i64 M : {i64{128}, i64{131}, i64{134}})
      for (Transpose t : {Transpose::no, Transpose::yes})
        run_case({M, 128, 64, t, 0.0f, false, Activation::none, 0, 0, 3}, seed++);
    run_case({128, 128, 64, Transpose::yes, 1.0f, true, Activation::relu, 0, 0, 0, true}, seed++);
    run_case({128, 2 * blk().nr, 300, Transpose::yes, 1.0f, true, Activation::gelu_erf, 0, 0, 3}, seed++);
    run_case({131, blk().nr + 5, 300, Transpose::yes, 0.0f, true, Activation::relu, 0, 0, 1}, seed++);
    run_case({100, 4 * blk().nr + 5, 300, Transpose::yes, 1.0f, true, Activation::gelu_erf, 0, 0, 1}, seed++);
    run_case({100, 4 * blk().nr + 5, 300, Transpose::no, 0.0f, false, Activation::none, 0, 0, 0, true}, seed++);
  }
  set_num_threads(0);
}

// B that is one contiguous panel (N = ldb = NR) already has the packed layout and is read in
// place at any M under the automatic policy (run_case forces packing on and off instead): every
// epilogue, beta 1, one and two K blocks, 1-3 threads against the reference, bitwise equal; a
// padded ldb (packed as usual) beside it.
TEST_P(GemmTest, OneContiguousPanelOfBIsReadAsItIs) {
  std::uint32_t seed = 900;
  const i64 N = blk().nr;
  for (i64 M : {i64{300}, i64{1031}})
    for (i64 K : {i64{200}, i64{1100}})
      for (i64 pad_b : {i64{0}, i64{3}}) {
        const i64 ldb = N + pad_b;
        const auto A = random_vector(static_cast<std::size_t>(M * K), seed++);
        const auto B = random_vector(static_cast<std::size_t>(K * ldb), seed++);
        const auto bias = random_vector(static_cast<std::size_t>(N), seed++);
        const auto C0 = random_vector(static_cast<std::size_t>(M * N), seed++);
        const auto want = ref_gemm(M, N, K, A.data(), K, B.data(), ldb, Transpose::no, C0.data(), N, 1.0f, bias.data(),
                                   Activation::relu);
        const double abs_tol = abs_tol_for(K);
        const double rel_tol = rel_tol_for(K);
        std::vector<float> first;
        for (int threads : {1, 2, 3}) {
          set_num_threads(threads);
          std::vector<float> C = C0;
          gemm(M, N, K, A.data(), K, B.data(), ldb, Transpose::no, C.data(), N, 1.0f, {bias.data(), Activation::relu});
          EXPECT_TRUE(all_close(C.data(), want.data(), want.size(), abs_tol, rel_tol))
              << "M=" << M << " K=" << K << " ldb=" << ldb << ", " << threads << " threads";
          if (first.empty()) first = C;
          EXPECT_EQ(0, std::memcmp(first.data(), C.data(), C.size() * sizeof(float)))
              << threads << " threads differ from 1, M=" << M << " K=" << K << " ldb=" << ldb;
        }
        set_num_threads(0);
      }
}

TEST_P(GemmTest, ManyRowsPackBOnceForTheWholeCall) {
  // With >= 512 rows all of B is packed once per call. Not transposed, each thread's first block
  // of rows copies B's panels into the packed buffer as it reads them in place, and the later
  // blocks read the packing; transposed, each thread packs its own columns' panels before its
  // tiles start, inside the region that computes. With threads sharing panels (a row split: 3
  // threads on 4 panels, 4 on 6) B is packed up front instead. One, two and three K blocks, more
  // than one NC block per thread, every epilogue, beta 1, a padded ldb, A packed and in place;
  // 1-4 threads, bitwise equal.
  std::uint32_t seed = 700;
  struct Shape {
    i64 M, N, K, pad_b;
    float beta;
    Activation act;
  };
  for (const Shape& s : {Shape{517, 4 * blk().nr, 70, 0, 0.0f, Activation::none},
                         Shape{600, 6 * blk().nr, 769, 3, 1.0f, Activation::relu},
                         Shape{512, 4 * blk().nr, 1537, 0, 0.0f, Activation::gelu_erf},
                         Shape{530, blk().nc + 2 * blk().nr, 90, 0, 1.0f, Activation::none}})
    for (Transpose t : {Transpose::no, Transpose::yes}) {
      const bool trans = t == Transpose::yes;
      const i64 ldb = (trans ? s.K : s.N) + s.pad_b;
      const auto A = random_vector(static_cast<std::size_t>(s.M * s.K), seed++);
      const auto B = random_vector(static_cast<std::size_t>((trans ? s.N : s.K) * ldb), seed++);
      const auto bias = random_vector(static_cast<std::size_t>(s.N), seed++);
      const auto C0 = random_vector(static_cast<std::size_t>(s.M * s.N), seed++);
      const auto want =
          ref_gemm(s.M, s.N, s.K, A.data(), s.K, B.data(), ldb, t, C0.data(), s.N, s.beta, bias.data(), s.act);
      const double abs_tol = abs_tol_for(s.K);
      const double rel_tol = rel_tol_for(s.K);
      std::vector<float> first;
      for (ops::PackAPolicy a_policy : {ops::PackAPolicy::always, ops::PackAPolicy::never}) {
        ops::set_gemm_pack_a_policy(a_policy);
        for (int threads : {1, 2, 3, 4}) {
          set_num_threads(threads);
          std::vector<float> C = C0;
          gemm(s.M, s.N, s.K, A.data(), s.K, B.data(), ldb, t, C.data(), s.N, s.beta, {bias.data(), s.act});
          EXPECT_TRUE(all_close(C.data(), want.data(), want.size(), abs_tol, rel_tol))
              << "M=" << s.M << " N=" << s.N << " K=" << s.K << (trans ? " B^T" : " B") << ", " << threads
              << " threads";
          if (first.empty()) first = C;
          EXPECT_EQ(0, std::memcmp(first.data(), C.data(), C.size() * sizeof(float)))
              << threads << " threads differ from 1 thread with A packed, M=" << s.M << " N=" << s.N << " K=" << s.K;
        }
      }
      ops::set_gemm_pack_a_policy(ops::PackAPolicy::automatic);
      set_num_threads(0);
    }
}

TEST_P(GemmTest, ManyRowsAndPackingFromInsideAParallelRegionComputeEverything) {
  // Products with >= 512 rows and >= 4 B panels pack all of B (up front here: N is not whole
  // panels), and pack_matrix packs with a work-sharing loop; called from one thread of somebody
  // else's parallel region both must do all their work on that thread (a work-sharing loop there
  // would bind to the caller's team). The same with whole panels, B packed as the rows compute.
  const i64 M = 517, K = 70;
  for (const i64 N : {4 * i64{blk().nr} + 3, 4 * i64{blk().nr}}) {
    SCOPED_TRACE("N=" + std::to_string(N));
    const auto A = random_vector(static_cast<std::size_t>(M * K), 31);
    const auto B = random_vector(static_cast<std::size_t>(K * N), 32);
    const auto want = ref_gemm(M, N, K, A.data(), K, B.data(), N, Transpose::no, nullptr, N, 0.0f, nullptr,
                               Activation::none);
    std::vector<std::vector<float>> plain(3, std::vector<float>(static_cast<std::size_t>(M * N), -7.0f));
    std::vector<std::vector<float>> packed = plain;
#pragma omp parallel for num_threads(2)
    for (int t = 0; t < 3; ++t) {
      gemm(M, N, K, A.data(), K, B.data(), N, Transpose::no, plain[t].data(), N);
      const PackedMatrix P = pack_matrix(K, N, B.data(), N, Transpose::no);
      gemm_packed(M, A.data(), K, P, packed[t].data(), N);
    }
    for (int t = 0; t < 3; ++t) {
      EXPECT_TRUE(all_close(plain[t].data(), want.data(), want.size(), 1e-4, 1e-4)) << "gemm, call " << t;
      EXPECT_TRUE(all_close(packed[t].data(), want.data(), want.size(), 1e-4, 1e-4)) << "pack_matrix, call " << t;
    }
    // And at the top level, on every thread: the same answer.
    std::vector<float> top(static_cast<std::size_t>(M * N));
    gemm(M, N, K, A.data(), K, B.data(), N, Transpose::no, top.data(), N);
    EXPECT_TRUE(all_close(top.data(), want.data(), want.size(), 1e-4, 1e-4));
  }
}

TEST_P(GemmTest, CalledFromInsideAParallelRegionComputesEverything) {
  // Attention runs per-head GEMMs from its own parallel loop; each call must do all of its work.
  const i64 M = 2 * blk().mc + 5, N = 3 * blk().nr + 1, K = 77;
  const auto A = random_vector(static_cast<std::size_t>(M * K), 21);
  const auto B = random_vector(static_cast<std::size_t>(K * N), 22);
  const auto want = ref_gemm(M, N, K, A.data(), K, B.data(), N, Transpose::no, nullptr, N, 0.0f, nullptr,
                             Activation::none);
  std::vector<std::vector<float>> C(4, std::vector<float>(static_cast<std::size_t>(M * N), -7.0f));
#pragma omp parallel for num_threads(2)
  for (int t = 0; t < 4; ++t) gemm(M, N, K, A.data(), K, B.data(), N, Transpose::no, C[t].data(), N);
  for (int t = 0; t < 4; ++t) EXPECT_TRUE(all_close(C[t].data(), want.data(), want.size(), 1e-4, 1e-4)) << "call " << t;
}

INSTANTIATE_TEST_SUITE_P(AllIsas, GemmTest, ::testing::ValuesIn(test_isas()), isa_param_name);

TEST(GemmErrors, BadArgumentsNameTheProblem) {
  std::vector<float> a(64, 1.0f), b(64, 1.0f), c(64, 0.0f);
  expect_error([&] { gemm(0, 4, 4, a.data(), 4, b.data(), 4, Transpose::no, c.data(), 4); }, "M=0");
  expect_error([&] { gemm(4, 4, 4, a.data(), 3, b.data(), 4, Transpose::no, c.data(), 4); }, "lda");
  expect_error([&] { gemm(4, 4, 4, a.data(), 4, b.data(), 3, Transpose::yes, c.data(), 4); }, "ldb");
  expect_error([&] { gemm(4, 4, 4, a.data(), 4, b.data(), 4, Transpose::no, c.data(), 2); }, "ldc");
  expect_error([&] { gemm(4, 4, 4, a.data(), 4, b.data(), 4, Transpose::no, c.data(), 4, 0.5f); }, "beta");
  expect_error([&] { gemm(4, 4, 4, nullptr, 4, b.data(), 4, Transpose::no, c.data(), 4); }, "A is null");
  expect_error([&] { (void)pack_matrix(0, 4, b.data(), 4, Transpose::no); }, "K and N");
  expect_error([&] { gemm_packed(4, a.data(), 4, PackedMatrix{}, c.data(), 4); }, "empty");
}

TEST(GemmErrors, PackedForAnotherIsaIsRejected) {
  const auto isas = test_isas();
  if (isas.size() < 2) GTEST_SKIP() << "only one instruction set on this machine";
  std::vector<float> a(16, 1.0f), b(16, 1.0f), c(16, 0.0f);
  PackedMatrix p;
  {
    IsaScope s(isas.back());
    p = pack_matrix(4, 4, b.data(), 4, Transpose::no);
  }
  IsaScope s(isas.front());
  EXPECT_THROW(gemm_packed(4, a.data(), 4, p, c.data(), 4), Error);
}

}  // namespace
}  // namespace engine::test
