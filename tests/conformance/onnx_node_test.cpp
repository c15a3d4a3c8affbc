// External conformance: ONNX's own node tests (Debian's libonnx-testdata) run through the engine's
// ops. Every Softmax, MatMul, Gemm and LayerNormalization case is one parameterised test per
// instruction set; cases the ops cannot express are skipped with the reason. The model and the
// tensors are read with a minimal protobuf wire-format reader written here (no protobuf dependency).
//
// Tolerance: |got - want| <= max(1e-5, 1e-4 * |want|) on output_0.
//
// What the test does around the ops (the honest fine print):
//   Softmax (opset >= 13) over a non-last axis: the input is transposed so the axis is last,
//     softmaxed, and transposed back. Opset < 13 coerces to 2-D at `axis` and runs directly.
//   MatMul: rank >= 2 operands; batch dimensions (numpy-broadcast) loop over engine::gemm.
//   Gemm: transB maps to Transpose::yes. transA is a transposed copy of A; alpha != 1 scales that
//     copy (alpha·(A·B) == (alpha·A)·B up to rounding). A row-vector C with beta == 1 is the
//     epilogue bias; any other C is broadcast, scaled by beta, written into Y, and gemm runs with
//     beta = 1.
//   LayerNormalization: dims [axis..] are flattened into the normalised feature dimension (exactly
//     the operator's semantics); only output_0 (Y) is compared, Mean/InvStdDev are not produced.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "engine/ops.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
using engine::Isa;

static_assert(std::endian::native == std::endian::little, "raw_data is little-endian");

constexpr double kAbsTol = 1e-5;
constexpr double kRelTol = 1e-4;

// ---------------------------------------------------------------------------------------------
// Protobuf wire format.

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Wire {
 public:
  Wire(const std::uint8_t* begin, const std::uint8_t* end) : p_(begin), end_(end) {}
  explicit Wire(const std::string& bytes)
      : Wire(reinterpret_cast<const std::uint8_t*>(bytes.data()),
             reinterpret_cast<const std::uint8_t*>(bytes.data()) + bytes.size()) {}

  bool done() const { return p_ >= end_; }

  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) throw ParseError("truncated varint");
      const std::uint8_t b = *p_++;
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    throw ParseError("varint longer than 10 bytes");
  }
  std::uint32_t fixed32() {
    need(4);
    std::uint32_t v;
    std::memcpy(&v, p_, 4);
    p_ += 4;
    return v;
  }
  std::uint64_t fixed64() {
    need(8);
    std::uint64_t v;
    std::memcpy(&v, p_, 8);
    p_ += 8;
    return v;
  }
  Wire delimited() {
    const std::uint64_t n = varint();
    need(n);
    Wire sub(p_, p_ + n);
    p_ += n;
    return sub;
  }
  std::string bytes() {
    Wire sub = delimited();
    return std::string(reinterpret_cast<const char*>(sub.p_), static_cast<std::size_t>(sub.end_ - sub.p_));
  }
  // Reads a key; returns false at the end of the message.
  bool next(int& field, int& wire_type) {
    if (done()) return false;
    const std::uint64_t key = varint();
    field = static_cast<int>(key >> 3);
    wire_type = static_cast<int>(key & 7);
    return true;
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case 0: varint(); return;
      case 1: fixed64(); return;
      case 2: delimited(); return;
      case 5: fixed32(); return;
      default: throw ParseError("unsupported wire type " + std::to_string(wire_type));
    }
  }

 private:
  void need(std::uint64_t n) const {
    if (n > static_cast<std::uint64_t>(end_ - p_)) throw ParseError("truncated field");
  }
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

void expect_wire(int got, int want, const char* what) {
  if (got != want)
    throw ParseError(std::string(what) + ": wire type " + std::to_string(got) + ", expected " + std::to_string(want));
}

float as_float(std::uint32_t bits) { return std::bit_cast<float>(bits); }

// ---------------------------------------------------------------------------------------------
// The ONNX messages we need.

constexpr std::int32_t kFloat = 1;  // TensorProto.DataType.FLOAT

struct Tensor {
  std::string name;
  std::vector<std::int64_t> dims;
  std::int32_t data_type = 0;
  std::vector<float> data;
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (std::int64_t d : dims) n *= d;
    return n;
  }
};

Tensor parse_tensor(Wire w) {
  Tensor t;
  std::string raw;
  bool has_raw = false;
  int field, wt;
  while (w.next(field, wt)) {
    if (field == 1) {  // dims: packed or not
      if (wt == 2) {
        Wire packed = w.delimited();
        while (!packed.done()) t.dims.push_back(static_cast<std::int64_t>(packed.varint()));
      } else {
        expect_wire(wt, 0, "TensorProto.dims");
        t.dims.push_back(static_cast<std::int64_t>(w.varint()));
      }
    } else if (field == 2) {
      expect_wire(wt, 0, "TensorProto.data_type");
      t.data_type = static_cast<std::int32_t>(w.varint());
    } else if (field == 4) {  // float_data: packed or not
      if (wt == 2) {
        Wire packed = w.delimited();
        while (!packed.done()) t.data.push_back(as_float(packed.fixed32()));
      } else {
        expect_wire(wt, 5, "TensorProto.float_data");
        t.data.push_back(as_float(w.fixed32()));
      }
    } else if (field == 8) {
      expect_wire(wt, 2, "TensorProto.name");
      t.name = w.bytes();
    } else if (field == 9) {
      expect_wire(wt, 2, "TensorProto.raw_data");
      raw = w.bytes();
      has_raw = true;
    } else {
      w.skip(wt);
    }
  }
  if (t.data_type != kFloat) return t;  // callers skip non-float tensors
  const std::int64_t n = t.numel();
  if (has_raw) {
    if (raw.size() != static_cast<std::size_t>(n) * sizeof(float))
      throw ParseError("tensor '" + t.name + "': raw_data has " + std::to_string(raw.size()) + " bytes for " +
                       std::to_string(n) + " floats");
    t.data.resize(static_cast<std::size_t>(n));
    std::memcpy(t.data.data(), raw.data(), raw.size());
  } else if (t.data.size() != static_cast<std::size_t>(n)) {
    throw ParseError("tensor '" + t.name + "': float_data has " + std::to_string(t.data.size()) +
                     " values for " + std::to_string(n) + " elements");
  }
  return t;
}

struct Attribute {
  std::string name;
  int type = 0;  // AttributeProto.AttributeType: 1 FLOAT, 2 INT, ...
  float f = 0.0f;
  std::int64_t i = 0;
};

Attribute parse_attribute(Wire w) {
  Attribute a;
  int field, wt;
  while (w.next(field, wt)) {
    if (field == 1) {
      expect_wire(wt, 2, "AttributeProto.name");
      a.name = w.bytes();
    } else if (field == 2) {
      expect_wire(wt, 5, "AttributeProto.f");
      a.f = as_float(w.fixed32());
    } else if (field == 3) {
      expect_wire(wt, 0, "AttributeProto.i");
      a.i = static_cast<std::int64_t>(w.varint());
    } else if (field == 20) {
      expect_wire(wt, 0, "AttributeProto.type");
      a.type = static_cast<int>(w.varint());
    } else {
      w.skip(wt);
    }
  }
  return a;
}

struct Node {
  std::string op_type;
  std::string domain;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::vector<Attribute> attributes;

  const Attribute* attr(const std::string& name) const {
    for (const Attribute& a : attributes)
      if (a.name == name) return &a;
    return nullptr;
  }
  std::int64_t int_attr(const std::string& name, std::int64_t fallback) const {
    const Attribute* a = attr(name);
    return a ? a->i : fallback;
  }
  float float_attr(const std::string& name, float fallback) const {
    const Attribute* a = attr(name);
    return a ? a->f : fallback;
  }
};

Node parse_node(Wire w) {
  Node n;
  int field, wt;
  while (w.next(field, wt)) {
    if (field == 1) {
      expect_wire(wt, 2, "NodeProto.input");
      n.inputs.push_back(w.bytes());
    } else if (field == 2) {
      expect_wire(wt, 2, "NodeProto.output");
      n.outputs.push_back(w.bytes());
    } else if (field == 4) {
      expect_wire(wt, 2, "NodeProto.op_type");
      n.op_type = w.bytes();
    } else if (field == 5) {
      expect_wire(wt, 2, "NodeProto.attribute");
      n.attributes.push_back(parse_attribute(w.delimited()));
    } else if (field == 7) {
      expect_wire(wt, 2, "NodeProto.domain");
      n.domain = w.bytes();
    } else {
      w.skip(wt);
    }
  }
  return n;
}

// ValueInfoProto: only the name (field 1).
std::string parse_value_info_name(Wire w) {
  std::string name;
  int field, wt;
  while (w.next(field, wt)) {
    if (field == 1 && wt == 2) name = w.bytes();
    else w.skip(wt);
  }
  return name;
}

struct Model {
  std::vector<Node> nodes;
  std::vector<std::string> inputs;   // GraphProto.input names, in order
  std::vector<std::string> outputs;  // GraphProto.output names, in order
  std::vector<Tensor> initializers;
  std::int64_t opset = 0;  // of the default ("" / "ai.onnx") domain
};

Model parse_model(const std::string& bytes) {
  Model m;
  Wire w(bytes);
  int field, wt;
  while (w.next(field, wt)) {
    if (field == 7) {  // graph
      expect_wire(wt, 2, "ModelProto.graph");
      Wire g = w.delimited();
      int gf, gwt;
      while (g.next(gf, gwt)) {
        if (gf == 1 && gwt == 2) m.nodes.push_back(parse_node(g.delimited()));
        else if (gf == 5 && gwt == 2) m.initializers.push_back(parse_tensor(g.delimited()));
        else if (gf == 11 && gwt == 2) m.inputs.push_back(parse_value_info_name(g.delimited()));
        else if (gf == 12 && gwt == 2) m.outputs.push_back(parse_value_info_name(g.delimited()));
        else g.skip(gwt);
      }
    } else if (field == 8) {  // opset_import: OperatorSetIdProto {domain = 1, version = 2}
      expect_wire(wt, 2, "ModelProto.opset_import");
      Wire o = w.delimited();
      std::string domain;
      std::int64_t version = 0;
      int of, owt;
      while (o.next(of, owt)) {
        if (of == 1 && owt == 2) domain = o.bytes();
        else if (of == 2 && owt == 0) version = static_cast<std::int64_t>(o.varint());
        else o.skip(owt);
      }
      if (domain.empty() || domain == "ai.onnx") m.opset = version;
    } else {
      w.skip(wt);
    }
  }
  return m;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ParseError("cannot open " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// ---------------------------------------------------------------------------------------------
// Cases.

fs::path data_root() { return fs::path(ENGINE_ONNX_TESTDATA_DIR); }

const char* const kMissing = "testdata_missing";

bool is_our_op(const std::string& op) {
  return op == "Softmax" || op == "LogSoftmax" || op == "MatMul" || op == "Gemm" || op == "LayerNormalization";
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A directory is a case when its model is one node of one of our op families (LogSoftmax is
// listed so that it shows up as skipped), or when it is the *_expanded twin of such a case.
bool single_node_of_ours(const fs::path& dir) {
  try {
    const Model m = parse_model(read_file(dir / "model.onnx"));
    return m.nodes.size() == 1 && m.nodes[0].domain.empty() && is_our_op(m.nodes[0].op_type);
  } catch (const std::exception&) {
    return false;
  }
}

const std::vector<std::string>& case_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    std::error_code ec;
    if (!fs::is_directory(data_root(), ec)) return std::vector<std::string>{kMissing};
    std::vector<std::string> all;
    for (const auto& e : fs::directory_iterator(data_root(), ec))
      if (e.is_directory() && e.path().filename().string().rfind("test_", 0) == 0)
        all.push_back(e.path().filename().string());
    std::sort(all.begin(), all.end());
    for (const std::string& name : all) {
      std::string base = name;
      if (ends_with(name, "_expanded")) base = name.substr(0, name.size() - std::string("_expanded").size());
      if (single_node_of_ours(data_root() / base)) out.push_back(name);
    }
    if (out.empty()) out.push_back(kMissing);
    return out;
  }();
  return names;
}

// A case read from disk: the node, its inputs by position (nullopt for an absent optional input),
// the expected output_0, or why it cannot be run.
struct Prepared {
  std::string name;
  std::string op;
  std::string skip_reason;  // empty when runnable
  Node node;
  std::int64_t opset = 0;
  std::vector<std::optional<Tensor>> inputs;
  Tensor expected;
};

std::string dims_string(const std::vector<std::int64_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

int normalise_axis(std::int64_t axis, std::size_t rank) {
  const std::int64_t r = static_cast<std::int64_t>(rank);
  if (axis < -r || axis >= r) return -1;
  return static_cast<int>(axis < 0 ? axis + r : axis);
}

std::int64_t product(const std::vector<std::int64_t>& dims, std::size_t from, std::size_t to) {
  std::int64_t n = 1;
  for (std::size_t i = from; i < to; ++i) n *= dims[i];
  return n;
}

// Reason the prepared node cannot be expressed with our ops, or "".
std::string expressibility(const Prepared& p) {
  const Node& n = p.node;
  for (std::size_t i = 0; i < p.inputs.size(); ++i)
    if (p.inputs[i] && p.inputs[i]->data_type != kFloat)
      return "input " + std::to_string(i) + " is not float32 (data_type " + std::to_string(p.inputs[i]->data_type) + ")";
  if (p.expected.data_type != kFloat) return "output_0 is not float32";
  if (p.inputs.empty() || !p.inputs[0]) return "missing first input";
  for (const auto& in : p.inputs)
    if (in && in->numel() == 0) return "empty tensor (the ops need every dimension >= 1)";
  const Tensor& x = *p.inputs[0];

  if (n.op_type == "Softmax") {
    const std::int64_t def = p.opset >= 13 ? -1 : 1;
    if (x.dims.empty()) return "rank-0 input";
    if (normalise_axis(n.int_attr("axis", def), x.dims.size()) < 0) return "axis out of range";
    return "";
  }
  if (n.op_type == "MatMul") {
    if (p.inputs.size() < 2 || !p.inputs[1]) return "missing B";
    const Tensor& b = *p.inputs[1];
    if (x.dims.size() < 2 || b.dims.size() < 2) return "1-D MatMul operands are not handled by this test";
    if (x.dims.back() != b.dims[b.dims.size() - 2]) return "inner dimensions disagree";
    const std::size_t ba = x.dims.size() - 2, bb = b.dims.size() - 2;
    for (std::size_t i = 0; i < std::max(ba, bb); ++i) {
      const std::int64_t da = i < ba ? x.dims[ba - 1 - i] : 1, db = i < bb ? b.dims[bb - 1 - i] : 1;
      if (da != db && da != 1 && db != 1) return "batch dimensions do not broadcast";
    }
    return "";
  }
  if (n.op_type == "Gemm") {
    if (p.inputs.size() < 2 || !p.inputs[1]) return "missing B";
    if (x.dims.size() != 2 || p.inputs[1]->dims.size() != 2) return "A and B must be 2-D";
    if (p.inputs.size() >= 3 && p.inputs[2]) {
      const auto& c = p.inputs[2]->dims;
      const std::int64_t M = n.int_attr("transA", 0) ? x.dims[1] : x.dims[0];
      const std::int64_t N = n.int_attr("transB", 0) ? p.inputs[1]->dims[0] : p.inputs[1]->dims[1];
      const std::int64_t cr = c.size() == 2 ? c[0] : 1, cc = c.empty() ? 1 : c.back();
      if (c.size() > 2 || (cr != 1 && cr != M) || (cc != 1 && cc != N)) return "C does not broadcast to [M, N]";
    }
    return "";
  }
  if (n.op_type == "LayerNormalization") {
    if (x.dims.empty()) return "rank-0 input";
    const int axis = normalise_axis(n.int_attr("axis", -1), x.dims.size());
    if (axis < 0) return "axis out of range";
    if (n.int_attr("stash_type", 1) != 1) return "stash_type other than float32";
    const std::int64_t cols = product(x.dims, static_cast<std::size_t>(axis), x.dims.size());
    if (p.inputs.size() < 2 || !p.inputs[1]) return "missing Scale";
    if (p.inputs[1]->numel() != cols) return "Scale is broadcast, not the normalised shape";
    if (p.inputs.size() >= 3 && p.inputs[2] && p.inputs[2]->numel() != cols)
      return "B is broadcast, not the normalised shape";
    return "";
  }
  return "unsupported op";
}

Prepared prepare(const std::string& name) {
  Prepared p;
  p.name = name;
  const fs::path dir = data_root() / name;
  const Model model = parse_model(read_file(dir / "model.onnx"));
  if (ends_with(name, "_expanded")) {
    p.op = "expanded";
    p.skip_reason = "function-body expansion into other ops (" + std::to_string(model.nodes.size()) + " nodes)";
    return p;
  }
  if (model.nodes.size() != 1) throw ParseError(name + ": expected one node, got " + std::to_string(model.nodes.size()));
  p.node = model.nodes[0];
  p.op = p.node.op_type;
  p.opset = model.opset;
  if (p.op == "LogSoftmax") {
    p.skip_reason = "LogSoftmax is not an engine op";
    return p;
  }

  // Graph inputs come from input_<i>.pb in graph-input order; initializers by name.
  std::map<std::string, Tensor> values;
  for (const Tensor& t : model.initializers) values[t.name] = t;
  const fs::path data = dir / "test_data_set_0";
  for (std::size_t i = 0; i < model.inputs.size(); ++i) {
    const fs::path file = data / ("input_" + std::to_string(i) + ".pb");
    if (!fs::exists(file)) continue;  // an input provided by an initializer
    values[model.inputs[i]] = parse_tensor(Wire(read_file(file)));
  }
  for (const std::string& in : p.node.inputs) {
    if (in.empty()) {
      p.inputs.emplace_back(std::nullopt);
      continue;
    }
    auto it = values.find(in);
    if (it == values.end()) throw ParseError(name + ": no data for input '" + in + "'");
    p.inputs.emplace_back(it->second);
  }
  p.expected = parse_tensor(Wire(read_file(data / "output_0.pb")));
  p.skip_reason = expressibility(p);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Running a case with the engine's ops. Returns output_0 and its shape.

struct Result {
  std::vector<std::int64_t> dims;
  std::vector<float> data;
};

Result run_softmax(const Prepared& p) {
  const Tensor& x = *p.inputs[0];
  const std::size_t rank = x.dims.size();
  const int axis = normalise_axis(p.node.int_attr("axis", p.opset >= 13 ? -1 : 1), rank);
  Result r{x.dims, std::vector<float>(x.data.size())};
  if (p.opset < 13) {  // coerced to 2-D: [prod(dims[:axis]), prod(dims[axis:])]
    const std::int64_t rows = product(x.dims, 0, static_cast<std::size_t>(axis));
    const std::int64_t cols = product(x.dims, static_cast<std::size_t>(axis), rank);
    engine::masked_softmax(1, rows, cols, x.data.data(), cols, r.data.data(), cols, 1.0f);
    return r;
  }
  const std::int64_t outer = product(x.dims, 0, static_cast<std::size_t>(axis));
  const std::int64_t n = x.dims[static_cast<std::size_t>(axis)];
  const std::int64_t inner = product(x.dims, static_cast<std::size_t>(axis) + 1, rank);
  if (inner == 1) {
    engine::masked_softmax(outer, 1, n, x.data.data(), n, r.data.data(), n, 1.0f);
    return r;
  }
  // [outer, n, inner] -> [outer, inner, n], softmax over the last dim, and back.
  std::vector<float> t(x.data.size()), u(x.data.size());
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t k = 0; k < n; ++k)
      for (std::int64_t i = 0; i < inner; ++i)
        t[static_cast<std::size_t>((o * inner + i) * n + k)] = x.data[static_cast<std::size_t>((o * n + k) * inner + i)];
  engine::masked_softmax(outer, inner, n, t.data(), n, u.data(), n, 1.0f);
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t k = 0; k < n; ++k)
      for (std::int64_t i = 0; i < inner; ++i)
        r.data[static_cast<std::size_t>((o * n + k) * inner + i)] = u[static_cast<std::size_t>((o * inner + i) * n + k)];
  return r;
}

Result run_matmul(const Prepared& p) {
  const Tensor& a = *p.inputs[0];
  const Tensor& b = *p.inputs[1];
  const std::size_t ra = a.dims.size(), rb = b.dims.size();
  const std::int64_t M = a.dims[ra - 2], K = a.dims[ra - 1], N = b.dims[rb - 1];
  const std::size_t ba = ra - 2, bb = rb - 2, bo = std::max(ba, bb);
  // Broadcast batch shape, aligned from the right.
  std::vector<std::int64_t> batch(bo), da(bo, 1), db(bo, 1);
  for (std::size_t i = 0; i < bo; ++i) {
    if (i + ba >= bo) da[i] = a.dims[i + ba - bo];
    if (i + bb >= bo) db[i] = b.dims[i + bb - bo];
    batch[i] = std::max(da[i], db[i]);
  }
  Result r;
  r.dims = batch;
  r.dims.push_back(M);
  r.dims.push_back(N);
  const std::int64_t batches = product(batch, 0, bo);
  r.data.assign(static_cast<std::size_t>(batches * M * N), 0.0f);
  std::vector<std::int64_t> idx(bo, 0);
  for (std::int64_t t = 0; t < batches; ++t) {
    std::int64_t oa = 0, ob = 0;
    for (std::size_t i = 0; i < bo; ++i) {
      oa = oa * da[i] + (da[i] == 1 ? 0 : idx[i]);
      ob = ob * db[i] + (db[i] == 1 ? 0 : idx[i]);
    }
    engine::gemm(M, N, K, a.data.data() + oa * M * K, K, b.data.data() + ob * K * N, N, engine::Transpose::no,
                 r.data.data() + t * M * N, N);
    for (std::size_t i = bo; i-- > 0;) {  // odometer
      if (++idx[i] < batch[i]) break;
      idx[i] = 0;
    }
  }
  return r;
}

Result run_gemm(const Prepared& p) {
  const Tensor& a = *p.inputs[0];
  const Tensor& b = *p.inputs[1];
  const bool trans_a = p.node.int_attr("transA", 0) != 0;
  const bool trans_b = p.node.int_attr("transB", 0) != 0;
  const float alpha = p.node.float_attr("alpha", 1.0f);
  const float beta = p.node.float_attr("beta", 1.0f);
  const std::int64_t M = trans_a ? a.dims[1] : a.dims[0];
  const std::int64_t K = trans_a ? a.dims[0] : a.dims[1];
  const std::int64_t N = trans_b ? b.dims[0] : b.dims[1];

  // A' = alpha · op(A), [M, K] row-major (a copy only when it differs from A).
  std::vector<float> a_copy;
  const float* ap = a.data.data();
  if (trans_a || alpha != 1.0f) {
    a_copy.resize(static_cast<std::size_t>(M * K));
    for (std::int64_t i = 0; i < M; ++i)
      for (std::int64_t k = 0; k < K; ++k)
        a_copy[static_cast<std::size_t>(i * K + k)] =
            alpha * (trans_a ? a.data[static_cast<std::size_t>(k * M + i)] : a.data[static_cast<std::size_t>(i * K + k)]);
    ap = a_copy.data();
  }

  Result r{{M, N}, std::vector<float>(static_cast<std::size_t>(M * N), 0.0f)};
  const Tensor* c = p.inputs.size() >= 3 && p.inputs[2] ? &*p.inputs[2] : nullptr;
  float gemm_beta = 0.0f;
  engine::GemmEpilogue epilogue;
  if (c != nullptr && beta != 0.0f) {
    const std::int64_t cr = c->dims.size() == 2 ? c->dims[0] : 1;
    const std::int64_t cc = c->dims.empty() ? 1 : c->dims.back();
    if (beta == 1.0f && cr == 1 && cc == N) {
      epilogue.bias = c->data.data();  // row vector: the epilogue's per-column bias
    } else {
      for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < N; ++j)
          r.data[static_cast<std::size_t>(i * N + j)] =
              beta * c->data[static_cast<std::size_t>((cr == 1 ? 0 : i) * cc + (cc == 1 ? 0 : j))];
      gemm_beta = 1.0f;
    }
  }
  engine::gemm(M, N, K, ap, K, b.data.data(), trans_b ? K : N, trans_b ? engine::Transpose::yes : engine::Transpose::no,
               r.data.data(), N, gemm_beta, epilogue);
  return r;
}

Result run_layer_norm(const Prepared& p) {
  const Tensor& x = *p.inputs[0];
  const int axis = normalise_axis(p.node.int_attr("axis", -1), x.dims.size());
  const float eps = p.node.float_attr("epsilon", 1e-5f);
  const std::int64_t rows = product(x.dims, 0, static_cast<std::size_t>(axis));
  const std::int64_t cols = product(x.dims, static_cast<std::size_t>(axis), x.dims.size());
  std::vector<float> zeros(static_cast<std::size_t>(cols), 0.0f);
  const float* beta = p.inputs.size() >= 3 && p.inputs[2] ? p.inputs[2]->data.data() : zeros.data();
  Result r{x.dims, std::vector<float>(x.data.size())};
  engine::layer_norm(rows, cols, x.data.data(), nullptr, p.inputs[1]->data.data(), beta, eps, r.data.data());
  return r;
}

Result run_case(const Prepared& p) {
  if (p.op == "Softmax") return run_softmax(p);
  if (p.op == "MatMul") return run_matmul(p);
  if (p.op == "Gemm") return run_gemm(p);
  if (p.op == "LayerNormalization") return run_layer_norm(p);
  throw ParseError("no runner for " + p.op);
}

// ---------------------------------------------------------------------------------------------
// Outcomes of the cases run in this process, printed when the tests end.

struct Outcomes {
  std::mutex mu;
  std::vector<std::string> lines;
  void add(std::string line) {
    std::lock_guard<std::mutex> lock(mu);
    lines.push_back(std::move(line));
  }
};
Outcomes& outcomes() {
  static Outcomes o;
  return o;
}

class OnnxSummaryPrinter : public ::testing::Environment {
 public:
  void TearDown() override {
    auto& o = outcomes();
    if (o.lines.empty()) return;
    std::cout << "[ONNX node tests] " << o.lines.size() << " case x ISA runs in this process "
              << "(tolerance abs " << kAbsTol << ", rel " << kRelTol << "):\n";
    for (const std::string& l : o.lines) std::cout << "  " << l << "\n";
  }
};
[[maybe_unused]] ::testing::Environment* const g_summary =
    ::testing::AddGlobalTestEnvironment(new OnnxSummaryPrinter);

// ---------------------------------------------------------------------------------------------
// The tests.

class OnnxNodeTest : public ::testing::TestWithParam<std::tuple<std::string, Isa>> {};

TEST_P(OnnxNodeTest, MatchesReferenceOutput) {
  const auto& [name, isa] = GetParam();
  const std::string label = name + " [" + engine::isa_name(isa) + "]";
  if (name == kMissing) GTEST_SKIP() << "ONNX node test data not found under " << ENGINE_ONNX_TESTDATA_DIR
                                     << " (install Debian's libonnx-testdata)";
  Prepared p;
  try {
    p = prepare(name);
  } catch (const std::exception& e) {
    outcomes().add("FAILED  " + label + ": cannot read case: " + e.what());
    FAIL() << "cannot read " << name << ": " << e.what();
  }
  if (!p.skip_reason.empty()) {
    outcomes().add("SKIPPED " + label + ": " + p.skip_reason);
    GTEST_SKIP() << p.skip_reason;
  }
  engine::test::IsaScope scope(isa);
  const Result got = run_case(p);
  ASSERT_EQ(dims_string(got.dims), dims_string(p.expected.dims)) << "output shape";
  ASSERT_EQ(got.data.size(), p.expected.data.size());
  const std::vector<double> want(p.expected.data.begin(), p.expected.data.end());
  const auto close = engine::test::all_close(got.data.data(), want.data(), want.size(), kAbsTol, kRelTol);
  outcomes().add(std::string(close ? "PASSED  " : "FAILED  ") + label + " (" + p.op + ")");
  EXPECT_TRUE(close) << name << " (" << p.op << ") with " << engine::isa_name(isa);
}

std::string case_param_name(const ::testing::TestParamInfo<std::tuple<std::string, Isa>>& info) {
  return std::get<0>(info.param) + "_" + engine::isa_name(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(Onnx, OnnxNodeTest,
                         ::testing::Combine(::testing::ValuesIn(case_names()),
                                            ::testing::ValuesIn(engine::test::test_isas())),
                         case_param_name);

// Prints which cases run and which are skipped (and why), and pins the coverage: every
// non-expanded case of the four supported ops must be expressible.
TEST(OnnxNodeSummary, ListsRunAndSkippedCases) {
  if (case_names().front() == kMissing) GTEST_SKIP() << "ONNX node test data not found under " << ENGINE_ONNX_TESTDATA_DIR;
  std::map<std::string, int> runnable_per_op;
  std::ostringstream run, skipped;
  int n_run = 0, n_skipped = 0;
  for (const std::string& name : case_names()) {
    Prepared p;
    try {
      p = prepare(name);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cannot read " << name << ": " << e.what();
      continue;
    }
    if (p.skip_reason.empty()) {
      ++n_run;
      ++runnable_per_op[p.op];
      run << "  RUN  " << name << " (" << p.op << ", opset " << p.opset << ")\n";
    } else {
      ++n_skipped;
      skipped << "  SKIP " << name << " (" << p.op << "): " << p.skip_reason << "\n";
      const bool expected_skip = ends_with(name, "_expanded") || p.op == "LogSoftmax";
      EXPECT_TRUE(expected_skip) << name << " should be expressible but was skipped: " << p.skip_reason;
    }
  }
  std::cout << "[ONNX node tests] " << n_run << " cases run, " << n_skipped << " skipped, each on "
            << engine::test::test_isas().size() << " ISA(s); tolerance abs " << kAbsTol << ", rel " << kRelTol
            << "\n"
            << run.str() << skipped.str();
  for (const char* op : {"Softmax", "MatMul", "Gemm", "LayerNormalization"})
    EXPECT_GT(runnable_per_op[op], 0) << "no runnable " << op << " case found";
}

// The reader itself, on hand-made messages (so a parser bug cannot hide behind the data).
TEST(OnnxWireReader, ParsesPackedAndUnpackedTensorFields) {
  auto key = [](int field, int wt) { return static_cast<char>((field << 3) | wt); };
  auto f32 = [](float v) {
    const auto bits = std::bit_cast<std::uint32_t>(v);
    std::string s(4, '\0');
    std::memcpy(s.data(), &bits, 4);
    return s;
  };
  // dims unpacked {2, 300}, data_type FLOAT, float_data unpacked {1.5, -2}, then packed {3, 4, 5, 6}.
  std::string msg;
  msg += key(1, 0);
  msg += '\x02';
  msg += key(1, 0);
  msg += "\xac\x02";  // 300
  msg += key(2, 0);
  msg += '\x01';
  msg += key(4, 5) + f32(1.5f);
  msg += key(4, 5) + f32(-2.0f);
  msg += key(4, 2);
  msg += '\x10';
  msg += f32(3) + f32(4) + f32(5) + f32(6);
  msg += key(8, 2);
  msg += "\x01t";
  // 300 elements claimed, 6 given: a mismatch must be reported.
  EXPECT_THROW(parse_tensor(Wire(msg)), ParseError);

  std::string ok;
  ok += key(1, 2);  // packed dims {2, 3}
  ok += "\x02\x02\x03";
  ok += key(2, 0);
  ok += '\x01';
  ok += key(4, 2);
  ok += '\x18';
  for (int i = 0; i < 6; ++i) ok += f32(static_cast<float>(i) - 0.5f);
  ok += key(8, 2);
  ok += "\x01t";
  const Tensor t = parse_tensor(Wire(ok));
  EXPECT_EQ(t.name, "t");
  EXPECT_EQ(t.dims, (std::vector<std::int64_t>{2, 3}));
  ASSERT_EQ(t.data.size(), 6u);
  EXPECT_EQ(t.data[0], -0.5f);
  EXPECT_EQ(t.data[5], 4.5f);

  std::string raw;
  raw += key(1, 0);
  raw += '\x02';
  raw += key(2, 0);
  raw += '\x01';
  raw += key(9, 2);
  raw += '\x08';
  raw += f32(7.25f) + f32(-0.125f);
  const Tensor r = parse_tensor(Wire(raw));
  ASSERT_EQ(r.data.size(), 2u);
  EXPECT_EQ(r.data[0], 7.25f);
  EXPECT_EQ(r.data[1], -0.125f);

  EXPECT_THROW(parse_tensor(Wire(std::string("\x0a\x05\x01", 3))), ParseError);  // truncated length
}

}  // namespace
