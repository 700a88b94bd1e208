"""jaxmm.feeds reconnect: Backoff delays against the stated formula, ReconnectingFeed over
in-memory flaky feeds with an injected sleep (no real waiting)."""

import asyncio
import math

import pytest

from jaxmm.feeds import Backoff, ReconnectFailed, ReconnectingFeed, UnderlyingPrice


def run(coro, timeout=10.0):
    async def guarded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(guarded())


def test_backoff_without_jitter_is_geometric_and_capped():
    b = Backoff(initial=0.1, factor=3.0, max_delay=2.0, jitter=0.0)
    got = [b.next_delay() for _ in range(6)]
    # 0.1 * 3**(n-1): 0.1, 0.3, 0.9, 2.7 -> capped at 2.0
    assert got == pytest.approx([0.1, 0.3, 0.9, 2.0, 2.0, 2.0], rel=1e-15)
    assert b.attempt == 6
    b.reset()
    assert b.attempt == 0 and b.next_delay() == 0.1


def test_backoff_long_outage_does_not_overflow():
    b = Backoff(initial=1e-3, factor=10.0, max_delay=5.0, jitter=0.0)
    assert b.base_delay(10_000) == 5.0
    assert Backoff(initial=0.5, factor=1.0, max_delay=0.5, jitter=0.0).base_delay(7) == 0.5


def test_backoff_jitter_is_bounded_and_seeded():
    a = Backoff(initial=1.0, factor=1.0, max_delay=1.0, jitter=0.25, seed=3)
    b = Backoff(initial=1.0, factor=1.0, max_delay=1.0, jitter=0.25, seed=3)
    da = [a.next_delay() for _ in range(200)]
    db = [b.next_delay() for _ in range(200)]
    assert da == db
    assert all(0.75 <= d <= 1.25 for d in da)
    assert min(da) < 0.8 and max(da) > 1.2  # the spread is used, not just bounded
    assert len(set(da)) == 200


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": 0.0}, "initial: must be finite and > 0"),
        ({"initial": math.inf}, "initial: must be finite and > 0"),
        ({"factor": 0.5}, "factor: must be finite and >= 1"),
        ({"max_delay": 0.05}, r"max_delay: must be finite and >= initial"),
        ({"jitter": -0.1}, r"jitter: must be in \[0, 1\)"),
        ({"jitter": 1.0}, r"jitter: must be in \[0, 1\)"),
        ({"max_attempts": 0}, "max_attempts: must be an integer >= 1 or None"),
        ({"max_attempts": 2.0}, "max_attempts: must be an integer >= 1 or None"),
    ],
)
def test_backoff_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Backoff(**kwargs)


class Script:
    """connect() factory: connection i delivers prices[i] then raises errors[i] (or ends)."""

    def __init__(self, prices, errors, connect_errors=()):
        self.prices, self.errors = prices, errors
        self.connect_errors = list(connect_errors)
        self.opened = 0
        self.closed = 0

    async def __call__(self):
        if self.connect_errors:
            raise self.connect_errors.pop(0)
        i = self.opened
        self.opened += 1
        return _Conn(self, i)


class _Conn:
    def __init__(self, script, i):
        self.script, self.i = script, i

    async def _prices(self):
        for x in self.script.prices[self.i]:
            await asyncio.sleep(0)
            yield UnderlyingPrice("A", x, 0, 0)
        err = self.script.errors[self.i]
        if err is not None:
            raise err

    async def _none(self):
        return
        yield

    def prices(self):
        return self._prices()

    def trades(self):
        return self._none()

    def surfaces(self):
        return self._none()

    async def close(self):
        self.script.closed += 1


class Sleeps:
    def __init__(self):
        self.waited = []

    async def __call__(self, s):
        self.waited.append(s)


async def prices_of(feed):
    return [p.price async for p in feed.prices()]


def test_reconnects_and_continues_with_backoff_reset_after_a_message():
    script = Script(
        prices=[[1.0, 2.0], [], [3.0], [4.0, 5.0]],
        errors=[ConnectionResetError("a"), OSError("b"), ConnectionAbortedError("c"), None],
    )
    sleeps = Sleeps()
    feed = ReconnectingFeed(script, Backoff(0.1, 2.0, 5.0, jitter=0.0), sleep=sleeps)
    assert run(prices_of(feed)) == [1.0, 2.0, 3.0, 4.0, 5.0]
    # lost after messages -> 0.1; lost with none -> 0.2; after message 3 -> back to 0.1
    assert sleeps.waited == feed.delays == [0.1, 0.2, 0.1]
    assert feed.reconnects == 3 and feed.connects == 4 and feed.failed_attempts == 3
    assert isinstance(feed.last_error, ConnectionAbortedError)
    assert script.closed == 3  # each lost connection was closed


def test_failed_connects_back_off_then_succeed():
    script = Script([[7.0]], [None], connect_errors=[OSError("refused"), TimeoutError()])
    sleeps = Sleeps()
    feed = ReconnectingFeed(script, Backoff(0.5, 2.0, 5.0, jitter=0.0), sleep=sleeps)
    assert run(prices_of(feed)) == [7.0]
    assert sleeps.waited == [0.5, 1.0]
    assert feed.reconnects == 0 and feed.connects == 1 and feed.failed_attempts == 2


def test_gives_up_after_max_attempts_with_the_last_error_as_cause():
    refusals = [OSError(f"refused {i}") for i in range(9)]
    script = Script([[1.0]], [None], connect_errors=refusals)
    sleeps = Sleeps()
    feed = ReconnectingFeed(script, Backoff(0.1, 2.0, 5.0, 0.0, max_attempts=3), sleep=sleeps)

    async def go():
        got = []
        with pytest.raises(
            ReconnectFailed, match="gave up after 3 consecutive failed attempts"
        ) as ei:
            async for p in feed.prices():
                got.append(p.price)
        return got, ei.value

    # the first connect itself fails (no wait before it), then 3 waited attempts fail
    got, err = run(go())
    assert got == []
    assert sleeps.waited == pytest.approx([0.1, 0.2, 0.4])
    assert isinstance(err.__cause__, OSError) and str(err.__cause__) == "refused 3"
    assert isinstance(err, ConnectionError)


def test_other_errors_are_not_retried():
    script = Script([[1.0]], [KeyError("bug")])
    feed = ReconnectingFeed(script, Backoff(jitter=0.0), sleep=Sleeps())

    async def go():
        with pytest.raises(KeyError):
            async for _ in feed.prices():
                pass

    run(go())
    assert feed.reconnects == 0 and script.opened == 1


class _Twin:
    """Both prices and surfaces streams fail on connection 0; one reconnection serves both."""

    def __init__(self):
        self.opened = 0

    async def __call__(self):
        self.opened += 1
        return _TwinConn(self.opened)


class _TwinConn:
    def __init__(self, n):
        self.n = n

    async def _s(self):
        await asyncio.sleep(0)
        if self.n == 1:
            raise ConnectionResetError("both")
        yield UnderlyingPrice("A", float(self.n), 0, 0)

    def prices(self):
        return self._s()

    def surfaces(self):
        return self._s()

    async def trades(self):  # pragma: no cover - not read
        return
        yield

    async def close(self):
        pass


def test_concurrent_streams_share_one_reconnection():
    factory = _Twin()
    feed = ReconnectingFeed(factory, Backoff(jitter=0.0), sleep=Sleeps())

    async def read(stream):
        return [p.price async for p in stream]

    async def go():
        return await asyncio.gather(read(feed.prices()), read(feed.surfaces()))

    assert run(go()) == [[2.0], [2.0]]
    assert feed.reconnects == 1 and factory.opened == 2


def test_close_ends_the_streams():
    script = Script([[1.0, 2.0, 3.0]], [None])
    feed = ReconnectingFeed(script, sleep=Sleeps())

    async def go():
        got = []
        async for p in feed.prices():
            got.append(p.price)
            await feed.close()
        return got

    assert run(go()) == [1.0]
    assert feed.feed is None and script.closed == 1


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="connect: must be callable"):
        ReconnectingFeed(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backoff: must be a Backoff"):
        ReconnectingFeed(Script([], []), backoff=0.1)  # type: ignore[arg-type]
