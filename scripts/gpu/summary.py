#!/usr/bin/env python3
"""Prints the table of scripts/gpu/benchmark.sh from the files it wrote in OUT_DIR."""
import json
import os
import sys

out = sys.argv[1]


def lines(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path) if l.startswith("{")]


ours = {r["batch_size"]: r for r in lines("ours_decode.txt")}
pre = lines("ours_prefill.txt")
hf_path = os.path.join(out, "hf_baseline.json")
hf = json.load(open(hf_path)) if os.path.exists(hf_path) else {}
hc = {r.get("bs"): r for r in lines("hf_compiled.jsonl")}
roof = hf.get("floor_ms_excl_embedding", float("nan"))
peak = hf.get("matmul_bf16_8192_TFLOPs", float("nan"))
nan = float("nan")
print(f"\nroofline (batch-1 step, weights excl. embedding / copy bandwidth): {roof:.2f} ms; "
      f"bf16 matmul peak {peak:.0f} TFLOP/s")
print("| metric | tgi-rs | HF eager | HF static+compile | target |")
print("|---|---:|---:|---:|---:|")
if 1 in ours:
    ms = ours[1]["decode_step_ms"]
    print(f"| batch 1 ms/token | {ms:.2f} ({roof / ms * 100:.0f}% of roofline) | "
          f"{hf.get('b1_decode_ms_per_token', nan):.2f} | {hc.get(1, {}).get('ms_per_step', nan):.2f} | 6.0 |")
if 32 in ours:
    print(f"| batch 32 tok/s | {ours[32]['decode_tokens_per_s']:.0f} | "
          f"{hf.get('b32_tokens_per_s', nan):.0f} | {hc.get(32, {}).get('tok_s', nan):.0f} | 4000 |")
g64 = {r["batch_size"]: r for r in lines("ours_decode_graph64.txt")}
if 64 in ours:
    print(f"| batch 64 tok/s | {ours[64]['decode_tokens_per_s']:.0f} | | | 7000 |")
if 64 in g64:
    print(f"| batch 64 tok/s, CUDA_GRAPHS=...,64 | {g64[64]['decode_tokens_per_s']:.0f} | | | 7000 |")
if pre:
    p = pre[0]
    # 2 FLOPs per weight per token; 7.5e9 weights outside the input embedding.
    tflops = 2 * 7.5e9 * p["sequence_length"] / (p["prefill_ms"] * 1e-3) / 1e12
    print(f"| prefill {p['sequence_length']} tokens: TTFT ms / tok/s / TFLOP/s | {p['prefill_ms']:.1f} / "
          f"{p['prefill_tokens_per_s']:.0f} / {tflops:.0f} ({tflops / peak * 100:.0f}% of peak) | | | 50% of peak |")
