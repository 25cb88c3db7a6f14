#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: fetches the default model, builds every
# binary (integration tests start the real launcher, router and shard), then runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-default-model.sh
cargo build --release --workspace --bins
cargo test --release --workspace
./scripts/lint-deploy.sh
./scripts/check-cuda.sh
