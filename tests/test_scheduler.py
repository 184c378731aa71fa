"""The scheduler: first round, intervals, spread, bounds, reloads, lateness.

Time is a clock the test moves by hand and probes are stand-ins that take as long as the
test says, so each case runs the schedule exactly and at once. One case at the end runs
the real probe against in-process servers in real time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from exporter.probe import probe
from exporter.results import ProbeResult, Reason, Verdict, VersionResult
from exporter.scheduler import MAX_LAG, Scheduler
from exporter.store import ResultStore
from exporter.target import Target, TLSVersion
from tests.support.clock import ManualClock
from tests.support.inproc import Behaviour, InprocServer
from tests.support.scheduling import inproc_target

#: A probe that never ends by itself.
FOREVER = 10**9


@dataclass
class StandInProbe:
    """Takes `durations[host]` seconds of the manual clock (default `duration`), notes when
    each probe ran, and answers with a successful result."""

    clock: ManualClock
    duration: float = 0.0
    durations: dict[str, float] = field(default_factory=dict)
    runs: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)
    #: The host of every probe that started, in order.
    hosts: list[str] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    hosts_in_flight: dict[str, int] = field(default_factory=dict)
    host_overlap: bool = False

    async def __call__(self, target: Target) -> ProbeResult:
        start = self.clock.monotonic()
        runs = self.runs.setdefault(target.name, [])
        runs.append((start, None))
        self.hosts.append(target.host)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        busy = self.hosts_in_flight.get(target.host, 0)
        self.host_overlap |= busy > 0
        self.hosts_in_flight[target.host] = busy + 1
        try:
            await self.clock.sleep(self.durations.get(target.host, self.duration))
        finally:
            self.in_flight -= 1
            self.hosts_in_flight[target.host] -= 1
            runs[runs.index((start, None))] = (start, self.clock.monotonic())
        return ProbeResult(
            target=target.name,
            started=self.clock.time(),
            duration=self.clock.monotonic() - start,
            success=True,
            error=None,
            error_detail="",
            starttls_advertised=True,
            versions=tuple(VersionResult(v, Verdict.ACCEPTED) for v in target.versions),
            negotiated=None,
            certificate=None,
        )

    def starts(self, name: str) -> list[float]:
        return [start for start, _ in self.runs.get(name, [])]


def mx(index: int, **extra: Any) -> Target:
    """A target on its own host, probed every minute."""
    base = Target(
        host=f"mx{index}.example.org", interval=60.0, timeout=30.0, versions=(TLSVersion.TLS1_2,)
    )
    return dataclasses.replace(base, **extra)


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[None]:
    """The scheduler's dispatcher, running until the block ends."""
    task = asyncio.create_task(scheduler.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await scheduler.stop()


def run(case: Callable[[], Coroutine[object, object, None]]) -> None:
    asyncio.run(case())


def test_first_round_starts_at_once_then_every_interval() -> None:
    clock = ManualClock()
    store, stand_in = ResultStore(), StandInProbe(clock, duration=2.0)
    targets = tuple(mx(i) for i in range(6))
    t0 = clock.monotonic()

    async def case() -> None:
        scheduler = Scheduler(store, stand_in, clock=clock)
        scheduler.apply(targets)
        async with running(scheduler):
            await clock.advance(600)

    run(case)
    for t in targets:
        starts = stand_in.starts(t.name)
        assert starts[0] == t0, t.name  # the first round starts at once
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        # The second probe lands on the target's own point in the interval, at least half an
        # interval after the first; from then on exactly one interval apart.
        assert 30 <= gaps[0] <= 90, (t.name, gaps)
        assert gaps[1:] == [60.0] * (len(gaps) - 1), (t.name, gaps)
        assert len(starts) in (10, 11), (t.name, len(starts))
        result = store.result(t.name)
        assert result is not None
        assert result.success


def test_targets_spread_over_the_interval() -> None:
    clock = ManualClock()
    stand_in = StandInProbe(clock)
    targets = tuple(mx(i, interval=300.0) for i in range(200))

    async def case() -> None:
        scheduler = Scheduler(ResultStore(), stand_in, clock=clock)
        scheduler.apply(targets)
        async with running(scheduler):
            await clock.advance(450)

    t0 = clock.monotonic()
    run(case)
    seconds = [stand_in.starts(t.name)[1] - t0 for t in targets]
    assert all(150 <= s <= 450 for s in seconds), seconds
    # No minute of the interval holds more than a third of the targets.
    buckets = [sum(1 for s in seconds if k * 60 <= (s % 300) < (k + 1) * 60) for k in range(5)]
    assert max(buckets) < len(targets) / 3, buckets


def test_concurrency_bound_and_one_probe_per_host() -> None:
    clock = ManualClock()
    store, stand_in = ResultStore(), StandInProbe(clock, duration=10.0)
    targets = tuple(mx(i) for i in range(4))
    targets += tuple(mx(9, port=port, name=f"same:{port}") for port in (25, 587))

    async def case() -> None:
        scheduler = Scheduler(store, stand_in, concurrency=2, clock=clock)
        scheduler.apply(targets)
        async with running(scheduler):
            await clock.advance(35)

    run(case)
    assert stand_in.most_in_flight == 2
    assert not stand_in.host_overlap
    assert all(store.result(t.name) is not None for t in targets)


def test_waiting_for_a_busy_host_is_not_schedule_delay() -> None:
    """Two targets on one host take turns; the second one's wait is not counted as a lack of
    slots, which more concurrency would not cure."""
    clock = ManualClock()
    store, stand_in = ResultStore(), StandInProbe(clock, duration=10.0)
    first, second = (mx(9, port=port, name=f"mx9:{port}") for port in (25, 587))
    seen: list[tuple[float, int]] = []

    async def case() -> None:
        scheduler = Scheduler(store, stand_in, concurrency=50, clock=clock)
        scheduler.apply((first, second))
        async with running(scheduler):
            for _ in range(25):
                await clock.advance(1)
                seen.append((store.schedule_delay_seconds, store.overdue_probes))

    run(case)
    starts = sorted(s for t in (first, second) for s in stand_in.starts(t.name))
    assert starts[:2] == [1000.0, 1010.0]  # one after the other, at once when the host is free
    assert not stand_in.host_overlap
    assert set(seen) == {(0.0, 0)}


def test_no_new_probe_starts_while_the_event_loop_runs_late() -> None:
    """A stalled event loop (a busy CPU) holds new probes back until it catches up."""
    clock = ManualClock()
    store, stand_in = ResultStore(), StandInProbe(clock, duration=FOREVER)
    busy, late = mx(0, name="busy"), mx(1, name="late")

    async def case() -> None:
        scheduler = Scheduler(store, stand_in, concurrency=50, clock=clock)
        scheduler.apply((busy,))
        async with running(scheduler):
            await clock.advance(1)
            await clock.stall(3)
            assert scheduler.lag >= MAX_LAG
            scheduler.apply((busy, late))
            await clock.advance(0.5)
            assert stand_in.starts("late") == []  # held back while the loop is late...
            await clock.advance(5)
            assert scheduler.lag < MAX_LAG

    run(case)
    (start,) = stand_in.starts("late")  # ...and started once it caught up, late
    assert 1004.5 < start <= 1006.0
    assert store.schedule_delay_seconds == start - 1004.0


def test_a_hung_target_does_not_delay_others() -> None:
    clock = ManualClock()
    store = ResultStore()
    stand_in = StandInProbe(clock, duration=0.5, durations={"hung.example.org": FOREVER})
    hung = mx(0, host="hung.example.org", name="hung", timeout=30.0, interval=300.0)
    quick = mx(1, name="quick", interval=5.0)

    async def case() -> None:
        scheduler = Scheduler(store, stand_in, clock=clock)
        scheduler.apply((hung, quick))
        async with running(scheduler):
            await clock.advance(34)
            assert stand_in.runs["hung"] == [(1000.0, None)]  # the hung probe still runs...
            assert store.result("hung") is None
            await clock.advance(2)
            # ...until its timeout and the margin have passed: then it is abandoned.
            assert stand_in.runs["hung"] == [(1000.0, 1035.0)]

    run(case)
    assert len(stand_in.starts("quick")) >= 7  # the quick one kept its interval meanwhile
    result = store.result("hung")
    assert result is not None
    assert (result.error, result.error_detail) == (Reason.PROBE_DEADLINE, "probe overran")
    assert result.duration == 35.0
    assert [v.verdict for v in result.versions] == [Verdict.UNKNOWN]


def test_a_crashing_probe_costs_one_result() -> None:
    clock = ManualClock()
    store = ResultStore()

    async def crash(target: Target) -> ProbeResult:
        raise RuntimeError(f"bug while probing {target.host}")

    async def case() -> None:
        scheduler = Scheduler(store, crash, clock=clock)
        scheduler.apply((mx(0), mx(1)))
        async with running(scheduler):
            await clock.advance(120)

    run(case)
    for name in ("mx0.example.org:25", "mx1.example.org:25"):
        result = store.result(name)
        assert result is not None
        assert result.error is Reason.INTERNAL_ERROR
        assert result.error_detail == f"RuntimeError: bug while probing {name.split(':')[0]}"
        assert [v.verdict for v in result.versions] == [Verdict.UNKNOWN]
    assert store.probes_total >= 4  # more rounds: the crashes did not stop the schedule


def test_reload_keeps_unchanged_targets_and_drops_removed() -> None:
    clock = ManualClock()
    store, stand_in = ResultStore(), StandInProbe(clock, duration=1.0)
    a, b, c = (mx(i, name=name, interval=300.0) for i, name in enumerate("abc"))

    async def case() -> None:
        scheduler = Scheduler(store, stand_in, clock=clock)
        scheduler.apply((a, b))
        async with running(scheduler):
            await clock.advance(2)
            first_a = store.result("a")
            assert first_a is not None
            assert store.result("b") is not None
            relabelled = dataclasses.replace(a, labels=(("site", "eu"),), interval=600.0)
            moved = dataclasses.replace(b, port=2525)
            scheduler.apply((relabelled, moved, c))
            # The changed target's old result is gone at once: it described another server.
            assert store.result("b") is None
            await clock.advance(2)
            assert store.result("a") is first_a  # unchanged probe: not probed again
            assert store.result("b") is not None
            assert store.result("c") is not None
            assert [t.labels for t, _ in store.snapshot() if t.name == "a"] == [(("site", "eu"),)]
            scheduler.apply((c,))
            assert {t.name for t, _ in store.snapshot()} == {"c"}
            assert store.result("a") is None

    run(case)
    assert len(stand_in.runs["a"]) == 1
    assert len(stand_in.runs["b"]) == 2


def test_reload_right_after_dispatch_frees_the_slot() -> None:
    """A probe cancelled before its first step must still give back its slot and host."""
    clock = ManualClock()
    store, stand_in = ResultStore(), StandInProbe(clock, duration=1.0)
    first = mx(0, name="mx")
    moved = dataclasses.replace(first, host="mx1.example.org")

    async def case() -> None:
        scheduler = Scheduler(store, stand_in, concurrency=1, clock=clock)
        scheduler.apply((first,))
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0)  # the dispatcher starts the probe task...
        scheduler.apply((moved,))  # ...and the reload cancels it before it runs
        await clock.advance(2)
        assert scheduler.running == 0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await scheduler.stop()

    run(case)
    assert stand_in.runs == {"mx": [(1000.0, 1001.0)]}
    assert stand_in.hosts == ["mx1.example.org"]  # only the moved target was probed
    result = store.result("mx")
    assert result is not None
    assert result.success


def test_too_little_concurrency_shows_as_schedule_delay() -> None:
    clock = ManualClock()
    store, stand_in = ResultStore(), StandInProbe(clock, duration=1.0)
    targets = tuple(mx(i, interval=300.0) for i in range(5))
    seen: list[tuple[float, int]] = []

    async def case() -> None:
        scheduler = Scheduler(store, stand_in, concurrency=1, clock=clock)
        scheduler.apply(targets)
        async with running(scheduler):
            for _ in range(5):
                await clock.advance(0)
                seen.append((store.schedule_delay_seconds, store.overdue_probes))
                await clock.advance(1)
            await clock.advance(0)
            seen.append((store.schedule_delay_seconds, store.overdue_probes))

    run(case)
    # One slot, five targets due at once, each probe one second: each starts a second after
    # the one before, and the queue of overdue probes shrinks by one each time.
    assert seen == [(0.0, 4), (1.0, 3), (2.0, 2), (3.0, 1), (4.0, 0), (4.0, 0)]


def test_ample_concurrency_keeps_schedule_delay_at_zero() -> None:
    clock = ManualClock()
    store, stand_in = ResultStore(), StandInProbe(clock, duration=1.0)
    seen: list[tuple[float, int]] = []

    async def case() -> None:
        scheduler = Scheduler(store, stand_in, concurrency=50, clock=clock)
        scheduler.apply(tuple(mx(i) for i in range(20)))
        async with running(scheduler):
            for _ in range(300):
                await clock.advance(1)
                seen.append((store.schedule_delay_seconds, store.overdue_probes))

    run(case)
    assert all(len(stand_in.starts(f"mx{i}.example.org:25")) >= 5 for i in range(20))
    assert set(seen) == {(0.0, 0)}


@pytest.mark.parametrize("behaviour", [Behaviour(starttls=False), Behaviour(silent=True)])
def test_real_probes_of_in_process_servers(behaviour: Behaviour) -> None:
    """The real probe and the real clock: results arrive with the reason the server gave."""
    store = ResultStore()
    with InprocServer(behaviour, host="127.0.0.2") as server:
        target = inproc_target(server, "mx", timeout=0.5, interval=60.0)

        async def case() -> None:
            done = asyncio.Event()
            scheduler = Scheduler(store, probe, on_result=lambda _t, _r: done.set())
            scheduler.apply((target,))
            async with running(scheduler):
                await asyncio.wait_for(done.wait(), timeout=10)

        run(case)
    result = store.result("mx")
    assert result is not None
    if behaviour.silent:
        assert result.error is Reason.GREETING_TIMEOUT
    else:
        assert result.success
        assert result.starttls_advertised is False


def test_legacy_versions_follow_their_own_slower_interval() -> None:
    """Under legacy_interval, SSLv3, TLS 1.0 and 1.1 are tested every ten minutes while
    TLS 1.2 and 1.3 are tested every minute; their verdicts carry on in between, with the
    time they were reached."""
    from exporter.collector import add_result
    from exporter.target import DEFAULT_VERSIONS

    clock = ManualClock()
    store = ResultStore()
    asked: list[tuple[float, tuple[TLSVersion, ...]]] = []

    async def stand_in(target: Target) -> ProbeResult:
        asked.append((clock.monotonic(), target.versions))
        await clock.sleep(1.0)
        verdict = {TLSVersion.TLS1_0: Verdict.ACCEPTED, TLSVersion.SSL3: Verdict.REFUSED}
        return ProbeResult(
            target=target.name, started=clock.time() - 1.0, duration=1.0, success=True,
            error=None, error_detail="", starttls_advertised=True,
            versions=tuple(VersionResult(v, verdict.get(v, Verdict.ACCEPTED))
                           for v in target.versions),
            negotiated=None, certificate=None,
        )  # fmt: skip

    target = mx(1, versions=DEFAULT_VERSIONS, legacy_interval=600.0)
    t0 = clock.monotonic()

    async def case() -> None:
        scheduler = Scheduler(store, stand_in, clock=clock)
        scheduler.apply((target,))
        async with running(scheduler):
            await clock.advance(1250)

    run(case)
    full = [at - t0 for at, versions in asked if versions == DEFAULT_VERSIONS]
    current = [versions for _, versions in asked if versions != DEFAULT_VERSIONS]
    assert full[0] == 0
    assert len(full) == 3, full  # at the start, about 10 and about 20 minutes later
    assert all(570 <= b - a <= 630 for a, b in itertools.pairwise(full)), full
    assert set(current) == {(TLSVersion.TLS1_2, TLSVersion.TLS1_3)}
    assert len(asked) >= 20  # TLS 1.2 and 1.3 still every minute
    result = store.result(target.name)
    assert result is not None
    assert [v.version for v in result.versions] == list(DEFAULT_VERSIONS)
    assert result.version(TLSVersion.TLS1_0) is not None
    samples: dict[tuple[str, str], float] = {}
    add_result(lambda n, ls, v: samples.__setitem__((n, ls.get("version", "")), v),
               target, result)  # fmt: skip
    assert samples[("smtp_tls_version_supported", "1.0")] == 1  # carried on
    assert samples[("smtp_tls_version_supported", "ssl3")] == 0
    checked_10 = samples[("smtp_tls_version_checked_timestamp_seconds", "1.0")]
    checked_12 = samples[("smtp_tls_version_checked_timestamp_seconds", "1.2")]
    assert checked_12 == result.finished
    if asked[-1][1] == DEFAULT_VERSIONS:
        assert checked_10 == checked_12
    else:  # from the last full probe, a while ago
        assert checked_12 - 600 < checked_10 < checked_12


def stored(target: Target, started: float, backoff: float = 0.0) -> ProbeResult:
    """A target's last result as the storage gives it back after a restart."""
    result = ProbeResult.unreached(
        target.name, target.versions, started=started, duration=1.0,
        reason=Reason.RATE_LIMITED if backoff else Reason.CONNECT_REFUSED, detail="",
    )  # fmt: skip
    return dataclasses.replace(result, backoff=backoff)


def test_targets_resume_where_they_were_before_a_restart() -> None:
    """A target that last started 20 s ago is next probed 40 s from now, one interval
    after that start; a target with nothing stored starts at once."""
    clock = ManualClock()
    store, stand_in = ResultStore(), StandInProbe(clock, duration=1.0)
    kept, new = mx(1), mx(2)
    t0 = clock.monotonic()

    async def case() -> None:
        scheduler = Scheduler(store, stand_in, clock=clock)
        scheduler.apply((kept, new), {kept.name: stored(kept, clock.time() - 20.0)})
        async with running(scheduler):
            await clock.advance(200)

    run(case)
    assert stand_in.starts(new.name)[0] == t0
    first, second, *_ = stand_in.starts(kept.name)
    assert first == t0 + 40.0
    assert 30.0 <= second - first <= 90.0  # then on its phase, as after any first probe


def test_probes_missed_during_a_long_stop_spread_over_an_interval() -> None:
    clock = ManualClock()
    stand_in = StandInProbe(clock)
    targets = tuple(mx(i, interval=300.0) for i in range(200))
    t0 = clock.monotonic()

    async def case() -> None:
        scheduler = Scheduler(ResultStore(), stand_in, clock=clock)
        day_ago = clock.time() - 86_400.0
        scheduler.apply(targets, {t.name: stored(t, day_ago) for t in targets})
        async with running(scheduler):
            await clock.advance(300)

    run(case)
    seconds = [stand_in.starts(t.name)[0] - t0 for t in targets]
    assert all(0 <= s <= 300 for s in seconds), seconds
    buckets = [sum(1 for s in seconds if k * 60 <= s < (k + 1) * 60) for k in range(5)]
    assert max(buckets) < len(targets) / 3, buckets


def test_a_probe_missed_by_a_quick_restart_runs_within_the_time_missed() -> None:
    clock = ManualClock()
    stand_in = StandInProbe(clock)
    targets = tuple(mx(i, interval=300.0) for i in range(50))
    t0 = clock.monotonic()

    async def case() -> None:
        scheduler = Scheduler(ResultStore(), stand_in, clock=clock)
        # Due 5 s ago: the exporter was down for the last 5 s of their interval.
        scheduler.apply(targets, {t.name: stored(t, clock.time() - 305.0) for t in targets})
        async with running(scheduler):
            await clock.advance(10)

    run(case)
    assert all(0 <= stand_in.starts(t.name)[0] - t0 <= 5.0 for t in targets)


def test_a_start_in_the_future_waits_no_more_than_an_interval() -> None:
    """A clock set back since the last start must not hold the target back for long."""
    clock = ManualClock()
    stand_in = StandInProbe(clock)
    target = mx(1)
    t0 = clock.monotonic()

    async def case() -> None:
        scheduler = Scheduler(ResultStore(), stand_in, clock=clock)
        scheduler.apply((target,), {target.name: stored(target, clock.time() + 86_400.0)})
        async with running(scheduler):
            await clock.advance(120)

    run(case)
    assert stand_in.starts(target.name)[0] == t0 + 60.0


def test_a_back_off_goes_on_after_a_restart() -> None:
    """A target that was rate-limited twice in a row (four intervals' wait) waits those out
    from its last start, and a third rate-limited probe doubles the wait again."""
    clock = ManualClock()
    store = ResultStore()
    target = mx(1)
    starts: list[float] = []

    async def limited(probed: Target) -> ProbeResult:
        starts.append(clock.monotonic())
        return ProbeResult.unreached(
            probed.name, probed.versions, started=clock.time(), duration=0.0,
            reason=Reason.RATE_LIMITED, detail="421 4.7.0 too many connections",
        )  # fmt: skip

    t0 = clock.monotonic()

    async def case() -> None:
        scheduler = Scheduler(store, limited, clock=clock)
        scheduler.apply((target,), {target.name: stored(target, clock.time() - 60.0, 240.0)})
        async with running(scheduler):
            await clock.advance(200)

    run(case)
    assert starts == [t0 + 180.0]
    result = store.result(target.name)
    assert result is not None
    assert result.backoff == 480.0
