// Every kernel family, written once over xsimd::batch<float, Arch> and instantiated by one small
// file per instruction set (isa_avx512.cpp, isa_avx2.cpp, isa_portable.cpp), each compiled with its
// own flags. Everything here lives in an anonymous namespace and calls no out-of-line std::
// templates: a helper shared by two ISA files could be emitted once with AVX-512 code and then
// run on an AVX2 machine (xsimd issue 633).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <xsimd/xsimd.hpp>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "engine/kernels/kernel_table.hpp"

namespace engine::kernels {
namespace {

using i64 = std::int64_t;

inline i64 imin(i64 a, i64 b) { return a < b ? a : b; }

// x·y + z (or, NEGATED, z - x·y), rounded once where the machine has FMA (AVX2, AVX-512) and twice
// in the portable build. xsimd 8 has an FMA for fma3 (AVX2) but none for AVX-512, where its fma()
// is the generic x * y + z: whether GCC then fused it depended on the code around it (-O3 fused the
// scores of a softmax row in one copy of the loop and not in another), and so did the last bit of
// the result. On AVX-512 these are the instructions themselves.
// The same for one float: a builtin, not std::fma, which is an out-of-line function that the
// linker could take from another instruction set's file.
[[gnu::always_inline]] inline float fused_fma_scalar(float x, float y, float z) {
#if defined(__FMA__)
  return __builtin_fmaf(x, y, z);
#else
  return x * y + z;
#endif
}

template <class Arch, bool NEGATED = false>
[[gnu::always_inline]] inline xsimd::batch<float, Arch> fused_fma(xsimd::batch<float, Arch> x,
                                                                  xsimd::batch<float, Arch> y,
                                                                  xsimd::batch<float, Arch> z) {
#if defined(__AVX512F__)
  if constexpr (xsimd::batch<float, Arch>::size == 16)
    return NEGATED ? _mm512_fnmadd_ps(x, y, z) : _mm512_fmadd_ps(x, y, z);
#endif
  return NEGATED ? xsimd::fnma(x, y, z) : xsimd::fma(x, y, z);
}

// The largest lane (a NaN lane may or may not win; a row holding NaN gives NaN either way). AVX2
// and AVX-512 halve the vector log2(W) times: a scalar walk over the lanes is a ~45-cycle chain,
// paid once per softmax row (eight vectors at S = 128).
template <class Arch>
float horizontal_max(xsimd::batch<float, Arch> v) {
#if defined(__AVX512F__)
  if constexpr (xsimd::batch<float, Arch>::size == 16) return _mm512_reduce_max_ps(v);
#endif
#if defined(__AVX2__)
  if constexpr (xsimd::batch<float, Arch>::size == 8) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
#endif
  alignas(64) float lanes[xsimd::batch<float, Arch>::size];
  v.store_aligned(lanes);
  float m = lanes[0];
  for (std::size_t i = 1; i < xsimd::batch<float, Arch>::size; ++i) m = lanes[i] > m ? lanes[i] : m;
  return m;
}

// ---------------------------------------------------------------------------------------------
// exp: Cody–Waite range reduction x = n·ln2 + r, |r| <= ln2/2, then a degree-6 polynomial for
// e^r (Cephes expf's coefficients), then times 2^n (times_pow2). Results below FLT_MIN
// (x < -87.336) are flushed to 0, so masked (-inf) scores give exactly 0; x > 88.722 gives +inf.
// Measured accuracy is stated in engine/kernels/README.md and checked by tests/kernels/exp_test.cpp.
// e^x = 2^n · e^r for U independent vectors, each step applied to all of them before the next so
// that their dependency chains overlap: x[u] in [-87.34, 88.72] becomes e^r, n[u] = round(x / ln2).
template <class Arch, int U>
[[gnu::always_inline]] inline void exp_reduced(xsimd::batch<float, Arch> (&x)[U], xsimd::batch<float, Arch> (&n)[U]) {
  using B = xsimd::batch<float, Arch>;
  B r[U], p[U];
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) {
    n[u] = xsimd::nearbyint(x[u] * B(1.44269504088896341f));
    r[u] = fused_fma<Arch, /*NEGATED=*/true>(n[u], B(0.693359375f), x[u]);  // ln2 split: hi part exact in float
    r[u] = fused_fma<Arch, /*NEGATED=*/true>(n[u], B(-2.12194440e-4f), r[u]);
  }
  constexpr float kPoly[] = {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                             5.0000001201e-1f};
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) p[u] = B(1.9875691500e-4f);
#pragma GCC unroll 8
  for (float c : kPoly)
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) p[u] = fused_fma<Arch>(p[u], r[u], B(c));
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) x[u] = fused_fma<Arch>(p[u], r[u] * r[u], r[u]) + B(1.0f);
}

// y · 2^n for integral n in [-126, 128] whose result is a float (or overflows to inf), rounded
// once. AVX-512 has it as one instruction (vscalefps); elsewhere 2^n is built in the exponent bits
// as two normal factors, so that n = 128 and n = -126 are both exact.
template <class Arch>
[[gnu::always_inline]] inline xsimd::batch<float, Arch> times_pow2(xsimd::batch<float, Arch> y,
                                                                   xsimd::batch<float, Arch> n) {
  using B = xsimd::batch<float, Arch>;
  using I = xsimd::batch<std::int32_t, Arch>;
#if defined(__AVX512F__)
  if constexpr (B::size == 16) return _mm512_scalef_ps(y, n);
#endif
  const I ni = xsimd::to_int(n);
  const I half = xsimd::select(ni > I(0), I(1), I(0));
  const B scale_a = xsimd::bitwise_cast<B>((ni - half + I(127)) << 23);
  const B scale_b = xsimd::bitwise_cast<B>((half + I(127)) << 23);
  return y * scale_a * scale_b;
}

// e^x for U independent vectors in place, interleaved like exp_reduced: one vector's ~30 dependent
// steps leave most of the FMA pipes idle (exp_array, AVX-512: 14.3 cycles a vector one at a time,
// 9.1 four at a time with vscalefps).
// NON_POSITIVE: the inputs are known to be <= 0, -inf or NaN (a softmax row shifted by its maximum).
// Same bits there, with 5 of the ~21 operations left out: nothing can overflow, and the clamp is
// written max(min_x, x), which returns x when x is NaN (MAXPS returns its second operand when
// either is NaN), so a NaN flows through the arithmetic instead of being selected back
// (exp_shifted_sum, AVX-512, a row in L1: 11.5 -> 9.7 cycles a vector).
template <class Arch, int U, bool NON_POSITIVE = false>
[[gnu::always_inline]] inline void exp_pack(xsimd::batch<float, Arch> (&x)[U]) {
  using B = xsimd::batch<float, Arch>;
  const B max_x(88.72283935546875f), min_x(-87.33654022216797f);
  B input[U], n[U];
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) {
    input[u] = x[u];
    x[u] = NON_POSITIVE ? xsimd::max(min_x, x[u]) : xsimd::min(xsimd::max(x[u], min_x), max_x);
  }
  exp_reduced<Arch, U>(x, n);
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) {
    B e = times_pow2<Arch>(x[u], n[u]);
    e = xsimd::select(input[u] < min_x, B(0.0f), e);  // underflow, -inf included
    if constexpr (!NON_POSITIVE) {
      e = xsimd::select(input[u] > max_x, B(INFINITY), e);
      e = xsimd::select(xsimd::isnan(input[u]), input[u], e);  // NaN in, NaN out (the clamp hid it)
    }
    x[u] = e;
  }
}

template <class Arch, bool NON_POSITIVE = false>
[[gnu::always_inline]] inline xsimd::batch<float, Arch> exp_vec(xsimd::batch<float, Arch> x) {
  xsimd::batch<float, Arch> v[1] = {x};
  exp_pack<Arch, 1, NON_POSITIVE>(v);
  return v[0];
}

// y[i] = f(x[i]) for whole groups of U vectors from the start of [0, n), f applied to a group at
// once (pack_fn(B (&)[U]) in place) so that the vectors' dependency chains overlap. Returns the
// number of floats done; the caller finishes the rest. y may be x.
template <class Arch, int U, class PackFn>
[[gnu::always_inline]] inline i64 map_in_packs(i64 n, const float* x, float* y, PackFn pack_fn) {
  using B = xsimd::batch<float, Arch>;
  constexpr i64 W = B::size;
  i64 i = 0;
  for (; i + U * W <= n; i += U * W) {
    B v[U];
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) v[u] = B::load_unaligned(x + i + u * W);
    pack_fn(v);
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) v[u].store_unaligned(y + i + u * W);
  }
  return i;
}

template <class Arch>
void exp_array(i64 n, const float* x, float* y) {
  using B = xsimd::batch<float, Arch>;
  constexpr i64 W = B::size;
  i64 i = map_in_packs<Arch, 4>(n, x, y, [](B(&v)[4]) __attribute__((always_inline)) { exp_pack<Arch, 4>(v); });
  for (; i + W <= n; i += W) exp_vec<Arch>(B::load_unaligned(x + i)).store_unaligned(y + i);
  if (i < n) {
    alignas(64) float tmp[W];
    for (i64 j = 0; j < W; ++j) tmp[j] = i + j < n ? x[i + j] : 0.0f;
    exp_vec<Arch>(B::load_aligned(tmp)).store_aligned(tmp);
    for (i64 j = 0; i + j < n; ++j) y[i + j] = tmp[j];
  }
}

// ---------------------------------------------------------------------------------------------
// GELU(erf) = x/2 (1 + erf(x/√2)) = x·Φ(x), Φ the standard normal CDF, written through
// E = Φ(-|x|) = erfc(a)/2, a = |x|/√2: Φ(x) = 1 - E for x >= 0 and E for x < 0, so negative x keep
// their relative accuracy instead of cancelling in 1 + erf. ln erfc(a) on [0, 3.92] is a degree-10
// polynomial in t = a/1.96 - 1 (fitted by tools/fit_gelu_erf.py, ~1.5e-7 in ln), then exponentiated;
// past a = 3.92 (|x| > 5.54), E < 2.5e-8 and Φ is 0 or 1 in float. Every lane runs the same ~30
// operations: xsimd's erf branches on |x| < 2/3 and, as soon as lanes mix (N(0, 1) inputs: nearly
// every vector), runs both of its paths and a division. Error: tests/kernels/activation_test.cpp.
template <class Arch, int U>
[[gnu::always_inline]] inline void gelu_erf(xsimd::batch<float, Arch> (&x)[U]) {
  using B = xsimd::batch<float, Arch>;
  constexpr float kLast = 3.92f;
  // ln erfc(a) = sum of kLnErfc[i] t^i, highest power first (Horner).
  constexpr float kLnErfc[] = {-3.098602e-04f, 4.7103985e-04f, 5.599255e-04f,  -2.7362222e-03f,
                               7.927678e-03f,  -2.198138e-02f, 5.492483e-02f,  -1.2839541e-01f,
                               -3.540959e+00f, -8.514906e+00f, -5.1896915e+00f};
  B a[U], t[U], q[U], n[U];
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) {
    a[u] = xsimd::abs(x[u]) * B(0.70710678118654752f);
    t[u] = fused_fma<Arch>(xsimd::min(a[u], B(kLast)), B(2.0f / kLast), B(-1.0f));
    q[u] = B(kLnErfc[0]);
  }
#pragma GCC unroll 16
  for (int i = 1; i < 11; ++i)
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) q[u] = fused_fma<Arch>(q[u], t[u], B(kLnErfc[i]));
  exp_reduced<Arch, U>(q, n);  // q in [-16.6, 0]: e^r · 2^(n - 1) below is a normal float
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) {
    const B half_erfc = times_pow2<Arch>(q[u], n[u] - B(1.0f));
    const B phi = xsimd::select(x[u] >= B(0.0f), B(1.0f) - half_erfc, half_erfc);
    x[u] = xsimd::select(a[u] > B(kLast), xsimd::select(x[u] > B(0.0f), x[u], B(0.0f)), x[u] * phi);
  }
}

// Activations, vectorized. GELU(erf) as above; GELU(tanh) = x/2 (1 + tanh(√(2/π)(x + 0.044715 x³))).
template <class Arch>
xsimd::batch<float, Arch> activate(Activation act, xsimd::batch<float, Arch> x) {
  using B = xsimd::batch<float, Arch>;
  switch (act) {
    case Activation::none: return x;
    case Activation::relu: return xsimd::max(x, B(0.0f));
    case Activation::gelu_erf: {
      B v[1] = {x};
      gelu_erf<Arch, 1>(v);
      return v[0];
    }
    case Activation::gelu_tanh: {
      const B inner = B(0.79788456080286536f) * fused_fma<Arch>(B(0.044715f) * x, x * x, x);
      return B(0.5f) * x * (B(1.0f) + xsimd::tanh(inner));
    }
  }
  return x;
}

template <class Arch>
void activation_array(Activation act, i64 n, float* x) {
  using B = xsimd::batch<float, Arch>;
  constexpr i64 W = B::size;
  if (act == Activation::none) return;
  i64 i = 0;
  // GELU(erf): eight vectors at a time, their ~30 dependent steps interleaved (AVX-512, a block in
  // L2: 22.9 cycles a vector four at a time, 17.9 eight at a time; same operations, same bits).
  if (act == Activation::gelu_erf)
    i = map_in_packs<Arch, 8>(n, x, x, [](B(&v)[8]) __attribute__((always_inline)) { gelu_erf<Arch, 8>(v); });
  for (; i + W <= n; i += W) activate<Arch>(act, B::load_unaligned(x + i)).store_unaligned(x + i);
  if (i < n) {
    alignas(64) float tmp[W] = {};
    for (i64 j = 0; i + j < n; ++j) tmp[j] = x[i + j];
    activate<Arch>(act, B::load_aligned(tmp)).store_aligned(tmp);
    for (i64 j = 0; i + j < n; ++j) x[i + j] = tmp[j];
  }
}

template <class Arch>
void bias_add_array(i64 n, const float* bias, float* x) {
  using B = xsimd::batch<float, Arch>;
  constexpr i64 W = B::size;
  i64 i = 0;
  for (; i + W <= n; i += W) (B::load_unaligned(x + i) + B::load_unaligned(bias + i)).store_unaligned(x + i);
  for (; i < n; ++i) x[i] += bias[i];
}

// ---------------------------------------------------------------------------------------------
#if defined(__AVX2__)
// dst[c * ldd + r] = src[r * lds + c] for an 8 x 8 block. Rows r and r + 4 are loaded as the two
// 128-bit halves of one register (an insert from memory), so that the two 4 x 4 transposes left
// are in-lane unpacks and shuffles: 16 shuffles instead of the classic 24 (the transposing pack of
// a 64 x 128 block, K of one attention head, 0.48 -> 0.43 us). Compiled only into the AVX2 and
// AVX-512 files, with internal linkage. Always inlined: GCC called it out of line from pack_b, a
// call per 8 x 8 block (plain qkt_s128, old and new builds alternated, three runs: 232-235 ->
// 234-237 GFLOP/s).
[[gnu::always_inline]] inline void transpose_8x8(const float* src, i64 lds, float* dst, i64 ldd) {
  __m256 r[8], t[8];
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src + i * lds)), _mm_loadu_ps(src + (i + 4) * lds), 1);
    r[i + 4] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src + i * lds + 4)),
                                    _mm_loadu_ps(src + (i + 4) * lds + 4), 1);
  }
  // r[0..3]: columns 0-3 of rows (0, 4), (1, 5), (2, 6), (3, 7); r[4..7]: columns 4-7.
  for (int h = 0; h < 8; h += 4) {
    t[h] = _mm256_unpacklo_ps(r[h], r[h + 1]);
    t[h + 1] = _mm256_unpackhi_ps(r[h], r[h + 1]);
    t[h + 2] = _mm256_unpacklo_ps(r[h + 2], r[h + 3]);
    t[h + 3] = _mm256_unpackhi_ps(r[h + 2], r[h + 3]);
    _mm256_storeu_ps(dst + (h + 0) * ldd, _mm256_shuffle_ps(t[h], t[h + 2], 0x44));
    _mm256_storeu_ps(dst + (h + 1) * ldd, _mm256_shuffle_ps(t[h], t[h + 2], 0xEE));
    _mm256_storeu_ps(dst + (h + 2) * ldd, _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44));
    _mm256_storeu_ps(dst + (h + 3) * ldd, _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE));
  }
}
#endif

// ---------------------------------------------------------------------------------------------
// GEMM. The micro-kernel keeps an MR x (NV·W) tile of C in registers: each k step loads NV vectors
// of the packed B panel and broadcasts one value from each of MR rows of A.
template <class Arch, int MR, int NV>
struct Gemm {
  using B = xsimd::batch<float, Arch>;
  static constexpr int W = static_cast<int>(B::size);
  static constexpr int NR = NV * W;

  // Rows [0, ROWS) of one tile; ROWS <= MR covers the bottom edge of C without a temporary.
  //   a: PACKED: an [kc][MR] panel made by pack_a (one contiguous stream, no cache-set conflicts
  //      between rows); otherwise ROWS rows of A read in place at row stride lda (MLAS-style:
  //      packing costs as much as the arithmetic when N is small).
  //   b: kc rows of NR floats at row stride ldb (NR for a packed panel);  c: ROWS x NR at row stride ldc.
  //   b_copy (COPY_B only): [kc][NR], receives the B rows as they are loaded (a packed panel).
  //   VECS < NV: only the first VECS vectors of each row (the right edge of C, whose packed panel
  //   is zero-padded past N): fewer FMAs, the same operations on the columns it computes.
  //   ahead (AHEAD only): rows of the next B panel to copy while this tile computes (see macro).
  // Rows of B that a tile copies as it computes, for the tiles of the next panel: `rows` rows from
  // src (row stride ld) into dst ([rows][NR]), one row every `every` groups of four k steps.
  struct RowCopy {
    const float* src = nullptr;
    i64 ld = 0;
    float* dst = nullptr;
    i64 rows = 0, every = 1;
  };

  template <int ROWS, bool PACKED, bool COPY_B = false, int VECS = NV>
  static void micro(i64 kc, const float* __restrict a, i64 lda, const float* __restrict b, i64 ldb, float* c,
                    i64 ldc, const GemmStore& store, const float* bias, const char* prefetch,
                    float* __restrict b_copy = nullptr) {
    tile<ROWS, PACKED, COPY_B, VECS>(kc, a, lda, b, ldb, c, ldc, store, bias, prefetch, b_copy);
  }
  // micro's body, inlined for full tiles (see tile_at).
  template <int ROWS, bool PACKED, bool COPY_B = false, int VECS = NV, bool AHEAD = false>
  [[gnu::always_inline]] static void tile(i64 kc, const float* __restrict a, i64 lda, const float* __restrict b,
                                          i64 ldb, float* c, i64 ldc, const GemmStore& store, const float* bias,
                                          const char* prefetch, float* __restrict b_copy = nullptr,
                                          RowCopy ahead = {}) {
    static_assert(VECS >= 1 && VECS <= NV && (VECS == NV || !COPY_B));
    B acc[ROWS][VECS];
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < VECS; ++v) acc[i][v] = B(0.0f);

    auto k_step = [&](i64 k) __attribute__((always_inline)) {
      B bv[VECS];
#pragma GCC unroll 4
      for (int v = 0; v < VECS; ++v) bv[v] = B::load_unaligned(b + v * W);
      if constexpr (COPY_B) {
        // This tile is the first to touch these rows of B, which come from L3 or memory: fetch them
        // 16 rows ahead into L1 (3% on 128 x 768 x 768; 4 or 8 rows ahead gained nothing, 32 less).
#pragma GCC unroll 4
        for (int v = 0; v < VECS; ++v) __builtin_prefetch(b + 16 * ldb + v * W, 0, 3);
#pragma GCC unroll 4
        for (int v = 0; v < VECS; ++v) bv[v].store_unaligned(b_copy + v * W);
        b_copy += NR;
      }
#pragma GCC unroll 16
      for (int i = 0; i < ROWS; ++i) {
        const B ai(PACKED ? a[i] : a[i * lda + k]);
        // xsimd::fma, which GCC fuses here: fused_fma's intrinsic made it spill an accumulator.
#pragma GCC unroll 4
        for (int v = 0; v < VECS; ++v) acc[i][v] = xsimd::fma(ai, bv[v], acc[i][v]);
      }
      if (PACKED) a += MR;
      b += ldb;
    };
    // One row of `ahead`, and the lines of the row two ahead into L1 (it comes from L3): the
    // first and last float and one per vector, since the rows need not start on a line.
    auto prefetch_row = [&](const float* row) __attribute__((always_inline)) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) __builtin_prefetch(row + v * W, 0, 3);
      __builtin_prefetch(row + NR - 1, 0, 3);
    };
    auto copy_row = [&]() __attribute__((always_inline)) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) B::load_unaligned(ahead.src + v * W).store_unaligned(ahead.dst + v * W);
      prefetch_row(ahead.src + 2 * ahead.ld);
      ahead.src += ahead.ld;
      ahead.dst += NR;
      --ahead.rows;
    };
    i64 countdown = ahead.every;
    if constexpr (AHEAD) {
      prefetch_row(ahead.src);
      prefetch_row(ahead.src + ahead.ld);
    }
    // Four k steps, then one line of the caller's next B block (see GemmPrefetch); prefetches
    // never fault, so running past the block's end is harmless. Every `every` such groups, one
    // row of `ahead`; what is left after the last group, at the end.
    i64 k = 0;
    for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) k_step(k + u);
      __builtin_prefetch(prefetch, 0, 2);
      prefetch += 64;
      if constexpr (AHEAD) {
        if (--countdown == 0) {
          countdown = ahead.every;
          if (ahead.rows > 0) copy_row();
        }
      }
    }
    for (; k < kc; ++k) k_step(k);
    if constexpr (AHEAD)
      while (ahead.rows > 0) copy_row();

    if (!store.epilogue || (bias == nullptr && store.activation == Activation::none)) {
      // The common store (every K block but the last): kept apart from the epilogue so that the
      // accumulators are not spilled around the activation code. One branch for the whole tile:
      // tested per vector, `store.accumulate` was re-read from memory after every store to C
      // (which GCC could not prove leaves it alone), a load, compare and branch per vector.
      if (store.accumulate) {
#pragma GCC unroll 16
        for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 4
          for (int v = 0; v < VECS; ++v) {
            float* dst = c + i * ldc + v * W;
            (acc[i][v] + B::load_unaligned(dst)).store_unaligned(dst);
          }
        return;
      }
#pragma GCC unroll 16
      for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < VECS; ++v) acc[i][v].store_unaligned(c + i * ldc + v * W);
      return;
    }
    // The epilogue: bias, then ReLU inline (one max). macro() applies every other activation to
    // the finished block, so no other reaches a tile. (Through activate(), which GCC keeps out of
    // line, every vector cost a call and two spills: 24 calls per tile on every layer GEMM.)
    // The flags are copied out first: as fields of `store` they were re-read after every store to C.
    const bool relu = store.activation == Activation::relu, accumulate = store.accumulate;
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < VECS; ++v) {
        float* dst = c + i * ldc + v * W;
        B r = acc[i][v];
        if (accumulate) r += B::load_unaligned(dst);
        if (bias != nullptr) r += B::load_unaligned(bias + v * W);
        if (relu) r = xsimd::max(r, B(0.0f));
        r.store_unaligned(dst);
      }
    }
  }

  using MicroFn = void (*)(i64, const float*, i64, const float*, i64, float*, i64, const GemmStore&, const float*,
                           const char*, float*);

  // [packed A?][vectors - 1][rows - 1]: tiles of every height (ROWS < MR: the bottom edge of C)
  // and every width (VECS < NV: the right edge, ceil(cols / W) vectors).
  template <bool PACKED, int VECS, int... R>
  static constexpr auto make_rows_table(std::integer_sequence<int, R...>) {
    return std::array<MicroFn, MR>{&micro<R + 1, PACKED, false, VECS>...};
  }
  template <bool PACKED, int... V>
  static constexpr auto make_width_tables(std::integer_sequence<int, V...>) {
    return std::array<std::array<MicroFn, MR>, NV>{make_rows_table<PACKED, V + 1>(std::make_integer_sequence<int, MR>{})...};
  }
  static constexpr std::array<std::array<std::array<MicroFn, MR>, NV>, 2> micro_by_shape = {
      make_width_tables<false>(std::make_integer_sequence<int, NV>{}),
      make_width_tables<true>(std::make_integer_sequence<int, NV>{})};
  // [packed A?]: a full tile that also copies the B rows it reads into a packed panel.
  static constexpr std::array<MicroFn, 2> micro_copying_b = {&micro<MR, false, true>, &micro<MR, true, true>};

  // What the tiles of one panel prefetch, one line every 4 k steps: the next panel (`bytes` of it
  // from `next`), then, once that is covered, their own already cached panel.
  struct PanelPrefetch {
    const char* next;
    i64 bytes, per_tile;
    const char* for_tile(i64 t, const float* own_panel) const {
      return t * per_tile < bytes ? next + t * per_tile : reinterpret_cast<const char*>(own_panel);
    }
  };

  // Rows of the next tile with `left` rows to go: MR, except that the last MR + 1 or MR + 2 rows
  // become two tiles of about half as many (A read in place only: packed A comes in MR-row
  // panels). A tile of 1 or 2 rows has 4-8 accumulators, too few to keep both FMA pipes busy
  // (latency 4), where 3-4 rows have 12-16. M = 128 (21 tiles and 2 rows) then ends in two tiles
  // of 4: plain `pv_s128` 1.006-1.011 -> 1.030-1.035x oneDNN (paired runs, 1 thread), W1_b1
  // 7.79 -> 7.69 ms (FFN-down and the output projection, `engine-profile`, alternated). Each row
  // is computed as before, so the bits are the same.
  static i64 tile_rows(i64 left) {
    if (left > MR && left <= MR + 2) return left / 2;
    return imin(MR, left);
  }

  // The full-width tiles of one panel from row i on: full tiles run the micro-kernel inlined, the
  // bottom edge through the table. With K = 64 a tile's call, saved registers and setup cost ~25
  // cycles of a ~790-cycle tile (measured over K = 8 .. 256). A function of its own, called once
  // per panel: inlined into macro, among its other live state, GCC spilled an accumulator.
  // Paired runs against oneDNN, 1 thread: plain `qkt_s1024` 0.995-1.002 -> 1.004-1.011x,
  // prepacked 0.961-0.971 -> 0.981-0.988x; plain `pv_s128` 0.997-1.001 -> 1.006-1.015x; plain
  // `lin_m1024_n768_k768` 1.002-1.005 -> 1.008-1.016x; W1_b8 and W3 unchanged; AVX2 the same
  // or a little faster.
  // With COPY_NEXT, the full tiles also copy the next panel for its tiles, `next.rows` rows each
  // (see macro): next.src / next.dst are the first row of the next panel and of its copy.
  template <bool PACKED, bool COPY_NEXT = false>
  [[gnu::noinline]] static void panel_tiles(i64 i, i64 m, i64 kc, const float* a, i64 lda, const float* b_panel,
                                            i64 b_stride, float* c, i64 ldc, const GemmStore& store,
                                            const float* bias, const PanelPrefetch& prefetch, RowCopy next = {}) {
    i64 copied = 0;  // rows of the next panel (COPY_NEXT)
    while (i < m) {
      RowCopy share{};
      if constexpr (COPY_NEXT)
        share = {next.src + copied * next.ld, next.ld, next.dst + copied * NR, imin(next.rows, kc - copied),
                 next.every};
      const i64 rows = tile_at<PACKED, COPY_NEXT>(i, m, kc, a, lda, b_panel, b_stride, c + i * ldc, ldc, store, bias,
                                                  prefetch.for_tile(i / MR, b_panel), share);
      if (rows == MR) copied += share.rows;
      i += rows;
    }
  }

  // Full tiles among rows [i, m) (see tile_rows).
  template <bool PACKED>
  static i64 full_tiles(i64 i, i64 m) {
    i64 full = 0;
    for (i64 rows = 0; i < m; i += rows) {
      rows = PACKED ? imin(MR, m - i) : tile_rows(m - i);
      full += rows == MR;
    }
    return full;
  }

  // A packed block of B small enough for L1, walked tile row by tile row (see rows_first in
  // macro), from row walk_from on and then from row 0; a function of its own for the same reason as
  // panel_tiles.
  template <bool PACKED>
  [[gnu::noinline]] static void block_rows_first(i64 m, i64 n, i64 kc, const float* a, i64 lda, const float* b,
                                                 float* c, i64 ldc, const GemmStore& store, const float* bias,
                                                 const PanelPrefetch& prefetch, i64 walk_from) {
    i64 t = 0;
    auto walk = [&](i64 begin, i64 end) __attribute__((always_inline)) {
      for (i64 i = begin, rows = 0; i < end; i += rows)
        for (i64 j = 0; j < n; j += NR) {  // n is whole panels, so rows is set
          const float* b_panel = b + (j / NR) * kc * NR;
          rows = tile_at<PACKED>(i, end, kc, a, lda, b_panel, NR, c + i * ldc + j, ldc, store,
                                 bias != nullptr ? bias + j : nullptr, prefetch.for_tile(t++, b_panel));
        }
    };
    walk(walk_from, m);
    walk(0, walk_from);  // whole tiles: walk_from is a multiple of MR
  }

  // The tile whose rows start at row i of an m-row block, against one panel of B; returns its rows
  // (see tile_rows). A full tile runs the micro-kernel inlined, a bottom edge through the table.
  // With COPY_NEXT a full tile also copies `copy`.
  template <bool PACKED, bool COPY_NEXT = false>
  [[gnu::always_inline]] static i64 tile_at(i64 i, i64 m, i64 kc, const float* a, i64 lda, const float* b_panel,
                                            i64 b_stride, float* c_tile, i64 ldc, const GemmStore& store,
                                            const float* bias, const char* ahead, const RowCopy& copy = {}) {
    const float* a_tile = PACKED ? a + (i / MR) * kc * MR : a + i * lda;
    const i64 rows = PACKED ? imin(MR, m - i) : tile_rows(m - i);
    if (rows == MR)
      tile<MR, PACKED, false, NV, COPY_NEXT>(kc, a_tile, lda, b_panel, b_stride, c_tile, ldc, store, bias, ahead,
                                             nullptr, copy);
    else
      micro_by_shape[PACKED ? 1 : 0][NV - 1][rows - 1](kc, a_tile, lda, b_panel, b_stride, c_tile, ldc, store, bias,
                                                       ahead, nullptr);
    return rows;
  }

  // Tiles column by column: each B panel is reused by every MR-row tile of A (row by row, with a
  // tile's A rows held in L1 and B streaming, measured the same at 1 thread and ~8% slower at 2),
  // except for a block of B small enough for L1 (rows_first).
  static void macro(i64 m, i64 n, i64 kc, const float* a, i64 lda, bool a_packed, const float* b, i64 ldb,
                    float* c, i64 ldc, const GemmStore& store, const GemmPrefetch& next_b, const GemmPanelCopy& copy,
                    i64 walk_from) {
    const auto& micro_by_width = micro_by_shape[a_packed ? 1 : 0];  // [vectors - 1][rows - 1]
    // B read in place (rows ldb apart) streams more slowly than a packed panel: 3-5% at M = 128,
    // N = 768, K = 768, even with B in L2. With more than one tile per panel, each panel is copied
    // (copy_of) and its tiles read the copy: the first panel by its first tile, as it reads the rows
    // for its own arithmetic; every later one by the full tiles of the panel before it, an even share
    // of the rows each, one row every few k steps (panel_tiles<.., COPY_NEXT>). Copied all at once
    // the copy's stores, which miss L1, slowed that first tile to 0.67 of a packed one, 2-3% of the
    // product at M = 128; spread thin they cost ~1% in 15 ms bursts, though still 2.5-3% against
    // packed B in 300 ms reps, where they are the whole difference. Paired runs against oneDNN,
    // old and new builds alternated: plain 128 x 768 x 768 1.007-1.016 -> 1.016-1.040x at 1
    // thread, 1.01-1.04 -> 1.02-1.04x at 2; 128 x 3072 x 768 1.22-1.24 -> 1.29-1.35x; 128 x 768 x 3072 1.26-1.27 ->
    // 1.28-1.30x; 1024 x 3072 x 768 (filling packed B) 1.23-1.25 -> 1.28x. AVX2: 128 x 3072 x 768
    // 101 -> 117 GFLOP/s. A panel whose tiles are all short (7-8 rows after the copying tile)
    // leaves the next panel to copy itself.
    const bool copy_panels = ldb != 0 && copy.to != nullptr && m > MR;
    const i64 prefetch_per_tile = kc / 4 * 64;  // bytes: one line every 4 k steps
    const i64 panel_bytes = kc * NR * static_cast<i64>(sizeof(float));
    // GELU is applied to the finished m x n block (in L2) after its last K block, row by row,
    // rather than inside the micro-kernel's store: there its ~30 dependent steps compete for
    // registers with 24 live accumulators and cannot overlap across vectors. Whole rows rather than
    // NR-column panels: loads and stores walk along a row instead of hopping ldc apart every four
    // vectors (measured a little faster on W1_b8's FFN-up). ReLU (one max) stays fused. Same
    // operations, same bits.
    const bool activate_block = store.epilogue && store.activation != Activation::none &&
                                store.activation != Activation::relu;
    GemmStore tile_store = store;
    if (activate_block) tile_store.activation = Activation::none;
    // A packed block of B that fits in L1 (32 KiB of 48: K = 64 attention products over up to 128
    // keys) is walked tile row by tile row instead: each tile's rows of A are read once and stay
    // in L1 while every panel passes, and C is written one row block at a time. Same tiles, same
    // bits. Plain `qkt_s128` (128 x 128 x 64, B transposed) 0.993-0.998 -> 1.001-1.008x oneDNN,
    // prepacked 1.014-1.019 -> 1.022-1.028x (paired runs, 1 thread); W1_b8's attention -3%,
    // W3 and W4 unchanged (`engine-profile`, alternated). Its full tiles inlined as in
    // panel_tiles: plain `qkt_s128` 0.990-0.993 -> 1.009-1.012x, prepacked 1.004-1.007 ->
    // 1.026-1.033x.
    constexpr i64 kRowsFirstMaxBBytes = 32 * 1024;
    const bool rows_first = ldb == 0 && n % NR == 0 && !activate_block &&
                            kc * n * static_cast<i64>(sizeof(float)) <= kRowsFirstMaxBBytes;
    // Only a walk that crosses the whole block row by row (rows_first, or one packed panel) starts
    // at walk_from: there another thread computing the columns next to this block at the same pace
    // would write the cache lines they share at the same moment (see run() in ops/gemm.cpp). Over
    // several panels a block's edges are far apart in time anyway (starting halfway measured 5%
    // slower on plain 1024 x 1024 x 64 at 2 threads), and B read in place starts with the tile that
    // copies it.
    if (!rows_first && !(n <= NR && ldb == 0)) walk_from = 0;
    if (rows_first) {
      // The caller's next block, at most as much of it as this block holds (one panel ahead in the
      // column walk), then each tile's own panel.
      const PanelPrefetch ahead{next_b.begin, imin(next_b.bytes, kRowsFirstMaxBBytes), prefetch_per_tile};
      (a_packed ? &block_rows_first<true> : &block_rows_first<false>)(m, n, kc, a, lda, b, c, ldc, tile_store,
                                                                      store.bias, ahead, walk_from);
      return;
    }
    // With copy_panels, panel j's copy: its place in the whole block (keeps_all), or one of two
    // buffers in turn, so that a panel's tiles read one while they fill the other.
    auto copy_of = [&](i64 j) { return copy.keeps_all ? copy.to + (j / NR) * kc * NR : copy.to + ((j / NR) & 1) * kc * NR; };
    bool copied_ahead = false;  // this panel was copied by the previous panel's tiles
    for (i64 j = 0; j < n; j += NR) {
      // Packed (ldb == 0): panels [kc][NR] one after another; in place: columns j.. of B's rows.
      const float* b_panel = ldb == 0 ? b + (j / NR) * kc * NR : b + j;
      i64 b_stride = ldb == 0 ? NR : ldb;
      const float* bias = store.bias != nullptr ? store.bias + j : nullptr;
      const i64 cols = imin(NR, n - j);
      // While this panel's tiles run, the next panel is prefetched into L2: the next one of this
      // block (packed B), or after the last the first panel of the caller's next block. One panel
      // ahead, not a whole block: a block ahead (512 KiB) shared the 1 MiB L2 with this block, A
      // and C, and evicted them (W1_b1 -5%, W1_b8 -3.4%, W2 -3.1%, W3 -1.3% at 1 thread).
      const bool next_in_block = ldb == 0 && j + NR < n;
      const char* next_panel = next_in_block ? reinterpret_cast<const char*>(b_panel + kc * NR) : next_b.begin;
      const i64 next_bytes = next_in_block ? panel_bytes : imin(next_b.bytes, panel_bytes);
      const PanelPrefetch panel_prefetch{next_panel, next_bytes, prefetch_per_tile};
      if (cols == NR) {
        i64 i = 0;
        if (copy_panels) {
          float* panel_copy = copy_of(j);
          if (!copied_ahead) {  // the first tile copies it, a full one since m > MR
            micro_copying_b[a_packed ? 1 : 0](kc, a, lda, b_panel, b_stride, c + j, ldc, tile_store, bias,
                                              panel_prefetch.for_tile(0, b_panel), panel_copy);
            i = MR;
          }
          b_panel = panel_copy;
          b_stride = NR;
          const i64 full = a_packed ? full_tiles<true>(i, m) : full_tiles<false>(i, m);
          copied_ahead = j + 2 * NR <= n && full >= 1;
          if (copied_ahead) {
            const i64 share = (kc + full - 1) / full, groups = kc / 4;
            const RowCopy next{b + j + NR, ldb, copy_of(j + NR), share, share >= groups ? 1 : groups / share};
            (a_packed ? &panel_tiles<true, true> : &panel_tiles<false, true>)(
                i, m, kc, a, lda, b_panel, NR, c + j, ldc, tile_store, bias, panel_prefetch, next);
            continue;
          }
        }
        const auto tiles = a_packed ? &panel_tiles<true> : &panel_tiles<false>;
        if (walk_from > 0)  // packed B, so i == 0: rows [walk_from, m), then [0, walk_from)
          tiles(walk_from, m, kc, a, lda, b_panel, b_stride, c + j, ldc, tile_store, bias, panel_prefetch, RowCopy{});
        tiles(i, walk_from > 0 ? walk_from : m, kc, a, lda, b_panel, b_stride, c + j, ldc, tile_store, bias,
              panel_prefetch, RowCopy{});
        continue;
      }
      // Rows from walk_from on, then from row 0.
      for (i64 t = 0, i = walk_from; t < (m + MR - 1) / MR; ++t, i = i + MR < m ? i + MR : 0) {
        const float* a_tile = a_packed ? a + (i / MR) * kc * MR : a + i * lda;
        const i64 rows = imin(MR, m - i);
        float* c_tile = c + i * ldc + j;
        const char* prefetch = panel_prefetch.for_tile(i / MR, b_panel);
        // Right edge (packed B only: its panel is zero-padded past N): ceil(cols / W) vectors
        // wide, the same arithmetic as a full tile on those columns. Straight into C when cols
        // fills whole vectors (attention's key blocks, N = 96); else into a temporary, then the
        // valid columns are copied. (It computed the full 64 columns before: W1_b8's attention
        // 2.14-2.21 -> 2.02-2.09 ms at 1 thread.)
        const i64 vecs = (cols + W - 1) / W;
        const MicroFn narrow = micro_by_width[vecs - 1][rows - 1];
        if (cols == vecs * W) {
          narrow(kc, a_tile, lda, b_panel, b_stride, c_tile, ldc, tile_store, bias, prefetch, nullptr);
          continue;
        }
        alignas(64) float tile[MR * NR];
        alignas(64) float bias_tile[NR] = {};
        for (i64 r = 0; r < rows; ++r)
          for (i64 q = 0; q < vecs * W; ++q) tile[r * NR + q] = (store.accumulate && q < cols) ? c_tile[r * ldc + q] : 0.0f;
        if (bias != nullptr)
          for (i64 q = 0; q < cols; ++q) bias_tile[q] = bias[q];
        narrow(kc, a_tile, lda, b_panel, b_stride, tile, NR, tile_store, bias != nullptr ? bias_tile : nullptr, prefetch,
               nullptr);
        for (i64 r = 0; r < rows; ++r)
          for (i64 q = 0; q < cols; ++q) c_tile[r * ldc + q] = tile[r * NR + q];
      }
    }
    if (activate_block)
      for (i64 r = 0; r < m; ++r) activation_array<Arch>(store.activation, n, c + r * ldc);
  }

  // A rows [0, m) x cols [0, k) (row stride lda) into MR-row panels [ceil(m/MR)][k][MR], rows past m
  // zero-filled.
  static void pack_a(i64 m, i64 k, const float* a, i64 lda, float* out) {
    for (i64 i = 0; i < m; i += MR) {
      const i64 rows = imin(MR, m - i);
      float* panel = out + (i / MR) * k * MR;
      if (rows == MR) {
        i64 k_done = 0;
#if defined(__AVX2__)
        // 8 k-columns of the MR rows at a time through an 8 x 8 register transpose (rows past MR
        // read row 0 again). Each transposed row is stored 8 wide at stride MR: the 8 - MR extra
        // floats land where the next store writes, and the last block that would run past the
        // panel is left to the scalar loop, so a packer never writes outside its own panels.
        if constexpr (MR <= 8) {
          for (; (k_done + 7) * MR + 8 <= k * MR; k_done += 8) {
            alignas(32) float block[8 * 8];
            for (int t = 0; t < 8; ++t) {
              const float* src = a + (i + (t < MR ? t : 0)) * lda + k_done;
              _mm256_store_ps(block + t * 8, _mm256_loadu_ps(src));
            }
            transpose_8x8(block, 8, block, 8);
            for (int t = 0; t < 8; ++t) _mm256_storeu_ps(panel + (k_done + t) * MR, _mm256_load_ps(block + t * 8));
          }
        }
#endif
        for (i64 kk = k_done; kk < k; ++kk)
#pragma GCC unroll 16
          for (int r = 0; r < MR; ++r) panel[kk * MR + r] = a[(i + r) * lda + kk];
      } else {
        for (i64 kk = 0; kk < k; ++kk)
          for (int r = 0; r < MR; ++r) panel[kk * MR + r] = r < rows ? a[(i + r) * lda + kk] : 0.0f;
      }
    }
  }

  static void pack_b(i64 k, i64 n, const float* b, i64 ldb, bool trans, float* out) {
    for (i64 j = 0; j < n; j += NR) {
      const i64 cols = imin(NR, n - j);
      float* panel = out + (j / NR) * k * NR;
      if (!trans) {
        for (i64 kk = 0; kk < k; ++kk) {
          const float* src = b + kk * ldb + j;
          float* dst = panel + kk * NR;
          if (cols == NR) {
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) B::load_unaligned(src + v * W).store_unaligned(dst + v * W);
          } else {
            for (i64 q = 0; q < NR; ++q) dst[q] = q < cols ? src[q] : 0.0f;
          }
        }
      } else {
        i64 k_done = 0;
#if defined(__AVX2__)
        // 8 x 8 blocks through registers: a row-by-row copy here costs a scalar load and store per
        // element, as much as the arithmetic of a K = 64 attention product.
        if (cols == NR) {
          for (; k_done + 8 <= k; k_done += 8)
            for (i64 q = 0; q < NR; q += 8) transpose_8x8(b + (j + q) * ldb + k_done, ldb, panel + k_done * NR + q, NR);
        }
#endif
        for (i64 q = 0; q < cols; ++q) {
          const float* src = b + (j + q) * ldb;
          for (i64 kk = k_done; kk < k; ++kk) panel[kk * NR + q] = src[kk];
        }
        for (i64 q = cols; q < NR; ++q)
          for (i64 kk = 0; kk < k; ++kk) panel[kk * NR + q] = 0.0f;
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// The two halves of every softmax row, shared by the plain and the online (flash) softmax.
//
// A row holds n floats of which [0, visible) are used. When the last, partial vector of
// [0, visible) still lies inside the row (it always does when n is a multiple of the vector width,
// as it is for attention's score blocks), it is processed as a whole vector with its lanes past
// visible masked, instead of element by element: causal rows end anywhere, and their scalar tails
// cost ~45 cycles per row in W4, where a row averages 16 vectors.

// Lanes [0, rem) of a vector: a mask for the last, partial vector of a row.
template <class Arch>
[[gnu::always_inline]] inline xsimd::batch_bool<float, Arch> first_lanes(i64 rem) {
  using B = xsimd::batch<float, Arch>;
  alignas(64) static constexpr float kLane[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  static_assert(B::size <= 16);
  return B::load_aligned(kLane) < B(static_cast<float>(rem));
}

// The scores' biases with a lone one first, so that the one given is always the FMA's addend
// below: callers set this up once per row.
inline void lone_bias_first(const float*& bias_a, const float*& bias_b) {
  if (bias_a != nullptr) return;
  bias_a = bias_b;
  bias_b = nullptr;
}

// x[j..j+W) * scale + bias_a + bias_b (after lone_bias_first), the multiply and the first add as one
// explicit FMA: left to the compiler, whether they were fused depended on the code around them
// (-O3 fused them in some copies and not in others), and so did the last bit of a score.
template <class Arch>
[[gnu::always_inline]] inline xsimd::batch<float, Arch> scores_vector(const float* x, const float* bias_a,
                                                                      const float* bias_b, i64 j,
                                                                      xsimd::batch<float, Arch> vscale) {
  using B = xsimd::batch<float, Arch>;
  const B v = B::load_unaligned(x + j);
  B s = bias_a != nullptr ? fused_fma<Arch>(v, vscale, B::load_unaligned(bias_a + j)) : v * vscale;
  if (bias_b != nullptr) s += B::load_unaligned(bias_b + j);
  return s;
}

// y[j] = x[j] * scale + bias_a[j] + bias_b[j] for j < visible (biases may be null; y may alias x);
// returns the largest (-inf when visible == 0 or every score is -inf). x, y and the biases hold n
// floats; y[visible, end of the last vector) may be set to -inf.
template <class Arch>
float masked_scores(i64 visible, i64 n, const float* x, float* y, float scale, const float* bias_a,
                    const float* bias_b) {
  using B = xsimd::batch<float, Arch>;
  constexpr i64 W = B::size;
  const B vscale(scale);
  B vmax(-INFINITY);
  lone_bias_first(bias_a, bias_b);
  auto scores_at = [&](i64 j) __attribute__((always_inline)) {
    return scores_vector<Arch>(x, bias_a, bias_b, j, vscale);
  };
  i64 j = 0;
  for (; j + W <= visible; j += W) {
    const B v = scores_at(j);
    v.store_unaligned(y + j);
    vmax = xsimd::max(vmax, v);
  }
  if (j < visible && j + W <= n) {
    const B v = xsimd::select(first_lanes<Arch>(visible - j), scores_at(j), B(-INFINITY));
    v.store_unaligned(y + j);
    vmax = xsimd::max(vmax, v);
    j = visible;
  }
  float row_max = horizontal_max<Arch>(vmax);
  for (; j < visible; ++j) {  // as scores_vector, lane by lane
    float v = bias_a != nullptr ? fused_fma_scalar(x[j], scale, bias_a[j]) : x[j] * scale;
    if (bias_b != nullptr) v += bias_b[j];
    y[j] = v;
    row_max = v > row_max ? v : row_max;
  }
  return row_max;
}

// y[j] = exp(y[j] - shift) for j < visible; returns their sum, added lane-wise in a fixed order
// (four running sums, one per vector of a group of four; leftover vectors and the tail, padded with
// exp(-inf) = 0, into the first), so it does not depend on how rows are threaded. y holds n floats;
// y[visible, end of the last vector) may be set to 0.
template <class Arch>
float exp_shifted_sum(i64 visible, i64 n, float* y, float shift) {
  using B = xsimd::batch<float, Arch>;
  constexpr i64 W = B::size;
  constexpr int U = 4;
  const B vshift(shift);
  B vsum[U] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
  i64 j = 0;
  for (; j + U * W <= visible; j += U * W) {  // four vectors at a time, their exps interleaved
    B e[U];
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) e[u] = B::load_unaligned(y + j + u * W) - vshift;
    exp_pack<Arch, U, /*NON_POSITIVE=*/true>(e);
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      e[u].store_unaligned(y + j + u * W);
      vsum[u] += e[u];
    }
  }
  for (; j + W <= visible; j += W) {
    const B e = exp_vec<Arch, /*NON_POSITIVE=*/true>(B::load_unaligned(y + j) - vshift);
    e.store_unaligned(y + j);
    vsum[0] += e;
  }
  if (j < visible && j + W <= n) {
    const B v = xsimd::select(first_lanes<Arch>(visible - j), B::load_unaligned(y + j), B(-INFINITY));
    const B e = exp_vec<Arch, /*NON_POSITIVE=*/true>(v - vshift);
    e.store_unaligned(y + j);
    vsum[0] += e;
  } else if (j < visible) {
    alignas(64) float tail[W];
    for (i64 t = 0; t < W; ++t) tail[t] = j + t < visible ? y[j + t] : -INFINITY;
    const B e = exp_vec<Arch, /*NON_POSITIVE=*/true>(B::load_aligned(tail) - vshift);
    e.store_aligned(tail);
    for (i64 t = 0; j + t < visible; ++t) y[j + t] = tail[t];
    vsum[0] += e;
  }
  return xsimd::hadd((vsum[0] + vsum[1]) + (vsum[2] + vsum[3]));
}

// A masked softmax row of whole vectors, at most R of them (attention's score rows at S <= 128 on
// AVX-512), kept in registers: one load and one store per vector instead of the three passes
// below, each storing and reloading the row. The same operations in the same order as those
// passes (masked lanes -inf, the maximum over the visible vectors, the exponential sums grouped by
// four as in exp_shifted_sum, masked keys written as 0), so the same bits.
template <class Arch, int R>
void softmax_row_in_registers(i64 visible, i64 n, const float* x, float* y, float scale, const float* bias_a,
                              const float* bias_b) {
  using B = xsimd::batch<float, Arch>;
  constexpr i64 W = B::size;
  const i64 vectors = n / W;
  const B vscale(scale);
  B v[R];
  B vmax(-INFINITY);
  lone_bias_first(bias_a, bias_b);
#pragma GCC unroll 8
  for (int u = 0; u < R; ++u) {
    const i64 j = u * W;
    v[u] = B(-INFINITY);
    if (u >= vectors || j >= visible) continue;
    B s = scores_vector<Arch>(x, bias_a, bias_b, j, vscale);
    if (j + W > visible) s = xsimd::select(first_lanes<Arch>(visible - j), s, B(-INFINITY));
    v[u] = s;
    vmax = xsimd::max(vmax, s);
  }
  const float row_max = horizontal_max<Arch>(vmax);
  if (row_max == -INFINITY) {  // every key masked (or no key visible): defined as zeros
    std::memset(y, 0, static_cast<std::size_t>(n) * sizeof(float));
    return;
  }
  const B vshift(row_max);
#pragma GCC unroll 8
  for (int u = 0; u < R; ++u) v[u] = v[u] - vshift;
  exp_pack<Arch, R, /*NON_POSITIVE=*/true>(v);
  // exp_shifted_sum's order: whole groups of four vectors inside [0, visible) into four sums, every
  // later vector into the first.
  const i64 grouped = visible / (4 * W) * 4;
  B vsum[4] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
#pragma GCC unroll 8
  for (int u = 0; u < R; ++u) {
    if (u >= vectors || u * W >= visible) continue;
    if (u < grouped) {
      vsum[u % 4] += v[u];
    } else {
      vsum[0] += v[u];
    }
  }
  const B vinv(1.0f / xsimd::hadd((vsum[0] + vsum[1]) + (vsum[2] + vsum[3])));
#pragma GCC unroll 8
  for (int u = 0; u < R; ++u) {
    const i64 j = u * W;
    if (u >= vectors) continue;
    B out = j < visible ? v[u] * vinv : B(0.0f);
    // Masked lanes of the last visible vector are 0 even when a NaN score made the row NaN.
    if (j < visible && j + W > visible) out = xsimd::select(first_lanes<Arch>(visible - j), out, B(0.0f));
    out.store_unaligned(y + j);
  }
}

// Masked softmax over one row; see SoftmaxRowFn.
template <class Arch>
void softmax_row(i64 visible, i64 n, const float* x, float* y, float scale, const float* bias_a,
                 const float* bias_b) {
  using B = xsimd::batch<float, Arch>;
  constexpr i64 W = B::size;
  // Up to 8 vectors in AVX-512's 32 registers, 4 in the 16 of AVX2 and SSE2 (more would spill);
  // the exponentials are computed for a power of two of vectors, so short rows pay for 2 or 4.
  constexpr i64 kRegisterVectors = W == 16 ? 8 : 4;
  if (n % W == 0 && n <= kRegisterVectors * W) {
    const i64 vectors = n / W;
    if (vectors <= 2) {
      softmax_row_in_registers<Arch, 2>(visible, n, x, y, scale, bias_a, bias_b);
    } else if (vectors <= 4 || kRegisterVectors == 4) {
      softmax_row_in_registers<Arch, 4>(visible, n, x, y, scale, bias_a, bias_b);
    } else {
      softmax_row_in_registers<Arch, 8>(visible, n, x, y, scale, bias_a, bias_b);
    }
    return;
  }
  const float row_max = masked_scores<Arch>(visible, n, x, y, scale, bias_a, bias_b);
  if (row_max == -INFINITY) {  // every key masked (or no key visible): defined as zeros; NaN flows on
    std::memset(y, 0, static_cast<std::size_t>(n) * sizeof(float));
    return;
  }
  const float inv = 1.0f / exp_shifted_sum<Arch>(visible, n, y, row_max);
  const B vinv(inv);
  i64 j = 0;
  for (; j + W <= visible; j += W) (B::load_unaligned(y + j) * vinv).store_unaligned(y + j);
  if (j < visible && j + W <= n) {  // lanes past visible hold 0 (exp_shifted_sum)
    (B::load_unaligned(y + j) * vinv).store_unaligned(y + j);
    j = visible;
  }
  for (; j < visible; ++j) y[j] *= inv;
  if (visible < n) std::memset(y + visible, 0, static_cast<std::size_t>(n - visible) * sizeof(float));
}

// One row of one key block of the online (flash) softmax; see OnlineSoftmaxRowFn.
template <class Arch>
float online_softmax_row(i64 visible, i64 n, float* s, float scale, const float* bias_a, const float* bias_b,
                         float* running_max, float* running_sum) {
  using B = xsimd::batch<float, Arch>;
  constexpr i64 W = B::size;
  const float block_max = masked_scores<Arch>(visible, n, s, s, scale, bias_a, bias_b);
  const float old_max = *running_max;
  const float new_max = block_max > old_max ? block_max : old_max;
  if (new_max == -INFINITY) {  // nothing visible so far: no weight, nothing to rescale
    std::memset(s, 0, static_cast<std::size_t>(n) * sizeof(float));
    return 1.0f;
  }
  alignas(64) float lanes[W];
  exp_vec<Arch>(B(old_max - new_max)).store_aligned(lanes);  // exp(-inf) = 0 on the first block
  const float correction = lanes[0];
  const float block_sum = exp_shifted_sum<Arch>(visible, n, s, new_max);
  if (visible < n) std::memset(s + visible, 0, static_cast<std::size_t>(n - visible) * sizeof(float));
  *running_sum = *running_sum * correction + block_sum;
  *running_max = new_max;
  return correction;
}

// ---------------------------------------------------------------------------------------------
// LayerNorm over one row; see LayerNormRowFn. Two-pass variance for accuracy. Each pass sums into
// four vector accumulators, one per vector of a group of four (leftover vectors into the first):
// with one, every add waited for the previous one. `layer_norm` with a residual, one thread, rows
// hot in L2 or L3, old and new library alternated: 768 columns 172-192 -> 140-151 ns a row,
// 512 columns 93-110 -> 90-103.
template <class Arch>
void layer_norm_row(i64 n, const float* x, const float* residual, const float* gamma, const float* beta,
                    float eps, float* y, float* sum_out) {
  using B = xsimd::batch<float, Arch>;
  constexpr i64 W = B::size;
  constexpr int U = 4;
  float* s = sum_out != nullptr ? sum_out : y;  // where x + residual lives during the passes
  auto sum_in = [&](i64 j) __attribute__((always_inline)) {
    B v = B::load_unaligned(x + j);
    if (residual != nullptr) v += B::load_unaligned(residual + j);
    v.store_unaligned(s + j);
    return v;
  };
  B vsum[U] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
  float tail_sum = 0.0f;
  i64 j = 0;
  for (; j + U * W <= n; j += U * W)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) vsum[u] += sum_in(j + u * W);
  for (; j + W <= n; j += W) vsum[0] += sum_in(j);
  for (; j < n; ++j) {
    const float v = x[j] + (residual != nullptr ? residual[j] : 0.0f);
    s[j] = v;
    tail_sum += v;
  }
  const float mean = (xsimd::hadd((vsum[0] + vsum[1]) + (vsum[2] + vsum[3])) + tail_sum) / static_cast<float>(n);
  // Pass 2: deviations d = s - mean from the float mean. Their sum hands back the mean's rounding
  // error (the corrected two-pass algorithm of Chan, Golub & LeVeque): the true deviations are
  // d - corr with corr = sum(d) / n, and sum((d - corr)^2) = sum(d^2) - corr * sum(d). Pass 3
  // subtracts corr from each d rather than folding it into the float mean, so a row far from 0
  // (mean 1e4, spread 1) is not limited to half an ulp of its mean, and a constant row gives
  // deviations of exactly 0 (output == beta) even with eps = 1e-12.
  const B vmean(mean);
  B vdev[U] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)}, vvar[U] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
  auto deviation_at = [&](i64 at, int u) __attribute__((always_inline)) {
    const B d = B::load_unaligned(s + at) - vmean;
    vdev[u] += d;
    vvar[u] = fused_fma<Arch>(d, d, vvar[u]);
  };
  float tail_dev = 0.0f, tail_var = 0.0f;
  for (j = 0; j + U * W <= n; j += U * W)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) deviation_at(j + u * W, u);
  for (; j + W <= n; j += W) deviation_at(j, 0);
  for (; j < n; ++j) {
    const float d = s[j] - mean;
    tail_dev += d;
    tail_var += d * d;
  }
  const float dev_sum = xsimd::hadd((vdev[0] + vdev[1]) + (vdev[2] + vdev[3])) + tail_dev;
  const float corr = dev_sum / static_cast<float>(n);
  const float square_sum = xsimd::hadd((vvar[0] + vvar[1]) + (vvar[2] + vvar[3])) + tail_var;
  float var = (square_sum - corr * dev_sum) / static_cast<float>(n);
  var = var < 0.0f ? 0.0f : var;  // rounding can leave a tiny negative; NaN stays NaN
  const float rstd = 1.0f / std::sqrt(var + eps);
  const B vrstd(rstd), vcorr(corr);
  for (j = 0; j + W <= n; j += W) {
    const B d = ((B::load_unaligned(s + j) - vmean) - vcorr) * vrstd;
    fused_fma<Arch>(d, B::load_unaligned(gamma + j), B::load_unaligned(beta + j)).store_unaligned(y + j);
  }
  for (; j < n; ++j) y[j] = ((s[j] - mean) - corr) * rstd * gamma[j] + beta[j];
}

// ---------------------------------------------------------------------------------------------
// The FMA peak probe: 16 independent chains of register-only FMAs (enough to cover 2 pipes x 4
// cycles of latency), `iters` steps each. Returns a value that depends on every chain so the
// compiler keeps them. FLOPs done: iters * 16 * W * 2.
template <class Arch>
float fma_probe(i64 iters) {
  using B = xsimd::batch<float, Arch>;
  B acc[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) acc[i] = B(static_cast<float>(i) * 1e-3f);
  const B x(0.999999f), y(1e-7f);
  for (i64 it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = xsimd::fma(acc[i], x, y);
  }
  B total(0.0f);
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) total += acc[i];
  return xsimd::hadd(total);
}

// ---------------------------------------------------------------------------------------------
template <class Arch, int MR, int NV>
KernelTable make_table(Isa isa, const char* gemm_name, int kc, int mc, int nc) {
  using G = Gemm<Arch, MR, NV>;
  return KernelTable{
      isa,
      gemm_name,
      GemmBlocking{MR, G::NR, kc, mc, nc},
      &G::pack_a,
      &G::pack_b,
      &G::macro,
      &softmax_row<Arch>,
      &online_softmax_row<Arch>,
      &layer_norm_row<Arch>,
      &activation_array<Arch>,
      &bias_add_array<Arch>,
      &exp_array<Arch>,
      &fma_probe<Arch>,
      static_cast<int>(xsimd::batch<float, Arch>::size),
  };
}

}  // namespace
}  // namespace engine::kernels
