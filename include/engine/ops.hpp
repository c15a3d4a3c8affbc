// The numerical building blocks of a transformer, as an embedding program calls them.
// All matrices are float32, row-major, with leading dimensions in elements.
// Every op validates its arguments and throws engine::Error naming the argument on bad input;
// work is split across the OpenMP threads set by set_num_threads().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace engine {

// Threads used by every op; 0 (the default) means omp_get_max_threads(). More threads than cores
// is allowed (they time-share); results are bitwise identical for every thread count.
void set_num_threads(int threads);
int num_threads();

enum class Activation { none, relu, gelu_erf, gelu_tanh };
const char* activation_name(Activation a);

// How B is stored: Transpose::no means B is [K, N]; Transpose::yes means B is stored [N, K]
// (a PyTorch Linear weight [out, in], or K in Q·Kᵀ) and used transposed.
enum class Transpose { no, yes };

// Applied while C is stored: C = act(A·op(B) + beta·C + bias), bias indexed by column ([N]).
struct GemmEpilogue {
  const float* bias = nullptr;  // [N] or null
  Activation activation = Activation::none;
};

// op(B) packed once into the micro-kernel's panel layout, for weights reused across calls.
// Packed for the instruction set active when it was made; using it after set_active_isa()
// switched to another one is an engine::Error.
class PackedMatrix {
 public:
  PackedMatrix();
  ~PackedMatrix();
  PackedMatrix(PackedMatrix&&) noexcept;
  PackedMatrix& operator=(PackedMatrix&&) noexcept;

  std::int64_t rows() const;  // K
  std::int64_t cols() const;  // N
  std::size_t bytes() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit PackedMatrix(std::unique_ptr<Impl> impl);
  friend PackedMatrix pack_matrix(std::int64_t, std::int64_t, const float*, std::int64_t, Transpose);
  std::unique_ptr<Impl> impl_;
};

// Packs op(B) ([K, N] after the transpose) for gemm_packed().
PackedMatrix pack_matrix(std::int64_t K, std::int64_t N, const float* B, std::int64_t ldb,
                         Transpose trans_b);

// C[M,N] = A[M,K]·op(B) (+ beta·C) with the epilogue; beta must be 0 or 1. Any M, N, K >= 1.
void gemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* A, std::int64_t lda,
          const float* B, std::int64_t ldb, Transpose trans_b, float* C, std::int64_t ldc,
          float beta = 0.0f, GemmEpilogue epilogue = {});

// The same with B packed ahead of time.
void gemm_packed(std::int64_t M, const float* A, std::int64_t lda, const PackedMatrix& B, float* C,
                 std::int64_t ldc, float beta = 0.0f, GemmEpilogue epilogue = {});

// Masks for masked_softmax(), alone or together; none of them is ever expanded into a full
// [rows, cols] matrix. A row whose keys are all masked comes out as all zeros (never NaN).
struct SoftmaxMask {
  // Causal: row i (counting from 0 within each batch) sees keys k <= i + causal_offset.
  bool causal = false;
  std::int64_t causal_offset = 0;
  // Key padding, per batch: keys k >= valid_lengths[b] are ignored. [batch], or null.
  const std::int32_t* valid_lengths = nullptr;
  // Key padding, per batch: key_padding[b * cols + k] == true means key k is ignored
  // (PyTorch's key_padding_mask convention). [batch, cols], or null.
  const bool* key_padding = nullptr;
  // Additive float mask [rows, cols] shared by every batch (e.g. -inf above the diagonal), or null.
  const float* additive = nullptr;
};

// out[b, i, :] = softmax(in[b, i, :] * scale + masks). in and out are [batch, rows, cols] with
// row stride ld_in / ld_out (>= cols); out may alias in when the strides agree.
void masked_softmax(std::int64_t batch, std::int64_t rows, std::int64_t cols, const float* in,
                    std::int64_t ld_in, float* out, std::int64_t ld_out, float scale,
                    const SoftmaxMask& mask = {});

// out[r, :] = LayerNorm(x[r, :] + residual[r, :]) * gamma + beta over `cols` features.
// residual may be null. When sum_out is not null the pre-norm sum x + residual is written there
// (the residual stream of a pre-LN block). Rows are contiguous (stride cols).
void layer_norm(std::int64_t rows, std::int64_t cols, const float* x, const float* residual,
                const float* gamma, const float* beta, float eps, float* out,
                float* sum_out = nullptr);

// x[i] = act(x[i]) for n elements, in place.
void activation(Activation act, std::int64_t n, float* x);

// dst[i] += src[i] for n elements (a residual connection).
void add(std::int64_t n, const float* src, float* dst);

// x[r, c] += bias[c] for a [rows, cols] matrix with row stride ld.
void bias_add(std::int64_t rows, std::int64_t cols, const float* bias, float* x, std::int64_t ld);

}  // namespace engine
