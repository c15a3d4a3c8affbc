// Tensor views: a float32 pointer with a shape and strides (in elements). A view never owns memory.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "engine/error.hpp"

namespace engine {

inline constexpr int kMaxRank = 4;

class TensorView {
 public:
  TensorView() = default;
  // A contiguous row-major view of `data` with the given shape.
  TensorView(float* data, std::initializer_list<std::int64_t> shape);
  // A view with explicit strides (elements, not bytes).
  TensorView(float* data, std::initializer_list<std::int64_t> shape,
             std::initializer_list<std::int64_t> strides);

  float* data() const { return data_; }
  int rank() const { return rank_; }
  std::int64_t dim(int axis) const { return shape_[check_axis(axis)]; }
  std::int64_t stride(int axis) const { return strides_[check_axis(axis)]; }
  std::int64_t numel() const;
  bool is_contiguous() const;
  std::string shape_string() const;  // e.g. "[2, 12, 128, 64]"

  // Swaps two axes without moving data (the seed's transpose, done with strides).
  TensorView transposed(int a, int b) const;
  // Splits `axis` into (outer, inner) with outer * inner == dim(axis); no data moves.
  TensorView split(int axis, std::int64_t outer, std::int64_t inner) const;

  float& at(std::initializer_list<std::int64_t> index) const;

 private:
  int check_axis(int axis) const;

  float* data_ = nullptr;
  int rank_ = 0;
  std::array<std::int64_t, kMaxRank> shape_{};
  std::array<std::int64_t, kMaxRank> strides_{};
};

}  // namespace engine
