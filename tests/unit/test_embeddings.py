"""Tests for nws_trainer.models (encoder, model folders) and nws_trainer.embeddings (cache)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nws_trainer.data import TextDataset
from nws_trainer.embeddings import cached_embeddings, default_cache_dir, fingerprint
from nws_trainer.models import Encoder, default_model_path, validate_model_dir

TEXTS = ["a gripping, well acted film", "dull and far too long", "fine", "not bad at all"]


def _ds(texts: list[str] = TEXTS, pairs: list[str] | None = None) -> TextDataset:
    return TextDataset(
        texts=list(texts),
        labels=np.arange(len(texts)) % 2,
        label_names=["rotten", "fresh"],
        text_pairs=pairs,
    )


@pytest.fixture(scope="module")
def tiny_encoder(tiny_bert_dir: Path) -> Encoder:
    return Encoder(tiny_bert_dir)


def test_encoder_shape_dtype_and_repeatability(tiny_encoder: Encoder) -> None:
    assert tiny_encoder.hidden_size == 128
    first = tiny_encoder.encode(TEXTS, batch_size=3)
    assert first.shape == (4, 128) and first.dtype == np.float32
    assert np.isfinite(first).all()
    assert np.array_equal(first, tiny_encoder.encode(TEXTS, batch_size=3))
    # Padding does not leak into the mean: a text alone equals the text in a padded batch.
    alone = tiny_encoder.encode(TEXTS[2:3])
    np.testing.assert_allclose(alone[0], first[2], rtol=1e-4, atol=1e-5)


def test_encoder_text_pairs(tiny_encoder: Encoder) -> None:
    pairs = ["yes", "no", "maybe so", "sure"]
    with_pairs = tiny_encoder.encode(TEXTS, pairs)
    assert with_pairs.shape == (4, 128)
    assert not np.allclose(with_pairs, tiny_encoder.encode(TEXTS))
    with pytest.raises(ValueError, match="text pairs"):
        tiny_encoder.encode(TEXTS, pairs[:2])


def test_cache_reused_when_fingerprint_matches(tiny_bert_dir: Path, tmp_path: Path) -> None:
    arr, info = cached_embeddings(_ds(), tiny_bert_dir, tmp_path, max_length=16)
    assert not info.cache_hit and info.seconds > 0
    assert info.shape == (4, 128) and arr.shape == (4, 128)
    assert info.path == tmp_path / f"{info.fingerprint}.npy" and info.path.is_file()
    meta = json.loads((tmp_path / f"{info.fingerprint}.json").read_text())
    assert meta["fingerprint"] == info.fingerprint and meta["shape"] == [4, 128]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]

    arr2, info2 = cached_embeddings(_ds(), tiny_bert_dir, tmp_path, max_length=16)
    assert info2.cache_hit and info2.seconds == 0.0
    assert info2.fingerprint == info.fingerprint
    assert np.array_equal(arr, arr2)


@pytest.mark.parametrize(
    ("ds", "max_length"),
    [
        (_ds(TEXTS[:3] + ["a different last text"]), 16),
        (_ds(TEXTS, pairs=["p"] * 4), 16),
        (_ds(), 8),
    ],
    ids=["texts", "pairs", "max_length"],
)
def test_cache_rebuilt_when_inputs_change(
    tiny_bert_dir: Path, tmp_path: Path, ds: TextDataset, max_length: int
) -> None:
    _, base = cached_embeddings(_ds(), tiny_bert_dir, tmp_path, max_length=16)
    _, changed = cached_embeddings(ds, tiny_bert_dir, tmp_path, max_length=max_length)
    assert not changed.cache_hit
    assert changed.fingerprint != base.fingerprint
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_fingerprint_covers_weights(tiny_bert_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_bert_dir, tmp_path / "copy"))
    args = (TEXTS, None)
    assert fingerprint(*args, copy, 64, "mean") == fingerprint(*args, tiny_bert_dir, 64, "mean")
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert fingerprint(*args, copy, 64, "mean") != fingerprint(*args, tiny_bert_dir, 64, "mean")
    assert fingerprint(*args, tiny_bert_dir, 64, "cls") != fingerprint(
        *args, tiny_bert_dir, 64, "mean"
    )


def test_corrupt_cache_entry_is_recomputed(tiny_bert_dir: Path, tmp_path: Path) -> None:
    arr, info = cached_embeddings(_ds(), tiny_bert_dir, tmp_path, max_length=16)
    info.path.write_bytes(b"not an npy file")
    arr2, info2 = cached_embeddings(_ds(), tiny_bert_dir, tmp_path, max_length=16)
    assert not info2.cache_hit and np.array_equal(arr, arr2)


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NWS_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NWS_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "nws" / "embeddings"


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (None, "not found"),
        ("config.json", "no config.json"),
        ("model.safetensors", "no weights"),
        ("tokenizer", "no tokenizer files"),
    ],
)
def test_not_a_model_folder(
    tiny_bert_dir: Path, tmp_path: Path, remove: str | None, message: str
) -> None:
    folder = tmp_path / "model"
    if remove is not None:
        shutil.copytree(tiny_bert_dir, folder)
        names = ["tokenizer.json", "vocab.txt"] if remove == "tokenizer" else [remove]
        for name in names:
            (folder / name).unlink()
    with pytest.raises(ValueError, match=message):
        validate_model_dir(folder)
    with pytest.raises(ValueError, match=message):
        Encoder(folder)
    with pytest.raises(ValueError, match=message):
        cached_embeddings(_ds(), folder, tmp_path / "cache")


def test_tiny_bert_loads_for_classification(tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, local_files_only=True)
    assert model.config.num_labels == 2
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 128


@pytest.mark.slow
def test_real_minilm_encodes_to_384() -> None:
    encoder = Encoder(default_model_path())
    out = encoder.encode(["A fine film.", "Terrible.", "It was fine, I guess."])
    assert out.shape == (3, 384) and out.dtype == np.float32
    assert np.isfinite(out).all()
