"""A real Prometheus scraping the exporter: PromQL, the Grafana dashboard's queries, and the
alert rules of deploy/prometheus/alerts.yml evaluated on real series.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dashboard import dashboard_queries
from tests.support.exporter_process import (
    HOST,
    ExporterProcess,
    free_port,
    listener_defaults,
    target_entry,
    write_config,
)
from tests.support.postfix import PostfixServers
from tests.support.prometheus import JOB, PrometheusServer, require_prometheus

pytestmark = [pytest.mark.postfix, pytest.mark.prometheus]

REPO_ROOT = Path(__file__).resolve().parent.parent
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"

LISTENER_TARGETS = ("tls10", "tls10_11", "tls12", "all", "expired", "no_starttls", "implicit")
CLOSED = "closed"
TARGETS = (*LISTENER_TARGETS, CLOSED)
#: Listeners whose series also carry `site="test"`.
LABELLED = frozenset({"tls10", "all"})


class Stack:
    """The exporter and the Prometheus scraping it."""

    def __init__(self, exporter: ExporterProcess, prometheus: PrometheusServer) -> None:
        self.exporter = exporter
        self.prometheus = prometheus

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.prometheus.query(expr)

    def by_target(self, expr: str) -> dict[str, float]:
        """Instant query results keyed by their `target` label."""
        return {r["metric"]["target"]: float(r["value"][1]) for r in self.query(expr)}


def exporter_config(postfix: PostfixServers) -> dict[str, Any]:
    targets = [
        target_entry(postfix, name, **({"labels": {"site": "test"}} if name in LABELLED else {}))
        for name in LISTENER_TARGETS
    ]
    targets.append({"host": HOST, "port": free_port(), "name": CLOSED})
    return {
        "defaults": listener_defaults(postfix),
        "targets": targets,
    }


@pytest.fixture(scope="module")
def stack(postfix: PostfixServers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require_prometheus()
    workdir = tmp_path_factory.mktemp("prometheus-stack")
    config = write_config(workdir / "exporter.yaml", exporter_config(postfix))
    exporter = ExporterProcess(config)
    prometheus = PrometheusServer(
        workdir / "prometheus",
        [f"{HOST}:{exporter.port}"],
        rule_files=[ALERTS],
        binary=binary,
    )
    try:
        exporter.start()
        exporter.wait_for_targets(TARGETS, timeout=60)
        prometheus.start()
        prometheus.wait_for_scrape_target_up(timeout=30)
        stack = Stack(exporter, prometheus)
        prometheus.wait_until(
            lambda: set(stack.by_target("smtp_tls_probe_timestamp_seconds")) == set(TARGETS),
            timeout=30,
            what="every target's series in Prometheus",
        )
        yield stack
    finally:
        prometheus.stop()
        exporter.stop()


def test_scrape_target_is_up(stack: Stack) -> None:
    (target,) = stack.prometheus.active_targets()
    assert target["health"] == "up", target
    assert target["lastError"] == ""
    assert target["labels"]["job"] == JOB
    assert stack.by_target("smtp_tls_probe_success") == {
        name: float(name != CLOSED) for name in TARGETS
    }


def test_version_series_by_promql(stack: Stack) -> None:
    (tls10,) = stack.query('smtp_tls_version_supported{target="tls10",version="1.0"}')
    assert tls10["value"][1] == "1"
    assert tls10["metric"]["job"] == JOB
    assert tls10["metric"]["site"] == "test"
    (tls12,) = stack.query('smtp_tls_version_supported{target="tls12",version="1.0"}')
    assert tls12["value"][1] == "0"
    assert stack.by_target('smtp_tls_version_supported{version="1.3"}') == {
        "tls10": 0,
        "tls10_11": 0,
        "tls12": 0,
        "all": 1,
        "expired": 1,
        "no_starttls": 0,
        "implicit": 1,
    }
    accepted = stack.query("count by (target) (smtp_tls_version_supported == 1)")
    assert {r["metric"]["target"]: r["value"][1] for r in accepted} == {
        "tls10": "1",
        "tls10_11": "2",
        "tls12": "1",
        "all": "4",
        "expired": "4",
        "implicit": "4",
    }


@pytest.mark.parametrize(
    ("title", "expr"),
    dashboard_queries(),
    ids=[f"{i}-{title}" for i, (title, _) in enumerate(dashboard_queries())],
)
def test_dashboard_query_returns_data(stack: Stack, title: str, expr: str) -> None:
    result = stack.query(expr)
    assert result, f"panel {title!r}: no data for\n{expr}"


def test_alert_rules_load_and_evaluate(stack: Stack) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = stack.prometheus.rule_groups()
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(rule["health"] != "unknown" for rule in rules):
            return rules
        return None

    rules = stack.prometheus.wait_until(evaluated, timeout=30, what="rules evaluated")
    assert {rule["health"] for rule in rules} == {"ok"}, [
        (rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"
    ]
    assert "SmtpTlsOnlyLegacyVersions" in {rule["name"] for rule in rules}


def active_alerts(stack: Stack) -> dict[str, dict[str, dict[str, Any]]]:
    """Alert name -> target (or instance) -> the alert, pending or firing."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for alert in stack.prometheus.alerts():
        assert alert["state"] in ("pending", "firing"), alert
        labels = alert["labels"]
        found.setdefault(labels["alertname"], {})[labels.get("target", labels["instance"])] = alert
    return found


def test_alerts_on_real_series(stack: Stack) -> None:
    expected = {
        "SmtpTlsOnlyLegacyVersions": {"tls10", "tls10_11"},
        "SmtpTlsVersion12Refused": {"tls10", "tls10_11"},
        "SmtpStarttlsNotAdvertised": {"no_starttls"},
        "SmtpTlsCertificateExpired": {"expired"},
        "SmtpTlsCertificateNotVerified": {"expired"},
        "SmtpTlsProbeFailing": {CLOSED},
        # Every listener that still accepts TLS 1.0, modern versions or not.
        "SmtpTlsLegacyVersionAccepted": {"tls10", "tls10_11", "all", "expired", "implicit"},
    }

    def settled() -> dict[str, dict[str, dict[str, Any]]] | None:
        alerts = active_alerts(stack)
        if {name: set(by_target) for name, by_target in alerts.items()} == expected:
            return alerts
        return None

    try:
        alerts = stack.prometheus.wait_until(settled, timeout=30, what="the expected alerts")
    except AssertionError:
        got = {name: sorted(by_target) for name, by_target in active_alerts(stack).items()}
        raise AssertionError(f"alerts: {got}\nexpected: {expected}") from None

    legacy = alerts["SmtpTlsOnlyLegacyVersions"]
    assert "all" not in legacy
    assert legacy["tls10"]["labels"]["site"] == "test"  # extra labels reach the alert
    assert legacy["tls10"]["labels"]["severity"] == "critical"
    assert legacy["tls10"]["annotations"]["summary"] == "tls10 accepts only legacy TLS versions"
    assert alerts["SmtpTlsLegacyVersionAccepted"]["tls10"]["labels"]["version"] == "1.0"
    failing = alerts["SmtpTlsProbeFailing"][CLOSED]
    assert "connect_refused" in failing["annotations"]["description"]
    not_verified = alerts["SmtpTlsCertificateNotVerified"]["expired"]
    assert "expired" in not_verified["annotations"]["description"]
