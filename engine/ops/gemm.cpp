// SGEMM: the Goto/BLIS loops around the micro-kernel of the active instruction set.
//
//   B (or a prepacked weight) is packed once per call into NR-column panels, KC rows deep:
//     packed B: for each K block k0 (kcb = min(KC, K - k0) rows): [ceil(N / NR)][kcb][NR]
//   Threads split C into a tm x tn grid of MR-row / NR-column ranges. Inside its range a thread runs
//     for n0 (NC columns) -> for m0 (MC rows) -> for k0 (KC deep): (pack A[m0.., k0..] when N is wide) -> macro-kernel
//   Every element of C is summed over k in the same order whatever the thread count, so results are
//   bitwise identical for any number of threads.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "engine/core/parallel.hpp"
#include "engine/error.hpp"
#include "engine/kernels/kernel_table.hpp"
#include "engine/ops.hpp"
#include "engine/ops/gemm_policy.hpp"

namespace engine {
namespace {

using i64 = std::int64_t;
using kernels::GemmBlocking;
using kernels::KernelTable;

i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using AlignedFloats = std::unique_ptr<float[], FreeDeleter>;

AlignedFloats allocate_floats(i64 count, const char* what) {
  const std::size_t bytes = (static_cast<std::size_t>(count) * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64));
  if (p == nullptr) fail(what, ": cannot allocate ", bytes, " bytes");
  return AlignedFloats(p);
}

// Per calling thread scratch for packed B and each thread's packed A; it grows on demand and is then reused, so
// repeated calls of the same shapes allocate nothing.
struct Scratch {
  AlignedFloats data;
  i64 capacity = 0;
  float* get(i64 count) {
    if (count > capacity) {
      data = allocate_floats(count, "gemm workspace");
      capacity = count;
    }
    return data.get();
  }
};
thread_local Scratch t_scratch;

i64 packed_b_floats(const GemmBlocking& blk, i64 K, i64 N) { return K * ceil_div(N, blk.nr) * blk.nr; }

i64 packed_a_floats(const GemmBlocking& blk) { return ceil_div(blk.mc, blk.mr) * blk.mr * blk.kc; }

// Packing an MC x KC block of A costs about one load and one store per element and is reused by
// N / NR panels. Packed, A is one contiguous stream; read in place, its MR rows sit lda apart and
// collide in the same cache sets when lda is a multiple of 1 KiB. Pack when enough panels share it.
std::atomic<i64> g_pack_a_min_panels{[] {
  const char* v = std::getenv("ENGINE_GEMM_PACK_A_MIN_PANELS");
  return v != nullptr && std::atoll(v) > 0 ? static_cast<i64>(std::atoll(v)) : i64{4};
}()};

bool should_pack_a(const GemmBlocking& blk, i64 N) { return ceil_div(N, blk.nr) >= g_pack_a_min_panels.load(); }

// Start of the panel holding columns [n0, n0 + NR) of the K block starting at k0.
const float* panel_at(const float* packed, const GemmBlocking& blk, i64 K, i64 N, i64 k0, i64 n0) {
  const i64 panels = ceil_div(N, blk.nr);
  const i64 kcb = std::min<i64>(blk.kc, K - k0);
  return packed + k0 * panels * blk.nr + (n0 / blk.nr) * kcb * blk.nr;
}

// Packs all of op(B) into `out` using the threads of the enclosing parallel region (or one).
void pack_b_all(const KernelTable& kt, i64 K, i64 N, const float* B, i64 ldb, bool trans, float* out) {
  const GemmBlocking& blk = kt.gemm;
  const i64 kblocks = ceil_div(K, blk.kc);
  const i64 panels = ceil_div(N, blk.nr);
  constexpr i64 kPanelsPerTask = 4;
  const i64 groups = ceil_div(panels, kPanelsPerTask);
#pragma omp for schedule(static)
  for (i64 task = 0; task < kblocks * groups; ++task) {
    const i64 k0 = (task / groups) * blk.kc;
    const i64 n0 = (task % groups) * kPanelsPerTask * blk.nr;
    const i64 kcb = std::min<i64>(blk.kc, K - k0);
    const i64 ncb = std::min<i64>(kPanelsPerTask * blk.nr, N - n0);
    const float* src = trans ? B + n0 * ldb + k0 : B + k0 * ldb + n0;
    kt.pack_b(kcb, ncb, src, ldb, trans, const_cast<float*>(panel_at(out, blk, K, N, k0, n0)));
  }
}

// The thread grid: tm row ranges x tn column ranges, tm * tn = threads, chosen to minimise the
// largest share of MR x NR tiles; ties go to more row ranges (each A row is then packed once).
struct Grid {
  int tm, tn;
};
Grid choose_grid(int threads, i64 mtiles, i64 npanels) {
  Grid best{1, threads};
  i64 best_load = -1;
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm != 0) continue;
    const int tn = threads / tm;
    const i64 load = ceil_div(mtiles, tm) * ceil_div(npanels, tn);
    if (best_load < 0 || load <= best_load) {
      best = {tm, tn};
      best_load = load;
    }
  }
  return best;
}

struct GemmCall {
  i64 M, N, K;
  bool pack_a;
  const float* A;
  i64 lda;
  float* C;
  i64 ldc;
  bool accumulate;
  GemmEpilogue epilogue;
};

// One thread's share: rows [m_begin, m_end) x columns [n_begin, n_end) of C.
void compute_block(const KernelTable& kt, const GemmCall& g, const float* packed_b, float* a_buf, i64 m_begin,
                   i64 m_end, i64 n_begin, i64 n_end) {
  const GemmBlocking& blk = kt.gemm;
  for (i64 n0 = n_begin; n0 < n_end; n0 += blk.nc) {
    const i64 ncb = std::min<i64>(blk.nc, n_end - n0);
    for (i64 m0 = m_begin; m0 < m_end; m0 += blk.mc) {
      const i64 mcb = std::min<i64>(blk.mc, m_end - m0);
      for (i64 k0 = 0; k0 < g.K; k0 += blk.kc) {
        const i64 kcb = std::min<i64>(blk.kc, g.K - k0);
        const float* a = g.A + m0 * g.lda + k0;
        if (g.pack_a) {
          kt.pack_a(mcb, kcb, a, g.lda, a_buf);
          a = a_buf;
        }
        const bool last = k0 + kcb == g.K;
        const kernels::GemmStore store{
            k0 > 0 || g.accumulate, last,
            g.epilogue.bias != nullptr ? g.epilogue.bias + n0 : nullptr, g.epilogue.activation};
        kt.gemm_macro(mcb, ncb, kcb, a, g.lda, g.pack_a, panel_at(packed_b, blk, g.K, g.N, k0, n0), g.C + m0 * g.ldc + n0,
                      g.ldc, store);
      }
    }
  }
}

// Runs the whole product. When `b_src` is non-null, B is packed first (in parallel) into scratch.
void run(const KernelTable& kt, const GemmCall& g, const float* b_src, i64 ldb, bool trans, const float* packed_b) {
  const GemmBlocking& blk = kt.gemm;
  const i64 mtiles = ceil_div(g.M, blk.mr), npanels = ceil_div(g.N, blk.nr);
  // Below ~64 K FLOP a fork/join costs more than it saves.
  const bool tiny = 2.0 * static_cast<double>(g.M) * static_cast<double>(g.N) * static_cast<double>(g.K) < 65536.0;
  const int threads = tiny ? 1 : parallel::threads_for(mtiles * npanels);
  const Grid grid = choose_grid(threads, mtiles, npanels);

  const i64 b_floats = b_src != nullptr ? packed_b_floats(blk, g.K, g.N) : 0;
  const i64 a_floats = g.pack_a ? packed_a_floats(blk) : 0;
  float* scratch = t_scratch.get(b_floats + a_floats * threads);
  float* b_buf = scratch;
  if (b_src != nullptr) packed_b = b_buf;

  auto body = [&](int tid) {
    if (b_src != nullptr) pack_b_all(kt, g.K, g.N, b_src, ldb, trans, b_buf);  // ends with a barrier
    const int ti = tid / grid.tn, tj = tid % grid.tn;
    const auto rows = parallel::split_range(mtiles, grid.tm, ti);
    const auto cols = parallel::split_range(npanels, grid.tn, tj);
    const i64 m_begin = rows.begin * blk.mr, m_end = std::min<i64>(rows.end * blk.mr, g.M);
    const i64 n_begin = cols.begin * blk.nr, n_end = std::min<i64>(cols.end * blk.nr, g.N);
    if (m_begin < m_end && n_begin < n_end)
      compute_block(kt, g, packed_b, scratch + b_floats + a_floats * tid, m_begin, m_end, n_begin, n_end);
  };
  if (threads == 1) {
    body(0);
  } else {
#pragma omp parallel num_threads(threads)
    body(omp_get_thread_num());
  }
}

void check_common(const char* op, i64 M, i64 N, i64 K, const float* A, i64 lda, float* C, i64 ldc, float beta) {
  if (M < 1 || N < 1 || K < 1) fail(op, ": M, N and K must be >= 1, got M=", M, " N=", N, " K=", K);
  if (A == nullptr) fail(op, ": A is null");
  if (C == nullptr) fail(op, ": C is null");
  if (lda < K) fail(op, ": lda must be >= K (", K, "), got ", lda);
  if (ldc < N) fail(op, ": ldc must be >= N (", N, "), got ", ldc);
  if (beta != 0.0f && beta != 1.0f) fail(op, ": beta must be 0 or 1, got ", beta);
}

}  // namespace

namespace ops {
void set_gemm_pack_a_min_panels(i64 panels) {
  if (panels < 1) fail("set_gemm_pack_a_min_panels: panels must be >= 1, got ", panels);
  g_pack_a_min_panels.store(panels);
}
i64 gemm_pack_a_min_panels() { return g_pack_a_min_panels.load(); }
}  // namespace ops

struct PackedMatrix::Impl {
  Isa isa;
  GemmBlocking blk;
  i64 K = 0, N = 0;
  AlignedFloats data;
  i64 floats = 0;
};

PackedMatrix::PackedMatrix() = default;
PackedMatrix::~PackedMatrix() = default;
PackedMatrix::PackedMatrix(PackedMatrix&&) noexcept = default;
PackedMatrix& PackedMatrix::operator=(PackedMatrix&&) noexcept = default;
PackedMatrix::PackedMatrix(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
i64 PackedMatrix::rows() const { return impl_ ? impl_->K : 0; }
i64 PackedMatrix::cols() const { return impl_ ? impl_->N : 0; }
std::size_t PackedMatrix::bytes() const { return impl_ ? static_cast<std::size_t>(impl_->floats) * sizeof(float) : 0; }

PackedMatrix pack_matrix(i64 K, i64 N, const float* B, i64 ldb, Transpose trans_b) {
  if (K < 1 || N < 1) fail("pack_matrix: K and N must be >= 1, got K=", K, " N=", N);
  if (B == nullptr) fail("pack_matrix: B is null");
  const bool trans = trans_b == Transpose::yes;
  if (ldb < (trans ? K : N))
    fail("pack_matrix: ldb must be >= ", trans ? "K (" : "N (", trans ? K : N, "), got ", ldb);
  const KernelTable& kt = kernels::active();
  auto impl = std::make_unique<PackedMatrix::Impl>();
  impl->isa = kt.isa;
  impl->blk = kt.gemm;
  impl->K = K;
  impl->N = N;
  impl->floats = packed_b_floats(kt.gemm, K, N);
  impl->data = allocate_floats(impl->floats, "pack_matrix");
  float* out = impl->data.get();
  const int threads = parallel::threads_for(ceil_div(N, kt.gemm.nr));
  if (threads == 1) {
    pack_b_all(kt, K, N, B, ldb, trans, out);
  } else {
#pragma omp parallel num_threads(threads)
    pack_b_all(kt, K, N, B, ldb, trans, out);
  }
  return PackedMatrix(std::move(impl));
}

void gemm(i64 M, i64 N, i64 K, const float* A, i64 lda, const float* B, i64 ldb, Transpose trans_b, float* C,
          i64 ldc, float beta, GemmEpilogue epilogue) {
  check_common("gemm", M, N, K, A, lda, C, ldc, beta);
  if (B == nullptr) fail("gemm: B is null");
  const bool trans = trans_b == Transpose::yes;
  if (ldb < (trans ? K : N)) fail("gemm: ldb must be >= ", trans ? "K (" : "N (", trans ? K : N, "), got ", ldb);
  const KernelTable& kt = kernels::active();
  run(kt, GemmCall{M, N, K, should_pack_a(kt.gemm, N), A, lda, C, ldc, beta == 1.0f, epilogue}, B, ldb, trans, nullptr);
}

void gemm_packed(i64 M, const float* A, i64 lda, const PackedMatrix& B, float* C, i64 ldc, float beta,
                 GemmEpilogue epilogue) {
  if (B.rows() == 0) fail("gemm_packed: B is an empty PackedMatrix");
  const PackedMatrix::Impl& p = B.impl();
  check_common("gemm_packed", M, p.N, p.K, A, lda, C, ldc, beta);
  const KernelTable& kt = kernels::active();
  if (kt.isa != p.isa)
    fail("gemm_packed: B was packed for ", isa_name(p.isa), " but the active instruction set is ", isa_name(kt.isa),
         "; pack it again");
  run(kt, GemmCall{M, p.N, p.K, should_pack_a(kt.gemm, p.N), A, lda, C, ldc, beta == 1.0f, epilogue}, nullptr, 0, false, p.data.get());
}

}  // namespace engine
