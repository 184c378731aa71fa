"""Stored results to exposition text, compared line by line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as TEXT_TYPE
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as openmetrics

from exporter.collector import ExporterCollector, ResultCollector, stable_detail
from exporter.exposition import CachedExposition, exposition_format
from exporter.results import (
    CertificateInfo,
    ChainCertificate,
    Negotiated,
    ProbeResult,
    Reason,
    Verdict,
    VerifyError,
    VersionResult,
)
from exporter.store import ResultStore, ShardStatus
from exporter.target import Target, TLSVersion
from tests.support.prometheus import PROMETHEUS_3_ACCEPT, PROMETHEUS_ACCEPT

#: The client library's OpenMetrics encoder, which it leaves untyped.
generate_openmetrics = cast(Callable[[CollectorRegistry], bytes], openmetrics.generate_latest)

#: Every Accept header the cached exposition must answer, byte for byte as the library would.
ACCEPTS = (
    PROMETHEUS_ACCEPT,
    PROMETHEUS_3_ACCEPT,
    "application/openmetrics-text",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain",
    "",
    # Escapings that rewrite names: the client library's answer, through the slow path.
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    "text/plain;version=1.0.0;escaping=dots",
)
NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2027, 1, 1, tzinfo=UTC)
INTERMEDIATE_NOT_AFTER = datetime(2026, 12, 1, tzinfo=UTC)


def _certificate() -> CertificateInfo:
    return CertificateInfo(
        subject="CN=mx1.example.org",
        issuer="CN=Example CA",
        serial="1f",
        sans=("mx1.example.org", "mx.example.org"),
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER,
        key_type="RSA",
        key_bits=2048,
        signature_algorithm="sha256WithRSAEncryption",
        fingerprint_sha256="ab" * 32,
        chain=(
            ChainCertificate(
                "CN=mx1.example.org", "CN=Example CA", NOT_BEFORE, NOT_AFTER, "ab" * 32
            ),
            ChainCertificate(
                "CN=Example CA", "CN=Root", NOT_BEFORE, INTERMEDIATE_NOT_AFTER, "cd" * 32
            ),
        ),
        verified=False,
        verify_error=VerifyError.HOSTNAME_MISMATCH,
        verify_detail="certificate is not valid for mx1.example.net",
    )


def _registry(store: ResultStore) -> CollectorRegistry:
    """The registry the exporter serves: per-target families and the exporter's own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ResultCollector(store))
    registry.register(ExporterCollector(store))
    return registry


def _scrape(store: ResultStore) -> list[str]:
    return generate_latest(_registry(store)).decode().splitlines()


def test_exposition_of_a_healthy_and_a_failing_target() -> None:
    good = Target(host="mx1.example.org", name="mx1", labels=(("site", "eu"),))
    bad = Target(host="mx2.example.org", versions=(TLSVersion.TLS1_2,))
    store = ResultStore()
    store.set_targets((good, bad), frozenset())
    store.record(
        good,
        ProbeResult(
            target="mx1",
            started=1_800_000_000.0,
            duration=0.25,
            success=True,
            error=None,
            error_detail="",
            starttls_advertised=True,
            versions=(
                VersionResult(TLSVersion.SSL3, Verdict.REFUSED, "alert handshake_failure"),
                VersionResult(TLSVersion.TLS1_0, Verdict.ACCEPTED, "", 0x002F),
                VersionResult(TLSVersion.TLS1_2, Verdict.ACCEPTED, "", 0xC02F),
                VersionResult(TLSVersion.TLS1_3, Verdict.UNKNOWN, "timed out"),
            ),
            negotiated=Negotiated("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
            certificate=_certificate(),
        ),
    )
    store.record(
        bad,
        ProbeResult(
            target="mx2.example.org:25",
            started=1_800_000_001.0,
            duration=0.5,
            success=False,
            error=Reason.GREETING_REJECTED,
            error_detail="554 5.7.1 " + "x" * 400,
            starttls_advertised=None,
            versions=(VersionResult(TLSVersion.TLS1_2, Verdict.UNKNOWN, "554"),),
            negotiated=None,
            certificate=None,
        ),
    )
    store.reloaded(True)
    lines = _scrape(store)
    expected = [
        "# HELP smtp_tls_version_supported 1 when the server accepts this TLS version, 0 when "
        "it refuses it; absent when unknown.",
        "# TYPE smtp_tls_version_supported gauge",
        'smtp_tls_version_supported{site="eu",target="mx1",version="ssl3"} 0.0',
        'smtp_tls_version_supported{site="eu",target="mx1",version="1.0"} 1.0',
        'smtp_tls_version_supported{site="eu",target="mx1",version="1.2"} 1.0',
        'smtp_tls_probe_success{site="eu",target="mx1"} 1.0',
        'smtp_tls_probe_success{target="mx2.example.org:25"} 0.0',
        'smtp_tls_starttls_advertised{site="eu",target="mx1"} 1.0',
        'smtp_tls_negotiated_info{cipher="ECDHE-RSA-AES128-GCM-SHA256",site="eu",target="mx1",'
        'version="TLSv1.2"} 1.0',
        'smtp_tls_cert_not_after_timestamp_seconds{site="eu",target="mx1"} 1.7987616e+09',
        'smtp_tls_cert_not_before_timestamp_seconds{site="eu",target="mx1"} 1.7672256e+09',
        'smtp_tls_cert_chain_not_after_timestamp_seconds{site="eu",target="mx1"} 1.7960832e+09',
        'smtp_tls_cert_verified{site="eu",target="mx1"} 0.0',
        'smtp_tls_cert_verify_error_info{detail="certificate is not valid for mx1.example.net",'
        'reason="hostname_mismatch",site="eu",target="mx1"} 1.0',
        f'smtp_tls_cert_info{{fingerprint_sha256="{"ab" * 32}",issuer="CN=Example CA",'
        'key_bits="2048",key_type="RSA",sans="mx1.example.org,mx.example.org",serial="1f",'
        'signature_algorithm="sha256WithRSAEncryption",site="eu",subject="CN=mx1.example.org",'
        'target="mx1"} 1.0',
        'smtp_tls_probe_duration_seconds{site="eu",target="mx1"} 0.25',
        'smtp_tls_probe_timestamp_seconds{site="eu",target="mx1"} 1.80000000025e+09',
        "smtp_tls_exporter_probes_total 2.0",
        'smtp_tls_exporter_probe_failures_total{reason="greeting_rejected"} 1.0',
        'smtp_tls_exporter_probe_failures_total{reason="connect_refused"} 0.0',
        "smtp_tls_exporter_targets 2.0",
        "smtp_tls_exporter_schedule_delay_seconds 0.0",
        "smtp_tls_exporter_overdue_probes 0.0",
        "smtp_tls_exporter_probes_running 0.0",
        "smtp_tls_exporter_probe_concurrency 0.0",
        "smtp_tls_exporter_event_loop_lag_seconds 0.0",
        "smtp_tls_exporter_config_last_reload_successful 1.0",
    ]
    for line in expected:
        assert line in lines, line
    # Unknown verdicts have no series; the failing target has no certificate series.
    assert not any('version="1.3"' in line for line in lines)
    assert not any(line.startswith("smtp_tls_cert") and "mx2.example.org" in line for line in lines)
    # The server's words are kept, but bounded.
    (error_line,) = [line for line in lines if line.startswith("smtp_tls_probe_error_info{")]
    assert 'reason="greeting_rejected"' in error_line
    detail = error_line.split('detail="')[1].split('"')[0]
    assert detail.startswith("554 5.7.1 xxx")
    assert len(detail) == 256
    assert any(line.startswith("smtp_tls_exporter_build_info{") for line in lines)
    helps = {line.split()[2] for line in lines if line.startswith("# HELP")}
    types = {line.split()[2] for line in lines if line.startswith("# TYPE")}
    assert helps == types


def test_openmetrics_info_families() -> None:
    text = generate_openmetrics(_registry(ResultStore())).decode()
    assert "# TYPE smtp_tls_exporter_build info" in text
    assert "# TYPE smtp_tls_exporter_probes counter" in text
    assert text.endswith("# EOF\n")


def test_targets_without_results_have_no_series_yet() -> None:
    store = ResultStore()
    store.set_targets((Target(host="mx.example.org"),), frozenset())
    lines = _scrape(store)
    assert "smtp_tls_exporter_targets 1.0" in lines
    assert not any(line.startswith("smtp_tls_probe_success{") for line in lines)
    assert "smtp_tls_exporter_config_last_reload_successful 0.0" in lines


def test_fast_text_path_gives_the_same_bytes_as_the_client_library() -> None:
    targets = (
        Target(host="mx1.example.org", name="mx1", labels=(("site", "eu"), ("zone", "a"))),
        Target(host="mx2.example.org"),
        Target(host="::1", port=2525),
    )
    store = ResultStore()
    store.set_targets(targets, frozenset())
    registry = _registry(store)
    exposition = CachedExposition(store, ExporterCollector(store))

    def record(target: Target, detail: str, cert: CertificateInfo | None) -> None:
        store.record(
            target,
            ProbeResult(
                target=target.name,
                started=1_800_000_000.123,
                duration=1.5e-3,
                success=cert is not None,
                error=None if cert else Reason.EHLO_REJECTED,
                error_detail=detail,
                starttls_advertised=True,
                versions=(
                    VersionResult(TLSVersion.TLS1_2, Verdict.ACCEPTED, ""),
                    VersionResult(TLSVersion.TLS1_0, Verdict.REFUSED, detail),
                ),
                negotiated=Negotiated("TLSv1.2", 'we"ird\\cipher'),
                certificate=cert,
            ),
        )

    record(targets[0], "", _certificate())
    record(targets[1], 'a "quoted"\nmulti-line \\ reply', None)
    assert exposition.render(TEXT_TYPE) == generate_latest(registry)
    for accept in ACCEPTS:
        encoder, content_type = choose_encoder(accept)
        body = exposition.render(content_type)
        if "escaping=dots" in accept or "escaping=values" in accept:
            assert body is None, accept  # names rewritten: left to the client library
        else:
            assert body == encoder(registry), accept
    assert exposition.render("application/unknown") is None
    # A new result replaces the rendered lines; a target without results has none.
    record(targets[0], "", None)
    assert exposition.render(TEXT_TYPE) == generate_latest(registry)
    store.set_targets(targets[1:], frozenset({"mx2.example.org:25"}))
    assert exposition.render(TEXT_TYPE) == generate_latest(registry)
    assert b'target="mx1"' not in (exposition.render(TEXT_TYPE) or b"")


def test_the_fast_path_serves_what_prometheus_asks_for() -> None:
    """The content types the client library answers Prometheus's Accept headers with (0.26
    adds `escaping=underscores` or `escaping=allow-utf-8`) are ones the fast path knows."""
    for accept in (PROMETHEUS_ACCEPT, PROMETHEUS_3_ACCEPT):
        _, content_type = choose_encoder(accept)
        assert exposition_format(content_type) == "openmetrics", accept
    for accept in ("", "text/plain;version=1.0.0;escaping=allow-utf-8"):
        _, content_type = choose_encoder(accept)
        assert exposition_format(content_type) == "text", accept
    assert exposition_format("application/openmetrics-text; version=0.0.1") is None


def test_detail_label_masks_per_connection_ids() -> None:
    gmail = (
        "421-4.7.0 [192.0.2.1] Our system has detected an unusual rate / "
        "421 4.7.0 https://support.google.com/mail/?p=UnsolicitedRateLimitError "
        "a640c23a62f3a-a9a17b9c1d2si1234567ejc.123 - gsmtp"
    )
    masked = stable_detail(gmail)
    assert "a640c23a62f3a" not in masked
    assert masked.endswith("… - gsmtp")
    assert "421 4.7.0 https://support.google.com/mail/?p=UnsolicitedRateLimitError" in masked
    other = gmail.replace(
        "a640c23a62f3a-a9a17b9c1d2si1234567ejc.123", "b7c2d3e4f5a6-b1b2c3d4e5si7654321xyz.456"
    )
    assert stable_detail(other) == masked
    assert stable_detail("mx1-eu-west.mail.protection.outlook.com said 554 5.7.1") == (
        "mx1-eu-west.mail.protection.outlook.com said 554 5.7.1"
    )


@pytest.mark.parametrize(
    ("detail", "label"),
    [
        # Addresses stay, with brackets, ports and zones.
        ("421 4.7.0 [2001:db8:1234:5678::25] too many connections",
         "421 4.7.0 [2001:db8:1234:5678::25] too many connections"),
        ("554 rejected [192.168.100.200]:25 (2001:db8::25%eth0)",
         "554 rejected [192.168.100.200]:25 (2001:db8::25%eth0)"),
        ("No route to host", "No route to host"),
        # Times of day and queue IDs change with every connection.
        ("421 mx.example.org busy at 20:37:05 +0000, try later",
         "421 mx.example.org busy at … +0000, try later"),
        ("451 4.7.1 queued as 4Zx9Kq1Jt3z2xYb7mN1p", "451 4.7.1 queued as …"),
    ],
)  # fmt: skip
def test_detail_label_keeps_addresses_and_masks_what_varies(detail: str, label: str) -> None:
    assert stable_detail(detail) == label


def test_shard_families_only_under_shard() -> None:
    store = ResultStore()
    assert not any(line.startswith("smtp_tls_exporter_shard") for line in _scrape(store))
    store.shard = ShardStatus(index=1, count=3, config_targets=14)
    lines = _scrape(store)
    assert 'smtp_tls_exporter_shard_info{shard="1",shards="3"} 1.0' in lines
    assert "smtp_tls_exporter_config_targets 14.0" in lines
