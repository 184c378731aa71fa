"""When each target is probed: intervals, spread, concurrency bounds, one probe per host.

One dispatcher task and a heap of due times serve any number of targets; probes run as
tasks on the same event loop. Each target fires at a stable phase inside its interval
(from a hash of its name), so ten thousand targets on a 5m interval spread over the five
minutes instead of firing together.

Probes mostly wait (greeting delays, round trips), so how many run at once is bounded by
what the machine can carry, not by a small constant: at most `concurrency` (from the open
files limit unless set), and no new probe starts while the event loop runs late, which is
what a saturated CPU looks like from inside it. A probe whose host is busy with another
target's probe waits in that host's queue and starts when the host is free; the schedule
delay counts only the wait for a slot, the part more concurrency would remove.

A server that rate-limits a probe is left alone for longer: the wait between its target's
probes doubles with each rate-limited probe in a row (`backoff`), until one gets through.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

from exporter.clock import Clock, SystemClock
from exporter.results import ProbeResult, Reason
from exporter.store import ResultStore
from exporter.target import LEGACY_VERSIONS, Target, TLSVersion

log = logging.getLogger("exporter.scheduler")

ProbeFunction = Callable[[Target], Awaitable[ProbeResult]]

#: The dispatcher looks at the event loop at least this often while probes run.
_LAG_TICK = 0.1
#: Probes started in one go before the dispatcher lets the event loop run.
_BATCH = 32
#: Lag (seconds late the dispatcher wakes) at which no new probe starts: the CPU is busy.
MAX_LAG = 0.1
#: The bound when none is given: only the event loop's lag holds the dispatcher back.
_UNBOUNDED = 1 << 30
#: Weight of the newest lag reading in the smoothed lag.
_LAG_WEIGHT = 0.3
#: Extra time past a target's own timeout before its probe is abandoned.
_SAFETY_MARGIN = 5.0
#: While every slot is busy, overdue probes are counted at most this often.
_OVERDUE_RECOUNT = 1.0
#: A rate-limited target's wait between probes grows to at most this many intervals...
_BACKOFF_INTERVALS = 8
#: ...and at most this long (though never below one interval).
_BACKOFF_MOST = 6 * 3600.0


def backoff(interval: float, rate_limited: int) -> float:
    """The wait between a target's probe starts after `rate_limited` rate-limited probes in
    a row: the interval doubled for each, at most 8 intervals and 6 h (never less than one
    interval); 0 when the last probe was not rate-limited."""
    if rate_limited <= 0:
        return 0.0
    most = max(interval, min(interval * _BACKOFF_INTERVALS, _BACKOFF_MOST))
    return min(interval * 2.0 ** min(rate_limited, 32), most)


def probe_key(target: Target) -> tuple[object, ...]:
    """Everything that changes what a probe measures; labels and interval do not."""
    return (
        target.host,
        target.port,
        target.tls,
        target.servername,
        target.ehlo_name,
        target.versions,
        target.ca_file,
        target.timeout,
        target.connections,
    )


@dataclass(slots=True)
class _State:
    target: Target
    generation: int
    phase: float
    running: asyncio.Task[None] | None = None
    last_start: float | None = None
    #: When the heap entry of this state fires.
    due: float = 0.0
    #: When the next probe was meant to start (or its host became free); its lateness is
    #: measured from here.
    scheduled: float = 0.0
    #: Waiting in its host's queue rather than in the heap.
    parked: bool = False
    #: When its host first became free for it, while it has not started since: a probe
    #: parked again (another probe of the host took the free turn) keeps counting from here.
    freed: float | None = None
    #: When a probe that tested every version (the legacy ones too) last started.
    legacy_start: float | None = None
    #: Rate-limited probes in a row, which the wait before the next one grows with.
    rate_limited: int = 0


@dataclass(order=True, slots=True)
class _Entry:
    due: float
    name: str = field(compare=False)
    generation: int = field(compare=False)


class Scheduler:
    """Probes the store's targets on their intervals and records the results."""

    def __init__(
        self,
        store: ResultStore,
        probe: ProbeFunction,
        concurrency: int | None = None,
        on_result: Callable[[Target, ProbeResult], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._store = store
        self._probe = probe
        #: Upper bound of probes at once (None: none but the event loop's lag, which may
        #: hold the dispatcher lower in any case); the app passes the open files' bound.
        self.concurrency = _UNBOUNDED if concurrency is None else max(1, concurrency)
        store.probe_concurrency = self.concurrency
        self._on_result = on_result
        self._states: dict[str, _State] = {}
        self._heap: list[_Entry] = []
        self._busy_hosts: dict[str, str] = {}
        #: Due states whose host is busy, in the order they fell due.
        self._host_queues: dict[str, deque[_State]] = {}
        self._running = 0
        #: Smoothed lag of the dispatcher's timed wake-ups, in seconds.
        self.lag = 0.0
        self._wake = asyncio.Event()
        self._generation = 0
        self._epoch = self._clock.monotonic()
        self._overdue_counted = -_OVERDUE_RECOUNT

    @property
    def running(self) -> int:
        return self._running

    def apply(
        self, targets: tuple[Target, ...], resumed: Mapping[str, ProbeResult] | None = None
    ) -> None:
        """Switch to a new target list: new ones start now, unchanged ones keep their
        schedule and results, removed ones stop and lose their series. A new target in
        `resumed` (its last result from before a restart) resumes its schedule instead."""
        old = self._states
        new: dict[str, _State] = {}
        keep: set[str] = set()
        now = self._clock.monotonic()
        for target in targets:
            previous = old.get(target.name)
            if previous is not None and probe_key(previous.target) == probe_key(target):
                keep.add(target.name)
                previous.target = target
                if previous.last_start is not None:
                    due = self._due_after(previous, previous.last_start)
                    if due != previous.due:
                        self._push(previous, due)
                new[target.name] = previous
                continue
            if previous is not None and previous.running is not None:
                previous.running.cancel()
            self._generation += 1
            phase = (zlib.crc32(target.name.encode()) / 2**32) * target.interval
            state = _State(target=target, generation=self._generation, phase=phase)
            new[target.name] = state
            last = None if resumed is None else resumed.get(target.name)
            self._push(state, now if last is None else self._resume(state, last, now))
        for name, state in old.items():
            if name not in new and state.running is not None:
                state.running.cancel()
        self._states = new
        self._store.set_targets(targets, frozenset(keep))
        self._wake.set()

    def _resume(self, state: _State, last: ProbeResult, now: float) -> float:
        """When a target whose last probe (before a restart) was `last` is next due: one
        interval after that probe started, or its back-off, which goes on. One missed while
        the exporter was down runs within as long as it was missed by (at most an
        interval), at its phase's share of that time: a quick restart catches up at once,
        and one after a long stop spreads the missed probes over an interval as the phases
        spread a round."""
        interval = state.target.interval
        if last.backoff > 0:
            state.rate_limited = max(1, int(math.log2(last.backoff / interval)))
        wait = max(interval, last.backoff)
        due = min(now + last.started - self._clock.time() + wait, now + wait)
        if due >= now:
            return due
        return now + state.phase / interval * min(now - due, interval)

    def _due_after(self, state: _State, last_start: float) -> float:
        """When the probe after one started at `last_start` is due: on the phase grid, and
        not before the back-off of a rate-limited target has passed."""
        due = self._next_due(state.target, last_start, state.phase)
        return max(due, last_start + backoff(state.target.interval, state.rate_limited))

    def _next_due(self, target: Target, last_start: float, phase: float) -> float:
        """The next time on this target's phase grid at least half an interval after start."""
        interval = target.interval
        base = self._epoch + phase
        earliest = last_start + interval / 2
        periods = max(0, int((earliest - base) // interval) + 1)
        return base + periods * interval

    def _push(self, state: _State, due: float, *, scheduled: float | None = None) -> None:
        state.due = due
        state.scheduled = due if scheduled is None else scheduled
        state.parked = False
        heapq.heappush(self._heap, _Entry(due, state.target.name, state.generation))

    def _is_current(self, entry: _Entry) -> bool:
        state = self._states.get(entry.name)
        return (
            state is not None
            and state.generation == entry.generation
            and state.due == entry.due
            and state.running is None
        )

    def _count_overdue(self, now: float) -> int:
        """Current heap entries due by `now`: a walk of the heap that skips every subtree
        whose root is not due yet, so it costs about the number of due entries."""
        heap, count, pending = self._heap, 0, [0]
        while pending:
            index = pending.pop()
            if index >= len(heap) or heap[index].due > now:
                continue
            count += self._is_current(heap[index])
            pending += (2 * index + 1, 2 * index + 2)
        return count

    def _has_slot(self) -> bool:
        return self._running < self.concurrency and (self._running == 0 or self.lag < MAX_LAG)

    def _note_overdue(self, now: float, *, started: int) -> None:
        """Count the due probes waiting for a slot: a walk of the heap at most every
        `_OVERDUE_RECOUNT` seconds (it costs about the number waiting), and in between the
        last count less the probes that have started since."""
        if self._has_slot() or not self._heap or self._heap[0].due > now:
            self._store.overdue_probes = 0  # every due probe has started
        elif now - self._overdue_counted >= _OVERDUE_RECOUNT:
            self._overdue_counted = now
            self._store.overdue_probes = self._count_overdue(now)
        else:
            self._store.overdue_probes = max(0, self._store.overdue_probes - started)

    async def run(self) -> None:
        """Dispatch due probes forever (until cancelled), watching the event loop's lag."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_lag())
            await self._dispatch_forever()

    async def _dispatch_forever(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.monotonic()
            started = self._dispatch_due(now)
            self._note_overdue(now, started=started)
            if started == _BATCH:
                # More may be due: let the loop run the new probes' first steps (and the lag
                # watcher judge the load) before starting more.
                await asyncio.sleep(0)
                continue
            delay = None
            if self._heap and self._has_slot():
                delay = max(0.0, self._heap[0].due - now)
            elif self._heap:
                delay = _OVERDUE_RECOUNT  # no slot: recount the overdue meanwhile
            await self._clock.wait(self._wake, delay)

    async def _watch_lag(self) -> None:
        """Measure how late a timed wait ends: the event loop's lag, smoothed into `lag`.
        When it falls back under `MAX_LAG`, held-back probes may start."""
        never = asyncio.Event()
        while True:
            start = self._clock.monotonic()
            await self._clock.wait(never, _LAG_TICK)
            late = max(0.0, self._clock.monotonic() - start - _LAG_TICK)
            was_saturated = self.lag >= MAX_LAG
            self.lag += _LAG_WEIGHT * (late - self.lag)
            self._store.event_loop_lag_seconds = self.lag
            if was_saturated and self.lag < MAX_LAG:
                self._wake.set()

    def _dispatch_due(self, now: float) -> int:
        """Start every due probe there is a slot for; park those whose host is busy. Returns
        how many started."""
        started = 0
        while self._heap and self._heap[0].due <= now and self._has_slot() and started < _BATCH:
            entry = heapq.heappop(self._heap)
            state = self._states.get(entry.name)
            if state is None or state.generation != entry.generation or state.due != entry.due:
                continue  # superseded by a reload or a reschedule
            if state.running is not None or state.parked:
                continue  # still probing (rescheduled when it ends), or already queued
            host = state.target.host.lower()
            if host in self._busy_hosts:
                state.parked = True
                self._host_queues.setdefault(host, deque()).append(state)
                continue
            self._start(state, host)
            started += 1
        return started

    def _start(self, state: _State, host: str) -> None:
        state.freed = None
        self._running += 1
        self._store.probes_running = self._running
        self._busy_hosts[host] = state.target.name
        state.last_start = self._clock.monotonic()
        self._store.probe_started(state.last_start - state.scheduled)
        state.running = asyncio.create_task(self._probe_one(state))
        # A done callback, not a `finally`: a task cancelled before it ever ran (a reload in
        # the same loop turn) never enters its body, but must still give its slot back.
        state.running.add_done_callback(lambda _: self._finished(state, host))

    def _round_versions(self, state: _State) -> tuple[TLSVersion, ...]:
        """The versions this probe tests: all of them, or, under `legacy_interval`, only
        the current ones while the legacy ones (and the senders) were tested recently
        enough."""
        target = state.target
        if target.legacy_interval is None or state.legacy_start is None:
            return target.versions
        if self._store.result(target.name) is None:
            return target.versions
        # Half an interval of slack: probes start on a grid of `interval`.
        due = state.legacy_start + target.legacy_interval - target.interval / 2
        if self._clock.monotonic() >= due:
            return target.versions
        return tuple(v for v in target.versions if v not in LEGACY_VERSIONS)

    async def _probe_one(self, state: _State) -> None:
        started, clock = self._clock.time(), self._clock.monotonic()
        versions = self._round_versions(state)
        full = versions == state.target.versions
        if full:
            state.legacy_start = clock
        # The senders follow the legacy versions' cadence: they change as rarely.
        target = state.target if full else replace(state.target, versions=versions, senders=())
        try:
            result = await self._bounded_probe(target)
        except TimeoutError:
            result = self._unreached(target, started, clock, Reason.PROBE_DEADLINE, "probe overran")
        except Exception as exc:  # a bug must cost one probe, never the exporter
            log.exception("probe of %s crashed", target.name)
            result = self._unreached(
                target, started, clock, Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
            )
        if not full:  # the versions and senders not tested keep their last verdicts
            previous = self._store.result(target.name)
            names = tuple(profile.name for profile in state.target.senders)
            result = result.carried_over(previous, state.target.versions, names)
        result = self._back_off(state, result)
        if self._states.get(target.name) is state:
            self._store.record(state.target, result)
            if self._on_result is not None:
                self._on_result(state.target, result)

    def _back_off(self, state: _State, result: ProbeResult) -> ProbeResult:
        """Count the rate-limited probes in a row (none once a probe reaches a verdict of
        its own without one), and put the wait they cause in the result."""
        reached = [v for v in result.versions if v.checked is None]
        if result.error is Reason.RATE_LIMITED:
            state.rate_limited += 1
            if len(reached) == len(result.versions):
                state.legacy_start = None  # the legacy versions went untested: next time
        elif any(v.supported is not None for v in reached):
            state.rate_limited = 0
        wait = backoff(state.target.interval, state.rate_limited)
        return replace(result, backoff=wait) if wait else result

    async def _bounded_probe(self, target: Target) -> ProbeResult:
        """The probe's result; TimeoutError when it overruns its own timeout by the margin
        (a probe that ignores its deadline must not hold its slot and host for ever)."""
        task = asyncio.ensure_future(self._probe(target))
        ended = asyncio.Event()
        task.add_done_callback(lambda _: ended.set())
        try:
            await self._clock.wait(ended, target.timeout + _SAFETY_MARGIN)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise TimeoutError
        return task.result()

    def _unreached(
        self, target: Target, started: float, clock: float, reason: Reason, detail: str
    ) -> ProbeResult:
        return ProbeResult.unreached(
            target.name,
            target.versions,
            started=started,
            duration=self._clock.monotonic() - clock,
            reason=reason,
            detail=detail,
        )

    def _finished(self, state: _State, host: str) -> None:
        self._running -= 1
        self._store.probes_running = self._running
        if self._busy_hosts.get(host) == state.target.name:
            del self._busy_hosts[host]
            self._release_host(host)
        state.running = None
        if self._states.get(state.target.name) is state and state.last_start is not None:
            self._push(state, self._due_after(state, state.last_start))
        self._wake.set()

    def _release_host(self, host: str) -> None:
        """The next probe waiting for `host` is due now; from here on it waits for a slot."""
        queue = self._host_queues.get(host)
        while queue:
            waiting = queue.popleft()
            if self._states.get(waiting.target.name) is waiting and waiting.parked:
                now = self._clock.monotonic()
                waiting.freed = now if waiting.freed is None else waiting.freed
                self._push(waiting, now, scheduled=waiting.freed)
                break
        if not queue:
            self._host_queues.pop(host, None)

    async def stop(self) -> None:
        """Cancel every running probe and wait for them."""
        tasks = [s.running for s in self._states.values() if s.running is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
