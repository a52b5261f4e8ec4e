"""The packages' layers point down only: read from every import statement, lazy ones included.

nws_trainer -> nws_client, nws_core (and nws_server only to launch the embedded server)
nws_server  -> nws_core, the API types (``nws_client.results``) and the generated ``nws``
nws_client  -> the generated protobuf package ``nws``
nws_core    -> numpy and torch: no transport, no store, no project package above it

The API types (``nws_client.results``: numpy only, part of the base install) are the bottom
layer that every side shares: the server builds them, the client returns them, the trainer
uses them as they are.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "nws_core": ROOT / "services" / "nws_core",
    "nws_server": ROOT / "services" / "nws_server",
    "nws_client": ROOT / "client" / "nws_client",
    "nws_trainer": ROOT / "trainer" / "nws_trainer",
}
PROJECT = set(PACKAGES) | {"nws"}

#: Project packages each package may import (beyond itself).
ALLOWED = {
    "nws_core": set(),
    "nws_client": {"nws"},
    "nws_server": {"nws_core", "nws"},
    "nws_trainer": {"nws_core", "nws_client"},
}
#: The one module of the client package the server uses: the API types.
API_TYPES = "nws_client.results"
#: The one way the trainer reaches the server package: starting an embedded server.
TRAINER_MAY_LAUNCH = {"nws_server.embedded"}
#: What the core must not import: it is plain Python over torch and numpy, without I/O.
CORE_FORBIDDEN = {"grpc", "fastapi", "starlette", "uvicorn", "redis", "httpx", "socket", "pydantic"}


def imports(package: str) -> list[tuple[Path, str]]:
    """Every module named by an import in the package's hand-written files: (file, module)."""
    found = []
    for path in sorted(PACKAGES[package].rglob("*.py")):
        if "_gen" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((path, node.module))
                if "." not in node.module:  # `from nws_server import embedded`
                    found += [(path, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_the_reader_sees_lazy_imports() -> None:
    # the check is only as good as its reader: the trainer launches the server inside a function
    assert any(m == "nws_server.embedded" for _, m in imports("nws_trainer"))


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_imports_point_down(package: str) -> None:
    wrong = []
    for path, module in imports(package):
        top = module.split(".")[0]
        if top not in PROJECT or top == package or top in ALLOWED[package]:
            continue
        if package == "nws_trainer" and module in TRAINER_MAY_LAUNCH | {"nws_server"}:
            continue
        if package == "nws_server" and module == API_TYPES:
            continue
        wrong.append(f"{path.relative_to(ROOT)}: {module}")
    assert not wrong, "imports pointing up or sideways:\n" + "\n".join(sorted(set(wrong)))


def test_the_trainer_reaches_the_server_only_to_launch_it() -> None:
    reached = {m for _, m in imports("nws_trainer") if m.startswith("nws_server.")}
    assert reached <= TRAINER_MAY_LAUNCH, reached


def test_the_core_does_no_io() -> None:
    used = {m.split(".")[0] for _, m in imports("nws_core")}
    assert not used & CORE_FORBIDDEN, used & CORE_FORBIDDEN
    assert {"numpy", "torch"} <= used


def test_the_api_types_need_numpy_alone() -> None:
    path = PACKAGES["nws_client"] / "results.py"
    used = {m.split(".")[0] for p, m in imports("nws_client") if p == path}
    assert used <= {"__future__", "dataclasses", "datetime", "typing", "numpy"}, used
    assert "numpy" in used


def test_the_server_reaches_the_client_package_only_for_the_api_types() -> None:
    reached = {m for _, m in imports("nws_server") if m.startswith("nws_client")}
    assert reached == {API_TYPES}, reached
