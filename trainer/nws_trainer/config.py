"""The trainer's configuration: one frozen object, a one-line docstring per field, checked once."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nws_core.policy import SamplingPolicy

Strategy = Literal[
    "full", "uniform", "rs2", "nws", "nws-live", "selective-backprop", "loss-table", "infobatch"
]
STRATEGIES: tuple[str, ...] = (
    "full",
    "uniform",
    "rs2",
    "nws",
    "nws-live",
    "selective-backprop",
    "loss-table",
    "infobatch",
)
SAMPLED: frozenset[str] = frozenset(
    {"uniform", "rs2", "nws", "nws-live", "selective-backprop", "loss-table", "infobatch"}
)
"""Strategies that select a subset of the candidates (and so use ratio, p-min, batching)."""
SKETCHED: frozenset[str] = frozenset({"nws", "nws-live"})
"""Strategies that score candidates with a sketch."""
TRAINER_SIDE: frozenset[str] = frozenset({"nws-live", "selective-backprop"})
"""Strategies that select inside the trainer, after a forward pass of the current model."""
TABLED: frozenset[str] = frozenset({"loss-table", "infobatch"})
"""Anchors that keep each example's last observed loss in an O(N) table instead of a sketch."""


DEFAULT_RATIO = 0.4
"""The keep ratio of the sampled strategies other than nws (whose default is auto)."""


class ConfigError(ValueError):
    """A bad setting or input, reported before training starts."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything one ``nws-train`` run depends on (persisted in ``summary.json``)."""

    strategy: Strategy = "nws"
    """full | uniform | rs2 | nws | nws-live | selective-backprop | loss-table | infobatch."""
    batching: Literal["fill", "shrink"] = "fill"
    """fill: kept examples fill whole batches; shrink: each candidate batch keeps its kept part."""
    ratio: float | Literal["auto"] | None = None
    """Target fraction of candidates kept by the sampled strategies, in (0, 1]; nws also takes
    auto: the server picks each request's ratio from the predicted variance reduction of its
    estimates (docs/sampling.md), never below ratio_min, 1 while the gain is under the threshold.
    None = the strategy's default (:meth:`keep_ratio`): auto for nws with importance sampling
    (it does no harm in every measured regime), 0.4 for the others."""
    ratio_min: float = 0.3
    """ratio auto: the lowest keep ratio the server may choose, in (0, 1]."""
    auto_threshold: float = 0.05
    """ratio auto: keep every candidate while the predicted gain 1 + CV^2 is under 1 + this."""
    p_min: float = 0.05
    """Floor of every keep probability, in [0, ratio] (under auto [0, ratio_min]); > 0 keeps the
    weighted loss unbiased."""
    warmup_steps: int = 20
    """Sketch warm-up: the first warmup_steps * batch_size observations keep every candidate."""
    warmup_forget: float = 1.0
    """Factor in (0, 1] the sketch is decayed by once when warm-up ends; 1 = keep warm-up losses."""
    score_power: float = 1.0
    """Priority = estimate ** score_power (> 1 sharpens flat estimates); weights stay unbiased."""
    score_rank: bool = False
    """Use the estimates' ranks within each candidate chunk as priorities (scale-free)."""
    score_baseline: float | None = None
    """Subtract this quantile of a chunk's priorities (floor 0) before sampling, in [0, 1)."""
    temper: float = 1.0
    """Weights (1/p) ** temper: 1 = unbiased, 0 = pure prioritisation (biased to hard rows)."""
    feedback: Literal["loss", "grad-norm"] = "loss"
    """nws, nws-live: the per-example value streamed back to the sketch (and probed): loss
    (cross-entropy), or grad-norm, ||softmax - onehot||_2 in [0, sqrt(2)], a bounded proxy of
    the example's gradient norm that caps the priority of mislabelled rows."""
    sampling: Literal["importance", "prune"] = "importance"
    """nws: importance (p ∝ estimate, weight 1/p, at ratio) or prune (InfoBatch's rule on the
    sketch's estimates: below-mean rows skipped with probability prune_rate; ratio unused)."""
    prune_rate: float = 0.5
    """sampling prune: share of the below-mean-estimate candidates skipped, in [0, 1)."""
    anneal: float = 0.0
    """nws: train the last anneal share of the run on every candidate (weight 1), in [0, 1);
    InfoBatch uses 0.125; 0 = off (by candidate passes, or by steps under a step budget)."""
    infobatch_prune: float = 0.5
    """infobatch: share of the below-mean-loss examples pruned each epoch, in [0, 1)."""
    infobatch_anneal: float = 0.875
    """infobatch: epochs from this fraction of the run on use the full data, in (0, 1]."""
    embedding_source: Literal["encoder", "tokens"] = "tokens"
    """nws: encoder = the frozen encoder's mean-pooled output (a forward pass per example);
    tokens = the mean of its input token embeddings (no transformer pass, about free)."""
    duplicates: float = 0.0
    """Append this many x len(train) near-duplicate rows (Zipf-popular copies) to the training
    split: a redundant stream, as in web corpora (see nws_trainer.data.with_duplicates)."""

    model: Path | None = None
    """Local Hugging Face model folder; None = the packaged all-MiniLM-L6-v2."""
    data: Path | None = None
    """CSV / TSV / JSONL file; None = the packaged Rotten Tomatoes snippets."""
    text_column: str = "text"
    """Column with the text."""
    text_pair_column: str | None = None
    """Column with the second text of a pair (MRPC-style), if any."""
    label_column: str = "label"
    """Column with the class label."""
    label_names: tuple[str, ...] | None = None
    """Expected label values in class-id order; None = the sorted labels found in the data."""
    test_data: Path | None = None
    """Separate test file (same columns); None = a seeded split of --data."""
    test_size: float | None = None
    """Test rows split off --data: a count (>= 1), a fraction (< 1), or None = auto: 20 % of
    the rows, at most 2,000 (so small files work; the run says what it chose)."""
    train_size: int | None = None
    """Use only the first train_size rows of the (shuffled) training split; None = all."""
    split_seed: int = 0
    """Seed of the train / test split and of the probe set (fixed across run seeds)."""

    batch_size: int = 32
    """Examples per optimizer step (fill) or candidates per step (shrink, full)."""
    max_seq_len: int = 64
    """Tokens per example (longer texts are truncated)."""
    lr: float = 5e-5
    """AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """constant, or linear decay to 0 over the planned steps."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 = no clipping."""
    epochs: int = 1
    """Passes over the training candidates."""
    max_steps: int | None = None
    """Stop after this many optimizer steps."""
    budget_steps: int | None = None
    """Train exactly this many optimizer steps, scanning as many candidates as that takes
    (epochs then only bound nothing); the linear schedule is planned over them. Compare a
    sampled run with ``full`` at the same step budget (fill batching makes every step a full
    batch but the last of each candidate pass)."""
    budget_share: float | None = None
    """The step budget as a share of ``full``'s steps at ``epochs`` (e.g. 1.0: as many steps as
    full would train); exclusive with budget_steps."""
    time_budget: float | None = None
    """Stop once the training clock (evaluation excluded) passes this many seconds."""
    eval_every: int = 50
    """Evaluate on the test set every this many steps (and at step 0 and at the end)."""
    eval_at_start: bool = True
    """Evaluate at step 0 too (benchmarks skip it on runs whose curve they do not draw)."""
    eval_batch_size: int = 128
    """Batch size of evaluation forwards."""
    probe_size: int = 512
    """Training examples in the fixed probe set for the estimate-vs-true-loss Spearman."""
    seed: int = 0
    """Seed of the classifier head, dropout, candidate order and sampling draws."""
    device: str = "cpu"
    """Torch device of the model: cpu, cuda, or auto."""

    sketch_endpoint: str | None = None
    """HOST:PORT of a running sketch server; None = an embedded server on a loopback port."""
    sketch_name: str | None = None
    """Name of the sketch on the server; None = a fresh unique name."""
    sketch_rows: int = 200
    """R: hash rows of the sketch."""
    sketch_bits: int = 10
    """K: sign bits per row (kernel width: more bits, narrower kernel)."""
    sketch_decay: float = 1.0
    """Forgetting factor in (0, 1] applied to the sketch before every update; 1 = none."""
    sketch_backend: Literal["grpc", "inprocess"] = "grpc"
    """grpc (a sketch server; the product path) or inprocess (the engine in this process; tests)."""
    sketch_on_unavailable: Literal["raise", "accept_all", "uniform"] = "uniform"
    """Sketch server unreachable: uniform (keep ratio, weight 1/ratio), accept_all, or raise."""
    num_workers: int = 0
    """Loader worker processes (spawned); each is its own sketch client."""
    cache_dir: Path | None = None
    """Embedding cache folder; None = $NWS_CACHE_DIR or ~/.cache/nws/embeddings."""
    output: Path = Path("runs/nws-train")
    """Folder for metrics.jsonl, summary.json and curves.png."""
    progress: bool = True
    """Show tqdm progress bars."""

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` naming the first bad setting; else return self."""
        _need(self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}", self.strategy)
        _need(self.batching in ("fill", "shrink"), "batching must be fill or shrink", self.batching)
        if self.keep_ratio == "auto":
            _need(
                self.strategy == "nws" and self.sampling == "importance",
                "ratio auto applies to the nws strategy with importance sampling only",
                (self.strategy, self.sampling),
            )
            _need(0.0 < self.ratio_min <= 1.0, "ratio_min must be in (0, 1]", self.ratio_min)
            _need(
                math.isfinite(self.auto_threshold) and self.auto_threshold >= 0,
                "auto_threshold must be a finite number >= 0",
                self.auto_threshold,
            )
            _need(
                0.0 <= self.p_min <= self.ratio_min,
                "p_min must be in [0, ratio_min] under ratio auto",
                self.p_min,
            )
        else:
            ratio = self.keep_ratio
            _need(
                isinstance(ratio, (int, float))
                and not isinstance(ratio, bool)
                and 0.0 < ratio <= 1.0,
                "ratio must be in (0, 1] or auto",
                ratio,
            )
            _need(0.0 <= self.p_min <= float(ratio), "p_min must be in [0, ratio]", self.p_min)
        _need(self.warmup_steps >= 0, "warmup_steps must be >= 0", self.warmup_steps)
        _need(0 < self.warmup_forget <= 1, "warmup_forget must be in (0, 1]", self.warmup_forget)
        _need(
            math.isfinite(self.score_power) and self.score_power > 0,
            "score_power must be > 0",
            self.score_power,
        )
        _need(
            self.score_baseline is None or 0 <= self.score_baseline < 1,
            "score_baseline must be in [0, 1)",
            self.score_baseline,
        )
        _need(0 <= self.temper <= 1, "temper must be in [0, 1]", self.temper)
        _need(
            self.feedback in ("loss", "grad-norm"),
            "feedback must be loss or grad-norm",
            self.feedback,
        )
        _need(
            self.feedback == "loss" or self.strategy in SKETCHED,
            "feedback grad-norm applies to the sketch strategies (nws, nws-live) only",
            self.strategy,
        )
        _need(
            self.sampling in ("importance", "prune"),
            "sampling must be importance or prune",
            self.sampling,
        )
        _need(0 <= self.prune_rate < 1, "prune_rate must be in [0, 1)", self.prune_rate)
        _need(
            self.sampling == "importance" or self.strategy == "nws",
            "sampling prune applies to the nws strategy only",
            self.strategy,
        )
        _need(0 <= self.anneal < 1, "anneal must be in [0, 1)", self.anneal)
        _need(
            self.anneal == 0 or self.strategy == "nws",
            "anneal applies to the nws strategy only (infobatch has infobatch_anneal)",
            self.strategy,
        )
        _need(
            0 <= self.infobatch_prune < 1, "infobatch_prune must be in [0, 1)", self.infobatch_prune
        )
        _need(
            0 < self.infobatch_anneal <= 1,
            "infobatch_anneal must be in (0, 1]",
            self.infobatch_anneal,
        )
        _need(
            self.embedding_source in ("encoder", "tokens"),
            "embedding_source must be encoder or tokens",
            self.embedding_source,
        )
        _need(
            math.isfinite(self.duplicates) and self.duplicates >= 0,
            "duplicates must be >= 0",
            self.duplicates,
        )
        _need(self.batch_size >= 1, "batch_size must be >= 1", self.batch_size)
        _need(self.max_seq_len >= 2, "max_seq_len must be >= 2", self.max_seq_len)
        _need(self.lr > 0 and math.isfinite(self.lr), "lr must be > 0", self.lr)
        _need(self.weight_decay >= 0, "weight_decay must be >= 0", self.weight_decay)
        _need(
            self.lr_schedule in ("constant", "linear"),
            "lr_schedule must be constant or linear",
            self.lr_schedule,
        )
        _need(self.max_grad_norm >= 0, "max_grad_norm must be >= 0", self.max_grad_norm)
        _need(self.epochs >= 1, "epochs must be >= 1", self.epochs)
        _need(
            self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1", self.max_steps
        )
        _need(
            self.time_budget is None or self.time_budget > 0,
            "time_budget must be > 0 seconds",
            self.time_budget,
        )
        _need(self.eval_every >= 1, "eval_every must be >= 1", self.eval_every)
        _need(self.eval_batch_size >= 1, "eval_batch_size must be >= 1", self.eval_batch_size)
        _need(self.probe_size >= 0, "probe_size must be >= 0", self.probe_size)
        _need(self.test_size is None or self.test_size > 0, "test_size must be > 0", self.test_size)
        _need(
            self.budget_steps is None or self.budget_steps >= 1,
            "budget_steps must be >= 1",
            self.budget_steps,
        )
        _need(
            self.budget_share is None
            or (math.isfinite(self.budget_share) and self.budget_share > 0),
            "budget_share must be > 0",
            self.budget_share,
        )
        _need(
            self.budget_steps is None or self.budget_share is None,
            "give budget_steps or budget_share, not both",
            (self.budget_steps, self.budget_share),
        )
        _need(
            self.batching == "fill" or (self.budget_steps is None and self.budget_share is None),
            "a step budget needs fill batching (shrink steps are not full batches)",
            self.batching,
        )
        _need(
            self.train_size is None or self.train_size >= 1,
            "train_size must be >= 1",
            self.train_size,
        )
        _need(self.num_workers >= 0, "num_workers must be >= 0", self.num_workers)
        _need(self.sketch_rows >= 1, "sketch_rows must be >= 1", self.sketch_rows)
        _need(1 <= self.sketch_bits <= 24, "sketch_bits must be in [1, 24]", self.sketch_bits)
        _need(0 < self.sketch_decay <= 1, "sketch_decay must be in (0, 1]", self.sketch_decay)
        _need(
            self.sketch_backend in ("grpc", "inprocess"),
            "sketch_backend must be grpc or inprocess",
            self.sketch_backend,
        )
        _need(
            self.sketch_on_unavailable in ("raise", "accept_all", "uniform"),
            "sketch_on_unavailable must be raise, accept_all or uniform",
            self.sketch_on_unavailable,
        )
        if self.sketch_endpoint is not None:
            host, sep, port = self.sketch_endpoint.rpartition(":")
            _need(
                bool(sep and host and port.isdigit() and 0 < int(port) < 65536),
                "sketch_endpoint must be HOST:PORT",
                self.sketch_endpoint,
            )
        _need(
            not (
                self.strategy == "nws" and self.sketch_backend == "inprocess" and self.num_workers
            ),
            "the in-process sketch backend cannot serve loader worker processes; "
            "use --num-workers 0 or a sketch server",
            self.num_workers,
        )
        return self

    @property
    def keep_ratio(self) -> float | Literal["auto"]:
        """The keep ratio this run uses: ``ratio`` when set, else the strategy's default
        (auto for nws with importance sampling, :data:`DEFAULT_RATIO` for the others)."""
        if self.ratio is not None:
            return self.ratio
        if self.strategy == "nws" and self.sampling == "importance":
            return "auto"
        return DEFAULT_RATIO

    @property
    def auto(self) -> bool:
        """The keep ratio is chosen by the server per request (``keep_ratio == "auto"``)."""
        return self.keep_ratio == "auto"

    def fixed_ratio(self) -> float:
        """The keep ratio as a number: 1 under auto (the most it keeps, and what it keeps while
        the predicted gain is under the threshold), for step planning and fallbacks."""
        ratio = self.keep_ratio
        return 1.0 if ratio == "auto" else float(ratio)

    def sampling_policy(self) -> SamplingPolicy:
        """The policy levers as the server's :class:`~nws_core.policy.SamplingPolicy`."""
        return SamplingPolicy(
            power=self.score_power,
            rank=self.score_rank,
            baseline_quantile=self.score_baseline,
            temper=self.temper,
        )

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values, ``ratio`` resolved (:meth:`keep_ratio`), so a record says
        which ratio the run used and stays equal to one made with that ratio set explicitly."""
        d = dataclasses.asdict(self)
        d["ratio"] = self.keep_ratio
        for key, value in d.items():
            if isinstance(value, Path):
                d[key] = str(value)
            elif isinstance(value, tuple):
                d[key] = list(value)
        return d


def _need(ok: bool, message: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{message}, got {value!r}")
