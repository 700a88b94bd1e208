"""The FastAPI application: routes, auth, error shape, CORS, OpenAPI (``/docs``).

:func:`create_app` wires one running :class:`jaxmm.engine.OptionsMarketMaker` (and optionally
a :class:`jaxmm.store.Store`) to the REST routes of :mod:`jaxmm.api._routes` and, when it is
installed, the WebSocket router of ``jaxmm.api._ws`` (``/api/v1/mm/ws``).

Error shape: every error answer — validation, auth, unknown symbol, refused change, and the
(never expected) internal error — is ``{"error": {"field", "rule", "message"}}``.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from ._auth import TokenBucketLimiter, verifier
from ._models import ApiError, error_field
from ._routes import ApiContext, router
from ._settings import ApiSettings

__all__ = ["create_app", "LOCAL_MODE_HEADER"]

log = logging.getLogger("jaxmm.api")

LOCAL_MODE_HEADER = ("x-jaxmm-auth", "disabled")
"""The header every response carries in local mode (authentication disabled)."""

_LOCAL_MODE_WARNING = (
    "AUTHENTICATION IS DISABLED (auth_disabled=true): anyone who can reach this server can "
    "read, trade, change the configuration and kill the market maker. Local demo use only; "
    "set JAXMM_JWT_SECRET and unset JAXMM_AUTH_DISABLED for anything else."
)

_DESCRIPTION = """\
REST API of the jaxmm options market maker.

Authenticate with a bearer JWT (`Authorization: Bearer <token>`, mint one with
`jaxmm token`). Scopes: **read** for GET routes, **trade** for order entry, **admin** for
controls, configuration and start/stop/kill. Errors always have the shape
`{"error": {"field": ..., "rule": ..., "message": ...}}`. Units: prices in the quote currency,
quantities in contracts, expiries in years (ACT/365F), vols annualised fractions, Greeks raw
(vega per 1.00 vol, theta per year), timestamps in ns since the Unix epoch. See docs/api.md.
"""


def _error(status: int, field: Any, rule: str, message: str, headers=None) -> JSONResponse:
    return JSONResponse(
        {"error": {"field": field, "rule": rule, "message": message}},
        status_code=status,
        headers=headers,
    )


async def _on_api_error(_: Request, exc: ApiError) -> JSONResponse:
    return _error(exc.status, exc.field, exc.rule, exc.message, exc.headers)


async def _on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "type": "invalid", "msg": "invalid request"}
    msg = first.get("msg", "invalid request")
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more error(s))"
    return _error(422, error_field(first), str(first.get("type")), msg)


async def _on_pydantic(_: Request, exc: ValidationError) -> JSONResponse:
    first = exc.errors()[0]
    return _error(422, error_field(first), first["type"], first["msg"])


async def _on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    rules = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
    return _error(
        exc.status_code,
        None,
        rules.get(exc.status_code, f"http_{exc.status_code}"),
        str(exc.detail),
        getattr(exc, "headers", None),
    )


async def _on_internal(_: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error while serving a request", exc_info=exc)
    return _error(500, None, "internal", "internal error (logged on the server)")


class _LocalModeHeader:
    """Pure ASGI middleware: add ``X-Jaxmm-Auth: disabled`` to every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._header = (LOCAL_MODE_HEADER[0].encode(), LOCAL_MODE_HEADER[1].encode())

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self._header]
            await send(message)

        await self.app(scope, receive, send_with_header)


def create_app(engine: Any, *, store: Any = None, settings: ApiSettings) -> FastAPI:
    """The REST (and, when installed, WebSocket) application serving ``engine``.

    Args:
        engine: a :class:`jaxmm.engine.OptionsMarketMaker` (started or not: ``POST
            /api/v1/mm/start`` starts it).
        store: the :class:`jaxmm.store.Store` read by ``/fills``, ``/mm/pnl/history`` and
            ``/mm/config/history`` (the engine's own store, normally).
        settings: :class:`ApiSettings` (secret, local mode, CORS, rate limit).

    Everything the routes share is on ``app.state``: ``engine``, ``store``, ``settings``,
    ``limiter`` (per-subject :class:`~jaxmm.api.TokenBucketLimiter`), ``ctx``, ``events`` (the
    engine's broadcaster) and ``auth_verify(token, scope) -> subject`` (for the WebSocket).

    Example:
        >>> from types import SimpleNamespace
        >>> app = create_app(SimpleNamespace(), settings=ApiSettings(jwt_secret="k" * 32))
        >>> "/api/v1/mm/config" in app.openapi()["paths"], app.state.settings.auth_disabled
        (True, False)
    """
    if not isinstance(settings, ApiSettings):
        raise ValueError(f"settings: expected ApiSettings, got {type(settings).__name__}")
    from .. import __version__

    app = FastAPI(
        title="jaxmm",
        version=__version__,
        description=_DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.engine = engine
    app.state.store = store
    app.state.settings = settings
    app.state.limiter = TokenBucketLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.state.ctx = ApiContext(engine=engine, store=store)
    app.state.events = getattr(engine, "events", None)  # the WebSocket stream's source
    app.state.auth_verify = verifier(settings)

    app.include_router(router)
    ws_router = _ws_router()
    if ws_router is not None:
        app.include_router(ws_router)
    _mount_console(app)
    _shell(app, settings)
    return app


def _shell(app: FastAPI, settings: ApiSettings, *, warn: bool = True) -> None:
    """What every app serving this API has around its routes: the error shape (one handler
    per exception kind), CORS, and in local mode the header and (``warn``) the warning."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(ValidationError, _on_pydantic)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_internal)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "PUT", "POST", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["Retry-After"],
    )
    if settings.auth_disabled:
        app.add_middleware(_LocalModeHeader)
        if warn:
            log.warning(_LOCAL_MODE_WARNING)


def _mount_console(app: FastAPI) -> None:
    """The browser console (``static/index.html``) at ``/`` and its assets at ``/static``,
    when the package ships them. The page itself is public; its API calls need a token."""
    static = Path(__file__).resolve().parent / "static"
    if not (static / "index.html").is_file():
        return
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def console_page() -> FileResponse:
        return FileResponse(static / "index.html")


def _ws_router() -> Any:
    """The WebSocket router of ``jaxmm.api._ws`` if that module exists."""
    try:
        module = importlib.import_module(f"{__package__}._ws")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__package__}._ws":
            return None
        raise
    return module.router
