"""The bound on probes at once comes from the open files limit, raised to the hard limit,
and from the memory budget."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from exporter.defaults import FILES_PER_PROBE, RESERVED_FILES
from exporter.limits import MEMORY_SLOTS, concurrency, probe_slots


@pytest.mark.parametrize(
    ("open_files", "slots"),
    [
        (1024, (1024 - RESERVED_FILES) // FILES_PER_PROBE),
        (1_048_576, (1_048_576 - RESERVED_FILES) // FILES_PER_PROBE),
        (RESERVED_FILES, 1),  # never less than one probe
        (resource.RLIM_INFINITY, ((1 << 20) - RESERVED_FILES) // FILES_PER_PROBE),
    ],
)
def test_probe_slots(open_files: int, slots: int) -> None:
    assert probe_slots(open_files) == slots


def test_a_requested_bound_is_capped_by_the_open_files() -> None:
    assert concurrency(None, 4096) == probe_slots(4096)
    assert concurrency(10, 4096) == 10
    assert concurrency(100_000, 4096) == probe_slots(4096)


def test_unasked_the_memory_budget_caps_a_large_open_files_limit() -> None:
    """A systemd host's hard limit (a million descriptors) would allow ~95,000 probes at
    once: the default stops at what the memory budget holds; an explicit bound may go past
    it, up to what the descriptors allow."""
    assert 512 <= MEMORY_SLOTS <= 4096
    assert concurrency(None, 1_048_576) == MEMORY_SLOTS
    assert concurrency(None, 1024) == probe_slots(1024) < MEMORY_SLOTS
    assert concurrency(20_000, 1_048_576) == 20_000


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    """In a child process whose soft limit starts low, as under many init systems."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip(f"the hard open files limit here is only {hard}")
    code = (
        "import resource\n"
        "from exporter.limits import raise_open_files_limit\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    returned, soft, hard_seen = (int(value) for value in out)
    assert returned == soft == hard_seen
