"""The scheduler backs off from a server that rate-limits the probes: the wait between a
target's probes doubles with each rate-limited probe in a row, is bounded, shows in the
result (and so in the metric and the status page), and ends once a probe gets through.

Time is a clock the test moves by hand; one case probes a real in-process server that
answers 421 after a few connections.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager

import pytest

from exporter.collector import add_result
from exporter.probe import probe
from exporter.results import ProbeResult, Reason, Verdict, VersionResult
from exporter.scheduler import Scheduler, backoff
from exporter.status import next_probe_estimate
from exporter.store import ResultStore
from exporter.target import Target, TLSVersion
from tests.support.certs import TestCerts, make_test_certs
from tests.support.clock import ManualClock
from tests.support.inproc import Behaviour, InprocServer, tls_context

MINUTE = 60.0
HOUR = 3600.0


@pytest.mark.parametrize(
    ("interval", "in_a_row", "wait"),
    [
        (300.0, 0, 0.0),
        (300.0, 1, 600.0),
        (300.0, 2, 1200.0),
        (300.0, 3, 2400.0),
        (300.0, 4, 2400.0),  # at most eight intervals
        (300.0, 1000, 2400.0),
        (HOUR, 2, 4 * HOUR),
        (HOUR, 3, 6 * HOUR),  # at most six hours
        (6 * HOUR, 1, 6 * HOUR),  # ... but never less than the interval itself
        (86400.0, 5, 86400.0),
    ],
)
def test_the_wait_doubles_and_is_bounded(interval: float, in_a_row: int, wait: float) -> None:
    assert backoff(interval, in_a_row) == wait


def answer(
    target: Target, started: float, error: Reason | None, verdict: Verdict = Verdict.UNKNOWN
) -> ProbeResult:
    return ProbeResult(
        target=target.name,
        started=started,
        duration=1.0,
        success=error is None,
        error=error,
        error_detail="421 4.7.0 too many connections" if error else "",
        starttls_advertised=None,
        versions=tuple(VersionResult(v, verdict) for v in target.versions),
        negotiated=None,
        certificate=None,
    )


class Server:
    """A stand-in probe for a server that answers each probe as `script` says, in turn
    (the last entry repeats): a reason, or None for a successful probe."""

    def __init__(self, clock: ManualClock, script: list[Reason | None]) -> None:
        self.clock = clock
        self.script = script
        self.starts: list[float] = []

    async def __call__(self, target: Target) -> ProbeResult:
        error = self.script[min(len(self.starts), len(self.script) - 1)]
        self.starts.append(self.clock.monotonic())
        started = self.clock.time()
        await self.clock.sleep(1.0)
        verdict = Verdict.ACCEPTED if error is None else Verdict.UNKNOWN
        return answer(target, started, error, verdict)

    def gaps(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.starts)]


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[None]:
    task = asyncio.create_task(scheduler.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await scheduler.stop()


def run(case: Callable[[], Coroutine[object, object, None]]) -> None:
    asyncio.run(case())


#: The interval of the stand-in targets: short, so that many of them pass quickly.
EVERY = 10.0
TARGET = Target(host="mx.example.org", interval=EVERY, timeout=5.0, versions=(TLSVersion.TLS1_2,))
RATE = Reason.RATE_LIMITED


def backoff_series(target: Target, result: ProbeResult) -> list[float]:
    found: list[float] = []
    add_result(
        lambda name, _labels, value: (
            found.append(value) if name == "smtp_tls_backoff_seconds" else None
        ),
        target,
        result,
    )
    return found


def test_backs_off_while_rate_limited_and_recovers() -> None:
    clock = ManualClock()
    store = ResultStore()
    server = Server(clock, [RATE, RATE, RATE, RATE, None])
    seen: list[tuple[Reason | None, float]] = []

    async def case() -> None:
        scheduler = Scheduler(
            store, server, clock=clock, on_result=lambda _t, r: seen.append((r.error, r.backoff))
        )
        scheduler.apply((TARGET,))
        async with running(scheduler):
            await clock.advance(30 * EVERY)

    run(case)
    gaps = server.gaps()
    # Two, four, eight intervals (the most), eight again; then the grid of one interval.
    assert gaps[:4] == [2 * EVERY, 4 * EVERY, 8 * EVERY, 8 * EVERY], gaps
    assert all(EVERY / 2 <= gap <= EVERY * 1.5 for gap in gaps[4:5]), gaps
    assert gaps[5:], gaps
    assert set(gaps[5:]) == {EVERY}, gaps
    assert seen[:6] == [
        (RATE, 2 * EVERY),
        (RATE, 4 * EVERY),
        (RATE, 8 * EVERY),
        (RATE, 8 * EVERY),
        (None, 0.0),
        (None, 0.0),
    ]
    last = store.result(TARGET.name)
    assert last is not None
    assert backoff_series(TARGET, last) == []  # the series goes once the back-off ends


def test_the_back_off_is_a_metric_and_moves_the_next_probe_estimate() -> None:
    clock = ManualClock()
    store = ResultStore()
    server = Server(clock, [RATE])

    async def case() -> None:
        scheduler = Scheduler(store, server, clock=clock)
        scheduler.apply((TARGET,))
        async with running(scheduler):
            await clock.advance(2)

    run(case)
    result = store.result(TARGET.name)
    assert result is not None
    assert result.error is RATE
    assert backoff_series(TARGET, result) == [2 * EVERY]
    assert next_probe_estimate(TARGET, result) == result.started + 2 * EVERY


def test_a_probe_that_reaches_nothing_without_a_rate_limit_keeps_the_back_off() -> None:
    """A server that stops answering after rate-limiting (a firewall drop, say) is not
    known to have recovered: the wait holds, without growing, until a probe gets through."""
    clock = ManualClock()
    server = Server(clock, [RATE, RATE, Reason.CONNECT_TIMEOUT, Reason.CONNECT_TIMEOUT, None])

    async def case() -> None:
        scheduler = Scheduler(ResultStore(), server, clock=clock)
        scheduler.apply((TARGET,))
        async with running(scheduler):
            await clock.advance(40 * EVERY)

    run(case)
    assert server.gaps()[:4] == [2 * EVERY, 4 * EVERY, 4 * EVERY, 4 * EVERY]


def test_a_reload_keeps_the_back_off() -> None:
    clock = ManualClock()
    server = Server(clock, [RATE, None])

    async def case() -> None:
        scheduler = Scheduler(ResultStore(), server, clock=clock)
        scheduler.apply((TARGET,))
        async with running(scheduler):
            await clock.advance(EVERY + 5)
            scheduler.apply((TARGET,))  # the same target: keeps its schedule
            await clock.advance(2 * EVERY)

    run(case)
    assert server.gaps()[0] == 2 * EVERY


def test_other_targets_are_not_held_back() -> None:
    clock = ManualClock()
    limited = Server(clock, [RATE])
    healthy = Server(clock, [None])
    other = Target(
        host="mx2.example.org", interval=EVERY, timeout=5.0, versions=(TLSVersion.TLS1_2,)
    )

    async def stand_in(target: Target) -> ProbeResult:
        return await (limited if target.host == TARGET.host else healthy)(target)

    async def case() -> None:
        scheduler = Scheduler(ResultStore(), stand_in, clock=clock)
        scheduler.apply((TARGET, other))
        async with running(scheduler):
            await clock.advance(10 * EVERY)

    run(case)
    assert len(healthy.starts) >= 9
    assert len(limited.starts) == 3  # at 0, 2 and 6 intervals


# --- a real server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_test_certs(tmp_path_factory.mktemp("certs"))


def test_a_server_answering_421_is_backed_off_and_recovers(certs: TestCerts) -> None:
    """The real probe against a server that answers 421 after three connections: the probe
    says rate_limited and refuses nothing, the next probe waits two intervals instead of
    one, and once the server lets the probe through, the back-off ends."""
    context = tls_context(
        str(certs.rsa.cert), str(certs.rsa.key), ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
    )
    clock = ManualClock()
    store = ResultStore()
    versions = (TLSVersion.TLS1_2, TLSVersion.TLS1_3)
    with InprocServer(Behaviour(context=context, busy_after=1)) as server:
        target = Target(
            host=server.host,
            port=server.port,
            name="mx",
            servername="mail.test",
            ehlo_name="probe.test",
            interval=MINUTE,
            timeout=5.0,
            versions=versions,
        )

        async def case() -> list[ProbeResult]:
            results: asyncio.Queue[ProbeResult] = asyncio.Queue()
            scheduler = Scheduler(
                store, probe, clock=clock, on_result=lambda _t, r: results.put_nowait(r)
            )
            scheduler.apply((target,))
            found = []
            async with running(scheduler):
                found.append(await asyncio.wait_for(results.get(), 10))
                await clock.advance(MINUTE + 30)  # one interval and more: not yet
                await asyncio.sleep(0.5)
                assert results.empty()
                server.behaviour.busy_after = None  # the server lets the probe in again
                await clock.advance(30)  # two intervals after the first
                found.append(await asyncio.wait_for(results.get(), 10))
            return found

        limited, recovered = asyncio.run(case())
    assert limited.error is Reason.RATE_LIMITED
    assert "421 4.7.0" in limited.error_detail
    assert Verdict.REFUSED not in {v.verdict for v in limited.versions}
    assert limited.backoff == 2 * MINUTE
    assert recovered.success, recovered.error_detail
    assert recovered.backoff == 0.0
    assert [v.verdict for v in recovered.versions] == [Verdict.ACCEPTED, Verdict.ACCEPTED]
