"""Static embeddings: computed once by a frozen encoder and cached on disk by fingerprint.

The cache key covers the texts, the text pairs, the model (config, weights and tokenizer files),
the maximum sequence length and the pooling, so any change to one of them recomputes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import numpy as np

from nws_trainer.data import TextDataset
from nws_trainer.models import Encoder, default_model_path, validate_model_dir, weight_files

CACHE_ENV = "NWS_CACHE_DIR"
_CHUNK = 1 << 20
_FINGERPRINTED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


@dataclass(frozen=True)
class EmbeddingInfo:
    """Where an embedding matrix came from and what it cost."""

    fingerprint: str
    path: Path
    seconds: float
    cache_hit: bool
    shape: tuple[int, ...]


def default_cache_dir() -> Path:
    """``$NWS_CACHE_DIR`` when set, else ``~/.cache/nws/embeddings``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "nws" / "embeddings"


def _update_str(h: hashlib._Hash, value: str) -> None:
    data = value.encode("utf-8")
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _update_file(h: hashlib._Hash, path: Path) -> None:
    _update_str(h, path.name)
    h.update(path.stat().st_size.to_bytes(8, "little"))
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)


def fingerprint(
    texts: Sequence[str],
    text_pairs: Sequence[str] | None,
    model_dir: str | Path,
    max_length: int,
    pooling: str,
) -> str:
    """SHA-256 hex digest identifying the embeddings of ``texts`` under a model and settings."""
    model_dir = validate_model_dir(model_dir)
    h = hashlib.sha256(b"nws-embeddings-v1")
    h.update(len(texts).to_bytes(8, "little"))
    for text in texts:
        _update_str(h, text)
    if text_pairs is None:
        h.update(b"\x00")
    else:
        h.update(b"\x01")
        for pair in text_pairs:
            _update_str(h, pair)
    _update_file(h, model_dir / "config.json")
    for path in weight_files(model_dir):
        _update_file(h, path)
    for name in _FINGERPRINTED_TOKENIZER_FILES:
        if (model_dir / name).is_file():
            _update_file(h, model_dir / name)
    _update_str(h, f"max_length={int(max_length)}")
    _update_str(h, f"pooling={pooling}")
    return h.hexdigest()


def _atomic_write(target: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write via ``write(fileobj)`` into a temp file beside ``target``, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_cached(npy: Path, meta: Path, n_rows: int) -> np.ndarray | None:
    """Return the cached matrix when both files exist and agree, else ``None``."""
    if not (npy.is_file() and meta.is_file()):
        return None
    try:
        info = json.loads(meta.read_text())
        arr = np.load(npy, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape[0] != n_rows:
        return None
    if list(arr.shape) != list(info.get("shape", [])):
        return None
    return arr


def cached_embeddings(
    ds: TextDataset,
    model_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    max_length: int = 64,
    batch_size: int = 64,
    progress: bool = False,
    pooling: str = "mean",
) -> tuple[np.ndarray, EmbeddingInfo]:
    """Return pooled embeddings of ``ds`` (float32 ``[n, hidden]``), cached on disk.

    ``pooling``: ``mean`` (the encoder's last hidden states) or ``token-mean`` (its input token
    embeddings, no transformer pass); see :class:`~nws_trainer.models.Encoder`.

    The matrix is stored as ``<fingerprint>.npy`` with a ``<fingerprint>.json`` meta file in
    ``cache_dir`` (default: :func:`default_cache_dir`); both are written atomically.
    """
    model_dir = validate_model_dir(model_dir if model_dir is not None else default_model_path())
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(ds.texts, ds.text_pairs, model_dir, max_length, pooling)
    npy, meta = cache / f"{fp}.npy", cache / f"{fp}.json"

    arr = _load_cached(npy, meta, len(ds))
    if arr is not None:
        return arr, EmbeddingInfo(fp, npy, 0.0, True, tuple(arr.shape))

    start = time.perf_counter()
    encoder = Encoder(model_dir, pooling=pooling)
    arr = encoder.encode(
        ds.texts, ds.text_pairs, batch_size=batch_size, max_length=max_length, progress=progress
    )
    seconds = time.perf_counter() - start
    info = EmbeddingInfo(fp, npy, seconds, False, tuple(arr.shape))

    _atomic_write(npy, lambda fh: np.save(fh, arr, allow_pickle=False))
    record = {
        **asdict(info),
        "path": str(npy),
        "model_dir": str(model_dir),
        "max_length": max_length,
        "pooling": pooling,
        "dtype": str(arr.dtype),
        "created": time.time(),
    }
    del record["cache_hit"]
    _atomic_write(meta, lambda fh: fh.write(json.dumps(record, indent=2).encode("utf-8")))
    return arr, info
