#!/usr/bin/env bash
# Installs a CUDA 13.0 build toolchain (nvcc, headers, cuBLAS/cuRAND/NCCL libraries) from pip
# wheels into PREFIX (default ~/.cache/cuda-13.0), so the `cuda`/`nccl` features build on a
# machine without a GPU or a system CUDA. Writes PREFIX/env.sh; source it before building.
# A stub libcuda.so.1 (every cu* symbol cudarc declares) satisfies the link; at run time the
# NVIDIA driver's real library is loaded.
# Usage: ./scripts/setup-cuda-toolchain.sh [PREFIX] && . PREFIX/env.sh
set -euo pipefail
PREFIX=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/cuda-13.0}
PY=${PYTHON:-python3}
# 13.0.x on purpose: PTX from a newer nvcc does not load on a CUDA 13.0 driver (580 series).
PKGS=(
  "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88"
  "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cccl==13.0.85" "nvidia-cuda-nvrtc==13.0.88"
  "nvidia-cublas==13.0.2.14" "nvidia-curand==10.4.0.35" "nvidia-nccl-cu13==2.28.9"
)
[ -x "$PREFIX/bin/pip" ] || "$PY" -m venv "$PREFIX"
"$PREFIX/bin/pip" install -q "${PKGS[@]}"
NV=$("$PREFIX/bin/python" -c 'import nvidia; print(list(nvidia.__path__)[0])')
ROOT="$PREFIX/root"
rm -rf "$ROOT"
mkdir -p "$ROOT/lib64"
ln -s "$NV/cu13/bin" "$ROOT/bin"
ln -s "$NV/cu13/nvvm" "$ROOT/nvvm"
ln -s "$NV/cu13/include" "$ROOT/include"
for f in "$NV"/cu13/lib/* "$NV"/nccl/lib/*; do ln -s "$f" "$ROOT/lib64/"; done
# Unversioned names for the linker and for cudarc's library lookup.
(cd "$ROOT/lib64" && for v in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 \
  libnvrtc.so.13 libnccl.so.2; do ln -sf "$v" "${v%%.so*}.so"; done)
ln -s lib64 "$ROOT/lib"
mkdir -p "$ROOT/include-nccl"
ln -sf "$NV/nccl/include/nccl.h" "$ROOT/include-nccl/nccl.h"

# The stub driver needs cudarc's sources: fetch the workspace's crates first.
(cd "$(dirname "$0")/.." && cargo fetch -q)
SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | tail -1)
STUB="$ROOT/lib64/stubs"
mkdir -p "$STUB"
grep -ohE 'pub unsafe fn (cu[A-Za-z0-9_]+)\(' "$SYS" | sed -E 's/pub unsafe fn (.*)\(/\1/' |
  sort -u | awk '{print "void " $1 "(void) {}"}' >"$STUB/libcuda_stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUB/libcuda.so" "$STUB/libcuda_stub.c"

cat >"$PREFIX/env.sh" <<ENV
export CUDA_ROOT=$ROOT
export CUDA_PATH=\$CUDA_ROOT CUDA_HOME=\$CUDA_ROOT CUDA_TOOLKIT_ROOT_DIR=\$CUDA_ROOT
export PATH=\$CUDA_ROOT/bin:\$PATH
export LIBRARY_PATH=\$CUDA_ROOT/lib64\${LIBRARY_PATH:+:\$LIBRARY_PATH}
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
ENV
. "$PREFIX/env.sh"
nvcc --version | tail -1
echo "CUDA toolchain ready: . $PREFIX/env.sh"
