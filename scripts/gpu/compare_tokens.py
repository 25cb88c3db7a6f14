#!/usr/bin/env python3
"""Compares `text-generation-benchmark --dump-tokens` files of several shard counts against
the first one: greedy token ids must be equal, logprobs within TOLERANCE (bf16).

Usage: python3 compare_tokens.py TOLERANCE base.json other.json [...]
Exits non-zero when a file differs.
"""
import json
import sys

tol = float(sys.argv[1])
base_path, others = sys.argv[2], sys.argv[3:]
base = json.load(open(base_path))
ok = True
for path in others:
    other = json.load(open(path))
    for batch, want in base.items():
        got = other.get(batch)
        if got is None:
            print(f"{path}: batch {batch} missing")
            ok = False
            continue
        same = got["ids"] == want["ids"]
        diff = max((abs(a - b) for a, b in zip(got["logprobs"], want["logprobs"])), default=0.0)
        status = "ok" if same and diff <= tol else "DIFFERS"
        ok &= status == "ok"
        print(f"{path} batch {batch}: {len(want['ids'])} tokens, ids "
              f"{'equal' if same else 'differ'}, max |logprob diff| {diff:.2e} -> {status}")
sys.exit(0 if ok else 1)
