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


#: Probes addresses the namespace has no route to and prints what the result says.
_UNREACHABLE = """
import asyncio
from exporter.collector import stable_detail
from exporter.probe import probe
from exporter.target import Target

for host in ("192.0.2.1", "2001:db8::25"):
    result = asyncio.run(probe(Target(host=host, ehlo_name="probe.test", timeout=5.0)))
    print(result.error.value, "|", result.error_detail, "|", stable_detail(result.error_detail))
"""


def _in_own_network(script: str) -> list[str]:
    """Run `script` in a network namespace of its own, with only loopback up."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        unavailable("a network namespace needs root and unshare (util-linux)")
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"',
         sys.executable, script],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_refusing_host_gets_one_connection_attempt() -> None:
    assert _in_own_network(_COUNT_OPENS)[0].split() == ["1", "connect_refused"]


def test_an_unreachable_address_keeps_the_systems_words() -> None:
    """asyncio words a failed connect as "Connect call failed (...)": the detail is the
    OS's own text for the errno instead, in the label too."""
    assert _in_own_network(_UNREACHABLE) == [
        "connect_error | Network is unreachable | Network is unreachable",
        "connect_error | Network is unreachable | Network is unreachable",
    ]


def test_the_reason_is_kept_for_every_version() -> None:
    """The connections that waited for the first report the same refusal."""
    result = asyncio.run(probe(Target(host="127.0.0.1", port=9, ehlo_name="probe.test")))
    assert result.error is Reason.CONNECT_REFUSED
    assert {v.verdict for v in result.versions} == {Verdict.UNKNOWN}
    assert {v.detail for v in result.versions} == {"connection refused"}
