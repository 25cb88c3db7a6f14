#!/usr/bin/env bash
# Tensor parallelism on a multi-GPU machine in one run: the Llama-3-8B shape served with 1, 2
# (and 4, 8 where the GPUs exist) NCCL shards — greedy tokens compared with 1 shard, then
# batch 1/32/64 decode per shard count; with 4+ GPUs and MODEL_70B=1 also the 70B shape.
#
# Usage: scripts/gpu/tensor-parallel.sh BIN_DIR OUT_DIR
#   BIN_DIR: text-generation-shard built with `--features nccl`, text-generation-benchmark,
#            and `tiny/llama` (`make-tiny-models BIN_DIR/tiny`) for a tokenizer.
set -euo pipefail
BIN=$(cd "$1" && pwd)
OUT=$(mkdir -p "$2" && cd "$2" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
export PATH="$BIN:$PATH"
# NVLink multicast stays off on shared hosts.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
GPUS=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"

run_shape() { # shape model_dir shard counts...
  local shape=$1 model=$2
  shift 2
  [ -e "$model/config.json" ] || python3 "$HERE/make_llama.py" "$model" "$BIN/tiny/llama" "$shape"
  local files=()
  for n in "$@"; do
    echo "-- $shape, $n shard(s)"
    text-generation-benchmark --model "$model" --num-shard "$n" --batch-size 1 --batch-size 32 \
      --batch-size 64 --sequence-length 128 --decode-length 128 --runs 3 --kv-tokens 32768 --json \
      --dump-tokens "$OUT/tokens-$shape-$n.json" | tee "$OUT/decode-$shape-$n.txt"
    files+=("$OUT/tokens-$shape-$n.json")
  done
  if [ "${#files[@]}" -gt 1 ]; then
    python3 "$HERE/compare_tokens.py" 5e-2 "${files[@]}" | tee "$OUT/parity-$shape.txt"
  fi
}

counts=(1)
for n in 2 4 8; do [ "$GPUS" -ge "$n" ] && counts+=("$n"); done
run_shape 8b "${MODEL_DIR:-/tmp/llama8b}" "${counts[@]}"
if [ "${MODEL_70B:-0}" = 1 ] && [ "$GPUS" -ge 4 ]; then
  counts70=()
  for n in 4 8; do [ "$GPUS" -ge "$n" ] && counts70+=("$n"); done
  run_shape 70b "${MODEL_70B_DIR:-/tmp/llama70b}" "${counts70[@]}"
fi
echo "-- summary: decode ms/step (p50) and tokens/s"
echo "| shape | shards | batch | ms/step | tokens/s |"
echo "|---|---:|---:|---:|---:|"
for f in "$OUT"/decode-*.txt; do
  tag=${f##*/decode-}
  grep '^{' "$f" | python3 "$HERE/tp_summary_row.py" "${tag%.txt}"
done
