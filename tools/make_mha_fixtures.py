#!/usr/bin/env python3
"""Golden fixtures for engine's MultiheadAttention, from PyTorch's nn.MultiheadAttention (eval mode).

Run with Debian's torch:  /usr/bin/python3 tools/make_mha_fixtures.py tests/fixtures/mha

Each case is a directory with meta.txt ("key value" lines) and one raw little-endian file per
tensor: *.f32 (float32) or *.u8 (bool as 0/1 bytes). torch 1.13 returns NaN for a query row whose
keys are all masked; the engine defines that row as zeros, so expected.f32 keeps torch's NaN and
the test compares such rows against zeros.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_layer_fixtures import write  # noqa: E402  (raw .f32 / .u8 files)


def make_case(out_dir, name, *, kind, d, heads, batch, q_len, kv_len, seed,
              key_padding=False, causal_float=False, bool_mask=False, bias=True):
    torch.manual_seed(seed)
    mha = torch.nn.MultiheadAttention(d, heads, batch_first=True, bias=bias).eval()
    with torch.no_grad():  # PyTorch zero-initialises the biases; make them count
        if bias:
            mha.in_proj_bias.uniform_(-0.5, 0.5)
            mha.out_proj.bias.uniform_(-0.5, 0.5)
    query = torch.randn(batch, q_len, d)
    memory = query if kind == "self" else torch.randn(batch, kv_len, d)
    kpm = None
    if key_padding:
        kpm = torch.zeros(batch, kv_len, dtype=torch.bool)
        kpm[0, kv_len - 3:] = True          # some padded keys
        if batch > 1:
            kpm[batch - 1, :] = True         # a fully padded sequence: NaN rows in torch 1.13
    attn_mask = None
    if causal_float:
        attn_mask = torch.nn.Transformer.generate_square_subsequent_mask(q_len)  # -inf above the diagonal
    elif bool_mask:
        attn_mask = torch.rand(q_len, kv_len) < 0.3                            # True = may not attend
        attn_mask[0, :] = True                                                  # row 0 sees nothing
    # Called with autograd on, so torch takes its reference path: 1.13's fused fast path crashes
    # without biases (its qkv_bias must be a tensor).
    expected, _ = mha(query, memory, memory, key_padding_mask=kpm, attn_mask=attn_mask, need_weights=False)
    case = os.path.join(out_dir, name)
    os.makedirs(case, exist_ok=True)
    state = mha.state_dict()
    write(os.path.join(case, "in_proj_weight"), state["in_proj_weight"])
    write(os.path.join(case, "out_proj_weight"), state["out_proj.weight"])
    if bias:
        write(os.path.join(case, "in_proj_bias"), state["in_proj_bias"])
        write(os.path.join(case, "out_proj_bias"), state["out_proj.bias"])
    write(os.path.join(case, "query"), query)
    if kind == "cross":
        write(os.path.join(case, "memory"), memory)
    if kpm is not None:
        write(os.path.join(case, "key_padding_mask"), kpm)
    if attn_mask is not None:
        write(os.path.join(case, "attn_mask"), attn_mask)
    write(os.path.join(case, "expected"), expected)
    with open(os.path.join(case, "meta.txt"), "w") as f:
        for key, value in [("kind", kind), ("d_model", d), ("heads", heads), ("batch", batch), ("q_len", q_len),
                           ("kv_len", kv_len), ("bias", int(bias)), ("key_padding_mask", int(kpm is not None)),
                           ("attn_mask", "none" if attn_mask is None else ("bool" if bool_mask else "float"))]:
            f.write(f"{key} {value}\n")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/mha"
    common = dict(d=48, heads=3, batch=2)
    make_case(out_dir, "self_plain", kind="self", q_len=17, kv_len=17, seed=1, **common)
    make_case(out_dir, "self_key_padding", kind="self", q_len=17, kv_len=17, seed=2, key_padding=True, **common)
    make_case(out_dir, "self_causal", kind="self", q_len=17, kv_len=17, seed=3, causal_float=True, **common)
    make_case(out_dir, "self_causal_key_padding", kind="self", q_len=17, kv_len=17, seed=4, causal_float=True,
              key_padding=True, **common)
    make_case(out_dir, "self_bool_mask", kind="self", q_len=9, kv_len=9, seed=5, bool_mask=True, **common)
    make_case(out_dir, "self_no_bias", kind="self", q_len=7, kv_len=7, seed=6, bias=False, d=64, heads=4, batch=3)
    make_case(out_dir, "cross_plain", kind="cross", q_len=9, kv_len=17, seed=7, **common)
    make_case(out_dir, "cross_key_padding", kind="cross", q_len=9, kv_len=17, seed=8, key_padding=True, **common)
    print(f"wrote fixtures to {out_dir}")


if __name__ == "__main__":
    main()
