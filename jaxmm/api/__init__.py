"""jaxmm.api — the service: a FastAPI app over a running market maker.

- :func:`create_app` builds the app: REST routes under ``/api/v1`` (health, configuration,
  controls, quotes, positions, Greeks, PnL, chain, surface, orders, fills, risk, price input),
  OpenAPI at ``/openapi.json`` and ``/docs``, and the WebSocket stream when installed.
- :class:`ApiSettings`: secret, local mode, CORS and rate limit, from ``JAXMM_*`` environment
  variables and an optional TOML/JSON file.
- :func:`mint_token` / :func:`decode_token`: HS256 JWTs with scopes ``read``, ``trade``,
  ``admin``; :class:`TokenBucketLimiter`: the per-subject rate limit.
- ``/api/v1/mm/ws``: the event stream (subscribe by type and instrument, every frame carries the
  event's sequence number, reconnect with ``from_seq`` replays exactly the missed events,
  heartbeats, slow clients cut off with :data:`CLOSE_LAGGED`).
- :class:`ApiProcess`: serve the app from a process of its own (connections accepted and the
  views answered there from whole-step snapshots; the event stream's connections handed to the
  engine's process, or with ``stream="api"`` served there from relayed events; every other
  request forwarded to the engine's loop; no GIL or garbage collector shared with the engine);
  what ``jaxmm serve`` and ``make demo`` run. :class:`ApiThread` / :class:`ViewSnapshots`: the
  views answered from a thread and event loop of its own beside the engine's, the event stream
  and every other request on the engine's loop (``jaxmm serve --api-thread``).
- :class:`RedisStreamPublisher` / :class:`RedisStreamRelay` / :class:`RelayBroadcaster` /
  :func:`make_relay_app`: several API worker processes serve one engine's events in order
  through Redis Streams.

Needs the ``api`` extra (FastAPI, PyJWT, redis). Routes, scopes, errors: ``docs/api.md``;
the stream and the fan-out: ``docs/events.md``.
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
from ._fanout import RedisStreamPublisher as RedisStreamPublisher
from ._fanout import RedisStreamRelay as RedisStreamRelay
from ._fanout import RelayBroadcaster as RelayBroadcaster
from ._fanout import make_relay_app as make_relay_app
from ._models import ApiError as ApiError
from ._process import ApiProcess as ApiProcess
from ._routes import API_OWNER as API_OWNER
from ._settings import ApiSettings as ApiSettings
from ._threaded import ApiThread as ApiThread
from ._threaded import ViewSnapshots as ViewSnapshots
from ._threaded import uvicorn_server as uvicorn_server
from ._ws import CLOSE_LAGGED as CLOSE_LAGGED

__all__ = [
    "API_OWNER",
    "ApiError",
    "ApiProcess",
    "ApiSettings",
    "ApiThread",
    "CLOSE_LAGGED",
    "LOCAL_MODE_HEADER",
    "LOCAL_SUBJECT",
    "Principal",
    "RedisStreamPublisher",
    "RedisStreamRelay",
    "RelayBroadcaster",
    "Scope",
    "TokenBucketLimiter",
    "ViewSnapshots",
    "create_app",
    "decode_token",
    "make_relay_app",
    "mint_token",
    "require",
    "uvicorn_server",
]
