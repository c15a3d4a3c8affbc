#include "npy.hpp"

#include <cstring>
#include <fstream>
#include <regex>

#include "engine/error.hpp"

namespace engine::npy {

std::int64_t Array::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

Array read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open");
  char magic[8] = {};
  in.read(magic, 8);
  if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) fail(path, ": not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(magic[6]);
  std::uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    in.read(reinterpret_cast<char*>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    in.read(reinterpret_cast<char*>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
  } else {
    fail(path, ": unsupported .npy format version ", major);
  }
  if (!in || header_len > (1u << 20)) fail(path, ": truncated or absurd .npy header");
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  if (!in) fail(path, ": truncated .npy header");

  std::smatch m;
  if (!std::regex_search(header, m, std::regex(R"('descr'\s*:\s*'([^']*)')")))
    fail(path, ": .npy header has no descr");
  const std::string descr = m[1];
  Array a;
  std::size_t item = 0;
  if (descr == "<f4") { a.kind = Kind::f32; item = 4; }
  else if (descr == "<i8") { a.kind = Kind::i64; item = 8; }
  else if (descr == "|b1") { a.kind = Kind::boolean; item = 1; }
  else fail(path, ": dtype '", descr, "' is not supported (expected little-endian float32 <f4, int64 <i8 or bool |b1)");
  if (!std::regex_search(header, m, std::regex(R"('fortran_order'\s*:\s*(True|False))")) || m[1] != "False")
    fail(path, ": only C-order arrays are supported (fortran_order must be False)");
  if (!std::regex_search(header, m, std::regex(R"('shape'\s*:\s*\(([^)]*)\))"))) fail(path, ": .npy header has no shape");
  const std::string dims = m[1];
  const std::regex number(R"(\d+)");
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it) {
    if (it->str().size() > 15) fail(path, ": shape entry ", it->str(), " is absurdly large");
    a.shape.push_back(std::stoll(it->str()));
  }
  std::uint64_t n = 1;
  for (std::int64_t d : a.shape) {
    if (d > (std::int64_t{1} << 40) || (d != 0 && n > (std::uint64_t{1} << 40) / static_cast<std::uint64_t>(d)))
      fail(path, ": shape is absurdly large");
    n *= static_cast<std::uint64_t>(d);
  }
  // The data must be in the file before anything is allocated for it: a forged shape must not
  // make us allocate (and zero) terabytes.
  const auto data_start = in.tellg();
  in.seekg(0, std::ios::end);
  const auto available = static_cast<std::uint64_t>(in.tellg() - data_start);
  in.seekg(data_start);
  if (n * item > available)
    fail(path, ": truncated data (shape ", dims, " needs ", n * item, " bytes, the file has ", available, ")");
  a.bytes.resize(n * item);
  in.read(reinterpret_cast<char*>(a.bytes.data()), static_cast<std::streamsize>(a.bytes.size()));
  if (static_cast<std::size_t>(in.gcount()) != a.bytes.size())
    fail(path, ": truncated data (", in.gcount(), " of ", a.bytes.size(), " bytes)");
  if (a.kind == Kind::boolean)
    for (std::uint8_t& b : a.bytes)
      if (b > 1) fail(path, ": bool array holds a byte other than 0 or 1");
  return a;
}

void write_f32(const std::string& path, const float* data, const std::vector<std::int64_t>& shape) {
  std::string dims;
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    dims += std::to_string(d) + ",";
    n *= d;
  }
  if (shape.size() > 1) dims.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) fail(path, ": cannot write");
  out.write("\x93NUMPY\x01\x00", 8);
  const std::uint16_t len = static_cast<std::uint16_t>(header.size());
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>(len >> 8));
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * 4));
  if (!out) fail(path, ": write failed");
}

}  // namespace engine::npy
