"""Time as the scheduler sees it: a protocol, and the real clock behind it.

The scheduler asks this object for the time and for its waits instead of calling `time`
and `asyncio` directly, so its tests can run a day of schedule in a moment with a clock
they move by hand.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What the scheduler needs of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for intervals and due times."""
        ...

    def time(self) -> float:
        """Unix time, for the timestamps users see."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        """Return when `event` is set or after `timeout` seconds (never, for None)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
