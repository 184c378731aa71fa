"""Config loading: good files become targets; bad ones name every problem and its key path."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import Config, ConfigError, load_config, parse_config
from exporter.config.schema import SETTING_KEYS, TARGET_KEYS
from exporter.config.yamlfile import Positions, load_yaml
from exporter.durations import format_duration, parse_duration
from exporter.names import RESERVED_LABELS
from exporter.senders import BUILTIN_PROFILES
from exporter.target import DEFAULT_VERSIONS, Target, TLSMode, TLSVersion

REPO = Path(__file__).resolve().parent.parent
EHLO = "probe.example.org"


def parse(text: str, **kwargs: Any) -> Config:
    return parse_config(textwrap.dedent(text), "test.yaml", default_ehlo_name=EHLO, **kwargs)


def problems(text: str, **kwargs: Any) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse(text, **kwargs)
    return info.value.problems


def assert_problem(found: tuple[str, ...], path: str | None, fragment: str) -> None:
    """Some problem is about `path` (None: the file as a whole) and says `fragment`."""
    prefix = f"{path}: " if path else ""
    matches = [p for p in found if p.startswith(prefix) and fragment in p]
    assert matches, f"no problem at {path!r} saying {fragment!r} in {found}"


def by_name(config: Config) -> dict[str, Target]:
    return {target.name: target for target in config.targets}


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


# --- Good files ----------------------------------------------------------------------------

GOOD = """\
defaults:
  interval: 10m
  timeout: 45s
  ehlo_name: probe.example.org
  versions: [1.2, "1.3", TLSv1.0]
  labels: {env: prod}
targets:
  - host: mx1.example.org
  - host: mx2.example.org
    port: 2525
    name: mx2
    tls: implicit
    servername: mail.example.org
    interval: 1h
    timeout: 2m
    versions: [ssl2, ssl3]
    connections: 1
    ehlo_name: "[192.0.2.1]"
    labels: {env: staging, site: eu, rack: 7}
  - host: smtps.example.org
    port: 465
  - host: "[2001:db8::25]"
"""


def test_defaults_apply_to_every_target() -> None:
    mx1 = by_name(parse(GOOD))["mx1.example.org:25"]
    assert mx1 == Target(
        host="mx1.example.org",
        port=25,
        tls=TLSMode.STARTTLS,
        name="mx1.example.org:25",
        servername="mx1.example.org",
        ehlo_name="probe.example.org",
        timeout=45.0,
        interval=600.0,
        versions=(TLSVersion.TLS1_0, TLSVersion.TLS1_2, TLSVersion.TLS1_3),
        ca_file=None,
        labels=(("env", "prod"),),
        connections=6,
        senders=(BUILTIN_PROFILES["exchange-online"],),  # by default, the one that matters
        important_senders=("exchange-online",),
    )


def test_target_keys_override_defaults_and_labels_merge() -> None:
    mx2 = by_name(parse(GOOD))["mx2"]
    assert mx2.host == "mx2.example.org"
    assert mx2.port == 2525
    assert mx2.tls is TLSMode.IMPLICIT
    assert mx2.servername == "mail.example.org"
    assert (mx2.interval, mx2.timeout) == (3600.0, 120.0)
    assert mx2.versions == (TLSVersion.SSL2, TLSVersion.SSL3)
    assert mx2.connections == 1
    assert mx2.ehlo_name == "[192.0.2.1]"
    assert mx2.labels == (("env", "staging"), ("rack", "7"), ("site", "eu"))


def test_port_465_defaults_to_implicit_tls() -> None:
    smtps = by_name(parse(GOOD))["smtps.example.org:465"]
    assert smtps.tls is TLSMode.IMPLICIT
    assert smtps.servername == "smtps.example.org"


def test_ipv6_host_loses_its_brackets() -> None:
    v6 = parse(GOOD).targets[3]
    assert v6.host == "2001:db8::25"
    assert v6.name == "[2001:db8::25]:25"
    assert v6.servername == "2001:db8::25"


def test_config_keeps_order_source_and_label_names() -> None:
    config = parse(GOOD)
    assert [t.host for t in config.targets] == [
        "mx1.example.org",
        "mx2.example.org",
        "smtps.example.org",
        "2001:db8::25",
    ]
    assert config.source == "test.yaml"
    assert config.label_names == ("env", "rack", "site")


def test_minimal_file_gets_builtin_defaults() -> None:
    (target,) = parse("targets: [{host: 192.0.2.7}]").targets
    assert target.name == "192.0.2.7:25"
    assert target.tls is TLSMode.STARTTLS
    assert (target.interval, target.timeout) == (300.0, 30.0)
    assert target.versions == DEFAULT_VERSIONS
    assert target.connections == 6
    assert target.ehlo_name == EHLO
    assert target.labels == ()


def test_machine_name_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def getfqdn() -> str:
        calls.append(1)
        return "host.example.org"

    monkeypatch.setattr("socket.getfqdn", getfqdn)
    config = parse_config("targets: [{host: a.example}, {host: b.example}]", "t.yaml")
    assert [t.ehlo_name for t in config.targets] == ["host.example.org"] * 2
    assert len(calls) == 1


@pytest.mark.parametrize("fqdn", ["buildhost", "", "bad_name.example.org"])
def test_machine_name_without_domain_gives_localhost(
    monkeypatch: pytest.MonkeyPatch, fqdn: str
) -> None:
    monkeypatch.setattr("socket.getfqdn", lambda: fqdn)
    config = parse_config("targets: [{host: a.example}]", "t.yaml")
    assert config.targets[0].ehlo_name == "localhost"


def test_machine_name_is_not_looked_up_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    def getfqdn() -> str:
        raise AssertionError("looked up")

    monkeypatch.setattr("socket.getfqdn", getfqdn)
    parse_config("defaults: {ehlo_name: p.example}\ntargets: [{host: a.example}]", "t.yaml")


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1d", 86400),
        ("1w", 604800),
        ("1y", 365 * 86400),
        ("1m30s500ms", 90.5),
        ("0", 0),
    ],
)
def test_prometheus_durations(written: str, seconds: float) -> None:
    assert parse_duration(written) == seconds


@pytest.mark.parametrize("written", ["", "5", "1.5m", "5 m", "m", "30s5m", "1S", "-5s", "5mm"])
def test_not_durations(written: str) -> None:
    assert parse_duration(written) is None


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0.5, 30, 90, 3600, 90000)] == [
        "500ms",
        "30s",
        "1m30s",
        "1h",
        "1d1h",
    ]


def test_bare_numbers_are_seconds() -> None:
    (target,) = parse(
        "defaults: {interval: 90, timeout: 2.5}\ntargets: [{host: a.example}]"
    ).targets
    assert (target.interval, target.timeout) == (90.0, 2.5)


@pytest.mark.parametrize(
    ("written", "version"),
    [
        ("'1.0'", TLSVersion.TLS1_0),
        ("1.0", TLSVersion.TLS1_0),
        ("1.1", TLSVersion.TLS1_1),
        ("TLSv1.2", TLSVersion.TLS1_2),
        ("tls1.3", TLSVersion.TLS1_3),
        ("SSLv3", TLSVersion.SSL3),
        ("ssl2", TLSVersion.SSL2),
    ],
)
def test_version_spellings(written: str, version: TLSVersion) -> None:
    (target,) = parse(f"targets: [{{host: a.example, versions: [{written}]}}]").targets
    assert target.versions == (version,)


def test_anchors_under_x_keys_merge_into_targets() -> None:
    config = parse("""\
        x-submission: &submission
          port: 587
          labels: {role: submission}
        targets:
          - <<: *submission
            host: a.example
          - <<: *submission
            host: b.example
            port: 2525
        """)
    assert [(t.port, t.labels) for t in config.targets] == [
        (587, (("role", "submission"),)),
        (2525, (("role", "submission"),)),
    ]


def test_unicode_host_names_are_stored_as_a_labels() -> None:
    """DNS, SNI and certificates carry A-labels; IDNA 2008 maps ß as itself, not to ss."""
    first, second = parse("""\
        targets:
          - host: MX.Bücher.example.
          - host: faß.example
            servername: Mail.Faß.example.
        """).targets
    assert (first.host, first.servername, first.name) == (
        "mx.xn--bcher-kva.example.",
        "mx.xn--bcher-kva.example",
        "mx.xn--bcher-kva.example.:25",
    )
    assert (second.host, second.servername) == ("xn--fa-hia.example", "mail.xn--fa-hia.example")


def test_tls_mode_can_be_forced_on_465() -> None:
    (target,) = parse("targets: [{host: a.example, port: 465, tls: starttls}]").targets
    assert target.tls is TLSMode.STARTTLS


def test_ca_file_relative_to_the_config_file(tmp_path: Path, ca_pem: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes(ca_pem.read_bytes())
    file = tmp_path / "config.yaml"
    file.write_text("defaults: {ca_file: certs/ca.pem}\ntargets: [{host: a.example}]\n")
    (target,) = load_config(file, default_ehlo_name=EHLO).targets
    assert target.ca_file == str(tmp_path / "certs" / "ca.pem")


def test_ca_file_null_means_the_system_store(ca_pem: Path) -> None:
    config = parse(f"""\
        defaults: {{ca_file: {ca_pem}}}
        targets:
          - host: a.example
          - host: b.example
            ca_file: null
        """)
    assert [t.ca_file for t in config.targets] == [str(ca_pem), None]


def test_the_example_config_loads() -> None:
    config = load_config(REPO / "config.example.yaml")
    assert len(config.targets) >= 4
    ports = {t.port: t for t in config.targets}
    assert {25, 587, 465} <= set(ports)
    assert ports[465].tls is TLSMode.IMPLICIT
    assert ports[587].tls is TLSMode.STARTTLS
    assert all(t.ehlo_name.count(".") >= 2 for t in config.targets)
    assert all(t.ca_file is None for t in config.targets)
    assert {"site", "role"} <= set(config.label_names)
    assert [d.domain for d in config.domains] == ["partner.example", "example.net"]


# --- Bad files -----------------------------------------------------------------------------

ONE = "targets:\n  - host: mx.example.org\n"

BAD: list[tuple[str, str, str | None, str]] = [
    # (id, yaml, key path or None for the file as a whole, message fragment)
    ("yaml-syntax", "targets: [\n  {host: a\n", None, "invalid YAML at line"),
    ("yaml-tab", "targets:\n\t- host: a\n", None, "invalid YAML at line 2"),
    ("yaml-bad-scalar", "targets: [{host: a, port: !!int x}]", None, "cannot read 'x' as int"),
    ("yaml-bad-bool", "targets: [{host: a, port: !!bool x}]", None, "column 27: cannot read 'x'"),
    (
        "yaml-control-char",
        "targets: [{host: a\x1f}]",
        None,
        "line 1, column 19: the character U+001F is not",
    ),
    ("yaml-deep", "[" * 2000, None, "nested too deeply"),
    ("yaml-bad-date", "targets: [{host: a, name: 2001-13-45}]", None, "month must be in"),
    ("yaml-two-documents", ONE + "---\n" + ONE, None, "invalid YAML"),
    ("empty", "", None, "the file is empty"),
    ("only-comments", "# targets:\n", None, "the file is empty"),
    ("top-list", "- host: a.example\n", None, "top level must be a mapping"),
    ("top-scalar", "hello\n", None, "got 'hello'"),
    ("no-targets", "defaults: {interval: 5m}\n", "targets", "is required"),
    ("targets-empty", "targets: []\n", "targets", "at least one target"),
    ("targets-null", "targets:\n", "targets", "must be a list, got nothing (null)"),
    ("targets-mapping", "targets: {host: a.example}\n", "targets", "must be a list"),
    ("target-string", "targets: [mx.example.org]\n", "targets[0]", "must be a mapping"),
    ("unknown-top", ONE + "target: []\n", "target", "did you mean 'targets'?"),
    ("unknown-target-key", "targets: [{hots: a}]\n", "targets[0].hots", "did you mean 'host'?"),
    ("unknown-default", "defaults: {intervall: 5m}\n" + ONE, "defaults.intervall", "'interval'"),
    ("unknown-far", "defaults: {zzz: 1}\n" + ONE, "defaults.zzz", "valid keys: interval"),
    ("port-in-defaults", "defaults: {port: 587}\n" + ONE, "defaults.port", "only be set per"),
    ("key-not-text", "targets: [{host: a, 1: b}]\n", "targets[0].1", "a key must be text"),
    ("key-yes", "targets: [{host: a, yes: b}]\n", "targets[0].true", "a key must be text"),
    ("key-twice", "targets:\n  - host: a\n    host: b\n", "targets[0].host", "more than once"),
    ("defaults-list", "defaults: [a]\n" + ONE, "defaults", "must be a mapping"),
    ("host-missing", "targets: [{port: 25}]\n", "targets[0]", "`host` (a server) or `domain`"),
    ("host-empty", "targets: [{host: ''}]\n", "targets[0].host", "must not be empty"),
    ("host-number", "targets: [{host: 25}]\n", "targets[0].host", "must be text, got 25"),
    ("host-space", "targets: [{host: mx example.org}]\n", "targets[0].host", "white space"),
    ("host-char", "targets: [{host: mx!.example.org}]\n", "targets[0].host", "contains '!'"),
    ("host-dots", "targets: [{host: mx..example.org}]\n", "targets[0].host", "empty part"),
    ("host-hyphen", "targets: [{host: -mx.example.org}]\n", "targets[0].host", "with '-'"),
    ("host-port", "targets: [{host: 'mx.example.org:25'}]\n", "targets[0].host", "host:port"),
    ("host-v6-port", "targets: [{host: '[::1]:25'}]\n", "targets[0].host", "[address]:port"),
    ("host-url", "targets: [{host: 'smtp://mx.example.org'}]\n", "targets[0].host", "is a URL"),
    ("host-ipv4", "targets: [{host: 300.1.2.3}]\n", "targets[0].host", "not a valid IPv4"),
    ("host-ipv6", "targets: [{host: '[2001:db8::zz]'}]\n", "targets[0].host", "not an IPv6"),
    ("host-v4-brackets", "targets: [{host: '[192.0.2.1]'}]\n", "targets[0].host", "only for IPv6"),
    (
        "host-idna2008",
        "targets: [{host: ☃.example}]\n",
        "targets[0].host",
        "'☃.example' contains '☃' (U+2603), which IDNA 2008 does not allow; if it is registered"
        " under the older IDNA 2003 rules, write 'xn--n3h.example'",
    ),
    (
        "servername-idna2008",
        "targets: [{host: a, servername: xn--bcher-kva.ab--ü.example}]\n",
        "targets[0].servername",
        "hyphens in 3rd and 4th position",
    ),
    (
        "ehlo-unicode",
        "defaults: {ehlo_name: probe.bücher.example}\n" + ONE,
        "defaults.ehlo_name",
        "is not ASCII; write it as 'probe.xn--bcher-kva.example'",
    ),
    ("host-long-label", f"targets: [{{host: {'a' * 64}.example}}]\n", "targets[0].host", "63"),
    ("port-text", "targets: [{host: a, port: abc}]\n", "targets[0].port", "got 'abc'"),
    (
        "port-high",
        "targets: [{host: a, port: 70000}]\n",
        "targets[0].port",
        "1 to 65535, got 70000",
    ),
    ("port-zero", "targets: [{host: a, port: 0}]\n", "targets[0].port", "got 0"),
    ("port-float", "targets: [{host: a, port: 25.0}]\n", "targets[0].port", "got 25.0"),
    ("port-yes", "targets: [{host: a, port: yes}]\n", "targets[0].port", "YAML reads yes/no"),
    ("tls-ssl", "targets: [{host: a, tls: ssl}]\n", "targets[0].tls", "did you mean 'implicit'"),
    ("tls-none", "targets: [{host: a, tls: none}]\n", "targets[0].tls", "'starttls' or 'implicit'"),
    ("tls-bool", "targets: [{host: a, tls: true}]\n", "targets[0].tls", "got true"),
    ("name-empty", "targets: [{host: a, name: ''}]\n", "targets[0].name", "must not be empty"),
    ("name-list", "targets: [{host: a, name: [x]}]\n", "targets[0].name", "must be text"),
    ("servername", "targets: [{host: a, servername: a b}]\n", "targets[0].servername", "space"),
    ("interval-words", "defaults: {interval: 5 minutes}\n" + ONE, "defaults.interval", "30s"),
    ("interval-quoted", "defaults: {interval: '30'}\n" + ONE, "defaults.interval", "needs a unit"),
    ("interval-short", "defaults: {interval: 500ms}\n" + ONE, "defaults.interval", "at least 1s"),
    ("interval-long", "defaults: {interval: 2y}\n" + ONE, "defaults.interval", "at most 1y"),
    ("interval-huge", f"defaults: {{interval: {'9' * 30}}}\n" + ONE, "defaults.interval", "1y"),
    ("interval-neg", "defaults: {interval: -5}\n" + ONE, "defaults.interval", "got -5"),
    ("interval-nan", "defaults: {interval: .nan}\n" + ONE, "defaults.interval", "a duration"),
    ("timeout-zero", "defaults: {timeout: 0s}\n" + ONE, "defaults.timeout", "more than 0"),
    ("timeout-bool", "defaults: {timeout: on}\n" + ONE, "defaults.timeout", "got true"),
    ("timeout-list", "defaults: {timeout: [1]}\n" + ONE, "defaults.timeout", "got a list"),
    (
        "timeout-over-default-interval",
        "defaults: {timeout: 10m}\n" + ONE,
        "defaults.timeout",
        "the timeout 10m is longer than the interval 5m",
    ),
    (
        "target-timeout-over-interval",
        "targets: [{host: mx.example.org, timeout: 6m}]\n",
        "targets[0].timeout",
        "target 'mx.example.org:25': the timeout 6m is longer than the interval 5m",
    ),
    (
        "target-interval-under-timeout",
        "defaults: {timeout: 1m}\ntargets: [{host: a.example, name: a, interval: 30s}]\n",
        "targets[0].interval",
        "target 'a': the timeout 1m is longer than the interval 30s",
    ),
    ("versions-string", "defaults: {versions: '1.2'}\n" + ONE, "defaults.versions", "a list"),
    ("versions-empty", "defaults: {versions: []}\n" + ONE, "defaults.versions", "at least one"),
    (
        "versions-unknown",
        "targets: [{host: a, versions: ['1.2', '1.4']}]\n",
        "targets[0].versions[1]",
        "unknown version '1.4' (valid: ssl2, ssl3, 1.0, 1.1, 1.2, 1.3)",
    ),
    ("versions-int", "defaults: {versions: [1]}\n" + ONE, "defaults.versions[0]", "version 1 "),
    (
        "versions-twice",
        "defaults: {versions: ['1.2', 1.2]}\n" + ONE,
        "defaults.versions[1]",
        "1.2 is listed twice (also at defaults.versions[0])",
    ),
    ("ehlo-underscore", "defaults: {ehlo_name: a_b.example}\n" + ONE, "defaults.ehlo_name", "'_'"),
    ("ehlo-bare-ip", "defaults: {ehlo_name: 192.0.2.1}\n" + ONE, "defaults.ehlo_name", "[192.0"),
    ("ehlo-dot", "defaults: {ehlo_name: probe.example.}\n" + ONE, "defaults.ehlo_name", "a dot"),
    ("ehlo-literal", "defaults: {ehlo_name: '[x]'}\n" + ONE, "defaults.ehlo_name", "literal"),
    ("conn-zero", "defaults: {connections: 0}\n" + ONE, "defaults.connections", "1 to 10"),
    ("conn-many", "targets: [{host: a, connections: 11}]\n", "targets[0].connections", "got 11"),
    ("labels-list", "targets: [{host: a, labels: [a]}]\n", "targets[0].labels", "a mapping"),
    ("label-digit", "targets: [{host: a, labels: {1x: b}}]\n", "targets[0].labels.1x", "valid"),
    ("label-dash", "defaults: {labels: {a-b: c}}\n" + ONE, "defaults.labels.a-b", "valid label"),
    ("label-dunder", "targets: [{host: a, labels: {__x: b}}]\n", "targets[0].labels.__x", "__"),
    ("label-target", "targets: [{host: a, labels: {target: b}}]\n", "targets[0].labels.target", ""),
    (
        "label-version",
        "targets: [{host: a, labels: {version: b}}]\n",
        "targets[0].labels.version",
        "",
    ),
    ("label-instance", "defaults: {labels: {instance: x}}\n" + ONE, "defaults.labels.instance", ""),
    ("label-value-list", "targets: [{host: a, labels: {a: [b]}}]\n", "targets[0].labels.a", "text"),
    ("label-value-bool", "targets: [{host: a, labels: {a: no}}]\n", "targets[0].labels.a", "false"),
    ("label-value-float", "targets: [{host: a, labels: {a: 1.5}}]\n", "targets[0].labels.a", "1.5"),
    (
        "label-value-empty",
        "targets: [{host: a, labels: {a: ''}}]\n",
        "targets[0].labels.a",
        "empty",
    ),
    (
        "label-key-twice",
        "defaults:\n  labels:\n    a: b\n    a: c\n" + ONE,
        "defaults.labels.a",
        "",
    ),
    (
        "names-twice",
        "targets: [{host: a, name: x}, {host: b, name: x}]\n",
        "targets[1].name",
        "'x' is already the name of targets[0]",
    ),
    (
        "default-names-twice",
        "targets: [{host: mx}, {host: mx, port: 25}]\n",
        "targets[1]",
        "its name 'mx:25' (host:port, the default) is already the name of targets[0]",
    ),
    (
        "ipv6-names-twice",
        "targets: [{host: '::1'}, {host: '[::1]'}]\n",
        "targets[1]",
        "'[::1]:25'",
    ),
    (
        "ca-missing",
        "defaults: {ca_file: /nonexistent/ca.pem}\n" + ONE,
        "defaults.ca_file",
        "not found",
    ),
    ("ca-dir", "targets: [{host: a, ca_file: /}]\n", "targets[0].ca_file", "is a directory"),
    ("ca-number", "targets: [{host: a, ca_file: 5}]\n", "targets[0].ca_file", "must be text"),
]


@pytest.mark.parametrize(
    ("text", "path", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_config(text: str, path: str | None, fragment: str) -> None:
    assert_problem(problems(text), path, fragment)


def test_there_are_many_bad_cases() -> None:
    assert len(BAD) >= 30
    assert len({b[0] for b in BAD}) == len(BAD)


def test_every_problem_at_once() -> None:
    text = """\
        defaults:
          interval: 5 minutes
          versions: [1.2, 1.9]
        targets:
          - host: mx.example.org
            port: 70000
          - host: mx2.example.org
            tls: smtps
            labels: {target: x, ok: fine}
          - host: mx3.example.org
            hots: x
          - port: 25
        """
    found = problems(text)
    assert found == (
        "defaults.interval: must be a duration like 30s, 5m or 1h30m, or a number of seconds,"
        " got '5 minutes' (line 2)",
        "defaults.versions[1]: unknown version 1.9 (valid: ssl2, ssl3, 1.0, 1.1, 1.2, 1.3)"
        " (line 3)",
        "targets[0].port: must be an integer from 1 to 65535, got 70000 (line 6)",
        "targets[1].tls: must be 'starttls' or 'implicit', got 'smtps'"
        " (did you mean 'implicit'? TLS from the first byte, as on port 465) (line 8)",
        "targets[1].labels.target: is a label the exporter or Prometheus sets itself;"
        " choose another name (line 9)",
        "targets[2].hots: unknown key (did you mean 'host'?) (line 11)",
        "targets[3]: `host` (a server) or `domain` (a mail domain) is required (line 12)",
    )


def test_error_message_names_the_file_on_every_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("targets: [{host: a, port: 0}, {host: b, port: x}]", "/etc/mail.yaml")
    lines = str(info.value).splitlines()
    assert lines == [
        "/etc/mail.yaml: targets[0].port: must be an integer from 1 to 65535, got 0 (line 1)",
        "/etc/mail.yaml: targets[1].port: must be an integer from 1 to 65535, got 'x' (line 1)",
    ]


def test_yaml_error_has_line_and_column() -> None:
    (problem,) = problems("targets:\n  - host: a\n   port: 25\n")
    assert problem.startswith("invalid YAML at line 3, column 4: ")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "holds no PEM certificate"),
        (b"just text\n", "holds no PEM certificate"),
        (b"\x30\x82\x01\x0a", "DER?"),
        (b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", "broken PEM"),
    ],
)
def test_ca_file_must_hold_pem_certificates(tmp_path: Path, content: bytes, fragment: str) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(content)
    assert_problem(
        problems(f"targets: [{{host: a, ca_file: {ca}}}]"), "targets[0].ca_file", fragment
    )


def test_bad_ca_file_in_defaults_is_reported_once() -> None:
    found = problems("defaults: {ca_file: /nonexistent.pem}\ntargets: [{host: a}, {host: b}]")
    assert len(found) == 1


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: file not found"


def test_load_config_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_load_config_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes("targets: [{host: a, name: caf\xe9}]".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text: byte 0xe9"):
        load_config(file)


def test_config_error_survives_pickling() -> None:
    import pickle

    error = ConfigError("c.yaml", ["a: b"])
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.source, copy.problems, str(copy)) == ("c.yaml", ("a: b",), "c.yaml: a: b")


# --- Anything at all -----------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["5m", "0", "1.2", "ssl2", "implicit", "[::1]", "a.example", "465"]),
)
keys = st.one_of(st.sampled_from(("defaults", "targets", *TARGET_KEYS, *SETTING_KEYS)), st.text())
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
plausible: dict[str, st.SearchStrategy[Any]] = {
    "host": st.sampled_from(["mx.example.org", "192.0.2.1", "[2001:db8::1]", "::1", "a_b.test"]),
    "port": st.integers(-1, 70000),
    "tls": st.sampled_from(["starttls", "implicit", "STARTTLS", "ssl"]),
    "name": st.text(max_size=8),
    "servername": st.sampled_from(["mail.example.org", "127.0.0.1", "bad name"]),
    "interval": st.sampled_from(["1s", "5m", "1h30m", "0", "2y", 60, 0.5]),
    "timeout": st.sampled_from(["500ms", "30s", "10m", 0, 3.5]),
    "ehlo_name": st.sampled_from(["probe.example.org", "[192.0.2.1]", "[IPv6:::1]", "x_y"]),
    "ca_file": st.sampled_from([None, "/nonexistent.pem", "/"]),
    "versions": st.lists(st.sampled_from(["ssl2", "ssl3", "1.0", 1.1, 1.2, "TLSv1.3", "1.4"])),
    "connections": st.integers(-1, 12),
    "labels": st.dictionaries(
        st.sampled_from(["site", "role", "target", "__x", "1a", "ok_1"]),
        st.one_of(st.text(max_size=5), st.integers(), st.booleans()),
        max_size=3,
    ),
}


def mappings(allowed: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """Mappings of `allowed` keys to mostly plausible, sometimes arbitrary values."""
    return st.fixed_dictionaries(
        {}, optional={key: plausible[key] | anything for key in allowed if key in plausible}
    )


configs = st.fixed_dictionaries(
    {},
    optional={
        "defaults": mappings(SETTING_KEYS) | anything,
        "targets": st.lists(mappings(TARGET_KEYS), max_size=4) | anything,
    },
)


def outcome(text: str) -> Config | ConfigError:
    """The config `text` gives, or the error it raises."""
    try:
        return parse_config(text, "fuzz.yaml", default_ehlo_name=EHLO)
    except ConfigError as error:
        return error


def parses_or_reports(text: str) -> None:
    result = outcome(text)
    if isinstance(result, ConfigError):
        assert result.problems
        assert all(isinstance(p, str) and p for p in result.problems)
        assert str(result).startswith("fuzz.yaml: ")
    else:
        assert result.targets


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text_parses_or_reports(text: str) -> None:
    parses_or_reports(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(anything)
def test_any_yaml_parses_or_reports(data: object) -> None:
    parses_or_reports(yaml.safe_dump(data))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_config_shaped_yaml_parses_or_reports(data: object) -> None:
    parses_or_reports(yaml.safe_dump(data))


yaml_tokens = st.sampled_from(
    [
        "targets:",
        "defaults:",
        "\n",
        "  ",
        "- ",
        "host: ",
        "port: ",
        "{",
        "}",
        "[",
        "]",
        ", ",
        "&a ",
        "*a",
        "<<: ",
        "!!int ",
        "!!binary ",
        "? ",
        ": ",
        "'",
        '"',
        "#",
        "---",
        "...",
        "1:2:3",
        "2001-13-40",
        "yes",
        "~",
        ".inf",
        "mx.example.org",
        "[::1]",
        "0x1f",
        "1e999",
        "9" * 40,
        "\t",
        "%YAML 1.1\n",
        "!x ",
        "|\n",
        ">\n",
    ]
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(yaml_tokens, max_size=30).map("".join))
def test_yaml_token_soup_parses_or_reports(text: str) -> None:
    parses_or_reports(text)


valid_settings = st.fixed_dictionaries(
    {},
    optional={
        "interval": st.sampled_from(["5m", "1h", 600, "1d"]),
        "timeout": st.sampled_from(["1s", "30s", "2m", 45.5]),
        "ehlo_name": st.sampled_from(["probe.example.org", "[192.0.2.1]", "[IPv6:2001:db8::9]"]),
        "versions": st.lists(
            st.sampled_from(["ssl2", "ssl3", "1.0", "1.1", "1.2", "1.3"]), min_size=1, unique=True
        ),
        "connections": st.integers(1, 10),
        "labels": st.dictionaries(
            st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
                lambda n: n not in RESERVED_LABELS
            ),
            st.text(min_size=1, max_size=8) | st.integers(-(2**63), 2**63 - 1),
            max_size=3,
        ),
    },
)
valid_targets = st.lists(
    st.fixed_dictionaries(
        {
            "host": st.sampled_from(["mx.example.org", "192.0.2.1", "2001:db8::1", "a-b.example"]),
            "port": st.integers(1, 65535),
        },
        optional={"tls": st.sampled_from(["starttls", "implicit"])},
    ).flatmap(lambda t: valid_settings.map(lambda s: {**t, **s})),
    min_size=1,
    max_size=5,
    unique_by=lambda t: (t["host"], t["port"]),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(valid_settings, valid_targets)
def test_valid_configs_load(defaults: dict[str, Any], targets: list[dict[str, Any]]) -> None:
    config = parse(yaml.safe_dump({"defaults": defaults, "targets": targets}))
    assert len(config.targets) == len(targets)
    for written, target in zip(targets, config.targets, strict=True):
        assert (target.host, target.port) == (written["host"], written["port"])
        implicit = written.get("tls", "implicit" if written["port"] == 465 else "starttls")
        assert target.tls is TLSMode(implicit)
        assert target.timeout <= target.interval
        labels = {
            k: str(v)
            for k, v in {**defaults.get("labels", {}), **written.get("labels", {})}.items()
        }
        assert dict(target.labels) == labels


# --- Every key reaches the target -----------------------------------------------------------

#: For every key a target may set: a value in YAML, and what the `Target` then holds. A new
#: key needs a row here, so a key that is validated but never reaches the probe fails.
EVERY_KEY: dict[str, tuple[str, tuple[str, object]]] = {
    "host": ("mx9.example.org", ("host", "mx9.example.org")),
    "port": ("2525", ("port", 2525)),
    "tls": ("implicit", ("tls", TLSMode.IMPLICIT)),
    "name": ("mx-nine", ("name", "mx-nine")),
    "servername": ("mail.example.org", ("servername", "mail.example.org")),
    "interval": ("7m", ("interval", 420.0)),
    "legacy_interval": ("6h", ("legacy_interval", 21600.0)),
    "senders": ("[gmail]", ("senders", (BUILTIN_PROFILES["gmail"],))),
    "timeout": ("17s", ("timeout", 17.0)),
    "ehlo_name": ("other.example.org", ("ehlo_name", "other.example.org")),
    "ca_file": ("null", ("ca_file", None)),
    "versions": ("['1.2']", ("versions", (TLSVersion.TLS1_2,))),
    "connections": ("3", ("connections", 3)),
    "max_connections_per_minute": ("30", ("max_connections_per_minute", 30)),
    "labels": ("{site: eu}", ("labels", (("site", "eu"),))),
}


def test_every_target_key_has_a_row() -> None:
    """`domain` has tests of its own (tests/test_domain_config.py): it replaces `host`."""
    assert sorted(EVERY_KEY) == sorted(set(TARGET_KEYS) - {"domain"})


@pytest.mark.parametrize("key", sorted(EVERY_KEY))
def test_every_target_key_reaches_the_target(key: str, ca_pem: Path) -> None:
    written, (field, expected) = EVERY_KEY[key]
    base = {"host": "mx1.example.org", "ca_file": str(ca_pem)}
    entries = {**base, key: written}
    body = "\n".join(f"    {k}: {v}" for k, v in entries.items())
    (target,) = parse(f"targets:\n  -\n{body}\n").targets
    (plain,) = parse(f"targets:\n  - host: mx1.example.org\n    ca_file: {ca_pem}\n").targets
    assert getattr(target, field) == expected
    if key != "host":  # the host is required, so it is in both
        assert getattr(plain, field) != expected, "the row's value must differ from the default"


@pytest.mark.parametrize(
    "text",
    [GOOD, "targets:\n  - {host: a.example, labels: {x: '1'}}\n  - host: b.example\n", "- 1\n"],
)
def test_libyaml_and_the_pure_parser_read_alike(text: str) -> None:
    """LibYAML reads files fast; the pure-Python parser gives the messages; both record the
    same lines."""
    fast, fast_positions = load_yaml(text)
    pure, pure_positions = load_yaml(text, libyaml=False)
    assert fast == pure

    def recorded(positions: Positions) -> list[list[str]]:
        return sorted(sorted(map(repr, lines.items())) for _, lines in positions.lines.values())

    assert recorded(fast_positions) == recorded(pure_positions)
    assert recorded(fast_positions)  # lines were recorded at all


@pytest.mark.parametrize("text", ["targets:\n  - host:\tmx.example.org\n", "a: [b,\tc]\n"])
def test_tabs_are_refused_wherever_yaml_is_parsed(text: str) -> None:
    """LibYAML takes these tabs, the pure parser does not: the file is judged the same on
    every machine, whichever PyYAML it has."""
    assert_problem(problems(text), None, "invalid YAML")


def test_labels_are_bounded_and_ports_are_ascii_digits() -> None:
    """`defaults.labels` merge into every target: a cap keeps a file from growing with the
    square of its size. A port of Arabic-Indic digits is no port."""
    many = "{" + ", ".join(f"l{i}: v" for i in range(65)) + "}"
    with pytest.raises(ConfigError) as caught:
        parse(f"defaults:\n  labels: {many}\ntargets:\n  - host: mx.example.org\n")
    assert any("sets 65 labels; at most 64" in p for p in caught.value.problems)
    with pytest.raises(ConfigError):
        parse("targets:\n  - host: mx.example.org\n    port: '٥٣'\n")
    from exporter.names import parse_port

    with pytest.raises(ValueError, match="port must be a number"):
        parse_port("٥٣")
