"""A clock the test moves by hand, for the scheduler: a day of schedule runs in a moment.

Every wait the scheduler (or a stand-in probe) makes through it ends only when the test
calls `advance`, which moves time forward from one due wait to the next and lets the event
loop run everything that became ready in between.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

#: Loop turns that let every ready task run to its next wait (tasks here do no real I/O).
_SETTLE_TURNS = 50


class ManualClock:
    """Time stands still until `advance` moves it."""

    def __init__(self, start: float = 1000.0, unix_offset: float = 1_700_000_000.0) -> None:
        self.now = start
        self._unix_offset = unix_offset
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self._unix_offset + self.now

    async def sleep(self, seconds: float) -> None:
        """Wait until the test has moved time `seconds` forward."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        if timeout is None:
            await event.wait()
            return
        waits = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.sleep(timeout))}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def settle(self) -> None:
        """Let every task that can run do so, without moving time."""
        for _ in range(_SETTLE_TURNS):
            await asyncio.sleep(0)

    async def stall(self, seconds: float) -> None:
        """Jump `seconds` ahead as a busy event loop would: every wait due meanwhile ends
        late, at the end of the stall."""
        self.now += seconds
        await self.advance(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking each wait at its own moment on the way."""
        end = self.now + seconds
        await self.settle()
        while self._waiters and self._waiters[0][0] <= end:
            due, _, future = heapq.heappop(self._waiters)
            if future.done():
                continue  # its waiter gave up (an event came first, or it was cancelled)
            self.now = max(self.now, due)
            future.set_result(None)
            await self.settle()
        self.now = end
        await self.settle()
