"""Targets for in-process servers, with short intervals and timeouts."""

from __future__ import annotations

from typing import Any

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
