# A Redis image from the base's own packages, for machines that cannot pull the official
# `redis` image (no Docker Hub): Debian's redis-server on a local Debian base. It runs the way
# the official image does as far as docker-compose.yml is concerned: `redis-server ARGS` as the
# command, data in /data, redis-cli for the health check. Select it with NWS_REDIS_IMAGE.
#
#   docker build -f deploy/redis.Dockerfile --build-arg BASE_IMAGE=nws-base:bookworm \
#       -t nws-redis:bookworm .

ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# The base image tag pins the release, and with it Redis (bookworm: 7.0).
# The redis user first, with the official image's ids (999), so that USER can be numeric.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid redis --home-dir /var/lib/redis --shell /usr/sbin/nologin redis \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data
WORKDIR /data
USER 999:999
EXPOSE 6379
# docker-compose.yml gives the command (append-only file, no protected mode on its network)
CMD ["redis-server"]
