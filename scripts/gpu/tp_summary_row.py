#!/usr/bin/env python3
"""Markdown rows for scripts/gpu/tensor-parallel.sh: benchmark JSON lines on stdin, the
`<shape>-<shards>` tag as the argument."""
import json
import sys

shape, shards = sys.argv[1].rsplit("-", 1)
for line in sys.stdin:
    r = json.loads(line)
    print(f"| {shape} | {shards} | {r['batch_size']} | {r['decode_step_ms']:.2f} | "
          f"{r['decode_tokens_per_s']:.0f} |")
