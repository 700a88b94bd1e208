"""jaxmm.api — the service: a FastAPI app over a running market maker.

- :func:`create_app` builds the app: REST routes under ``/api/v1`` (health, configuration,
  controls, quotes, positions, Greeks, PnL, chain, surface, orders, fills, risk, price input),
  OpenAPI at ``/openapi.json`` and ``/docs``, and the WebSocket stream when installed.
- :class:`ApiSettings`: secret, local mode, CORS and rate limit, from ``JAXMM_*`` environment
  variables and an optional TOML/JSON file.
- :func:`mint_token` / :func:`decode_token`: HS256 JWTs with scopes ``read``, ``trade``,
  ``admin``; :class:`TokenBucketLimiter`: the per-subject rate limit.

Needs the ``api`` extra (FastAPI, PyJWT). Routes, scopes, errors: ``docs/api.md``.
"""

from ._app import LOCAL_MODE_HEADER as LOCAL_MODE_HEADER
from ._app import create_app as create_app
from ._auth import LOCAL_SUBJECT as LOCAL_SUBJECT
from ._auth import Principal as Principal
from ._auth import Scope as Scope
from ._auth import TokenBucketLimiter as TokenBucketLimiter
from ._auth import decode_token as decode_token
from ._auth import mint_token as mint_token
from ._auth import require as require
from ._models import ApiError as ApiError
from ._routes import API_OWNER as API_OWNER
from ._settings import ApiSettings as ApiSettings

__all__ = [
    "API_OWNER",
    "ApiError",
    "ApiSettings",
    "LOCAL_MODE_HEADER",
    "LOCAL_SUBJECT",
    "Principal",
    "Scope",
    "TokenBucketLimiter",
    "create_app",
    "decode_token",
    "mint_token",
    "require",
]
