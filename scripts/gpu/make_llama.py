#!/usr/bin/env python3
"""Writes a Llama-3-shaped model with random bf16 weights (safetensors) for benchmarks.

Usage: python3 make_llama.py OUT_DIR TOKENIZER_DIR [8b|70b]
TOKENIZER_DIR holds a tokenizer.json and tokenizer_config.json (any Llama-style tokenizer,
e.g. a tiny model from `make-tiny-models`); only the weights' shapes matter for timing.
The 70B shape needs ~140 GB of host memory and disk.
"""
import shutil
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=8),
    "70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                num_attention_heads=64, num_key_value_heads=8),
}

out, tok = sys.argv[1], sys.argv[2]
shape = sys.argv[3] if len(sys.argv) > 3 else "8b"
cfg = LlamaConfig(vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                  torch_dtype="bfloat16", **SHAPES[shape])
# Small shapes initialise on the GPU (seconds); 70B does not fit one, so it uses the host.
device = "cuda" if shape == "8b" and torch.cuda.is_available() else "cpu"
torch.set_default_dtype(torch.bfloat16)
with torch.device(device):
    model = LlamaForCausalLM(cfg)
model.save_pretrained(out, safe_serialization=True, max_shard_size="10GB")
for name in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f"{tok}/{name}", f"{out}/{name}")
print(f"saved {shape} to {out}")
