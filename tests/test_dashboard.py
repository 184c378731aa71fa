"""The Grafana dashboard: structure, every panel query parses as PromQL, and the panels of the
"Mail domains" row give what they should from a real Prometheus scraping domain series."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from exporter.collector import DomainCollector, ResultCollector
from exporter.mx import MxLookup, MxStatus
from exporter.results import ProbeResult, Verdict, VersionResult
from exporter.store import DomainStatus, MxEntry, ResultStore
from exporter.target import MailDomain, Target, TLSVersion
from tests.support.dashboard import (
    DASHBOARD_PATH,
    DOMAINS_ROW,
    all_queries,
    domain_queries,
    iter_panels,
    iter_panels_by_row,
    load_dashboard,
    substitute_variables,
)
from tests.support.exporter_process import HOST
from tests.support.prometheus import PrometheusServer, require_prometheus
from tests.support.tools import require_tool

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
ALERTS = DASHBOARD_PATH.parents[1] / "prometheus" / "alerts.yml"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def test_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "smtp-tls-exporter"
    assert dashboard["id"] is None
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["title"]


def test_datasource_variable(dashboard: dict[str, Any]) -> None:
    datasource = variables(dashboard)["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"


def test_target_variable(dashboard: dict[str, Any]) -> None:
    target = variables(dashboard)["target"]
    assert target["type"] == "query"
    assert target["datasource"] == DATASOURCE_REF
    assert target["multi"] is True
    assert target["includeAll"] is True
    query = target["query"]
    if isinstance(query, dict):
        query = query["query"]
    assert query == "label_values(smtp_tls_probe_success, target)"


def test_domain_variable(dashboard: dict[str, Any]) -> None:
    domain = variables(dashboard)["domain"]
    assert domain["type"] == "query"
    assert domain["datasource"] == DATASOURCE_REF
    assert domain["multi"] is True
    assert domain["includeAll"] is True
    assert domain["allValue"] == ".*"
    assert domain["query"] == "label_values(smtp_tls_mx_lookup_success, domain)"


def test_panel_ids_unique_and_on_grid(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]] + [
        p["id"] for row in dashboard["panels"] for p in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_panel_uses_datasource_variable(dashboard: dict[str, Any]) -> None:
    panels = list(iter_panels(dashboard))
    assert panels
    for panel in panels:
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE_REF) == DATASOURCE_REF, panel["title"]


def test_every_query_filters_on_target(dashboard: dict[str, Any]) -> None:
    """Host series filter on $target, a domain's series on $domain; smtp_tls_mx_info, which
    names both, on both."""
    for panel in iter_panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            selectors = re.findall(r"\b(smtp_tls_\w+)(\{[^}]*\})?", expr)
            assert selectors, (panel["title"], expr)
            for metric, matchers in selectors:
                domain_series = metric.startswith("smtp_tls_mx_")
                if not domain_series or metric == "smtp_tls_mx_info":
                    assert 'target=~"$target"' in matchers, (panel["title"], metric)
                if domain_series:
                    assert 'domain=~"$domain"' in matchers, (panel["title"], metric)


def test_required_panels_present(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(t["expr"] for p in iter_panels(dashboard) for t in p["targets"])
    for metric in (
        "smtp_tls_version_supported",
        "smtp_tls_cert_not_after_timestamp_seconds",
        "smtp_tls_cert_verified",
        "smtp_tls_probe_success",
        "smtp_tls_probe_error_info",
        "smtp_tls_probe_duration_seconds",
        "smtp_tls_starttls_advertised",
        "smtp_tls_negotiated_info",
    ):
        assert metric in exprs, metric
    matrix = next(p for p in iter_panels(dashboard) if p["title"] == "TLS versions by target")
    grouping = next(t for t in matrix["transformations"] if t["id"] == "groupingToMatrix")
    assert grouping["options"]["rowField"] == "target"
    assert grouping["options"]["columnField"] == "version"


def test_mail_domains_row(dashboard: dict[str, Any]) -> None:
    panels = {panel["title"]: panel for row, panel in iter_panels_by_row(dashboard)
              if row == DOMAINS_ROW}  # fmt: skip
    assert set(panels) >= {"Domains failing", "MX hosts by domain", "MX look-ups"}
    exprs = " ".join(t["expr"] for p in panels.values() for t in p["targets"])
    for metric in (
        "smtp_tls_mx_info",
        "smtp_tls_mx_lookup_success",
        "smtp_tls_mx_lookup_info",
        "smtp_tls_mx_hosts",
        "smtp_tls_mx_lookup_timestamp_seconds",
    ):
        assert metric in exprs, metric
    # One row per domain and MX host: every query of the table is by (domain, target,
    # preference), merged into columns.
    hosts = panels["MX hosts by domain"]
    for target in hosts["targets"]:
        assert target["expr"].startswith("max by (domain, target, preference) ("), target
        assert target["format"] == "table"
    assert hosts["transformations"][0]["id"] == "merge"
    columns = hosts["transformations"][-1]["options"]["renameByName"]
    assert set(columns.values()) >= {"Domain", "MX host", "Preference", "TLS 1.2", "TLS 1.3"}
    lookups = panels["MX look-ups"]["transformations"][-1]["options"]["renameByName"]
    assert set(lookups.values()) >= {"Domain", "Status", "MX hosts", "Detail"}
    # A stat says 0, not "No data", when no domain fails.
    assert panels["Domains failing"]["targets"][0]["expr"].endswith(" or vector(0)")


def test_queries_substituted() -> None:
    queries = all_queries()
    assert len(queries) >= 20
    for title, expr in queries:
        assert "$" not in expr, title
        assert 'target=~".*"' in expr or 'domain=~".*"' in expr, title


def test_domain_queries_are_those_of_the_domains_row() -> None:
    titles = {title for title, _ in domain_queries()}
    assert titles >= {"Domains failing", "MX hosts by domain", "MX look-ups"}
    for _title, expr in domain_queries():
        assert "smtp_tls_mx_" in expr


def test_queries_parse(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr}
        for n, (_title, expr) in enumerate(all_queries(), start=1)
    ]
    rules_file = tmp_path / "dashboard-queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_dashboard_path_is_the_deployed_one() -> None:
    assert DASHBOARD_PATH.parts[-3:] == ("deploy", "grafana", "dashboard.json")


# --- the "Mail domains" row against a real Prometheus -------------------------------------
#
# The series are the exporter's own: its collectors render a store holding MX hosts' probe
# results and domains' look-ups, served to a real Prometheus as a scrape target.

MODERN = {"1.0": False, "1.1": False, "1.2": True, "1.3": True}
LEGACY_ONLY = {"1.0": True, "1.1": True, "1.2": False, "1.3": False}
#: MX host -> its verdicts (absent: unknown) and whether EHLO listed STARTTLS.
HOSTS: dict[str, tuple[dict[str, bool], bool]] = {
    "mx1.partner.example": (MODERN, True),
    "mx2.partner.example": (LEGACY_ONLY, True),
    "mx.hoster.example": (LEGACY_ONLY, True),
    "mx.modern.example": (MODERN, True),
    "mx.plain.example": ({v: False for v in MODERN}, False),
    "mx.unknown.example": ({"1.1": True, "1.3": False}, True),
}
#: Domain -> look-up status and its MX hosts with their preference.
DOMAINS: dict[str, tuple[MxStatus, tuple[tuple[str, int], ...]]] = {
    "partner.example": (MxStatus.OK, (("mx1.partner.example", 10), ("mx2.partner.example", 20))),
    # Hosted mail: one MX host for two domains.
    "a.example": (MxStatus.OK, (("mx.hoster.example", 10),)),
    "b.example": (MxStatus.OK, (("mx.hoster.example", 0),)),
    "modern.example": (MxStatus.OK, (("mx.modern.example", 10),)),
    "plain.example": (MxStatus.OK, (("mx.plain.example", 10),)),
    "unknown.example": (MxStatus.OK, (("mx.unknown.example", 10),)),
    "null.example": (MxStatus.NULL_MX, ()),
    "nothing.example": (MxStatus.NO_MAIL_HOST, ()),
    "nx.example": (MxStatus.NXDOMAIN, ()),
}
#: The stats of the row, with these domains.
STATS = {
    "Mail domains": 9,
    # partner, a, b and plain (an MX host refusing TLS 1.2), nothing and nx.
    "Domains failing": 6,
    "MX look-ups failing": 1,
    "Domains with an MX host refusing TLS 1.2": 4,
    # a and b; not partner (its first MX is modern) nor unknown (TLS 1.2 unknown).
    "Domains with only legacy TLS": 2,
}


def domain_store() -> ResultStore:
    """MX hosts with their last probe, and every domain of DOMAINS looked up."""
    store = ResultStore()
    targets = {host: Target(host=host) for host in HOSTS}
    store.set_targets(tuple(targets.values()), frozenset())
    now = time.time()
    for host, (verdicts, starttls) in HOSTS.items():
        versions = tuple(
            VersionResult(TLSVersion(v), Verdict.ACCEPTED if ok else Verdict.REFUSED)
            for v, ok in verdicts.items()
        )
        result = ProbeResult(
            target=targets[host].name, started=now - 1, duration=0.5,
            success=len(versions) == len(MODERN), error=None, error_detail="",
            starttls_advertised=starttls, versions=versions, negotiated=None, certificate=None,
        )  # fmt: skip
        store.record(targets[host], result)
    domains = []
    for name, (status, mx) in DOMAINS.items():
        domain = MailDomain(name, Target(host=name), (("partner", name.split(".")[0]),))
        hosts = tuple(MxEntry(host, preference) for host, preference in mx)
        lookup = MxLookup(name, status, detail="" if status is MxStatus.OK else status.value)
        domains.append(DomainStatus(domain, lookup, now, hosts))
    store.set_domains(tuple(domains))
    return store


class _Exposition(BaseHTTPRequestHandler):
    """Answers every GET with the exposition in `body`."""

    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per scrape on stderr."""


@pytest.fixture(scope="module")
def domain_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping the domain series, until every domain is in it."""
    binary = require_prometheus()
    store = domain_store()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ResultCollector(store))
    registry.register(DomainCollector(store))
    handler = type("Exposition", (_Exposition,), {"body": generate_latest(registry)})
    server = ThreadingHTTPServer((HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    prometheus = PrometheusServer(
        tmp_path_factory.mktemp("prometheus-domains"),
        [f"{HOST}:{server.server_address[1]}"],
        rule_files=[ALERTS],
        binary=binary,
    )
    try:
        prometheus.start()
        prometheus.wait_for_scrape_target_up(timeout=30)
        prometheus.wait_until(
            lambda: (
                len(prometheus.query("smtp_tls_mx_lookup_success")) == len(DOMAINS)
                and len(prometheus.query("smtp_tls_probe_success")) == len(HOSTS)
            ),
            timeout=30,
            what="every domain's and MX host's series",
        )
        yield prometheus
    finally:
        prometheus.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("title", "expr"),
    domain_queries(),
    ids=[f"{i}-{title}" for i, (title, _) in enumerate(domain_queries())],
)
def test_domain_query_returns_data(
    domain_prometheus: PrometheusServer, title: str, expr: str
) -> None:
    assert domain_prometheus.query(expr), f"panel {title!r}: no data for\n{expr}"


@pytest.mark.prometheus
def test_domain_stats(domain_prometheus: PrometheusServer) -> None:
    got = {}
    for title, expr in domain_queries():
        if title in STATS:
            (sample,) = domain_prometheus.query(expr)
            got[title] = float(sample["value"][1])
    assert got == STATS


def _panel_query(title: str, ref: str) -> str:
    """A query of a panel of the row, by panel title and refId, variables substituted."""
    row = [panel for row, panel in iter_panels_by_row(load_dashboard()) if row == DOMAINS_ROW]
    (panel,) = (panel for panel in row if panel["title"] == title)
    (target,) = (t for t in panel["targets"] if t["refId"] == ref)
    return substitute_variables(target["expr"])


def _rows(prometheus: PrometheusServer, expr: str, *labels: str) -> dict[tuple[str, ...], str]:
    """The instant query's values keyed by the values of `labels`."""
    return {tuple(r["metric"][n] for n in labels): r["value"][1] for r in prometheus.query(expr)}


def _by_domain(prometheus: PrometheusServer, expr: str) -> dict[str, str]:
    """The same keyed by domain, for domains with one row each."""
    return {domain: value for (domain,), value in _rows(prometheus, expr, "domain").items()}


@pytest.mark.prometheus
def test_mx_hosts_table(domain_prometheus: PrometheusServer) -> None:
    """One row per domain and MX host (a hosted host under each of its domains), with the
    host's verdicts; an unknown verdict is no value."""
    labels = ("domain", "target", "preference")
    rows = _rows(domain_prometheus, _panel_query("MX hosts by domain", "A"), *labels)
    assert set(rows) == {
        (domain, f"{host}:25", str(preference))
        for domain, (_, mx) in DOMAINS.items()
        for host, preference in mx
    }
    tls12 = _rows(domain_prometheus, _panel_query("MX hosts by domain", "B"), "domain", "target")
    assert tls12 == {
        ("partner.example", "mx1.partner.example:25"): "1",
        ("partner.example", "mx2.partner.example:25"): "0",
        ("a.example", "mx.hoster.example:25"): "0",
        ("b.example", "mx.hoster.example:25"): "0",
        ("modern.example", "mx.modern.example:25"): "1",
        ("plain.example", "mx.plain.example:25"): "0",
    }
    legacy = _rows(domain_prometheus, _panel_query("MX hosts by domain", "D"), "domain", "target")
    assert legacy[("b.example", "mx.hoster.example:25")] == "1"
    assert legacy[("partner.example", "mx1.partner.example:25")] == "0"
    starttls = _rows(domain_prometheus, _panel_query("MX hosts by domain", "E"), "target")
    assert starttls[("mx.plain.example:25",)] == "0"


@pytest.mark.prometheus
def test_mx_lookups_table(domain_prometheus: PrometheusServer) -> None:
    statuses = _rows(domain_prometheus, _panel_query("MX look-ups", "A"), "domain", "status")
    assert set(statuses) == {(domain, status.value) for domain, (status, _) in DOMAINS.items()}
    hosts = _by_domain(domain_prometheus, _panel_query("MX look-ups", "B"))
    assert hosts == {domain: str(len(mx)) for domain, (_, mx) in DOMAINS.items()}
    ages = _by_domain(domain_prometheus, _panel_query("MX look-ups", "C"))
    assert all(0 <= float(age) < 300 for age in ages.values()), ages


@pytest.mark.prometheus
def test_domains_failing_are_those_the_alerts_name(domain_prometheus: PrometheusServer) -> None:
    """On the same series, the domain alerts (pending: their `for` has not passed) name the
    domains the "Domains failing" stat counts; none names a null MX."""
    expected = {
        "SmtpTlsDomainVersion12Refused": {"partner.example", "a.example", "b.example",
                                          "plain.example"},
        "SmtpTlsDomainOnlyLegacyVersions": {"a.example", "b.example"},
        "SmtpTlsDomainMxLookupFailing": {"nx.example"},
        "SmtpTlsDomainNoMailHost": {"nothing.example"},
    }  # fmt: skip

    def domain_alerts() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for alert in domain_prometheus.alerts():
            labels = alert["labels"]
            if "domain" in labels:
                found.setdefault(labels["alertname"], set()).add(labels["domain"])
        return found

    try:
        domain_prometheus.wait_until(
            lambda: domain_alerts() == expected, timeout=30, what="the domain alerts"
        )
    except AssertionError:
        raise AssertionError(f"alerts: {domain_alerts()}\nexpected: {expected}") from None
    failing = set().union(*expected.values())
    assert len(failing) == STATS["Domains failing"]
    # The domain's own labels reach its alerts.
    for alert in domain_prometheus.alerts():
        labels = alert["labels"]
        if "domain" in labels:
            assert labels["partner"] == labels["domain"].split(".")[0], alert
