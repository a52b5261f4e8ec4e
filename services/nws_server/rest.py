"""The REST front door (FastAPI), for monitoring: list, inspect and score sketches; health; metrics;
the live dashboard.

Mutation stays on gRPC. Like the gRPC servicer, the routes only convert JSON to the core's types,
call the :class:`~nws_server.registry.SketchRegistry` (or its :class:`~nws_server.monitor.Monitor`)
and answer its errors with the status each error class carries (:mod:`nws_core.errors`).
OpenAPI is served at ``/openapi.json`` with the interactive docs at ``/docs``; the dashboard at
``/dashboard`` (``/`` redirects there).
Both pages load their scripts from the package (``static/``), never from a CDN, so they work
offline.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.status import HTTP_413_CONTENT_TOO_LARGE

from nws_core import errors
from nws_server.auth import REST_OPEN_PATHS, UNAUTHENTICATED_MESSAGE, TokenCheck
from nws_server.metrics import CONTENT_TYPE, Metrics
from nws_server.monitor import Monitor
from nws_server.registry import SketchRegistry
from nws_server.results import SketchInfo

STATIC_DIR = Path(__file__).parent / "static"
"""The dashboard page and the vendored scripts (see static/vendor/README.md)."""
SWAGGER_UI = "/static/vendor/swagger-ui-dist-5.35.0"

#: Code names of the framework's own HTTP errors (a body that is not JSON, an unknown route),
#: derived from the statuses the core's error classes carry; the first class listed wins a status.
_HTTP_CODE_NAMES: dict[int, str] = {405: "UNIMPLEMENTED"}
for _cls in (
    errors.InvalidArgument,
    errors.Unauthenticated,
    errors.NotFound,
    errors.AlreadyExists,
    errors.ResourceExhausted,
    errors.Unavailable,
):
    _HTTP_CODE_NAMES.setdefault(_cls.http_status, _cls.code)


# --------------------------------------------------------------------------- response models
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


# --------------------------------------------------------------------------- dependencies
def _registry(request: Request) -> SketchRegistry:
    registry: SketchRegistry = request.app.state.registry
    return registry


Registry = Annotated[SketchRegistry, Depends(_registry)]


def _monitor(request: Request) -> Monitor:
    monitor: Monitor = request.app.state.monitor
    return monitor


MonitorDep = Annotated[Monitor, Depends(_monitor)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Invalid argument (shape, non-finite values)."},
    404: {"model": Error, "description": "No sketch of that name."},
    413: {"model": Error, "description": "Too many rows or too large a body."},
}


def _sketch(info: SketchInfo) -> Sketch:
    s = info.status
    return Sketch(
        name=info.name,
        config=SketchConfig(**info.config.to_dict()),
        warmup=info.warmup,
        device=info.device,
        create_time=datetime.fromtimestamp(info.created_at, tz=timezone.utc),
        stats=SketchStats(**{name: getattr(s, name) for name in SketchStats.model_fields}),
    )


# --------------------------------------------------------------------------- routes
sketches = APIRouter(prefix="/v1/sketches", tags=["sketches"])


@sketches.get("", response_model=SketchList, summary="List every sketch")
def list_sketches(registry: Registry) -> SketchList:
    return SketchList(sketches=[_sketch(info) for info in registry.list()])


@sketches.get(
    "/{name}",
    response_model=Sketch,
    responses={404: _ERRORS[404]},
    summary="A sketch's config and statistics",
)
def get_sketch(name: str, registry: Registry) -> Sketch:
    return _sketch(registry.get(name))


@sketches.post(
    "/{name}/score",
    response_model=ScoreResponse,
    responses=_ERRORS,
    summary="Estimated loss of each embedding",
)
def score(name: str, body: ScoreRequest, registry: Registry) -> ScoreResponse:
    try:
        x = np.asarray(body.embeddings, dtype=np.float64)
    except ValueError as exc:  # ragged rows
        raise errors.InvalidArgument(f"embeddings must be [n, dim] numbers: {exc}") from None
    result = registry.score(name, x)
    return ScoreResponse(
        estimates=result.estimates.tolist(),
        prior_used=result.prior_used.tolist(),
        support=result.support.tolist(),
    )


@sketches.get(
    "/{name}/histograms",
    response_model=Histograms,
    responses={400: _ERRORS[400], 404: _ERRORS[404]},
    summary="Histograms of recently observed losses and of recent estimates",
)
def histograms(
    name: str,
    monitor: MonitorDep,
    bins: Annotated[int, Query(ge=1, le=1000, description="Number of equal bins.")] = 20,
    upper: Annotated[
        float | None,
        Query(description="Upper edge of the last bin; default: the largest recent value."),
    ] = None,
) -> Histograms:
    h = monitor.histograms(name, bins=bins, upper=upper)
    return Histograms(
        name=name,
        edges=h.edges,
        observed=Histogram(**vars(h.observed)),
        estimated=Histogram(**vars(h.estimated)),
        window=h.window,
    )


@sketches.get(
    "/{name}/timeseries",
    response_model=TimeSeries,
    responses={404: _ERRORS[404]},
    summary="Acceptance rate, prior-hit rate, update rates and keep ratio over the last minutes",
)
def timeseries(name: str, monitor: MonitorDep) -> TimeSeries:
    points = monitor.series(name)
    return TimeSeries(
        name=name,
        interval_seconds=monitor.interval_s,
        points=[TimePoint(**vars(p)) for p in points],
    )


health = APIRouter(tags=["health"])


@health.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


@health.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Not ready (starting or stopping)."}},
    summary="Readiness: both front doors serve",
)
def readyz(request: Request) -> Response:
    if request.app.state.is_ready():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready"}, status_code=503)


@health.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."}},
    summary="Prometheus metrics",
)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)


pages = APIRouter(tags=["dashboard"])


@pages.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@pages.get(
    "/dashboard",
    response_class=FileResponse,
    responses={200: {"content": {"text/html": {}}, "description": "The dashboard page."}},
    summary="Live dashboard: sketches, loss histograms, acceptance and prior-hit rates",
)
def dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html")


@pages.get("/docs", include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    """Swagger UI from the package's own copy of swagger-ui-dist (works offline)."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
    )


# --------------------------------------------------------------------------- the app
def create_app(
    registry: SketchRegistry,
    metrics: Metrics,
    *,
    monitor: Monitor | None = None,
    is_ready: Callable[[], bool] = lambda: True,
    max_body_bytes: int = 64 * 2**20,
    version: str = "0",
    auth_token: str | None = None,
) -> FastAPI:
    """The REST app over ``registry``; ``is_ready`` answers /readyz; ``monitor`` (the one fed by
    the registry's ``on_values`` hook) answers the histogram and time-series routes (without it
    they see only the counters). With ``auth_token`` every route but /healthz, /readyz and the
    pages (``/``, ``/dashboard``, ``/static/...``, which hold no data) needs ``Authorization:
    Bearer <token>`` (else 401)."""
    check = TokenCheck(auth_token) if auth_token else None
    if monitor is None:
        monitor = Monitor()
        monitor.watch(registry)
    app = FastAPI(
        title="NWS sketch server",
        summary="Monitoring API of the Nadaraya-Watson sketch service (mutation is on gRPC).",
        version=version,
        docs_url=None,  # served by the `docs` route from the package's own Swagger UI
        redoc_url=None,  # ReDoc would load its script from a CDN
    )
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.monitor = monitor
    app.state.is_ready = is_ready
    app.include_router(sketches)
    app.include_router(health)
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(errors.NWSError)
    async def _nws_error(request: Request, exc: errors.NWSError) -> JSONResponse:
        # the status the error class carries (nws_core.errors); NWSError itself is INTERNAL / 500
        body = Error(code=exc.code, detail=str(exc)).model_dump()
        return JSONResponse(body, status_code=exc.http_status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the framework's own errors (a body that is not JSON, an unknown route) in the same shape
        status = exc.status_code
        code = _HTTP_CODE_NAMES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
        return JSONResponse(
            Error(code=code, detail=str(exc.detail)).model_dump(),
            status_code=status,
            headers=exc.headers,
        )

    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        length = request.headers.get("content-length")
        if (
            check is not None
            and not _open(request.url.path)
            and not check(request.headers.get("authorization"))
        ):
            response: Response = JSONResponse(
                Error(code="UNAUTHENTICATED", detail=UNAUTHENTICATED_MESSAGE).model_dump(),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        elif length is not None and length.isdigit() and int(length) > max_body_bytes:
            response = JSONResponse(
                Error(
                    code="RESOURCE_EXHAUSTED",
                    detail=f"request body of {length} bytes is over the limit of {max_body_bytes}",
                ).model_dump(),
                status_code=HTTP_413_CONTENT_TOO_LARGE,
            )
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", None) or (
            "/static/{path}" if request.url.path.startswith("/static/") else "unmatched"
        )
        metrics.observe(
            "rest",
            f"{request.method} {path}",
            str(response.status_code),
            time.perf_counter() - start,
        )
        return response

    return app


def _open(path: str) -> bool:
    """Whether ``path`` is served without the bearer token: the probes and the pages."""
    return path in REST_OPEN_PATHS or path in _OPEN_PAGES or path.startswith("/static/")


_OPEN_PAGES = frozenset({"/", "/dashboard"})
