"""The web application: the pages, /api, static files, health, and what every response
carries (security headers, metrics)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match

from strata.web.api import build_router
from strata.web.backends import BackendError, Backends
from strata.web.metrics import WebMetrics
from strata.web.pages import build_pages, error_page
from strata.web.session import COOKIE

HERE = Path(__file__).parent

# Scripts and styles come from this site only; images may be inline (item PNGs).
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _route_of(app: FastAPI, request: Request) -> str:
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.FULL:
            return getattr(route, "path", "other")
    return "unmatched"


def create_app(
    backends: Backends,
    metrics: WebMetrics,
    *,
    session_ttl_s: int,
    secure_always: bool = False,
    ready: Callable[[], bool] = lambda: True,
    threads: int = 64,
) -> FastAPI:
    """The web service's ASGI application over `backends`; `threads` requests are served
    at once (each waits on a gRPC call in a worker thread)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # anyio's default of 40 would queue a busy team's requests behind each other.
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="Strata",
        summary="Labeling, review and the operator console, as the signed-in person.",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(
        build_router(backends, metrics, session_ttl_s=session_ttl_s, secure_always=secure_always)
    )
    app.include_router(build_pages(backends))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(BackendError)
    async def backend_error(request: Request, exc: BackendError) -> Response:
        if request.url.path.startswith("/api"):
            response: Response = JSONResponse(
                {"error": exc.message, "code": exc.code}, status_code=exc.status
            )
        else:
            response = error_page(request, exc.status, exc.message)
        if exc.status == 401:
            response.delete_cookie(COOKIE, path="/")
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}"
            for e in exc.errors()
        )
        return JSONResponse({"error": problems or "invalid request", "code": "INVALID"}, 422)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        ok = ready()
        return JSONResponse({"status": "ready" if ok else "waiting"}, 200 if ok else 503)

    @app.middleware("http")
    async def headers_and_metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route_of(app, request)
        metrics.requests.labels(route, request.method, f"{response.status_code // 100}xx").inc()
        metrics.seconds.labels(route).observe(time.perf_counter() - started)
        h = response.headers
        h.setdefault("content-security-policy", CSP)
        h.setdefault("x-content-type-options", "nosniff")
        h.setdefault("referrer-policy", "no-referrer")
        h.setdefault("x-frame-options", "DENY")
        if not request.url.path.startswith("/static"):
            h.setdefault("cache-control", "no-store")
        return response

    return app
