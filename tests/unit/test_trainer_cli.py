"""``nws-train`` on bad inputs: one clear error line and exit status 2, before training starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nws_trainer.cli import build_parser, config_from_args, field_docs, main
from nws_trainer.config import TrainConfig


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def good_csv(tmp_path: Path) -> Path:
    rows = "\n".join(f"review number {i} {'good' if i % 2 else 'bad'},{i % 2}" for i in range(40))
    return _csv(tmp_path / "good.csv", "text,label\n" + rows + "\n")


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], message: str, output: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--output", str(output), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("nws-train: error: ") and message in err, err
    assert not (output / "metrics.jsonl").exists()  # nothing trained


def test_missing_column(
    tmp_path: Path, good_csv: Path, tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", str(tiny_bert_dir), "--data", str(good_csv), "--text-column", "review"]
    _fails(capsys, argv, "missing column 'review'", tmp_path / "out")


def test_unknown_labels(
    tmp_path: Path, good_csv: Path, tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", str(tiny_bert_dir), "--data", str(good_csv), "--label-names", "0,2"]
    _fails(capsys, argv, "labels not in label_names", tmp_path / "out")
    test = _csv(tmp_path / "test.csv", "text,label\nfine,0\nodd one,7\n")
    argv = ["--model", str(tiny_bert_dir), "--data", str(good_csv), "--test-data", str(test)]
    _fails(capsys, argv, "['7']", tmp_path / "out")


def test_empty_file_and_single_class(
    tmp_path: Path, tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = _csv(tmp_path / "empty.csv", "text,label\n")
    _fails(capsys, ["--model", str(tiny_bert_dir), "--data", str(empty)], "empty file", tmp_path)
    blank = _csv(tmp_path / "blank.jsonl", "")
    _fails(capsys, ["--model", str(tiny_bert_dir), "--data", str(blank)], "empty file", tmp_path)
    one = _csv(tmp_path / "one.csv", "text,label\na,x\nb,x\nc,x\n")
    _fails(capsys, ["--model", str(tiny_bert_dir), "--data", str(one)], "at least 2", tmp_path)


def test_a_folder_that_is_not_a_model(
    tmp_path: Path, good_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notamodel").mkdir()
    argv = ["--model", str(tmp_path / "notamodel"), "--data", str(good_csv)]
    _fails(capsys, argv, "no config.json", tmp_path / "out")
    _fails(capsys, ["--model", str(tmp_path / "nowhere")], "model folder not found", tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    (broken / "model.safetensors").write_bytes(b"not weights")
    (broken / "vocab.txt").write_text("[PAD]\n")
    argv = ["--model", str(broken), "--data", str(good_csv), "--test-size", "10"]
    _fails(capsys, argv, str(broken), tmp_path / "out")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ratio", "1.5"], "ratio must be in (0, 1]"),
        (["--ratio", "0.2", "--p-min", "0.3"], "p_min must be in [0, ratio]"),
        (["--batch-size", "0"], "batch_size must be >= 1"),
        (["--sketch-endpoint", "localhost"], "HOST:PORT"),
        (["--sketch-backend", "inprocess", "--num-workers", "2"], "in-process"),  # nws default
        (["--train-size", "100000"], "exceeds"),
        (["--data", "missing.csv"], "data file not found"),
    ],
)
def test_bad_settings(
    tmp_path: Path,
    tiny_bert_dir: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    _fails(capsys, ["--model", str(tiny_bert_dir), *argv], message, tmp_path / "out")


def test_unknown_extension(
    tmp_path: Path, tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    xlsx = _csv(tmp_path / "table.xlsx", "text,label\n")
    argv = ["--model", str(tiny_bert_dir), "--data", str(xlsx)]
    _fails(capsys, argv, "unknown file extension", tmp_path / "out")


@pytest.mark.slow  # gRPC retries UNAVAILABLE with backoff before giving up
def test_unreachable_sketch_endpoint(
    tmp_path: Path, good_csv: Path, tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", str(tiny_bert_dir), "--data", str(good_csv), "--test-size", "10"]
    argv += ["--strategy", "nws", "--sketch-endpoint", "127.0.0.1:1"]  # nothing listens there
    _fails(capsys, argv, "cannot reach the sketch server at 127.0.0.1:1", tmp_path / "out")


def test_arguments_map_onto_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            "--strategy",
            "selective-backprop",
            "--batching",
            "shrink",
            "--test-size",
            "0.25",
            "--label-names",
            "neg, pos",
            "--output",
            str(tmp_path),
            "--no-progress",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.strategy == "selective-backprop" and cfg.batching == "shrink"
    assert cfg.test_size == 0.25 and cfg.label_names == ("neg", "pos")
    assert cfg.progress is False and cfg.output == tmp_path
    defaults = config_from_args(build_parser().parse_args([]))
    assert defaults.replace(progress=True) == TrainConfig()  # CLI defaults = config defaults
    assert set(field_docs()) == set(TrainConfig.__dataclass_fields__)  # every field documented


def test_help_prints_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse %-formats help texts; a docstring with a literal "%" once crashed --help
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in out, flag
    assert "auto: 20 % of" in " ".join(out.split())  # the literal "%" reached the text intact
