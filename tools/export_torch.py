#!/usr/bin/env python3
"""Exports a PyTorch transformer module to an engine model directory (config.json + model.safetensors).

    /usr/bin/python3 tools/export_torch.py MODULE.pt OUT_DIR [--positional sinusoidal]
                                          [--pe-layout interleaved|concat] [--max-len N]

MODULE.pt is a torch.save()d nn.TransformerEncoderLayer, nn.TransformerEncoder,
nn.TransformerDecoderLayer, nn.TransformerDecoder or nn.Transformer (batch_first either way: the
engine's inputs are batch-first), or tools/lm_reference.py's TransformerModel (a language model:
run it with engine-generate). Needs only Debian's python3-torch. Also importable:

    from export_torch import export
    export(module, "out_dir", positional="sinusoidal", pe_layout="interleaved", max_len=512)
"""
import argparse
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F


def _activation_name(layer):
    act = getattr(layer, "activation", None)
    if act is F.relu or act == "relu" or isinstance(act, torch.nn.ReLU):
        return "relu"
    if act is F.gelu or act == "gelu" or isinstance(act, torch.nn.GELU):
        return "gelu"
    raise ValueError(f"unsupported activation {act!r}: the engine runs relu and gelu")


def _layer_config(layer):
    return {
        "d_model": layer.self_attn.embed_dim,
        "heads": layer.self_attn.num_heads,
        "d_ff": layer.linear1.out_features,
        "activation": _activation_name(layer),
        "norm_first": bool(getattr(layer, "norm_first", False)),
        "layer_norm_eps": float(layer.norm1.eps),
    }


def _language_model_config(model):
    """config.json for tools/lm_reference.py's TransformerModel: its stack plus the lm section."""
    cfg = config_of(model.transformer)
    cfg["lm"] = {"vocab": model.vocab, "scale_embedding": bool(model.scale_embedding),
                 "tie_weights": bool(model.tie_weights)}
    cfg["positional_encoding"] = {"type": "sinusoidal", "layout": "interleaved", "max_len": int(model.max_len)}
    cfg["source"] = type(model).__name__
    return cfg


def _is_language_model(module):
    return all(hasattr(module, a) for a in ("embedding", "pos_encoder", "transformer", "linear"))


def config_of(module):
    """The engine config.json dictionary for a PyTorch module."""
    nn = torch.nn
    if _is_language_model(module):
        return _language_model_config(module)
    if isinstance(module, nn.TransformerEncoderLayer):
        cfg = {"architecture": "encoder_layer", **_layer_config(module), "num_encoder_layers": 1}
    elif isinstance(module, nn.TransformerDecoderLayer):
        cfg = {"architecture": "decoder_layer", **_layer_config(module), "num_decoder_layers": 1}
    elif isinstance(module, nn.TransformerEncoder):
        cfg = {"architecture": "encoder", **_layer_config(module.layers[0]),
               "num_encoder_layers": len(module.layers), "encoder_norm": module.norm is not None}
    elif isinstance(module, nn.TransformerDecoder):
        cfg = {"architecture": "decoder", **_layer_config(module.layers[0]),
               "num_decoder_layers": len(module.layers), "decoder_norm": module.norm is not None}
    elif isinstance(module, nn.Transformer):
        cfg = {"architecture": "transformer", **_layer_config(module.encoder.layers[0]),
               "num_encoder_layers": len(module.encoder.layers), "num_decoder_layers": len(module.decoder.layers),
               "encoder_norm": module.encoder.norm is not None, "decoder_norm": module.decoder.norm is not None}
    else:
        raise TypeError(f"cannot export {type(module).__name__}: expected an nn.Transformer* module")
    return {"format": "engine-transformer", "version": 1, **cfg, "source": type(module).__name__}


def write_safetensors(path, tensors):
    """A safetensors writer in a few lines: 8-byte little-endian header length, JSON header, data."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data section 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def export(module, out_dir, positional=None, pe_layout="interleaved", max_len=512):
    cfg = config_of(module)
    tensors = module.state_dict()
    if _is_language_model(module):
        positional = None  # the model's own positions, already in cfg
        if cfg["lm"]["tie_weights"]:
            tensors = {k: v for k, v in tensors.items() if k != "linear.weight"}
    if positional is not None:
        if positional != "sinusoidal":
            raise ValueError("positional must be 'sinusoidal' or None")
        cfg["positional_encoding"] = {"type": "sinusoidal", "layout": pe_layout, "max_len": int(max_len)}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors)
    return cfg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="a torch.save()d nn.Transformer* module")
    parser.add_argument("out_dir")
    parser.add_argument("--positional", choices=["sinusoidal"], default=None)
    parser.add_argument("--pe-layout", choices=["interleaved", "concat"], default="interleaved")
    parser.add_argument("--max-len", type=int, default=512)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # so a pickled TransformerModel finds lm_reference
    module = torch.load(args.module, map_location="cpu")
    cfg = export(module.eval(), args.out_dir, args.positional, args.pe_layout, args.max_len)
    print(f"exported {cfg['source']} ({cfg['architecture']}, d_model {cfg['d_model']}) to {args.out_dir}")


if __name__ == "__main__":
    sys.exit(main())
