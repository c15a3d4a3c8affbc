// SGEMM: the Goto/BLIS loops around the micro-kernel of the active instruction set.
//
//   B lives in NR-column panels, KC rows deep. A prepacked weight holds all of op(B) that way:
//     packed B: for each K block k0 (kcb = min(KC, K - k0) rows): [ceil(N / NR)][kcb][NR]
//   and so does a plain product with many rows, which packs all of op(B) once per call
//   (packs_whole_b), as its first rows compute where it can (fills_b_on_first_use), else each
//   thread its own panels before its tiles (packs_b_first). With fewer
//   rows each thread packs the KC x NC block it is about to use into its
//   own scratch, where it stays hot in L2, or reads B in place (read_b_in_place), copying a large
//   B's panels as the tiles compute (copies_b_panels).
//   Threads split C into a tm x tn grid of row / NR-column ranges. Inside its range a thread runs
//   the NC / KC / MC loops in whichever order packs less (compute_block), A packed when N is wide.
//   Every element of C is summed over k in the same order whatever the thread count, so results are
//   bitwise identical for any number of threads.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>

#include "engine/core/memory.hpp"
#include "engine/core/parallel.hpp"
#include "engine/error.hpp"
#include "engine/kernels/kernel_table.hpp"
#include "engine/ops.hpp"
#include "engine/ops/gemm_internal.hpp"
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

// Packed weights and scratch from 2 MiB up are on huge pages (see core/memory.hpp).
AlignedFloats allocate_floats(i64 count, const char* what) {
  const std::size_t bytes = (static_cast<std::size_t>(count) * sizeof(float) + 63) / 64 * 64;
  return AlignedFloats(static_cast<float*>(memory::allocate(bytes, what)));
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
thread_local Scratch t_whole_b;  // all of op(B), packed once per call (see packs_whole_b)

i64 packed_b_floats(const GemmBlocking& blk, i64 K, i64 N) { return K * ceil_div(N, blk.nr) * blk.nr; }

i64 packed_a_floats(const GemmBlocking& blk, i64 K) {
  return ceil_div(blk.mc, blk.mr) * blk.mr * std::min<i64>(blk.kc, K);
}

// A weight is packed in K blocks of 768 rows (one block when K <= 768), not the instruction set's
// KC of 256. With K <= 768 in one block the product writes C once instead of reading it back after
// every KC rows: with N = 3072 a 192-row block of C (2.4 MB) no longer fits L2, and those read-backs
// cost 1024 x 3072 x 768 about 5% (isolated, 235-241 -> 246-251 GFLOP/s). Deeper weights gain in
// the layers, where they come from L3 or memory rather than hot from the previous call: FFN-down
// (1024 x 768 x 3072) in W1_b8 -3% and in W3 (K = 2048) -1.7%, whole W1_b8 -2% at 1 thread and
// -1.4% at 2 (`engine-profile`, KC 256 / 768 alternated; 512 and 1024 measured in between, 688 =
// 2048 / 3 no better). In isolation, hot in cache, 1024 x 768 x 3072 and sq_2048 are unchanged.
// The B panel (768 x NR) streams from L2 rather than L1, which the micro-kernel absorbs.
constexpr i64 kPackedMaxKc = 768;
GemmBlocking packed_blocking(GemmBlocking blk, i64 K) {
  if (K > blk.kc) blk.kc = static_cast<int>(std::min(K, kPackedMaxKc));
  return blk;
}

// ENGINE_GEMM_PACK_A=always|never overrides the automatic choice (a tuning knob for benchmarks).
std::atomic<ops::PackAPolicy> g_pack_a_policy{[] {
  const char* v = std::getenv("ENGINE_GEMM_PACK_A");
  if (v != nullptr && std::strcmp(v, "always") == 0) return ops::PackAPolicy::always;
  if (v != nullptr && std::strcmp(v, "never") == 0) return ops::PackAPolicy::never;
  return ops::PackAPolicy::automatic;
}()};

// Packing an MC x KC block of A costs about a load and a store per element and is reused by every
// B panel of the call. Read in place, the MR rows of a tile sit lda apart; when lda is a multiple
// of a large power of two they map to one or two of L1's 64 sets and evict each other and the B
// panel (lda = 3072 floats lost ~30% that way, lda = 768 ~8%, with the first micro-kernel). Pack
// when that happens and N >= 1024 columns share the packed block, unless B itself is read in
// place; otherwise (lda = 64, N <= 768) read A in place. With the B-panel prefetch, the threshold
// measured (macro-kernel loops alone, M = 1024, prepacked B, runs alternated): A in place faster by
// 1-3% for N = 512 and 768 (K = 512 .. 3072), packed faster or equal for N = 1536, 2048, 3072.
std::atomic<ops::PackBPolicy> g_pack_b_policy{ops::PackBPolicy::automatic};

bool should_pack_a(const GemmBlocking& blk, i64 N, i64 lda, bool b_in_place = false) {
  switch (g_pack_a_policy.load()) {
    case ops::PackAPolicy::always: return true;
    case ops::PackAPolicy::never: return false;
    case ops::PackAPolicy::automatic: break;
  }
  // With B read in place (M <= 256), A read in place measured faster for every lda tried: M = 128,
  // N = 768 / 3072, K = 768 / 3072, 1-7% at 1 and 2 threads.
  if (b_in_place) return false;
  constexpr i64 kPackAMinColumns = 1024;
  if (N < kPackAMinColumns) return false;
  constexpr i64 kLineBytes = 64, kL1Sets = 64;
  const i64 row_bytes = lda * static_cast<i64>(sizeof(float));
  if (row_bytes % kLineBytes != 0) return false;  // rows land on shifting sets
  const i64 line_stride = (row_bytes / kLineBytes) % kL1Sets;
  const i64 distinct_sets = kL1Sets / std::gcd(line_stride == 0 ? kL1Sets : line_stride, kL1Sets);
  return distinct_sets < blk.mr;  // some of a tile's rows share a set
}

// B[K, N] with N = ldb = NR is one contiguous panel: it already has the packed layout.
bool is_one_packed_panel(const GemmBlocking& blk, i64 N, i64 ldb) { return N == blk.nr && ldb == blk.nr; }

// Per call, B[K, N] is packed by each thread for the blocks it uses; that costs a load and a store
// per element, against 2·M FLOPs per element of work. For few rows (M <= 256: ~7% at M = 128) the
// micro-kernel reads B's rows in place instead, when it can: not transposed, and whole NR panels.
// So does any product whose B is one contiguous panel (N = ldb = NR: P·V with 64-wide heads on
// AVX-512), which already is the packed layout: each thread packing its copy of it cost plain
// `pv_s1024` (1024 x 64 x 1024) ~1-3%.
bool read_b_in_place(const GemmBlocking& blk, i64 M, i64 N, i64 ldb, bool trans) {
  switch (g_pack_b_policy.load()) {
    case ops::PackBPolicy::always: return false;
    case ops::PackBPolicy::never: return !trans && N % blk.nr == 0;
    case ops::PackBPolicy::automatic: break;
  }
  return !trans && (is_one_packed_panel(blk, N, ldb) || (N % blk.nr == 0 && M <= 256));
}

// Whether B read in place is copied panel by panel as the tiles compute (see macro in
// kernels_impl.hpp), in K blocks of 768 rows as for a prepacked weight. (The figures below are
// from when each panel's first tile made its copy.) Pays when B comes from L3 or
// memory, where the first tile prefetches it and the others then read a contiguous panel: plain
// 128 x 768 x 768 241 -> 250 GFLOP/s and 128 x 3072 x 768 216 -> 231 at 1 thread (macro-kernel
// alone, same run); 128 x 768 x 3072 (four blocks of 768) 243-246 -> 249-254 at 1 thread and
// 459-467 -> 487-491 at 2 (`engine-bench --only gemm`, alternated; with KC 256 it had gained
// nothing); P·V with 2048-4096 keys and V inside a QKV buffer (ldb 2304) 218-226 -> 233-238. Not
// for B that stays in L2 (128 x 64 x 128: ~1-3% slower), nor for one contiguous panel (N = ldb =
// NR), which already is the packed layout (P·V on contiguous V, K 2048-4096: 3-4% slower copied).
constexpr i64 kCopyPanelsMinBFloats = i64{1} << 17;
bool copies_b_panels(const GemmBlocking& blk, i64 N, i64 K, i64 ldb) {
  return K * N >= kCopyPanelsMinBFloats && !is_one_packed_panel(blk, N, ldb);
}

// The blocking of a plain product. Copied panels take a prepacked weight's K blocks (768 rows).
// Narrow B (N <= 64, at most 1024 deep: P·V in attention) is one K block: with few columns each C
// tile's read-back after every KC rows weighs more; one block measured 2-3% faster on
// 128 x 64 x 512 (B in place) and 1024 x 64 x 1024 (B packed), 256 -> 262 GFLOP/s.
constexpr i64 kNarrowMaxN = 64, kNarrowMaxK = 1024;
GemmBlocking plain_blocking(GemmBlocking blk, i64 N, i64 K, bool copy_panels) {
  if (copy_panels) return packed_blocking(blk, K);
  if (N <= kNarrowMaxN && K <= kNarrowMaxK && K > blk.kc) blk.kc = static_cast<int>(K);
  return blk;
}

// Whether a plain product packs all of op(B) once (up front, or as its first rows compute: see
// fills_b_on_first_use) and then runs as if it were prepacked, instead of packing one KC x NC
// block at a time. With many rows the whole packing is paid once against
// 2·M FLOPs per element, A is packed once rather than once per NC block, a weight with K <= 768
// becomes one K block, and the panels are prefetched like a prepacked weight's.
// (Measured at M = 1024, alternated runs: plain lin_m1024_n3072_k768 1.14 -> 1.23x oneDNN,
// sq_2048 1.01 -> 1.10x, lin_m1024_n768_k768 0.98 -> 0.99-1.00x at 1 thread.) Not for narrow B
// (fewer than four panels): pv_s1024 (N = 64) lost 10% at 2 threads, where each thread packing its
// own small block keeps it in its own L2.
// Where threads split C by columns, each packs the panels of its own columns inside the parallel
// region that computes (packs_b_first), rather than the team in a region and barrier of their own
// before it: plain 512 x 256 x 64 (B transposed) at 2 threads 0.956-0.965 -> 1.007-1.011x oneDNN,
// plain `qkt_s1024` unchanged within noise (paired runs, old and new builds alternated).
constexpr i64 kWholeBMinRows = 512, kWholeBMinPanels = 4;
bool packs_whole_b(const GemmBlocking& blk, i64 M, i64 N) {
  return M >= kWholeBMinRows && ceil_div(N, blk.nr) >= kWholeBMinPanels;
}

// Whether that packing is left to each thread's first block of rows instead of a pass of its own:
// the tiles of that block read B in place and copy its panels into the packed buffer as they
// compute (as copies_b_panels does), and the later blocks read the packed panels. The packing
// pass cost about as much again as those copies, which overlap the arithmetic: plain 1024 x 768 x
// 768 0.992-0.994 -> 1.002-1.004x oneDNN, 1024 x 3072 x 768 1.18-1.21 -> 1.21-1.23x,
// 1024 x 768 x 3072 1.17-1.19 -> 1.21-1.22x, 512 x 768 x 768 0.979-0.984 -> 0.992-0.995x (paired
// runs, 1 thread). Not when B would come from memory rather than L3 (the copying tile reads rows
// ldb apart, which a pass streams faster: sq_2048, 16 MB, 1.12 -> 1.09x), nor for transposed B
// (the micro-kernel reads rows of B), nor for N % NR != 0 (the last panel is zero-padded). Falls
// back to packing up front when threads would share panels (see run()).
constexpr i64 kFillOnFirstUseMaxBFloats = i64{3} << 20;  // 12 MiB
bool fills_b_on_first_use(const GemmBlocking& blk, i64 K, i64 N, bool trans) {
  return !trans && N % blk.nr == 0 && K * N <= kFillOnFirstUseMaxBFloats;
}

// Start of the panel holding columns [n0, n0 + NR) of the K block starting at k0.
const float* panel_at(const float* packed, const GemmBlocking& blk, i64 K, i64 N, i64 k0, i64 n0) {
  const i64 panels = ceil_div(N, blk.nr);
  const i64 kcb = std::min<i64>(blk.kc, K - k0);
  return packed + k0 * panels * blk.nr + (n0 / blk.nr) * kcb * blk.nr;
}

// Packs the K block starting at k0, columns [n0, n_end) of op(B) (n0 a multiple of NR), into
// their place in `out`.
void pack_b_piece(const KernelTable& kt, const GemmBlocking& blk, i64 K, i64 N, const float* B, i64 ldb, bool trans,
                  float* out, i64 k0, i64 n0, i64 n_end) {
  const i64 kcb = std::min<i64>(blk.kc, K - k0);
  const float* src = trans ? B + n0 * ldb + k0 : B + k0 * ldb + n0;
  kt.pack_b(kcb, n_end - n0, src, ldb, trans, const_cast<float*>(panel_at(out, blk, K, N, k0, n0)));
}

// Packs all of op(B) into `out`: split across the team of the parallel region it is called from
// when team_shares_it, else all on the calling thread (which may be one thread of somebody else's
// parallel region: a work-sharing loop there would bind to that region and split, or hang).
void pack_b_all(const KernelTable& kt, const GemmBlocking& blk, i64 K, i64 N, const float* B, i64 ldb, bool trans,
                float* out, bool team_shares_it) {
  const i64 kblocks = ceil_div(K, blk.kc);
  const i64 panels = ceil_div(N, blk.nr);
  constexpr i64 kPanelsPerTask = 4;
  const i64 groups = ceil_div(panels, kPanelsPerTask);
  auto pack_task = [&](i64 task) {
    const i64 n0 = (task % groups) * kPanelsPerTask * blk.nr;
    pack_b_piece(kt, blk, K, N, B, ldb, trans, out, (task / groups) * blk.kc, n0,
                 std::min<i64>(n0 + kPanelsPerTask * blk.nr, N));
  };
  if (!team_shares_it) {
    for (i64 task = 0; task < kblocks * groups; ++task) pack_task(task);
    return;
  }
#pragma omp for schedule(static)
  for (i64 task = 0; task < kblocks * groups; ++task) pack_task(task);
}

// Packs all of op(B) into `out` on every thread the call may use.
void pack_b_threaded(const KernelTable& kt, const GemmBlocking& blk, i64 K, i64 N, const float* B, i64 ldb, bool trans,
                     float* out) {
  const int threads = parallel::threads_for(ceil_div(N, blk.nr));
  if (threads == 1) {
    pack_b_all(kt, blk, K, N, B, ldb, trans, out, false);
  } else {
#pragma omp parallel num_threads(threads)
    pack_b_all(kt, blk, K, N, B, ldb, trans, out, true);
  }
}

// The thread grid: tm row ranges x tn column ranges, tm * tn = threads, chosen to minimise the
// largest share of MR x NR tiles (counted in whole tiles, though rows are then split evenly).
// Within 2% of a tie, avoid duplicated work: column ranges make every thread pack (or read) all of
// A, row ranges make every thread pack (or read) all of B.
// (Exact ties only, before: at 2 threads W3's FFN-down, 1024 x 512 x 2048, split its 171 x 8 tiles
// by columns for 684 against 688, so both threads streamed all 8 MB of A, and each layer's next op
// then read rows that the other core had written. Near-ties by rows, `engine-profile` W3 at 2
// threads, old and new builds alternated: 85.4 -> 84.0 and 90.5 -> 84.5 ms; W2 35.8 -> 35.2.)
struct Grid {
  int tm, tn;
};
Grid choose_grid(int threads, i64 mtiles, i64 npanels, bool prefer_column_split) {
  Grid best{1, threads};
  i64 best_load = -1;
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm != 0) continue;
    const int tn = threads / tm;
    const i64 load = ceil_div(mtiles, tm) * ceil_div(npanels, tn);
    const bool clearly_less = load * 50 < best_load * 49;  // more than 2% less work per thread
    const bool about_equal = !clearly_less && load * 49 <= best_load * 50;
    const bool better = best_load < 0 || clearly_less || (about_equal && !prefer_column_split);
    if (better) {
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
  // B: either prepacked (the whole of op(B) in panel layout; with fills_packed_b, still to be
  // filled) or the caller's matrix, packed one KC x NC block at a time by the thread that uses it,
  // while the block is hot in its L2, or read in place.
  const float* prepacked_b = nullptr;
  i64 packed_n = 0;  // the width op(B) was packed with (>= N: a product may use its first N columns)
  bool b_packed_by_team = false;  // prepacked_b was packed by this call's threads (packs_whole_b)
  // prepacked_b is still to be filled from b (read in place, ldb): each thread's first MC block of
  // rows copies the panels of its columns there as it computes (see fills_b_on_first_use).
  bool fills_packed_b = false;
  // prepacked_b is still to be packed from b (ldb, trans_b) before any tile reads it: in a column
  // split by each thread for its own columns, inside the parallel region; otherwise up front.
  bool packs_b_first = false;
  const float* b = nullptr;
  i64 ldb = 0;
  bool trans_b = false;
  bool b_in_place = false;     // read B[K, N] directly instead of packing it (see read_b_in_place)
  bool copy_b_panels = false;  // ...and copy each panel as its first tile reads it (see copies_b_panels)
  GemmBlocking blk;  // the instruction set's, with a prepacked weight's own KC (see pack_matrix)
};

// One thread's share, rows [m_begin, m_end) x columns [n_begin, n_end) of C. Two loop orders:
//   n-outer (Goto):  for n0 (NC) -> for k0 (KC): B block -> for m0 (MC): A block -> macro
//   m-outer:         for m0 (MC) -> for k0 (KC): A block -> for n0 (NC): B block -> macro
// n-outer packs each B block once and A once per NC block; m-outer packs A once and B once per
// MC block. The cheaper one is chosen per call (with prepacked B, m-outer packs nothing twice).
void compute_block(const KernelTable& kt, const GemmCall& g, bool m_outer, float* a_buf, float* b_buf, i64 m_begin,
                   i64 m_end, i64 n_begin, i64 n_end, bool out_of_phase) {
  const GemmBlocking& blk = g.blk;
  // Where the macro-kernel's walk over the rows of an MC block starts (see run()).
  auto walk_from = [&](i64 mcb) -> i64 { return out_of_phase ? mcb / 2 / blk.mr * blk.mr : 0; };
  // ceil(ncb / NR) panels [kcb][NR], or B itself when read in place (g.b_in_place)
  auto b_block_at = [&](i64 k0, i64 kcb, i64 n0, i64 ncb) -> const float* {
    if (g.prepacked_b != nullptr) return panel_at(g.prepacked_b, blk, g.K, g.packed_n, k0, n0);
    if (g.b_in_place) return g.b + k0 * g.ldb + n0;
    kt.pack_b(kcb, ncb, g.trans_b ? g.b + n0 * g.ldb + k0 : g.b + k0 * g.ldb + n0, g.ldb, g.trans_b, b_buf);
    return b_buf;
  };
  auto a_block_at = [&](i64 m0, i64 mcb, i64 k0, i64 kcb) -> const float* {
    const float* a = g.A + m0 * g.lda + k0;
    if (!g.pack_a) return a;
    kt.pack_a(mcb, kcb, a, g.lda, a_buf);
    return a_buf;
  };
  const i64 b_ld = g.b_in_place ? g.ldb : 0;
  const kernels::GemmPanelCopy panel_copy{g.copy_b_panels ? b_buf : nullptr, false};
  auto store_for = [&](i64 k0, i64 kcb, i64 n0) {
    return kernels::GemmStore{k0 > 0 || g.accumulate, k0 + kcb == g.K,
                              g.epilogue.bias != nullptr ? g.epilogue.bias + n0 : nullptr, g.epilogue.activation};
  };
  // The prepacked B block this thread uses after (m0, k0, n0) in m-outer order, prefetched while
  // the current one computes: a weight larger than L2 is re-read from memory for every MC block
  // of rows. Blocks packed per call are already hot; B read in place is not one contiguous range.
  auto next_b_block = [&](i64 m0, i64 k0, i64 n0) -> kernels::GemmPrefetch {
    if (g.prepacked_b == nullptr) return {};
    i64 k_next = k0, n_next = n0 + blk.nc;
    if (n_next >= n_end) {
      n_next = n_begin;
      k_next = k0 + blk.kc;
      if (k_next >= g.K) {
        if (m0 + blk.mc >= m_end) return {};
        k_next = 0;
      }
    }
    const i64 kcb = std::min<i64>(blk.kc, g.K - k_next), ncb = std::min<i64>(blk.nc, n_end - n_next);
    return {reinterpret_cast<const char*>(panel_at(g.prepacked_b, blk, g.K, g.packed_n, k_next, n_next)),
            ceil_div(ncb, blk.nr) * blk.nr * kcb * static_cast<i64>(sizeof(float))};
  };
  if (m_outer) {
    for (i64 m0 = m_begin; m0 < m_end; m0 += blk.mc) {
      const i64 mcb = std::min<i64>(blk.mc, m_end - m0);
      for (i64 k0 = 0; k0 < g.K; k0 += blk.kc) {
        const i64 kcb = std::min<i64>(blk.kc, g.K - k0);
        const float* a = a_block_at(m0, mcb, k0, kcb);
        for (i64 n0 = n_begin; n0 < n_end; n0 += blk.nc) {
          const i64 ncb = std::min<i64>(blk.nc, n_end - n0);
          if (g.fills_packed_b && m0 == m_begin) {  // read B in place, leave its panels packed
            // No prefetch: the next packed block is not written yet.
            float* packed = const_cast<float*>(panel_at(g.prepacked_b, blk, g.K, g.packed_n, k0, n0));
            kt.gemm_macro(mcb, ncb, kcb, a, g.lda, g.pack_a, g.b + k0 * g.ldb + n0, g.ldb, g.C + m0 * g.ldc + n0,
                          g.ldc, store_for(k0, kcb, n0), kernels::GemmPrefetch{}, {packed, true}, 0);
            continue;
          }
          kt.gemm_macro(mcb, ncb, kcb, a, g.lda, g.pack_a, b_block_at(k0, kcb, n0, ncb), b_ld,
                        g.C + m0 * g.ldc + n0, g.ldc, store_for(k0, kcb, n0), next_b_block(m0, k0, n0), panel_copy,
                        walk_from(mcb));
        }
      }
    }
    return;
  }
  for (i64 n0 = n_begin; n0 < n_end; n0 += blk.nc) {
    const i64 ncb = std::min<i64>(blk.nc, n_end - n0);
    for (i64 k0 = 0; k0 < g.K; k0 += blk.kc) {
      const i64 kcb = std::min<i64>(blk.kc, g.K - k0);
      const float* b_block = b_block_at(k0, kcb, n0, ncb);
      for (i64 m0 = m_begin; m0 < m_end; m0 += blk.mc) {
        const i64 mcb = std::min<i64>(blk.mc, m_end - m0);
        kt.gemm_macro(mcb, ncb, kcb, a_block_at(m0, mcb, k0, kcb), g.lda, g.pack_a, b_block, b_ld,
                      g.C + m0 * g.ldc + n0, g.ldc, store_for(k0, kcb, n0), kernels::GemmPrefetch{}, panel_copy,
                      walk_from(mcb));
      }
    }
  }
}

// Elements packed by each loop order for one thread's rows x columns (see compute_block).
bool prefer_m_outer(const GemmBlocking& blk, const GemmCall& g, i64 rows, i64 cols) {
  const double a_once = g.pack_a ? static_cast<double>(rows) * static_cast<double>(g.K) : 0.0;
  const double b_once =
      g.prepacked_b == nullptr && !g.b_in_place ? static_cast<double>(g.K) * static_cast<double>(cols) : 0.0;
  const double m_outer = a_once + b_once * static_cast<double>(ceil_div(rows, blk.mc));
  const double n_outer = b_once + a_once * static_cast<double>(ceil_div(cols, blk.nc));
  return m_outer <= n_outer;
}

// Below this many FLOPs a product runs on one thread. A 2 MFLOP product (128 x 128 x 64) still
// gains from two: 244 -> 422 GFLOP/s. Attention's per-head products run inside its own parallel
// region over heads, where every op runs on the calling thread anyway (parallel::threads_for).
constexpr double kMinFlopsToThread = 1e6;
// ...unless it streams a large prepacked weight: at M = 1..8 (decoding) a product is bound by
// reading B, and two threads read two halves of it at nearly twice the rate of one.
constexpr double kMinWeightFloatsToThread = 1 << 18;

// What reading an operand in place in every thread costs against packing it in every thread: the
// read is no arithmetic but still a stream from L3 (weighting it 0.1 put both threads on all of
// a 2.4 MB B at M = 128 and cost ~5-10% there).
constexpr double kReadWeight = 0.5;

void run(const KernelTable& kt, const GemmCall& requested) {
  GemmCall g = requested;
  // A shallow product takes taller blocks of rows (see rows_per_block), except when its first block
  // fills packed B: that block then covered all of plain 512 x 512 x 64 and measured 1.000-1.007 ->
  // 0.988-1.005x oneDNN (paired runs, 1 thread).
  if (!g.fills_packed_b) g.blk.mc = static_cast<int>(kernels::rows_per_block(g.blk, g.K));
  const GemmBlocking& blk = g.blk;
  const i64 mtiles = ceil_div(g.M, blk.mr), npanels = ceil_div(g.N, blk.nr);
  const double flops = 2.0 * static_cast<double>(g.M) * static_cast<double>(g.N) * static_cast<double>(g.K);
  const bool weight_bound = g.prepacked_b != nullptr &&
                            static_cast<double>(g.K) * static_cast<double>(g.N) >= kMinWeightFloatsToThread;
  const int threads = flops < kMinFlopsToThread && !weight_bound ? 1 : parallel::threads_for(mtiles * npanels);
  // Each thread's scratch: its packed A block, then its B block (or two copied panels). Both are kept
  // whole 64-byte lines, so that every buffer starts on its own line.
  constexpr i64 kLineFloats = 16;
  const i64 a_floats = g.pack_a ? ceil_div(packed_a_floats(blk, g.K), kLineFloats) * kLineFloats : 0;
  const i64 b_block_floats = g.prepacked_b != nullptr ? 0
                             : g.b_in_place      ? (g.copy_b_panels ? 2 * i64{blk.kc} * blk.nr : 0)
                                                 : i64{blk.kc} * ceil_div(std::min<i64>(blk.nc, g.N), blk.nr) * blk.nr;
  const i64 b_floats = ceil_div(b_block_floats, kLineFloats) * kLineFloats;

  // Elements each split repeats in every thread; packing counts fully, reading in place half.
  const double a_repeat = static_cast<double>(g.M) * static_cast<double>(g.K) * (g.pack_a ? 1.0 : kReadWeight);
  const double b_repeat =
      static_cast<double>(g.K) * static_cast<double>(g.N) * (g.prepacked_b || g.b_in_place ? kReadWeight : 1.0);
  // B packed by this call's own threads stays, a panel group each, in the packing thread's cache:
  // a column split then reads it where it is (a row split cost qkt_s1024 6% and lin_m1024_n768_k768
  // 4% at 2 threads).
  const Grid grid = choose_grid(threads, mtiles, npanels,
                                /*prefer_column_split=*/a_repeat < b_repeat || g.b_packed_by_team);
  // B packed on first use needs no two threads to share a panel, and each thread's first block of
  // rows to be more than one tile (macro copies panels only then); otherwise it is packed up front.
  GemmCall call = g;
  if ((call.fills_packed_b && (grid.tm != 1 || std::min<i64>(blk.mc, call.M) <= blk.mr)) ||
      (call.packs_b_first && grid.tm != 1)) {
    pack_b_threaded(kt, blk, call.K, call.N, call.b, call.ldb, call.trans_b, const_cast<float*>(call.prepacked_b));
    call.fills_packed_b = call.packs_b_first = false;
  }
  float* scratch = t_scratch.get((a_floats + b_floats) * threads);

  auto body = [&](int tid) {
    const int ti = tid / grid.tn, tj = tid % grid.tn;
    // Rows split evenly, not in whole MR-row tiles: a thread's short last tile costs in proportion
    // to its rows, so 512 + 512 rows (85 tiles and 2 rows each) finish together where 516 + 508
    // (86 tiles against 84 and 4 rows) did not. Plain `pv_s128` (N = 64, a row split) at 2 threads
    // 1.04-1.05 -> 1.06-1.09x oneDNN, `pv_s1024` 0.986-0.989 -> 0.991-0.995x (paired runs).
    const auto rows = parallel::split_range(g.M, grid.tm, ti);
    const auto cols = parallel::split_range(npanels, grid.tn, tj);
    const i64 m_begin = rows.begin, m_end = rows.end;
    const i64 n_begin = cols.begin * blk.nr, n_end = std::min<i64>(cols.end * blk.nr, g.N);
    float* mine = scratch + (a_floats + b_floats) * tid;
    // Every other column range walks its rows out of phase, from halfway down (where the walk goes
    // row by row across the block: see GemmMacroFn). When C's rows are not on cache lines the two
    // threads of a column boundary write parts of the same line in every row; walking in step,
    // they write it at the same moment, and on a short product that dominated: plain 128 x 128 x 64
    // (Q·Kᵀ, C 16 bytes off a line) at 2 threads, GFLOP/s in step / out of phase, against oneDNN's
    // 379-383, 398 / 399 in the machine's usual state, but 183 / 265 (oneDNN 190-198) in the minutes
    // when an empty parallel region takes 0.9 us instead of 0.45 (the cores farther apart; the
    // slow `qkt_s128` state of earlier `engine-bench` runs). Same tiles, same bits.
    // Each thread packs the panels it alone uses (grid.tm == 1 here), in the region that then
    // computes with them: no parallel region and barrier of their own.
    if (call.packs_b_first && n_begin < n_end)
      for (i64 k0 = 0; k0 < call.K; k0 += blk.kc)
        pack_b_piece(kt, blk, call.K, call.N, call.b, call.ldb, call.trans_b, const_cast<float*>(call.prepacked_b), k0,
                     n_begin, n_end);
    if (m_begin < m_end && n_begin < n_end)
      // B packed on first use must run m-outer: the first block of rows fills every panel.
      compute_block(kt, call, call.fills_packed_b || prefer_m_outer(blk, call, m_end - m_begin, n_end - n_begin), mine,
                    mine + a_floats, m_begin, m_end, n_begin, n_end, /*out_of_phase=*/tj % 2 == 1);
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
void set_gemm_pack_a_policy(PackAPolicy policy) { g_pack_a_policy.store(policy); }
PackAPolicy gemm_pack_a_policy() { return g_pack_a_policy.load(); }
void set_gemm_pack_b_policy(PackBPolicy policy) { g_pack_b_policy.store(policy); }
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
  impl->blk = packed_blocking(kt.gemm, K);
  impl->K = K;
  impl->N = N;
  impl->floats = packed_b_floats(impl->blk, K, N);
  impl->data = allocate_floats(impl->floats, "pack_matrix");
  pack_b_threaded(kt, impl->blk, K, N, B, ldb, trans, impl->data.get());
  return PackedMatrix(std::move(impl));
}

void gemm(i64 M, i64 N, i64 K, const float* A, i64 lda, const float* B, i64 ldb, Transpose trans_b, float* C,
          i64 ldc, float beta, GemmEpilogue epilogue) {
  check_common("gemm", M, N, K, A, lda, C, ldc, beta);
  if (B == nullptr) fail("gemm: B is null");
  const bool trans = trans_b == Transpose::yes;
  if (ldb < (trans ? K : N)) fail("gemm: ldb must be >= ", trans ? "K (" : "N (", trans ? K : N, "), got ", ldb);
  const KernelTable& kt = kernels::active();
  const bool in_place = read_b_in_place(kt.gemm, M, N, ldb, trans), pack_a = should_pack_a(kt.gemm, N, lda, in_place);
  if (!in_place && packs_whole_b(kt.gemm, M, N)) {
    // Many rows: pack all of op(B) once, as pack_matrix() would, and run the prepacked path.
    const GemmBlocking blk = packed_blocking(kt.gemm, K);
    float* packed = t_whole_b.get(packed_b_floats(blk, K, N));
    const bool on_first_use = fills_b_on_first_use(blk, K, N, trans);
    run(kt, GemmCall{.M = M, .N = N, .K = K, .pack_a = pack_a, .A = A, .lda = lda, .C = C, .ldc = ldc,
                     .accumulate = beta == 1.0f, .epilogue = epilogue, .prepacked_b = packed, .packed_n = N,
                     .b_packed_by_team = true, .fills_packed_b = on_first_use, .packs_b_first = !on_first_use,
                     .b = B, .ldb = ldb, .trans_b = trans, .blk = blk});
    return;
  }
  const bool copy_panels = in_place && copies_b_panels(kt.gemm, N, K, ldb);
  run(kt, GemmCall{.M = M, .N = N, .K = K, .pack_a = pack_a, .A = A, .lda = lda, .C = C, .ldc = ldc,
                   .accumulate = beta == 1.0f, .epilogue = epilogue, .b = B, .ldb = ldb, .trans_b = trans,
                   .b_in_place = in_place, .copy_b_panels = copy_panels,
                   .blk = plain_blocking(kt.gemm, N, K, copy_panels)});
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
  run(kt, GemmCall{.M = M, .N = p.N, .K = p.K, .pack_a = should_pack_a(kt.gemm, p.N, lda), .A = A, .lda = lda,
                   .C = C, .ldc = ldc, .accumulate = beta == 1.0f, .epilogue = epilogue,
                   .prepacked_b = p.data.get(), .packed_n = p.N, .blk = p.blk});
}

namespace ops {
// The widest NR of any instruction set (AVX-512: 4 zmm); every NR divides it.
constexpr i64 kWidestNr = 64;

i64 packed_b_floats(i64 K, i64 N) { return K * ceil_div(N, kWidestNr) * kWidestNr; }

void pack_b_on_this_thread(i64 K, i64 N, const float* B, i64 ldb, Transpose trans_b, float* out) {
  const KernelTable& kt = kernels::active();
  const GemmBlocking& blk = kt.gemm;
  if (kWidestNr % blk.nr != 0) fail("pack_b_on_this_thread: NR ", blk.nr, " does not divide ", kWidestNr);
  pack_b_all(kt, blk, K, N, B, ldb, trans_b == Transpose::yes, out, /*team_shares_it=*/false);
}

void gemm_packed_columns(i64 M, i64 N, i64 K, const float* A, i64 lda, const float* packed_b, i64 packed_n, float* C,
                         i64 ldc) {
  if (N > packed_n) fail("gemm_packed_columns: N (", N, ") exceeds the packed width (", packed_n, ")");
  check_common("gemm_packed_columns", M, N, K, A, lda, C, ldc, 0.0f);
  const KernelTable& kt = kernels::active();
  run(kt, GemmCall{.M = M, .N = N, .K = K, .pack_a = should_pack_a(kt.gemm, N, lda), .A = A, .lda = lda, .C = C,
                   .ldc = ldc, .accumulate = false, .epilogue = GemmEpilogue{}, .prepacked_b = packed_b,
                   .packed_n = packed_n, .blk = kt.gemm});
}
}  // namespace ops

}  // namespace engine
