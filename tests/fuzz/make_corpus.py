#!/usr/bin/env python3
"""Writes the seed corpus of the loader's fuzz target (tests/fuzz/loader_fuzz.cpp).

Each input is a 4-byte little-endian config length, the config.json text, then a safetensors image.
The valid seeds are the model fixtures of tests/fixtures/models/*, shrunk to d_model 8, 2 heads and
d_ff 16 (each tensor is the leading block of the fixture's own tensor), in F32, F16 and BF16. The
broken seeds each carry one defect the loader must refuse with an engine::Error.

Plain python3, no third-party modules; the output is deterministic.

    python3 tests/fuzz/make_corpus.py [OUT_DIR]     # default: tests/fuzz/corpus (replaced)
"""
import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "fixtures", "models")
D_MODEL, HEADS, D_FF, MAX_LEN = 8, 2, 16, 16


# ---- safetensors ---------------------------------------------------------------------------------

def read_safetensors(path):
    """{name: (dtype, shape, raw bytes)} in file order."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = (t["dtype"], list(t["shape"]), data[b:e])
    return out


def header_text(entries, metadata=None):
    """entries: [(name, dtype, shape, [begin, end])] -> the JSON header, unpadded."""
    parts = []
    if metadata is not None:
        parts.append('"__metadata__":' + json.dumps(metadata, separators=(",", ":")))
    for name, dtype, shape, offsets in entries:
        parts.append(json.dumps(name) + ':{"dtype":' + json.dumps(dtype) + ',"shape":' +
                     json.dumps(shape, separators=(",", ":")) + ',"data_offsets":' +
                     json.dumps(offsets, separators=(",", ":")) + "}")
    return "{" + ",".join(parts) + "}"


def pack_safetensors(header, data, pad=True, length=None):
    """8-byte length + header (space-padded to 8 bytes when pad) + data."""
    h = header.encode("utf-8") if isinstance(header, str) else header
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw)] laid out back to back."""
    entries, blobs, offset = [], [], 0
    for name, dtype, shape, raw in tensors:
        entries.append((name, dtype, shape, [offset, offset + len(raw)]))
        blobs.append(raw)
        offset += len(raw)
    return pack_safetensors(header_text(entries, metadata), b"".join(blobs))


# ---- fuzz input ----------------------------------------------------------------------------------

def fuzz_input(config, weights):
    c = config.encode("utf-8") if isinstance(config, str) else config
    return struct.pack("<I", len(c)) + c + weights


def config_text(cfg):
    return json.dumps(cfg, indent=1)


# ---- shrinking -----------------------------------------------------------------------------------

def shrink_dim(dim, cfg):
    d, ff = cfg["d_model"], cfg["d_ff"]
    if dim == 3 * d:
        return 3 * D_MODEL
    if dim == d:
        return D_MODEL
    if dim == ff:
        return D_FF
    raise ValueError(f"dimension {dim} is none of d_model {d}, 3 d_model or d_ff {ff}")


def leading_block(raw, shape, new_shape):
    """The leading new_shape block of a row-major F32 tensor, as F32 values."""
    values = struct.unpack(f"<{len(raw) // 4}f", raw)
    if len(shape) == 1:
        return list(values[:new_shape[0]])
    rows, cols = shape
    return [values[r * cols + c] for r in range(new_shape[0]) for c in range(new_shape[1])]


def encode(values, dtype):
    if dtype == "F32":
        return struct.pack(f"<{len(values)}f", *values)
    if dtype == "F16":
        return struct.pack(f"<{len(values)}e", *values)
    if dtype == "BF16":  # the top half of the float32 bits (truncated)
        return b"".join(struct.pack("<I", b)[2:] for b in struct.unpack(f"<{len(values)}I",
                                                                          struct.pack(f"<{len(values)}f", *values)))
    raise ValueError(dtype)


def shrunk_model(model_dir):
    """(config dict, [(name, shape, float values)]) of a fixture model at the small dimensions."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    tensors = []
    for name, (dtype, shape, raw) in read_safetensors(os.path.join(model_dir, "model.safetensors")).items():
        assert dtype == "F32", (model_dir, name, dtype)
        new_shape = [shrink_dim(s, cfg) for s in shape]
        tensors.append((name, new_shape, leading_block(raw, shape, new_shape)))
    cfg = dict(cfg, d_model=D_MODEL, heads=HEADS, d_ff=D_FF)
    if cfg.get("positional_encoding"):
        cfg["positional_encoding"] = dict(cfg["positional_encoding"], max_len=MAX_LEN)
    return cfg, tensors


def weights_of(tensors, dtype="F32", metadata=None):
    return safetensors([(n, dtype, s, encode(v, dtype)) for n, s, v in tensors], metadata)


# ---- the corpus ----------------------------------------------------------------------------------

def seeds():
    out = {}
    models = sorted(d for d in os.listdir(MODELS) if os.path.isfile(os.path.join(MODELS, d, "model.safetensors")))
    shrunk = {m: shrunk_model(os.path.join(MODELS, m)) for m in models}
    for m, (cfg, tensors) in shrunk.items():
        out[f"valid_{m}_f32"] = fuzz_input(config_text(cfg), weights_of(tensors))
    # One model in every dtype, and with metadata.
    base = "encoder_layer_post_relu" if "encoder_layer_post_relu" in shrunk else models[0]
    cfg, tensors = shrunk[base]
    good_cfg = config_text(cfg)
    out[f"valid_{base}_f16"] = fuzz_input(good_cfg, weights_of(tensors, "F16"))
    out[f"valid_{base}_bf16"] = fuzz_input(good_cfg, weights_of(tensors, "BF16"))
    out[f"valid_{base}_metadata"] = fuzz_input(good_cfg, weights_of(tensors, metadata={"format": "pt"}))
    mixed = [(n, ("F32", "F16", "BF16")[i % 3], s, encode(v, ("F32", "F16", "BF16")[i % 3]))
             for i, (n, s, v) in enumerate(tensors)]
    out[f"valid_{base}_mixed_dtypes"] = fuzz_input(good_cfg, safetensors(mixed))
    good = weights_of(tensors)
    # The same config padded by one space: the fuzz target scans for NaN/Inf when the config's
    # length is odd, so each of these reaches both settings.
    out[f"valid_{base}_config_len_plus_1"] = fuzz_input(good_cfg + " ", good)

    # Input framing.
    out["frame_empty"] = b""
    out["frame_short"] = b"\x01\x02\x03"
    out["frame_config_only"] = fuzz_input(good_cfg, b"")
    out["frame_length_past_end"] = struct.pack("<I", 0xFFFFFFFF) + good_cfg.encode()
    out["frame_no_config"] = fuzz_input(b"", good)

    # Broken safetensors images (with the good config).
    def broken(name, weights, config=good_cfg):
        out["st_" + name] = fuzz_input(config, weights)

    broken("truncated_data", good[:len(good) // 2])
    broken("truncated_header", good[:40])
    broken("under_8_bytes", good[:5])
    broken("header_length_huge", struct.pack("<Q", 1 << 40) + good[8:])
    broken("header_length_past_end", struct.pack("<Q", len(good)) + good[8:])
    broken("header_length_zero", struct.pack("<Q", 0) + good[8:])
    broken("trailing_bytes", good + b"\0\0\0\0")
    first = tensors[0]
    raw0 = encode(first[2], "F32")
    dup = header_text([(first[0], "F32", first[1], [0, len(raw0)])] * 2)
    broken("duplicate_key", pack_safetensors(dup, raw0))
    broken("duplicate_key_nested",
           pack_safetensors('{"w":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4))
    for dt in ("F64", "I8", "f32", ""):
        broken(f"dtype_{dt or 'empty'}", pack_safetensors(header_text([("w", dt, [2], [0, 8])]), b"\0" * 8))
    broken("dtype_not_string", pack_safetensors('{"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}', b"\0" * 8))
    broken("shape_negative", pack_safetensors(header_text([("w", "F32", [-2], [0, 8])]), b"\0" * 8))
    broken("shape_float", pack_safetensors('{"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', b"\0" * 8))
    broken("shape_overflow", pack_safetensors(header_text([("w", "F32", [1 << 40, 1 << 40], [0, 8])]), b"\0" * 8))
    broken("shape_mismatch_bytes", pack_safetensors(header_text([("w", "F32", [3], [0, 8])]), b"\0" * 8))
    broken("offsets_reversed", pack_safetensors(header_text([("w", "F32", [0], [8, 0])]), b"\0" * 8))
    broken("offsets_past_end", pack_safetensors(header_text([("w", "F32", [4], [0, 16])]), b"\0" * 8))
    broken("offsets_negative", pack_safetensors(header_text([("w", "F32", [2], [-8, 0])]), b"\0" * 8))
    broken("offsets_three", pack_safetensors(header_text([("w", "F32", [2], [0, 8, 8])]), b"\0" * 8))
    broken("offsets_overlap", pack_safetensors(header_text([("a", "F32", [2], [0, 8]), ("b", "F32", [2], [4, 12])]),
                                               b"\0" * 12))
    broken("offsets_gap", pack_safetensors(header_text([("a", "F32", [1], [0, 4]), ("b", "F32", [1], [8, 12])]),
                                           b"\0" * 12))
    broken("misaligned_f32", pack_safetensors(header_text([("w", "F32", [1], [0, 4])]) + " ", b"\0" * 4, pad=False))
    broken("misaligned_f16", pack_safetensors(header_text([("a", "F16", [1], [0, 2]), ("w", "F32", [1], [2, 6])]),
                                              b"\0" * 6))
    broken("header_not_object", pack_safetensors("[1,2,3]", b""))
    broken("header_not_json", pack_safetensors('{"w":{"dtype":"F32",', b""))
    broken("header_invalid_utf8", pack_safetensors(b'{"w\xff\xfe":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
                                                   b"\0" * 4))
    broken("metadata_not_string", pack_safetensors('{"__metadata__":{"k":1}}', b""))
    broken("tensor_not_object", pack_safetensors('{"w":[1,2]}', b""))
    # Valid images that do not fit the config.
    broken("tensor_missing", weights_of(tensors[1:]))
    broken("tensor_unexpected", weights_of(tensors + [("extra.weight", [2], [1.0, 2.0])]))
    wrong = [(n, ([s[1], s[0]] if len(s) == 2 and s[0] != s[1] else s), v) for n, s, v in tensors]
    broken("tensor_wrong_shape", weights_of(wrong))
    nan = [(n, s, ([float("nan")] + v[1:]) if i == 0 else v) for i, (n, s, v) in enumerate(tensors)]
    broken("tensor_nan_checked", weights_of(nan), good_cfg + " ")  # odd length: the target checks finiteness
    broken("tensor_inf_unchecked", weights_of([(n, s, [float("inf")] * len(v)) for n, s, v in tensors]))

    # Broken configs (with the good weights).
    def bad_config(name, text, weights=good):
        out["cfg_" + name] = fuzz_input(text, weights)

    bad_config("heads_not_dividing", config_text(dict(cfg, heads=3)))
    bad_config("d_model_zero", config_text(dict(cfg, d_model=0)))
    bad_config("d_model_huge", config_text(dict(cfg, d_model=1 << 40)))
    bad_config("d_ff_negative", config_text(dict(cfg, d_ff=-1)))
    bad_config("unknown_field", config_text(dict(cfg, dropout=0.1)))
    missing = dict(cfg)
    del missing["d_model"]
    bad_config("missing_field", config_text(missing))
    bad_config("wrong_type", config_text(dict(cfg, d_model="8")))
    bad_config("version_2", config_text(dict(cfg, version=2)))
    bad_config("format_other", config_text(dict(cfg, format="onnx")))
    bad_config("architecture_other", config_text(dict(cfg, architecture="bert")))
    bad_config("activation_other", config_text(dict(cfg, activation="tanh")))
    bad_config("eps_negative", config_text(dict(cfg, layer_norm_eps=-1e-5)))
    bad_config("eps_string", config_text(dict(cfg, layer_norm_eps="1e-5")))
    bad_config("norm_first_int", config_text(dict(cfg, norm_first=1)))
    bad_config("layers_for_encoder_layer", config_text(dict(cfg, num_decoder_layers=2)))
    bad_config("pe_odd_d_model", config_text(dict(cfg, d_model=9, heads=3,
                                                  positional_encoding={"type": "sinusoidal", "max_len": 4})))
    bad_config("pe_bad_layout", config_text(dict(cfg, positional_encoding={"type": "sinusoidal", "layout": "x",
                                                                           "max_len": 4})))
    bad_config("pe_max_len_zero", config_text(dict(cfg, positional_encoding={"type": "sinusoidal", "max_len": 0})))
    bad_config("pe_not_object", config_text(dict(cfg, positional_encoding=[1])))
    bad_config("duplicate_key", good_cfg.replace('"d_model": 8', '"d_model": 8, "d_model": 8'))
    bad_config("not_object", "[]")
    bad_config("not_json", good_cfg[:len(good_cfg) // 2])
    bad_config("invalid_utf8", good_cfg.encode().replace(b'"source": "', b'"source": "\xc3\x28'))
    return out


def main(argv):
    out_dir = argv[1] if len(argv) > 1 else os.path.join(HERE, "corpus")
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    total = 0
    for name, data in sorted(seeds().items()):
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
        total += len(data)
    print(f"make_corpus: {len(os.listdir(out_dir))} inputs, {total} bytes in {out_dir}")


if __name__ == "__main__":
    main(sys.argv)
