// NumPy .npy files (format 1.0-3.0): little-endian float32, int64 and bool arrays in C order.
// No Debian package provides a C++ reader, so this is a small one; anything else is an
// engine::Error that names the file and what was found.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace engine::npy {

enum class Kind { f32, i64, boolean };

struct Array {
  Kind kind = Kind::f32;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;  // raw little-endian data, C order
  std::int64_t numel() const;
  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
  // Every byte of a boolean array is 0 or 1 (read() checks it), so it may be read as bool.
  std::span<const bool> booleans() const {
    return {reinterpret_cast<const bool*>(bytes.data()), static_cast<std::size_t>(numel())};
  }
};

Array read(const std::string& path);
void write_f32(const std::string& path, const float* data, const std::vector<std::int64_t>& shape);

}  // namespace engine::npy
