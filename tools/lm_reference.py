#!/usr/bin/env python3
"""The reference language model: the seed's TransformerModel, in PyTorch, for training and export.

    embedding(ids) * sqrt(d_model) + sinusoidal positions -> stack -> linear -> logits

Two shapes, one class:
  * decoder-only (GPT-style): `transformer` is an nn.TransformerEncoder run with a causal mask,
    pre-LN or post-LN, with an optional final norm;
  * encoder-decoder: `transformer` is an nn.Transformer; source and target share the embedding.
The output projection `linear` may be tied to the embedding (tie_weights=True). Train it as any
nn.Module, then export it with tools/export_torch.py (or export_torch.export(model, dir)) and run
it with engine-generate. Needs only Debian's python3-torch. Dropout is 0 by default: the engine
implements inference.
"""
import math

import torch
from torch import nn


class PositionalEncoding(nn.Module):
    """pe[p, 2i] = sin(p / 10000^(2i/d)), pe[p, 2i+1] = cos(...), computed in float64 like the engine."""

    def __init__(self, d_model, max_len):
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div)
        self.register_buffer("pe", pe.to(torch.float32), persistent=False)

    def forward(self, x, start=0):  # x [B, S, d]
        return x + self.pe[start:start + x.size(1)]


class TransformerModel(nn.Module):
    def __init__(self, vocab, d_model=64, heads=4, d_ff=128, num_layers=2, num_decoder_layers=0,
                 activation="relu", norm_first=False, final_norm=True, max_len=256, tie_weights=False,
                 scale_embedding=True, dropout=0.0):
        """num_decoder_layers == 0: decoder-only with num_layers layers; otherwise encoder-decoder with
        num_layers encoder and num_decoder_layers decoder layers."""
        super().__init__()
        self.d_model, self.vocab, self.max_len = d_model, vocab, max_len
        self.scale_embedding, self.tie_weights = scale_embedding, tie_weights
        self.encoder_decoder = num_decoder_layers > 0
        self.embedding = nn.Embedding(vocab, d_model)
        self.pos_encoder = PositionalEncoding(d_model, max_len)
        if self.encoder_decoder:
            self.transformer = nn.Transformer(d_model, heads, num_layers, num_decoder_layers, d_ff, dropout,
                                              activation=activation, batch_first=True, norm_first=norm_first)
        else:
            layer = nn.TransformerEncoderLayer(d_model, heads, d_ff, dropout, activation=activation,
                                               batch_first=True, norm_first=norm_first)
            self.transformer = nn.TransformerEncoder(layer, num_layers,
                                                     norm=nn.LayerNorm(d_model) if final_norm else None,
                                                     enable_nested_tensor=False)
        self.linear = nn.Linear(d_model, vocab)
        if tie_weights:
            self.linear.weight = self.embedding.weight

    def embed(self, ids):
        x = self.embedding(ids)
        if self.scale_embedding:
            x = x * math.sqrt(self.d_model)
        return self.pos_encoder(x)

    @staticmethod
    def causal_mask(n):
        return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)  # True = may not attend

    def forward(self, ids, src_ids=None):
        """ids [B, T] -> logits [B, T, vocab]; src_ids [B, S] for encoder-decoder models."""
        mask = self.causal_mask(ids.size(1))
        if self.encoder_decoder:
            memory = self.transformer.encoder(self.embed(src_ids))
            hidden = self.transformer.decoder(self.embed(ids), memory, tgt_mask=mask)
        else:
            hidden = self.transformer(self.embed(ids), mask=mask)
        return self.linear(hidden)

    @torch.no_grad()
    def generate(self, prompt, max_new, eos=None, src_ids=None):
        """Greedy decoding of one sequence by full recomputation; returns (new ids, logits per step)."""
        ids, new, steps = list(prompt), [], []
        src = None if src_ids is None else torch.tensor([src_ids])
        for _ in range(max_new):
            logits = self.forward(torch.tensor([ids]), src)[0, -1]
            steps.append(logits)
            token = int(torch.argmax(logits))
            new.append(token)
            if token == eos:
                break
            ids.append(token)
        return new, steps
