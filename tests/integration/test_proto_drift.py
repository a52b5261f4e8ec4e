"""The committed stubs are exactly what ``make proto`` generates from proto/nws/v1/*.proto."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "client" / "nws_client" / "_gen"


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in (root / "nws").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_stubs_match_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh, committed = _files(tmp_path), _files(COMMITTED)
    assert fresh == committed, "run `make proto`: the set of generated files differs"
    stale = [
        f for f in sorted(fresh) if not filecmp.cmp(tmp_path / f, COMMITTED / f, shallow=False)
    ]
    assert not stale, f"run `make proto`: these stubs differ from the .proto: {stale}"
