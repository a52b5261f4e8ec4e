"""Packaging by role: the wheel's base install is the client alone; the roles are extras.

The slow tests build the wheel from a copy of the source tree (what the Dockerfiles copy) and
install it into fresh virtual environments (no pip, no setuptools): the base (`pip install nws`)
into one, which has no torch, FastAPI or transformers and talks to a real sketch server that
this full environment starts; `nws[server]` into another, whose `nws-server` serves without the
trainer's packages. Offline and quick: a role's dependencies (at requirements.lock's
pins, and what they need) are this environment's installed distributions, linked file by file,
and the wheel goes in with `pip install --no-index`, which fails if the role asks for more.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from email.parser import Parser
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from nws_client.entry import extra_requirements, missing_distributions, run_cli

ROOT = Path(__file__).resolve().parents[2]
BASE = {"numpy", "grpcio", "protobuf"}
# what the base environment must not have: the server's, the trainer's and hf's packages
ABSENT = [
    "torch",
    "fastapi",
    "uvicorn",
    "pydantic",
    "pydantic_settings",
    "prometheus_client",
    "redis",
    "grpc_health",
    "grpc_reflection",
    "transformers",
    "tqdm",
    "matplotlib",
    "accelerate",
]

PROBE = r"""
import importlib.util, json, sys

absent = {name: importlib.util.find_spec(name) is None for name in sys.argv[2].split(",")}

import numpy as np
import nws_client
from nws.v1 import sketch_pb2
from nws_client import SketchClient, SketchConfig

imported = {m.partition(".")[0] for m in sys.modules}
loaded = sorted(imported & (set(absent) | {"nws_server", "nws_trainer"}))
v = np.random.default_rng(0).standard_normal(8).astype(np.float32)
scales = np.linspace(0.5, 2.0, 16, dtype=np.float32)[:, None]
easy, hard = scales * v, -scales * v  # SRP: hard hashes to the complement of easy in every row
with SketchClient(sys.argv[1], timeout=30) as client:
    info = client.create_sketch("fresh-venv", SketchConfig(dim=8, rows=32, bits=4))
    update = client.update("fresh-venv", easy, np.full(16, 0.25))
    client.update_async("fresh-venv", hard, np.full(16, 4.0))  # the streaming path
    client.flush(timeout=30)
    score = client.score("fresh-venv", np.stack([v, -v]))
    sample = client.sample("fresh-venv", np.concatenate([easy, hard]), ratio=0.5, seed=0)
    stats = client.stats("fresh-venv")
print(json.dumps({
    "absent": absent,
    "loaded": loaded,
    "client_file": nws_client.__file__,
    "stubs_file": sketch_pb2.__file__,
    "created": info.created,
    "update_observations": update.observations,
    "estimates": score.estimates.tolist(),
    "prior_used": score.prior_used.tolist(),
    "accepted": sample.accepted.tolist(),
    "weights": sample.weights.tolist(),
    "probabilities": sample.probabilities.tolist(),
    "sample_estimates": sample.estimates.tolist(),
    "warmup": sample.warmup,
    "observations": stats.sketches["fresh-venv"].observations,
    "device": stats.server.device,
}))
"""


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def wheel_metadata(wheel: Path) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """The wheel's base requirements, its extras' requirements, and its file names."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(zf.read(meta).decode())
    base: list[str] = []
    extras: dict[str, list[str]] = {e: [] for e in message.get_all("Provides-Extra") or []}
    for line in message.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None:
            base.append(line)
        else:
            extra = next(e for e in extras if req.marker.evaluate({"extra": e}))
            extras[extra].append(line)
    return base, extras, names


def fresh_env() -> dict[str, str]:
    """The environment of a process in the fresh venv: nothing of this one leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "PIP_")) and k not in ("VIRTUAL_ENV", "CONDA_PREFIX")
    }
    env.update(PYTHONNOUSERSITE="1", PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1")
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


def link_distribution(name: str, site: Path, seen: set[str]) -> None:
    """Make ``name`` (and what it requires) installed in ``site``, by links to its RECORD's files.

    A regular package (a top-level folder with an ``__init__.py`` of this distribution) is one
    link; anything else (namespace packages such as ``google``, ``.libs`` folders, the
    ``.dist-info``) is linked file by file.
    """
    key = canonicalize_name(name)
    if key in seen:
        return
    seen.add(key)
    dist = importlib.metadata.distribution(name)
    files = [f for f in dist.files or [] if f.parts[0] != ".." and "__pycache__" not in f.parts]
    packages = {f.parts[0] for f in files if len(f.parts) == 2 and f.parts[1] == "__init__.py"}
    for file in files:  # (".." are scripts outside site-packages; byte code is rebuilt)
        top = file.parts[0]
        relative = Path(top) if top in packages else Path(*file.parts)
        source, target = Path(str(dist.locate_file(relative))), site / relative
        if source.exists() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            link_distribution(req.name, site, seen)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from a copy of what the Dockerfiles copy (no build/ here)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in ("services", "client", "trainer"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    cmd += ["--no-index", "--quiet", "--disable-pip-version-check", "-w", str(out), str(src)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("nws-*.whl")
    return built


def role_venv(path: Path, wheel: Path, extra: str | None) -> Path:
    """A fresh venv (no pip, no setuptools) with the role's pinned dependencies, then the wheel.

    The dependencies are this environment's installed distributions at requirements.lock's pins
    (and what they need), linked file by file; the wheel goes in with `pip --no-index`, which
    fails if the role asks for anything more.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            env=fresh_env(),
        ).stdout.strip()
    )
    base, extras, _ = wheel_metadata(wheel)
    roles = {extra} if extra else set()
    names = {canonicalize_name(Requirement(r).name) for r in base}
    while roles:
        for line in extras[roles.pop()]:
            req = Requirement(line)
            if canonicalize_name(req.name) == "nws":
                roles |= req.extras
            else:
                names.add(canonicalize_name(req.name))
    pins = lock_pins()
    seen: set[str] = set()
    for name in sorted(names):
        installed = Version(importlib.metadata.version(name)).public  # 2.13.0+cpu: 2.13.0
        assert installed == pins[name], f"{name} {installed}: not the lock's pin"
        link_distribution(name, site, seen)
    spec = f"nws[{extra}] @ {wheel.as_uri()}" if extra else str(wheel)
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index"]
    cmd += ["--no-cache-dir", "--quiet", "--disable-pip-version-check", spec]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=fresh_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return path


@pytest.fixture(scope="module")
def base_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install nws`: the client alone."""
    return role_venv(tmp_path_factory.mktemp("base") / "venv", wheel, None)


@pytest.fixture(scope="module")
def server_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install 'nws[server]'`: what deploy/Dockerfile's server target installs."""
    return role_venv(tmp_path_factory.mktemp("server") / "venv", wheel, "server")


# --------------------------------------------------------------------------- the wheel itself
@pytest.mark.slow
def test_wheel_base_is_the_client_and_the_roles_are_extras(wheel: Path) -> None:
    base, extras, _ = wheel_metadata(wheel)
    assert {canonicalize_name(Requirement(r).name) for r in base} == BASE
    assert set(extras) >= {"server", "trainer", "hf", "dev"}

    def names(extra: str) -> set[str]:
        return {canonicalize_name(Requirement(r).name) for r in extras[extra]}

    assert names("server") >= {
        "torch",
        "fastapi",
        "uvicorn",
        "pydantic",
        "pydantic-settings",
        "prometheus-client",
        "redis",
        "grpcio-health-checking",
        "grpcio-reflection",
    }
    assert names("trainer") >= {"nws", "transformers", "tqdm", "matplotlib"}
    assert "nws[server]" in {str(Requirement(r)).split(";")[0] for r in extras["trainer"]}
    assert names("hf") >= {"nws", "accelerate"}
    # every requirement of every role is pinned by requirements.lock, within its specifier
    pins = lock_pins()
    for line in base + [r for rs in extras.values() for r in rs]:
        req = Requirement(line)
        key = canonicalize_name(req.name)
        if key == "nws":
            continue
        assert key in pins, f"{req.name} is not pinned in requirements.lock"
        assert req.specifier.contains(pins[key], prereleases=True), (line, pins[key])


@pytest.mark.slow
def test_wheel_carries_every_module_and_the_generated_stubs(wheel: Path) -> None:
    _, _, names = wheel_metadata(wheel)
    expected = {"nws/__init__.py", "nws/v1/__init__.py", "nws/v1/sketch_pb2.py"}
    expected |= {"nws/v1/sketch_pb2_grpc.py"}
    for package, folder in [
        ("nws_core", ROOT / "services" / "nws_core"),
        ("nws_server", ROOT / "services" / "nws_server"),
        ("nws_client", ROOT / "client" / "nws_client"),
        ("nws_trainer", ROOT / "trainer" / "nws_trainer"),
    ]:
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder)
            if relative.parts[0] != "_gen":  # shipped as the top-level package `nws`
                expected.add(f"{package}/{relative.as_posix()}")
    assert not expected - set(names), sorted(expected - set(names))
    with zipfile.ZipFile(wheel) as zf:
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = zf.read(entry_points).decode()
    assert "nws-server = nws_client.entry:server" in scripts
    assert "nws-train = nws_client.entry:train" in scripts


@pytest.mark.slow
def test_extras_resolve_offline_through_their_self_references(wheel: Path) -> None:
    """pip follows nws[hf] -> nws[trainer] -> nws[server]; this environment has them all."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet"]
    cmd += ["--disable-pip-version-check", "--report", "-", f"nws[hf] @ {wheel.as_uri()}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    install = json.loads(result.stdout)["install"]
    assert [i["metadata"]["name"] for i in install] == ["nws"]  # nothing else is missing
    assert set(install[0]["requested_extras"]) == {"hf", "trainer", "server"}


# --------------------------------------------------------------------------- the base install
@pytest.mark.slow
def test_base_install_talks_to_a_real_server_without_torch(base_venv: Path) -> None:
    from nws_server.embedded import EmbeddedServer

    probe = base_venv.parent / "probe.py"
    probe.write_text(PROBE)
    with EmbeddedServer(mode="process", device="cpu") as server:
        result = subprocess.run(
            [str(base_venv / "bin" / "python"), str(probe), server.target, ",".join(ABSENT)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=base_venv.parent,
            env=fresh_env(),
        )
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["absent"] == {name: True for name in ABSENT}
    assert out["loaded"] == []  # importing nws_client pulls in neither server nor trainer
    for key in ("client_file", "stubs_file"):
        assert Path(out[key]).is_relative_to(base_venv), out[key]  # the wheel, not this tree
    assert out["created"] and out["update_observations"] == 16
    assert out["estimates"] == pytest.approx([0.25, 4.0], abs=1e-6)
    assert out["prior_used"] == [False, False]
    probabilities, weights, accepted = out["probabilities"], out["weights"], out["accepted"]
    assert min(probabilities[16:]) > max(probabilities[:16])  # the hard half is kept more
    assert sum(probabilities) / 32 == pytest.approx(0.5, abs=0.05)
    for p, w, a in zip(probabilities, weights, accepted, strict=True):
        assert w == (pytest.approx(1 / p) if a else 0.0)
    assert out["sample_estimates"] == pytest.approx([0.25] * 16 + [4.0] * 16, abs=1e-6)
    assert not out["warmup"] and out["observations"] == 32 and out["device"] == "cpu"


@pytest.mark.slow
@pytest.mark.parametrize(("script", "extra"), [("nws-server", "server"), ("nws-train", "trainer")])
def test_role_commands_name_their_extra_in_the_base_install(
    base_venv: Path, script: str, extra: str
) -> None:
    result = subprocess.run(
        [str(base_venv / "bin" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=base_venv.parent,
        env=fresh_env(),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"pip install 'nws[{extra}]'" in result.stderr
    assert "torch" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_server_role_serves_without_the_trainer_packages(server_venv: Path) -> None:
    """The server image's install: `nws-server` and its health check run; no trainer packages."""
    python, env = str(server_venv / "bin" / "python"), fresh_env()
    trainer_only = ["transformers", "tqdm", "matplotlib", "accelerate"]
    check = "import importlib.util, sys; print([importlib.util.find_spec(m) for m in sys.argv[1:]])"
    found = subprocess.run([python, "-c", check, *trainer_only], capture_output=True, text=True)
    assert found.stdout.strip() == str([None] * len(trainer_only)), found.stdout + found.stderr
    ready = server_venv.parent / "ready.json"
    flags = ["--host", "127.0.0.1", "--grpc-port", "0", "--rest-port", "0", "--device", "cpu"]
    process = subprocess.Popen(
        [str(server_venv / "bin" / "nws-server"), *flags, "--ready-file", str(ready)],
        cwd=server_venv.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"nws-server did not start:\n{process.communicate()[0]}")
            time.sleep(0.05)
        target = str(json.loads(ready.read_text())["target"])
        health = [python, "-m", "nws_server.healthcheck", target]
        assert subprocess.run(health, env=env, timeout=30).returncode == 0
        from nws_client import SketchClient, SketchConfig

        x = np.eye(4, dtype=np.float32)
        with SketchClient(target, timeout=30) as client:
            client.create_sketch("server-role", SketchConfig(dim=4, rows=16, bits=2))
            assert client.update("server-role", x, np.arange(4.0)).observations == 4
            assert not client.score("server-role", x).prior_used.any()
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert process.returncode == 0


@pytest.mark.parametrize("role", ["server", "trainer"])
def test_each_image_installs_its_role(role: str) -> None:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(ROOT / "deploy" / "Dockerfile"))
    stage: str | None = None
    installs = []  # the locked installs of the stage that builds this role's environment
    for i in parser.structure:
        if i["instruction"] == "FROM":
            stage = i["value"].split()[-1]
        elif stage == f"build-{role}" and "--constraint requirements.lock" in i["value"]:
            installs.append(i["value"])
    assert len(installs) == 1 and f'requirements.lock ".[{role}]"' in installs[0], installs


# --------------------------------------------------------------------------- nws_client.entry
REQUIRES = [
    "numpy>=1.26",
    'torch>=2.4; extra == "server"',
    'pydantic-settings>=2.2; extra == "server"',
    'nws[server]; extra == "trainer"',
    'tqdm>=4.66; extra == "trainer"',
    'nws[trainer]; extra == "hf"',
    "accelerate>=1.1; extra == 'hf'",
    'colorama; extra == "hf" and sys_platform == "win32"',
]


def test_extra_requirements_follow_self_references() -> None:
    server = {"torch", "pydantic-settings"}
    assert extra_requirements("server", REQUIRES) == server
    assert extra_requirements("trainer", REQUIRES) == server | {"tqdm"}
    assert extra_requirements("hf", REQUIRES) == server | {"tqdm", "accelerate"}
    assert extra_requirements("other", REQUIRES) == set()


def test_this_environment_has_every_role() -> None:
    for extra in ("server", "trainer", "hf", "dev"):
        assert missing_distributions(extra) == [], extra


def test_run_cli_names_the_extra_for_a_missing_third_party_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "nws_fake_cli.py").write_text("import nws_absent_dependency\n")
    (tmp_path / "nws_fake_ok.py").write_text("def main():\n    return 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run_cli("nws_fake_cli", "nws-fake", "server") == 1
    err = capsys.readouterr().err
    assert "nws_absent_dependency" in err and "pip install 'nws[server]'" in err
    assert run_cli("nws_fake_ok", "nws-fake", "server") == 7
    with pytest.raises(ModuleNotFoundError):  # the project's own module: a bug, raised
        run_cli("nws_server.no_such_module", "nws-fake", "server")
