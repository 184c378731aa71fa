"""CPU per target-round on real Postfix listeners: this exporter against blackbox_exporter.

Both probe the same STARTTLS listeners of the test suite's Postfix (`tests/support/postfix`),
one after the other in the same run. This exporter probes every version and the certificate
on its own schedule; blackbox_exporter gets one /probe request per listener and module, with
four modules (TLS 1.0, 1.1, 1.2, 1.3, each pinned with min_version = max_version), which is
what it takes to learn the same versions. CPU is utime + stime from /proc over a window that
starts after a first round, divided by the target-rounds done in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlencode

import yaml

from bench.fleet import EHLO_NAME, FleetConfig, render_config
from bench.processes import HOST, BenchError, Process, exporter_argv, free_port, http_get
from bench.procstat import cpu_seconds
from bench.scrape import read_results, scrape
from exporter.target import TLSMode
from tests.support.postfix import Listener, PostfixServers, postfix_available

BLACKBOX_COMMANDS: Final = ("prometheus-blackbox-exporter", "blackbox_exporter")
BLACKBOX_PACKAGE: Final = "prometheus-blackbox-exporter"
#: Module name -> Go's name of the one version it allows.
MODULES: Final = {"smtp_tls10": "TLS10", "smtp_tls11": "TLS11", "smtp_tls12": "TLS12",
                  "smtp_tls13": "TLS13"}  # fmt: skip
#: The exporter's schedule on the listeners (all on one host, so probed one at a time).
_INTERVAL: Final = 3.0


@dataclass
class CpuResult:
    """CPU per target-round of both exporters on the same listeners."""

    listeners: list[str] = field(default_factory=list)
    ours_ms: float | None = None
    ours_probes: int = 0
    ours_succeeded: int = 0
    blackbox_ms: float | None = None
    blackbox_version: str = ""
    blackbox_target_rounds: int = 0
    #: Module -> probes that succeeded in one round (a refused version fails its module).
    blackbox_successes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.ours_ms is None or not self.blackbox_ms:
            return None
        return self.ours_ms / self.blackbox_ms


def listeners_for_comparison(servers: PostfixServers) -> list[Listener]:
    """The IPv4 STARTTLS listeners that speak TLS and answer at once (no postscreen)."""
    return [
        listener
        for listener in servers.listeners.values()
        if listener.tls is TLSMode.STARTTLS
        and listener.starttls
        and listener.versions
        and not listener.postscreen
        and ":" not in listener.host
    ]


def find_blackbox(install: bool, say: Callable[[str], None]) -> str | None:
    """blackbox_exporter's command; installed from the Debian package when missing, root
    and `install` allow it."""
    for name in BLACKBOX_COMMANDS:
        found = shutil.which(name)
        if found:
            return found
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    say(f"  installing {BLACKBOX_PACKAGE} (apt-get)")
    if not _apt("install", "-y", "-q", BLACKBOX_PACKAGE):
        _apt("update", "-q")
        _apt("install", "-y", "-q", BLACKBOX_PACKAGE)
    return next(filter(None, map(shutil.which, BLACKBOX_COMMANDS)), None)


def _apt(*args: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "-o", "DPkg::Lock::Timeout=600", *args]
    return subprocess.run(argv, env=env, capture_output=True, check=False).returncode == 0


def blackbox_config(ca_file: Path, server_name: str, timeout: float) -> str:
    """Four modules, one per TLS version, each the SMTP dialogue up to STARTTLS, a handshake
    pinned to that version (the chain verified against `ca_file`) and QUIT."""
    dialogue: list[dict[str, object]] = [
        {"expect": "^220 "},
        {"send": f"EHLO {EHLO_NAME}\r"},
        {"expect": "^250 "},
        {"send": "STARTTLS\r"},
        {"expect": "^220 "},
        {"starttls": True},
        {"send": "QUIT\r"},
        {"expect": "^221 "},
    ]
    modules = {
        name: {
            "prober": "tcp",
            "timeout": f"{timeout:g}s",
            "tcp": {
                "preferred_ip_protocol": "ip4",
                "query_response": dialogue,
                "tls_config": {
                    "ca_file": str(ca_file),
                    "server_name": server_name,
                    "min_version": version,
                    "max_version": version,
                },
            },
        }
        for name, version in MODULES.items()
    }
    return yaml.safe_dump({"modules": modules}, sort_keys=False)


def compare(
    workdir: Path,
    rounds: int,
    say: Callable[[str], None],
    install: bool = True,
) -> CpuResult:
    """Both exporters on the Postfix listeners; notes say what could not run."""
    result = CpuResult()
    reason = postfix_available()
    if reason is not None:
        result.notes.append(f"no comparison: {reason}")
        return result
    blackbox = find_blackbox(install, say)
    say("  starting Postfix (tests/support/postfix.py; waits while a test run holds it)")
    with PostfixServers(workdir / "postfix") as servers:
        listeners = listeners_for_comparison(servers)
        result.listeners = [listener.name for listener in listeners]
        _ours(result, workdir, servers, listeners, rounds, say)
        if blackbox is None:
            result.notes.append(f"blackbox_exporter not installed ({BLACKBOX_PACKAGE})")
        else:
            _blackbox(result, workdir, blackbox, servers, listeners, rounds, say)
    return result


def _ours(
    result: CpuResult,
    workdir: Path,
    servers: PostfixServers,
    listeners: list[Listener],
    rounds: int,
    say: Callable[[str], None],
) -> None:
    fleet = FleetConfig(
        ca_file=servers.ca_file,
        servername="localhost",
        interval=f"{_INTERVAL:g}s",
        timeout=f"{_INTERVAL:g}s",
        # Twelve listeners on one address, probed every few seconds: a lab's budget, or
        # most probes would wait for it (and cost nothing) instead of probing.
        max_connections_per_minute=100_000,
    )
    config_file = workdir / "postfix.yaml"
    config_file.write_text(render_config(((li.host, li.port) for li in listeners), fleet))
    port = free_port()
    argv = exporter_argv(config_file, port)
    with Process("exporter", argv, workdir / "postfix-exporter.log") as process:
        process.wait_http(f"http://{HOST}:{port}/-/ready", timeout=60)
        deadline = time.monotonic() + 120
        while (first := read_results(scrape(HOST, port).text)).targets < len(listeners):
            if time.monotonic() > deadline:
                raise process.fail("no first round on the Postfix listeners within 120s")
            time.sleep(0.5)
        cpu0, probes0 = cpu_seconds(process.pid), first.probes_total
        say(f"  this exporter: {len(listeners)} Postfix listeners, {rounds * _INTERVAL:g}s window")
        time.sleep(rounds * _INTERVAL)
        last = read_results(scrape(HOST, port).text)
        cpu1 = cpu_seconds(process.pid)
    result.ours_probes = int(last.probes_total - probes0)
    result.ours_succeeded = len(last.succeeded)
    if result.ours_probes > 0:
        result.ours_ms = (cpu1 - cpu0) * 1000 / result.ours_probes


def _blackbox(
    result: CpuResult,
    workdir: Path,
    command: str,
    servers: PostfixServers,
    listeners: list[Listener],
    rounds: int,
    say: Callable[[str], None],
) -> None:
    config_file = workdir / "blackbox.yml"
    config_file.write_text(blackbox_config(servers.ca_file, "localhost", 10.0))
    port = free_port()
    argv = [command, f"--config.file={config_file}", f"--web.listen-address={HOST}:{port}"]
    with Process("blackbox_exporter", argv, workdir / "blackbox.log") as process:
        process.wait_http(f"http://{HOST}:{port}/-/healthy", timeout=60)
        result.blackbox_version = _version(command)
        urls = {
            (listener.name, module): f"http://{HOST}:{port}/probe?"
            + urlencode({"module": module, "target": f"{listener.host}:{listener.port}"})
            for listener in listeners
            for module in MODULES
        }
        with ThreadPoolExecutor(max_workers=len(MODULES)) as pool:
            _round(pool, urls)  # warm-up, as this exporter's first round
            cpu0 = cpu_seconds(process.pid)
            say(f"  blackbox_exporter: {len(listeners)} listeners x {len(MODULES)} modules")
            for _ in range(rounds):
                successes = _round(pool, urls)
            cpu1 = cpu_seconds(process.pid)
    result.blackbox_target_rounds = rounds * len(listeners)
    result.blackbox_ms = (cpu1 - cpu0) * 1000 / result.blackbox_target_rounds
    result.blackbox_successes = {
        module: sum(1 for (_, m), ok in successes.items() if m == module and ok)
        for module in MODULES
    }


def _round(
    pool: ThreadPoolExecutor, urls: dict[tuple[str, str], str]
) -> dict[tuple[str, str], bool]:
    """One /probe request per listener and module, four at a time; which succeeded."""
    bodies = pool.map(lambda url: http_get(url, timeout=30), urls.values())
    return {key: b"\nprobe_success 1" in body for key, body in zip(urls, bodies, strict=True)}


def _version(command: str) -> str:
    try:
        done = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{command} --version: {exc}") from None
    words = (done.stdout + done.stderr).split()
    return next((w for w in words if w[:1].isdigit() and "." in w), "unknown")
