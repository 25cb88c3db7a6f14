#!/usr/bin/env bash
# Builds the release binaries the Docker image ships. The Dockerfile's builder stage runs this
# script and nothing else, so the image is built by the same commands a machine with the CUDA
# toolkit can run directly (and CI checks that the Dockerfile still calls it).
#
# The shard is the only crate that touches the GPU: it is built with SHARD_FEATURES (default
# `cuda`; `nccl` adds tensor parallelism across GPUs; empty builds it for the CPU). The launcher
# and router are built plain, in a separate invocation, so CUDA features never leak into them.
#
# Env: CUDA_COMPUTE_CAP (default 90: sm_90 = H100/H200), SHARD_FEATURES, CARGO_TARGET_DIR.
# `--check` resolves the same packages and features with `cargo tree` instead of building
# (seconds, no CUDA toolkit needed): scripts/lint-deploy.sh runs it in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
SHARD_FEATURES="${SHARD_FEATURES-cuda}"

shard_features=()
if [[ -n "${SHARD_FEATURES}" ]]; then
  shard_features=(--features "${SHARD_FEATURES}")
fi

check=false
if [[ "${1:-}" == "--check" ]]; then
  check=true
fi

# One place for the build command, so the checked and the real builds cannot drift apart.
build() {
  if ${check}; then
    echo "+ cargo build --release $*"
    cargo tree --quiet --edges normal,build --prefix none "$@" >/dev/null
  else
    (set -x; cargo build --release "$@")
  fi
}

build -p text-generation-shard "${shard_features[@]}"
build -p text-generation-router -p text-generation-launcher
