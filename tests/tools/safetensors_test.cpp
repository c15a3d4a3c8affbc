// The safetensors reader on valid files (F32 in place, F16 and BF16 converted) and on broken ones:
// each broken file gets an engine::Error naming the problem, never a crash.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "safetensors.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

using loader::SafetensorsFile;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("engine_st_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes [8-byte length][header][data] and returns the path. pad_to_8 pads the header with spaces.
  std::string write(const std::string& name, std::string header, const std::vector<std::uint8_t>& data,
                    bool pad_to_8 = true, std::int64_t length_override = -1) {
    if (pad_to_8)
      while (header.size() % 8 != 0) header += ' ';
    const std::uint64_t len = length_override >= 0 ? static_cast<std::uint64_t>(length_override) : header.size();
    const std::string path = (dir_ / name).string();
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    return path;
  }

  static std::vector<std::uint8_t> bytes_of(const std::vector<float>& v) {
    std::vector<std::uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
  }

  std::string one_tensor(const std::string& name, const std::string& dtype, const std::string& shape,
                         const std::string& offsets, std::size_t data_bytes) {
    return write(name, R"({"w":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}",
                 std::vector<std::uint8_t>(data_bytes, 0));
  }

  std::filesystem::path dir_;
};

TEST_F(SafetensorsTest, ReadsF32InPlaceAndConvertsF16AndBf16) {
  const std::vector<float> w = {1.0f, -2.5f, 0.125f, 3.0f, 65504.0f, -0.0f};
  std::vector<std::uint8_t> data = bytes_of(w);
  // F16: 1.0 (0x3c00), -2.0 (0xc000), 2^-24 (0x0001, subnormal); BF16: 1.0 (0x3f80), -3.0 (0xc040)
  for (std::uint16_t h : {0x3c00, 0xc000, 0x0001}) data.insert(data.end(), {static_cast<std::uint8_t>(h & 0xff), static_cast<std::uint8_t>(h >> 8)});
  for (std::uint16_t b : {0x3f80, 0xc040}) data.insert(data.end(), {static_cast<std::uint8_t>(b & 0xff), static_cast<std::uint8_t>(b >> 8)});
  const std::string path = write("ok.safetensors",
                                 R"({"__metadata__":{"format":"pt"},)"
                                 R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                                 R"("h":{"dtype":"F16","shape":[3],"data_offsets":[24,30]},)"
                                 R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[30,34]}})",
                                 data);
  const SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  std::vector<float> storage;
  const float* pw = f.floats("w", {2, 3}, storage);
  for (std::size_t i = 0; i < w.size(); ++i) EXPECT_EQ(pw[i], w[i]);
  const float* ph = f.floats("h", {3}, storage);
  EXPECT_EQ(ph[0], 1.0f);
  EXPECT_EQ(ph[1], -2.0f);
  EXPECT_EQ(ph[2], std::ldexp(1.0f, -24));
  const float* pb = f.floats("b", {2}, storage);
  EXPECT_EQ(pb[0], 1.0f);
  EXPECT_EQ(pb[1], -3.0f);
  expect_error([&] { (void)f.floats("w", {3, 2}, storage); }, "'w' has shape [2, 3], expected [3, 2]");
  expect_error([&] { (void)f.floats("nope", {1}, storage); }, "missing tensor 'nope'");
}

TEST_F(SafetensorsTest, BrokenFilesGetClearErrors) {
  struct Bad {
    std::string path, needle;
  };
  const std::string empty = (dir_ / "empty").string();
  std::ofstream(empty).close();
  const std::vector<Bad> cases = {
      {(dir_ / "missing.safetensors").string(), "cannot open"},
      {empty, "too short for the 8-byte header length"},
      {write("past_end", "{}", {}, true, 4096), "runs past the end of the file"},
      {write("absurd", "{}", {}, true, std::int64_t{1} << 40), "exceeds the limit"},
      {write("not_json", "{\"w\": [1, 2", {}), "not valid JSON"},
      {write("not_object", "[1, 2, 3]", {}), "must be a JSON object"},
      {one_tensor("dtype", "I64", "[2]", "[0,16]", 16), "unsupported dtype 'I64'"},
      {write("no_dtype", R"({"w":{"shape":[1],"data_offsets":[0,4]}})", std::vector<std::uint8_t>(4)), "'dtype'"},
      {write("no_shape", R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", std::vector<std::uint8_t>(4)), "'shape'"},
      {one_tensor("neg_shape", "F32", "[-1]", "[0,4]", 4), "shape entries must be integers >= 0"},
      {one_tensor("overflow", "F32", "[4294967296,4294967296,16]", "[0,4]", 4), "overflows"},
      {one_tensor("no_offsets", "F32", "[1]", "[4]", 4), "'data_offsets' must be [begin, end]"},
      {one_tensor("reversed", "F32", "[1]", "[8,4]", 8), "begin after end"},
      {one_tensor("out_of_range", "F32", "[2]", "[0,8]", 4), "past the data section"},
      {one_tensor("wrong_span", "F32", "[3]", "[0,8]", 12), "span 8 bytes but F32 [3] needs 12"},
      {one_tensor("unaligned", "F32", "[1]", "[2,6]", 8), "not aligned"},
      {write("overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
             std::vector<std::uint8_t>(12)),
       "overlap"},
      {write("bad_metadata", R"({"__metadata__":{"n":1}})", {}), "__metadata__.n must be a string"},
  };
  for (const Bad& c : cases) {
    SCOPED_TRACE(c.path);
    expect_error([&] { SafetensorsFile f(c.path); }, c.needle);
  }
  // Truncation at every length of a valid file: an error, never a crash.
  const std::string good = write("good", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                                 bytes_of({1, 2, 3, 4}));
  std::ifstream in(good, std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (std::size_t n = 0; n < all.size(); ++n) {
    const std::string cut = (dir_ / "cut").string();
    std::ofstream(cut, std::ios::binary).write(all.data(), static_cast<std::streamsize>(n));
    EXPECT_THROW(SafetensorsFile f(cut), Error) << "truncated to " << n << " bytes";
  }
}

}  // namespace
}  // namespace engine::test
