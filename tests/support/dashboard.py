"""The Grafana dashboard's panel queries, with Grafana's variables replaced by plain values.

Used by the dashboard tests: every query must parse (promtool) and run against a real
Prometheus. The panels of the "Mail domains" and "Transport policy" rows need an exporter that
watches mail domains; `dashboard_queries` leaves them out (tests/test_prometheus.py runs those
against an exporter probing hosts only) and `domain_queries` gives them (tests/test_dashboard.py
runs them against domain series). `sender_queries` gives the "Senders" row's, which are host
queries (in `dashboard_queries` too): tests/test_dashboard.py runs them against hosts whose
results carry senders of every kind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_PATH = REPO_ROOT / "deploy" / "grafana" / "dashboard.json"
#: The row whose panels show mail domains and their MX hosts.
DOMAINS_ROW = "Mail domains"
#: The row whose panels show the domains' MTA-STS, TLS-RPT, DNSSEC and DANE.
POLICY_ROW = "Transport policy"
#: The rows whose panels need domain series.
DOMAIN_ROWS = (DOMAINS_ROW, POLICY_ROW)
#: The row whose panels show what each sender gets from each target.
SENDERS_ROW = "Senders"

# What each variable becomes in a query run outside Grafana.
VARIABLE_VALUES: dict[str, str] = {
    "target": ".*",
    "domain": ".*",
    "datasource": "prometheus",
    "__rate_interval": "5m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# $name, ${name} and ${name:format}; not $1 or ${1}, which are label_replace's references to
# its regular expression's groups (Grafana leaves them alone: no variable has such a name).
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_]\w*)(?::\w+)?\}|([A-Za-z_]\w*))")


def load_dashboard(path: Path = DASHBOARD_PATH) -> dict[str, Any]:
    """The dashboard JSON as a dict."""
    with path.open(encoding="utf-8") as f:
        dashboard: dict[str, Any] = json.load(f)
    return dashboard


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows; rows themselves excluded."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def iter_panels_by_row(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(title of the row it is in, panel) for every panel; "" before the first row. Panels
    of an expanded row follow it in `panels`; a collapsed row holds its own."""
    row = ""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            row = panel["title"]
            for inner in panel.get("panels", []):
                yield row, inner
        else:
            yield row, panel


def substitute_variables(expr: str) -> str:
    """Replace Grafana variables with the values in VARIABLE_VALUES; unknown ones raise."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in VARIABLE_VALUES:
            raise KeyError(f"no test value for Grafana variable ${name} in {expr!r}")
        return VARIABLE_VALUES[name]

    return _VARIABLE.sub(replace, expr)


def _queries(path: Path, *, domains: bool, rows: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    queries = []
    for row, panel in iter_panels_by_row(load_dashboard(path)):
        if (row in DOMAIN_ROWS) != domains or (rows and row not in rows):
            continue
        for target in panel.get("targets", []):
            if target.get("hide") or not target.get("expr"):
                continue
            queries.append((panel["title"], substitute_variables(target["expr"])))
    return queries


def dashboard_queries(path: Path = DASHBOARD_PATH) -> list[tuple[str, str]]:
    """(panel title, PromQL expression with variables substituted) for every panel query
    outside the "Mail domains" and "Transport policy" rows: what an exporter probing hosts
    gives data for."""
    return _queries(path, domains=False)


def domain_queries(path: Path = DASHBOARD_PATH) -> list[tuple[str, str]]:
    """The same for the panels of the "Mail domains" and "Transport policy" rows, which need
    domain series."""
    return _queries(path, domains=True)


def sender_queries(path: Path = DASHBOARD_PATH) -> list[tuple[str, str]]:
    """The same for the panels of the "Senders" row (host queries: part of
    `dashboard_queries` too)."""
    return _queries(path, domains=False, rows=(SENDERS_ROW,))


def all_queries(path: Path = DASHBOARD_PATH) -> list[tuple[str, str]]:
    """Every panel query of the dashboard."""
    return dashboard_queries(path) + domain_queries(path)
