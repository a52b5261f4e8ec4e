"""The console scripts' entry points: a missing extra gets one line naming it, not a traceback.

The base install (``pip install nws``) is the client alone; ``nws-server`` needs the ``server``
extra and ``nws-train`` the ``trainer`` extra. Both scripts are installed either way, so before
running, each checks that the distributions its extra requires are installed (read from the
``nws`` metadata, following ``nws[...]`` references), and otherwise says which extra to install
(exit status 1). Run from a source tree without that metadata, a third-party module that fails
to import gets the same message; a missing module of the project itself is a bug, not a missing
extra, and is raised as it is. Only the standard library is used here (the base has no
``packaging``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
from collections.abc import Callable
from typing import cast

DISTRIBUTION = "nws"
PROJECT_PACKAGES = frozenset({"nws", "nws_client", "nws_core", "nws_server", "nws_trainer"})

# `name[extras] specifier; marker` as a Requires-Dist line has it (PEP 508, the parts used here)
_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[(?P<extras>[^\]]*)\])?[^;]*(?:;\s*(?P<marker>.*))?$"
)
_EXTRA_MARKER = re.compile(r"""^extra\s*==\s*["']([^"']+)["']$""")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_requirements(extra: str, requires: list[str]) -> set[str]:
    """Distribution names that ``nws[extra]`` needs beyond the base, through ``nws[...]``.

    ``requires`` are the Requires-Dist lines of ``nws``. Lines whose marker is anything but
    ``extra == "..."`` are left out (the project declares none).
    """
    wanted, names, done = [_normalize(extra)], set(), set()
    while wanted:
        current = wanted.pop()
        if current in done:
            continue
        done.add(current)
        for line in requires:
            match = _REQUIREMENT.match(line)
            if match is None or not match["marker"]:
                continue
            marker = _EXTRA_MARKER.match(match["marker"].strip())
            if marker is None or _normalize(marker.group(1)) != current:
                continue
            name = _normalize(match["name"])
            if name == DISTRIBUTION:
                wanted += [_normalize(e) for e in (match["extras"] or "").split(",") if e.strip()]
            else:
                names.add(name)
    return names


def missing_distributions(extra: str) -> list[str]:
    """What ``nws[extra]`` needs and is not installed; empty without ``nws``'s metadata."""
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    missing = []
    for name in sorted(extra_requirements(extra, requires)):
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def _explain(prog: str, extra: str, missing: list[str]) -> int:
    print(
        f"{prog}: not installed: {', '.join(missing)}. {prog} needs the {extra!r} extra: "
        f"pip install 'nws[{extra}]'",
        file=sys.stderr,
    )
    return 1


def run_cli(module: str, prog: str, extra: str) -> int:
    """Run ``module.main()`` once the extra's distributions are there; else name the extra."""
    missing = missing_distributions(extra)
    if missing:
        return _explain(prog, extra, missing)
    try:
        main = cast(Callable[[], int], importlib.import_module(module).main)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if not top or top in PROJECT_PACKAGES:
            raise
        return _explain(prog, extra, [top])
    return main()


def server() -> int:
    """``nws-server`` (the ``server`` extra)."""
    return run_cli("nws_server.cli", "nws-server", "server")


def train() -> int:
    """``nws-train`` (the ``trainer`` extra)."""
    return run_cli("nws_trainer.cli", "nws-train", "trainer")
