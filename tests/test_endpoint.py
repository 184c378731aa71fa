"""A host that is down or refuses costs one connection attempt per address, not one per
connection of the probe: counted by the kernel, in a network namespace of the test's own."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

from exporter.probe import probe
from exporter.results import Reason, Verdict
from exporter.target import Target
from tests.support.tools import unavailable

#: Probes a closed port on loopback and prints how many TCP connections it opened.
_COUNT_OPENS = """
import asyncio
from exporter.probe import probe
from exporter.target import Target

def opens():
    rows = [line.split() for line in open("/proc/net/snmp") if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])

before = opens()
result = asyncio.run(probe(Target(host="127.0.0.1", port=9, ehlo_name="probe.test")))
print(opens() - before, result.error.value)
"""


def test_a_refusing_host_gets_one_connection_attempt() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        unavailable("a network namespace needs root and unshare (util-linux)")
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"',
         sys.executable, _COUNT_OPENS],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "connect_refused"]


def test_the_reason_is_kept_for_every_version() -> None:
    """The connections that waited for the first report the same refusal."""
    result = asyncio.run(probe(Target(host="127.0.0.1", port=9, ehlo_name="probe.test")))
    assert result.error is Reason.CONNECT_REFUSED
    assert {v.verdict for v in result.versions} == {Verdict.UNKNOWN}
    assert {v.detail for v in result.versions} == {"connection refused"}
