// engine-run: runs an exported model directory on .npy inputs and writes what the PyTorch module
// returns, batch-first.
//
//   engine-run --model DIR --src SRC.npy [--tgt TGT.npy] [--src-key-padding-mask M.npy]
//              [--tgt-key-padding-mask M.npy] [--memory-key-padding-mask M.npy] [--src-causal]
//              [--tgt-causal] [--threads N] --out OUT.npy
//
// Encoder models take --src; decoder models take --tgt and the memory as --src; nn.Transformer
// takes both. Inputs are float32 [B, S, d_model], masks bool [B, S] (true = padding).
#include <CLI/CLI.hpp>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "model_loader.hpp"
#include "npy.hpp"
#include "safetensors.hpp"

namespace {

using engine::fail;
using i64 = std::int64_t;

std::string shape_of(const engine::npy::Array& a) { return engine::loader::shape_string(a.shape); }

std::optional<engine::npy::Array> load_mask(const std::string& path, const char* what, i64 batch, i64 seq) {
  if (path.empty()) return std::nullopt;
  engine::npy::Array m = engine::npy::read(path);
  if (m.kind != engine::npy::Kind::boolean) fail(path, ": ", what, " must be a bool array");
  if (m.shape.size() != 2 || m.shape[0] != batch || m.shape[1] != seq)
    fail(path, ": ", what, " must have shape [", batch, ", ", seq, "], got ", shape_of(m));
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"engine-run: run an exported Transformer model directory on .npy inputs"};
  std::string model_dir, src_path, tgt_path, src_kpm_path, tgt_kpm_path, mem_kpm_path, out_path;
  bool src_causal = false, tgt_causal = false;
  int threads = 0;
  app.add_option("--model", model_dir, "model directory (config.json + model.safetensors)")->required();
  app.add_option("--src", src_path, "source [B, S, d] float32 .npy (the memory, for decoder models)");
  app.add_option("--tgt", tgt_path, "target [B, T, d] float32 .npy (decoder models and nn.Transformer)");
  app.add_option("--src-key-padding-mask", src_kpm_path, "bool [B, S], true = padding");
  app.add_option("--tgt-key-padding-mask", tgt_kpm_path, "bool [B, T], true = padding");
  app.add_option("--memory-key-padding-mask", mem_kpm_path, "bool [B, S], true = padding");
  app.add_flag("--src-causal", src_causal, "causal mask on the source self-attention");
  app.add_flag("--tgt-causal", tgt_causal, "causal mask on the target self-attention");
  app.add_option("--threads", threads, "threads (default: all cores)")->check(CLI::Range(1, 1024));
  app.add_option("--out", out_path, "output .npy (batch-first)")->required();
  CLI11_PARSE(app, argc, argv);

  try {
    if (threads > 0) engine::set_num_threads(threads);
    const engine::Model model = engine::loader::load_model(model_dir);
    const engine::ModelConfig& c = model.config();
    const i64 d = model.d_model();
    const bool enc = c.has_encoder(), dec = c.has_decoder();
    if (src_path.empty()) fail("--src is required for a ", engine::architecture_name(c.architecture), " model");
    if (dec && tgt_path.empty()) fail("--tgt is required for a ", engine::architecture_name(c.architecture), " model");
    if (!dec && !tgt_path.empty()) fail("--tgt given, but a ", engine::architecture_name(c.architecture), " model has no decoder");
    if (!dec && (tgt_causal || !tgt_kpm_path.empty() || !mem_kpm_path.empty()))
      fail("--tgt-causal / --tgt-key-padding-mask / --memory-key-padding-mask need a model with a decoder");
    if (!enc && (src_causal || !src_kpm_path.empty()))
      fail("--src-causal / --src-key-padding-mask need a model with an encoder (for decoders --src is the memory)");

    engine::npy::Array src = engine::npy::read(src_path);
    if (src.kind != engine::npy::Kind::f32 || src.shape.size() != 3 || src.shape[2] != d || src.shape[0] < 1 ||
        src.shape[1] < 1)
      fail(src_path, ": --src must be float32 [batch, seq, ", d, "], got ", shape_of(src));
    const i64 B = src.shape[0], Ss = src.shape[1];
    std::optional<engine::npy::Array> tgt;
    i64 St = 0;
    if (dec) {
      tgt = engine::npy::read(tgt_path);
      if (tgt->kind != engine::npy::Kind::f32 || tgt->shape.size() != 3 || tgt->shape[2] != d || tgt->shape[0] != B ||
          tgt->shape[1] < 1)
        fail(tgt_path, ": --tgt must be float32 [", B, ", seq, ", d, "], got ", shape_of(*tgt));
      St = tgt->shape[1];
    }
    const auto src_kpm = load_mask(src_kpm_path, "--src-key-padding-mask", B, Ss);
    const auto tgt_kpm = load_mask(tgt_kpm_path, "--tgt-key-padding-mask", B, St);
    const auto mem_kpm = load_mask(mem_kpm_path, "--memory-key-padding-mask", B, Ss);
    engine::AttentionMask src_mask, tgt_mask, memory_mask;
    src_mask.causal = src_causal;
    tgt_mask.causal = tgt_causal;
    if (src_kpm) src_mask.key_padding = src_kpm->booleans();
    if (tgt_kpm) tgt_mask.key_padding = tgt_kpm->booleans();
    if (mem_kpm) memory_mask.key_padding = mem_kpm->booleans();

    engine::Session session(model, B, Ss, St);
    std::vector<float> memory(src.f32(), src.f32() + src.numel());
    if (enc) session.encode(memory.data(), B, Ss, src_mask);
    if (!dec) {
      engine::npy::write_f32(out_path, memory.data(), {B, Ss, d});
      return 0;
    }
    std::vector<float> out(tgt->f32(), tgt->f32() + tgt->numel());
    session.decode(out.data(), memory.data(), B, St, Ss, tgt_mask, memory_mask);
    engine::npy::write_f32(out_path, out.data(), {B, St, d});
    return 0;
  } catch (const engine::Error& e) {
    std::cerr << "engine-run: " << e.what() << "\n";
    return 1;
  }
}
