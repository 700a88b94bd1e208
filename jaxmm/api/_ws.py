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
``ws_close_timeout_s`` (5.0 s to deliver the ``lagged`` frame and the close to a stalled client),
``ws_direct`` (True: use the direct write path below when the server allows it).

Direct write path (the fast path). Server-to-client frames are unmasked, so an event's frame is
the same bytes for every subscriber: it is built once per event (:func:`event_wire`: RFC 6455
header ``0x81``, 7/16/64-bit length, the UTF-8 text of :func:`event_frame`). When the connection
is served by uvicorn's ``websockets-sansio`` protocol without extensions (no permessage-deflate),
each connection registers a synchronous broadcaster callback that writes the frames of its own
subscription straight to the connection's asyncio transport inside ``publish`` — no task
wake-up, no ASGI send per subscriber. Same frames, same order, same filters and replay (the
connection's broadcaster subscription is still the source of every event; the callback only
drains it). The bounded queue becomes the transport's write buffer: a frame counts as pending
while the buffer holds at least the bytes written after its start, and an event that would make
more than ``ws_queue_size`` frames pending is not written — the client is cut off (``lagged``
naming the last frame written, close 4008) exactly as on the ASGI path. Control frames (acks,
heartbeats, errors, ``lagged``, the close) still go through ASGI; an event is never written
directly between a filter change and its acknowledgement. Under any other server (e.g. httpx's
ASGI transport, the ``websockets`` legacy or ``wsproto`` protocols) or with ``ws_direct``
false, each connection sends from its own task through ASGI.
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
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
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
    "event_wire",
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


_WIRE_LAST: list[Any] = [None, b""]  # (event, frame bytes) of the last event framed


def event_wire(event: EventBase) -> bytes:
    """The unmasked RFC 6455 text frame (FIN, opcode 1) carrying :func:`event_frame` —
    the exact bytes a server sends for this event, shared by every subscriber.

    Example:
        >>> from jaxmm.events import PriceUpdated
        >>> e = PriceUpdated(underlying="BTC", price=1.5).model_copy(update={"seq": 3})
        >>> w = event_wire(e)
        >>> n = len(event_frame(e))  # 126..65535 bytes: a 16-bit length follows 0x81 126
        >>> w[:4] == bytes([0x81, 126]) + n.to_bytes(2, "big"), w[4:].decode() == event_frame(e)
        (True, True)
    """
    if _WIRE_LAST[0] is event:
        return _WIRE_LAST[1]
    wire = _text_frame(event_frame(event).encode())
    _WIRE_LAST[0], _WIRE_LAST[1] = event, wire
    return wire


def _text_frame(payload: bytes) -> bytes:
    """FIN + opcode 1, no mask, 7-bit / 126 + 16-bit / 127 + 64-bit length, payload."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65_536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def _sansio_protocol(websocket: WebSocket) -> Any:
    """uvicorn's websockets-sansio protocol object serving ``websocket``, found by following
    the ASGI ``send`` callable through the closures that wrap it; None if there is none (another
    server or protocol, a wrapping that is not a plain closure, or an extension negotiated)."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:  # pragma: no cover - uvicorn or websockets not installed
        return None
    stack: list[tuple[Any, int]] = [(getattr(websocket, "_send", None), 0)]
    seen: set[int] = set()
    while stack:
        fn, depth = stack.pop()
        if fn is None or id(fn) in seen or depth > 8 or len(seen) > 64:
            continue
        seen.add(id(fn))
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, WebSocketsSansIOProtocol):
            conn = getattr(owner, "conn", None)
            if conn is None or getattr(conn, "extensions", None) or owner.transport is None:
                return None
            return owner
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if callable(value) and not isinstance(value, type):
                stack.append((value, depth + 1))
    return None


class _DirectWriter:
    """Writes whole frames to a uvicorn websockets-sansio connection's transport and counts
    the frames still in its write buffer (the bounded queue of the direct path)."""

    __slots__ = ("proto", "transport", "limit", "ends", "total", "corked", "corked_bytes")

    def __init__(self, proto: Any, limit: int):
        self.proto = proto
        self.transport = proto.transport
        self.limit = limit
        self.ends: deque[int] = deque()  # cumulative byte offset at the end of each pending frame
        self.total = 0  # bytes written by this writer (corked ones included)
        self.corked: list[bytes] | None = None  # frames held back by cork(), in order
        self.corked_bytes = 0

    def usable(self) -> bool:
        """False once the server sent a close frame or the transport is closing. In uvicorn's
        websockets-sansio protocol every other way out of the open state ends in one of these
        two within the callback that caused it: a close frame received is answered and the
        transport closed in the same ``data_received``, a parse error sets ``close_sent`` and
        closes it, a lost connection closes it before ``connection_lost``. So between loop
        callbacks (where ``publish`` runs) this equals also checking ``disconnected`` and the
        connection's state (tests/test_api_ws_fast.py checks it in each case), with two reads
        instead of four: it runs for every subscriber of every event, and on a quiet stream the
        memory those reads touch was ~0.3 ms of a 100-subscriber p99 (docs/api.md)."""
        return not (self.proto.close_sent or self.transport.is_closing())

    def write(self, wire: bytes) -> bool:
        """Write one frame (or, corked, hold it for :meth:`uncork`); False (nothing written)
        when ``limit`` frames are still pending."""
        ends = self.ends
        if ends:
            buffered = self.transport.get_write_buffer_size() + self.corked_bytes
            flushed = self.total - buffered  # every byte up to here left the buffer
            while ends and ends[0] <= flushed:
                ends.popleft()
            if len(ends) >= self.limit:
                return False
        self.total += len(wire)
        if self.corked is not None:
            self.corked.append(wire)
            self.corked_bytes += len(wire)
            ends.append(self.total)
            return True
        self.transport.write(wire)
        if self.transport.get_write_buffer_size():
            ends.append(self.total)
        else:
            ends.clear()
        return True

    def cork(self) -> None:
        """Hold the frames written from now on until :meth:`uncork` (one send for them all)."""
        if self.corked is None:
            self.corked = []

    def uncork(self) -> None:
        """Write the held frames in one piece (none if the stream is closing by now)."""
        held, self.corked = self.corked, None
        self.corked_bytes = 0
        if not held or not self.usable():
            return
        self.transport.write(held[0] if len(held) == 1 else b"".join(held))
        if not self.transport.get_write_buffer_size():
            self.ends.clear()


class _Fanout:
    """Every direct-path connection of one app on one broadcaster, behind one broadcaster
    callback.

    A connection is **live** when its subscription has nothing queued, no filter change awaits
    its acknowledgement and its stream is open: it then holds no broadcaster subscription at
    all, and :meth:`on_event` writes each event's frame (built once) straight to its transport
    inside ``publish`` after an inline filter check. That loop is the whole per-subscriber cost
    of a broadcast. Any other direct-path connection is **queued**: it drains its own
    subscription (replay after a filter change, the window before an acknowledgement) and goes
    live when that is empty (:meth:`_Connection.flush`). The broadcaster delivers every event to
    the callback, so a jump in sequence numbers (a Redis relay that lost events) is seen here and
    cuts every live connection off, as the relay does to its subscribers.
    """

    __slots__ = ("bus", "live", "queued", "_live", "_queued", "_registered", "_seen", "_corked",
                 "bursts", "_burst", "_depth")  # fmt: skip

    def __init__(self, bus: Any, *, bursts: bool = True):
        self.bus = bus
        self.live: dict[_Connection, None] = {}  # insertion-ordered sets
        self.queued: dict[_Connection, None] = {}
        self._live: tuple[_Connection, ...] = ()  # what on_event iterates (rebuilt on change)
        self._queued: tuple[_Connection, ...] = ()
        self._registered = False
        self._seen = 0  # the last sequence number delivered to on_event
        self._corked: list[tuple[_Connection, _DirectWriter]] | None = None  # writers holding
        self.bursts = bursts  # hold a loop iteration's later events until it ends
        self._burst = False  # an event was fanned out in this loop iteration
        self._depth = 0  # coalesce() blocks open

    @contextlib.contextmanager
    def coalesce(self) -> Iterator[None]:
        """Within this block, the frames of the events published to each live connection are
        held and written in one send at its end (in order): a burst of N events costs one
        system call per subscriber instead of N. For a caller that publishes events it already
        has (a relay handing on a batch it received), so holding them delays nothing."""
        self._depth += 1
        if self._corked is None:
            self._corked = []
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                self._uncork()

    def _uncork(self) -> None:
        corked, self._corked = self._corked, None
        for conn, direct in corked or ():
            try:
                direct.uncork()
            except Exception:  # this connection only: it takes the ASGI path
                log.exception("websocket direct write failed; falling back to the ASGI path")
                conn.disable_direct()

    def _end_burst(self) -> None:
        self._burst = False
        if not self._depth:
            self._uncork()

    def _start_burst(self) -> None:
        """``bursts``: the first event of a loop iteration that is written to anyone goes at
        once; the ones after it in the same iteration (a requote publishes ~36 quote events in
        one step) are held and written together when the iteration ends, or earlier when the
        publisher marks the end of its burst (:meth:`jaxmm.events.EventBroadcaster.burst`): one
        send per subscriber for the rest of the burst instead of one per event, and an event on
        its own is never held."""
        try:
            asyncio.get_running_loop().call_soon(self._end_burst)
        except RuntimeError:  # published outside a running loop: nothing to wait for
            return
        self._burst = True

    def _sync(self) -> None:
        self._live, self._queued = tuple(self.live), tuple(self.queued)
        marks = self.bursts and hasattr(self.bus, "on_burst_end")  # the publisher's bursts
        if (self.live or self.queued) and not self._registered:
            self._seen = self.bus.last_seq
            self.bus.add_callback(self.on_event)
            if marks:
                self.bus.on_burst_end(self._end_burst)  # held frames go when it ends
            self._registered = True
        elif not (self.live or self.queued) and self._registered:
            self.bus.remove_callback(self.on_event)
            if marks:
                self.bus.remove_burst_end(self._end_burst)
            self._registered = False

    def set_queued(self, conn: _Connection) -> None:
        self.live.pop(conn, None)
        self.queued[conn] = None
        self._sync()

    def set_live(self, conn: _Connection) -> None:
        self.queued.pop(conn, None)
        self.live[conn] = None
        self._sync()

    def remove(self, conn: _Connection) -> None:
        if conn in self.live or conn in self.queued:
            self.live.pop(conn, None)
            self.queued.pop(conn, None)
            self._sync()

    def on_event(self, event: EventBase) -> None:
        """Broadcaster callback: write ``event`` to every live connection whose filter takes
        it, then let the queued connections drain. Never raises into ``publish``."""
        seq = event.seq
        if self._seen and seq != self._seen + 1:
            for conn in self._live:  # a hole in the stream: nobody may silently miss events
                conn._cut_off()
        self._seen = seq
        if self._burst and self._corked is None:  # an event already went out this iteration
            self._corked = []
        etype = event.type  # type: ignore[attr-defined]
        inst = event.instrument
        wire = b""
        for conn in self._live:  # the hot loop: inline filter, one write
            types = conn.types
            if types is not None and etype not in types:
                continue
            insts = conn.instruments
            if insts is not None and inst not in insts:
                continue
            if not wire:
                wire = event_wire(event)
                if self.bursts and self._corked is None:  # the first written this iteration
                    self._start_burst()
            direct = conn.direct
            try:
                if not direct.usable():  # type: ignore[union-attr]
                    self.remove(conn)  # closing: the receiver ends the stream
                    continue
                if self._corked is not None and direct.corked is None:  # type: ignore[union-attr]
                    direct.cork()  # type: ignore[union-attr]
                    self._corked.append((conn, direct))  # type: ignore[arg-type]
                if not direct.write(wire):  # type: ignore[union-attr]
                    conn._cut_off()  # write-buffer bound reached: too slow
                    continue
            except Exception:  # never into the publisher: fall back to the ASGI path
                log.exception("websocket direct write failed; falling back to the ASGI path")
                conn.disable_direct()
                continue
            conn.cursor = conn.sent_seq = seq
        for conn in self._queued:
            conn._on_event(event)


def coalesced(app: Any) -> contextlib.AbstractContextManager:
    """:meth:`_Fanout.coalesce` of ``app``'s stream, or a no-op before its first direct-path
    connection."""
    fan = getattr(app.state, "ws_fanout", None)
    return fan.coalesce() if fan is not None else contextlib.nullcontext()


def _fanout(app: Any, bus: Any) -> _Fanout:
    """The app's :class:`_Fanout` for ``bus`` (created on first use)."""
    fan = getattr(app.state, "ws_fanout", None)
    if fan is None or fan.bus is not bus:
        fan = _Fanout(bus, bursts=bool(_setting(app, "ws_coalesce_bursts", True)))
        app.state.ws_fanout = fan
    return fan


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
        self.direct: _DirectWriter | None = None  # the direct write path, when available
        self.fanout: _Fanout | None = None
        self.live = False  # written by the fan-out inside publish; self.sub is None then
        self.hold = False  # a filter change awaits its acknowledgement: no direct writes

    # -- direct write path ----------------------------------------------------------------------

    def enable_direct(self, proto: Any, fanout: _Fanout) -> None:
        self.direct = _DirectWriter(proto, self.queue_size)
        self.fanout = fanout
        fanout.set_queued(self)

    def disable_direct(self) -> None:
        """Leave the direct path for the ASGI path: a live connection gets a subscription again
        from its cursor (replaying anything not written), or is cut off if the history no longer
        reaches back."""
        if self.direct is None:
            return
        self.direct = None
        if self.fanout is not None:
            self.fanout.remove(self)
        if self.live:
            self.live = False
            try:
                self.sub = self.bus.subscribe(
                    types=self.types,
                    instruments=self.instruments,
                    from_seq=self.cursor,
                    queue_size=self.queue_size,
                )
            except SnapshotRequired:
                self.lagged = True
        self.changed.set()

    def _go_live(self) -> None:
        """Hand this caught-up connection to the fan-out (its subscription is dropped)."""
        sub = self.sub
        if sub is not None:
            self.sub = None
            sub.close()
        self.live = True
        self.fanout.set_live(self)  # type: ignore[union-attr]

    def _leave_live(self) -> None:
        if self.live:
            self.live = False
            self.fanout.set_queued(self)  # type: ignore[union-attr]

    def _on_event(self, event: EventBase) -> None:
        """Fan-out callback for a queued connection (inside ``publish``, after the
        subscriptions were offered the event): write what the subscription holds, unless the
        sender task must do it."""
        sub = self.sub
        if sub is None or self.lagged or not sub.qsize():
            return
        if self.hold or self.sending:
            self.changed.set()
            return
        try:
            self.flush()
        except Exception:  # never into the publisher: fall back to the ASGI path
            log.exception("websocket direct write failed; falling back to the ASGI path")
            self.disable_direct()

    def flush(self) -> None:
        """Write every event queued on the current subscription straight to the transport."""
        sub, direct = self.sub, self.direct
        if sub is None or direct is None:
            return
        if not direct.usable():  # closing: the receiver ends the stream
            self.disable_direct()
            return
        while True:
            try:
                event = sub.get_nowait()
            except SubscriberLagged:
                self._cut_off()
                return
            if event is None:
                if not (self.hold or self.sending or self.lagged):
                    self._go_live()  # caught up: the fan-out writes from the next event on
                return
            self.cursor = event.seq
            if not direct.write(event_wire(event)):
                self._cut_off()
                return
            self.sent_seq = event.seq
            if sub.lagged:
                self._cut_off()
                return

    def _cut_off(self) -> None:
        self.lagged = True
        if self.live:
            self.live = False
            self.fanout.remove(self)  # type: ignore[union-attr]
        if self.sub is not None:
            self.sub.close()  # dropped from the broadcaster now, as an overflow would
        self.changed.set()  # the sender task ends the stream (lagged frame, close 4008)

    def last_delivered(self) -> int:
        """A sequence number N such that every matching event <= N was sent."""
        sub = self.sub
        if sub is None:  # live (every matching event was written in publish) or unsubscribed
            return self.bus.last_seq
        if (
            not self.sending
            and sub.qsize() == 0
            and not sub.lagged
            and self.cursor == self.sent_seq
        ):
            return self.bus.last_seq  # nothing matching is queued: the stream is caught up
        return self.sent_seq

    @property
    def subscribed(self) -> bool:
        """Whether some events reach this connection (a subscription or the live fan-out)."""
        return self.sub is not None or self.live

    # -- sending ------------------------------------------------------------------------------

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(obj, separators=(",", ":")))

    async def sender(self) -> None:
        while True:
            if self.lagged:  # cut off (also when leaving the direct path found no history)
                return
            if self.direct is not None:
                if not self.lagged and not self.hold:
                    self.flush()
                if self.lagged:
                    return
                if self.direct is not None:
                    self.changed.clear()
                    await self.changed.wait()
                    continue
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
        was_live = self.live
        if (types is not None and not types) or (instruments is not None and not instruments):
            new = None
        else:
            new = self.bus.subscribe(
                types=types, instruments=instruments, from_seq=start, queue_size=self.queue_size
            )  # may raise SnapshotRequired / ValueError: nothing changed then
        if was_live:
            self._leave_live()
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
            if self.subscribed and from_seq is None:  # widen the current filter
                types = _union(self.types, types, given="types" in msg["keys"])
                instruments = _union(
                    self.instruments, instruments, given="instruments" in msg["keys"]
                )
            elif from_seq is None:
                self.cursor = self.sent_seq = self.bus.last_seq  # a new live subscription
        else:
            if not self.subscribed:
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
            self.hold = True
        except SnapshotRequired as exc:
            await self.send_json(
                {"type": "snapshot_required", "oldest": exc.oldest, "last": exc.last}
            )
            return
        except ValueError as exc:
            await self.send_json({"type": "error", "field": "from_seq", "message": str(exc)})
            return
        try:
            await self.send_json(
                self._state("subscribed" if msg["op"] == "subscribe" else "unsubscribed")
            )
        finally:
            self.hold = False
            self.changed.set()

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
        if self.fanout is not None:
            self.fanout.remove(self)
        self.direct, self.live = None, False
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
    if _setting(app, "ws_direct", True):
        proto = _sansio_protocol(websocket)
        if proto is not None:
            conn.enable_direct(proto, _fanout(app, bus))
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
