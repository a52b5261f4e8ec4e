"""Tests for nws_trainer.data: bundled corpus, table loading and splitting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nws_trainer.data import TextDataset, load_rotten_tomatoes, load_table, train_test_split

ROWS = [
    {"sentence1": "the cat sat", "sentence2": "a cat was sitting", "label": "yes"},
    {"sentence1": "it rains, again", "sentence2": 'he said "no"', "label": "no"},
    {"sentence1": "stocks rose", "sentence2": "markets fell", "label": "no"},
]


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    """Write ``rows`` in the format given by ``path``'s extension."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path
    import csv

    delimiter = "\t" if path.suffix == ".tsv" else ","
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_rotten_tomatoes_has_12808_labelled_rows() -> None:
    ds = load_rotten_tomatoes()
    assert len(ds) == 12_808
    assert ds.label_names == ["rotten", "fresh"]
    assert ds.labels.dtype == np.int64
    counts = np.bincount(ds.labels, minlength=2)
    assert counts.tolist() == [5405, 7403]
    assert ds.text_pairs is None
    assert all(t.strip() for t in ds.texts)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_load_table_round_trip_with_pairs(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"pairs{suffix}", ROWS)
    ds = load_table(path, "sentence1", "label", text_pair_column="sentence2")
    assert ds.texts == [r["sentence1"] for r in ROWS]
    assert ds.text_pairs == [r["sentence2"] for r in ROWS]
    assert ds.label_names == ["no", "yes"]
    assert ds.labels.tolist() == [1, 0, 0]
    assert ds.labels.dtype == np.int64


def test_load_table_given_label_names_and_numeric_labels(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": lab} for i, lab in enumerate([2, 10, 1, 2])]
    path = _write(tmp_path / "num.jsonl", rows)
    ds = load_table(path, "text", "label")
    assert ds.label_names == ["1", "2", "10"]
    assert ds.labels.tolist() == [1, 2, 0, 1]
    ds = load_table(path, "text", "label", label_names=["10", "2", "1"])
    assert ds.labels.tolist() == [1, 0, 2, 1]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("missing.csv", None, {}, "not found"),
        ("data.parquet", "x", {}, "unknown file extension"),
        ("empty.csv", "", {}, "empty file"),
        ("header_only.csv", "text,label\n", {}, "empty file"),
        ("empty.jsonl", "\n", {}, "empty file"),
        ("cols.csv", "body,label\nhi,1\n", {}, "missing column 'text'"),
        ("blank.csv", "text,label\nhi,1\n  ,0\n", {}, "empty text"),
        ("nolabel.csv", "text,label\nhi,\n", {}, "empty label"),
        ("bad.tsv", "text\tlabel\nhi\tpos\nyo\tmaybe\n", {"label_names": ["neg", "pos"]}, "maybe"),
        ("pair.csv", "text,label\nhi,1\n", {"text_pair_column": "text2"}, "missing column"),
        ("broken.jsonl", '{"text": "hi", "label": 1}\n{oops\n', {}, "not valid JSON"),
    ],
)
def test_load_table_bad_inputs(
    tmp_path: Path, name: str, content: str | None, kwargs: dict[str, object], message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        load_table(path, "text", "label", **kwargs)  # type: ignore[arg-type]
    assert name in str(info.value)


def test_missing_column_lists_available_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", ROWS)
    with pytest.raises(ValueError, match="missing column 'text'") as info:
        load_table(path, "text", "label")
    assert "sentence1" in str(info.value) and "sentence2" in str(info.value)


def test_labels_not_in_label_names_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(ValueError, match="labels not in label_names") as info:
        load_table(path, "sentence1", "label", label_names=["yes"])
    assert "'no'" in str(info.value)


def _toy(n: int) -> TextDataset:
    return TextDataset(
        texts=[f"text {i}" for i in range(n)],
        labels=np.arange(n) % 3,
        label_names=["a", "b", "c"],
        text_pairs=[f"pair {i}" for i in range(n)],
    )


@pytest.mark.parametrize("test_size", [7, 0.25])
def test_split_deterministic_disjoint_covering(test_size: int | float) -> None:
    ds = _toy(30)
    train, test = train_test_split(ds, test_size, seed=3)
    again_train, again_test = train_test_split(ds, test_size, seed=3)
    assert train.texts == again_train.texts and test.texts == again_test.texts
    assert len(test) == (7 if test_size == 7 else 8)
    assert set(train.texts).isdisjoint(test.texts)
    assert sorted(train.texts + test.texts) == sorted(ds.texts)
    for part in (train, test):
        idx = [int(t.split()[1]) for t in part.texts]
        assert part.labels.tolist() == [i % 3 for i in idx]
        assert part.text_pairs == [f"pair {i}" for i in idx]
    other_train, _ = train_test_split(ds, test_size, seed=4)
    assert other_train.texts != train.texts


@pytest.mark.parametrize("test_size", [0, 30, 0.0, 1.0])
def test_split_rejects_degenerate_sizes(test_size: int | float) -> None:
    with pytest.raises(ValueError, match="test"):
        train_test_split(_toy(30), test_size, seed=0)


def test_subset_and_validation() -> None:
    ds = _toy(5)
    sub = ds.subset([4, 0])
    assert sub.texts == ["text 4", "text 0"] and sub.labels.tolist() == [1, 0]
    assert len(sub) == 2
    with pytest.raises(ValueError, match="labels"):
        TextDataset(texts=["a"], labels=np.array([0, 1]), label_names=["x", "y"])
    with pytest.raises(ValueError, match="label ids"):
        TextDataset(texts=["a"], labels=np.array([2]), label_names=["x", "y"])
