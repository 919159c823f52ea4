"""The web application: the pages, /api, static files, health, and what every response
carries (security headers, metrics)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.web.api import build_router, looks_like_token
from strata.web.backends import BackendError, Backends
from strata.web.console_api import build_console_router
from strata.web.console_pages import build_console_pages
from strata.web.datasets import build_dataset_router
from strata.web.manage import build_manage_router
from strata.web.metrics import WebMetrics
from strata.web.pages import build_pages, error_page
from strata.web.session import COOKIE

HERE = Path(__file__).parent

# Scripts and styles come from this site only; images may be inline (item PNGs).
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


# What a visitor without a session may call under /api.
OPEN_API = {("POST", "/api/session"), ("POST", "/api/session/link"), ("GET", "/api/openapi.json")}


def _sign_in_first() -> Response:
    """401 before anything else is looked at: a body is not checked for a stranger."""
    return JSONResponse({"error": "sign in first", "code": "UNAUTHENTICATED"}, 401)


class Edge:
    """What every response passes through (plain ASGI, no per-request task): a stranger's
    /api call is answered 401 before anything else; security headers; metrics by route."""

    def __init__(self, app: ASGIApp, metrics: WebMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                h = MutableHeaders(scope=message)
                h.setdefault("content-security-policy", CSP)
                h.setdefault("x-content-type-options", "nosniff")
                h.setdefault("referrer-policy", "no-referrer")
                h.setdefault("x-frame-options", "DENY")
                if not path.startswith("/static"):
                    h.setdefault("cache-control", "no-store")
            await send(message)

        stranger = path.startswith("/api") and (method, path) not in OPEN_API
        if stranger and not looks_like_token(Request(scope).cookies.get(COOKIE, "")):
            await _sign_in_first()(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(route, method, f"{status // 100}xx").inc()
        self.metrics.seconds.labels(route).observe(time.perf_counter() - started)


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
    app.include_router(build_manage_router(backends))
    app.include_router(build_console_router(backends))
    app.include_router(build_dataset_router(backends))
    app.include_router(build_pages(backends))
    app.include_router(build_console_pages(backends))
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

    app.add_middleware(Edge, metrics=metrics)

    return app
