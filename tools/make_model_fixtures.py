#!/usr/bin/env python3
"""Model-directory fixtures: PyTorch modules exported with tools/export_torch.py, their inputs and
PyTorch's outputs, for the loader and engine-run tests.

    /usr/bin/python3 tools/make_model_fixtures.py tests/fixtures/models

Each case directory holds config.json and model.safetensors (the exporter's output), meta.txt, and
every input and output twice: NAME.npy (for engine-run) and NAME.f32 / NAME.u8 (raw, for GoogleTest).
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torch import export  # noqa: E402


def sinusoid(length, d, layout):
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    pe = torch.zeros(length, d, dtype=torch.float64)
    if layout == "interleaved":
        div = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    else:
        half = d // 2
        w = torch.exp(-torch.arange(half, dtype=torch.float64) * math.log(10000.0) / (half - 1))
        pe[:, :half], pe[:, half:] = torch.sin(pos * w), torch.cos(pos * w)
    return pe.to(torch.float32)


def randomise(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.5, 0.5)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
            else:
                p.add_(torch.randn_like(p) * 0.02)


def save_tensor(case, name, t):
    a = t.detach().contiguous().numpy()
    np.save(os.path.join(case, name + ".npy"), a)
    (a.astype(np.uint8) if a.dtype == np.bool_ else a.astype(np.float32)).tofile(
        os.path.join(case, name + (".u8" if a.dtype == np.bool_ else ".f32")))


def make(out, name, module, *, batch_first=True, pe=None, src_causal=False, tgt_causal=False,
         src_kpm=False, tgt_kpm=False, mem_kpm=False, seed=0):
    torch.manual_seed(seed)
    randomise(module)
    module.eval()
    d = 48
    B, Ss, St = 2, 17, 9
    src, tgt = torch.randn(B, Ss, d), torch.randn(B, St, d)
    def padding(S, n):
        m = torch.zeros(B, S, dtype=torch.bool)
        m[0, S - n:] = True
        return m
    masks = {}
    if src_kpm:
        masks["src_key_padding_mask"] = padding(Ss, 5)
    if tgt_kpm:
        masks["tgt_key_padding_mask"] = padding(St, 3)
    if mem_kpm:
        masks["memory_key_padding_mask"] = padding(Ss, 4)
    x_src, x_tgt = src, tgt
    if pe is not None:
        x_src = src + sinusoid(Ss, d, pe)
        x_tgt = tgt + sinusoid(St, d, pe)
    bf = (lambda t: t) if batch_first else (lambda t: t.transpose(0, 1))
    causal = torch.nn.Transformer.generate_square_subsequent_mask
    kind = type(module).__name__
    if kind in ("TransformerEncoderLayer", "TransformerEncoder"):
        kw = {"src_key_padding_mask": masks.get("src_key_padding_mask")}
        if kind == "TransformerEncoderLayer":
            kw["src_mask"] = causal(Ss) if src_causal else None
        else:
            kw["mask"] = causal(Ss) if src_causal else None
        out_t = bf(module(bf(x_src), **kw))
    elif kind in ("TransformerDecoderLayer", "TransformerDecoder"):
        out_t = bf(module(bf(x_tgt), bf(src), tgt_mask=causal(St) if tgt_causal else None,
                          tgt_key_padding_mask=masks.get("tgt_key_padding_mask"),
                          memory_key_padding_mask=masks.get("memory_key_padding_mask")))
    else:
        out_t = bf(module(bf(x_src), bf(x_tgt), src_mask=causal(Ss) if src_causal else None,
                          tgt_mask=causal(St) if tgt_causal else None,
                          src_key_padding_mask=masks.get("src_key_padding_mask"),
                          tgt_key_padding_mask=masks.get("tgt_key_padding_mask"),
                          memory_key_padding_mask=masks.get("memory_key_padding_mask")))
    case = os.path.join(out, name)
    export(module, case, positional="sinusoidal" if pe else None, pe_layout=pe or "interleaved", max_len=64)
    save_tensor(case, "src", src)
    if kind not in ("TransformerEncoderLayer", "TransformerEncoder"):
        save_tensor(case, "tgt", tgt)
    for k, v in masks.items():
        save_tensor(case, k, v)
    save_tensor(case, "expected", out_t)
    with open(os.path.join(case, "meta.txt"), "w") as f:
        for k, v in {"module": kind, "batch": B, "src_len": Ss, "tgt_len": St, "src_causal": int(src_causal),
                     "tgt_causal": int(tgt_causal), "src_key_padding_mask": int(src_kpm),
                     "tgt_key_padding_mask": int(tgt_kpm), "memory_key_padding_mask": int(mem_kpm)}.items():
            f.write(f"{k} {v}\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/models"
    nn = torch.nn
    args = dict(d_model=48, nhead=3, dim_feedforward=80, dropout=0.0)
    make(out, "encoder_layer_post_relu", nn.TransformerEncoderLayer(**args, batch_first=True), src_kpm=True, seed=1)
    make(out, "encoder_3_pre_gelu_norm_pe", nn.TransformerEncoder(
        nn.TransformerEncoderLayer(**args, activation="gelu", norm_first=True, batch_first=True), 3,
        norm=nn.LayerNorm(48)), pe="interleaved", src_causal=True, seed=2)
    make(out, "decoder_layer_post_gelu_seq_first", nn.TransformerDecoderLayer(**args, activation="gelu"),
         batch_first=False, tgt_causal=True, mem_kpm=True, seed=3)
    make(out, "decoder_1_pre_relu_norm", nn.TransformerDecoder(
        nn.TransformerDecoderLayer(**args, norm_first=True, batch_first=True), 1, norm=nn.LayerNorm(48)),
         tgt_causal=True, tgt_kpm=True, seed=4)
    make(out, "transformer_2_2_post_relu_pe_concat", nn.Transformer(
        48, 3, 2, 2, 80, dropout=0.0, batch_first=True), pe="concat", tgt_causal=True, src_kpm=True, tgt_kpm=True,
         mem_kpm=True, seed=5)
    print(f"wrote fixtures to {out}")


if __name__ == "__main__":
    main()
