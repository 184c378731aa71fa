"""The Prometheus alert rules: promtool accepts them and their unit tests pass."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.support.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parent.parent
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TESTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.test.yml"

EXPECTED_ALERTS = {
    "SmtpTlsOnlyLegacyVersions",
    "SmtpTlsVersion12Refused",
    "SmtpStarttlsNotAdvertised",
    "SmtpTlsCertificateExpiringSoon",
    "SmtpTlsCertificateExpired",
    "SmtpTlsCertificateNotVerified",
    "SmtpTlsProbeFailing",
    "SmtpTlsLegacyVersionAccepted",
    "SmtpTlsExporterReloadFailed",
    "SmtpTlsDomainVersion12Refused",
    "SmtpTlsDomainOnlyLegacyVersions",
    "SmtpTlsDomainMxLookupFailing",
    "SmtpTlsDomainNoMailHost",
    "SmtpTlsMtaStsMxNotCovered",
    "SmtpTlsMtaStsMxFailsPolicy",
    "SmtpTlsMtaStsTestingFailures",
    "SmtpTlsMtaStsPolicyInvalid",
    "SmtpTlsMtaStsPolicyChangedWithoutId",
    "SmtpTlsTlsRptRecordInvalid",
    "SmtpTlsDaneMismatch",
    "SmtpTlsDnssecBogus",
    "SmtpTlsDaneTlsaBogus",
    "SmtpTlsDaneRolloverNotReady",
    "SmtpTlsExchangeOnlineIncompatible",
    "SmtpTlsSenderIncompatible",
    "SmtpTlsDomainExchangeOnlineIncompatible",
    "SmtpTlsDomainSenderIncompatible",
}
#: The group of the rules on mail domains: their alerts name the domain, not a target.
DOMAIN_GROUP = "smtp-tls-exporter-domains"
#: The group of the rules on mail transport policy (MTA-STS, TLS-RPT, DNSSEC, DANE): their
#: alerts name the domain too.
POLICY_GROUP = "smtp-tls-exporter-transport-policy"
#: The group of the rules on senders (smtp_tls_sender_*): per host, and per mail domain
#: through smtp_tls_mx_info.
SENDER_GROUP = "smtp-tls-exporter-senders"
#: The sender whose rules are its own; the rules on the other important senders leave it out.
EXCHANGE_ONLINE = "exchange-online"
#: Host series the transport policy rules join to domains.
POLICY_HOST_SERIES = (
    "smtp_tls_starttls_advertised",
    "smtp_tls_cert_verified",
    "smtp_tls_dane_tlsa_match",
    "smtp_tls_address_dane_tlsa_match",
    "smtp_tls_dane_rollover_ready",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        capture_output=True,
        text=True,
        cwd=ALERTS.parent,
        check=False,
    )


def load_groups() -> dict[str, list[dict[str, object]]]:
    """Group name -> its rules, in the file's order."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    assert [g["name"] for g in groups] == [
        "smtp-tls-exporter",
        DOMAIN_GROUP,
        POLICY_GROUP,
        SENDER_GROUP,
    ]
    return {g["name"]: g["rules"] for g in groups}


def load_rules() -> list[dict[str, object]]:
    return [rule for rules in load_groups().values() for rule in rules]


def test_check_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests() -> None:
    result = promtool("test", "rules", str(ALERTS_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_names_and_annotations() -> None:
    rules = load_rules()
    assert {r["alert"] for r in rules} == EXPECTED_ALERTS
    groups = load_groups()
    domain_alerts = {r["alert"] for r in groups[DOMAIN_GROUP] + groups[POLICY_GROUP]}
    domain_alerts |= {
        r["alert"] for r in groups[SENDER_GROUP] if "smtp_tls_mx_info" in str(r["expr"])
    }
    for rule in rules:
        labels = rule["labels"]
        annotations = rule["annotations"]
        assert isinstance(labels, dict)
        assert isinstance(annotations, dict)
        assert labels["severity"] in {"warning", "critical"}, rule["alert"]
        assert set(annotations) >= {"summary", "description"}, rule["alert"]
        # The exporter-wide reload metric has no target label; it names the instance.
        # Domain alerts name the domain (one alert per domain, whatever its MX hosts).
        label = "target"
        if rule["alert"] == "SmtpTlsExporterReloadFailed":
            label = "instance"
        elif rule["alert"] in domain_alerts:
            label = "domain"
        for text in (annotations["summary"], annotations["description"]):
            assert f"{{{{ $labels.{label} }}}}" in str(text), rule["alert"]


def test_domain_alerts_join_hosts_many_to_one() -> None:
    """Host verdicts reach a domain through smtp_tls_mx_info, the many side of the join, from
    a host side with one series per target (a host may be named by several domains and
    probed by several shards); per-domain results keep the domain's own labels."""
    for rule in load_groups()[DOMAIN_GROUP]:
        expr = " ".join(str(rule["expr"]).split())
        if "smtp_tls_version_supported" not in expr:
            continue
        assert "smtp_tls_mx_info * on (target) group_left ()" in expr, rule["alert"]
        assert "group_right" not in expr, rule["alert"]
        verdicts = expr.count("smtp_tls_version_supported")
        assert expr.count("max by (target) (smtp_tls_version_supported") == verdicts, rule["alert"]
        assert expr.startswith("count without (target, preference) ("), rule["alert"]


def test_policy_alerts_join_hosts_many_to_one() -> None:
    """Host verdicts (STARTTLS, certificate, DANE) reach a domain through smtp_tls_mx_info
    as in the domain group: every host series reduced to one series per target (per target
    and address) before the join, smtp_tls_mx_info the many side."""
    host_series = "|".join(POLICY_HOST_SERIES)
    joined = 0
    for rule in load_groups()[POLICY_GROUP]:
        expr = " ".join(str(rule["expr"]).split())
        uses = re.findall(rf"(\w+ by \([^)]*\) \()?\b({host_series})\b", expr)
        if not uses:
            continue
        joined += 1
        assert "smtp_tls_mx_info * on (target) group_left ()" in expr, rule["alert"]
        assert "group_right" not in expr, rule["alert"]
        for reduced, metric in uses:
            assert reduced in ("max by (target) (", "max by (target, address) ("), (
                rule["alert"],
                metric,
            )
        assert expr.startswith("count without (target, preference) ("), rule["alert"]
    assert joined == 4


def test_sender_alerts_fire_for_important_senders_only() -> None:
    """Every sender rule joins smtp_tls_sender_important; Exchange Online's rules name it,
    the others leave it out, so no incompatibility alerts twice."""
    rules = load_groups()[SENDER_GROUP]
    assert len(rules) == 4
    exchange = f'smtp_tls_sender_compatible{{profile="{EXCHANGE_ONLINE}"}}'
    others = f'smtp_tls_sender_compatible{{profile!="{EXCHANGE_ONLINE}"}}'
    for rule in rules:
        expr = " ".join(str(rule["expr"]).split())
        assert "smtp_tls_sender_important" in expr, rule["alert"]
        assert (exchange in expr) != (others in expr), rule["alert"]
        assert expr.count("smtp_tls_sender_compatible") == 1, rule["alert"]
        named = "ExchangeOnline" in str(rule["alert"])
        assert (exchange in expr) == named, rule["alert"]
        assert rule["labels"] == {"severity": "critical"}, rule["alert"]
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        if not named and "smtp_tls_mx_info" not in expr:  # one alert per host and sender
            assert "{{ $labels.profile }}" in str(annotations["summary"]), rule["alert"]


def test_sender_domain_alerts_join_hosts_many_to_one() -> None:
    """As the domain rules: every host series reduced to one series per target (or per
    target and sender) before the join, smtp_tls_mx_info the many side, one alert per
    domain."""
    host_series = "smtp_tls_sender_compatible|smtp_tls_sender_important|smtp_tls_version_supported"
    host_series += "|smtp_tls_starttls_advertised"
    joined = 0
    for rule in load_groups()[SENDER_GROUP]:
        expr = " ".join(str(rule["expr"]).split())
        if "smtp_tls_mx_info" not in expr:
            continue
        joined += 1
        assert "smtp_tls_mx_info * on (target) group_left ()" in expr, rule["alert"]
        assert "group_right" not in expr, rule["alert"]
        uses = re.findall(rf"(\w+ by \([^)]*\) \()?\b({host_series})\b", expr)
        for reduced, metric in uses:
            assert reduced in ("max by (target) (", "max by (target, profile) ("), (
                rule["alert"],
                metric,
            )
        assert expr.startswith("count without (target, preference) ("), rule["alert"]
    assert joined == 2


def test_mta_sts_alerts_act_on_a_mode() -> None:
    """A policy in mode none demands nothing: the rules on MX hosts against a policy name the
    mode they act on, enforce (critical) or testing (warning)."""
    for rule in load_groups()[POLICY_GROUP]:
        expr = " ".join(str(rule["expr"]).split())
        if "smtp_tls_mta_sts_mx_covered" not in expr and "smtp_tls_mta_sts_policy_info" not in expr:
            continue
        modes = re.findall(r'smtp_tls_mta_sts_policy_info\{mode="(\w+)"\}', expr)
        assert len(modes) == 1, rule["alert"]
        severity = {"enforce": "critical", "testing": "warning"}[modes[0]]
        assert rule["labels"] == {"severity": severity}, rule["alert"]


def test_every_alert_unit_tested() -> None:
    tests = yaml.safe_load(ALERTS_TESTS.read_text())["tests"]
    cases = [case for group in tests for case in group["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert firing == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS
