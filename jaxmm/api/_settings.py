"""API settings: a validated pydantic model read from ``JAXMM_*`` environment variables and an
optional TOML or JSON file.

Precedence (highest first): keyword overrides given to :meth:`ApiSettings.load`, environment
variables, the settings file, the defaults. The JWT secret has no default and is never
written in code: it comes from ``JAXMM_JWT_SECRET`` or the file's ``jwt_secret``. Without a
secret the service refuses to start unless ``auth_disabled`` is set (local mode: no
authentication at all, a loud warning at startup and an ``X-Jaxmm-Auth: disabled`` header on
every response).

Environment variables (all optional):

==============================  =====================================  ==================
variable                        field                                  format
==============================  =====================================  ==================
``JAXMM_API_SETTINGS``          path of the settings file              ``.toml``/``.json``
``JAXMM_JWT_SECRET``            ``jwt_secret``                         >= 32 characters
``JAXMM_JWT_ISSUER``            ``jwt_issuer``                         text
``JAXMM_AUTH_DISABLED``         ``auth_disabled``                      1/true/yes, 0/false
``JAXMM_CORS_ORIGINS``          ``cors_origins``                       comma separated
``JAXMM_RATE_LIMIT_PER_S``      ``rate_limit_per_s``                   number > 0
``JAXMM_RATE_LIMIT_BURST``      ``rate_limit_burst``                   integer >= 1
==============================  =====================================  ==================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .._files import read_table

__all__ = ["ApiSettings", "MIN_SECRET_LENGTH"]

MIN_SECRET_LENGTH = 32
"""Shortest accepted HS256 secret, in characters (RFC 7518 section 3.2: a key of at least the
hash's 256 bits)."""

_ENV: dict[str, str] = {
    "JAXMM_JWT_SECRET": "jwt_secret",
    "JAXMM_JWT_ISSUER": "jwt_issuer",
    "JAXMM_AUTH_DISABLED": "auth_disabled",
    "JAXMM_CORS_ORIGINS": "cors_origins",
    "JAXMM_RATE_LIMIT_PER_S": "rate_limit_per_s",
    "JAXMM_RATE_LIMIT_BURST": "rate_limit_burst",
}


class ApiSettings(BaseModel):
    """Settings of the REST/WebSocket service.

    Attributes:
        jwt_secret: HS256 signing secret (>= 32 characters); required unless
            ``auth_disabled``. Shown as ``**********`` in reprs and logs.
        jwt_issuer: the ``iss`` claim minted and required on every token.
        auth_disabled: local mode: no authentication (every request acts as subject
            ``"local"`` with every scope). For a demo on localhost only.
        cors_origins: origins allowed by CORS; empty (the default) = closed.
        rate_limit_per_s: token-bucket refill rate per subject, requests per second.
        rate_limit_burst: bucket size per subject (requests allowed at once).
        max_page: largest ``limit`` accepted by paged routes.
        ws_heartbeat_s, ws_queue_size, ws_close_timeout_s: the WebSocket stream's heartbeat
            period (s, >= 0; 0 = no heartbeats), per-connection queue (events, 1..10**6) and
            close timeout for a stalled client (s, > 0, <= 3600).
        ws_per_message_deflate: negotiate permessage-deflate on the WebSocket (uvicorn's
            ``ws_per_message_deflate``; ``jaxmm serve`` / ``make demo`` pass it). Off by
            default: event frames are small, and compressing each frame once per connection
            costs more CPU than the bytes it saves on the send path.
        ws_direct: write each event's frame, built once, straight to every subscriber's
            transport when the server is uvicorn's websockets-sansio protocol (docs/events.md);
            False: every frame goes through the ASGI send path.
        ws_coalesce_bursts: on the direct path, write the first event of an event-loop
            iteration at once and hold the later ones of the same iteration (a requote's burst)
            until it ends, one send per subscriber for them all: the publisher (the engine)
            pays for a burst about twice per subscriber instead of once per event; those events
            arrive when the burst ends. False: every event is written inside its ``publish``.

    Example:
        >>> s = ApiSettings.load(env={"JAXMM_JWT_SECRET": "x" * 32, "JAXMM_CORS_ORIGINS": "a,b"})
        >>> s.cors_origins, s.auth_disabled, s.jwt_secret
        (['a', 'b'], False, SecretStr('**********'))
        >>> ApiSettings.load(env={})
        Traceback (most recent call last):
        ...
        pydantic_core._pydantic_core.ValidationError: 1 validation error for ApiSettings
        ...
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    jwt_secret: SecretStr | None = None
    jwt_issuer: str = Field(default="jaxmm", min_length=1, max_length=64)
    auth_disabled: bool = False
    cors_origins: list[str] = Field(default_factory=list)
    rate_limit_per_s: float = Field(default=50.0, gt=0, allow_inf_nan=False)
    rate_limit_burst: int = Field(default=100, ge=1)
    max_page: int = Field(default=1000, ge=1, le=1000)
    ws_heartbeat_s: float = Field(default=10.0, ge=0, le=86_400, allow_inf_nan=False)
    ws_queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    ws_close_timeout_s: float = Field(default=5.0, gt=0, le=3600, allow_inf_nan=False)
    ws_per_message_deflate: bool = False
    ws_direct: bool = True
    ws_coalesce_bursts: bool = True

    @model_validator(mode="after")
    def _secret_required(self) -> ApiSettings:
        if self.jwt_secret is None:
            if not self.auth_disabled:
                raise ValueError(
                    "jwt_secret: required unless auth_disabled (set JAXMM_JWT_SECRET or "
                    "jwt_secret in the settings file)"
                )
        elif len(self.jwt_secret.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"jwt_secret: must be at least {MIN_SECRET_LENGTH} characters")
        return self

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> ApiSettings:
        """Read the settings file (``path``, else ``$JAXMM_API_SETTINGS``, else none), then the
        ``JAXMM_*`` environment variables (``env``, default ``os.environ``), then
        ``overrides``.

        Raises ``ValueError`` for an unreadable file or a bad suffix, and
        ``pydantic.ValidationError`` (a ``ValueError``) naming the bad field.
        """
        env = os.environ if env is None else env
        data: dict[str, Any] = {}
        path = path if path is not None else env.get("JAXMM_API_SETTINGS") or None
        if path is not None:
            data.update(_read_file(Path(path)))
        for var, field in _ENV.items():
            if var in env:
                data[field] = _parse_env(field, env[var])
        data.update(overrides)
        return cls.model_validate(data)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = read_table(path)
    except ValueError as exc:
        raise ValueError(f"settings file: {exc}") from exc
    if path.suffix == ".toml":
        data = data.get("api", data)  # a [api] table, or top-level keys
        if not isinstance(data, dict):
            raise ValueError(f"settings file: {path}: [api] must be a table of settings")
    return data


def _parse_env(field: str, value: str) -> Any:
    if field == "auth_disabled":
        v = value.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"auth_disabled: JAXMM_AUTH_DISABLED must be true/false, got {value!r}")
    if field == "cors_origins":
        return [o.strip() for o in value.split(",") if o.strip()]
    return value
