"""``jaxmm._live.run_live``: the one live wiring of ``jaxmm serve`` and ``make demo``, in process.

References are independent of the code under test: the taker flows are checked against the
numbers written in the test's config (``fill_k`` per underlying) and the documented rate
conversion (per second x 365 x 86400 = per year, ACT/365F); stored fills are counted with the
standard library's ``sqlite3``; the token is decoded with PyJWT; the health page is fetched
with httpx over real TCP. The SIGINT path of the real command is in tests/test_cli_serve.py.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import threading

import httpx
import jwt
import pytest

from jaxmm._live import LiveSession, bind_socket, run_live
from jaxmm.api import ApiSettings
from jaxmm.engine import MarketMakerConfig, UnderlyingConfig
from jaxmm.execution import LatencyTracker

SECRET = "live-test-secret-" + "q" * 32
STRIKES = [90.0, 95.0, 100.0, 105.0, 110.0]


def two_underlyings() -> MarketMakerConfig:
    """Two underlyings with their own ``fill_k`` (5.0 and 0.8) over a global 2.0."""
    return MarketMakerConfig(
        underlyings=[
            UnderlyingConfig(symbol="XYZ", spot=100.0, vol=0.5, strikes=STRIKES,
                             expiries=[30 / 365], hedge_band=5.0, quote={"fill_k": 5.0}),
            UnderlyingConfig(symbol="ABC", spot=50.0, vol=0.3, strikes=[45.0, 50.0, 55.0],
                             expiries=[30 / 365], hedge_band=5.0, quote={"fill_k": 0.8}),
        ],
        quote={"fill_k": 2.0},
    )  # fmt: skip


def test_taker_flow_per_underlying_store_flushed_and_deadline(tmp_path):
    async def main():
        from jaxmm.store import Store

        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'live.db'}", migrate=True)
        try:
            return await run_live(two_underlyings(), seconds=2.0, seed=3, store=store)
        finally:
            await store.close()

    before = signal.getsignal(signal.SIGINT)
    s = asyncio.run(main())
    # each underlying's takers decay with ITS fill_k (5.0, 0.8), not the first one's or the
    # global one; 0.2 arrivals / s / side / book at zero distance, in per-year units
    assert set(s.traders.flow) == {"XYZ", "ABC"}
    assert s.traders.flow["XYZ"].k == 5.0 and s.traders.flow["ABC"].k == 0.8
    for f in s.traders.flow.values():
        assert f.intensity == pytest.approx(0.2 * 365 * 86_400, rel=1e-15)
    assert s.stop_reason == "deadline" and not s.interrupted and s.seconds_run >= 2.0
    assert s.server is None and s.url is None and s.token is None
    st = s.engine.stats()
    assert st["ticks"] > 0 and s.traders.n_steps > 0
    # engine stopped: no quote left resting, every counted fill committed and acknowledged
    assert all(q["bid_size"] == 0 and q["ask_size"] == 0 for q in s.engine.quotes())
    with sqlite3.connect(tmp_path / "live.db") as con:
        ids = [r[0] for r in con.execute("SELECT trade_id FROM fills")]
    assert len(ids) == st["fills"] + st["hedge_fills"] == st["fills_acked"]
    assert sorted(ids) == sorted(s.engine.acked_trade_ids)
    assert signal.getsignal(signal.SIGINT) is before  # its handlers are removed


def test_served_session_stopped_from_another_thread(tmp_path):
    """Server on a free port, token minted, hooks called; ``stop()`` from another thread ends
    the run cleanly; uvicorn never takes over SIGINT while serving."""
    seen: dict = {"ready": 0, "samples": []}
    errors: list[BaseException] = []
    settings = ApiSettings(jwt_secret=SECRET)

    def client(s: LiveSession) -> None:
        try:
            r = httpx.get(f"{s.base_url}api/v1/health", timeout=20)
            seen["health"] = r.json()
            seen["page"] = httpx.get(s.base_url, timeout=20).status_code
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            s.stop()

    def on_ready(s: LiveSession) -> None:
        seen["ready"] += 1
        seen["sigint"] = signal.getsignal(signal.SIGINT)
        threading.Thread(target=client, args=(s,), daemon=True).start()

    def on_sample(s: LiveSession, t: float) -> None:
        seen["samples"].append(t)

    s = asyncio.run(
        run_live(
            two_underlyings(), seconds=120.0, seed=1, settings=settings, port=0,
            on_ready=on_ready, on_sample=on_sample, sample_every=0.05, token_subject="tester",
        )
    )  # fmt: skip
    assert not errors, errors
    assert seen["ready"] == 1 and s.started.is_set()
    assert seen["health"]["status"] == "ok" and seen["health"]["auth"] == "enabled"
    assert seen["page"] == 200  # the console page
    assert seen["sigint"] is not s.server.handle_exit  # uvicorn's capture is off
    assert s.stop_reason == "stop()" and s.interrupted and s.seconds_run < 120.0
    ts = seen["samples"]
    assert 0.0 <= ts[0] < 0.05 and all(a < b for a, b in zip(ts, ts[1:], strict=False))
    assert s.url == f"{s.base_url}?token={s.token}"
    claims = jwt.decode(s.token, SECRET, algorithms=["HS256"], issuer="jaxmm")
    assert claims["sub"] == "tester" and set(claims["scope"].split()) == {"read", "trade", "admin"}
    assert claims["exp"] - claims["iat"] == pytest.approx(min(120.0 + 3600.0, 86_400), abs=1)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", s.port), timeout=2):
        pass  # the server is down and its socket closed


def test_taken_port_fails_before_anything_is_built_unless_fallback():
    holder, _ = bind_socket("127.0.0.1", 0)
    try:
        taken = holder.getsockname()[1]
        s = LiveSession()
        before = signal.getsignal(signal.SIGINT)
        with pytest.raises(OSError):
            asyncio.run(
                run_live(two_underlyings(), seconds=1.0, settings=ApiSettings(auth_disabled=True),
                         port=taken, session=s)
            )  # fmt: skip
        assert s.engine is None and s.market is None  # nothing built
        assert signal.getsignal(signal.SIGINT) is before
        with pytest.raises(OSError):
            bind_socket("127.0.0.1", taken, fallback=False)
        sock, moved = bind_socket("127.0.0.1", taken)
        assert moved and sock.getsockname()[1] not in (taken, 0)
        sock.close()
    finally:
        holder.close()


def test_connections_accepted_on_the_bound_socket_have_nagle_off():
    """The server's socket must let asyncio switch Nagle off on every accepted connection
    (it does so only for sockets whose proto is TCP): with Nagle on, a response written in two
    parts waits for the client's delayed ACK, ~40 ms per REST request on loopback."""

    async def main():
        sock, _ = bind_socket("127.0.0.1", 0)
        assert sock.proto == socket.IPPROTO_TCP
        accepted: list[int] = []

        async def handle(reader, writer):
            s = writer.get_extra_info("socket")
            accepted.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        try:
            _, w = await asyncio.open_connection(*sock.getsockname()[:2])
            async with asyncio.timeout(30):
                while not accepted:
                    await asyncio.sleep(0.01)
            w.close()
        finally:
            server.close()
            await server.wait_closed()
        return accepted

    assert asyncio.run(main()) == [1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seconds": 0.0}, r"seconds: must be None or finite and > 0, got 0.0"),
        ({"seconds": float("inf")}, "seconds: must be None or finite"),
        ({"seconds": 1.0, "port": 70_000}, r"port: must be an int in \[0, 65535\], got 70000"),
        ({"seconds": 1.0, "seed": -1}, "seed: must be an int >= 0, got -1"),
        ({"seconds": 1.0, "steps_per_second": 0}, "steps_per_second: must be an int >= 1"),
        ({"seconds": 1.0, "surface_every": 0}, "surface_every: must be an int >= 1"),
        ({"seconds": 1.0, "taker_intensity": -0.1}, "taker_intensity: must be finite and >= 0"),
        ({"seconds": 1.0, "sample_every": 0.0}, "sample_every: must be finite and > 0"),
    ],
)
def test_bad_arguments_name_the_field_and_start_nothing(kwargs, message):
    s = LiveSession()
    with pytest.raises(ValueError, match=message):
        asyncio.run(run_live(two_underlyings(), session=s, **kwargs))
    assert s.engine is None and s.loop is None
    with pytest.raises(ValueError, match="config: expected a MarketMakerConfig, got dict"):
        asyncio.run(run_live({}, seconds=1.0))


def test_stop_before_the_run_ends_it_as_soon_as_it_is_ready():
    s = LiveSession()
    s.stop()
    asyncio.run(run_live(two_underlyings(), seconds=60.0, session=s))
    assert s.stop_reason == "stop()" and s.interrupted and s.seconds_run < 60.0
    assert s.engine.stats()["fills"] == 0  # the market never ran long enough to trade


def test_latency_samples_are_the_window_the_percentiles_describe():
    now = [0]
    t = LatencyTracker(window=3, max_age_ns=100, clock=lambda: now[0])
    assert t.samples("refresh") == []
    for i, ns in enumerate((50, 10, 40, 20)):
        t.record("refresh", ns, at_ns=10 * i)
    assert t.samples("refresh") == [10, 40, 20]  # window of 3, oldest first
    got = t.samples("refresh")
    got.append(999)  # a copy: the tracker keeps its own
    assert t.samples("refresh") == [10, 40, 20]
    now[0] = 115  # the sample stamped 10 is now 105 ns old (> 100): out
    assert t.samples("refresh") == [40, 20] and t.stats("refresh").count == 2
