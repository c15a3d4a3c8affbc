// libFuzzer target for the weight loader (built with -DENGINE_FUZZ=ON, clang only).
//
// Input: a 4-byte little-endian config length, that many bytes of config.json text (fewer when the
// input ends first), then a safetensors image. An input shorter than 4 bytes is all safetensors.
// The config is parsed alone (parse_config), the image is validated from a 64-byte aligned copy of
// exactly its size (so a read past its end is a heap overflow, not a read of the fuzzer's input),
// every tensor it declares is read whole through floats(), and then the model is built from both
// (load_model). Bad input must end in an engine::Error: any other exception, a crash, a leak or a
// sanitizer report is a finding.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "engine/ops.hpp"
#include "model_loader.hpp"
#include "safetensors.hpp"

namespace {

constexpr std::align_val_t kAlignment{64};

// Exactly `size` bytes (ASan's redzone starts right after them), 64-byte aligned.
struct AlignedCopy {
  AlignedCopy(const std::uint8_t* bytes, std::size_t size)
      : data(static_cast<std::uint8_t*>(::operator new(size == 0 ? 1 : size, kAlignment))) {
    if (size != 0) std::memcpy(data, bytes, size);
  }
  ~AlignedCopy() { ::operator delete(data, kAlignment); }
  AlignedCopy(const AlignedCopy&) = delete;
  AlignedCopy& operator=(const AlignedCopy&) = delete;
  std::uint8_t* data;
};

// Reads every element, so that a tensor whose declared size runs past its bytes is caught here.
float touch_all(const engine::loader::SafetensorsFile& file) {
  std::vector<float> storage;
  float sum = 0.0f;
  for (const auto& [name, info] : file.tensors()) {
    const float* values = file.floats(name, info.shape, storage);
    const std::int64_t n = info.numel();
    for (std::int64_t i = 0; i < n; ++i) sum += values[i];
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  engine::set_num_threads(1);  // one thread: deterministic runs, and no thread pool to start per input
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bool has_config = false;
  std::string config;
  const std::uint8_t* weights = data;
  std::size_t weights_size = size;
  if (size >= 4) {
    const std::uint32_t declared = static_cast<std::uint32_t>(data[0]) | static_cast<std::uint32_t>(data[1]) << 8 |
                                   static_cast<std::uint32_t>(data[2]) << 16 |
                                   static_cast<std::uint32_t>(data[3]) << 24;
    const std::size_t length = declared < size - 4 ? declared : size - 4;
    config.assign(reinterpret_cast<const char*>(data + 4), length);
    weights = data + 4 + length;
    weights_size = size - 4 - length;
    has_config = true;
  }

  if (has_config) {
    try {
      (void)engine::loader::parse_config(config, "fuzz/config.json");
    } catch (const engine::Error&) {
    }
  }

  const AlignedCopy image(weights, weights_size);
  try {
    const engine::loader::SafetensorsFile file(image.data, weights_size, "fuzz/model.safetensors");
    volatile float sink = touch_all(file);
    (void)sink;
    if (has_config) {
      engine::loader::LoadOptions options;
      options.check_finite = config.size() % 2 == 1;  // both settings, chosen by the input
      const engine::Model model = engine::loader::load_model(config, "fuzz/config.json", file, options);
      (void)model.workspace_floats(1, 1, 1);
    }
  } catch (const engine::Error&) {
  }
  return 0;
}
