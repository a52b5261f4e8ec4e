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
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.status import HTTP_413_CONTENT_TOO_LARGE

from nws_core import errors
from nws_server.auth import REST_OPEN_PATHS, UNAUTHENTICATED_MESSAGE, TokenCheck
from nws_server.metrics import CONTENT_TYPE, Metrics
from nws_server.monitor import Monitor
from nws_server.registry import SketchRegistry
from nws_server.rest_models import (
    Error,
    Health,
    Histogram,
    Histograms,
    ScoreRequest,
    ScoreResponse,
    Sketch,
    SketchConfig,
    SketchList,
    SketchStats,
    TimePoint,
    TimeSeries,
)
from nws_server.results import Info

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


def _sketch(info: Info) -> Sketch:
    s = info.stats
    return Sketch(
        name=info.name,
        config=SketchConfig(**info.config.to_dict()),
        warmup=info.warmup,
        device=info.device,
        create_time=info.created_at,
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
    async def _guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """The bearer token and the body-size limit, before any route runs."""
        path = request.url.path
        if (
            check is not None
            and not _open(path)
            and not check(request.headers.get("authorization"))
        ):
            return JSONResponse(
                Error(code="UNAUTHENTICATED", detail=UNAUTHENTICATED_MESSAGE).model_dump(),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return JSONResponse(
                Error(
                    code="RESOURCE_EXHAUSTED",
                    detail=f"request body of {length} bytes is over the limit of {max_body_bytes}",
                ).model_dump(),
                status_code=HTTP_413_CONTENT_TOO_LARGE,
            )
        return await call_next(request)

    @app.middleware("http")  # added last, so outermost: it times every answer, 401 and 413 too
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
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
