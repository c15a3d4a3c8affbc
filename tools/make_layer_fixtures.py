#!/usr/bin/env python3
"""Golden fixtures for engine's EncoderLayer, DecoderLayer and their stacks, from PyTorch's
nn.TransformerEncoderLayer / nn.TransformerDecoderLayer / nn.TransformerEncoder /
nn.TransformerDecoder / nn.Transformer (batch_first, eval, dropout 0).

Run with Debian's torch:  /usr/bin/python3 tools/make_layer_fixtures.py tests/fixtures/layers

Each case is a directory with meta.txt ("key value" lines) and one raw little-endian file per tensor:
the module's state_dict() tensors under their own names (e.g. self_attn.in_proj_weight.f32), the
inputs (src.f32, or tgt.f32 and memory.f32), bool masks as 0/1 bytes (*.u8), float masks (*.f32),
and expected.f32, the module's output.
"""
import os
import sys

import torch


def write(path, tensor):
    t = tensor.detach().contiguous()
    if t.dtype == torch.bool:
        t.to(torch.uint8).numpy().tofile(path + ".u8")
    else:
        t.to(torch.float32).numpy().tofile(path + ".f32")


def randomise(module):
    # PyTorch initialises biases and LayerNorm to 0 / 1, and a stack deep-copies one layer: make
    # every parameter count and every layer differ.
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 2)
            is_norm = any(part.startswith("norm") for part in leaf[:-1]) or name.startswith("norm")
            if name.endswith("bias"):
                p.uniform_(-0.5, 0.5)
            elif is_norm:
                p.uniform_(0.5, 1.5)
            else:
                p.add_(torch.randn_like(p) * 0.02)


def padding(batch, length, pad_last):
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[0, length - pad_last:] = True  # batch 0 has its last positions padded; key 0 is never padded
    return mask


def save(out_dir, name, module, tensors, meta):
    case = os.path.join(out_dir, name)
    os.makedirs(case, exist_ok=True)
    for key, value in module.state_dict().items():
        write(os.path.join(case, key), value)
    for key, value in tensors.items():
        write(os.path.join(case, key), value)
    with open(os.path.join(case, "meta.txt"), "w") as f:
        for key, value in meta.items():
            f.write(f"{key} {value}\n")


def encoder_case(out_dir, name, *, norm_first, activation, causal, key_padding, eps=1e-5, seed):
    torch.manual_seed(seed)
    d, heads, d_ff, batch, seq = 48, 3, 80, 2, 17
    layer = torch.nn.TransformerEncoderLayer(d, heads, d_ff, dropout=0.0, activation=activation, batch_first=True,
                                             norm_first=norm_first, layer_norm_eps=eps).eval()
    randomise(layer)
    src = torch.randn(batch, seq, d)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(seq) if causal else None
    kpm = padding(batch, seq, 5) if key_padding else None
    # Autograd on: torch takes its reference path rather than the fused inference fast path.
    expected = layer(src, src_mask=mask, src_key_padding_mask=kpm)
    tensors = {"src": src, "expected": expected}
    if kpm is not None:
        tensors["src_key_padding_mask"] = kpm
    if mask is not None:
        tensors["src_mask"] = mask
    save(out_dir, name, layer, tensors,
         {"kind": "encoder", "d_model": d, "heads": heads, "d_ff": d_ff, "batch": batch, "src_len": seq,
          "norm_first": int(norm_first), "activation": activation, "layer_norm_eps": repr(eps),
          "src_mask": int(causal), "src_key_padding_mask": int(key_padding)})


def decoder_case(out_dir, name, *, norm_first, activation, tgt_key_padding, memory_key_padding, eps=1e-5, seed):
    torch.manual_seed(seed)
    d, heads, d_ff, batch, tgt_len, mem_len = 48, 3, 80, 2, 9, 17
    layer = torch.nn.TransformerDecoderLayer(d, heads, d_ff, dropout=0.0, activation=activation, batch_first=True,
                                             norm_first=norm_first, layer_norm_eps=eps).eval()
    randomise(layer)
    tgt, memory = torch.randn(batch, tgt_len, d), torch.randn(batch, mem_len, d)
    tgt_mask = torch.nn.Transformer.generate_square_subsequent_mask(tgt_len)
    tkpm = padding(batch, tgt_len, 3) if tgt_key_padding else None
    mkpm = padding(batch, mem_len, 6) if memory_key_padding else None
    expected = layer(tgt, memory, tgt_mask=tgt_mask, tgt_key_padding_mask=tkpm, memory_key_padding_mask=mkpm)
    tensors = {"tgt": tgt, "memory": memory, "tgt_mask": tgt_mask, "expected": expected}
    if tkpm is not None:
        tensors["tgt_key_padding_mask"] = tkpm
    if mkpm is not None:
        tensors["memory_key_padding_mask"] = mkpm
    save(out_dir, name, layer, tensors,
         {"kind": "decoder", "d_model": d, "heads": heads, "d_ff": d_ff, "batch": batch, "tgt_len": tgt_len,
          "memory_len": mem_len, "norm_first": int(norm_first), "activation": activation,
          "layer_norm_eps": repr(eps), "tgt_key_padding_mask": int(tgt_key_padding),
          "memory_key_padding_mask": int(memory_key_padding)})


def stack_case(out_dir, name, *, kind, layers, final_norm, norm_first, activation, seed, enc_layers=0, dec_layers=0):
    torch.manual_seed(seed)
    d, heads, d_ff, batch, src_len, tgt_len = 48, 3, 80, 2, 17, 9
    args = dict(dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first)
    src, tgt = torch.randn(batch, src_len, d), torch.randn(batch, tgt_len, d)
    src_kpm, tgt_kpm, mem_kpm = padding(batch, src_len, 5), padding(batch, tgt_len, 3), padding(batch, src_len, 5)
    tgt_mask = torch.nn.Transformer.generate_square_subsequent_mask(tgt_len)
    meta = {"kind": kind, "d_model": d, "heads": heads, "d_ff": d_ff, "batch": batch, "src_len": src_len,
            "tgt_len": tgt_len, "norm_first": int(norm_first), "activation": activation, "layer_norm_eps": "1e-05",
            "final_norm": int(final_norm), "layers": layers, "encoder_layers": enc_layers, "decoder_layers": dec_layers}
    if kind == "encoder":
        layer = torch.nn.TransformerEncoderLayer(d, heads, d_ff, **args)
        module = torch.nn.TransformerEncoder(layer, layers, norm=torch.nn.LayerNorm(d) if final_norm else None).eval()
        randomise(module)
        expected = module(src, src_key_padding_mask=src_kpm)
        tensors = {"src": src, "src_key_padding_mask": src_kpm, "expected": expected}
    elif kind == "decoder":
        layer = torch.nn.TransformerDecoderLayer(d, heads, d_ff, **args)
        module = torch.nn.TransformerDecoder(layer, layers, norm=torch.nn.LayerNorm(d) if final_norm else None).eval()
        randomise(module)
        expected = module(tgt, src, tgt_mask=tgt_mask, tgt_key_padding_mask=tgt_kpm, memory_key_padding_mask=mem_kpm)
        tensors = {"tgt": tgt, "memory": src, "tgt_key_padding_mask": tgt_kpm, "memory_key_padding_mask": mem_kpm,
                   "expected": expected}
    else:
        module = torch.nn.Transformer(d, heads, enc_layers, dec_layers, d_ff, **args).eval()
        randomise(module)
        expected = module(src, tgt, tgt_mask=tgt_mask, src_key_padding_mask=src_kpm, tgt_key_padding_mask=tgt_kpm,
                          memory_key_padding_mask=mem_kpm)
        tensors = {"src": src, "tgt": tgt, "src_key_padding_mask": src_kpm, "tgt_key_padding_mask": tgt_kpm,
                   "memory_key_padding_mask": mem_kpm, "expected": expected}
    save(out_dir, name, module, tensors, meta)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/layers"
    encoder_case(out, "encoder_post_relu", norm_first=False, activation="relu", causal=False, key_padding=True, seed=1)
    encoder_case(out, "encoder_post_gelu_causal", norm_first=False, activation="gelu", causal=True, key_padding=False,
                 seed=2)
    encoder_case(out, "encoder_pre_relu_causal_padding", norm_first=True, activation="relu", causal=True,
                 key_padding=True, eps=1e-6, seed=3)
    encoder_case(out, "encoder_pre_gelu", norm_first=True, activation="gelu", causal=False, key_padding=False, seed=4)
    decoder_case(out, "decoder_post_relu", norm_first=False, activation="relu", tgt_key_padding=False,
                 memory_key_padding=True, seed=5)
    decoder_case(out, "decoder_post_gelu_padding", norm_first=False, activation="gelu", tgt_key_padding=True,
                 memory_key_padding=True, seed=6)
    decoder_case(out, "decoder_pre_relu", norm_first=True, activation="relu", tgt_key_padding=True,
                 memory_key_padding=False, eps=1e-6, seed=7)
    decoder_case(out, "decoder_pre_gelu", norm_first=True, activation="gelu", tgt_key_padding=False,
                 memory_key_padding=True, seed=8)
    stack_case(out, "encoder_stack_1_post_relu", kind="encoder", layers=1, final_norm=False, norm_first=False,
               activation="relu", seed=11)
    stack_case(out, "encoder_stack_3_pre_gelu_norm", kind="encoder", layers=3, final_norm=True, norm_first=True,
               activation="gelu", seed=12)
    stack_case(out, "decoder_stack_3_post_relu", kind="decoder", layers=3, final_norm=False, norm_first=False,
               activation="relu", seed=13)
    stack_case(out, "decoder_stack_1_pre_gelu_norm", kind="decoder", layers=1, final_norm=True, norm_first=True,
               activation="gelu", seed=14)
    stack_case(out, "transformer_2_2_post_gelu", kind="transformer", layers=0, final_norm=True, norm_first=False,
               activation="gelu", seed=15, enc_layers=2, dec_layers=2)
    print(f"wrote fixtures to {out}")


if __name__ == "__main__":
    main()
