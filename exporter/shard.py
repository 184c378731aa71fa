"""Sharding: which targets this process probes when N replicas split one config (`--shard=I/N`).

N processes read the same config file; process I probes only the targets whose shard is I.
Nothing coordinates them, so every process must reach the same answer by itself, today and
after an upgrade: a target's shard is a pure function of its name (the `target` label value)
and of N, never of the other targets, their order, labels or settings, the machine, the
Python version or `PYTHONHASHSEED` (which is why `hash()` is not used).

The function is jump consistent hash (Lamping and Veach, "A Fast, Minimal Memory, Consistent
Hash Algorithm", 2014) over the first 8 bytes, big-endian, of the name's SHA-256 (UTF-8).
Consistent: going from N to N+1 shards moves only about 1/(N+1) of the targets, all of them
to the new shard, so a scale-up re-probes few targets and every other one keeps its shard and
its series. It needs no table and is computed in about ln(N) steps. The digest is one any
tool can reproduce: `printf %s NAME | sha256sum | cut -c1-16` is the key, in hex.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = ["Shard", "jump_hash", "name_key", "parse_shard", "shard_of"]

_MASK64 = (1 << 64) - 1
#: The multiplier of the 64-bit linear congruential generator in the paper.
_LCG_MULTIPLIER = 2862933555777941757
_SPEC = re.compile(r"([^/]*)/([^/]*)")
_NUMBER = re.compile(r"[0-9]+")


def name_key(name: str) -> int:
    """The 64-bit key of a target name: the first 8 bytes of its SHA-256, big-endian."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash: the bucket (0 to `buckets`-1) of a 64-bit key.

    The paper's C++ code step by step; its `double` arithmetic is IEEE 754 binary64, the same
    as Python's float, so the result is the same on every machine.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, got {buckets}")
    key &= _MASK64
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * _LCG_MULTIPLIER + 1) & _MASK64
        jump = int((bucket + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return bucket


def shard_of(name: str, shards: int) -> int:
    """The shard (0 to `shards`-1) that probes the target called `name`."""
    return jump_hash(name_key(name), shards)


class Named(Protocol):
    """Anything with a target name, such as `exporter.target.Target`."""

    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)


@dataclass(frozen=True, slots=True)
class Shard:
    """This process's share of the targets: shard `index` of `count`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"N must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"I must be from 0 to {self.count - 1} (N-1), got {self.index}")

    def owns(self, name: str) -> bool:
        """Whether the target called `name` is probed by this shard."""
        return shard_of(name, self.count) == self.index

    def select(self, targets: Iterable[N]) -> tuple[N, ...]:
        """The targets this shard probes, in their order."""
        return tuple(t for t in targets if self.owns(t.name))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`I/N` as a `Shard`; ValueError with a message for people when it is not one."""
    match = _SPEC.fullmatch(text)
    if match is None:
        raise ValueError(
            f"expected I/N (this process's shard I, from 0 to N-1, of N shards), got {text!r}"
        )
    index_text, count_text = match.groups()
    if not _NUMBER.fullmatch(count_text):
        raise ValueError(f"N must be a whole number of at least 1, got {count_text!r}")
    if not index_text:
        raise ValueError(f"I is empty in {text!r}: expected I/N")
    if not _NUMBER.fullmatch(index_text):
        raise ValueError(f"I must be a whole number from 0 to N-1, got {index_text!r}")
    try:
        return Shard(int(index_text), int(count_text))
    except ValueError as exc:  # out of range, or more digits than int() takes
        raise ValueError(f"{text!r}: {exc}") from None
