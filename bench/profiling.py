"""Where the exporter spends its time (py-spy) and its memory (tracemalloc), for one
measurement run. Neither touches the exporter's code: py-spy reads the running process from
outside, and tracemalloc runs in `bench.traced`, a wrapper around the exporter's entry point."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bench.processes import BenchError, Process

#: Frames that are on every stack (the event loop, the entry point): no hot spot.
_EVERYWHERE = ("run_forever", "_run_once", "run (asyncio/", "<module>", "main (", "_run (")


class Profile:
    """A py-spy recording in its raw (collapsed stack) form: one `frame;frame;... count`
    line per distinct stack, leaf last. Flame graph tools read this format as it is."""

    def __init__(self, raw: Path | None) -> None:
        self.raw = raw

    def stacks(self) -> Counter[tuple[str, ...]]:
        found: Counter[tuple[str, ...]] = Counter()
        if self.raw is None or not self.raw.exists():
            return found
        for line in self.raw.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                found[tuple(stack.split(";"))] += int(count)
        return found

    def hot_spots(self, top: int = 15) -> list[dict[str, Any]]:
        """The frames the samples were in (self), with their share and their inclusive share
        (samples with the frame anywhere on the stack)."""
        stacks = self.stacks()
        total = sum(stacks.values())
        if not total:
            return []
        own: Counter[str] = Counter()
        anywhere: Counter[str] = Counter()
        for stack, count in stacks.items():
            own[stack[-1]] += count
            for frame in set(stack):
                anywhere[frame] += count
        return [
            {
                "frame": frame,
                "self": count / total,
                "inclusive": anywhere[frame] / total,
                "samples": count,
            }
            for frame, count in own.most_common(top)
        ]

    def inclusive(self, top: int = 15) -> list[dict[str, Any]]:
        """The frames most often on the stack, event loop and entry point left out."""
        stacks = self.stacks()
        total = sum(stacks.values())
        anywhere: Counter[str] = Counter()
        for stack, count in stacks.items():
            for frame in set(stack):
                if not any(mark in frame for mark in _EVERYWHERE):
                    anywhere[frame] += count
        return [
            {"frame": frame, "inclusive": count / total}
            for frame, count in anywhere.most_common(top)
        ]


def py_spy_command() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextmanager
def py_spy(directory: Path | None, pid: int, name: str) -> Iterator[Profile]:
    """Record `pid` with py-spy for the duration of the block (nothing when `directory` is
    None); the recording is `directory/NAME.txt`."""
    if directory is None:
        yield Profile(None)
        return
    command = py_spy_command()
    if command is None:
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / f"{name}.txt"
    argv = [command, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
    recorder = Process("py-spy", [*argv, "--output", str(raw)], directory / f"{name}.log")
    try:
        yield Profile(raw)
    finally:
        recorder.signal(signal.SIGINT)  # py-spy writes its file when interrupted
        with suppress(subprocess.TimeoutExpired):
            recorder.proc.wait(120)
        recorder.stop()


def memory_sites(process: Process, target: Path, top: int = 15) -> list[dict[str, Any]]:
    """Ask the traced exporter (`bench.traced`) for a snapshot in `target`; its biggest
    allocation sites by line, after the total."""
    target.unlink(missing_ok=True)
    process.signal(signal.SIGUSR2)
    deadline = time.monotonic() + 300
    while not target.exists():
        if time.monotonic() > deadline or not process.alive:
            raise process.fail("wrote no tracemalloc snapshot")
        time.sleep(0.5)
    snapshot = tracemalloc.Snapshot.load(str(target)).filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
    )
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    sites = [
        {
            "site": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
            "mb": s.size / 1024 / 1024,
            "share": s.size / total if total else 0.0,
            "blocks": s.count,
        }
        for s in stats[:top]
    ]
    return [{"site": "total traced", "mb": total / 1024 / 1024, "share": 1.0, "blocks": 0}, *sites]
