"""Connections to each server address, budgeted across every probe of the process.

Mail servers count connections per client address (Postfix's anvil, fail2ban, firewalls),
not per name: many targets (MX host names, a provider's customers) share an address, and
probing each on its own schedule can still add up to more than the server allows. So every
connection first asks the address's budget: at most `per_minute` started in any 60 s (a
sliding window, which never exceeds a fixed-window counter of the same size either) and at
most `at_once` open, counted over every probe that goes there. A probe reserves the starts
it will need at an address all at once, so probes take turns whole instead of each getting
half its versions; what it does not use goes back when it ends.

A probe waits for its turn only while some patience lasts (a share of its timeout, set by
the caller); a turn that cannot come in time is a `ProbeFailure` for `connection_budget`,
never a refusal: the server was not asked.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Final

from exporter.clock import Clock, SystemClock
from exporter.probe.deadline import ProbeFailure
from exporter.results import Reason

#: The window the per-minute budget counts connection starts in.
WINDOW: Final = 60.0
#: Addresses with nothing counted are forgotten at most this often.
_SWEEP: Final = 60.0


class _Address:
    """One server address: starts in the window, starts reserved and not made yet,
    connections open, and who waits for room (in order) or for a connection to close."""

    __slots__ = ("open", "queue", "reserved", "slots", "starts", "wakers")

    def __init__(self) -> None:
        self.starts: deque[float] = deque()
        self.reserved = 0
        self.open = 0
        self.queue: deque[object] = deque()
        self.slots: deque[object] = deque()
        self.wakers: set[asyncio.Event] = set()

    def used(self, now: float) -> int:
        """Starts counted now: those in the window and those reserved."""
        while self.starts and self.starts[0] <= now - WINDOW:
            self.starts.popleft()
        return len(self.starts) + self.reserved

    def room_at(self, more: int) -> float | None:
        """When `more` starts will have left the window; None when fewer are in it."""
        if more <= 0:
            return 0.0
        if more > len(self.starts):
            return None
        return self.starts[more - 1] + WINDOW

    def wake(self) -> None:
        for waker in self.wakers:
            waker.set()

    @property
    def idle(self) -> bool:
        return not (self.starts or self.reserved or self.open or self.queue or self.slots)


class ConnectionBudget:
    """Every server address's connections, for the whole process: the scheduler's probes
    and on-demand probes share one."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._addresses: dict[str, _Address] = {}
        self._swept = self._clock.monotonic()

    def claim(self, *, per_minute: int, at_once: int, patience: float) -> Claim:
        """One probe's share of the budget at the addresses it connects to, waiting for
        room at most `patience` seconds from now."""
        return Claim(self, max(1, per_minute), max(1, at_once), self._clock.monotonic() + patience)

    def counted(self, address: str) -> tuple[int, int]:
        """Starts counted in the window (reserved ones included) and connections open."""
        state = self._addresses.get(address)
        if state is None:
            return 0, 0
        return state.used(self._clock.monotonic()), state.open

    def _state(self, address: str) -> _Address:
        now = self._clock.monotonic()
        if now - self._swept >= _SWEEP:
            self._swept = now
            for name, state in list(self._addresses.items()):
                state.used(now)
                if state.idle:
                    del self._addresses[name]
        return self._addresses.setdefault(address, _Address())

    async def _wait(self, state: _Address, until: float | None) -> None:
        """Until something changes at the address, or until `until`."""
        waker = asyncio.Event()
        state.wakers.add(waker)
        try:
            timeout = None if until is None else max(0.0, until - self._clock.monotonic())
            await self._clock.wait(waker, timeout)
        finally:
            state.wakers.discard(waker)

    async def _reserve(
        self, address: str, count: int, per_minute: int, until: float
    ) -> tuple[_Address, int]:
        """Reserve `count` starts (at most `per_minute`) at `address`, in turn."""
        state = self._state(address)
        count = min(count, per_minute)
        turn = object()
        state.queue.append(turn)
        try:
            while True:
                now = self._clock.monotonic()
                ready: float | None = None
                if state.queue[0] is turn:
                    free = per_minute - state.used(now)
                    if free >= count:
                        state.reserved += count
                        return state, count
                    ready = state.room_at(count - free)
                    if ready is not None and ready > until and not state.reserved:
                        # Nothing reserved could come back sooner: the window decides.
                        raise _failure(
                            f"{per_minute} connections a minute to {address} used;"
                            f" room for {count} more in {ready - now:.0f}s, past this"
                            " probe's wait"
                        )
                if now >= until:
                    raise _failure(
                        f"{per_minute} connections a minute to {address} used; no room for"
                        f" {count} more in time"
                    )
                await self._wait(state, until if ready is None else min(ready, until))
        finally:
            state.queue.remove(turn)
            state.wake()

    async def _open_slot(self, state: _Address, address: str, at_once: int, until: float) -> None:
        """One of the `at_once` connections open at the address, in turn."""
        turn = object()
        state.slots.append(turn)
        try:
            while not (state.slots[0] is turn and state.open < at_once):
                if self._clock.monotonic() >= until:
                    raise _failure(
                        f"{state.open} connections to {address} open (at most {at_once});"
                        " none closed in time"
                    )
                await self._wait(state, until)
            state.open += 1
        finally:
            state.slots.remove(turn)
            state.wake()

    def _closed(self, state: _Address) -> None:
        state.open -= 1
        state.wake()

    def _give_back(self, state: _Address, count: int) -> None:
        state.reserved -= count
        state.wake()


class _Held:
    """Starts one probe reserved at one address and has not made yet."""

    __slots__ = ("count", "state")

    def __init__(self, state: _Address) -> None:
        self.state = state
        self.count = 0


class Claim:
    """One probe's connections under the budget: a reservation at each address it goes to
    (`expect` says how many), then a turn among the connections open there."""

    def __init__(self, budget: ConnectionBudget, per_minute: int, at_once: int, until: float):
        self._budget = budget
        self.per_minute = per_minute
        self.at_once = at_once
        self.until = until
        self._expected = 1
        self._held: dict[str, _Held] = {}
        #: Closed: a connection after that reserves its own start only.
        self._closed = False

    def expect(self, connections: int) -> None:
        """How many connections the probe will open at an address, reserved at once."""
        self._expected = max(1, connections)

    async def connection(self, address: str) -> Callable[[], None]:
        """Wait for room for one more connection to `address`; what to call once it is
        closed. `ProbeFailure(connection_budget)` when no room comes in time."""
        budget = self._budget
        held = self._held.get(address)
        if held is None or held.count == 0:
            wanted = self._expected if held is None and not self._closed else 1
            state, got = await budget._reserve(address, wanted, self.per_minute, self.until)
            held = self._held.get(address)
            if held is None or held.state is not state:
                held = self._held[address] = _Held(state)
            held.count += got
        held.count -= 1  # this connection's start, taken before any other can
        try:
            await budget._open_slot(held.state, address, self.at_once, self.until)
        except BaseException:
            budget._give_back(held.state, 1)
            raise
        state = held.state
        state.reserved -= 1
        state.starts.append(budget._clock.monotonic())
        closed = False

        def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                budget._closed(state)

        return close

    def close(self) -> None:
        """Give back what was reserved and not used."""
        self._closed = True
        for held in self._held.values():
            if held.count:
                self._budget._give_back(held.state, held.count)
        self._held.clear()


def _failure(detail: str) -> ProbeFailure:
    return ProbeFailure(Reason.CONNECTION_BUDGET, detail)
