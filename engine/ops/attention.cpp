// Scaled dot-product attention: validates, turns the masks into per-row kernel arguments, and
// splits batch x head x query blocks across threads. Each work item is computed start to finish by
// one thread in a fixed order, so the result does not depend on the thread count.
#include "engine/attention.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/core/parallel.hpp"
#include "engine/error.hpp"
#include "engine/kernels/kernel_table.hpp"
#include "engine/ops.hpp"

namespace engine {
namespace {

using i64 = std::int64_t;

constexpr i64 kQueryBlock = 64;   // query rows per work item
constexpr i64 kKeyBlock = 256;    // keys per tile of the fused path: a 64 x 256 score tile is 64 KiB

struct Shapes {
  i64 B, H, Sq, Sk, dk, dv;
};

// The per-row view of the masks for one work item.
struct RowMasks {
  const AttentionMask& mask;
  const Shapes& s;
  // Keys [0, visible) are not masked by position (causal, lengths) for query row i of batch b.
  i64 visible(i64 b, i64 i) const {
    i64 vis = s.Sk;
    if (mask.causal && mask.causal_offset < s.Sk) vis = std::min(s.Sk, std::max<i64>(0, i + mask.causal_offset + 1));
    if (mask.valid_lengths != nullptr) vis = std::min<i64>(vis, mask.valid_lengths[b]);
    return vis;
  }
};

// Per-thread scratch, grown on first use and then reused.
struct Scratch {
  std::vector<float> key_bias;   // [Sk]: 0 or -inf from key_padding, for the current batch
  std::vector<float> row_bias;   // [Sk]: 0 or -inf from a bool attn_mask row
  std::vector<float> scores;     // materialized [rows, Sk]; fused [rows, kKeyBlock]
  std::vector<float> out_tile;   // fused [rows, dv]: the running output
  std::vector<float> row_max, row_sum;  // fused [rows]
  i64 key_bias_batch = -1;
};

template <class T>
T* grow(std::vector<T>& v, i64 n) {
  if (static_cast<i64>(v.size()) < n) v.resize(static_cast<std::size_t>(n));
  return v.data();
}

const float* key_bias_for(Scratch& sc, const AttentionMask& mask, i64 b, i64 Sk) {
  if (mask.key_padding == nullptr) return nullptr;
  float* bias = grow(sc.key_bias, Sk);
  if (sc.key_bias_batch != b) {
    const bool* pad = mask.key_padding + b * Sk;
    for (i64 j = 0; j < Sk; ++j) bias[j] = pad[j] ? -INFINITY : 0.0f;
    sc.key_bias_batch = b;
  }
  return bias;
}

// Additive mask row for query i, valid for keys [j0, j1): the float mask row itself, or that part
// of the bool row converted.
const float* row_bias_for(Scratch& sc, const AttentionMask& mask, i64 i, i64 Sk, i64 j0, i64 j1) {
  if (mask.attn_bias != nullptr) return mask.attn_bias + i * Sk;
  if (mask.attn_mask == nullptr) return nullptr;
  float* bias = grow(sc.row_bias, Sk);
  const bool* row = mask.attn_mask + i * Sk;
  for (i64 j = j0; j < j1; ++j) bias[j] = row[j] ? -INFINITY : 0.0f;
  return bias;
}

struct Item {
  const float* q;  // [rows, dk] at row stride ldq
  const float* k;  // [Sk, dk] at row stride ldk
  const float* v;  // [Sk, dv] at row stride ldv
  float* out;      // [rows, dv] at row stride ldo
  i64 ldq, ldk, ldv, ldo;
  i64 b, i0, rows;
};

void materialized(const kernels::KernelTable& kt, Scratch& sc, const Item& it, const Shapes& s,
                  const AttentionMask& mask, float scale) {
  const RowMasks rm{mask, s};
  // Keys past the last row's causal / length limit are never needed: compute only [0, key_end).
  i64 key_end = 0;
  for (i64 r = 0; r < it.rows; ++r) key_end = std::max(key_end, rm.visible(it.b, it.i0 + r));
  if (key_end == 0) {  // every row fully masked
    for (i64 r = 0; r < it.rows; ++r) std::fill_n(it.out + r * it.ldo, s.dv, 0.0f);
    return;
  }
  float* scores = grow(sc.scores, it.rows * key_end);  // [rows, key_end]
  gemm(it.rows, key_end, s.dk, it.q, it.ldq, it.k, it.ldk, Transpose::yes, scores, key_end);
  const float* key_bias = key_bias_for(sc, mask, it.b, s.Sk);
  for (i64 r = 0; r < it.rows; ++r) {
    const i64 i = it.i0 + r;
    kt.softmax_row(rm.visible(it.b, i), key_end, scores + r * key_end, scores + r * key_end, scale, key_bias,
                   row_bias_for(sc, mask, i, s.Sk, 0, key_end));
  }
  gemm(it.rows, s.dv, key_end, scores, key_end, it.v, it.ldv, Transpose::no, it.out, it.ldo);
}

void fused(const kernels::KernelTable& kt, Scratch& sc, const Item& it, const Shapes& s, const AttentionMask& mask,
           float scale) {
  const RowMasks rm{mask, s};
  float* acc = grow(sc.out_tile, it.rows * s.dv);  // [rows, dv]
  float* row_max = grow(sc.row_max, it.rows);
  float* row_sum = grow(sc.row_sum, it.rows);
  float* scores = grow(sc.scores, it.rows * kKeyBlock);  // [rows, kKeyBlock]
  std::fill_n(acc, it.rows * s.dv, 0.0f);
  std::fill_n(row_max, it.rows, -INFINITY);
  std::fill_n(row_sum, it.rows, 0.0f);
  i64 key_end = 0;  // no row sees a key at or past this one: later tiles are skipped, not computed
  for (i64 r = 0; r < it.rows; ++r) key_end = std::max(key_end, rm.visible(it.b, it.i0 + r));
  const float* key_bias = key_bias_for(sc, mask, it.b, s.Sk);
  for (i64 j0 = 0; j0 < key_end; j0 += kKeyBlock) {
    const i64 kb = std::min(kKeyBlock, key_end - j0);
    // A tile whose keys are all padding adds nothing to any row: skip it, do not compute it.
    if (mask.key_padding != nullptr) {
      const bool* pad = mask.key_padding + it.b * s.Sk + j0;
      if (std::all_of(pad, pad + kb, [](bool p) { return p; })) continue;
    }
    gemm(it.rows, kb, s.dk, it.q, it.ldq, it.k + j0 * it.ldk, it.ldk, Transpose::yes, scores, kb);
    for (i64 r = 0; r < it.rows; ++r) {
      const i64 i = it.i0 + r;
      const i64 vis = std::clamp<i64>(rm.visible(it.b, i) - j0, 0, kb);
      const float* bias_b = row_bias_for(sc, mask, i, s.Sk, j0, j0 + kb);
      const float correction =
          kt.online_softmax_row(vis, kb, scores + r * kb, scale, key_bias != nullptr ? key_bias + j0 : nullptr,
                                bias_b != nullptr ? bias_b + j0 : nullptr, row_max + r, row_sum + r);
      if (correction != 1.0f) {
        float* o = acc + r * s.dv;
        for (i64 c = 0; c < s.dv; ++c) o[c] *= correction;
      }
    }
    gemm(it.rows, s.dv, kb, scores, kb, it.v + j0 * it.ldv, it.ldv, Transpose::no, acc, s.dv, 1.0f);
  }
  for (i64 r = 0; r < it.rows; ++r) {
    float* o = it.out + r * it.ldo;
    const float* a = acc + r * s.dv;
    if (row_sum[r] > 0.0f) {
      const float inv = 1.0f / row_sum[r];
      for (i64 c = 0; c < s.dv; ++c) o[c] = a[c] * inv;
    } else {  // every key of this row masked
      std::fill_n(o, s.dv, 0.0f);
    }
  }
}

void check_view(const char* name, const TensorView& t, i64 d0, i64 d1, i64 d2, i64 d3) {
  if (t.data() == nullptr) fail("scaled_dot_product_attention: ", name, " is null");
  if (t.rank() != 4)
    fail("scaled_dot_product_attention: ", name, " must have rank 4 [B, H, S, d], got ", t.shape_string());
  const i64 want[4] = {d0, d1, d2, d3};
  for (int a = 0; a < 4; ++a)
    if (want[a] >= 0 && t.dim(a) != want[a])
      fail("scaled_dot_product_attention: ", name, " has shape ", t.shape_string(), ", expected dimension ", a, " = ",
           want[a]);
  if (t.stride(3) != 1)
    fail("scaled_dot_product_attention: the last dimension of ", name, " must be contiguous (stride 1), got stride ",
         t.stride(3));
}

}  // namespace

void scaled_dot_product_attention(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                                  const AttentionMask& mask, float scale, AttentionPath path) {
  check_view("q", q, -1, -1, -1, -1);
  const Shapes s{q.dim(0), q.dim(1), q.dim(2), k.rank() == 4 ? k.dim(2) : -1, q.dim(3), v.rank() == 4 ? v.dim(3) : -1};
  check_view("k", k, s.B, s.H, -1, s.dk);
  check_view("v", v, s.B, s.H, s.Sk, -1);
  check_view("out", out, s.B, s.H, s.Sq, s.dv);
  if (s.B < 1 || s.H < 1 || s.Sq < 1 || s.Sk < 1 || s.dk < 1 || s.dv < 1)
    fail("scaled_dot_product_attention: every dimension must be >= 1, got q ", q.shape_string(), ", k ",
         k.shape_string(), ", v ", v.shape_string());
  if (mask.attn_mask != nullptr && mask.attn_bias != nullptr)
    fail("scaled_dot_product_attention: give the attention mask either as bools (attn_mask) or as floats "
         "(attn_bias), not both");
  if (mask.valid_lengths != nullptr)
    for (i64 b = 0; b < s.B; ++b)
      if (mask.valid_lengths[b] < 0 || mask.valid_lengths[b] > s.Sk)
        fail("scaled_dot_product_attention: valid_lengths[", b, "] must be in [0, ", s.Sk, "], got ",
             mask.valid_lengths[b]);
  if (!std::isfinite(scale)) fail("scaled_dot_product_attention: scale must be finite, got ", scale);
  if (scale <= 0.0f) scale = 1.0f / std::sqrt(static_cast<float>(s.dk));
  const bool use_fused =
      path == AttentionPath::fused || (path == AttentionPath::automatic && s.Sk > kKeyBlock);

  const kernels::KernelTable& kt = kernels::active();
  const i64 q_blocks = (s.Sq + kQueryBlock - 1) / kQueryBlock;
  const i64 items = s.B * s.H * q_blocks;
  const int threads = parallel::threads_for(items);
  auto body = [&](int tid) {
    thread_local Scratch scratch;
    scratch.key_bias_batch = -1;
    const auto range = parallel::split_range(items, threads, tid);
    for (i64 item = range.begin; item < range.end; ++item) {
      const i64 bh = item / q_blocks, qb = item % q_blocks;
      const i64 b = bh / s.H, h = bh % s.H;
      const i64 i0 = qb * kQueryBlock;
      const Item it{q.data() + b * q.stride(0) + h * q.stride(1) + i0 * q.stride(2),
                    k.data() + b * k.stride(0) + h * k.stride(1),
                    v.data() + b * v.stride(0) + h * v.stride(1),
                    out.data() + b * out.stride(0) + h * out.stride(1) + i0 * out.stride(2),
                    q.stride(2), k.stride(2), v.stride(2), out.stride(2),
                    b, i0, std::min(kQueryBlock, s.Sq - i0)};
      if (use_fused) {
        fused(kt, scratch, it, s, mask, scale);
      } else {
        materialized(kt, scratch, it, s, mask, scale);
      }
    }
  };
  if (threads == 1) {
    body(0);
  } else {
#pragma omp parallel num_threads(threads)
    body(omp_get_thread_num());
  }
}

}  // namespace engine
