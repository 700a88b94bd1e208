"""jaxmm.feeds.SimulatedFeed: reproducible stream, prices equal the market's own steps, the
surface is the market's TRUE smile (and the closed form sigma = max(level + skew ln(K/F),
floor) of jaxmm.feeds._sim), surface cadence, timestamps, lock-step concurrent reading."""

import asyncio
import math

import pytest

from jaxmm.feeds import (
    SimulatedFeed,
    SimulatedMarket,
    SmileModel,
    SurfaceUpdate,
    TradePrint,
    UnderlyingModel,
    UnderlyingPrice,
    merge,
)
from jaxmm.feeds._simfeed import DEFAULT_EXPIRIES, DEFAULT_MONEYNESS

DT = 1.0 / (365 * 24 * 3600)  # one second in years


def run(coro, timeout=10.0):
    async def guarded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(guarded())


def make_market(seed=11):
    und = {
        "BTC": UnderlyingModel(100.0, 0.6, "jump", jump_intensity=2e3, jump_std=0.02),
        "SPX": UnderlyingModel(5000.0, 0.15),
        "ETH": UnderlyingModel(50.0, 0.8),  # no smile: prices only
    }
    smiles = {
        "BTC": SmileModel(0.6, -0.3, level_vol=0.5, skew_vol=0.3),
        "SPX": SmileModel(0.15, -0.5, level_vol=0.2, skew_vol=0.1),
    }
    return SimulatedMarket(und, dt=DT, seed=seed, smiles=smiles)


def make_feed(seed=11, n_steps=20, **kw):
    kw = {
        "surface_every": 3,
        "strikes_by_underlying": {"SPX": [4500.0, 5000.0, 5500.0]},
        "expiries_by_underlying": {"SPX": [0.1, 0.5]},
        "start_ns": 1_700_000_000_000_000_000,
        "latency_ns": 250_000,
    } | kw
    return SimulatedFeed(make_market(seed), n_steps=n_steps, **kw)


async def collect(feed):
    return [e async for e in merge(feed)]


def test_same_seed_same_stream_other_seed_other_stream():
    a, b, c = run(collect(make_feed(11))), run(collect(make_feed(11))), run(collect(make_feed(12)))
    assert a == b
    assert a != c
    assert len(a) == 20 * 3 + 7 * 2  # 3 prices per step, 2 surfaces on steps 1, 4, ..., 19


def test_prices_equal_the_market_stepped_directly():
    events = run(collect(make_feed(5)))
    twin = make_market(5)
    expected = []
    for _ in range(20):
        expected.extend((t.underlying, t.price) for t in twin.step())
    got = [(e.underlying, e.price) for e in events if isinstance(e, UnderlyingPrice)]
    assert got == expected


def test_surface_is_the_true_smile_on_the_grid():
    feed = make_feed(7, n_steps=10, surface_every=1)

    async def go():
        twin = make_market(7)
        checked = 0
        async for s in feed.surfaces():
            while twin.n < feed.steps_done:
                twin.step()
            spot = twin.prices[s.underlying]
            level, skew = twin.smile_state[s.underlying]
            floor = twin.smiles[s.underlying].vol_floor
            assert s.forward == spot
            for i, t in enumerate(s.expiries):
                via_market = twin.implied_vol(s.underlying, list(s.strikes), t).tolist()
                assert list(s.vols[i]) == via_market
                closed_form = [max(level + skew * math.log(k / spot), floor) for k in s.strikes]
                assert list(s.vols[i]) == pytest.approx(closed_form, rel=1e-14, abs=0)
            checked += 1
        return checked

    assert run(go()) == 20  # BTC and SPX at each of 10 steps


def test_grids_default_and_given():
    feed = make_feed()
    assert feed.grids["SPX"] == ((4500.0, 5000.0, 5500.0), (0.1, 0.5))
    strikes, expiries = feed.grids["BTC"]
    assert strikes == tuple(m * 100.0 for m in DEFAULT_MONEYNESS)
    assert expiries == DEFAULT_EXPIRIES == (7 / 365, 30 / 365, 91 / 365)
    assert "ETH" not in feed.grids


def test_surface_cadence_and_timestamps():
    feed = make_feed(n_steps=10, surface_every=4)
    events = run(collect(feed))
    start, lat = 1_700_000_000_000_000_000, 250_000
    ns_per_year = 365 * 86400 * 10**9
    step_of = {start + round(n * DT * ns_per_year): n for n in range(1, 11)}
    surface_steps = sorted(
        {step_of[e.exchange_ts_ns] for e in events if isinstance(e, SurfaceUpdate)}
    )
    assert surface_steps == [1, 5, 9]
    assert all(e.local_ts_ns == e.exchange_ts_ns + lat for e in events)
    ts = [e.local_ts_ns for e in events]
    assert ts == sorted(ts)
    # per step: the prices come first, then the surfaces
    first_step = [type(e) for e in events if step_of[e.exchange_ts_ns] == 1]
    assert first_step == [UnderlyingPrice] * 3 + [SurfaceUpdate] * 2


def test_concurrent_readers_see_the_merged_stream():
    direct = run(collect(make_feed(3)))
    feed = make_feed(3)

    async def read(stream):
        return [e async for e in stream]

    async def go():
        streams = feed.prices(), feed.trades(), feed.surfaces()
        return await asyncio.gather(*(read(s) for s in streams))

    prices, trades, surfaces = run(go())
    assert trades == []
    assert prices == [e for e in direct if isinstance(e, UnderlyingPrice)]
    assert surfaces == [e for e in direct if isinstance(e, SurfaceUpdate)]
    assert not any(isinstance(e, TradePrint) for e in direct)


def test_a_reader_holds_the_simulation_back():
    feed = make_feed(n_steps=None)

    async def go():
        it = feed.prices()
        first = [await it.__anext__() for _ in range(3)]  # one step: three underlyings
        assert feed.steps_done == 1
        await asyncio.sleep(0.01)  # nobody reads: the market does not run ahead
        assert feed.steps_done == 1
        await it.__anext__()
        assert feed.steps_done == 2
        return first

    assert [p.underlying for p in run(go())] == ["BTC", "SPX", "ETH"]


def test_an_abandoned_stream_does_not_stall_the_others():
    feed = make_feed(n_steps=4)

    async def go():
        surfaces = feed.surfaces()
        await surfaces.__anext__()  # opened, read once, then dropped without aclose
        del surfaces
        return [p async for p in feed.prices()]

    assert len(run(go())) == 4 * 3 - 3  # the first step's prices went before prices() opened


def test_close_ends_an_unbounded_feed():
    feed = make_feed(n_steps=None)

    async def go():
        n = 0
        async for _ in feed.prices():
            n += 1
            if n == 7:
                await feed.close()
        return n

    assert run(go()) == 9  # the rest of the step already taken by the stream is delivered
    assert feed.done


def test_zero_steps_and_pause():
    assert run(collect(make_feed(n_steps=0))) == []
    events = run(collect(make_feed(n_steps=2, pause=0.001)))
    assert len(events) == 2 * 3 + 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_steps": -1}, "n_steps: must be >= 0"),
        ({"n_steps": 2.5}, "n_steps: must be an integer"),
        ({"pause": -0.1}, "pause: must be finite and >= 0"),
        ({"pause": math.nan}, "pause: must be finite and >= 0"),
        ({"surface_every": 0}, "surface_every: must be >= 1"),
        ({"start_ns": -1}, "start_ns: must be >= 0"),
        ({"latency_ns": -1}, "latency_ns: must be >= 0"),
        ({"strikes_by_underlying": {"XRP": [1.0]}}, "strikes_by_underlying: unknown underlying"),
        ({"expiries_by_underlying": {"ETH": [0.1]}}, "expiries_by_underlying: underlying 'ETH'"),
        (
            {"strikes_by_underlying": {"BTC": [100.0, 90.0]}},
            r"strikes_by_underlying\['BTC'\]: must be strictly increasing",
        ),
        (
            {"expiries_by_underlying": {"BTC": [0.0, 0.1]}},
            r"expiries_by_underlying\['BTC'\]\[0\]: must be finite and > 0",
        ),
        ({"expiries_by_underlying": {"BTC": []}}, "must have at least 1 element"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_feed(**kwargs)


def test_rejects_a_non_market():
    with pytest.raises(ValueError, match="market: must be a SimulatedMarket"):
        SimulatedFeed(object(), n_steps=1)  # type: ignore[arg-type]


def test_streams_opened_by_tasks_started_together_all_see_the_first_step():
    # the engine loop's pattern: one task per stream, each opening its stream in its body
    direct = run(collect(make_feed(9, n_steps=5)))
    feed = make_feed(9, n_steps=5)

    async def read(open_stream):
        return [e async for e in open_stream()]

    async def go():
        ts = asyncio.create_task(read(feed.surfaces))
        tp = asyncio.create_task(read(feed.prices))
        return await ts, await tp

    surfaces, prices = run(go())
    assert prices == [e for e in direct if isinstance(e, UnderlyingPrice)]
    assert surfaces == [e for e in direct if isinstance(e, SurfaceUpdate)]
