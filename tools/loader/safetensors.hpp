// A validated, memory-mapped safetensors file (Hugging Face's format: an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}}, then the raw data).
// Everything is checked when the file is opened; a bad file is an engine::Error naming the file,
// the tensor or field, and the expected and actual values. F32 tensors are used in place; F16 and
// BF16 tensors are converted to float32 on request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace engine::loader {

enum class DType { f32, f16, bf16 };
const char* dtype_name(DType d);

struct TensorInfo {
  DType dtype;
  std::vector<std::int64_t> shape;
  std::size_t begin = 0, end = 0;  // byte offsets into the data section
  std::int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Header limit: 100 MiB.
  explicit SafetensorsFile(const std::string& path);
  // Validates `size` bytes already in memory, borrowed (they must outlive this object); `name`
  // stands for the path in errors. The data section must be 4-byte aligned in memory.
  SafetensorsFile(const std::uint8_t* bytes, std::size_t size, std::string name);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;

  // The tensor's float32 data, after checking its shape: in place for F32 (valid while the file is
  // open), converted into `storage` for F16 / BF16.
  const float* floats(const std::string& name, const std::vector<std::int64_t>& expected_shape,
                      std::vector<float>& storage) const;

 private:
  void validate();  // parses the header at map_ and checks every tensor against the data section

  std::string path_;
  bool owns_map_ = false;  // true when map_ is our mmap of the file
  const std::uint8_t* map_ = nullptr;
  std::size_t size_ = 0;
  const std::uint8_t* data_ = nullptr;  // start of the data section
  std::size_t data_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

std::string shape_string(const std::vector<std::int64_t>& shape);

}  // namespace engine::loader
