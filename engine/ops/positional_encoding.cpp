// Sinusoidal positional encoding: the table is computed once, in double, for every position the
// model may see; adding it is a row-wise add.
#include <cmath>

#include "engine/error.hpp"
#include "engine/layers.hpp"

namespace engine {

SinusoidalPositionalEncoding::SinusoidalPositionalEncoding(std::int64_t d_model, std::int64_t max_len,
                                                           PositionalLayout layout, std::int64_t first_position)
    : d_(d_model), max_len_(max_len) {
  if (d_model < 2 || d_model % 2 != 0)
    fail("positional encoding: d_model must be even and >= 2 (sin and cos pairs), got ", d_model);
  if (max_len < 1 || max_len > (std::int64_t{1} << 24))
    fail("positional encoding: max_len must be in [1, 16777216], got ", max_len);
  if (max_len * d_model > (std::int64_t{1} << 26))
    fail("positional encoding: max_len x d_model = ", max_len, " x ", d_model, " exceeds the 2^26-float table limit");
  if (first_position < 0) fail("positional encoding: first_position must be >= 0, got ", first_position);
  table_.resize(static_cast<std::size_t>(max_len * d_model));
  const std::int64_t half = d_model / 2;
  const double log_base = std::log(10000.0);
  for (std::int64_t p = 0; p < max_len; ++p) {
    const double pos = static_cast<double>(first_position + p);
    float* row = table_.data() + p * d_model;
    for (std::int64_t i = 0; i < half; ++i) {
      if (layout == PositionalLayout::interleaved) {
        const double angle = pos * std::exp(-log_base * static_cast<double>(2 * i) / static_cast<double>(d_model));
        row[2 * i] = static_cast<float>(std::sin(angle));
        row[2 * i + 1] = static_cast<float>(std::cos(angle));
      } else {
        const double step = half > 1 ? log_base / static_cast<double>(half - 1) : 0.0;
        const double angle = pos * std::exp(-step * static_cast<double>(i));
        row[i] = static_cast<float>(std::sin(angle));
        row[half + i] = static_cast<float>(std::cos(angle));
      }
    }
  }
}

void SinusoidalPositionalEncoding::add(float* x, std::int64_t batch, std::int64_t seq_len, std::int64_t start) const {
  if (x == nullptr) fail("positional encoding: x is null");
  if (batch < 1 || seq_len < 1) fail("positional encoding: batch and seq_len must be >= 1, got ", batch, ", ", seq_len);
  if (start < 0 || start > max_len_ || seq_len > max_len_ - start)
    fail("positional encoding: positions ", start, "..", start + seq_len - 1, " exceed max_len ", max_len_,
         " (the sequence is longer than the model was built for)");
  for (std::int64_t b = 0; b < batch; ++b)
    engine::add(seq_len * d_, table_.data() + start * d_, x + b * seq_len * d_);
}

}  // namespace engine
