// The README's table of bad inputs, executed. Every row of that table (ids B01, B02, ...) is a
// case here, and the error each case gets must contain the excerpt the README quotes, so the
// documentation cannot drift from what the engine says. A case that raises no error, or any
// exception other than engine::Error, or (for the CLI) exits 0, fails.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli_runner.hpp"
#include "engine/engine.hpp"
#include "fixture_reader.hpp"
#include "model_loader.hpp"
#include "npy.hpp"
#include "safetensors.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

namespace fs = std::filesystem;
using i64 = std::int64_t;

const std::string kModels = std::string(ENGINE_FIXTURES_DIR) + "/models/";
const std::string kEncoder = kModels + "encoder_layer_post_relu";      // d 48, 3 heads, d_ff 80, no positions
const std::string kEncoderPe = kModels + "encoder_3_pre_gelu_norm_pe";  // positional max_len 64
const std::string kTransformer = kModels + "transformer_2_2_post_relu_pe_concat";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// What a call raised: the engine::Error's message, or a marker that fails every excerpt.
std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not an engine::Error: ") + e.what() + ">";
  }
  return "<no error>";
}

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("engine_bad_input_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // [8-byte little-endian length][header padded to 8 with spaces][data]; `length` overrides the
  // header length written.
  std::string safetensors(const std::string& name, std::string header, const std::string& data,
                          std::int64_t length = -1) {
    while (header.size() % 8 != 0) header += ' ';
    const std::uint64_t len = length >= 0 ? static_cast<std::uint64_t>(length) : header.size();
    std::string bytes;
    for (int i = 0; i < 8; ++i) bytes += static_cast<char>((len >> (8 * i)) & 0xff);
    write_bytes(path(name), bytes + header + data);
    return path(name);
  }
  // One F32 tensor 'w' of shape [2] over `data_bytes` bytes of data.
  std::string one_tensor(const std::string& name, const std::string& fields, std::size_t data_bytes) {
    return safetensors(name, R"({"w":{)" + fields + "}}", std::string(data_bytes, '\0'));
  }
  std::string open_weights(const std::string& file) {
    return error_of([&] { loader::SafetensorsFile f(file); });
  }

  // A copy of a fixture model directory with config.json's text replaced (first match).
  std::string model_with_config(const std::string& name, const std::string& from, const std::string& to,
                                const std::string& source = kEncoder) {
    const fs::path d = dir_ / name;
    fs::create_directories(d);
    fs::copy_file(source + "/model.safetensors", d / "model.safetensors", fs::copy_options::overwrite_existing);
    std::string config = read_text(source + "/config.json");
    const auto at = config.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) config.replace(at, from.size(), to);
    write_bytes((d / "config.json").string(), config);
    return d.string();
  }
  // A copy of the encoder fixture whose weight file has one tensor renamed, dropped or poisoned.
  std::string model_with_weights(const std::string& name, const std::function<void(std::string& header,
                                                                                  std::string& data)>& edit) {
    const fs::path d = dir_ / name;
    fs::create_directories(d);
    fs::copy_file(kEncoder + "/config.json", d / "config.json", fs::copy_options::overwrite_existing);
    const std::string all = read_text(kEncoder + "/model.safetensors");
    std::uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | static_cast<unsigned char>(all[static_cast<std::size_t>(i)]);
    std::string header = all.substr(8, len), data = all.substr(8 + len);
    edit(header, data);
    while (header.size() % 8 != 0) header += ' ';
    std::string bytes;
    for (int i = 0; i < 8; ++i) bytes += static_cast<char>((header.size() >> (8 * i)) & 0xff);
    write_bytes((d / "model.safetensors").string(), bytes + header + data);
    return d.string();
  }
  static std::string load(const std::string& model_dir, bool check_finite = false) {
    return error_of([&] { (void)loader::load_model(model_dir, {.check_finite = check_finite}); });
  }

  // engine-run's exit status and output; a zero exit is reported as a failure marker.
  std::string engine_run(const std::string& args) const {
    const CliResult r = run_cli(ENGINE_RUN_PATH, args);
    return r.exit_code == 0 ? "<exit 0>" : r.output;
  }
  // A .npy file with the given descr, shape text and raw data.
  std::string npy(const std::string& name, const std::string& descr, const std::string& shape,
                  const std::string& data) const {
    std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string bytes = "\x93NUMPY";
    bytes += '\x01';
    bytes += '\x00';
    bytes += static_cast<char>(header.size() & 0xff);
    bytes += static_cast<char>(header.size() >> 8);
    write_bytes(path(name), bytes + header + data);
    return path(name);
  }

  // Runs the encoder fixture through a session sized for batch 2 x 6, with `mask`, on a batch of b
  // sequences of length s.
  static std::string encode(const AttentionMask& mask, i64 b = 2, i64 s = 6) {
    const Model model = loader::load_model(kEncoder);
    Session session(model, 2, 6);
    std::vector<float> x(static_cast<std::size_t>(std::max<i64>(b, 1) * std::max<i64>(s, 1) * model.d_model()), 0.5f);
    return error_of([&] { session.encode(x.data(), b, s, mask); });
  }

  std::map<std::string, std::function<std::string()>> cases();

  fs::path dir_;
};

std::map<std::string, std::function<std::string()>> BadInput::cases() {
  const std::string w2 = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";
  std::vector<std::int32_t> lengths_2_7 = {2, 7};
  return {
      // --- the weight file (safetensors) ---
      {"B01", [=, this] {
         write_bytes(path("empty"), "");
         return open_weights(path("empty"));
       }},
      {"B02", [=, this] { return open_weights(one_tensor("truncated", w2, 4)); }},
      {"B03", [=, this] { return open_weights(safetensors("past_end", "{}", "", 4096)); }},
      {"B04", [=, this] { return open_weights(safetensors("absurd", "{}", "", std::int64_t{1} << 40)); }},
      {"B05", [=, this] { return open_weights(safetensors("not_json", R"({"w": [1, 2)", "")); }},
      {"B06", [=, this] { return open_weights(safetensors("utf8", "{\"w\xff\": 1}", "")); }},
      {"B07", [=, this] { return open_weights(safetensors("array", "[1, 2, 3]", "")); }},
      {"B08", [=, this] { return open_weights(safetensors("duplicate", R"({"w":{)" + w2 + R"(},"w":{)" + w2 + "}}",
                                                    std::string(8, '\0'))); }},
      {"B09", [=, this] { return open_weights(one_tensor("dtype", R"("dtype":"I64","shape":[1],"data_offsets":[0,8])", 8)); }},
      {"B10", [=, this] { return open_weights(one_tensor("no_dtype", R"("shape":[2],"data_offsets":[0,8])", 8)); }},
      {"B11", [=, this] { return open_weights(one_tensor("negative", R"("dtype":"F32","shape":[-2],"data_offsets":[0,8])", 8)); }},
      {"B12", [=, this] {
         return open_weights(one_tensor("overflow", R"("dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8])", 8));
       }},
      {"B13", [=, this] { return open_weights(one_tensor("reversed", R"("dtype":"F32","shape":[2],"data_offsets":[8,0])", 8)); }},
      {"B14", [=, this] { return open_weights(one_tensor("span", R"("dtype":"F32","shape":[3],"data_offsets":[0,8])", 8)); }},
      {"B15", [=, this] {
         return open_weights(safetensors("overlap", R"({"a":{)" + w2 + R"(},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                         std::string(12, '\0')));
       }},
      {"B16", [=, this] { return open_weights(one_tensor("unaligned", R"("dtype":"F32","shape":[1],"data_offsets":[2,6])", 6)); }},
      {"B17", [=, this] {
         return open_weights(safetensors("gap", R"({"a":{)" + w2 + R"(},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                                         std::string(20, '\0')));
       }},
      {"B18", [=, this] { return open_weights(one_tensor("oversized", w2, 8 + 4096)); }},
      {"B55", [=, this] {
         // 2^62 F32 elements need 2^64 bytes, which wrapped to 0 and matched an empty span (found by fuzzing).
         return open_weights(one_tensor("wraps", R"("dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0])", 0));
       }},
      {"B56", [=, this] {
         return open_weights(safetensors("deep", std::string(100000, '[') + std::string(100000, ']'), ""));
       }},
      // --- config.json ---
      {"B19", [=, this] { return load(path("no_such_model")); }},
      {"B20", [=, this] { return load(model_with_config("c_json", "{", "[")); }},
      {"B21", [=, this] { return load(model_with_config("c_dup", "\"d_model\": 48,", "\"d_model\": 48, \"d_model\": 48,")); }},
      {"B22", [=, this] {
         return load(model_with_config("c_big", "\"source\"", "\"pad\": \"" + std::string(1 << 20, ' ') + "\", \"source\""));
       }},
      {"B23", [=, this] { return load(model_with_config("c_heads", "\"heads\": 3", "\"heads\": 5")); }},
      {"B24", [=, this] { return load(model_with_config("c_zero", "\"d_model\": 48", "\"d_model\": 0")); }},
      {"B25", [=, this] { return load(model_with_config("c_absurd", "\"d_ff\": 80", "\"d_ff\": 1000000000")); }},
      {"B26", [=, this] { return load(model_with_config("c_unknown", "\"d_ff\"", "\"dff\": 1, \"d_ff\"")); }},
      {"B27", [=, this] { return load(model_with_config("c_type", "\"heads\": 3", "\"heads\": \"3\"")); }},
      {"B28", [=, this] { return load(model_with_config("c_arch", "\"encoder_layer\"", "\"gpt\"")); }},
      {"B29", [=, this] { return load(model_with_config("c_maxlen", "\"max_len\": 64", "\"max_len\": 10000000", kEncoderPe)); }},
      // --- config and weights together ---
      {"B30", [=, this] { return load(model_with_config("cw_shape", "\"d_ff\": 80", "\"d_ff\": 96")); }},
      {"B31", [=, this] {
         return load(model_with_weights("w_missing", [](std::string& h, std::string&) {
           h.replace(h.find("\"norm2.bias\""), 12, "\"norm2.xxxx\"");
         }));
       }},
      {"B32", [=, this] {
         return load(model_with_weights("w_extra", [](std::string& h, std::string&) {
           h.insert(1, R"("extra":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)");
         }));
       }},
      {"B33", [=, this] {
         const std::string d = model_with_weights("w_nan", [](std::string&, std::string& data) {
           const float nan = std::nanf("");
           std::memcpy(data.data() + data.size() - 4, &nan, 4);
         });
         return load(d) == "<no error>" ? load(d, /*check_finite=*/true) : "<NaN refused without check_finite>";
       }},
      {"B34", [=, this] {
         return load(model_with_weights("w_inf", [](std::string&, std::string& data) {
                       const float inf = INFINITY;
                       std::memcpy(data.data(), &inf, 4);
                     }),
                     /*check_finite=*/true);
       }},
      // --- the session API ---
      {"B35", [=, this] { return encode({}, 0, 6); }},
      {"B36", [=, this] { return encode({}, 2, 7); }},
      {"B37", [=, this] {
         const Model model = loader::load_model(kEncoderPe);
         return error_of([&] { Session session(model, 1, 65); });
       }},
      {"B38", [=, this] {
         bool padding[10] = {};
         AttentionMask m;
         m.key_padding = std::span<const bool>(padding, 10);
         return encode(m);
       }},
      {"B39", [=, this] {
         AttentionMask m;
         m.valid_lengths = lengths_2_7;
         return encode(m);
       }},
      {"B40", [=, this] {
         bool bools[6 * 5] = {};
         AttentionMask m;
         m.attn_mask = std::span<const bool>(bools, 30);
         return encode(m);
       }},
      {"B41", [=, this] {
         bool bools[36] = {};
         float floats[36] = {};
         AttentionMask m;
         m.attn_mask = std::span<const bool>(bools, 36);
         m.attn_bias = std::span<const float>(floats, 36);
         return encode(m);
       }},
      {"B42", [=, this] {
         const Model model = loader::load_model(kEncoder);
         return error_of([&] { Session session(model, 8, 64, 0, {.memory_limit_bytes = 4096}); });
       }},
      {"B43", [=, this] {
         const Model model = loader::load_model(kEncoder);
         return error_of([&] { Session session(model, i64{1} << 20, i64{1} << 20); });
       }},
      {"B44", [=, this] {
         const Model model = loader::load_model(kEncoder);
         Session session(model, 1, 4);
         return error_of([&] { session.encode(nullptr, 1, 4, {}); });
       }},
      {"B45", [=, this] {
         const Model model = loader::load_model(kEncoder);
         Session session(model, 1, 4);
         std::vector<float> x(4 * 48);
         return error_of([&] { session.decode(x.data(), x.data(), 1, 4, 4, {}, {}); });
       }},
      {"B46", [=, this] { return error_of([] { set_num_threads(-1); }); }},
      // --- engine-run ---
      {"B47", [=, this] { return engine_run("--model " + kEncoder + " --src " + kEncoder + "/src.npy --out " + path("o.npy") +
                                      " --threads 0"); }},
      {"B48", [=, this] {
         return engine_run("--model " + kEncoder + " --src " + npy("short.npy", "<f4", "2, 17, 48", std::string(64, '\0')) +
                           " --out " + path("o.npy"));
       }},
      {"B49", [=, this] {
         return engine_run("--model " + kEncoder + " --src " +
                           npy("forged.npy", "<f4", "100000, 1000, 48", std::string(64, '\0')) + " --out " + path("o.npy"));
       }},
      {"B50", [=, this] {
         return engine_run("--model " + kEncoder + " --src " + kEncoder + "/src.npy --src-key-padding-mask " +
                           kEncoder + "/src.npy --out " + path("o.npy"));
       }},
      {"B51", [=, this] {
         return engine_run("--model " + kEncoder + " --src " + kEncoder + "/src.npy --src-key-padding-mask " +
                           npy("mask_shape.npy", "|b1", "2, 16", std::string(32, '\0')) + " --out " + path("o.npy"));
       }},
      {"B52", [=, this] {
         return engine_run("--model " + kEncoder + " --src " + kEncoder + "/src.npy --src-key-padding-mask " +
                           npy("mask_byte.npy", "|b1", "2, 17", std::string(34, '\2')) + " --out " + path("o.npy"));
       }},
      {"B53", [=, this] {
         return engine_run("--model " + kEncoderPe + " --src " +
                           npy("long.npy", "<f4", "1, 65, 48", std::string(65 * 48 * 4, '\0')) + " --out " + path("o.npy"));
       }},
      {"B54", [=, this] {
         return engine_run("--model " + kEncoder + " --src " + npy("f64.npy", "<f8", "2, 17, 48", std::string(2 * 17 * 48 * 8, '\0')) +
                           " --out " + path("o.npy"));
       }},
  };
}

// The README's table: rows "| B01 | what | where | `excerpt` |".
std::map<std::string, std::string> documented_cases() {
  std::ifstream in(ENGINE_README_PATH);
  std::map<std::string, std::string> rows;
  const std::regex row(R"(^\| (B\d\d) \|.*`([^`]+)` \|\s*$)");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_match(line, m, row)) rows[m[1]] = m[2];
  }
  return rows;
}

TEST_F(BadInput, EveryDocumentedCaseGetsItsDocumentedError) {
  ThreadGuard threads;
  const auto documented = documented_cases();
  auto all = cases();
  ASSERT_GE(documented.size(), 30u) << "the README's bad-input table is missing or short";
  for (const auto& [id, excerpt] : documented) EXPECT_TRUE(all.count(id)) << id << " is documented but has no test";
  for (const auto& [id, run] : all) {
    SCOPED_TRACE(id);
    const auto doc = documented.find(id);
    if (doc == documented.end()) {
      ADD_FAILURE() << id << " is tested but not in the README's table";
      continue;
    }
    const std::string message = run();
    EXPECT_NE(message.find(doc->second), std::string::npos) << "expected '" << doc->second << "' in:\n" << message;
  }
}

// More threads than cores is allowed and changes nothing: the same bits as one thread.
TEST_F(BadInput, MoreThreadsThanCoresIsAllowedAndGivesTheSameBits) {
  ThreadGuard threads;
  const Model model = loader::load_model(kEncoder);
  Fixture f(kEncoder);
  Session session(model, 2, 17);
  std::vector<float> one = f.floats("src"), many = f.floats("src");
  set_num_threads(1);
  session.encode(one.data(), 2, 17, {});
  set_num_threads(64);
  session.encode(many.data(), 2, 17, {});
  EXPECT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float)));
}

// A NaN weight without check_finite is documented to propagate, not to be hidden.
TEST_F(BadInput, NanWeightWithoutCheckPropagates) {
  const std::string d = model_with_weights("w_nan_run", [](std::string& header, std::string& data) {
    // linear2.bias feeds every output element of the layer.
    const auto at = header.find("\"linear2.bias\"");
    const auto offsets = header.find("data_offsets", at);
    const std::size_t begin = std::stoul(header.substr(header.find('[', offsets) + 1));
    const float nan = std::nanf("");
    std::memcpy(data.data() + begin, &nan, 4);
  });
  const Model model = loader::load_model(d);
  Fixture f(kEncoder);
  Session session(model, 2, 17);
  std::vector<float> x = f.floats("src");
  session.encode(x.data(), 2, 17, {});
  for (float v : x) ASSERT_TRUE(std::isnan(v));
}

}  // namespace
}  // namespace engine::test
