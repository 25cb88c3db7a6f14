#!/usr/bin/env python3
"""Writes a Llama-3-8B-shaped model with random bf16 weights (safetensors) for benchmarks.

Usage: python3 make_llama8b.py OUT_DIR TOKENIZER_DIR
TOKENIZER_DIR holds a tokenizer.json and tokenizer_config.json (any Llama-style tokenizer,
e.g. a tiny model from `make-tiny-models`); only the weights' shapes matter for timing.
"""
import shutil
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

out, tok = sys.argv[1], sys.argv[2]
cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                  max_position_embeddings=8192, rope_theta=500000.0, torch_dtype="bfloat16")
with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained(out, safe_serialization=True)
for name in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f"{tok}/{name}", f"{out}/{name}")
print(f"saved {out}")
