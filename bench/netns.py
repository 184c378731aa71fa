"""A network namespace of the bench's own for the fleet, entered by the bench process itself.

Inside it the responder needs one listening socket (0.0.0.0 answers every 127.x.y.z), not
one per target, so the open files go to connections; the exporter, the responder and the
bench's scrapes all run inside, and nothing touches the host's interfaces. The namespace is
deleted on the way out, also on Ctrl-C or SIGTERM; ones left by a killed run are deleted by
the next. Needs root and `ip` (iproute2); without them the fleet binds every address on the
host's loopback instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

PREFIX: Final = "smtp-tls-bench-"
_CLONE_NEWNET: Final = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def remove_stale() -> list[str]:
    """Delete namespaces of earlier bench runs whose process is gone; their names."""
    removed = []
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        suffix = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and suffix.isdigit() and not _alive(int(suffix)):
            _ip("netns", "delete", name)
            removed.append(name)
    return removed


def usable() -> str | None:
    """None when the bench can make and enter a namespace here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    return None


@contextmanager
def entered(say: Callable[[str], None]) -> Iterator[str | None]:
    """Run the block inside a fresh namespace with loopback up; its name, or None (and the
    block runs on the host's loopback) where that cannot be had."""
    reason = usable()
    if reason is not None:
        say(f"  no network namespace ({reason}): one listener per target on the host loopback")
        yield None
        return
    remove_stale()
    name = f"{PREFIX}{os.getpid()}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        say(f"  no network namespace (ip netns add: {made.stderr.strip()})")
        yield None
        return
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        inside = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            try:
                _setns(inside)
            except OSError as exc:
                say(f"  no network namespace ({exc})")
                yield None
                return
            try:
                yield name
            finally:
                _setns(home)
        finally:
            os.close(inside)
            os.close(home)
    finally:
        _ip("netns", "delete", name)
