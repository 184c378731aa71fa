"""Prometheus durations (`30s`, `5m`, `1h30m`), read and written."""

from __future__ import annotations

import math
import re

#: The longest duration any setting takes: one year.
MAX_DURATION = 365 * 86400.0

_DURATION = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?"
    r"(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?"
)
_DURATION_MS = (365 * 86400_000, 7 * 86400_000, 86400_000, 3600_000, 60_000, 1000, 1)


def parse_duration(text: str) -> float | None:
    """Seconds in a Prometheus duration (`1h30m`, `500ms`, `0`), or None if it is not one."""
    if text == "0":
        return 0.0
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        return None
    try:
        millis = sum(
            int(g) * unit for g, unit in zip(match.groups(), _DURATION_MS, strict=True) if g
        )
        return millis / 1000
    except (ValueError, OverflowError):  # more digits than any sane duration
        return math.inf


def format_duration(seconds: float) -> str:
    """A Prometheus duration for `seconds`, in days and smaller units (`1d2h`, `1m30s`)."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400_000), ("h", 3600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
