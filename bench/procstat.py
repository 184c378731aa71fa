"""What a process costs, read from /proc: CPU seconds (user + system) and resident memory."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Final

_TICKS: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process so far (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses: fields start after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of the process now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


def machine() -> dict[str, str]:
    """Where the figures come from: cores, memory, kernel, Python."""
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return {
        "nproc": str(os.cpu_count() or 0),
        "memory": f"{memory_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
    }
