"""The config's JSON Schema and the Helm chart's copy of it agree with the exporter.

One table of config files, each fed to the exporter (`parse_config`), to the JSON Schema of
the config file, and as Helm values to the chart's schema; a few rows also to a real
`helm template`. Where a JSON Schema cannot say a rule, the row says why, and the schema
accepts what the exporter refuses, never the other way round.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trustme
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import Config, ConfigError, parse_config
from exporter.config.schema import ON_DEMAND_KEY_NAMES, SETTING_KEYS, TARGET_KEYS, json_schema
from exporter.defaults import DEFAULT_MAX_CONNECTIONS_PER_MINUTE
from exporter.names import label_name_problem
from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm"
EHLO = "probe.example.org"
CA_FILE = "CA_FILE"  # replaced by the path of a real CA bundle
#: The chart renders only with an image (none is published).
IMAGE = {"repository": "registry.example.org/mail/smtp-tls-exporter"}


# --- The three judges --------------------------------------------------------------------------


def exporter_reads(text: str) -> Config | None:
    try:
        return parse_config(text, "agree.yaml", default_ehlo_name=EHLO)
    except ConfigError:
        return None


def exporter_accepts(text: str) -> bool:
    return exporter_reads(text) is not None


CONFIG_SCHEMA = jsonschema.Draft7Validator(json_schema())


def chart_schema() -> dict[str, Any]:
    """The chart's schema of `config`, with the definitions it refers to."""
    values_schema = json.loads((CHART / "values.schema.json").read_text())
    config: dict[str, Any] = values_schema["properties"]["config"]
    return {"definitions": values_schema["definitions"], **config}


CHART_SCHEMA = jsonschema.Draft7Validator(chart_schema())


def go_number(value: float) -> str:
    """A number as Helm writes it: a float64, formatted by Go's encoding/json."""
    number = float(value)
    if number != 0 and not 1e-6 <= abs(number) < 1e21:
        return re.sub(r"e([-+])0(\d)$", r"e\1\2", repr(number))
    return format(Decimal(repr(number)).normalize(), "f")


def go_json(value: object) -> str:
    """JSON as the chart's `toPrettyJson` writes Helm values (compact; YAML all the same)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return go_number(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}: {go_json(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(go_json(item) for item in value) + "]"
    raise TypeError(value)


def helm_config(data: object) -> dict[str, Any] | None:
    """What the chart renders for `config: data`: its defaults (if any) and its targets."""
    if not isinstance(data, dict):
        return None
    rendered: dict[str, Any] = {"targets": data.get("targets") or []}
    if data.get("defaults"):
        rendered["defaults"] = data["defaults"]
    if data.get("dns"):
        rendered["dns"] = data["dns"]
    if data.get("on_demand"):
        rendered["on_demand"] = data["on_demand"]
    return rendered


@dataclass(frozen=True, slots=True)
class Verdicts:
    exporter: bool
    schema: bool
    chart: bool
    #: The exporter's verdict on the config the chart renders from these values.
    rendered: bool | None
    #: The rendered config is good and means what the file means: the chart must take it.
    rendered_same: bool


def judge(text: str) -> Verdicts:
    data = yaml.safe_load(text)
    values = json.loads(go_json(data))  # what the chart's schema sees: JSON from float64s
    written = exporter_reads(text)
    rendered_data = helm_config(data)
    rendered = None if rendered_data is None else exporter_reads(go_json(rendered_data))
    return Verdicts(
        exporter=written is not None,
        schema=CONFIG_SCHEMA.is_valid(data),
        chart=CHART_SCHEMA.is_valid(values),
        rendered=None if rendered_data is None else rendered is not None,
        rendered_same=written is not None
        and rendered is not None
        and (written.targets, written.domains, written.dns, written.on_demand)
        == (rendered.targets, rendered.domains, rendered.dns, rendered.on_demand),
    )


# --- The table -----------------------------------------------------------------------------------


def in_target(line: str) -> str:
    return f"targets:\n  - host: mx.example.org\n    {line}\n"


def in_defaults(line: str) -> str:
    return f"defaults:\n  {line}\ntargets:\n  - host: mx.example.org\n"


@dataclass(frozen=True, slots=True)
class Row:
    """A config file and who accepts it: the exporter, and where they differ, the schemas."""

    id: str
    text: str
    exporter: bool
    #: The config file's JSON Schema; None: as the exporter.
    schema: bool | None = None
    #: The chart's schema, given the file as Helm values; None: as `schema`.
    chart: bool | None = None
    #: The exporter's verdict on what the chart renders, where Helm changes the file's
    #: meaning past what its schema can see; None: not checked.
    rendered: bool | None = None
    #: Why a schema differs from the exporter: the rule no JSON Schema can say.
    why: str = ""
    #: Also through a real `helm template`.
    helm: bool = False

    @property
    def schema_accepts(self) -> bool:
        return self.exporter if self.schema is None else self.schema

    @property
    def chart_accepts(self) -> bool:
        return self.schema_accepts if self.chart is None else self.chart


NOT_EXPRESSIBLE = "JSON Schema cannot say it: "
#: The chart's schema lets its own default values through; its templates refuse to render
#: without a target (tests/test_helm.py), with a message a schema could not give.
NO_TARGETS = "the chart's default values have none; the chart refuses them when it renders"
OK = "targets:\n  - host: mx.example.org\n"

ROWS = [
    Row("minimal", OK, True, helm=True),
    # connections
    Row("connections-0", in_target("connections: 0"), False),
    Row("connections-1", in_target("connections: 1"), True),
    Row("connections-10", in_defaults("connections: 10"), True),
    Row("connections-11", in_target("connections: 11"), False),
    Row("connections-50", in_target("connections: 50"), False, helm=True),
    Row("connections-text", in_target("connections: '5'"), False),
    # max_connections_per_minute
    Row("per-minute", in_defaults("max_connections_per_minute: 30"), True, helm=True),
    Row("per-minute-1", in_target("max_connections_per_minute: 1"), True),
    Row("per-minute-most", in_target("max_connections_per_minute: 100000"), True),
    Row("per-minute-0", in_target("max_connections_per_minute: 0"), False),
    Row("per-minute-too-many", in_defaults("max_connections_per_minute: 100001"), False),
    Row("per-minute-text", in_target("max_connections_per_minute: '12'"), False),
    Row("per-minute-float", in_target("max_connections_per_minute: 12.5"), False),
    # versions
    Row("versions-text", in_target("versions: ['1.2']"), True),
    Row("versions-float", in_target("versions: [1.2]"), True, helm=True),
    Row("versions-name", in_target("versions: ['TLSv1.2', tls1.3, SSLv3]"), True),
    Row("versions-padded", in_target("versions: [' tlsv1.3 ', SSL2]"), True),
    Row("versions-float-1.10", in_target("versions: [1.10]"), True),
    Row("versions-empty", in_target("versions: []"), False),
    Row("versions-1.4", in_target("versions: ['1.4']"), False),
    Row("versions-float-1.4", in_target("versions: [1.4]"), False),
    Row("versions-not-a-list", in_target("versions: '1.2'"), False),
    Row("versions-twice", in_target("versions: ['1.2', '1.2']"), False),
    Row("versions-twice-float", in_defaults("versions: [1.2, 1.2]"), False),
    Row(
        "versions-twice-spelled-apart",
        in_target("versions: ['1.2', 1.2, TLSv1.2]"),
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "uniqueItems compares values, not the versions they name",
    ),
    Row(
        "versions-float-1.0",
        in_target("versions: [1.0, 1.1]"),
        True,
        chart=False,
        why="Helm renders the number 1.0 as 1, which names no version: quote '1.0'",
        helm=True,
    ),
    Row(
        "versions-integer",
        in_target("versions: [1]"),
        False,
        schema=True,
        chart=False,
        why=NOT_EXPRESSIBLE + "JSON has one number 1, so 1 and 1.0 are the same",
    ),
    # durations
    Row("senders", in_defaults("senders: [exchange-online, gmail]"), True, helm=True),
    Row("senders-none", in_target("senders: []"), True),
    Row("senders-twice", in_target("senders: [gmail, gmail]"), False, schema=False),
    Row(
        "senders-unknown",
        in_target("senders: [outlook]"),
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "which names the built-in profiles and the config's `profiles` hold",
    ),
    Row("legacy-interval", in_defaults("legacy_interval: 6h"), True, helm=True),
    Row("legacy-interval-target", in_target("legacy_interval: 1d"), True),
    Row("legacy-interval-0", in_target("legacy_interval: 0s"), False),
    Row("legacy-interval-half-second", in_defaults("legacy_interval: 0.5"), False),
    Row("interval-30s", in_defaults("interval: 30s"), True),
    Row("interval-30", in_defaults("interval: 30"), True),
    Row("interval-1h30m", in_target("interval: 1h30m"), True, helm=True),
    Row("interval-padded", in_target("interval: ' 5m '"), True),
    Row("interval-every-unit", in_target("interval: 0y0w0d0h1m0s500ms"), True),
    Row("interval-quoted-30", in_defaults("interval: '30'"), False),
    Row("interval-negative", in_defaults("interval: -1"), False),
    Row("interval-0", in_defaults("interval: 0"), False),
    Row("interval-0s", in_target("interval: 0s"), False),
    Row("interval-wrong-order", in_target("interval: 30s5m"), False),
    Row("interval-words", in_target("interval: 5 minutes"), False),
    Row("interval-half-second", in_target("interval: 0.5"), False),
    Row("interval-over-a-year", in_target("interval: 31536001"), False),
    Row(
        "interval-500ms",
        in_target("interval: 500ms"),
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "a minimum of a duration written as text",
    ),
    Row(
        "interval-2y",
        in_target("interval: 2y"),
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "a maximum of a duration written as text",
    ),
    Row("timeout-2.5", in_defaults("timeout: 2.5"), True),
    Row("timeout-0s", in_defaults("timeout: 0s"), False),
    Row("timeout-tiny", in_target("timeout: 1.5e-7"), True, rendered=True),
    Row(
        "timeout-tiny-round",
        in_target("timeout: 1.0e-7"),
        True,
        rendered=False,
        why="Helm writes the number as 1e-7, which YAML 1.1 reads as text; no schema sees"
        " how Go will write a number",
        helm=True,
    ),
    Row(
        "timeout-over-interval",
        in_target("timeout: 10m"),
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "a comparison of two keys (and of durations in text)",
        helm=True,
    ),
    # port
    Row("port-0", in_target("port: 0"), False),
    Row("port-25", in_target("port: 25"), True),
    Row("port-65535", in_target("port: 65535"), True),
    Row("port-65536", in_target("port: 65536"), False, helm=True),
    Row("port-text", in_target("port: smtp"), False),
    Row("port-in-defaults", in_defaults("port: 25"), False),
    Row(
        "port-25.0",
        in_target("port: 25.0"),
        False,
        schema=True,
        chart=True,
        why=NOT_EXPRESSIBLE + "JSON Schema integers include 25.0 (Helm writes it as 25)",
    ),
    # tls
    Row("tls-starttls", in_target("tls: starttls"), True),
    Row("tls-implicit", in_target("tls: implicit"), True),
    Row("tls-any-case", in_target("tls: STARTTLS"), True, helm=True),
    Row("tls-padded", in_target("tls: ' Implicit '"), True),
    Row("tls-ssl", in_target("tls: ssl"), False),
    Row("tls-bool", in_target("tls: true"), False),
    Row("tls-none", in_target("tls: none"), False),
    # labels
    Row("labels", in_target("labels: {site: eu, rack: 7, note: ' '}"), True),
    Row("labels-null", in_target("labels: null"), True),
    Row("labels-in-defaults", in_defaults("labels: {env: prod}"), True),
    Row("labels-list", in_target("labels: [a]"), False),
    Row("label-reserved", in_target("labels: {target: x}"), False, helm=True),
    Row("label-reserved-too", in_defaults("labels: {instance: x}"), False),
    Row("label-dunder", in_target("labels: {__x: y}"), False),
    Row("label-digit", in_target("labels: {1x: y}"), False),
    Row("label-dash", in_target("labels: {a-b: c}"), False),
    Row("label-empty", in_target("labels: {a: ''}"), False),
    Row("label-float", in_target("labels: {a: 1.5}"), False),
    Row("label-null", in_target("labels: {a: null}"), False),
    Row("label-list", in_target("labels: {a: [b]}"), False),
    Row(
        "label-64-bits",
        in_target(f"labels: {{a: {2**64 - 1}}}"),
        True,
        chart=False,
        why="Helm keeps numbers as float64: 2**64 - 1 arrives as 2**64, beyond 64 bits",
    ),
    Row("label-65-bits", in_target(f"labels: {{a: {2**64}}}"), False),
    Row("label-name-number", in_target("labels: {1: a}"), False),
    # name, host, servername, ehlo_name, ca_file
    Row("name", in_target("name: mx"), True),
    Row("name-number", in_target("name: 25"), True),
    Row("name-empty", in_target("name: ''"), False),
    Row("name-blank", in_target("name: '  '"), False),
    Row("name-list", in_target("name: [x]"), False),
    Row("host-missing", "targets:\n  - port: 25\n", False, helm=True),
    Row("host-empty", "targets:\n  - host: ''\n", False),
    Row("host-blank", "targets:\n  - host: ' '\n", False),
    Row("host-number", "targets:\n  - host: 25\n", False),
    Row("host-unicode", "targets:\n  - host: mx.bücher.example\n", True),
    Row("host-ipv6", "targets:\n  - host: '::1'\n", True),
    Row(
        "host-bad",
        "targets:\n  - host: mx example.org\n",
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "the rules of host names and addresses",
    ),
    Row(
        "host-with-port",
        "targets:\n  - host: '[::1]:25'\n",
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "the rules of host names and addresses",
    ),
    Row("servername", in_target("servername: mail.example.org."), True),
    Row(
        "servername-bad",
        in_target("servername: a b"),
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "the rules of host names and addresses",
    ),
    Row("ehlo-name", in_defaults("ehlo_name: probe.example.org"), True),
    Row("ehlo-literal", in_target("ehlo_name: '[192.0.2.1]'"), True),
    Row("ehlo-empty", in_target("ehlo_name: ''"), False),
    Row(
        "ehlo-underscore",
        in_defaults("ehlo_name: a_b.example"),
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "the rules of EHLO names",
    ),
    Row("ca-file", in_defaults(f"ca_file: {CA_FILE}"), True),
    Row("ca-file-null", in_target("ca_file: null"), True),
    Row("ca-file-number", in_target("ca_file: 5"), False),
    Row(
        "ca-file-missing",
        in_defaults("ca_file: /nonexistent/ca.pem"),
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "whether a file exists and holds certificates",
        helm=True,
    ),
    # the shape of the file
    Row("unknown-top", OK + "target: []\n", False),
    Row("unknown-target-key", in_target("hots: a"), False, helm=True),
    Row("unknown-default", in_defaults("intervall: 5m"), False),
    Row("extension", "x-common: &common {port: 587}\n" + OK, True),
    Row(
        "extension-merged",
        "x-common: &common {port: 587, labels: {role: submission}}\n"
        "targets:\n  - <<: *common\n    host: mx.example.org\n",
        True,
    ),
    Row("defaults-null", "defaults:\n" + OK, True),
    Row("defaults-list", "defaults: [a]\n" + OK, False),
    Row("target-text", "targets: [mx.example.org]\n", False),
    Row("targets-mapping", "targets: {host: mx.example.org}\n", False),
    Row("empty-file", "", False),
    Row("top-list", "- host: mx.example.org\n", False),
    Row(
        "targets-missing",
        "defaults: {interval: 5m}\n",
        False,
        chart=True,
        why=NO_TARGETS,
    ),
    Row(
        "targets-empty",
        "targets: []\n",
        False,
        chart=True,
        why=NO_TARGETS,
    ),
    Row(
        "names-twice",
        "targets:\n  - host: mx.example.org\n  - host: mx.example.org\n",
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "uniqueness of a value computed from two keys",
    ),
    # mail domains
    Row("domain", "targets:\n  - domain: partner.example\n    port: 2525\n", True, helm=True),
    Row("domain-unicode", "targets:\n  - domain: bücher.example\n", True),
    Row("domain-labels", "targets:\n  - domain: a.example\n    labels: {partner: acme}\n", True),
    Row("domain-and-host", "targets:\n  - domain: partner.example\n    host: mx.example\n", False),
    Row("neither-host-nor-domain", "targets:\n  - port: 25\n", False),
    Row(
        "domain-ip",
        "targets:\n  - domain: 192.0.2.1\n",
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "the rules of domain names (IDNA 2008, labels, no address)",
    ),
    Row(
        "domain-servername",
        "targets:\n  - domain: partner.example\n    servername: mx.partner.example\n",
        False,
        schema=True,
        why="one shape for host and domain entries; the exporter names the keys a domain's"
        " MX hosts decide",
    ),
    Row(
        "domain-twice",
        "targets:\n  - domain: partner.example\n  - domain: PARTNER.example.\n",
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "uniqueness of names as DNS compares them",
    ),
    # dns
    Row(
        "dns", OK + "dns:\n  servers: ['127.0.0.1:5353', '[::1]:53', 192.0.2.53]\n", True, helm=True
    ),
    Row("dns-timeout", OK + "dns:\n  timeout: 2s\n", True),
    Row("dns-null", OK + "dns: null\n", True),
    Row("dns-timeout-0", OK + "dns:\n  timeout: 0s\n", False),
    Row("dns-servers-empty", OK + "dns:\n  servers: []\n", False),
    Row("dns-servers-text", OK + "dns:\n  servers: 127.0.0.1\n", False),
    Row("dns-unknown-key", OK + "dns:\n  server: 127.0.0.1\n", False),
    Row(
        "dns-server-name",
        OK + "dns:\n  servers: [ns1.example.org]\n",
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "which texts are IP addresses (with a port)",
    ),
    # on_demand
    Row(
        "on-demand",
        OK + "on_demand:\n  allow: ['*.example.org', mx.partner.net, 192.0.2.0/24,"
        " '2001:db8::/32', '::1', '2001:10:20:30:40:50:0:1']\n  min_interval: 1m\n"
        "  max_concurrent: 5\n",
        True,
        helm=True,
    ),
    Row("on-demand-null", OK + "on_demand: null\n", True),
    Row("on-demand-empty", OK + "on_demand: {}\n", True),
    Row("on-demand-allow-empty", OK + "on_demand:\n  allow: []\n", True),
    Row("on-demand-unicode", OK + "on_demand:\n  allow: ['*.bücher.example']\n", True),
    Row("on-demand-list", OK + "on_demand: [mx.example.org]\n", False),
    Row("on-demand-allow-text", OK + "on_demand:\n  allow: '*.example.org'\n", False),
    Row("on-demand-allow-number", OK + "on_demand:\n  allow: [5]\n", False),
    Row("on-demand-allow-blank", OK + "on_demand:\n  allow: [' ']\n", False),
    Row(
        "on-demand-allow-star",
        OK + "on_demand:\n  allow: ['*']\n",
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "the rules of host names, wildcards and networks",
    ),
    Row(
        "on-demand-allow-host-bits",
        OK + "on_demand:\n  allow: [10.0.0.1/8]\n",
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "the rules of host names, wildcards and networks",
        helm=True,
    ),
    Row("on-demand-min-interval-0", OK + "on_demand:\n  min_interval: 0s\n", False),
    Row("on-demand-min-interval-10s", OK + "on_demand:\n  min_interval: 10s\n", True),
    Row("on-demand-concurrent-0", OK + "on_demand:\n  max_concurrent: 0\n", False),
    Row("on-demand-concurrent-1000", OK + "on_demand:\n  max_concurrent: 1000\n", True),
    Row("on-demand-concurrent-1001", OK + "on_demand:\n  max_concurrent: 1001\n", False),
    Row("on-demand-unknown-key", OK + "on_demand:\n  allowed: [a.example]\n", False),
    Row(
        "key-twice",
        "targets:\n  - host: a.example\n    host: b.example\n",
        False,
        schema=True,
        why=NOT_EXPRESSIBLE + "a key given twice (the parsed mapping keeps one)",
    ),
]


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_exporter_and_schemas_agree(row: Row, ca_file: str) -> None:
    verdicts = judge(row.text.replace(CA_FILE, ca_file))
    assert verdicts.exporter == row.exporter
    assert verdicts.schema == row.schema_accepts
    assert verdicts.chart == row.chart_accepts
    if row.rendered is not None:
        assert verdicts.rendered == row.rendered


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_schemas_never_refuse_what_the_exporter_runs(row: Row, ca_file: str) -> None:
    verdicts = judge(row.text.replace(CA_FILE, ca_file))
    assert verdicts.schema or not verdicts.exporter
    # The chart refuses what would reach the exporter changed: a key its template drops
    # (`config.target`), a number Helm writes differently (1.0 as 1).
    assert verdicts.chart or not verdicts.rendered_same


def test_every_difference_says_why() -> None:
    for row in ROWS:
        differs = row.schema_accepts != row.exporter or row.chart_accepts != row.exporter
        rendered_differs = row.rendered not in (None, row.exporter)
        assert (differs or rendered_differs) == bool(row.why), row.id


def test_the_table_is_broad() -> None:
    assert len({row.id for row in ROWS}) == len(ROWS)
    keys = {key for key in (*TARGET_KEYS, *SETTING_KEYS) if any(key in r.text for r in ROWS)}
    assert keys == {*TARGET_KEYS, *SETTING_KEYS}
    on_demand = [r.text for r in ROWS if "on_demand:" in r.text]
    assert {key for key in ON_DEMAND_KEY_NAMES if any(key in text for text in on_demand)} == set(
        ON_DEMAND_KEY_NAMES
    )
    assert sum(row.helm for row in ROWS) >= 8


# --- Through a real Helm ---------------------------------------------------------------------


def helm_template(values: Path) -> subprocess.CompletedProcess[str]:
    helm = require_tool("helm", "scripts/install-helm.sh installs it")
    return subprocess.run(
        [helm, "template", "mail", str(CHART), "--values", str(values)],
        capture_output=True,
        text=True,
        check=False,
    )


def rendered_config(manifests: str) -> str:
    for document in yaml.safe_load_all(manifests):
        if document and document["kind"] == "ConfigMap" and "config.yaml" in document["data"]:
            text: str = document["data"]["config.yaml"]
            return text
    raise AssertionError("no config.yaml in the rendered manifests")


HELM_ROWS = [row for row in ROWS if row.helm]


@pytest.mark.parametrize("row", HELM_ROWS, ids=[row.id for row in HELM_ROWS])
def test_helm_agrees(row: Row, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(f"image: {json.dumps(IMAGE)}\nconfig:\n" + textwrap.indent(row.text, "  "))
    result = helm_template(values)
    assert (result.returncode == 0) == row.chart_accepts, result.stderr
    if result.returncode != 0:
        assert "schema" in result.stderr
        return
    config = rendered_config(result.stdout)
    assert exporter_accepts(config) == judge(row.text).rendered


def test_go_number_formatting_is_helms(tmp_path: Path) -> None:
    """The stand-in for Helm's rendering writes numbers exactly as Helm does."""
    numbers = [25, 1.0, 1.1, 1.10, 2.5, 1e-7, 1.5e-7, 1e-6, 2**53 + 1, 1e21, 123456789.125, -3]
    values = tmp_path / "values.yaml"
    labels = {f"n{i}": number for i, number in enumerate(numbers)}
    targets = [{"host": "a", "labels": labels}]
    values.write_text(yaml.safe_dump({"image": IMAGE, "config": {"targets": targets}}))
    helm = require_tool("helm", "scripts/install-helm.sh installs it")
    result = subprocess.run(
        [helm, "template", "mail", str(CHART), "--values", str(values), "--skip-schema-validation"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    written = dict(re.findall(r'"(n[0-9]+)": ([^,\n]+)', rendered_config(result.stdout)))
    assert written == {name: go_number(number) for name, number in labels.items()}


# --- Anything the exporter runs, the schemas accept ----------------------------------------------

text_or_number = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False, allow_infinity=False),
)
plausible: dict[str, st.SearchStrategy[Any]] = {
    "host": st.sampled_from(["mx.example.org", "::1", "[2001:db8::1]", "mx.bücher.example"]),
    "domain": st.sampled_from(["partner.example", "bücher.example", "192.0.2.1", "", "a..b"]),
    "port": st.integers(-1, 70000) | st.floats(0, 70000),
    "tls": st.sampled_from(["starttls", "IMPLICIT", " StartTLS\t", "ssl"]) | st.text(max_size=10),
    "name": text_or_number,
    "servername": st.sampled_from(["mail.example.org", "mail.example.org.", "x y"]),
    "interval": st.from_regex(r"\s?([0-9]{1,3}[ywdhms]){1,3}(ms)?\s?", fullmatch=True)
    | st.floats(-1, 4e7)
    | st.integers(-1, 4 * 10**7),
    "legacy_interval": st.sampled_from(["6h", "1d", 0, "0s", -1, 3600, "1h30m", "x"]),
    "senders": st.sampled_from(
        [[], ["gmail"], ["exchange-online", "postfix"], ["nope"], "x", ["gmail", "gmail"]]
    ),
    "timeout": st.from_regex(r"[0-9]{1,2}(s|ms|m)", fullmatch=True)
    | st.floats(-1, 100)
    | st.sampled_from([1e-7, 1e-6, 0.5]),
    "ehlo_name": st.sampled_from(["probe.example.org", "[192.0.2.1]", "", " "]),
    "ca_file": st.sampled_from([None, "", "/nonexistent.pem"]),
    "versions": st.lists(
        st.sampled_from(["ssl2", "SSLv3", " 1.0", "tls1.1", "TLSv1.2", "1.4"])
        | st.sampled_from([1.0, 1.1, 1.2, 1.3, 1.4, 1])
        | st.text(max_size=6),
        max_size=4,
    ),
    "connections": st.integers(-1, 12) | st.floats(0, 12),
    "max_connections_per_minute": st.integers(-1, 100_002) | st.floats(0, 20) | st.just("12"),
    "labels": st.none()
    | st.dictionaries(
        st.sampled_from(["site", "_a", "__x", "target", "1a", "ok_1"]) | st.text(max_size=4),
        text_or_number | st.booleans() | st.none(),
        max_size=3,
    ),
}


def mapping_of(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={key: plausible[key] for key in keys})


plausible |= {
    "allow": st.lists(
        st.sampled_from(
            ["*.example.org", "mx.example.org", "192.0.2.0/24", "::1", "*", "10.0.0.1/8"]
        )
        | text_or_number,
        max_size=3,
    )
    | text_or_number,
    "min_interval": plausible["interval"],
    "max_concurrent": st.integers(-1, 1002) | st.floats(0, 12),
}

configs = st.fixed_dictionaries(
    {"targets": st.lists(mapping_of(TARGET_KEYS), min_size=0, max_size=3)},
    optional={
        "defaults": st.none() | mapping_of(SETTING_KEYS),
        "on_demand": st.none() | mapping_of(ON_DEMAND_KEY_NAMES),
    },
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(configs)
def test_schemas_accept_every_config_the_exporter_accepts(data: dict[str, Any]) -> None:
    verdicts = judge(yaml.safe_dump(data, allow_unicode=True))
    assert verdicts.schema or not verdicts.exporter
    assert verdicts.chart or not verdicts.rendered_same


SPACES = [chr(c) for c in range(0x110000) if chr(c).isspace()]
padding = st.text(st.sampled_from(SPACES), max_size=2)


def padded(words: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`words` in any letter case, with the white space the exporter strips around them."""
    cased = st.tuples(words, st.booleans()).map(lambda w: w[0].upper() if w[1] else w[0])
    return st.tuples(padding, cased, padding).map("".join)


version_spellings = st.sampled_from(["ssl2", "ssl3", "sslv3", "1.0", "1.1", "tls1.2", "tlsv1.3"])
good_values: dict[str, st.SearchStrategy[Any]] = {
    "host": st.sampled_from(["mx.example.org", "192.0.2.1", "::1", "[2001:db8::1]", "ü.example"]),
    "domain": st.sampled_from(["partner.example", "Partner.Example.", "bücher.example"]),
    "port": st.integers(1, 65535),
    "tls": padded(st.sampled_from(["starttls", "implicit"])),
    "name": st.text(min_size=1, max_size=8).filter(str.strip)
    | st.integers(-(2**64) + 1, 2**64 - 1),
    "servername": st.sampled_from(["mail.example.org", "mail.example.org.", "192.0.2.1"]),
    "interval": st.integers(1, 31536000)
    | st.floats(1, 31536000)
    | padded(st.from_regex(r"[1-9][0-9]{0,3}[wdhm]([1-9][0-9]?s)?", fullmatch=True)),
    "legacy_interval": st.sampled_from(["6h", "1d", 3600, " 12h "]),
    "senders": st.sampled_from([[], ["gmail"], ["exchange-online", "exim-gnutls"]]),
    "timeout": st.floats(1e-12, 1, exclude_min=True)
    | st.sampled_from([1, "1s", "500ms", " 1s\u3000", "0h0m1s"]),
    "ehlo_name": st.sampled_from(["probe.example.org", "[192.0.2.1]", "[IPv6:2001:db8::1]"]),
    "ca_file": st.none(),
    "versions": st.lists(
        padded(version_spellings) | st.sampled_from([1.0, 1.1, 1.2, 1.3]),
        min_size=1,
        max_size=3,
        unique_by=lambda v: str(v).strip().lower().replace("v", "").replace("tls", ""),
    ),
    "connections": st.integers(1, 10),
    "max_connections_per_minute": st.integers(1, 100_000),
    "labels": st.none()
    | st.dictionaries(
        st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,6}", fullmatch=True).filter(
            lambda name: label_name_problem(name) is None
        ),
        st.text(min_size=1, max_size=6) | st.integers(-(2**64) + 1, 2**64 - 1),
        max_size=3,
    ),
}
#: What a host entry and a domain entry may set beside `host` and `domain`.
HOST_KEYS = frozenset(TARGET_KEYS) - {"host", "domain"}
DOMAIN_KEYS = HOST_KEYS - {"name", "servername"}
good_configs = st.fixed_dictionaries(
    {
        "targets": st.lists(
            st.fixed_dictionaries(
                {"host": good_values["host"]},
                optional={key: good_values[key] for key in TARGET_KEYS if key in HOST_KEYS},
            )
            | st.fixed_dictionaries(
                {"domain": good_values["domain"]},
                optional={key: good_values[key] for key in TARGET_KEYS if key in DOMAIN_KEYS},
            ),
            min_size=1,
            max_size=3,
            unique_by=lambda target: target.get("host") or target["domain"],
        )
    },
    optional={
        "defaults": st.fixed_dictionaries({}, optional={k: good_values[k] for k in SETTING_KEYS}),
        "on_demand": st.fixed_dictionaries(
            {},
            optional={
                "allow": st.lists(
                    padded(
                        st.sampled_from(
                            ["*.example.org", "mx.example.org.", "192.0.2.0/24", "2001:db8::/32"]
                        )
                    ),
                    max_size=3,
                ),
                "min_interval": good_values["interval"],
                "max_concurrent": st.integers(1, 1000),
            },
        ),
    },
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(good_configs)
def test_schemas_accept_good_configs_in_every_spelling(data: dict[str, Any]) -> None:
    verdicts = judge(yaml.safe_dump(data, allow_unicode=True))
    assert verdicts.schema or not verdicts.exporter
    assert verdicts.chart or not verdicts.rendered_same


# --- The generated files -------------------------------------------------------------------------


def test_committed_chart_schema_is_generated() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "helm-schema.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_schemas_are_valid_draft_7() -> None:
    jsonschema.Draft7Validator.check_schema(json_schema())
    jsonschema.Draft7Validator.check_schema(json.loads((CHART / "values.schema.json").read_text()))


def test_schema_names_every_key_with_its_default() -> None:
    definitions = json_schema()["definitions"]
    target = definitions["target"]["properties"]
    assert list(target) == list(TARGET_KEYS)
    assert list(definitions["settings"]["properties"]) == list(SETTING_KEYS)
    assert all(spec["description"] for spec in target.values())
    assert target["interval"]["default"] == "5m"
    assert target["timeout"]["default"] == "30s"
    assert target["port"]["default"] == 25
    assert target["connections"]["default"] == 6
    assert target["max_connections_per_minute"]["default"] == DEFAULT_MAX_CONNECTIONS_PER_MINUTE
    assert target["versions"]["default"] == ["ssl3", "1.0", "1.1", "1.2", "1.3"]
    assert definitions["target"]["oneOf"] == [{"required": ["host"]}, {"required": ["domain"]}]


def test_whitespace_class_is_what_strip_removes() -> None:
    pattern = re.compile(json_schema()["definitions"]["target"]["properties"]["tls"]["pattern"])
    assert all(pattern.fullmatch(f"{space}starttls{space}") for space in SPACES)
    assert not pattern.fullmatch("\ufeffstarttls")  # not white space to str.strip()
