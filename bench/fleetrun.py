"""One exporter against the responder's fleet: start both, wait for the first full round,
then read memory and time scrapes. Also the slow-greeting round at default settings."""

from __future__ import annotations

import json
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench import profiling
from bench.fleet import FleetConfig, config_text
from bench.processes import HOST, BenchError, Process, exporter_argv, free_port, python_module
from bench.procstat import cpu_seconds, rss_bytes
from bench.profiling import memory_sites
from bench.scrape import Results, Scrape, read_results, scrape
from bench.verdicts import wrong_verdicts
from exporter.defaults import DEFAULT_PORT, DEFAULT_TIMEOUT

MB: Final = 1024 * 1024
#: A round has stalled when no connection closed for this long (past any probe's timeout).
_STALL: Final = DEFAULT_TIMEOUT + 15.0


@dataclass(frozen=True)
class Options:
    """What every fleet run shares."""

    workdir: Path
    #: The fleet's certificates (`bench.fleetcerts`): ca.pem, the chain, a leaf per target.
    certs: Path
    #: `--probe.concurrency`, None for the exporter's default.
    concurrency: int | None = None
    #: Seconds the responder waits before every answer (the network's round trip).
    reply_delay: float = 0.0
    #: Scrapes timed after the first one that follows the round.
    scrapes: int = 7
    #: Profile the exporter with py-spy during the first round, into this directory.
    profile_dir: Path | None = None
    #: Run the exporter under tracemalloc and report its biggest allocation sites.
    tracemalloc: bool = False
    #: Every target presents the same certificate (the best case for caches by chain).
    shared_cert: bool = False
    #: Inside a network namespace of the bench's own: the responder answers every address
    #: with one socket on 0.0.0.0, on the SMTP port.
    any_address: bool = False
    #: Progress lines go here.
    say: Callable[[str], None] = print


@dataclass
class SizeResult:
    """The figures of one fleet size."""

    targets: int
    startup_s: float = 0.0
    first_round_s: float | None = None
    rss_mb: float = 0.0
    #: The most the exporter held during the round (sampled five times a second).
    peak_rss_mb: float = 0.0
    #: After the timed scrapes: the exposition's cache of rendered lines is built by then.
    rss_scraped_mb: float = 0.0
    scrape_ms: float | None = None
    scrape_first_ms: float | None = None
    scrape_ms_all: list[float] = field(default_factory=list)
    body_bytes: int = 0
    wire_bytes: int = 0
    #: CPU seconds of the exporter from its start until the round ended, and until ready.
    cpu_s_round: float = 0.0
    cpu_s_ready: float = 0.0
    content_type: str = ""
    responder_cpu_s: float = 0.0
    results: int = 0
    failed: int = 0
    wrong_verdicts: int = 0
    concurrency: float | None = None
    examples: list[str] = field(default_factory=list)
    hot_spots: list[dict[str, Any]] = field(default_factory=list)
    #: tracemalloc's biggest allocation sites halfway through the round and after the scrapes.
    memory_sites_mid: list[dict[str, Any]] = field(default_factory=list)
    memory_sites: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SlowResult:
    """The round of targets whose greeting comes late, at the exporter's defaults."""

    targets: int
    greet_delay: float
    round_s: float | None = None
    peak_rss_mb: float = 0.0
    results: int = 0
    failed: int = 0
    concurrency: float | None = None


@dataclass
class Responder:
    process: Process
    port: int
    control_port: int

    def stats(self) -> dict[str, Any]:
        with socket.create_connection((HOST, self.control_port), timeout=10) as sock:
            sock.sendall(b"stats\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        stats: dict[str, Any] = json.loads(data)
        return stats


@contextmanager
def responder(options: Options, count: int, greet_delay: float = 0.0) -> Iterator[Responder]:
    args = ["--targets", count, "--certs", options.certs, "--greet-delay", greet_delay]
    args += ["--reply-delay", options.reply_delay]
    if options.any_address:
        args += ["--any-address", "--port", DEFAULT_PORT]
    if options.shared_cert:
        args.append("--shared-cert")
    log = options.workdir / f"responder-{count}.log"
    process = Process("responder", python_module("bench.responder", *args), log, stdout_pipe=True)
    try:
        line = process.read_line(timeout=300)
        word, port, control = line.split()
        if word != "READY":
            raise process.fail(f"unexpected first line {line!r}")
        yield Responder(process, int(port), int(control))
    finally:
        process.stop()


@dataclass
class Exporter:
    process: Process
    port: int
    #: Where `bench.traced` writes its tracemalloc snapshot.
    snapshot: Path

    def ready(self) -> float:
        """Wait for /-/ready; seconds since the start."""
        return self.process.wait_http(f"http://{HOST}:{self.port}/-/ready", timeout=300)


@contextmanager
def exporter(options: Options, name: str, config: str) -> Iterator[Exporter]:
    config_file = options.workdir / f"{name}.yaml"
    config_file.write_text(config)
    port = free_port()
    argv = exporter_argv(config_file, port, traced=options.tracemalloc)
    if options.concurrency is not None:
        argv.append(f"--probe.concurrency={options.concurrency}")
    snapshot = options.workdir / f"{name}.tracemalloc"
    env = {"BENCH_TRACEMALLOC_FILE": str(snapshot)}
    process = Process("exporter", argv, options.workdir / f"{name}.log", env=env)
    try:
        yield Exporter(process, port, snapshot)
    finally:
        process.stop()


def wait_round(
    fleet: Responder,
    process: Process,
    count: int,
    timeout: float,
    sample: Callable[[dict[str, Any]], None] | None = None,
    poll: float = 0.2,
) -> float | None:
    """Wait until every target's connections have closed; when that was (None: it stalled
    or timed out, and a scrape must tell). `sample` gets the responder's counters at every
    poll."""
    deadline = time.monotonic() + timeout
    last_closed, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        if not process.alive:
            raise process.fail("exited during the round")
        stats = fleet.stats()
        if sample is not None:
            sample(stats)
        if stats["targets_done"] >= count:
            done: float = stats["all_done_at"]
            return done
        if stats["closed"] != last_closed:
            last_closed, last_change = stats["closed"], time.monotonic()
        elif time.monotonic() - last_change > _STALL:
            return None
        time.sleep(poll)
    return None


def round_time(results: Results, count: int, done_at: float | None, t0: float) -> float | None:
    """Seconds from the exporter's start until every target had a result; None if some
    never got one."""
    if results.targets < count:
        return None
    if results.probes_total == count:
        return results.last_finished - t0  # exact: every target was probed once
    if done_at is not None:
        return done_at - t0  # some were probed again meanwhile: the fleet saw the end
    raise BenchError("every target has a result, but when the last one came is unknown")


def confirm(port: int, count: int, timeout: float = 120.0) -> tuple[Results, Scrape]:
    """Scrape until every target has a result: the results and the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        answer = scrape(HOST, port)
        results = read_results(answer.text)
        if results.targets >= count or time.monotonic() > deadline:
            return results, answer
        time.sleep(2.0)


def run_size(options: Options, count: int) -> SizeResult:
    """The first full round of `count` targets, memory after it, scrapes after it."""
    result = SizeResult(count)
    say = options.say
    with responder(options, count) as fleet:
        config = config_text(count, fleet.port, FleetConfig(ca_file=options.certs / "ca.pem"))
        with exporter(options, f"fleet-{count}", config) as running:
            process, port = running.process, running.port
            result.startup_s = running.ready()
            result.cpu_s_ready = cpu_seconds(process.pid)
            say(f"  {count} targets: exporter ready after {result.startup_s:.1f}s")

            def sample(stats: dict[str, Any]) -> None:
                result.peak_rss_mb = max(result.peak_rss_mb, rss_bytes(process.pid) / MB)
                halfway = stats["targets_done"] * 2 >= count  # the probes' own memory too
                if options.tracemalloc and halfway and not result.memory_sites_mid:
                    result.memory_sites_mid = memory_sites(process, running.snapshot)

            timeout = max(600.0, count * 0.2)
            with profiling.py_spy(options.profile_dir, process.pid, f"fleet-{count}") as profile:
                done_at = wait_round(fleet, process, count, timeout, sample)
            _after_round(result, process, fleet)
            results, last = confirm(port, count)
            _judge_round(result, results, done_at, process.started)
            say(f"  {count} targets: first round {_s(result.first_round_s)}, timing scrapes")
            result.scrape_first_ms = last.seconds * 1000
            result.body_bytes, result.wire_bytes = len(last.text.encode()), last.wire_bytes
            result.content_type = last.content_type
            result.scrape_ms_all = [
                scrape(HOST, port).seconds * 1000 for _ in range(options.scrapes)
            ]
            result.scrape_ms = statistics.median(result.scrape_ms_all)
            result.rss_scraped_mb = rss_bytes(process.pid) / MB
            result.hot_spots = profile.hot_spots()
            if options.tracemalloc:
                result.memory_sites = memory_sites(process, running.snapshot)
    return result


def _after_round(result: SizeResult, process: Process, fleet: Responder) -> None:
    """What the processes spent on the round, read before any scrape adds to it."""
    result.rss_mb = rss_bytes(process.pid) / MB
    result.peak_rss_mb = max(result.peak_rss_mb, result.rss_mb)
    result.cpu_s_round = cpu_seconds(process.pid)
    result.responder_cpu_s = cpu_seconds(fleet.process.pid)


def _judge_round(result: SizeResult, results: Results, done_at: float | None, t0: float) -> None:
    result.results = results.targets
    result.concurrency = results.concurrency
    result.failed = results.targets - len(results.succeeded)
    wrong = wrong_verdicts(results)
    result.wrong_verdicts = len(wrong)
    result.examples = wrong[:5]
    result.first_round_s = round_time(results, result.targets, done_at, t0)


def run_slow(options: Options, count: int, greet_delay: float) -> SlowResult:
    """`count` targets whose greeting comes after `greet_delay` s, everything at the
    exporter's defaults except the target list: how long until every target has a result,
    and the most memory the exporter held meanwhile."""
    result = SlowResult(count, greet_delay)
    plain = FleetConfig(ca_file=None, servername=None, ehlo_name=None)
    # Default flags: only where the fleet lives carries over.
    defaults = Options(
        options.workdir,
        options.certs,
        shared_cert=options.shared_cert,
        any_address=options.any_address,
        say=options.say,
    )
    with responder(defaults, count, greet_delay) as fleet:
        config = config_text(count, fleet.port, plain)
        with exporter(defaults, f"slow-{count}", config) as running:
            process = running.process
            running.ready()

            def sample(_: object = None) -> None:
                rss = rss_bytes(process.pid) / MB
                result.peak_rss_mb = max(result.peak_rss_mb, rss)

            timeout = max(900.0, count * (greet_delay + 1) / 10)
            done_at = wait_round(fleet, process, count, timeout, sample, poll=1.0)
            sample()
            results = confirm(running.port, count)[0]
            result.results = results.targets
            result.failed = results.targets - len(results.succeeded)
            result.concurrency = results.concurrency
            result.round_s = round_time(results, count, done_at, process.started)
    return result


def _s(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f}s"
