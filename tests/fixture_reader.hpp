// Reads the golden fixtures that tools/make_*_fixtures.py write: a directory with meta.txt
// ("key value" lines) and one raw little-endian file per tensor (NAME.f32, or NAME.u8 for bools).
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace engine::test {

class Fixture {
 public:
  explicit Fixture(std::string dir) : dir_(std::move(dir)) {
    std::ifstream in(dir_ + "/meta.txt");
    if (!in) throw std::runtime_error("cannot open " + dir_ + "/meta.txt");
    for (std::string key, value; in >> key >> value;) meta_[key] = value;
  }

  std::string text(const std::string& key) const {
    const auto it = meta_.find(key);
    if (it == meta_.end()) throw std::runtime_error(dir_ + ": meta.txt has no '" + key + "'");
    return it->second;
  }
  std::int64_t integer(const std::string& key) const { return std::stoll(text(key)); }
  float real(const std::string& key) const { return std::stof(text(key)); }
  bool flag(const std::string& key) const { return integer(key) != 0; }

  // NAME.f32, loaded once and kept: pointers into it stay valid as long as the Fixture.
  const std::vector<float>& floats(const std::string& name) {
    auto& slot = floats_[name];
    if (slot.empty()) slot = read<float>(name + ".f32");
    return slot;
  }
  const float* ptr(const std::string& name) { return floats(name).data(); }

  // NAME.u8 as bools.
  std::span<const bool> bools(const std::string& name) {
    auto& slot = bools_[name];
    if (!slot) {
      const auto bytes = read<std::uint8_t>(name + ".u8");
      slot.reset(new bool[bytes.size()]);
      bool_counts_[name] = bytes.size();
      for (std::size_t i = 0; i < bytes.size(); ++i) slot[i] = bytes[i] != 0;
    }
    return {slot.get(), bool_counts_[name]};
  }

 private:
  template <class T>
  std::vector<T> read(const std::string& file) const {
    std::ifstream in(dir_ + "/" + file, std::ios::binary | std::ios::ate);
    if (!in) throw std::runtime_error("cannot open fixture " + dir_ + "/" + file);
    const std::streamsize bytes = in.tellg();
    in.seekg(0);
    std::vector<T> data(static_cast<std::size_t>(bytes) / sizeof(T));
    in.read(reinterpret_cast<char*>(data.data()), bytes);
    return data;
  }

  std::string dir_;
  std::map<std::string, std::string> meta_;
  std::map<std::string, std::vector<float>> floats_;
  std::map<std::string, std::unique_ptr<bool[]>> bools_;
  std::map<std::string, std::size_t> bool_counts_;
};

}  // namespace engine::test
