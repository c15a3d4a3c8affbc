#include "safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "engine/error.hpp"
#include "strict_json.hpp"

namespace engine::loader {
namespace {

constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;

std::size_t dtype_bytes(DType d) { return d == DType::f32 ? 4 : 2; }

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(std::uint16_t b) {
  const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
  }
  return "?";
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail(path, ": file is ", size_, " bytes, too short for the 8-byte header length");
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail(path, ": cannot map (", std::strerror(errno), ")");
  map_ = static_cast<const std::uint8_t*>(m);
  owns_map_ = true;
  try {
    validate();
  } catch (...) {
    ::munmap(const_cast<std::uint8_t*>(map_), size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::SafetensorsFile(const std::uint8_t* bytes, std::size_t size, std::string name)
    : path_(std::move(name)), map_(bytes), size_(size) {
  if (size_ < 8) fail(path_, ": file is ", size_, " bytes, too short for the 8-byte header length");
  validate();
}

void SafetensorsFile::validate() {
  const std::string& path = path_;
  {
    std::uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | map_[i];
    if (header_len > kMaxHeaderBytes) fail(path, ": header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
    if (header_len > size_ - 8)
      fail(path, ": header length ", header_len, " runs past the end of the file (", size_ - 8, " bytes follow it)");
    data_ = map_ + 8 + header_len;
    data_size_ = size_ - 8 - static_cast<std::size_t>(header_len);

    const auto* header_text = reinterpret_cast<const char*>(map_ + 8);
    const nlohmann::json header = parse_strict_json(header_text, header_text + header_len, path, "header");
    if (!header.is_object()) fail(path, ": header must be a JSON object, got ", header.type_name());

    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const nlohmann::json& t = it.value();
      if (name == "__metadata__") {
        if (!t.is_object()) fail(path, ": __metadata__ must be an object of strings");
        for (auto m2 = t.begin(); m2 != t.end(); ++m2) {
          if (!m2.value().is_string()) fail(path, ": __metadata__.", m2.key(), " must be a string");
          metadata_[m2.key()] = m2.value().get<std::string>();
        }
        continue;
      }
      const std::string where = path + ": tensor '" + name + "'";
      if (!t.is_object()) fail(where, " must be an object with dtype, shape and data_offsets");
      if (!t.contains("dtype") || !t["dtype"].is_string()) fail(where, ": missing or non-string 'dtype'");
      const std::string dt = t["dtype"].get<std::string>();
      TensorInfo info{};
      if (dt == "F32") info.dtype = DType::f32;
      else if (dt == "F16") info.dtype = DType::f16;
      else if (dt == "BF16") info.dtype = DType::bf16;
      else fail(where, ": unsupported dtype '", dt, "' (expected F32, F16 or BF16)");
      if (!t.contains("shape") || !t["shape"].is_array()) fail(where, ": missing or non-array 'shape'");
      // The byte count, not only the element count, stays within 2^62: an F32 tensor of 2^62
      // elements would otherwise need 2^64 bytes, which wraps to 0 and matched an empty span.
      const std::uint64_t max_numel = (std::uint64_t{1} << 62) / dtype_bytes(info.dtype);
      std::uint64_t numel = 1;
      for (const auto& d : t["shape"]) {
        if (!d.is_number_integer() || d.get<std::int64_t>() < 0) fail(where, ": shape entries must be integers >= 0");
        const auto dim = d.get<std::uint64_t>();
        if (dim != 0 && numel > max_numel / dim) fail(where, ": the shape's element count overflows");
        numel *= dim;
        info.shape.push_back(static_cast<std::int64_t>(dim));
      }
      if (!t.contains("data_offsets") || !t["data_offsets"].is_array() || t["data_offsets"].size() != 2 ||
          !t["data_offsets"][0].is_number_unsigned() || !t["data_offsets"][1].is_number_unsigned())
        fail(where, ": 'data_offsets' must be [begin, end] with non-negative integers");
      const auto begin = t["data_offsets"][0].get<std::uint64_t>(), end = t["data_offsets"][1].get<std::uint64_t>();
      if (begin > end) fail(where, ": data_offsets [", begin, ", ", end, "] has begin after end");
      if (end > data_size_)
        fail(where, ": data_offsets end ", end, " lies past the data section (", data_size_, " bytes)");
      const std::uint64_t want = numel * dtype_bytes(info.dtype);
      if (end - begin != want)
        fail(where, ": data_offsets span ", end - begin, " bytes but ", dt, " ", shape_string(info.shape), " needs ",
             want);
      info.begin = static_cast<std::size_t>(begin);
      info.end = static_cast<std::size_t>(end);
      if (reinterpret_cast<std::uintptr_t>(data_ + info.begin) % dtype_bytes(info.dtype) != 0)
        fail(where, ": data at byte ", 8 + header_len + begin, " is not aligned to its ", dtype_bytes(info.dtype),
             "-byte elements");
      tensors_[name] = std::move(info);
    }
    // The tensors tile the data section exactly, as the safetensors format requires: no two share
    // bytes, and no byte (a gap, or a tail past the last tensor) belongs to none of them.
    std::vector<std::pair<std::size_t, const std::string*>> spans;
    for (const auto& [name, info] : tensors_)
      if (info.end > info.begin) spans.emplace_back(info.begin, &name);
    std::sort(spans.begin(), spans.end());
    std::size_t covered = 0;
    for (std::size_t i = 0; i < spans.size(); ++i) {
      const std::string& name = *spans[i].second;
      if (i > 0 && spans[i].first < covered)
        fail(path, ": tensors '", *spans[i - 1].second, "' and '", name, "' overlap (bytes ", spans[i].first, " to ",
             covered, ")");
      if (spans[i].first > covered)
        fail(path, ": bytes ", covered, " to ", spans[i].first, " of the data section (before tensor '", name,
             "') belong to no tensor");
      covered = tensors_.at(name).end;
    }
    if (covered != data_size_)
      fail(path, ": the data section has ", data_size_, " bytes but its tensors end at byte ", covered,
           " (the file is larger than its header describes)");
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (owns_map_ && map_ != nullptr) ::munmap(const_cast<std::uint8_t*>(map_), size_);
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(path_, ": missing tensor '", name, "'");
  return it->second;
}

const float* SafetensorsFile::floats(const std::string& name, const std::vector<std::int64_t>& expected_shape,
                                     std::vector<float>& storage) const {
  const TensorInfo& t = info(name);
  if (t.shape != expected_shape)
    fail(path_, ": tensor '", name, "' has shape ", shape_string(t.shape), ", expected ", shape_string(expected_shape));
  const std::uint8_t* raw = data_ + t.begin;
  if (t.dtype == DType::f32) return reinterpret_cast<const float*>(raw);
  const std::int64_t n = t.numel();
  storage.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    std::uint16_t v;
    std::memcpy(&v, raw + 2 * i, 2);
    storage[static_cast<std::size_t>(i)] = t.dtype == DType::f16 ? half_to_float(v) : bf16_to_float(v);
  }
  return storage.data();
}

}  // namespace engine::loader
