"""The scheduler with real probes against in-process servers on several loopback addresses."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest

from exporter.probe import probe
from exporter.results import ProbeResult, Reason
from exporter.scheduler import Scheduler
from exporter.store import ResultStore
from exporter.target import Target
from tests.support.inproc import Behaviour, InprocServer
from tests.support.scheduling import inproc_target as target
from tests.support.scheduling import run_for


@dataclass
class Recorder:
    """Wraps the real probe and notes when each probe of each target ran."""

    runs: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0
    hosts_in_flight: dict[str, int] = field(default_factory=dict)
    host_overlap: bool = False

    async def __call__(self, target: Target) -> ProbeResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        busy = self.hosts_in_flight.get(target.host, 0)
        self.host_overlap |= busy > 0
        self.hosts_in_flight[target.host] = busy + 1
        start = time.monotonic()
        try:
            return await probe(target)
        finally:
            self.in_flight -= 1
            self.hosts_in_flight[target.host] -= 1
            self.runs.setdefault(target.name, []).append((start, time.monotonic()))


@pytest.fixture
def servers() -> Iterator[list[InprocServer]]:
    """Plain servers (STARTTLS not offered: a quick, successful probe) on 127.0.0.2-7."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(InprocServer(Behaviour(starttls=False), host=f"127.0.0.{i}"))
            for i in range(2, 8)
        ]


def test_first_round_starts_at_once_then_every_interval(servers: list[InprocServer]) -> None:
    store, recorder = ResultStore(), Recorder()
    scheduler_start = time.monotonic()

    async def main() -> None:
        scheduler = Scheduler(store, recorder)
        scheduler.apply(tuple(target(s, f"t{i}") for i, s in enumerate(servers)))
        await run_for(scheduler, 3.6)

    asyncio.run(main())
    assert set(recorder.runs) == {f"t{i}" for i in range(len(servers))}
    for name, runs in recorder.runs.items():
        assert runs[0][0] - scheduler_start < 0.5, name  # first round at once
        assert 3 <= len(runs) <= 5, (name, len(runs))  # then about once a second
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(runs)]
        assert all(gap >= 0.5 for gap in gaps), gaps
    assert all(store.result(f"t{i}") is not None for i in range(len(servers)))


def test_concurrency_bound_and_one_probe_per_host() -> None:
    store, recorder = ResultStore(), Recorder()
    with ExitStack() as stack:
        silent = [
            stack.enter_context(InprocServer(Behaviour(silent=True), host=f"127.0.0.{i}"))
            for i in range(2, 6)
        ]
        same_host = [stack.enter_context(InprocServer(Behaviour(silent=True))) for _ in range(2)]
        targets = [target(s, f"silent{i}", interval=5.0) for i, s in enumerate(silent)]
        targets += [target(s, f"same{i}", interval=5.0) for i, s in enumerate(same_host)]

        async def main() -> None:
            scheduler = Scheduler(store, recorder, concurrency=2)
            scheduler.apply(tuple(targets))
            await run_for(scheduler, 3.5)

        asyncio.run(main())
    assert recorder.most_in_flight == 2
    assert not recorder.host_overlap
    # Every probe ended by its deadline, with the reason it timed out.
    assert sum(store.result(t.name) is not None for t in targets) >= 4
    for t in targets:
        result = store.result(t.name)
        if result is not None:
            assert result.error is Reason.GREETING_TIMEOUT
            assert result.duration < t.timeout + 0.5


def test_a_hung_target_does_not_delay_others(servers: list[InprocServer]) -> None:
    store, recorder = ResultStore(), Recorder()
    with InprocServer(Behaviour(silent=True), host="127.0.0.9") as hung:

        async def main() -> None:
            scheduler = Scheduler(store, recorder)
            scheduler.apply(
                (target(hung, "hung", timeout=3.0, interval=10.0), target(servers[0], "quick"))
            )
            await run_for(scheduler, 2.8)

        asyncio.run(main())
    assert len(recorder.runs.get("quick", [])) >= 3
    # The hung probe was still running when the scheduler stopped, holding nobody up.
    (hung_start, hung_end), *_ = recorder.runs["hung"]
    assert hung_end - hung_start >= 2.5


def test_reload_keeps_unchanged_targets_and_drops_removed(servers: list[InprocServer]) -> None:
    store, recorder = ResultStore(), Recorder()
    a, b, c = (target(servers[i], name, interval=30.0) for i, name in enumerate("abc"))

    async def main() -> None:
        scheduler = Scheduler(store, recorder)
        scheduler.apply((a, b))
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.8)
        first_a = store.result("a")
        assert first_a is not None and store.result("b") is not None
        relabelled = Target(**{**_fields(a), "labels": (("site", "eu"),)})
        moved = Target(**{**_fields(b), "port": servers[3].port})
        scheduler.apply((relabelled, moved, c))
        # The changed target's old result is gone at once: it described another server.
        assert store.result("b") is None
        await asyncio.sleep(0.8)
        assert store.result("a") is first_a  # unchanged probe: not probed again
        assert store.result("b") is not None and store.result("c") is not None
        assert [t.labels for t, _ in store.snapshot() if t.name == "a"] == [(("site", "eu"),)]
        scheduler.apply((c,))
        assert {t.name for t, _ in store.snapshot()} == {"c"}
        assert store.result("a") is None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await scheduler.stop()

    asyncio.run(main())
    assert len(recorder.runs["a"]) == 1


def _fields(t: Target) -> dict[str, object]:
    return {name: getattr(t, name) for name in Target.__dataclass_fields__}


def test_targets_spread_over_the_interval() -> None:
    scheduler = Scheduler(ResultStore(), Recorder())
    names = [f"mx{i}.example.org:25" for i in range(200)]
    scheduler.apply(tuple(Target(host=n.split(":")[0], name=n, interval=300.0) for n in names))
    now = time.monotonic()
    dues = sorted(
        scheduler._next_due(state.target, now, state.phase) - now
        for state in scheduler._states.values()
    )
    assert all(150 <= d <= 450 for d in dues)
    # No minute of the interval holds more than a third of the targets.
    buckets = [sum(1 for d in dues if k * 60 <= (d % 300) < (k + 1) * 60) for k in range(5)]
    assert max(buckets) < len(names) / 3, buckets


def test_reload_right_after_dispatch_frees_the_slot(servers: list[InprocServer]) -> None:
    """A probe cancelled before its first step must still give back its slot and host."""
    store, recorder = ResultStore(), Recorder()
    first = target(servers[0], "mx", interval=30.0)
    moved = Target(**{**_fields(first), "host": servers[1].host, "port": servers[1].port})

    async def main() -> None:
        scheduler = Scheduler(store, recorder, concurrency=1)
        scheduler.apply((first,))
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0)  # the dispatcher starts the probe task...
        scheduler.apply((moved,))  # ...and the reload cancels it before it runs
        await asyncio.sleep(1.0)
        assert scheduler.running == 0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await scheduler.stop()

    asyncio.run(main())
    result = store.result("mx")
    assert result is not None and result.success


# --- The exporter around the scheduler: result logging, reloads, /metrics ---------------------


async def sample_while_running(
    scheduler: Scheduler, store: ResultStore, seconds: float
) -> list[tuple[float, int]]:
    """Run the scheduler for `seconds`, noting the store's delay and overdue count often."""
    task = asyncio.create_task(scheduler.run())
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.05)
        samples.append((store.schedule_delay_seconds, store.overdue_probes))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await scheduler.stop()
    return samples


def test_too_little_concurrency_shows_as_schedule_delay() -> None:
    store, recorder = ResultStore(), Recorder()
    with ExitStack() as stack:
        silent = [
            stack.enter_context(InprocServer(Behaviour(silent=True), host=f"127.0.0.{i}"))
            for i in range(2, 7)
        ]
        targets = tuple(target(s, f"silent{i}", interval=30.0) for i, s in enumerate(silent))

        async def main() -> list[tuple[float, int]]:
            scheduler = Scheduler(store, recorder, concurrency=1)
            scheduler.apply(targets)
            return await sample_while_running(scheduler, store, 2.7)

        samples = asyncio.run(main())
    # One slot, five targets all due at once, each probe about 1 s: the second starts about
    # 1 s late, the third about 2 s late.
    starts = sorted(runs[0][0] for runs in recorder.runs.values())
    assert len(starts) >= 2, recorder.runs
    assert store.schedule_delay_seconds > 0.5 + (len(starts) - 2)
    delays = [delay for delay, _ in samples]
    assert delays == sorted(delays)  # each probe started later than the one before
    assert delays[0] < 0.1  # the first started at once...
    overdue = [count for _, count in samples]
    assert overdue[0] == 4  # ...and four wait for the slot
    assert overdue == sorted(overdue, reverse=True)
    assert min(overdue) >= 5 - len(starts)


def test_ample_concurrency_keeps_schedule_delay_near_zero(servers: list[InprocServer]) -> None:
    store, recorder = ResultStore(), Recorder()

    async def main() -> list[tuple[float, int]]:
        scheduler = Scheduler(store, recorder, concurrency=50)
        scheduler.apply(tuple(target(s, f"t{i}") for i, s in enumerate(servers)))
        return await sample_while_running(scheduler, store, 3.0)

    samples = asyncio.run(main())
    assert all(len(runs) >= 2 for runs in recorder.runs.values()), recorder.runs
    assert max(delay for delay, _ in samples) < 0.25, samples
    assert all(overdue == 0 for _, overdue in samples), samples
