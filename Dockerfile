# tgi-rs image: CUDA 13.0 build of the three binaries on Ubuntu 24.04.
#
#   docker build -t tgi-rs .                              # default target: the server on port 80
#   docker build --target sagemaker -t tgi-rs:sagemaker . # SageMaker: port 8080, /ping, /invocations
#   docker build --build-arg CUDA_COMPUTE_CAP=80 ...      # A100 (default 90: H100/H200)
#   docker build --build-arg SHARD_FEATURES=nccl ...      # tensor parallelism (--num-shard > 1)
#
#   docker run --gpus all --shm-size 1g -p 8080:80 -v $PWD/data:/data tgi-rs \
#       --model-id /data/<model dir or .gguf>
#
# The builder stage only runs scripts/docker-build.sh, so the image's build commands are the
# ones CI checks and a CUDA machine can run without Docker.

ARG CUDA_VERSION=13.0.1
ARG UBUNTU_VERSION=24.04

# ---------------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS builder

ARG RUST_VERSION=1.95.0
ARG CUDA_COMPUTE_CAP=90
ARG SHARD_FEATURES=cuda

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Build tools only; versions come from the pinned Ubuntu release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential ca-certificates curl git pkg-config \
    && rm -rf /var/lib/apt/lists/*

ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:${PATH}
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
        | sh -s -- -y --no-modify-path --profile minimal --default-toolchain "${RUST_VERSION}" \
    && rustc --version

# candle links the driver API at build time; the real libcuda comes from the host at run time.
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP} \
    SHARD_FEATURES=${SHARD_FEATURES} \
    LIBRARY_PATH=/usr/local/cuda/lib64/stubs

WORKDIR /usr/src/tgi-rs
COPY . .
RUN ./scripts/docker-build.sh

# ---------------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=builder \
    /usr/src/tgi-rs/target/release/text-generation-launcher \
    /usr/src/tgi-rs/target/release/text-generation-router \
    /usr/src/tgi-rs/target/release/text-generation-shard \
    /usr/local/bin/

# As TGI's image: models and the hub cache under /data, HTTP on 80, Prometheus on 9000.
# NVLink multicast stays off (it hangs NCCL on shared hosts); override with -e if you own them.
ENV HF_HOME=/data \
    PORT=80 \
    NCCL_NVLS_ENABLE=0
WORKDIR /data
EXPOSE 80 9000

ENTRYPOINT ["text-generation-launcher"]

# ---------------------------------------------------------------------------------------------
# SageMaker: maps HF_MODEL_ID, SM_NUM_GPUS, ... to the launcher's env and listens on 8080.
FROM runtime AS sagemaker

COPY --chmod=0755 sagemaker-entrypoint.sh /usr/local/bin/sagemaker-entrypoint.sh
ENV PORT=8080
EXPOSE 8080

ENTRYPOINT ["/usr/local/bin/sagemaker-entrypoint.sh"]

# ---------------------------------------------------------------------------------------------
# Default target (last stage): the plain server.
FROM runtime AS server
