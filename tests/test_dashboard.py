"""The Grafana dashboard: structure, and every panel query parses as PromQL."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboard import (
    DASHBOARD_PATH,
    dashboard_queries,
    iter_panels,
    load_dashboard,
)
from tests.support.tools import require_tool

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}


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
    for panel in iter_panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            selectors = re.findall(r"\b(smtp_tls_\w+)(\{[^}]*\})?", expr)
            assert selectors, (panel["title"], expr)
            for metric, matchers in selectors:
                assert 'target=~"$target"' in matchers, (panel["title"], metric)


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


def test_queries_substituted() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 10
    for title, expr in queries:
        assert "$" not in expr, title
        assert 'target=~".*"' in expr, title


def test_queries_parse(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr}
        for n, (_title, expr) in enumerate(dashboard_queries(), start=1)
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
