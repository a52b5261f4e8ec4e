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
DOCKERFILES = {
    "server": ROOT / "deploy/server.Dockerfile",
    "trainer": ROOT / "deploy/trainer.Dockerfile",
}
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


def dockerfile(kind: str) -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILES[kind]))


def final_stage(parser: DockerfileParser) -> list[dict[str, Any]]:
    """The instructions of the last stage (after the last FROM)."""
    structure = parser.structure
    last_from = max(i for i, ins in enumerate(structure) if ins["instruction"] == "FROM")
    return structure[last_from:]


def exec_form(parser: DockerfileParser, instruction: str) -> list[str]:
    """The JSON (exec form) argument list of the final stage's ``instruction`` (e.g. ENTRYPOINT)."""
    import json

    values = [i["value"] for i in final_stage(parser) if i["instruction"] == instruction]
    assert values, f"no {instruction} in the final stage"
    parsed: list[str] = json.loads(values[-1])
    return parsed
