"""Stored results → Prometheus metric families. No I/O, no certificate parsing here.

Every per-target sample carries `target` plus the target's own labels; targets may carry
different extra labels, so samples are added with per-sample label sets.
"""

from __future__ import annotations

import platform
import ssl
from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.results import ProbeResult, Reason
from exporter.store import ResultStore
from exporter.target import Target

#: Longest label value taken from what a server said.
MAX_LABEL_VALUE = 256


def bounded(value: str) -> str:
    """A server-controlled string cut to a sane label length."""
    return value if len(value) <= MAX_LABEL_VALUE else value[: MAX_LABEL_VALUE - 1] + "…"


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


def _target_labels(target: Target) -> dict[str, str]:
    labels = dict(target.labels)
    labels["target"] = target.name
    return labels


def _add_result(families: _Families, target: Target, result: ProbeResult) -> None:
    base = _target_labels(target)

    def add(name: str, value: float, **extra: str) -> None:
        families.add(name, {**base, **extra} if extra else base, value)

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
            detail=bounded(result.error_detail),
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

    def collect(self) -> Iterable[Metric]:
        families = _Families()
        for target, result in self._store.snapshot():
            if result is not None:
                _add_result(families, target, result)
        yield from families
        yield from self._exporter_metrics()

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
            if reason is Reason.STARTTLS_NOT_OFFERED:
                continue  # a finding, not a failure: see smtp_tls_starttls_advertised
            failures.add_sample(
                "smtp_tls_exporter_probe_failures_total",
                {"reason": reason.value},
                float(counts.get(reason, 0)),
            )
        yield failures
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
