"""The exporter as users run it: the console script in a subprocess, spoken to over HTTP.

``ExporterProcess`` starts ``smtp-tls-exporter --config.file=...`` on a free loopback port,
waits for ``/-/ready``, scrapes ``/metrics`` into a :class:`Scrape`, sends signals and reloads,
and keeps everything the process wrote to stderr (its log) for assertions and failure
messages. ``run_exporter()`` runs a short command (``--config.check``, a bad flag) to the end.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.process import ServiceProcess

if TYPE_CHECKING:
    from tests.support.postfix import PostfixServers

HOST = "127.0.0.1"
#: Connections a minute to one address in tests whose servers all listen on loopback.
LAB_CONNECTIONS_PER_MINUTE = 10_000


def exporter_command() -> list[str]:
    """The installed console script next to this Python, else ``python -m exporter``."""
    script = Path(sys.executable).parent / "smtp-tls-exporter"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "exporter"]


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write a config mapping as YAML."""
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


def target_entry(postfix: PostfixServers, name: str, **extra: Any) -> dict[str, Any]:
    """The config file entry of one Postfix listener, named after it."""
    listener = postfix.listener(name)
    entry: dict[str, Any] = {
        "host": listener.host,
        "port": listener.port,
        "tls": listener.tls.value,
        "name": name,
        "servername": "localhost",
    }
    return entry | extra


def listener_defaults(
    postfix: PostfixServers, *, interval: str = "10m", **extra: Any
) -> dict[str, Any]:
    """The config's `defaults` for probing the Postfix listeners: their CA, a fixed EHLO name,
    a timeout that covers the postscreen listener's greeting delay, and a connection budget
    for a lab: every listener shares 127.0.0.1, which the default (twelve a minute, per
    address) would have them take turns for."""
    return {
        "interval": interval,
        "timeout": "30s",
        "ehlo_name": "client.test",
        "ca_file": str(postfix.ca_file),
        "max_connections_per_minute": LAB_CONNECTIONS_PER_MINUTE,
        **extra,
    }


def run_exporter(
    *args: str, timeout: float = 30.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the exporter command line to its end (for commands that exit by themselves)."""
    return subprocess.run(
        [*exporter_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


@dataclass(frozen=True)
class Response:
    """One HTTP answer: status, headers and the raw (possibly compressed) body."""

    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        data = self.body
        if self.headers.get("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        return data.decode("utf-8")


class Scrape:
    """The parsed text exposition of one scrape."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families: dict[str, Metric] = {
            family.name: family for family in text_string_to_metric_families(text)
        }
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def series(self, name: str, **labels: str) -> list[Sample]:
        """Samples called ``name`` whose labels include ``labels``."""
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample matching, None when there is none; two is an error."""
        found = self.series(name, **labels)
        if len(found) > 1:
            raise AssertionError(f"{len(found)} samples match {name}{labels}: {found}")
        return found[0].value if found else None

    def targets(self, name: str = "smtp_tls_probe_timestamp_seconds") -> set[str]:
        """Values of the ``target`` label among the samples of ``name``."""
        return {s.labels["target"] for s in self.series(name) if "target" in s.labels}

    def for_target(self, target: str) -> list[Sample]:
        """Every sample of one target."""
        return [s for s in self.samples if s.labels.get("target") == target]


class ExporterError(AssertionError):
    """The exporter did not do what a test waited for; carries its log."""


class ExporterProcess(ServiceProcess):
    """One running exporter; use as a context manager so it is always stopped."""

    name = "exporter"
    error = ExporterError

    def __init__(
        self,
        config_file: Path,
        *,
        extra_args: Sequence[str] = (),
        log_file: Path | None = None,
        port: int | None = None,
        host: str = HOST,
    ) -> None:
        self.config_file = config_file
        self.extra_args = tuple(extra_args)
        self.host = host
        self.port = port or free_port(host)
        super().__init__(log_file or config_file.with_name(f"exporter-{self.port}.log"))

    @property
    def address(self) -> str:
        """``HOST:PORT`` it listens on, IPv6 literals in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    @property
    def argv(self) -> list[str]:
        return [
            *exporter_command(),
            f"--config.file={self.config_file}",
            f"--web.listen-address={self.address}",
            *self.extra_args,
        ]

    # --- life cycle -----------------------------------------------------------------

    def start(self, ready_timeout: float = 20.0) -> Self:
        """Start the process and wait until ``/-/ready`` answers 200."""
        self._launch(self.argv, ready_timeout=ready_timeout)
        return self

    def signal(self, signum: int) -> None:
        assert self.proc is not None, "not started"
        self.proc.send_signal(signum)

    def sighup(self) -> None:
        self.signal(signal.SIGHUP)

    def sigterm(self) -> None:
        self.signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself; its exit status."""
        assert self.proc is not None, "not started"
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ExporterError(
                f"exporter still running {timeout:.0f}s later; log:\n{self.log_tail()}"
            ) from None

    # --- HTTP -----------------------------------------------------------------------

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Response:
        """One HTTP request; error statuses are returned, not raised."""
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            headers=dict(headers or {}),
            data=b"" if method in ("POST", "PUT") else None,
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return Response(error.code, error.headers, error.read())

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        return self.request(path, method="POST", **kwargs)

    def reload(self) -> Response:
        return self.post("/-/reload", timeout=30)

    def metrics_text(self) -> str:
        response = self.get("/metrics")
        if response.status != 200:
            raise ExporterError(f"/metrics answered {response.status}: {response.text}")
        return response.text

    def scrape(self) -> Scrape:
        return Scrape(self.metrics_text())

    # --- waiting --------------------------------------------------------------------

    def wait_for_scrape(
        self,
        condition: Callable[[Scrape], bool],
        *,
        timeout: float,
        what: str,
        interval: float = 0.5,
    ) -> Scrape:
        """Scrape until ``condition(scrape)`` holds; that scrape. Fails after ``timeout``,
        showing the last scrape and the log."""
        last: list[Scrape] = []

        def check() -> bool:
            scrape = self.scrape()
            last[:] = [scrape]
            return condition(scrape)

        try:
            self.wait_until(check, timeout=timeout, what=what, interval=interval)
        except ExporterError as error:
            shown = last[0].text if last else "(no scrape)"
            raise ExporterError(f"{error}\nlast scrape:\n{shown}") from None
        return last[0]

    def wait_for_targets(self, targets: Iterable[str], *, timeout: float) -> Scrape:
        """Scrape once every named target has finished a probe."""
        wanted = set(targets)
        return self.wait_for_scrape(
            lambda s: wanted <= s.targets(),
            timeout=timeout,
            what=f"probe results for {sorted(wanted)}",
        )


@contextlib.contextmanager
def running_exporter(
    config_file: Path, *, extra_args: Sequence[str] = (), ready_timeout: float = 20.0
) -> Iterator[ExporterProcess]:
    """An exporter for the ``with`` block; always stopped (killed if need be) afterwards."""
    process = ExporterProcess(config_file, extra_args=extra_args)
    try:
        process.start(ready_timeout=ready_timeout)
        yield process
    finally:
        process.stop()
