#!/usr/bin/env bash
# The CUDA benchmark of the shard against HF transformers, in one run on a GPU machine:
# a Llama-3-8B-shaped random bf16 model, tgi-rs decode at batch 1/32/64 (128-token prompts,
# 256 new tokens; batch 64 also with a CUDA graph for it) and a 2048-token prefill, then HF transformers eager and static cache +
# torch.compile, and a summary table against the memory-bandwidth roofline.
#
# Usage: scripts/gpu/benchmark.sh BIN_DIR OUT_DIR
#   BIN_DIR: text-generation-shard built with `--features nccl` (or `cuda`),
#            text-generation-benchmark, and a tiny model directory `tiny/llama` for the
#            tokenizer (`make-tiny-models BIN_DIR/tiny`).
# Needs python3 with torch and transformers (for the model and the baselines).
set -euo pipefail
BIN=$(cd "$1" && pwd)
OUT=$(mkdir -p "$2" && cd "$2" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=${MODEL_DIR:-/tmp/llama8b}
export PATH="$BIN:$PATH"
# NVLink multicast stays off on shared hosts.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
[ -e "$MODEL/config.json" ] || python3 "$HERE/make_llama.py" "$MODEL" "$BIN/tiny/llama" 8b
echo "-- tgi-rs: 128-token prompts, 256 new tokens"
text-generation-benchmark --model "$MODEL" --batch-size 1 --batch-size 32 --batch-size 64 \
  --sequence-length 128 --decode-length 256 --runs 3 --kv-tokens 65536 --json |
  tee "$OUT/ours_decode.txt"
echo "-- tgi-rs: batch 64 with a CUDA graph captured for it (CUDA_GRAPHS=1,2,4,8,16,32,64)"
CUDA_GRAPHS=1,2,4,8,16,32,64 text-generation-benchmark --model "$MODEL" --batch-size 64 \
  --sequence-length 128 --decode-length 256 --runs 3 --kv-tokens 65536 --json |
  tee "$OUT/ours_decode_graph64.txt"
echo "-- tgi-rs: 2048-token prompt (time to first token)"
text-generation-benchmark --model "$MODEL" --batch-size 1 --sequence-length 2048 \
  --decode-length 8 --runs 3 --kv-tokens 16384 --json | tee "$OUT/ours_prefill.txt"
echo "-- HF transformers, eager (sdpa)"
PYTHONUNBUFFERED=1 python3 "$HERE/hf_baseline.py" --out "$OUT/hf_baseline.json" | tail -8
echo "-- HF transformers, static cache + torch.compile(reduce-overhead)"
PYTHONUNBUFFERED=1 python3 "$HERE/hf_static_compiled.py" | grep '^{' | tee "$OUT/hf_compiled.jsonl"
python3 "$HERE/summary.py" "$OUT"
