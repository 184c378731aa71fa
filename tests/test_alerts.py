"""The Prometheus alert rules: promtool accepts them and their unit tests pass."""

from __future__ import annotations

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
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        capture_output=True,
        text=True,
        cwd=ALERTS.parent,
        check=False,
    )


def load_rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    assert [g["name"] for g in groups] == ["smtp-tls-exporter"]
    rules: list[dict[str, object]] = groups[0]["rules"]
    return rules


def test_check_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests() -> None:
    result = promtool("test", "rules", str(ALERTS_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_names_and_annotations() -> None:
    rules = load_rules()
    assert {r["alert"] for r in rules} == EXPECTED_ALERTS
    for rule in rules:
        labels = rule["labels"]
        annotations = rule["annotations"]
        assert isinstance(labels, dict)
        assert isinstance(annotations, dict)
        assert labels["severity"] in {"warning", "critical"}, rule["alert"]
        assert set(annotations) >= {"summary", "description"}, rule["alert"]
        # The exporter-wide reload metric has no target label; it names the instance.
        label = "instance" if rule["alert"] == "SmtpTlsExporterReloadFailed" else "target"
        for text in (annotations["summary"], annotations["description"]):
            assert f"{{{{ $labels.{label} }}}}" in str(text), rule["alert"]


def test_every_alert_unit_tested() -> None:
    tests = yaml.safe_load(ALERTS_TESTS.read_text())["tests"]
    cases = [case for group in tests for case in group["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert firing == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS
