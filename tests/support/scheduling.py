"""Targets for in-process servers, and running a scheduler for a while in real time."""

from __future__ import annotations

import asyncio
from typing import Any

from exporter.scheduler import Scheduler
from exporter.target import Target, TLSVersion
from tests.support.inproc import InprocServer

#: One version: a quick probe.
FAST = (TLSVersion.TLS1_2,)


def inproc_target(server: InprocServer, name: str, **extra: Any) -> Target:
    """A target for `server` with a one-second interval and timeout, testing TLS 1.2 only."""
    settings: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "name": name,
        "interval": 1.0,
        "timeout": 1.0,
        "versions": FAST,
    }
    settings.update(extra)
    return Target(**settings)


async def run_for(scheduler: Scheduler, seconds: float) -> None:
    """Run the scheduler's dispatcher for `seconds` of real time, then stop every probe."""
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await scheduler.stop()
