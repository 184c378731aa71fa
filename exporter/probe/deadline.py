"""The probe's time budget and the one exception every step of a connection raises.

Every phase (resolve, connect, greeting, command, TLS read) takes its timeout from one
absolute deadline, so a slow step eats into the next instead of stretching the probe; a
timeout inside a phase becomes a ProbeFailure naming that phase.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from exporter.results import Reason

#: Limits for the phases inside one probe's deadline.
CONNECT_TIMEOUT: Final = 10.0
COMMAND_TIMEOUT: Final = 30.0


class ProbeFailure(Exception):
    """A step of the connection failed; `reason` says which, `detail` keeps the server's words."""

    def __init__(
        self,
        reason: Reason,
        detail: str = "",
        *,
        starttls_advertised: bool | None = None,
        in_handshake: bool = False,
    ) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        #: What EHLO said about STARTTLS, where the failure came after it.
        self.starttls_advertised = starttls_advertised
        #: True when the default client's TLS handshake itself failed (not the way there).
        self.in_handshake = in_handshake

    @classmethod
    def from_os_error(cls, reason: Reason, exc: OSError) -> ProbeFailure:
        """The system's words for a socket error (`No route to host`), not a repr.

        asyncio replaces the words with its own ("Connect call failed ('192.0.2.1', 25)")
        but keeps the errno, so the words come from the errno where there is one."""
        if exc.errno:
            return cls(reason, os.strerror(exc.errno))
        return cls(reason, exc.strerror or str(exc) or type(exc).__name__)


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute monotonic deadline, cut into per-phase timeouts."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def left(self) -> float:
        return self.at - time.monotonic()

    def budget(self, limit: float | None = None) -> float:
        left = max(self.left(), 0.0)
        return left if limit is None else min(left, limit)

    @contextmanager
    def phase(self, reason: Reason) -> Iterator[None]:
        """Turn a timeout inside the block into a ProbeFailure for `reason`."""
        try:
            yield
        except TimeoutError:
            detail = "probe deadline reached" if self.left() <= 0 else "timed out"
            raise ProbeFailure(reason, detail) from None
