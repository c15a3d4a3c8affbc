#include "engine/tensor.hpp"

#include <utility>

namespace engine {

TensorView::TensorView(float* data, std::initializer_list<std::int64_t> shape) : data_(data) {
  if (shape.size() == 0 || shape.size() > kMaxRank) fail("TensorView: rank must be 1..", kMaxRank, ", got ", shape.size());
  rank_ = static_cast<int>(shape.size());
  int i = 0;
  for (std::int64_t d : shape) {
    if (d < 0) fail("TensorView: dimension ", i, " is negative (", d, ")");
    shape_[i++] = d;
  }
  std::int64_t stride = 1;
  for (int a = rank_ - 1; a >= 0; --a) {
    strides_[a] = stride;
    stride *= shape_[a];
  }
}

TensorView::TensorView(float* data, std::initializer_list<std::int64_t> shape,
                       std::initializer_list<std::int64_t> strides)
    : TensorView(data, shape) {
  if (strides.size() != shape.size())
    fail("TensorView: ", shape.size(), " dimensions but ", strides.size(), " strides");
  int i = 0;
  for (std::int64_t s : strides) strides_[i++] = s;
}

int TensorView::check_axis(int axis) const {
  if (axis < 0 || axis >= rank_) fail("TensorView: axis ", axis, " out of range for rank ", rank_);
  return axis;
}

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (int a = 0; a < rank_; ++a) n *= shape_[a];
  return rank_ == 0 ? 0 : n;
}

bool TensorView::is_contiguous() const {
  std::int64_t expected = 1;
  for (int a = rank_ - 1; a >= 0; --a) {
    if (shape_[a] != 1 && strides_[a] != expected) return false;
    expected *= shape_[a];
  }
  return true;
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (int a = 0; a < rank_; ++a) s += (a ? ", " : "") + std::to_string(shape_[a]);
  return s + "]";
}

TensorView TensorView::transposed(int a, int b) const {
  TensorView v = *this;
  std::swap(v.shape_[check_axis(a)], v.shape_[check_axis(b)]);
  std::swap(v.strides_[a], v.strides_[b]);
  return v;
}

TensorView TensorView::split(int axis, std::int64_t outer, std::int64_t inner) const {
  check_axis(axis);
  if (rank_ == kMaxRank) fail("TensorView::split: rank ", rank_, " is already the maximum");
  std::int64_t product = 0;
  if (outer < 0 || inner < 0 || __builtin_mul_overflow(outer, inner, &product) || product != shape_[axis])
    fail("TensorView::split: ", outer, " x ", inner, " != dimension ", axis, " of ", shape_string());
  TensorView v = *this;
  for (int a = rank_; a > axis + 1; --a) {
    v.shape_[a] = shape_[a - 1];
    v.strides_[a] = strides_[a - 1];
  }
  v.shape_[axis] = outer;
  v.strides_[axis] = strides_[axis] * inner;
  v.shape_[axis + 1] = inner;
  v.strides_[axis + 1] = strides_[axis];
  v.rank_ = rank_ + 1;
  return v;
}

float& TensorView::at(std::initializer_list<std::int64_t> index) const {
  if (static_cast<int>(index.size()) != rank_) fail("TensorView::at: ", index.size(), " indices for rank ", rank_);
  std::int64_t offset = 0;
  int a = 0;
  for (std::int64_t i : index) {
    if (i < 0 || i >= shape_[a]) fail("TensorView::at: index ", i, " out of range for axis ", a, " of ", shape_string());
    offset += i * strides_[a++];
  }
  return data_[offset];
}

}  // namespace engine
