// GEMM with op(B) packed into a caller's buffer, for ops that reuse one packing across several
// products: attention packs a head's keys (Kᵀ) once and runs Q·Kᵀ for each block of queries on
// the first columns it needs.
#pragma once

#include <cstdint>

#include "engine/ops.hpp"

namespace engine::ops {

// Floats that pack_b_on_this_thread() may write for a K x N op(B), for any instruction set (so a
// workspace sized before set_active_isa() still fits).
std::int64_t packed_b_floats(std::int64_t K, std::int64_t N);

// Packs op(B) (B[K, N], or B[N, K] when transposed) into out, on the calling thread only (safe
// inside a parallel region).
void pack_b_on_this_thread(std::int64_t K, std::int64_t N, const float* B, std::int64_t ldb, Transpose trans_b,
                           float* out);

// C[M, N] = A[M, K] · op(B)[:, 0:N], where packed_b holds op(B) packed with packed_n >= N columns by
// pack_b_on_this_thread() for the active instruction set; beta 0, no epilogue.
void gemm_packed_columns(std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda,
                         const float* packed_b, std::int64_t packed_n, float* C, std::int64_t ldc);

}  // namespace engine::ops
