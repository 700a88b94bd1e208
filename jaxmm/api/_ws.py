"""The event stream over WebSocket: ``/api/v1/mm/ws``.

One connection follows one filtered view of the engine's :class:`~jaxmm.events.EventBroadcaster`
(``app.state.events``). Every event frame carries the event's own broadcast sequence number, so a
client that reconnects with ``from_seq = last seen + 1`` receives exactly the events it missed
(or a ``snapshot_required`` frame when the history no longer reaches back that far). A client
that cannot keep up is cut off (``lagged`` frame, close code 4008) instead of slowing anyone:
the broadcaster never waits for a subscriber, and each connection sends from its own task.

Protocol (docs/events.md, "WebSocket stream", is the user-facing statement):

client -> server (JSON text frames)::

    {"op": "subscribe", "types": [...]?, "instruments": [...]?, "from_seq": N?}
    {"op": "unsubscribe", "types": [...]?, "instruments": [...]?}

server -> client::

    {"seq": N, "event": {...}}                       one event; N is the event's sequence number
    {"type": "subscribed" | "unsubscribed", "types": [...] | null,
     "instruments": [...] | null, "next_seq": N}     acknowledges an op (null = all)
    {"type": "heartbeat", "ts": ns, "last_seq": N}   every heartbeat_s seconds
    {"type": "snapshot_required", "oldest": N | null, "last": N}
    {"type": "lagged", "last_seq": N}                then close code 4008
    {"type": "error", "field": "...", "message": "..."}   the connection stays open

Settings read from ``app.state.settings`` (attribute, with these defaults when absent):
``ws_heartbeat_s`` (10.0 s; 0 = none), ``ws_queue_size`` (1000 events per connection),
``ws_close_timeout_s`` (5.0 s to deliver the ``lagged`` frame and the close to a stalled client).
Authentication: ``app.state.auth_verify(token, "read")`` returns the subject or raises (an
exception with ``status_code`` 403 means "wrong scope", anything else "not authenticated");
the handshake is then refused with HTTP 401/403 and the REST error body
``{"error": {"field", "rule", "message"}}``. With ``settings.auth_disabled`` or no
``auth_verify`` the stream is open (local mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.responses import JSONResponse

from jaxmm.events import EVENT_TYPES, EventBase, SnapshotRequired, SubscriberLagged

__all__ = [
    "router",
    "WS_PATH",
    "CLOSE_LAGGED",
    "MAX_INSTRUMENTS",
    "event_frame",
    "parse_client_message",
    "ClientMessageError",
]

log = logging.getLogger(__name__)

WS_PATH = "/api/v1/mm/ws"
"""Route of the event stream."""

CLOSE_LAGGED = 4008
"""WebSocket close code sent to a client cut off for being too slow."""

MAX_INSTRUMENTS = 10_000
"""Most instruments one subscribe/unsubscribe message may name."""

_MAX_SYMBOL = 64  # EventBase.instrument's max_length
_OPS = ("subscribe", "unsubscribe")
_KEYS = {
    "subscribe": {"op", "types", "instruments", "from_seq"},
    "unsubscribe": {"op", "types", "instruments"},
}

router = APIRouter()


class ClientMessageError(ValueError):
    """A client message broke the protocol; ``field`` names the offending key."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")
        self.text = message


def _name_list(field: str, value: Any, *, known: frozenset[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ClientMessageError(
            field, f"must be a list of strings or null, got {type(value).__name__}"
        )
    if len(value) > MAX_INSTRUMENTS:
        raise ClientMessageError(field, f"at most {MAX_INSTRUMENTS} entries, got {len(value)}")
    out = set()
    for v in value:
        if not isinstance(v, str) or not 0 < len(v) <= _MAX_SYMBOL:
            raise ClientMessageError(
                field, f"entries must be strings of 1..{_MAX_SYMBOL} characters, got {v!r}"
            )
        if known is not None and v not in known:
            raise ClientMessageError(field, f"unknown event type {v!r}; known: {sorted(known)}")
        out.add(v)
    return frozenset(out)


def parse_client_message(text: str) -> dict[str, Any]:
    """Validate one client frame; returns ``{"op", "types", "instruments", "from_seq", "keys"}``
    with frozensets (``None`` = absent or null, i.e. all) and the set of keys present.

    Raises:
        ClientMessageError: naming the offending field and the rule it broke.

    Example:
        >>> m = parse_client_message('{"op":"subscribe","types":["quote_updated"],"from_seq":5}')
        >>> m["op"], sorted(m["types"]), m["instruments"], m["from_seq"]
        ('subscribe', ['quote_updated'], None, 5)
        >>> try:
        ...     parse_client_message('{"op": "subscribe", "from_seq": 0}')
        ... except ClientMessageError as exc:
        ...     print(exc.field, "|", exc.text)
        from_seq | must be an integer >= 1, got 0
    """
    try:
        msg = json.loads(text)
    except ValueError as exc:
        raise ClientMessageError("message", f"not valid JSON ({exc.args[0]})") from None
    if not isinstance(msg, dict):
        raise ClientMessageError("message", "must be a JSON object")
    op = msg.get("op")
    if op not in _OPS:
        raise ClientMessageError("op", f"must be one of {list(_OPS)}, got {op!r}")
    extra = set(msg) - _KEYS[op]
    if extra:
        raise ClientMessageError(
            sorted(extra)[0], f"unknown key for op {op!r}; allowed: {sorted(_KEYS[op])}"
        )
    from_seq = msg.get("from_seq")
    if from_seq is not None and (type(from_seq) is not int or from_seq < 1):
        raise ClientMessageError("from_seq", f"must be an integer >= 1, got {from_seq!r}")
    return {
        "op": op,
        "types": _name_list("types", msg.get("types"), known=frozenset(EVENT_TYPES)),
        "instruments": _name_list("instruments", msg.get("instruments"), known=None),
        "from_seq": from_seq,
        "keys": frozenset(msg),
    }


# One JSON text per event, shared by every connection that sends it (events are immutable).
_FRAME_CACHE: OrderedDict[int, tuple[EventBase, str]] = OrderedDict()
_FRAME_CACHE_SIZE = 4096


def event_frame(event: EventBase) -> str:
    """The text frame ``{"seq": N, "event": {...}}`` for a published event (cached per event).

    Example:
        >>> from jaxmm.events import PriceUpdated
        >>> e = PriceUpdated(underlying="BTC", price=1.5).model_copy(update={"seq": 3})
        >>> json.loads(event_frame(e))["seq"], json.loads(event_frame(e))["event"]["price"]
        (3, 1.5)
    """
    key = id(event)
    hit = _FRAME_CACHE.get(key)
    if hit is not None and hit[0] is event:
        return hit[1]
    text = f'{{"seq":{event.seq},"event":{event.model_dump_json()}}}'
    _FRAME_CACHE[key] = (event, text)
    if len(_FRAME_CACHE) > _FRAME_CACHE_SIZE:
        _FRAME_CACHE.popitem(last=False)
    return text


def _setting(app: Any, name: str, default: float) -> Any:
    settings = getattr(app.state, "settings", None)
    value = getattr(settings, name, None)
    if value is None and isinstance(settings, dict):
        value = settings.get(name)
    return default if value is None else value


def _bearer(websocket: WebSocket) -> str | None:
    token = websocket.query_params.get("token")
    if token:
        return token
    auth = websocket.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def _authenticate(websocket: WebSocket) -> bool:
    app = websocket.app
    settings = getattr(app.state, "settings", None)
    verify = getattr(app.state, "auth_verify", None)
    if verify is None or getattr(settings, "auth_disabled", False):
        return True
    try:
        subject = verify(_bearer(websocket), "read")
        if inspect.isawaitable(subject):
            await subject
        return True
    except Exception as exc:  # the verifier's own error says why
        status = 403 if getattr(exc, "status_code", None) == 403 else 401
        if callable(getattr(exc, "body", None)):  # jaxmm.api.ApiError: the REST error shape
            body = exc.body()
        else:
            message = str(getattr(exc, "detail", None) or exc or "invalid token")
            body = {"error": {"field": "token", "rule": "unauthorized", "message": message}}
        headers = getattr(exc, "headers", None) or (
            {"WWW-Authenticate": "Bearer"} if status == 401 else None
        )
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(JSONResponse(body, status, headers=headers))
        else:
            await websocket.close(code=1008, reason=body["error"]["message"][:120])
        return False


def _union(
    current: frozenset[str] | None, new: frozenset[str] | None, *, given: bool
) -> frozenset[str] | None:
    if not given:
        return current
    return None if current is None or new is None else current | new


class _Connection:
    """State of one WebSocket connection: its filter, subscription and cursor."""

    def __init__(self, websocket: WebSocket, bus: Any, queue_size: int):
        self.ws = websocket
        self.bus = bus
        self.queue_size = queue_size
        self.types: frozenset[str] | None = None  # None = all
        self.instruments: frozenset[str] | None = None  # None = all
        self.sub: Any = None
        # every matching event with seq <= cursor was handed to the sender (or skipped)
        self.cursor = bus.last_seq
        self.sent_seq = bus.last_seq  # every matching event with seq <= sent_seq was sent
        self.changed = asyncio.Event()
        self.lagged = False
        self.sending = False

    def last_delivered(self) -> int:
        """A sequence number N such that every matching event <= N was sent."""
        sub = self.sub
        if sub is None:
            return self.bus.last_seq
        if (
            not self.sending
            and sub.qsize() == 0
            and not sub.lagged
            and self.cursor == self.sent_seq
        ):
            return self.bus.last_seq  # nothing matching is queued: the stream is caught up
        return self.sent_seq

    # -- sending ------------------------------------------------------------------------------

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(obj, separators=(",", ":")))

    async def sender(self) -> None:
        while True:
            sub = self.sub
            if sub is None:
                self.changed.clear()
                await self.changed.wait()
                continue
            try:
                event = await sub.get()
            except StopAsyncIteration:  # replaced or unsubscribed: pick up the new state
                continue
            except SubscriberLagged:  # the queue overflowed and what it held was sent
                self.lagged = True
                return
            if sub is not self.sub:
                continue  # queued before a filter change; the new subscription replays it
            self.cursor = event.seq
            self.sending = True
            await self.ws.send_text(event_frame(event))
            self.sending = False
            self.sent_seq = event.seq
            if sub.lagged:  # cut off now rather than draining the backlog to a slow client
                self.lagged = True
                return

    async def heartbeat(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            last = self.last_delivered()
            await self.send_json({"type": "heartbeat", "ts": time.time_ns(), "last_seq": last})

    # -- control ------------------------------------------------------------------------------

    def _state(self, kind: str) -> dict[str, Any]:
        return {
            "type": kind,
            "types": None if self.types is None else sorted(self.types),
            "instruments": None if self.instruments is None else sorted(self.instruments),
            "next_seq": self.cursor + 1,
        }

    def _resubscribe(
        self, types: frozenset[str] | None, instruments: frozenset[str] | None, from_seq: int | None
    ) -> None:
        """Swap the broadcaster subscription atomically (no await): replay from ``from_seq``
        (the broadcaster's exclusive cursor), or from this connection's cursor when None."""
        start = self.cursor if from_seq is None else from_seq
        if (types is not None and not types) or (instruments is not None and not instruments):
            new = None
        else:
            new = self.bus.subscribe(
                types=types, instruments=instruments, from_seq=start, queue_size=self.queue_size
            )  # may raise SnapshotRequired / ValueError: nothing changed then
        old, self.sub = self.sub, new
        self.types, self.instruments = types, instruments
        self.cursor = start
        if from_seq is not None:
            self.sent_seq = start
        if old is not None:
            old.close()
        self.changed.set()

    async def handle(self, text: str) -> None:
        try:
            msg = parse_client_message(text)
        except ClientMessageError as exc:
            await self.send_json({"type": "error", "field": exc.field, "message": exc.text})
            return
        types, instruments = msg["types"], msg["instruments"]
        if msg["op"] == "subscribe":
            from_seq = None
            if msg["from_seq"] is not None:
                last = self.bus.last_seq
                if msg["from_seq"] > last + 1:
                    await self.send_json(
                        {
                            "type": "error",
                            "field": "from_seq",
                            "message": f"must be <= last_seq + 1 = {last + 1}, "
                            f"got {msg['from_seq']}",
                        }
                    )
                    return
                from_seq = msg["from_seq"] - 1
            if self.sub is not None and from_seq is None:  # widen the current filter
                types = _union(self.types, types, given="types" in msg["keys"])
                instruments = _union(
                    self.instruments, instruments, given="instruments" in msg["keys"]
                )
            elif from_seq is None:
                self.cursor = self.sent_seq = self.bus.last_seq  # a new live subscription
        else:
            if self.sub is None:
                await self.send_json(self._state("unsubscribed"))
                return
            if types is None and instruments is None:
                types = instruments = frozenset()
            else:
                if instruments is not None and self.instruments is None:
                    await self.send_json(
                        {
                            "type": "error",
                            "field": "instruments",
                            "message": "subscribed to all instruments: cannot remove some; "
                            "subscribe to an explicit list instead",
                        }
                    )
                    return
                current_types = frozenset(EVENT_TYPES) if self.types is None else self.types
                types = self.types if types is None else current_types - types
                instruments = (
                    self.instruments if instruments is None else self.instruments - instruments
                )
            from_seq = None
        try:
            self._resubscribe(types, instruments, from_seq)
        except SnapshotRequired as exc:
            await self.send_json(
                {"type": "snapshot_required", "oldest": exc.oldest, "last": exc.last}
            )
            return
        except ValueError as exc:
            await self.send_json({"type": "error", "field": "from_seq", "message": str(exc)})
            return
        await self.send_json(
            self._state("subscribed" if msg["op"] == "subscribe" else "unsubscribed")
        )

    async def receiver(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await self.send_json(
                    {
                        "type": "error",
                        "field": "message",
                        "message": "binary frames are not accepted",
                    }
                )
                continue
            await self.handle(text)

    def close(self) -> None:
        if self.sub is not None:
            self.sub.close()
            self.sub = None


@router.websocket(WS_PATH)
async def event_stream(websocket: WebSocket) -> None:
    """Stream engine events; see the module docstring for the protocol."""
    app = websocket.app
    bus = getattr(app.state, "events", None)
    if bus is None:  # misconfigured app: refuse rather than accept a dead stream
        await websocket.close(code=1011, reason="no event broadcaster")
        return
    if not await _authenticate(websocket):
        return
    heartbeat_s = float(_setting(app, "ws_heartbeat_s", 10.0))
    queue_size = int(_setting(app, "ws_queue_size", 1000))
    close_timeout = float(_setting(app, "ws_close_timeout_s", 5.0))
    if queue_size < 1 or close_timeout <= 0:
        log.error("ws_queue_size must be >= 1 and ws_close_timeout_s > 0")
        await websocket.close(code=1011, reason="ws_queue_size/ws_close_timeout_s misconfigured")
        return
    await websocket.accept()
    conn = _Connection(websocket, bus, queue_size)
    tasks = [asyncio.create_task(conn.receiver()), asyncio.create_task(conn.sender())]
    if heartbeat_s > 0:  # 0 turns heartbeats off
        tasks.append(asyncio.create_task(conn.heartbeat(heartbeat_s)))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        conn.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in done:
        exc = t.exception()
        if exc is not None and not isinstance(exc, WebSocketDisconnect | OSError | RuntimeError):
            log.error("websocket stream failed", exc_info=exc)
    if conn.lagged:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(close_timeout):
                await conn.send_json({"type": "lagged", "last_seq": conn.sent_seq})
                await websocket.close(code=CLOSE_LAGGED, reason="lagged")
