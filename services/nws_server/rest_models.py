"""The REST front door's JSON shapes (pydantic models): what the routes of
:mod:`nws_server.rest` accept and answer, and what OpenAPI documents.

Their fields are the wire contract's (``tests/unit/test_api_types.py`` derives them from the
proto where a message answers the same question).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Error(BaseModel):
    """An error: the gRPC-style code name and a message that says what to change."""

    code: str = Field(examples=["NOT_FOUND"])
    detail: str = Field(examples=["no sketch named 'sst2'"])


class SketchConfig(BaseModel):
    """Everything that defines a sketch (see ``nws_core.sketch.SketchConfig``)."""

    dim: int
    rows: int
    bits: int
    seed: int
    estimator: str
    groups: int
    prior: float | None
    decay: float
    pool: int | None
    buckets: int | None
    accumulator: str
    center: list[float] | None


class SketchStats(BaseModel):
    """A sketch's state and usage."""

    observations: int = Field(description="Examples ever added (not decayed).")
    total_weight: float = Field(description="Decayed count of examples the arrays hold.")
    mean_value: float | None = Field(description="Decayed mean observed loss; null before data.")
    occupancy: float = Field(description="Fraction of non-empty cells.")
    bytes: int = Field(description="Memory of the arrays and hash parameters.")
    estimates: int = Field(description="Rows ever scored.")
    prior_hits: int = Field(description="Scored rows that got the prior.")
    prior_hit_rate: float = Field(description="prior_hits / estimates.")
    updates: int = Field(description="Update calls applied.")
    sampled: int = Field(description="Rows offered to Sample.")
    accepted: int = Field(description="Rows Sample kept.")
    acceptance_rate: float = Field(description="accepted / sampled.")
    updates_per_second: float = Field(description="Update calls per second, last 10 s.")
    observations_per_second: float = Field(description="Observations per second, last 10 s.")
    in_warmup: bool = Field(description="Sample keeps every row while true.")
    keep_ratio: float | None = Field(
        default=None,
        description="Keep ratio of the last Sample (auto's choice, the requested ratio, or 1 "
        "during warm-up); null before the first. Not persisted.",
    )
    priority_cv: float | None = Field(
        default=None,
        description="Moving average of the estimates' coefficient of variation over recent "
        "Samples after warm-up; predicted gain 1 + cv^2. Not persisted.",
    )
    variance_factor: float | None = Field(
        default=None,
        description="Predicted variance factor f of the last Sample (pays when f <= keep_ratio).",
    )


class Sketch(BaseModel):
    """A named sketch: its configuration, warm-up, device and statistics."""

    name: str
    config: SketchConfig
    warmup: int = Field(description="Observations before Sample starts to select.")
    device: str
    create_time: datetime
    stats: SketchStats


class SketchList(BaseModel):
    sketches: list[Sketch]


class ScoreRequest(BaseModel):
    """Embeddings to score: n rows of the sketch's dimension."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"embeddings": [[0.1, -0.2, 0.3]]}]})

    embeddings: list[Annotated[list[float], Field(min_length=1)]] = Field(
        min_length=1, description="[n, dim] embeddings, one list per row (n >= 1)."
    )


class ScoreResponse(BaseModel):
    estimates: list[float] = Field(description="Estimated loss per row.")
    prior_used: list[bool] = Field(description="True where the sketch had no data near the row.")
    support: list[float] = Field(description="Kernel-density estimate at each row.")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Histogram(BaseModel):
    """Counts of recent values per bin (the end bins also hold values beyond the range)."""

    counts: list[int] = Field(description="Values per bin.")
    count: int = Field(description="Values in the window.")
    mean: float | None = Field(description="Mean of the values in the window; null when empty.")


class Histograms(BaseModel):
    """Recently observed losses and recent estimates of one sketch, on the same fixed bins."""

    name: str
    edges: list[float] = Field(description="bins + 1 increasing bin edges, shared by both.")
    observed: Histogram = Field(description="Losses of the most recent updates.")
    estimated: Histogram = Field(description="Estimates of the most recent Score / Sample calls.")
    window: int = Field(description="Most recent values kept per kind.")


class TimePoint(BaseModel):
    """One sample of a sketch's usage: rates over the interval since the previous sample."""

    time: float = Field(description="Unix time of the sample.")
    acceptance_rate: float | None = Field(
        description="Rows Sample kept / rows offered in the interval; null when none offered."
    )
    prior_hit_rate: float | None = Field(
        description="Scored rows that got the prior / rows scored; null when none scored."
    )
    updates_per_second: float = Field(description="Update calls per second.")
    observations_per_second: float = Field(description="Observed rows per second.")
    sampled_per_second: float = Field(description="Rows offered to Sample per second.")
    observations: int = Field(description="The sketch's observation count at the sample.")
    keep_ratio: float | None = Field(
        default=None, description="Keep ratio of the last Sample so far; null before the first."
    )
    priority_cv: float | None = Field(
        default=None, description="The smoothed coefficient of variation of the estimates."
    )
    variance_factor: float | None = Field(
        default=None, description="Predicted variance factor of the last Sample so far."
    )


class TimeSeries(BaseModel):
    """A sketch's recent usage, oldest point first; sampled about every interval_seconds."""

    name: str
    interval_seconds: float
    points: list[TimePoint]
