"""Helpers of the deployment tests (imported as a plain module): docker-compose.yml as Docker
Compose itself resolves it, and the Dockerfiles as dockerfile-parse reads them. No Docker engine
is needed (none runs here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy/Dockerfile"  # both roles: targets `server` and `trainer`
REDIS_DOCKERFILE = ROOT / "deploy/redis.Dockerfile"  # Debian's Redis, where Docker Hub is not
TARGETS = ("server", "trainer")
TOKEN = "compose-test-token-0123456789"


def docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(
            "docker-compose is not installed: run `make install` (apt-get install docker-compose)"
        )
    return exe


def compose(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f docker-compose.yml ARGS`` with NWS_AUTH_TOKEN set to ``token`` (unset
    for None), in an environment free of other NWS_* / COMPOSE_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NWS_", "COMPOSE_"))}
    if token is not None:
        env["NWS_AUTH_TOKEN"] = token
    return subprocess.run(
        [docker_compose(), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def dockerfile(build_args: dict[str, str] | None = None) -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE), build_args=build_args or {})


def stages(parser: DockerfileParser) -> dict[str, list[dict[str, Any]]]:
    """The instructions of each named stage (``FROM ... AS name``), FROM included."""
    named: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            current = []
            named[ins["value"].split()[-1]] = current
        current.append(ins)
    return named


def stage_env(target: str) -> dict[str, str]:
    """The environment of stage ``target``: its ENVs over those of the stages it is built FROM
    (dockerfile-parse's ``envs`` sees one stage only)."""
    import io

    lines = DOCKERFILE.read_text().splitlines(keepends=True)
    froms = [i for i in dockerfile().structure if i["instruction"] == "FROM"]
    env: dict[str, str] = {}
    chain: list[dict[str, Any]] = []
    name = target
    while True:
        found = [i for i in froms if i["value"].split()[-1] == name]
        if not found:
            break
        chain.insert(0, found[0])
        name = found[0]["value"].split()[0]  # the parent: a stage name, or the base image
    for ins in chain:
        later = [i["startline"] for i in froms if i["startline"] > ins["startline"]]
        text = "".join(lines[ins["startline"] : min(later, default=len(lines))])
        env |= DockerfileParser(fileobj=io.BytesIO(text.encode())).envs
    return env


def exec_form(instructions: list[dict[str, Any]], instruction: str) -> list[str]:
    """The JSON (exec form) argument list of a stage's ``instruction`` (e.g. ENTRYPOINT)."""
    import json

    values = [i["value"] for i in instructions if i["instruction"] == instruction]
    assert values, f"no {instruction} in the stage"
    parsed: list[str] = json.loads(values[-1])
    return parsed
