#!/usr/bin/env python3
"""Language-model fixtures: tools/lm_reference.py's TransformerModel with fixed random weights,
exported with tools/export_torch.py, and PyTorch's greedy generation for two prompts of different
lengths (50 steps each, by full recomputation), with the logits of every step.

    /usr/bin/python3 tools/make_lm_fixtures.py tests/fixtures/lm

Each case directory holds config.json + model.safetensors, meta.txt, and raw float32 files:
promptN.f32 and sourceN.f32 (token ids), generatedN.f32 (the 50 greedy ids), logitsN.f32 [50, vocab].
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torch import export  # noqa: E402
from lm_reference import TransformerModel  # noqa: E402
from make_layer_fixtures import randomise, write  # noqa: E402

STEPS = 50
PROMPTS = [[3, 17, 5], [7, 1, 9, 22, 4, 11, 30]]
SOURCES = [[12, 4, 4, 40, 2], [8, 33, 21]]


def make(out_dir, name, seed, **kwargs):
    torch.manual_seed(seed)
    model = TransformerModel(vocab=48, d_model=32, heads=4, d_ff=64, max_len=96, **kwargs).eval()
    randomise(model.transformer)
    with torch.no_grad():
        model.linear.bias.uniform_(-0.5, 0.5)
    case = os.path.join(out_dir, name)
    export(model, case)
    meta = {"prompts": len(PROMPTS), "steps": STEPS, "encoder_decoder": int(model.encoder_decoder)}
    for i, prompt in enumerate(PROMPTS):
        src = SOURCES[i] if model.encoder_decoder else None
        new, steps = model.generate(prompt, STEPS, src_ids=src)
        assert len(new) == STEPS
        write(os.path.join(case, f"prompt{i}"), torch.tensor(prompt, dtype=torch.float32))
        if src is not None:
            write(os.path.join(case, f"source{i}"), torch.tensor(src, dtype=torch.float32))
        write(os.path.join(case, f"generated{i}"), torch.tensor(new, dtype=torch.float32))
        write(os.path.join(case, f"logits{i}"), torch.stack(steps))
        # How close the runner-up came at each step: a near tie could flip argmax on rounding alone.
        top2 = torch.stack(steps).topk(2, dim=1).values
        meta[f"min_margin{i}"] = f"{float((top2[:, 0] - top2[:, 1]).min()):.6f}"
    with open(os.path.join(case, "meta.txt"), "w") as f:
        for key, value in meta.items():
            f.write(f"{key} {value}\n")
    print(name, meta)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/lm"
    torch.set_grad_enabled(False)
    make(out, "gpt_post_relu", 1, norm_first=False, final_norm=False, activation="relu")
    make(out, "gpt_pre_gelu_tied", 2, norm_first=True, final_norm=True, activation="gelu", tie_weights=True)
    make(out, "seq2seq_post_relu", 3, num_decoder_layers=2, norm_first=False, activation="relu")
    make(out, "seq2seq_pre_gelu_unscaled", 4, num_decoder_layers=1, norm_first=True, activation="gelu",
         scale_embedding=False)


if __name__ == "__main__":
    main()
