#!/usr/bin/env python3
"""Golden greedy tokens and logprobs from HF transformers for the tiny test models.

Usage: python3 scripts/parity/hf_golden.py MODELS_DIR OUT_DIR
  MODELS_DIR holds one directory per architecture, written by
  `cargo run -p test-models --bin make-tiny-models MODELS_DIR`.
Writes OUT_DIR/<arch>.json, which shard/tests/hf_parity.rs compares against.
The reference runs in float32 with eager attention and recomputes the whole sequence at every
step (no KV cache), so it is independent of any caching or batching logic.
"""
import hashlib
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

# Keep in sync with PROMPTS in shard/tests/hf_parity.rs.
PROMPTS = [
    "Hello",
    "The quick brown fox jumps over the lazy dog",
    "a",
    "Once upon a time, in a land far, far away, there lived a",
    "1 2 3 4 5",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "short",
    "This prompt is somewhat longer than the others so that its prefill spans several KV blocks.",
]
NEW_TOKENS = 20
TOP_N = 5


def main(models_dir: str, out_dir: str) -> None:
    torch.manual_seed(0)
    os.makedirs(out_dir, exist_ok=True)
    for arch in sorted(os.listdir(models_dir)):
        path = os.path.join(models_dir, arch)
        with open(os.path.join(path, "model.safetensors"), "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, attn_implementation="eager"
        ).eval()
        cases = []
        for prompt in PROMPTS:
            ids = tok(prompt, add_special_tokens=True)["input_ids"]
            seq = list(ids)
            greedy, greedy_lp, tops = [], [], []
            with torch.no_grad():
                full = model(torch.tensor([seq])).logits[0].float()
                plp = torch.log_softmax(full, dim=-1)
                prompt_lp = [None] + [plp[i, seq[i + 1]].item() for i in range(len(seq) - 1)]
                for _ in range(NEW_TOKENS):
                    logits = model(torch.tensor([seq])).logits[0, -1].float()
                    lp = torch.log_softmax(logits, dim=-1)
                    nxt = int(torch.argmax(lp).item())
                    top = torch.topk(lp, TOP_N)
                    greedy.append(nxt)
                    greedy_lp.append(lp[nxt].item())
                    tops.append({"ids": top.indices.tolist(), "logprobs": top.values.tolist()})
                    seq.append(nxt)
            cases.append({
                "prompt": prompt,
                "input_ids": ids,
                "prompt_logprobs": prompt_lp,
                "greedy_ids": greedy,
                "greedy_logprobs": greedy_lp,
                "top_tokens": tops,
            })
        fixture = {
            "arch": arch,
            "safetensors_sha256": sha,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "new_tokens": NEW_TOKENS,
            "cases": cases,
        }
        with open(os.path.join(out_dir, f"{arch}.json"), "w") as f:
            json.dump(fixture, f, indent=1)
        print(arch, sha[:12], [c["greedy_ids"][:5] for c in cases[:2]])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
