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
#include "engine/ops/gemm_internal.hpp"
#include "engine/ops/mask_rows.hpp"

namespace engine {
namespace {

using i64 = std::int64_t;

// Query rows per work item: 64, or 128 when the keys are few (each item packs its keys, transposed,
// for Q·Kᵀ, and taller items pack them for more rows: W3's and W1's S = 128 attention ran 6-12%
// faster) and there are still two items per thread. Results do not depend on the choice.
constexpr i64 kQueryBlock = 64;
constexpr i64 kTallQueryBlock = 128;
constexpr i64 kTallMaxKeys = 256;
constexpr i64 kKeyBlock = 256;    // keys per tile of the fused path: a 64 x 256 score tile is 64 KiB

struct Shapes {
  i64 B, H, Sq, Sk, dk, dv;
};

// Keys [result, Sk) of batch b are all key padding: they add nothing to any row, so they are not
// computed (exact: their weights would be exp(-inf) = 0). W1_b8 pads the last 32 of 128 keys in
// half its batches.
i64 unpadded_key_end(const AttentionMask& mask, i64 Sk, i64 b) {
  if (mask.key_padding.empty()) return Sk;
  const bool* pad = mask.key_padding.data() + b * Sk;
  i64 end = Sk;
  while (end > 0 && pad[end - 1]) --end;
  return end;
}

// The per-row view of the masks for one work item (batch b).
struct RowMasks {
  const AttentionMask& mask;
  const Shapes& s;
  i64 b;
  i64 key_limit;  // unpadded_key_end(mask, Sk, b)
  // Keys [0, visible) are not masked by position (causal, lengths, trailing padding) for query row
  // i; never decreasing in i.
  i64 visible(i64 i) const {
    return std::min(key_limit, ops::visible_keys(mask.causal, mask.causal_offset,
                                                 mask.valid_lengths.empty() ? nullptr : mask.valid_lengths.data() + b,
                                                 i, s.Sk));
  }
};

// One thread's scratch, carved from one block (the caller's arena, or a per-thread buffer), each
// part starting on a cache line:
//   materialized: scores [rows, Sk] | key_bias [Sk] | row_bias [Sk] | packed_keys (Kᵀ in panels)
//   fused:        scores [rows, KB] | acc [rows, dv] | row_max [rows] | row_sum [rows] |
//                 key_bias [KB] | row_bias [KB]          (independent of Sk)
// key_bias holds key_padding as 0 / -inf, row_bias a bool attn_mask row the same way.
struct Scratch {
  float* scores;
  float* acc;
  float* row_max;
  float* row_sum;
  float* key_bias;
  float* row_bias;
  float* packed_keys;  // materialized: op(B) = Kᵀ [dk, keys] in the GEMM's panel layout
};

constexpr i64 kLineFloats = 16;  // 64-byte cache line
i64 line_up(i64 n) { return (n + kLineFloats - 1) / kLineFloats * kLineFloats; }

i64 query_block(const Shapes& s) {
  const i64 tall_items = s.B * s.H * ((s.Sq + kTallQueryBlock - 1) / kTallQueryBlock);
  return s.Sk <= kTallMaxKeys && tall_items >= 2 * num_threads() ? kTallQueryBlock : kQueryBlock;
}

// Sized for the tallest block the keys allow, whatever the thread count, so that a workspace sized
// by attention_workspace_bytes() fits a call made after the thread count changed.
i64 max_query_rows(const Shapes& s) { return std::min(s.Sk <= kTallMaxKeys ? kTallQueryBlock : kQueryBlock, s.Sq); }

i64 scratch_floats(bool fused, const Shapes& s) {
  const i64 rows = max_query_rows(s);
  if (!fused) return line_up(rows * s.Sk) + 2 * line_up(s.Sk) + line_up(ops::packed_b_floats(s.dk, s.Sk));
  const i64 kb = std::min(kKeyBlock, s.Sk);
  return line_up(rows * kb) + line_up(rows * s.dv) + 2 * line_up(rows) + 2 * line_up(kb);
}

Scratch carve(float* base, bool fused, const Shapes& s) {
  const i64 rows = max_query_rows(s);
  Scratch sc{};
  float* p = base;
  auto take = [&p](i64 n) {
    float* out = p;
    p += line_up(n);
    return out;
  };
  if (!fused) {
    sc.scores = take(rows * s.Sk);
    sc.key_bias = take(s.Sk);
    sc.row_bias = take(s.Sk);
    sc.packed_keys = take(ops::packed_b_floats(s.dk, s.Sk));
    return sc;
  }
  const i64 kb = std::min(kKeyBlock, s.Sk);
  sc.scores = take(rows * kb);
  sc.acc = take(rows * s.dv);
  sc.row_max = take(rows);
  sc.row_sum = take(rows);
  sc.key_bias = take(kb);
  sc.row_bias = take(kb);
  return sc;
}

// Additive key-padding mask for keys [j0, j1) of batch b, written to out[0, j1 - j0); null if none.
const float* key_bias_for(float* out, const AttentionMask& mask, i64 b, i64 Sk, i64 j0, i64 j1) {
  if (mask.key_padding.empty()) return nullptr;
  ops::mask_as_bias(mask.key_padding.data() + b * Sk + j0, j1 - j0, out);
  return out;
}

// Additive attention-mask row i for keys [j0, j1), indexed from j0: the float mask itself, or the
// bool mask converted into out; null if none.
const float* row_bias_for(float* out, const AttentionMask& mask, i64 i, i64 Sk, i64 j0, i64 j1) {
  if (!mask.attn_bias.empty()) return mask.attn_bias.data() + i * Sk + j0;
  if (mask.attn_mask.empty()) return nullptr;
  ops::mask_as_bias(mask.attn_mask.data() + i * Sk + j0, j1 - j0, out);
  return out;
}

struct Item {
  const float* q;  // [rows, dk] at row stride ldq
  const float* k;  // [Sk, dk] at row stride ldk
  const float* v;  // [Sk, dv] at row stride ldv
  float* out;      // [rows, dv] at row stride ldo
  i64 ldq, ldk, ldv, ldo;
  i64 b, i0, rows;
  i64 block_rows;  // the rows are computed in blocks of this many (the materialized path)
  i64 key_limit;   // unpadded_key_end() of batch b
};

// Keys past the last of rows [i0, i0 + rows)'s causal / length / trailing padding limit are never
// needed; visible() never decreases with the row, so that is the last row's limit.
i64 keys_needed(const RowMasks& rm, i64 i0, i64 rows) { return rows > 0 ? rm.visible(i0 + rows - 1) : 0; }

// The item's keys are packed (Kᵀ) once, then each block of block_rows queries computes its scores
// [rows, key_end] on the first key_end of them, its softmax, and its share of P·V.
void materialized(const kernels::KernelTable& kt, const Scratch& sc, const Item& it, const Shapes& s,
                  const AttentionMask& mask, float scale) {
  const RowMasks rm{mask, s, it.b, it.key_limit};
  const i64 item_keys = keys_needed(rm, it.i0, it.rows);
  if (item_keys > 0) ops::pack_b_on_this_thread(s.dk, item_keys, it.k, it.ldk, Transpose::yes, sc.packed_keys);
  const float* key_bias = key_bias_for(sc.key_bias, mask, it.b, s.Sk, 0, item_keys);
  for (i64 r0 = 0; r0 < it.rows; r0 += it.block_rows) {
    const i64 rows = std::min(it.block_rows, it.rows - r0), i0 = it.i0 + r0;
    float* out = it.out + r0 * it.ldo;
    const i64 key_end = keys_needed(rm, i0, rows);
    if (key_end == 0) {  // every row of the block fully masked
      for (i64 r = 0; r < rows; ++r) std::fill_n(out + r * it.ldo, s.dv, 0.0f);
      continue;
    }
    float* scores = sc.scores;  // [rows, key_end]
    ops::gemm_packed_columns(rows, key_end, s.dk, it.q + r0 * it.ldq, it.ldq, sc.packed_keys, item_keys, scores,
                             key_end);
    for (i64 r = 0; r < rows; ++r) {
      const i64 i = i0 + r;
      kt.softmax_row(rm.visible(i), key_end, scores + r * key_end, scores + r * key_end, scale, key_bias,
                     row_bias_for(sc.row_bias, mask, i, s.Sk, 0, key_end));
    }
    gemm(rows, s.dv, key_end, scores, key_end, it.v, it.ldv, Transpose::no, out, it.ldo);
  }
}

void fused(const kernels::KernelTable& kt, const Scratch& sc, const Item& it, const Shapes& s,
           const AttentionMask& mask, float scale) {
  const RowMasks rm{mask, s, it.b, it.key_limit};
  float* acc = sc.acc;        // [rows, dv]: the running output
  float* scores = sc.scores;  // [rows, kb]
  std::fill_n(acc, it.rows * s.dv, 0.0f);
  std::fill_n(sc.row_max, it.rows, -INFINITY);
  std::fill_n(sc.row_sum, it.rows, 0.0f);
  const i64 key_end = keys_needed(rm, it.i0, it.rows);  // later tiles are skipped, not computed
  for (i64 j0 = 0; j0 < key_end; j0 += kKeyBlock) {
    const i64 kb = std::min(kKeyBlock, key_end - j0);
    // A tile whose keys are all padding adds nothing to any row: skip it, do not compute it.
    if (!mask.key_padding.empty()) {
      const bool* pad = mask.key_padding.data() + it.b * s.Sk + j0;
      if (std::all_of(pad, pad + kb, [](bool p) { return p; })) continue;
    }
    gemm(it.rows, kb, s.dk, it.q, it.ldq, it.k + j0 * it.ldk, it.ldk, Transpose::yes, scores, kb);
    const float* key_bias = key_bias_for(sc.key_bias, mask, it.b, s.Sk, j0, j0 + kb);
    for (i64 r = 0; r < it.rows; ++r) {
      const i64 i = it.i0 + r;
      const i64 vis = std::clamp<i64>(rm.visible(i) - j0, 0, kb);
      const float correction =
          kt.online_softmax_row(vis, kb, scores + r * kb, scale, key_bias,
                                row_bias_for(sc.row_bias, mask, i, s.Sk, j0, j0 + kb), sc.row_max + r, sc.row_sum + r);
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
    if (sc.row_sum[r] > 0.0f) {
      const float inv = 1.0f / sc.row_sum[r];
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

// Validates the views (and the masks, when given) and returns the sizes.
Shapes validate(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView* out,
                const AttentionMask* mask) {
  check_view("q", q, -1, -1, -1, -1);
  const Shapes s{q.dim(0), q.dim(1), q.dim(2), k.rank() == 4 ? k.dim(2) : -1, q.dim(3), v.rank() == 4 ? v.dim(3) : -1};
  check_view("k", k, s.B, s.H, -1, s.dk);
  check_view("v", v, s.B, s.H, s.Sk, -1);
  if (out != nullptr) check_view("out", *out, s.B, s.H, s.Sq, s.dv);
  if (s.B < 1 || s.H < 1 || s.Sq < 1 || s.Sk < 1 || s.dk < 1 || s.dv < 1)
    fail("scaled_dot_product_attention: every dimension must be >= 1, got q ", q.shape_string(), ", k ",
         k.shape_string(), ", v ", v.shape_string());
  if (mask == nullptr) return s;
  check_attention_mask(*mask, s.B, s.Sq, s.Sk, "scaled_dot_product_attention", "mask");
  return s;
}

// Measured here (W4 and causal S = 2048, 4096): the materialized path is 3-6% faster while its
// 64 x Sk score block fits in L2 (1 MiB, Sk <= 4096); past that the fused path's O(tile) scratch wins.
constexpr i64 kMaterializedMaxKeys = 4096;

bool uses_fused(AttentionPath path, const Shapes& s) {
  return path == AttentionPath::fused || (path == AttentionPath::automatic && s.Sk > kMaterializedMaxKeys);
}

// Per-thread buffers for calls without an arena: grown on first use, then reused.
thread_local std::vector<float> t_fallback;
// The calling thread's per-call tables: each batch's unpadded_key_end, and the first work item of
// each thread (threads + 1 entries).
thread_local std::vector<i64> t_key_limits, t_first_item;

// Splits the work items into contiguous runs of about equal cost, one per thread: an item costs
// about rows x (keys it needs + 16) per query block. By count alone, W1_b8 at 2 threads gave one
// thread the four unpadded batches and the other the four padded ones (96 of 128 keys): its
// attention took 1.18-1.20 ms against 1.06-1.08 split by cost. Item i goes to the thread whose
// share of the total holds the middle of its cost. Results do not depend on the split.
template <class CostFn>
void split_by_cost(i64 items, int threads, CostFn cost_of, std::vector<i64>& first_item) {
  first_item.assign(static_cast<std::size_t>(threads) + 1, items);
  first_item[0] = 0;
  if (threads == 1) return;
  double total = 0.0;
  for (i64 i = 0; i < items; ++i) total += cost_of(i);
  double before = 0.0;
  int next_thread = 0;
  for (i64 i = 0; i < items; ++i) {
    const double c = cost_of(i);
    const int t = std::min(threads - 1, static_cast<int>((before + 0.5 * c) * threads / total));
    while (next_thread <= t) first_item[static_cast<std::size_t>(next_thread++)] = i;
    before += c;
  }
}

}  // namespace

void check_attention_mask(const AttentionMask& mask, i64 batch, i64 q_len, i64 k_len, const char* who,
                          const char* name) {
  const auto check_size = [&](std::size_t size, const char* field, i64 rows, const char* rows_name, i64 cols,
                              const char* cols_name) {
    if (size != 0 && size != static_cast<std::size_t>(rows * cols))
      fail(who, ": ", name, ".", field, " has ", size, " elements, expected ", rows_name, " x ", cols_name, " = ", rows,
           " x ", cols, " = ", rows * cols);
  };
  check_size(mask.valid_lengths.size(), "valid_lengths", batch, "batch", 1, "1");
  check_size(mask.key_padding.size(), "key_padding", batch, "batch", k_len, "key length");
  check_size(mask.attn_mask.size(), "attn_mask", q_len, "query length", k_len, "key length");
  check_size(mask.attn_bias.size(), "attn_bias", q_len, "query length", k_len, "key length");
  if (!mask.attn_mask.empty() && !mask.attn_bias.empty())
    fail(who, ": ", name, " gives the attention mask both as bools (attn_mask) and as floats (attn_bias); give one");
  for (std::size_t b = 0; b < mask.valid_lengths.size(); ++b)
    if (mask.valid_lengths[b] < 0 || mask.valid_lengths[b] > k_len)
      fail(who, ": ", name, ".valid_lengths[", b, "] must be in [0, ", k_len, "], got ", mask.valid_lengths[b]);
}

std::size_t attention_workspace_bytes(const TensorView& q, const TensorView& k, const TensorView& v,
                                      AttentionPath path) {
  const Shapes s = validate(q, k, v, nullptr, nullptr);
  return static_cast<std::size_t>(scratch_floats(uses_fused(path, s), s) * num_threads()) * sizeof(float);
}

void scaled_dot_product_attention(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                                  const AttentionMask& mask, float scale, AttentionPath path, Arena* workspace) {
  const Shapes s = validate(q, k, v, &out, &mask);
  if (!std::isfinite(scale)) fail("scaled_dot_product_attention: scale must be finite, got ", scale);
  if (scale <= 0.0f) scale = 1.0f / std::sqrt(static_cast<float>(s.dk));
  const bool use_fused = uses_fused(path, s);

  const kernels::KernelTable& kt = kernels::active();
  // Work items: (batch, head, a run of query blocks). The materialized path packs an item's keys
  // once for all its blocks, so an item takes a head's every block unless that leaves fewer than
  // two items per thread; the fused path packs per key tile anyway and takes one block.
  const i64 q_rows = query_block(s);
  const i64 q_blocks = (s.Sq + q_rows - 1) / q_rows;
  const i64 heads = s.B * s.H;
  const i64 chunks = use_fused ? q_blocks : std::clamp<i64>((2 * num_threads() + heads - 1) / heads, 1, q_blocks);
  const i64 blocks_per_item = (q_blocks + chunks - 1) / chunks;
  const i64 items_per_head = (q_blocks + blocks_per_item - 1) / blocks_per_item;
  const i64 rows_per_item = blocks_per_item * q_rows;
  const i64 items = heads * items_per_head;
  const int threads = parallel::threads_for(items);
  t_key_limits.resize(static_cast<std::size_t>(s.B));
  for (i64 b = 0; b < s.B; ++b) t_key_limits[static_cast<std::size_t>(b)] = unpadded_key_end(mask, s.Sk, b);
  const i64* key_limits = t_key_limits.data();
  split_by_cost(
      items, threads,
      [&](i64 item) {
        const i64 b = item / items_per_head / s.H, i0 = item % items_per_head * rows_per_item;
        const RowMasks rm{mask, s, b, key_limits[b]};
        double cost = 0.0;
        for (i64 r0 = i0; r0 < std::min(i0 + rows_per_item, s.Sq); r0 += q_rows) {
          const i64 rows = std::min(q_rows, s.Sq - r0);
          cost += static_cast<double>(rows) * static_cast<double>(keys_needed(rm, r0, rows) + 16);
        }
        return cost;
      },
      t_first_item);
  const i64* first_item = t_first_item.data();
  const i64 per_thread = scratch_floats(use_fused, s);
  // With an arena, all threads' scratch is one bump allocation, given back when the call ends.
  const std::size_t mark = workspace != nullptr ? workspace->used() : 0;
  float* shared = workspace != nullptr
                      ? workspace->allocate<float>("attention scratch", static_cast<std::size_t>(per_thread * threads))
                      : nullptr;
  auto body = [&](int tid) {
    float* mine = shared != nullptr ? shared + per_thread * tid : nullptr;
    if (mine == nullptr) {
      if (static_cast<i64>(t_fallback.size()) < per_thread) t_fallback.resize(static_cast<std::size_t>(per_thread));
      mine = t_fallback.data();
    }
    const Scratch scratch = carve(mine, use_fused, s);
    for (i64 item = first_item[tid]; item < first_item[tid + 1]; ++item) {
      const i64 bh = item / items_per_head, part = item % items_per_head;
      const i64 b = bh / s.H, h = bh % s.H;
      const i64 i0 = part * rows_per_item;
      const Item it{q.data() + b * q.stride(0) + h * q.stride(1) + i0 * q.stride(2),
                    k.data() + b * k.stride(0) + h * k.stride(1),
                    v.data() + b * v.stride(0) + h * v.stride(1),
                    out.data() + b * out.stride(0) + h * out.stride(1) + i0 * out.stride(2),
                    q.stride(2), k.stride(2), v.stride(2), out.stride(2),
                    b, i0, std::min(rows_per_item, s.Sq - i0), q_rows, key_limits[b]};
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
  if (workspace != nullptr) workspace->release(mark);
}

}  // namespace engine
