"""How many probes the process can carry at once, from its open files limit and memory.

Probes mostly wait (greeting delays, round trips), so a small fixed bound would let a slow
fleet stretch every round. What really bounds them is file descriptors (each probe holds up
to `FILES_PER_PROBE`) and memory (`MEMORY_PER_PROBE` each, within `PROBE_MEMORY_BUDGET`).
Like Go programs, the exporter raises its soft open files limit to the hard one at start;
the CPU side is watched by the scheduler (no new probe starts while the event loop runs
late).
"""

from __future__ import annotations

import resource

from exporter.defaults import (
    FILES_PER_PROBE,
    MEMORY_PER_PROBE,
    PROBE_MEMORY_BUDGET,
    RESERVED_FILES,
)

#: What to ask for where the hard limit is infinite but the kernel will not grant that.
_FALLBACK_FILES = 10240


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit where allowed; the soft limit now.

    Where the hard limit is infinite and the kernel refuses that (macOS caps it at 10240),
    10240 is tried instead, as Go does; the limit is read back, not assumed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (hard, _FALLBACK_FILES):
        if wanted != resource.RLIM_INFINITY and wanted <= soft:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            continue
        break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def probe_slots(open_files: int) -> int:
    """Probes that fit in `open_files` descriptors beside everything else (at least one)."""
    if open_files == resource.RLIM_INFINITY:
        open_files = 1 << 20
    return max(1, (open_files - RESERVED_FILES) // FILES_PER_PROBE)


#: Probes that fit in the default memory budget.
MEMORY_SLOTS = PROBE_MEMORY_BUDGET // MEMORY_PER_PROBE


def concurrency(requested: int | None, open_files: int) -> int:
    """The bound on probes at once: what was asked for, never more than the files allow.

    Unasked, also no more than the memory budget holds; asked for more, the user has
    chosen to spend that memory."""
    slots = probe_slots(open_files)
    if requested is None:
        return min(slots, MEMORY_SLOTS)
    return min(requested, slots)
