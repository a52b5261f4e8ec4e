# syntax=docker/dockerfile:1
# The sketch server image: `nws-server` on a CUDA base, or on a plain Ubuntu base for CPU-only
# machines (the cpu profile of docker-compose.yml sets the two build args below).
#
#   docker build -f deploy/server.Dockerfile -t nws-sketch-server:cuda .
#   docker build -f deploy/server.Dockerfile -t nws-sketch-server:cpu \
#       --build-arg BASE_IMAGE=ubuntu:24.04 \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
#
# Two stages: `build` makes a virtual environment of pinned wheels (torch from the PyTorch index
# of the chosen flavour, everything else pinned by requirements.lock, used as a constraints file so
# that only the server role's dependencies are installed: `nws[server]`, no trainer packages); the
# final stage copies that environment onto a fresh base with nothing but Python, and runs as an
# unprivileged user.

ARG BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04

FROM ${BASE_IMAGE} AS build
# The PyTorch wheel index: a CUDA build (cu128) by default; https://download.pytorch.org/whl/cpu
# for the CPU build. TORCH_VERSION must equal the torch pin of requirements.lock (a test checks).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG TORCH_VERSION=2.13.0
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The base image tag pins the Ubuntu release; its python3 is that release's Python.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
COPY requirements.lock pyproject.toml README.md ./
COPY services services
COPY client client
# The one distribution builds from all three folders; the `server` extra picks the dependencies.
COPY trainer trainer
RUN pip install --constraint requirements.lock ".[server]"

FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 nws \
    && useradd --system --uid 10001 --gid nws --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin nws
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# gRPC (the sketch service, health, reflection) and REST (monitoring, /dashboard, /metrics).
EXPOSE 50051 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "nws_server.healthcheck", "127.0.0.1:50051"]
ENTRYPOINT ["nws-server"]
# Beyond loopback the server refuses to start without NWS_AUTH_TOKEN (or --insecure).
CMD ["--host", "0.0.0.0"]
