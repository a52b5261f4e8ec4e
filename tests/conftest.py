"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT folder (2 layers, hidden 128) with the MiniLM tokenizer."""
    from nws_trainer.models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))
