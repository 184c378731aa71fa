"""/metrics as Prometheus asks for it, timed, and the few facts the bench reads from it."""

from __future__ import annotations

import gzip
import http.client
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final

#: Prometheus 2.x's scrape request headers.
PROMETHEUS_ACCEPT: Final = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
_HEADERS: Final = {
    "Accept": PROMETHEUS_ACCEPT,
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
}

_SAMPLE: Final = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL: Final = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Scrape:
    """One scrape: how long it took to the last byte, what came over the wire, the text."""

    seconds: float
    status: int
    content_type: str
    wire_bytes: int
    text: str


def scrape(host: str, port: int, timeout: float = 60.0) -> Scrape:
    """GET /metrics with Prometheus's headers on a new connection, timed to the last byte."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        started = time.perf_counter()
        connection.request("GET", "/metrics", headers=_HEADERS)
        response = connection.getresponse()
        body = response.read()
        seconds = time.perf_counter() - started
    finally:
        connection.close()
    wire = len(body)
    if response.getheader("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return Scrape(
        seconds=seconds,
        status=response.status,
        content_type=response.getheader("Content-Type", ""),
        wire_bytes=wire,
        text=body.decode("utf-8", "replace"),
    )


@dataclass
class Results:
    """The per-target facts of one exposition."""

    #: target -> end of its last probe (unix seconds).
    finished: dict[str, float] = field(default_factory=dict)
    succeeded: set[str] = field(default_factory=set)
    verified: set[str] = field(default_factory=set)
    #: target -> version label -> 1.0 accepted / 0.0 refused.
    versions: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    negotiated: dict[str, str] = field(default_factory=dict)
    #: target -> SHA-256 of the leaf it presented.
    fingerprints: dict[str, str] = field(default_factory=dict)
    probes_total: float = 0.0
    #: The exporter's bound on probes at once, where it exports it.
    concurrency: float | None = None

    @property
    def targets(self) -> int:
        return len(self.finished)

    @property
    def last_finished(self) -> float:
        return max(self.finished.values(), default=0.0)


def _labels(text: str | None) -> dict[str, str]:
    return dict(_LABEL.findall(text or ""))


def read_results(text: str) -> Results:
    """Walk the exposition (text or OpenMetrics) once, keeping only what the bench checks."""
    results = Results()
    for line in text.splitlines():
        if not line.startswith("smtp_tls_"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        _add(results, match.group(1), _labels(match.group(2)), float(match.group(3)))
    return results


def _add(results: Results, name: str, labels: dict[str, str], value: float) -> None:
    target = labels.get("target", "")
    if name == "smtp_tls_probe_timestamp_seconds":
        results.finished[target] = value
    elif name == "smtp_tls_probe_success" and value == 1:
        results.succeeded.add(target)
    elif name == "smtp_tls_cert_verified" and value == 1:
        results.verified.add(target)
    elif name == "smtp_tls_version_supported":
        results.versions[target][labels.get("version", "")] = value
    elif name == "smtp_tls_cert_info":
        results.fingerprints[target] = labels.get("fingerprint_sha256", "")
    elif name == "smtp_tls_negotiated_info":
        results.negotiated[target] = labels.get("version", "")
    elif name == "smtp_tls_exporter_probes_total":
        results.probes_total = value
    elif name == "smtp_tls_exporter_probe_concurrency":
        results.concurrency = value
