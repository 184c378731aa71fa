"""Stored results → Prometheus metric families. No I/O, no certificate parsing here.

Every per-target sample carries `target` plus the target's own labels; targets may carry
different extra labels, so samples are added with per-sample label sets.

The text format also has a fast path: each target's lines are rendered once per result
and reused on every scrape until the next probe, so a scrape of tens of thousands of
targets is mostly string joining.
"""

from __future__ import annotations

import platform
import ssl
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.results import ProbeResult, Reason
from exporter.store import ResultStore
from exporter.target import Target

_go_float = cast(Callable[[float], str], floatToGoString)
_openmetrics_latest = cast(Callable[[Collector], bytes], openmetrics.generate_latest)

#: Longest label value taken from what a server said.
MAX_LABEL_VALUE = 256


def bounded(value: str) -> str:
    """A server-controlled string cut to a sane label length."""
    return value if len(value) <= MAX_LABEL_VALUE else value[: MAX_LABEL_VALUE - 1] + "…"


def _is_session_id(token: str) -> bool:
    return len(token) >= 16 and sum(c.isdigit() for c in token) >= 3 and "/" not in token


def stable_detail(text: str) -> str:
    """The server's words with per-connection IDs masked, cut to label length.

    Big providers put a fresh ID in every reply ("... a640c23a62f3a-...si1234567ejc.123 -
    gsmtp"); as a label value that would make a new series on every failed probe. The log
    and the status page keep the words as they were.
    """
    return bounded(" ".join("…" if _is_session_id(t) else t for t in text.split()))


class _Families:
    """Metric families built lazily, in a fixed order, each with its HELP text."""

    _SPECS: tuple[tuple[str, str, str], ...] = (
        ("smtp_tls_version_supported", "gauge",
         "1 when the server accepts this TLS version, 0 when it refuses it; absent when unknown."),
        ("smtp_tls_probe_success", "gauge",
         "1 when the last probe reached a verdict for every configured version and read the "
         "certificate where TLS was offered."),
        ("smtp_tls_probe_error_info", "info",
         "Why the last probe failed: reason and the server's words."),
        ("smtp_tls_starttls_advertised", "gauge", "1 when EHLO listed STARTTLS, 0 when not."),
        ("smtp_tls_negotiated_info", "info",
         "Version and cipher a default modern client negotiates with the server."),
        ("smtp_tls_cert_not_after_timestamp_seconds", "gauge",
         "The leaf certificate's notAfter, in Unix seconds."),
        ("smtp_tls_cert_not_before_timestamp_seconds", "gauge",
         "The leaf certificate's notBefore, in Unix seconds."),
        ("smtp_tls_cert_chain_not_after_timestamp_seconds", "gauge",
         "The earliest notAfter of every certificate the server sent, in Unix seconds."),
        ("smtp_tls_cert_verified", "gauge",
         "1 when the chain leads to a trust anchor, every certificate is within its validity "
         "and the leaf matches the servername."),
        ("smtp_tls_cert_verify_error_info", "info",
         "Why the certificate does not verify."),
        ("smtp_tls_cert_info", "info", "Details of the leaf certificate."),
        ("smtp_tls_probe_duration_seconds", "gauge", "How long the last probe took."),
        ("smtp_tls_probe_timestamp_seconds", "gauge",
         "When the last probe finished, in Unix seconds."),
    )  # fmt: skip

    def __init__(self) -> None:
        # Info families are named without `_info`; their samples carry it.
        self.by_name = {
            name: Metric(name.removesuffix("_info") if kind == "info" else name, doc, kind)
            for name, kind, doc in self._SPECS
        }

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        self.by_name[name].add_sample(name, labels, value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.by_name.values())


#: Sample sink: (sample name, labels, value).
_Sink = Callable[[str, dict[str, str], float], None]

_FAMILY_ORDER = tuple(name for name, _, _ in _Families._SPECS)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str, kind: str, doc: str) -> str:
    kind = "gauge" if kind == "info" else kind
    return f"# HELP {name} {_escape_help(doc)}\n# TYPE {name} {kind}\n"


def _escape_help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


_HEADERS = {name: _header(name, kind, doc) for name, kind, doc in _Families._SPECS}


def _openmetrics_header(name: str, kind: str, doc: str) -> str:
    family = name.removesuffix("_info") if kind == "info" else name
    doc = doc.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return f"# HELP {family} {doc}\n# TYPE {family} {kind}\n"


_OPENMETRICS_HEADERS = {
    name: _openmetrics_header(name, kind, doc) for name, kind, doc in _Families._SPECS
}


def _render(target: Target, result: ProbeResult) -> dict[str, str]:
    """One target's sample lines in the text format, by family."""
    lines: dict[str, list[str]] = {}

    def sink(name: str, labels: dict[str, str], value: float) -> None:
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        lines.setdefault(name, []).append(f"{name}{{{text}}} {_go_float(value)}\n")

    _add_result(sink, target, result)
    return {name: "".join(parts) for name, parts in lines.items()}


def _target_labels(target: Target) -> dict[str, str]:
    labels = dict(target.labels)
    labels["target"] = target.name
    return labels


def _add_result(sink: _Sink, target: Target, result: ProbeResult) -> None:
    base = _target_labels(target)

    def add(name: str, value: float, **extra: str) -> None:
        sink(name, {**base, **extra} if extra else base, value)

    for version in result.versions:
        supported = version.supported
        if supported is not None:
            add("smtp_tls_version_supported", float(supported), version=version.version.value)
    add("smtp_tls_probe_success", float(result.success))
    if result.error is not None:
        add(
            "smtp_tls_probe_error_info",
            1.0,
            reason=result.error.value,
            detail=stable_detail(result.error_detail),
        )
    if result.starttls_advertised is not None:
        add("smtp_tls_starttls_advertised", float(result.starttls_advertised))
    if result.negotiated is not None:
        add(
            "smtp_tls_negotiated_info",
            1.0,
            version=bounded(result.negotiated.version),
            cipher=bounded(result.negotiated.cipher),
        )
    cert = result.certificate
    if cert is not None:
        add("smtp_tls_cert_not_after_timestamp_seconds", cert.not_after.timestamp())
        add("smtp_tls_cert_not_before_timestamp_seconds", cert.not_before.timestamp())
        add("smtp_tls_cert_chain_not_after_timestamp_seconds", cert.chain_not_after.timestamp())
        add("smtp_tls_cert_verified", float(cert.verified))
        if cert.verify_error is not None:
            add(
                "smtp_tls_cert_verify_error_info",
                1.0,
                reason=cert.verify_error.value,
                detail=bounded(cert.verify_detail),
            )
        add(
            "smtp_tls_cert_info",
            1.0,
            subject=bounded(cert.subject),
            issuer=bounded(cert.issuer),
            serial=bounded(cert.serial),
            fingerprint_sha256=cert.fingerprint_sha256,
            key_type=bounded(cert.key_type),
            key_bits=str(cert.key_bits),
            signature_algorithm=bounded(cert.signature_algorithm),
            sans=bounded(",".join(cert.sans)),
        )
    add("smtp_tls_probe_duration_seconds", result.duration)
    add("smtp_tls_probe_timestamp_seconds", result.finished)


class ResultCollector(Collector):
    """Builds every family from the store at scrape time."""

    def __init__(self, store: ResultStore) -> None:
        self._store = store
        self._rendered: dict[str, tuple[Target, ProbeResult, dict[str, str]]] = {}
        self._own = _ExporterMetrics(self)

    def collect(self) -> Iterable[Metric]:
        families = _Families()
        for target, result in self._store.snapshot():
            if result is not None:
                _add_result(families.add, target, result)
        yield from families
        yield from self._exporter_metrics()

    def render(self, content_type: str) -> bytes | None:
        """The exposition for `content_type` (the text format or OpenMetrics 1.0), the same
        bytes the client library would give, from lines rendered once per probe result;
        None for formats it does not know."""
        if content_type == CONTENT_TYPE_PLAIN_0_0_4:
            headers, own = _HEADERS, generate_latest(self._own)
        elif content_type == openmetrics.CONTENT_TYPE_LATEST:
            headers, own = _OPENMETRICS_HEADERS, _openmetrics_latest(self._own)
        else:
            return None
        by_family = self._sample_lines()
        parts = []
        for name in _FAMILY_ORDER:
            parts.append(headers[name])
            parts.extend(by_family[name])
        return "".join(parts).encode() + own

    def render_text(self) -> bytes:
        """The text format (see `render`)."""
        body = self.render(CONTENT_TYPE_PLAIN_0_0_4)
        assert body is not None
        return body

    def _sample_lines(self) -> dict[str, list[str]]:
        """Every target's sample lines by family; sample lines are the same in both formats."""
        cache = self._rendered
        fresh: dict[str, tuple[Target, ProbeResult, dict[str, str]]] = {}
        by_family: dict[str, list[str]] = {name: [] for name in _FAMILY_ORDER}
        for target, result in self._store.snapshot():
            if result is None:
                continue
            hit = cache.get(target.name)
            if hit is not None and hit[0] is target and hit[1] is result:
                rendered = hit[2]
            else:
                rendered = _render(target, result)
            fresh[target.name] = (target, result, rendered)
            for name, text in rendered.items():
                by_family[name].append(text)
        self._rendered = fresh
        return by_family

    def exporter_metrics(self) -> Iterator[Metric]:
        return self._exporter_metrics()

    def _exporter_metrics(self) -> Iterator[Metric]:
        store = self._store
        probes = Metric("smtp_tls_exporter_probes", "Probes finished since start.", "counter")
        probes.add_sample("smtp_tls_exporter_probes_total", {}, float(store.probes_total))
        yield probes
        failures = Metric(
            "smtp_tls_exporter_probe_failures", "Failed probes since start, by reason.", "counter"
        )
        counts = dict(store.failures_total)
        for reason in Reason:
            failures.add_sample(
                "smtp_tls_exporter_probe_failures_total",
                {"reason": reason.value},
                float(counts.get(reason, 0)),
            )
        yield failures
        delay = Metric(
            "smtp_tls_exporter_schedule_delay_seconds",
            "How late the most recently started probe started, past its due time.",
            "gauge",
        )
        delay.add_sample(
            "smtp_tls_exporter_schedule_delay_seconds", {}, store.schedule_delay_seconds
        )
        yield delay
        overdue = Metric(
            "smtp_tls_exporter_overdue_probes",
            "Probes past their due time still waiting for a free slot.",
            "gauge",
        )
        overdue.add_sample("smtp_tls_exporter_overdue_probes", {}, float(store.overdue_probes))
        yield overdue
        targets = Metric("smtp_tls_exporter_targets", "Targets in the running config.", "gauge")
        targets.add_sample("smtp_tls_exporter_targets", {}, float(len(store.snapshot())))
        yield targets
        reload = store.reload
        ok = Metric(
            "smtp_tls_exporter_config_last_reload_successful",
            "1 when the last load of the config file succeeded, else 0.",
            "gauge",
        )
        ok.add_sample(
            "smtp_tls_exporter_config_last_reload_successful", {}, float(reload.successful)
        )
        yield ok
        when = Metric(
            "smtp_tls_exporter_config_last_reload_success_timestamp_seconds",
            "When the config file was last loaded successfully, in Unix seconds.",
            "gauge",
        )
        when.add_sample(
            "smtp_tls_exporter_config_last_reload_success_timestamp_seconds",
            {},
            reload.last_success,
        )
        yield when
        build = Metric("smtp_tls_exporter_build", "Exporter, Python and OpenSSL versions.", "info")
        build.add_sample(
            "smtp_tls_exporter_build_info",
            {
                "version": __version__,
                "python_version": platform.python_version(),
                "openssl_version": ssl.OPENSSL_VERSION,
            },
            1.0,
        )
        yield build


class _ExporterMetrics(Collector):
    """The exporter's own few families, for the text fast path."""

    def __init__(self, owner: ResultCollector) -> None:
        self._owner = owner

    def collect(self) -> Iterable[Metric]:
        return self._owner.exporter_metrics()
