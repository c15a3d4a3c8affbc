// The kernel table: every kernel family, compiled once per instruction set, resolved into one
// table of function pointers plus the GEMM tile sizes (XNNPACK's approach). Kernels are pure
// functions over pointers, sizes and strides; they do not validate (the ops do) and do not thread.
#pragma once

#include <cstdint>

#include "engine/isa.hpp"
#include "engine/ops.hpp"

namespace engine::kernels {

// Blocking for the Goto/BLIS loops: an MR x NR register tile, KC deep, MC rows of A kept in L2,
// at most NC columns per thread chunk. Data in one place per instruction set.
struct GemmBlocking {
  int mr, nr, kc, mc, nc;
};

// Rows of A per MC block of a product K deep. MC is sized for a full KC-deep block of A
// (MC x KC floats in L2); a shallower product keeps those bytes by taking more rows, in whole
// MR-row tiles. Each block of rows walks every B panel again, and each panel's first tile there
// reads it from L2: plain 1024 x 1024 x 64 (Q·Kᵀ, B transposed) at 1 thread, 192-row blocks ->
// 768-row blocks, 0.996-1.006 -> 1.003-1.014x oneDNN, prepacked 0.982-0.989 -> 0.991-0.997x (old
// and new builds alternated, four paired rounds). The same tiles, so the same bits.
inline std::int64_t rows_per_block(const GemmBlocking& blk, std::int64_t K) {
  if (K >= blk.kc) return blk.mc;
  const std::int64_t rows = std::int64_t{blk.mc} * blk.kc / K / blk.mr * blk.mr;
  return rows > blk.mc ? rows : blk.mc;
}

// Packs op(B) rows [0, k) x cols [0, n) into NR-column panels:
//   out: [ceil(n / NR)][k][NR], columns past n zero-filled.
// trans == false: op(B)[kk][j] = b[kk * ldb + j];  trans == true: op(B)[kk][j] = b[j * ldb + kk].
using PackBFn = void (*)(std::int64_t k, std::int64_t n, const float* b, std::int64_t ldb, bool trans,
                         float* out);

// What happens when a C tile is stored.
struct GemmStore {
  bool accumulate;      // C += result (beta = 1) instead of C = result
  bool epilogue;        // add bias and apply the activation (only on the last K block)
  const float* bias;    // [n] for this call's columns, or null
  Activation activation;
};

// Packs rows [0, m) x cols [0, k) of A (row stride lda) into MR-row panels:
//   out: [ceil(m / MR)][k][MR], rows past m zero-filled.
using PackAFn = void (*)(std::int64_t m, std::int64_t k, const float* a, std::int64_t lda, float* out);

// The B data the caller will use after this block: [begin, begin + bytes), or bytes == 0 for none.
// The macro-kernel prefetches one B panel ahead into L2, one 64-byte line every 4 k steps of each
// tile; while it runs its last panel, that is the first panel here. A weight streamed from memory
// then arrives spread over the arithmetic instead of in a burst at the start of the next block.
struct GemmPrefetch {
  const char* begin = nullptr;
  std::int64_t bytes = 0;
};

// Where a macro-kernel reading B in place copies each panel as it computes, for the panel's tiles
// to read: `to` ([2][kc][NR] floats, or null: no copy), panels alternating between the two
// buffers; or with `keeps_all`, panel j at to + (j / NR) * kc * NR, the packed layout of the
// whole block, which then serves later calls as packed B.
struct GemmPanelCopy {
  float* to = nullptr;
  bool keeps_all = false;
};

// C[m, n] (row stride ldc) op= A[m, kc] · B[kc, n]. A is read in place (row stride lda) or, when
// a_packed, is the output of PackAFn. B is the output of PackBFn when ldb == 0 (ceil(n/NR) panels
// [kc][NR]), otherwise B[kc, n] read in place at row stride ldb, which needs n % NR == 0, and
// copied as `copy` says (with keeps_all, m > MR is required: the copying tile is a full one).
// Where the block is walked row by row (a small packed block, or one packed panel), tile rows go
// from row walk_from (0, or a multiple of MR below m) to m, then from 0 to walk_from; every other
// walk starts at row 0.
using GemmMacroFn = void (*)(std::int64_t m, std::int64_t n, std::int64_t kc, const float* a, std::int64_t lda,
                             bool a_packed, const float* b, std::int64_t ldb, float* c, std::int64_t ldc,
                             const GemmStore& store, const GemmPrefetch& next_b, const GemmPanelCopy& copy,
                             std::int64_t walk_from);

// One softmax row of n keys, of which [visible, n) are masked by position (causal / lengths):
//   y[j] = exp(v[j] - max) / sum,  v[j] = x[j] * scale + bias_a[j] + bias_b[j]  for j < visible,
//   y[j] = 0 for j >= visible, and y = 0 everywhere if every v is -inf (a fully masked row).
// bias_a and bias_b are additive masks (0 or -inf, or any float) and may be null.
using SoftmaxRowFn = void (*)(std::int64_t visible, std::int64_t n, const float* x, float* y, float scale,
                              const float* bias_a, const float* bias_b);

// One row of one key block of an online (flash) softmax. On entry s[0, n) holds raw scores
// (Q·Kᵀ, unscaled), *running_max / *running_sum the state after the previous key blocks
// (-inf / 0 before the first). Keys [visible, n) are masked by position. On return
// s[j] = exp(v[j] - new_max) (0 where masked), with v as in SoftmaxRowFn, the state is updated, and
// the result is the factor exp(old_max - new_max) by which the row's partial output must be
// rescaled (0 on the first visible block; 1 when nothing is visible yet).
using OnlineSoftmaxRowFn = float (*)(std::int64_t visible, std::int64_t n, float* s, float scale,
                                     const float* bias_a, const float* bias_b, float* running_max,
                                     float* running_sum);

// One LayerNorm row: s = x + residual (residual may be null), y = (s - mean) / sqrt(var + eps) *
// gamma + beta; s is written to sum_out when that is not null. y may alias x.
using LayerNormRowFn = void (*)(std::int64_t n, const float* x, const float* residual, const float* gamma,
                                const float* beta, float eps, float* y, float* sum_out);

// x[i] = act(x[i]), in place.
using ActivationFn = void (*)(Activation act, std::int64_t n, float* x);
// x[i] += bias[i].
using BiasAddFn = void (*)(std::int64_t n, const float* bias, float* x);
// y[i] = exp(x[i]) with the vectorized exp the softmax uses (exposed for its accuracy tests).
using ExpFn = void (*)(std::int64_t n, const float* x, float* y);
// Register-only FMA loop for measuring the peak: iters x 16 vector FMAs; returns a value to keep.
using FmaProbeFn = float (*)(std::int64_t iters);

struct KernelTable {
  Isa isa;
  const char* gemm_name;  // e.g. "f32_gemm_12x32__avx512"
  GemmBlocking gemm;
  PackAFn pack_a;
  PackBFn pack_b;
  GemmMacroFn gemm_macro;
  SoftmaxRowFn softmax_row;
  OnlineSoftmaxRowFn online_softmax_row;
  LayerNormRowFn layer_norm_row;
  ActivationFn activation;
  BiasAddFn bias_add;
  ExpFn exp;
  FmaProbeFn fma_probe;
  int vector_floats;  // floats per vector register
};

const KernelTable& table_for(Isa isa);
// The table of active_isa().
const KernelTable& active();

// Defined in isa_<name>.cpp, each compiled with its own instruction-set flags.
const KernelTable& avx512_table();
const KernelTable& avx2_table();
const KernelTable& portable_table();

}  // namespace engine::kernels
