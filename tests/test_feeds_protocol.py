"""jaxmm.feeds protocol: event constructors validate and normalise, runtime protocol check,
merge() ordering and error propagation."""

import asyncio
import math

import numpy as np
import pytest

from jaxmm.feeds import (
    MarketDataFeed,
    ReconnectingFeed,
    SimulatedFeed,
    SimulatedMarket,
    SurfaceUpdate,
    TradePrint,
    UnderlyingModel,
    UnderlyingPrice,
    WebSocketFeed,
    merge,
)


def run(coro, timeout=10.0):
    async def guarded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(guarded())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"underlying": ""}, "underlying: must be a non-empty string"),
        ({"underlying": 3}, "underlying: must be a non-empty string"),
        ({"price": 0.0}, r"price: must be > 0"),
        ({"price": -1.0}, r"price: must be > 0"),
        ({"price": math.nan}, "price: must be finite"),
        ({"price": math.inf}, "price: must be finite"),
        ({"price": "x"}, "price: must be a number"),
        ({"price": True}, "price: must be a number"),
        ({"exchange_ts_ns": -1}, "exchange_ts_ns: must be >= 0"),
        ({"exchange_ts_ns": 1.5}, "exchange_ts_ns: must be an integer"),
        ({"local_ts_ns": None}, "local_ts_ns: must be an integer"),
    ],
)
def test_underlying_price_rejects(kwargs, match):
    args = {"underlying": "BTC", "price": 100.0, "exchange_ts_ns": 1, "local_ts_ns": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        UnderlyingPrice(**args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"symbol": ""}, "symbol: must be a non-empty string"),
        ({"price": 0.0}, r"price: must be > 0"),
        ({"quantity": 0.0}, r"quantity: must be > 0"),
        ({"quantity": math.nan}, "quantity: must be finite"),
        ({"aggressor": "BUY"}, "aggressor: must be 'buy' or 'sell'"),
        ({"local_ts_ns": -5}, "local_ts_ns: must be >= 0"),
    ],
)
def test_trade_print_rejects(kwargs, match):
    args = {
        "symbol": "BTC-0030D-100-C",
        "price": 4.2,
        "quantity": 1.0,
        "aggressor": "sell",
        "exchange_ts_ns": 1,
        "local_ts_ns": 2,
    } | kwargs
    with pytest.raises(ValueError, match=match):
        TradePrint(**args)


_SURF = {
    "underlying": "SPX",
    "expiries": (0.1, 0.5),
    "strikes": (90.0, 100.0, 110.0),
    "vols": ((0.25, 0.2, 0.18), (0.24, 0.21, 0.19)),
    "forward": 100.0,
    "exchange_ts_ns": 0,
    "local_ts_ns": 0,
}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"expiries": ()}, "expiries: must have at least 1 element"),
        ({"expiries": (0.5, 0.1)}, "expiries: must be strictly increasing"),
        ({"expiries": (0.1, 0.1)}, "expiries: must be strictly increasing"),
        ({"expiries": (0.0, 0.1)}, r"expiries\[0\]: must be > 0"),
        ({"strikes": (90.0, 110.0, 100.0)}, "strikes: must be strictly increasing"),
        ({"strikes": (90.0, math.nan, 110.0)}, r"strikes\[1\]: must be finite"),
        ({"strikes": "abc"}, "strikes: must be a sequence"),
        ({"vols": ((0.25, 0.2, 0.18),)}, r"vols: must have len\(expiries\) = 2 rows, got 1"),
        ({"vols": ((0.25, 0.2), (0.2, 0.2))}, r"vols\[0\]: must have len\(strikes\) = 3"),
        ({"vols": ((0.25, 0.2, 0.18), (0.2, 0.0, 0.2))}, r"vols\[1\]\[1\]: must be > 0"),
        ({"vols": ((0.25, 0.2, math.inf), (0.2, 0.2, 0.2))}, r"vols\[0\]\[2\]: must be finite"),
        ({"vols": 0.2}, "vols: must be a sequence of rows"),
        ({"forward": 0.0}, r"forward: must be > 0"),
        ({"underlying": ""}, "underlying: must be a non-empty string"),
    ],
)
def test_surface_update_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SurfaceUpdate(**(_SURF | kwargs))


def test_surface_update_normalises_sequences_to_float_tuples():
    a = SurfaceUpdate(**_SURF)
    b = SurfaceUpdate(
        **(
            _SURF
            | {
                "expiries": np.array([0.1, 0.5]),
                "strikes": [90, 100, 110],
                "vols": np.array(_SURF["vols"]),
                "exchange_ts_ns": np.int64(0),
            }
        )
    )
    assert a == b and hash(a) == hash(b)
    assert type(b.strikes) is tuple and all(type(k) is float for k in b.strikes)
    assert type(b.vols[1]) is tuple and type(b.vols[1][2]) is float
    assert type(b.exchange_ts_ns) is int


def test_events_are_frozen_and_slotted():
    p = UnderlyingPrice("BTC", 1.0, 0, 0)
    with pytest.raises(AttributeError):
        p.price = 2.0  # type: ignore[misc]
    assert not hasattr(p, "__dict__")


def test_runtime_protocol_check():
    market = SimulatedMarket({"A": UnderlyingModel(100.0, 0.2)}, dt=1e-4, seed=0)

    async def connect():  # pragma: no cover - never called
        raise AssertionError

    assert isinstance(SimulatedFeed(market, n_steps=1), MarketDataFeed)
    assert isinstance(WebSocketFeed("ws://127.0.0.1:1"), MarketDataFeed)
    assert isinstance(ReconnectingFeed(connect), MarketDataFeed)
    assert not isinstance(market, MarketDataFeed)


class _ListFeed:
    """Three in-memory streams; ``fail`` raises after a stream's events."""

    def __init__(self, prices, trades, surfaces, fail=None, suspend=True):
        self._p, self._t, self._s, self.fail = prices, trades, surfaces, fail
        self.suspend = suspend

    async def _gen(self, events, name):
        for e in events:
            if self.suspend:
                await asyncio.sleep(0)
            yield e
        if self.fail == name:
            raise RuntimeError(f"{name} broke")

    def prices(self):
        return self._gen(self._p, "prices")

    def trades(self):
        return self._gen(self._t, "trades")

    def surfaces(self):
        return self._gen(self._s, "surfaces")

    async def close(self):
        pass


def _p(ts):
    return UnderlyingPrice("A", 1.0 + ts, ts, ts)


def _t(ts):
    return TradePrint("A", 1.0, 1.0, "buy", ts, ts)


def _s(ts):
    return SurfaceUpdate("A", (1.0,), (1.0,), ((0.2,),), 1.0, ts, ts)


def test_merge_orders_buffered_events_by_local_ts_with_kind_tiebreak():
    # streams that never suspend: everything is buffered before the first event is released
    feed = _ListFeed([_p(1), _p(5), _p(9)], [_t(5), _t(7)], [_s(0), _s(5)], suspend=False)

    async def go():
        return [e async for e in merge(feed)]

    out = run(go())
    assert [e.local_ts_ns for e in out] == [0, 1, 5, 5, 5, 7, 9]
    assert [type(e) for e in out[2:5]] == [UnderlyingPrice, TradePrint, SurfaceUpdate]


def test_merge_raises_a_stream_error_after_the_events_before_it():
    feed = _ListFeed([_p(1), _p(2)], [], [], fail="prices")

    async def go():
        got = []
        with pytest.raises(RuntimeError, match="prices broke"):
            async for e in merge(feed):
                got.append(e.local_ts_ns)
        return got

    assert run(go()) == [1, 2]


def test_merge_bounded_buffer_and_validation():
    feed = _ListFeed([_p(i) for i in range(50)], [_t(i) for i in range(50)], [])

    async def go():
        return [e async for e in merge(feed, buffer=1)]

    out = run(go())
    assert len(out) == 100
    prices = [e.local_ts_ns for e in out if isinstance(e, UnderlyingPrice)]
    trades = [e.local_ts_ns for e in out if isinstance(e, TradePrint)]
    assert prices == list(range(50)) and trades == list(range(50))
    with pytest.raises(ValueError, match="buffer: must be an integer >= 1"):
        run(merge(feed, buffer=0).__anext__())
