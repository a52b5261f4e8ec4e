"""--feedback grad-norm: the bounded gradient-norm proxy streamed back instead of the loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nws_trainer.cli import build_parser, config_from_args
from nws_trainer.config import ConfigError, TrainConfig
from nws_trainer.loss import per_example_loss, residual_norm


def test_residual_norm_is_the_logit_gradient_norm_of_the_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 5, (64,), generator=gen)
    per_example_loss(logits, labels).sum().backward()
    assert logits.grad is not None
    expected = torch.linalg.vector_norm(logits.grad, dim=-1)
    got = residual_norm(logits.detach(), labels)
    torch.testing.assert_close(got, expected)


def test_residual_norm_is_bounded_where_the_loss_is_not() -> None:
    # A confidently wrong row (a mislabelled one): its loss grows without bound, its proxy
    # approaches sqrt(2) (all mass on one wrong class); a confidently right row: both near 0.
    logits = torch.tensor([[30.0, 0.0, 0.0], [0.0, 30.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([1, 1, 2])
    loss = per_example_loss(logits, labels)
    r = residual_norm(logits, labels)
    assert loss[0] > 25 and r[0] == pytest.approx(math.sqrt(2), abs=1e-6)
    assert loss[1] < 1e-6 and r[1] < 1e-6
    # Uniform prediction over 3 classes: (1 - 1/3)^2 + 2 (1/3)^2 = 2/3.
    assert r[2] == pytest.approx(math.sqrt(2 / 3))
    assert bool((r >= 0).all()) and bool((r <= math.sqrt(2) + 1e-9).all())


def test_feedback_flag_and_its_scope() -> None:
    args = build_parser().parse_args(["--feedback", "grad-norm"])
    assert config_from_args(args).feedback == "grad-norm"
    assert TrainConfig(strategy="nws-live", feedback="grad-norm").validate()
    with pytest.raises(ConfigError, match="feedback grad-norm applies to the sketch strategies"):
        TrainConfig(strategy="loss-table", feedback="grad-norm").validate()
    with pytest.raises(ConfigError, match="feedback must be loss or grad-norm"):
        TrainConfig(feedback="margin").validate()  # type: ignore[arg-type]


def _sent_values(cfg: TrainConfig) -> tuple[list[np.ndarray], dict]:
    """Run ``cfg`` with the real in-process engine, recording every update it receives."""
    from nws_trainer.prepare import prepare
    from nws_trainer.sources import inprocess_factory
    from nws_trainer.train import Trainer

    sent: list[np.ndarray] = []

    def spying_factory(config, warmup):
        backend, endpoint = inprocess_factory(config, warmup)
        update = backend.update

        def spy(x: np.ndarray, values: np.ndarray) -> None:
            sent.append(np.asarray(values, dtype=np.float64).copy())
            update(x, values)

        backend.update = spy  # type: ignore[method-assign]
        return backend, endpoint

    result = Trainer(prepare(cfg), log=lambda _m: None, backend_factory=spying_factory).run()
    return sent, {"summary": result.summary, "metrics": result.metrics}


def test_a_grad_norm_run_streams_the_proxy(tiny_bert_dir, tmp_path) -> None:
    """The same short run twice: the sketch learns the losses, or their bounded proxy. Before
    the first step both see the same model and the same first batch, and for two classes the
    proxy of a row is sqrt(2) (1 - p_label) = sqrt(2) (1 - exp(-loss))."""
    base = TrainConfig(
        model=tiny_bert_dir,
        strategy="nws",
        sketch_backend="inprocess",
        train_size=128,
        test_size=32,
        probe_size=32,
        warmup_steps=1,
        epochs=1,
        batch_size=16,
        eval_every=2,
        progress=False,
    )
    losses, _ = _sent_values(base.replace(output=tmp_path / "loss").validate())
    proxies, run = _sent_values(
        base.replace(feedback="grad-norm", output=tmp_path / "grad-norm").validate()
    )
    assert run["summary"]["config"]["feedback"] == "grad-norm"
    values = np.concatenate(proxies)
    assert values.size == run["summary"]["ledger"]["grad_examples"]
    assert values.min() >= 0 and values.max() <= math.sqrt(2) + 1e-9
    np.testing.assert_allclose(
        proxies[0], math.sqrt(2) * (1 - np.exp(-losses[0])), rtol=1e-4, atol=1e-6
    )
    assert not np.allclose(proxies[0], losses[0])
    last = run["metrics"][-1]
    assert last["probe_spearman"] is not None and last["probe_loss_cv"] is not None
