"""The Grafana dashboard: structure, every panel query parses as PromQL, and the panels of the
"Mail domains", "Transport policy" and "Senders" rows give what they should from a real
Prometheus scraping domain series and hosts' sender verdicts."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from exporter.collector import DOMAIN_FAMILIES, DomainCollector, ResultCollector
from exporter.dane import DaneResult, Tlsa
from exporter.mtasts import Mode, Policy, Result, StsRecord
from exporter.mtastsfetch import PolicyFetch
from exporter.mx import MxLookup, MxStatus
from exporter.policies import DomainPolicy
from exporter.policydns import (
    DnssecLookup,
    DnssecStatus,
    RecordLookup,
    RecordStatus,
    TlsaLookup,
    TlsaStatus,
)
from exporter.results import (
    CertificateInfo,
    ProbeResult,
    SenderResult,
    Verdict,
    VerifyError,
    VersionResult,
)
from exporter.store import DomainStatus, MxEntry, ResultStore
from exporter.target import MailDomain, Target, TLSVersion
from exporter.tlsrpt import TlsRptRecord
from tests.support.dashboard import (
    DASHBOARD_PATH,
    DOMAIN_ROWS,
    DOMAINS_ROW,
    POLICY_ROW,
    SENDERS_ROW,
    all_queries,
    domain_queries,
    iter_panels,
    iter_panels_by_row,
    load_dashboard,
    sender_queries,
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


#: The domain series (`domain` and the domain's labels), as the exporter names them.
DOMAIN_SERIES = frozenset(name for name, _kind, _doc in DOMAIN_FAMILIES)
#: Domain series that name an MX host too.
DOMAIN_HOST_SERIES = frozenset(
    {"smtp_tls_mx_info", "smtp_tls_mta_sts_mx_covered", "smtp_tls_dane_tlsa_lookup_info"}
)


def test_every_query_filters_on_target(dashboard: dict[str, Any]) -> None:
    """Host series filter on $target, a domain's series on $domain; those that name both a
    domain and an MX host (smtp_tls_mx_info, ...) on both."""
    for panel in iter_panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            selectors = re.findall(r"\b(smtp_tls_\w+)(\{[^}]*\})?", expr)
            assert selectors, (panel["title"], expr)
            for metric, matchers in selectors:
                domain_series = metric in DOMAIN_SERIES
                if not domain_series or metric in DOMAIN_HOST_SERIES:
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


def test_transport_policy_row(dashboard: dict[str, Any]) -> None:
    panels = {panel["title"]: panel for row, panel in iter_panels_by_row(dashboard)
              if row == POLICY_ROW}  # fmt: skip
    assert set(panels) >= {
        *POLICY_STATS,
        "Transport policy by domain",
        "MX hosts: MTA-STS and DANE",
    }
    exprs = " ".join(t["expr"] for p in panels.values() for t in p["targets"])
    # smtp_tls_dnssec_secure aside: the table shows smtp_tls_dnssec_info's status.
    for metric in (
        "smtp_tls_mta_sts_policy_valid",
        "smtp_tls_mta_sts_info",
        "smtp_tls_mta_sts_policy_info",
        "smtp_tls_mta_sts_policy_max_age_seconds",
        "smtp_tls_mta_sts_mx_covered",
        "smtp_tls_mta_sts_policy_changed_without_id",
        "smtp_tls_tlsrpt_record_valid",
        "smtp_tls_tlsrpt_info",
        "smtp_tls_dnssec_info",
        "smtp_tls_dane_tlsa_lookup_info",
        "smtp_tls_dane_tlsa_match",
        "smtp_tls_address_dane_tlsa_match",
        "smtp_tls_dane_rollover_ready",
        "smtp_tls_dane_info",
        "smtp_tls_cert_verified",
    ):
        assert metric in exprs, metric
    for title in POLICY_STATS:
        # A stat says 0, not "No data", when no domain has the problem.
        assert panels[title]["targets"][0]["expr"].endswith(" or vector(0)"), title
    # One row per domain, and one per domain and MX host, merged from their queries.
    domains = panels["Transport policy by domain"]
    assert domains["transformations"][0]["id"] == "merge"
    columns = domains["transformations"][-1]["options"]["renameByName"]
    assert set(columns.values()) >= {"Domain", "MTA-STS", "Mode", "Policy id", "Max age",
                                     "TLS-RPT", "DNSSEC"}  # fmt: skip
    hosts = panels["MX hosts: MTA-STS and DANE"]
    assert hosts["transformations"][0]["id"] == "merge"
    columns = hosts["transformations"][-1]["options"]["renameByName"]
    assert set(columns.values()) >= {"Domain", "MX host", "MTA-STS covers", "Certificate",
                                     "TLSA", "DANE", "Rollover ready"}  # fmt: skip
    for table in (domains, hosts):
        for target in table["targets"]:
            assert target["format"] == "table", (table["title"], target["refId"])
            assert target["expr"].startswith(("max by (domain, ", "max by (domain)")), target


def test_senders_row(dashboard: dict[str, Any]) -> None:
    panels = {panel["title"]: panel for row, panel in iter_panels_by_row(dashboard)
              if row == SENDERS_ROW}  # fmt: skip
    assert set(panels) == {*SENDER_STATS, "Senders by target"}
    for title in SENDER_STATS:
        # A stat says 0, not "No data", when every sender gets through.
        assert panels[title]["targets"][0]["expr"].endswith(" or vector(0)"), title
    exprs = " ".join(t["expr"] for p in panels.values() for t in p["targets"])
    for metric in (
        "smtp_tls_sender_compatible",
        "smtp_tls_sender_info",
        "smtp_tls_sender_important",
    ):
        assert metric in exprs, metric
    table = panels["Senders by target"]
    assert table["transformations"][0]["id"] == "merge"
    for target in table["targets"]:
        assert target["format"] == "table", target["refId"]
        assert target["expr"].startswith("max by (target, profile"), target["refId"]
    columns = table["transformations"][-1]["options"]["renameByName"]
    assert set(columns.values()) == {"Target", "Sender", "Result", "Version", "Cipher",
                                     "What failed", "Detail", "Important"}  # fmt: skip


def test_tables_merge_on_their_row_labels_only(dashboard: dict[str, Any]) -> None:
    """The merge of a table's queries joins rows on the labels every query has; any other
    label two queries share would split rows, so those are renamed (label_replace)."""
    for row, panel in iter_panels_by_row(dashboard):
        if row not in (*DOMAIN_ROWS, SENDERS_ROW) or panel["type"] != "table":
            continue
        by = [re.search(r"max by \(([^)]*)\)", t["expr"]) for t in panel["targets"]]
        assert all(by), panel["title"]
        labels = [{name.strip() for name in m.group(1).split(",")} for m in by if m]
        common = set.intersection(*labels)
        for i, these in enumerate(labels):
            for other in labels[i + 1 :]:
                assert these & other == common, (panel["title"], these, other)


def test_queries_substituted() -> None:
    queries = all_queries()
    assert len(queries) >= 20
    for title, expr in queries:
        # Only label_replace's references to its groups ($1) are left.
        assert not re.search(r"\$(?!\d)", expr), title
        assert 'target=~".*"' in expr or 'domain=~".*"' in expr, title


def test_domain_queries_are_those_of_the_domain_rows() -> None:
    titles = {title for title, _ in domain_queries()}
    assert titles >= {"Domains failing", "MX hosts by domain", "MX look-ups", *POLICY_STATS}
    for title, expr in domain_queries():
        assert set(re.findall(r"\bsmtp_tls_\w+", expr)) & DOMAIN_SERIES, title


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


# --- the "Mail domains", "Transport policy" and "Senders" rows against a real Prometheus ----
#
# The series are the exporter's own: its collectors render a store holding MX hosts' probe
# results (with their certificates, DANE matches and senders' verdicts) and domains' look-ups
# with their policies, served to a real Prometheus as a scrape target.

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
    "mx.policy.example": (MODERN, True),
}
#: MX host -> whether its certificate verifies (absent: no certificate read).
CERTIFICATES = {
    "mx1.partner.example": True,
    "mx2.partner.example": True,
    "mx.hoster.example": False,
    "mx.modern.example": True,
    "mx.policy.example": True,
}
#: MX host -> its chain against its DNSSEC-validated TLSA records: (matched, rollover ready).
#: Only where DANE applies: its TLSA look-up is secure in every domain that names it.
DANE = {
    "mx.modern.example": (True, True),
    "mx.hoster.example": (False, False),
    "mx.policy.example": (True, False),
}
#: The senders whose incompatibility alerts, as the config's important_senders.
IMPORTANT_SENDERS = ("exchange-online", "postfix")
TLS12, TLS11, TLS13 = 0x0303, 0x0302, 0x0304
ECDHE_RSA_AES256_GCM, ECDHE_RSA_AES128_CBC = 0xC030, 0xC013
AES128_GCM_TLS13, AES256_GCM_TLS13 = 0x1301, 0x1302


def compatible(profile: str, version: int, suite: int) -> SenderResult:
    return SenderResult(profile, "compatible", version=version, suite=suite)


def incompatible(
    profile: str, failure: str, detail: str, version: int | None = None
) -> SenderResult:
    return SenderResult(profile, "incompatible", failure, detail, version=version)


#: MX host -> what each sender it tests gets (exchange-online and gmail; postfix on two).
SENDERS: dict[str, tuple[SenderResult, ...]] = {
    "mx1.partner.example": (
        compatible("exchange-online", TLS12, ECDHE_RSA_AES256_GCM),
        compatible("gmail", TLS13, AES128_GCM_TLS13),
    ),
    # Legacy-only: Exchange Online sends with TLS 1.2 alone; Gmail still takes TLS 1.1.
    "mx2.partner.example": (
        incompatible("exchange-online", "version",
                     "server chose TLSv1.1; exchange-online offers TLSv1.2 to TLSv1.2", TLS11),
        compatible("gmail", TLS11, ECDHE_RSA_AES128_CBC),
    ),
    "mx.hoster.example": (
        incompatible("exchange-online", "version",
                     "server chose TLSv1.1; exchange-online offers TLSv1.2 to TLSv1.2", TLS11),
        compatible("gmail", TLS11, ECDHE_RSA_AES128_CBC),
    ),
    # Exchange Online gets through; Postfix (important) does not: TLS 1.3 with a
    # finite-field group alone.
    "mx.modern.example": (
        compatible("exchange-online", TLS12, ECDHE_RSA_AES256_GCM),
        compatible("gmail", TLS13, AES128_GCM_TLS13),
        incompatible("postfix", "group", "server chose ffdhe2048, which postfix does not offer",
                     TLS13),
    ),
    "mx.plain.example": (
        incompatible("exchange-online", "no_starttls", "EHLO does not offer STARTTLS"),
        incompatible("gmail", "no_starttls", "EHLO does not offer STARTTLS"),
    ),
    "mx.unknown.example": (
        SenderResult("exchange-online", "unknown", detail="read timeout"),
        SenderResult("gmail", "unknown", detail="read timeout"),
    ),
    # TLS 1.2 and 1.3 accepted with an ECDSA certificate alone: Exchange Online offers no
    # suite for it.
    "mx.policy.example": (
        incompatible("exchange-online", "alert", "alert handshake_failure"),
        compatible("gmail", TLS13, AES128_GCM_TLS13),
        compatible("postfix", TLS13, AES256_GCM_TLS13),
    ),
}  # fmt: skip
#: The stats of the "Senders" row, with these senders.
SENDER_STATS = {
    "Hosts Exchange Online cannot deliver to": 4,  # mx2.partner, hoster, plain, policy
    "Hosts an important sender cannot deliver to": 5,  # those and modern (postfix)
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
    "policy.example": (MxStatus.OK, (("mx.policy.example", 10),)),
    # A validating resolver answers SERVFAIL for a zone whose signatures fail.
    "bogus.example": (MxStatus.SERVFAIL, ()),
}


@dataclass(frozen=True)
class Published:
    """What a domain publishes, as the policy look-up finds it."""

    #: A valid MTA-STS policy; or why there is none: the record's status (invalid, DNS
    #: failure) or the fetch's result, with the detail; None: no _mta-sts record.
    sts: Policy | tuple[RecordStatus | Result, str] | None = None
    changed_without_id: bool = False
    tlsrpt: RecordStatus = RecordStatus.ABSENT
    dnssec: DnssecStatus = DnssecStatus.INSECURE
    #: MX host -> its TLSA look-up's status; hosts not named have no TLSA records.
    tlsa: tuple[tuple[str, TlsaStatus], ...] = ()


ENFORCE_WEEK = 604800
#: Domain -> its policies. Every domain is looked up (null MX and NXDOMAIN too).
POLICIES: dict[str, Published] = {
    # Every policy in order: enforced, its MX host covered, DANE matching and ready for a
    # new key (a DANE-TA record too).
    "modern.example": Published(
        Policy(Mode.ENFORCE, ENFORCE_WEEK, ("mx.modern.example",)), tlsrpt=RecordStatus.VALID,
        dnssec=DnssecStatus.SECURE, tlsa=(("mx.modern.example", TlsaStatus.SECURE),),
    ),
    # Enforced, the second MX not covered; TLS-RPT record broken; mx2's TLSA records bogus.
    "partner.example": Published(
        Policy(Mode.ENFORCE, ENFORCE_WEEK, ("mx1.partner.example",)),
        tlsrpt=RecordStatus.INVALID, tlsa=(("mx2.partner.example", TlsaStatus.BOGUS),),
    ),
    # Hosted mail: a testing policy covers the host, whose certificate does not verify and
    # whose chain does not match its TLSA records (DANE fails for b.example too).
    "a.example": Published(
        Policy(Mode.TESTING, 86400, ("*.hoster.example",)), tlsrpt=RecordStatus.VALID,
        dnssec=DnssecStatus.SECURE, tlsa=(("mx.hoster.example", TlsaStatus.SECURE),),
    ),
    "b.example": Published(
        (Result.WEBPKI_INVALID, "certificate: certificate has expired"),
        dnssec=DnssecStatus.SECURE, tlsa=(("mx.hoster.example", TlsaStatus.SECURE),),
    ),
    # Enforced on a host without STARTTLS.
    "plain.example": Published(Policy(Mode.ENFORCE, 86400, ("mx.plain.example",))),
    # Mode none: nothing covered, nothing enforced; TLSA records published unsigned.
    "unknown.example": Published(
        Policy(Mode.NONE, 86400, ()), tlsa=(("mx.unknown.example", TlsaStatus.INSECURE),)
    ),
    # The policy changed under the same id; one DANE-EE record, for today's key only.
    "policy.example": Published(
        Policy(Mode.ENFORCE, ENFORCE_WEEK, ("mx.policy.example",)), changed_without_id=True,
        tlsrpt=RecordStatus.VALID, dnssec=DnssecStatus.SECURE,
        tlsa=(("mx.policy.example", TlsaStatus.SECURE),),
    ),
    "bogus.example": Published(
        (RecordStatus.DNS_FAILURE, "TXT of _mta-sts.bogus.example: SERVFAIL"),
        tlsrpt=RecordStatus.DNS_FAILURE, dnssec=DnssecStatus.BOGUS,
    ),
    "null.example": Published(dnssec=DnssecStatus.SECURE),
}  # fmt: skip
#: The stats of the row, with these domains.
STATS = {
    "Mail domains": 11,
    # partner, a, b and plain (an MX host refusing TLS 1.2), nothing, nx and bogus.
    "Domains failing": 7,
    "MX look-ups failing": 2,
    "Domains with an MX host refusing TLS 1.2": 4,
    # a and b; not partner (its first MX is modern) nor unknown (TLS 1.2 unknown).
    "Domains with only legacy TLS": 2,
}
#: The stats of the "Transport policy" row, with these policies.
POLICY_STATS = {
    # partner, a, b, plain, policy and bogus; not unknown (mode none) nor modern.
    "Domains with a transport policy problem": 6,
    "MTA-STS broken": 2,  # b (the policy host's certificate), bogus (the DNS)
    "Enforced MTA-STS failing an MX host": 2,  # partner (mx2 not covered), plain (no STARTTLS)
    "TLS-RPT broken": 2,  # partner, bogus
    "DANE mismatches": 2,  # a and b, through their one host
    "DNSSEC bogus": 2,  # bogus (its MX answer), partner (mx2's TLSA records)
}
#: A DANE-EE record (SHA-256 of a key) and a DANE-TA record: what secure TLSA look-ups found.
TLSA_RECORDS = (Tlsa(3, 1, 1, bytes(32)), Tlsa(2, 0, 1, bytes(range(32))))


def certificate(host: str, verified: bool) -> CertificateInfo:
    now = datetime.now(UTC)
    return CertificateInfo(
        subject=f"CN={host}", issuer="CN=Test CA" if verified else f"CN={host}", serial="01",
        sans=(host,), not_before=now - timedelta(days=30), not_after=now + timedelta(days=60),
        key_type="EC", key_bits=256, signature_algorithm="ecdsa-with-SHA256",
        fingerprint_sha256="00" * 32, chain=(), verified=verified,
        verify_error=None if verified else VerifyError.SELF_SIGNED,
        verify_detail="" if verified else "self-signed certificate",
    )  # fmt: skip


def dane_result(matched: bool, rollover_ready: bool) -> DaneResult:
    if not matched:
        return DaneResult(False, (), 2, False, "none of 2 usable records matches the chain")
    return DaneResult(True, (TLSA_RECORDS[0].text(),), 2, rollover_ready,
                      "1 of 2 usable records match")  # fmt: skip


def domain_policy(name: str, hosts: tuple[str, ...], published: Published) -> DomainPolicy:
    """The policy look-up's result for what `name` publishes."""
    record: RecordLookup[StsRecord] = RecordLookup(name, RecordStatus.ABSENT)
    valid = RecordLookup(name, RecordStatus.VALID, StsRecord(name.split(".")[0] + "2024"))
    fetched = None
    if isinstance(published.sts, Policy):
        record, fetched = valid, PolicyFetch(Result.VALID, published.sts)
    elif published.sts is not None:
        why, detail = published.sts
        if isinstance(why, RecordStatus):
            failure = MxStatus.SERVFAIL if why is RecordStatus.DNS_FAILURE else None
            record = RecordLookup(name, why, failure=failure, detail=detail)
        else:
            record, fetched = valid, PolicyFetch(why, detail=detail)
    report = TlsRptRecord((f"mailto:tls-reports@{name}",))
    tlsrpt: RecordLookup[TlsRptRecord] = RecordLookup(
        name, published.tlsrpt, report if published.tlsrpt is RecordStatus.VALID else None,
        detail={RecordStatus.INVALID: f"_smtp._tls.{name}: the record has no rua"}.get(
            published.tlsrpt, ""),
    )  # fmt: skip
    dnssec = DnssecLookup(name, published.dnssec, detail=f"MX of {name}: {published.dnssec}")
    statuses = dict(published.tlsa)
    tlsa = []
    for host in hosts:
        status = statuses.get(host, TlsaStatus.NO_RECORDS)
        found = TLSA_RECORDS if status in (TlsaStatus.SECURE, TlsaStatus.INSECURE) else ()
        lookup = TlsaLookup(host, 25, status, found, host, status is TlsaStatus.SECURE,
                            detail=f"_25._tcp.{host}: {status}")  # fmt: skip
        tlsa.append((host, lookup))
    return DomainPolicy(record, fetched, published.changed_without_id, None, tlsrpt, dnssec,
                        tuple(tlsa))  # fmt: skip


def domain_store() -> ResultStore:
    """MX hosts with their last probe, and every domain of DOMAINS looked up with the
    policies of POLICIES (none published where it has no entry)."""
    store = ResultStore()
    targets = {host: Target(host=host, important_senders=IMPORTANT_SENDERS) for host in HOSTS}
    store.set_targets(tuple(targets.values()), frozenset())
    now = time.time()
    for host, (verdicts, starttls) in HOSTS.items():
        versions = tuple(
            VersionResult(TLSVersion(v), Verdict.ACCEPTED if ok else Verdict.REFUSED)
            for v, ok in verdicts.items()
        )
        verified = CERTIFICATES.get(host)
        dane = DANE.get(host)
        result = ProbeResult(
            target=targets[host].name, started=now - 1, duration=0.5,
            success=len(versions) == len(MODERN), error=None, error_detail="",
            starttls_advertised=starttls, versions=versions, negotiated=None,
            certificate=None if verified is None else certificate(host, verified),
            dane=None if dane is None else dane_result(*dane), senders=SENDERS.get(host, ()),
        )  # fmt: skip
        store.record(targets[host], result)
    domains = []
    for name, (status, mx) in DOMAINS.items():
        domain = MailDomain(name, Target(host=name), (("partner", name.split(".")[0]),))
        hosts = tuple(MxEntry(host, preference) for host, preference in mx)
        lookup = MxLookup(name, status, detail="" if status is MxStatus.OK else status.value)
        policy = domain_policy(name, tuple(host for host, _ in mx), POLICIES.get(name, Published()))
        domains.append(DomainStatus(domain, lookup, now, hosts, policy))
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
    """A real Prometheus scraping the domain series and the MX hosts' (their senders' too),
    until every domain and host is in it."""
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
    expected = STATS | POLICY_STATS
    got = {}
    for title, expr in domain_queries():
        if title in expected:
            (sample,) = domain_prometheus.query(expr)
            got[title] = float(sample["value"][1])
    assert got == expected


def _panel_query(title: str, ref: str) -> str:
    """A query of a panel of the domain rows, by panel title and refId, variables substituted."""
    row = [panel for row, panel in iter_panels_by_row(load_dashboard()) if row in DOMAIN_ROWS]
    (panel,) = (panel for panel in row if panel["title"] == title)
    (target,) = (t for t in panel["targets"] if t["refId"] == ref)
    return substitute_variables(target["expr"])


def _rows(prometheus: PrometheusServer, expr: str, *labels: str) -> dict[tuple[str, ...], str]:
    """The instant query's values keyed by the values of `labels` ("" for a label the series
    lacks: Prometheus keeps no label whose value is empty)."""
    return {
        tuple(r["metric"].get(n, "") for n in labels): r["value"][1] for r in prometheus.query(expr)
    }


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
        ("policy.example", "mx.policy.example:25"): "1",
    }
    legacy = _rows(domain_prometheus, _panel_query("MX hosts by domain", "D"), "domain", "target")
    assert legacy[("b.example", "mx.hoster.example:25")] == "1"
    assert legacy[("partner.example", "mx1.partner.example:25")] == "0"
    starttls = _rows(domain_prometheus, _panel_query("MX hosts by domain", "E"), "target")
    assert starttls[("mx.plain.example:25",)] == "0"
    # Exchange Online's verdict: mx.policy.example accepts TLS 1.2 and still turns it away.
    exchange = _rows(domain_prometheus, _panel_query("MX hosts by domain", "G"), "domain", "target")
    assert exchange == {
        ("partner.example", "mx1.partner.example:25"): "1",
        ("partner.example", "mx2.partner.example:25"): "0",
        ("a.example", "mx.hoster.example:25"): "0",
        ("b.example", "mx.hoster.example:25"): "0",
        ("modern.example", "mx.modern.example:25"): "1",
        ("plain.example", "mx.plain.example:25"): "0",
        ("policy.example", "mx.policy.example:25"): "0",
    }


@pytest.mark.prometheus
def test_mx_lookups_table(domain_prometheus: PrometheusServer) -> None:
    statuses = _rows(domain_prometheus, _panel_query("MX look-ups", "A"), "domain", "status")
    assert set(statuses) == {(domain, status.value) for domain, (status, _) in DOMAINS.items()}
    hosts = _by_domain(domain_prometheus, _panel_query("MX look-ups", "B"))
    assert hosts == {domain: str(len(mx)) for domain, (_, mx) in DOMAINS.items()}
    ages = _by_domain(domain_prometheus, _panel_query("MX look-ups", "C"))
    assert all(0 <= float(age) < 300 for age in ages.values()), ages


#: The groups of alerts.yml whose alerts name a domain.
DOMAIN_GROUP = "smtp-tls-exporter-domains"
POLICY_GROUP = "smtp-tls-exporter-transport-policy"
#: The group of alerts.yml whose alerts name a sender (on a host or a domain).
SENDER_GROUP = "smtp-tls-exporter-senders"
#: A latent risk rather than a problem: no stat counts it.
ROLLOVER_ALERT = "SmtpTlsDaneRolloverNotReady"


def _alert_groups() -> dict[str, set[str]]:
    """Group name -> the names of its alerts."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {group["name"]: {rule["alert"] for rule in group["rules"]} for group in groups}


@pytest.mark.prometheus
def test_domains_failing_are_those_the_alerts_name(domain_prometheus: PrometheusServer) -> None:
    """On the same series, the domain and transport policy alerts (pending: their `for` has
    not passed) name the domains the "Domains failing" and "Domains with a transport policy
    problem" stats count; none names a null MX, a policy in mode none or a domain that
    publishes nothing."""
    expected = {
        "SmtpTlsDomainVersion12Refused": {"partner.example", "a.example", "b.example",
                                          "plain.example"},
        "SmtpTlsDomainOnlyLegacyVersions": {"a.example", "b.example"},
        "SmtpTlsDomainMxLookupFailing": {"nx.example", "bogus.example"},
        "SmtpTlsDomainNoMailHost": {"nothing.example"},
        "SmtpTlsMtaStsMxNotCovered": {"partner.example"},
        "SmtpTlsMtaStsMxFailsPolicy": {"plain.example"},
        "SmtpTlsMtaStsTestingFailures": {"a.example"},
        "SmtpTlsMtaStsPolicyInvalid": {"b.example", "bogus.example"},
        "SmtpTlsMtaStsPolicyChangedWithoutId": {"policy.example"},
        "SmtpTlsTlsRptRecordInvalid": {"partner.example", "bogus.example"},
        "SmtpTlsDaneMismatch": {"a.example", "b.example"},
        "SmtpTlsDnssecBogus": {"bogus.example"},
        "SmtpTlsDaneTlsaBogus": {"partner.example"},
        ROLLOVER_ALERT: {"policy.example"},
    }  # fmt: skip

    groups = _alert_groups()
    names = groups[DOMAIN_GROUP] | groups[POLICY_GROUP]

    def domain_alerts() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for alert in domain_prometheus.alerts():
            labels = alert["labels"]
            if labels["alertname"] in names:
                found.setdefault(labels["alertname"], set()).add(labels["domain"])
        return found

    try:
        domain_prometheus.wait_until(
            lambda: domain_alerts() == expected, timeout=30, what="the domain alerts"
        )
    except AssertionError:
        raise AssertionError(f"alerts: {domain_alerts()}\nexpected: {expected}") from None
    assert set(expected) == names
    failing = set().union(*(expected[name] for name in groups[DOMAIN_GROUP]))
    assert len(failing) == STATS["Domains failing"]
    problems = set().union(*(expected[name] for name in groups[POLICY_GROUP] - {ROLLOVER_ALERT}))
    assert len(problems) == POLICY_STATS["Domains with a transport policy problem"]
    # The domain's own labels reach its alerts.
    for alert in domain_prometheus.alerts():
        labels = alert["labels"]
        if "domain" in labels:
            assert labels["partner"] == labels["domain"].split(".")[0], alert


@pytest.mark.prometheus
def test_transport_policy_table(domain_prometheus: PrometheusServer) -> None:
    """One row per domain: MTA-STS where a record is published (valid, or why not), the
    valid policy's id, mode and max_age, TLS-RPT where published, DNSSEC for every domain."""
    table = "Transport policy by domain"
    rows = _by_domain(domain_prometheus, _panel_query(table, "A"))
    assert set(rows) == set(DOMAINS)
    results = _rows(domain_prometheus, _panel_query(table, "B"), "domain", "result")
    assert set(results) == {
        ("modern.example", "valid"),
        ("partner.example", "valid"),
        ("a.example", "valid"),
        ("b.example", "sts-webpki-invalid"),
        ("plain.example", "valid"),
        ("unknown.example", "valid"),
        ("policy.example", "valid"),
        ("bogus.example", "dns-failure"),
    }
    policies = _rows(domain_prometheus, _panel_query(table, "C"), "domain", "id", "mode")
    assert set(policies) == {
        ("modern.example", "modern2024", "enforce"),
        ("partner.example", "partner2024", "enforce"),
        ("a.example", "a2024", "testing"),
        ("plain.example", "plain2024", "enforce"),
        ("unknown.example", "unknown2024", "none"),
        ("policy.example", "policy2024", "enforce"),
    }
    max_age = _by_domain(domain_prometheus, _panel_query(table, "D"))
    assert max_age["modern.example"] == str(ENFORCE_WEEK)
    assert set(max_age) == {domain for domain, _, _ in policies}
    changed = _by_domain(domain_prometheus, _panel_query(table, "E"))
    assert {domain for domain, value in changed.items() if value == "1"} == {"policy.example"}
    tlsrpt = _rows(domain_prometheus, _panel_query(table, "F"), "domain", "tlsrpt")
    assert set(tlsrpt) == {
        (domain, published.tlsrpt.value)
        for domain, published in POLICIES.items()
        if published.tlsrpt is not RecordStatus.ABSENT
    }
    dnssec = _rows(domain_prometheus, _panel_query(table, "G"), "domain", "dnssec")
    assert set(dnssec) == {
        (domain, POLICIES.get(domain, Published()).dnssec.value) for domain in DOMAINS
    }
    details = _rows(domain_prometheus, _panel_query(table, "H"), "domain", "sts_detail")
    assert ("b.example", "certificate: certificate has expired") in details
    details = _rows(domain_prometheus, _panel_query(table, "I"), "domain", "tlsrpt_detail")
    assert ("partner.example", "_smtp._tls.partner.example: the record has no rua") in details
    details = _rows(domain_prometheus, _panel_query(table, "J"), "domain", "dnssec_detail")
    assert ("bogus.example", "MX of bogus.example: bogus") in details


@pytest.mark.prometheus
def test_mx_policy_table(domain_prometheus: PrometheusServer) -> None:
    """One row per domain and MX host (a hosted host under each of its domains): covered by
    the domain's valid MTA-STS policy, the certificate, the TLSA look-up, and the DANE match
    and rollover readiness where DANE applies."""
    table = "MX hosts: MTA-STS and DANE"
    labels = ("domain", "target", "preference")
    rows = _rows(domain_prometheus, _panel_query(table, "A"), *labels)
    assert set(rows) == {
        (domain, f"{host}:25", str(preference))
        for domain, (_, mx) in DOMAINS.items()
        for host, preference in mx
    }

    def by_host(ref: str) -> dict[tuple[str, ...], str]:
        return _rows(domain_prometheus, _panel_query(table, ref), "domain", "target")

    assert by_host("B") == {
        ("modern.example", "mx.modern.example:25"): "1",
        ("partner.example", "mx1.partner.example:25"): "1",
        ("partner.example", "mx2.partner.example:25"): "0",
        ("a.example", "mx.hoster.example:25"): "1",
        ("plain.example", "mx.plain.example:25"): "1",
        ("unknown.example", "mx.unknown.example:25"): "0",
        ("policy.example", "mx.policy.example:25"): "1",
    }
    assert by_host("C")[("plain.example", "mx.plain.example:25")] == "0"
    certificates = by_host("D")
    assert certificates[("b.example", "mx.hoster.example:25")] == "0"
    assert certificates[("modern.example", "mx.modern.example:25")] == "1"
    assert ("plain.example", "mx.plain.example:25") not in certificates
    tlsa = _rows(domain_prometheus, _panel_query(table, "E"), "domain", "target", "tlsa")
    assert ("partner.example", "mx2.partner.example:25", "bogus") in tlsa
    assert ("partner.example", "mx1.partner.example:25", "no_records") in tlsa
    assert ("unknown.example", "mx.unknown.example:25", "insecure") in tlsa
    assert len(tlsa) == len(rows)
    assert by_host("F") == {
        ("modern.example", "mx.modern.example:25"): "1",
        ("a.example", "mx.hoster.example:25"): "0",
        ("b.example", "mx.hoster.example:25"): "0",
        ("policy.example", "mx.policy.example:25"): "1",
    }
    assert by_host("G") == {
        ("modern.example", "mx.modern.example:25"): "1",
        ("a.example", "mx.hoster.example:25"): "0",
        ("b.example", "mx.hoster.example:25"): "0",
        ("policy.example", "mx.policy.example:25"): "0",
    }
    details = _rows(domain_prometheus, _panel_query(table, "I"), "domain", "target", "dane_detail")
    assert (
        "a.example", "mx.hoster.example:25", "none of 2 usable records matches the chain"
    ) in details  # fmt: skip
    assert len(details) == len(DANE) + 1  # mx.hoster.example under a.example and b.example
    details = _rows(domain_prometheus, _panel_query(table, "H"), "domain", "target", "tlsa_detail")
    assert details[("modern.example", "mx.modern.example:25", "_25._tcp.mx.modern.example: secure")]


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("title", "expr"),
    sender_queries(),
    ids=[f"{i}-{title}" for i, (title, _) in enumerate(sender_queries())],
)
def test_sender_query_returns_data(
    domain_prometheus: PrometheusServer, title: str, expr: str
) -> None:
    assert domain_prometheus.query(expr), f"panel {title!r}: no data for\n{expr}"


def _senders_query(title: str, ref: str = "A") -> str:
    row = [panel for row, panel in iter_panels_by_row(load_dashboard()) if row == SENDERS_ROW]
    (panel,) = (panel for panel in row if panel["title"] == title)
    (target,) = (t for t in panel["targets"] if t["refId"] == ref)
    return substitute_variables(target["expr"])


@pytest.mark.prometheus
def test_sender_stats(domain_prometheus: PrometheusServer) -> None:
    got = {}
    for title in SENDER_STATS:
        (sample,) = domain_prometheus.query(_senders_query(title))
        got[title] = float(sample["value"][1])
    assert got == SENDER_STATS


@pytest.mark.prometheus
def test_senders_table(domain_prometheus: PrometheusServer) -> None:
    """One row per target and sender it tests: compatible with the version and cipher the
    server chose, incompatible with what failed, unknown with why; the important ones marked."""
    labels = ("target", "profile", "result", "version", "cipher", "failure", "detail")
    rows = _rows(domain_prometheus, _senders_query("Senders by target", "A"), *labels)
    assert len(rows) == sum(len(senders) for senders in SENDERS.values())
    assert {(row[0], row[1]) for row in rows} == {
        (f"{host}:25", sender.profile) for host, senders in SENDERS.items() for sender in senders
    }
    assert ("mx1.partner.example:25", "exchange-online", "compatible", "TLSv1.2",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "", "") in rows  # fmt: skip
    assert ("mx.policy.example:25", "exchange-online", "incompatible", "", "", "alert",
            "alert handshake_failure") in rows  # fmt: skip
    assert ("mx2.partner.example:25", "exchange-online", "incompatible", "TLSv1.1", "",
            "version", "server chose TLSv1.1; exchange-online offers TLSv1.2 to TLSv1.2",
            ) in rows  # fmt: skip
    assert ("mx.unknown.example:25", "gmail", "unknown", "", "", "", "read timeout") in rows
    important = _rows(
        domain_prometheus, _senders_query("Senders by target", "B"), "target", "profile"
    )
    assert important == {
        (f"{host}:25", sender.profile): "1"
        for host, senders in SENDERS.items()
        for sender in senders
        if sender.profile in IMPORTANT_SENDERS
    }


@pytest.mark.prometheus
def test_sender_alerts_on_the_same_series(domain_prometheus: PrometheusServer) -> None:
    """The sender alerts (pending) on these series: Exchange Online only where TLS 1.2 is
    accepted and STARTTLS offered (the TLS 1.2 and STARTTLS alerts have the others), Postfix
    because it is important, Gmail never (not important), nothing for unknown verdicts."""
    expected = {
        "SmtpTlsExchangeOnlineIncompatible": {("mx.policy.example:25", "exchange-online")},
        "SmtpTlsSenderIncompatible": {("mx.modern.example:25", "postfix")},
        "SmtpTlsDomainExchangeOnlineIncompatible": {("policy.example", "")},
        "SmtpTlsDomainSenderIncompatible": {("modern.example", "")},
    }
    names = _alert_groups()[SENDER_GROUP]
    assert set(expected) == names

    def sender_alerts() -> dict[str, set[tuple[str, str]]]:
        found: dict[str, set[tuple[str, str]]] = {}
        for alert in domain_prometheus.alerts():
            labels = alert["labels"]
            if labels["alertname"] in names:
                named = (labels.get("target", labels.get("domain", "")), labels.get("profile", ""))
                found.setdefault(labels["alertname"], set()).add(named)
        return found

    try:
        domain_prometheus.wait_until(
            lambda: sender_alerts() == expected, timeout=30, what="the sender alerts"
        )
    except AssertionError:
        raise AssertionError(f"alerts: {sender_alerts()}\nexpected: {expected}") from None
    # Every host the Exchange Online alert names is one the stat counts.
    refused = 'smtp_tls_sender_compatible{profile="exchange-online"} == 0'
    exchange_hosts = {host for (host,) in _rows(domain_prometheus, refused, "target")}
    assert len(exchange_hosts) == SENDER_STATS["Hosts Exchange Online cannot deliver to"]
    assert {host for host, _ in expected["SmtpTlsExchangeOnlineIncompatible"]} <= exchange_hosts
