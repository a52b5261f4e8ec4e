"""``nws-train``'s entry point: without the ``trainer`` extra it names the extra to install."""

from __future__ import annotations

from nws_server.entry import run_cli


def train() -> int:
    """``nws-train`` (the ``trainer`` extra)."""
    return run_cli("nws_trainer.cli", "nws-train", "trainer")
