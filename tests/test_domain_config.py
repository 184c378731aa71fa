"""Mail domains in the config: `domain:` targets, what they may set, and `dns:`."""

from __future__ import annotations

import pytest

from exporter.config import ConfigError, parse_config
from exporter.senders import BUILTIN_PROFILES
from exporter.target import DnsSettings, Target, TLSMode, TLSVersion


def problems(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml", default_ehlo_name="probe.example.org")
    return caught.value.problems


def test_a_domain_entry_becomes_a_mail_domain_with_its_settings() -> None:
    config = parse_config(
        """
defaults:
  interval: 10m
  labels: {team: mail, site: eu}
targets:
  - host: relay.example.org
  - domain: Partner.Example.
    port: 2525
    tls: implicit
    timeout: 20s
    ehlo_name: probe.example.net
    versions: ['1.2', '1.3']
    connections: 2
    labels: {partner: acme, site: us}
  - domain: bücher.example
dns:
  servers: ['127.0.0.1:5353', '[::1]:5353']
  timeout: 2s
""",
        "c.yaml",
        default_ehlo_name="probe.example.org",
    )
    assert [t.name for t in config.targets] == ["relay.example.org:25"]
    partner, books = config.domains
    assert partner.domain == "partner.example"  # lower case, no final dot
    assert books.domain == "xn--bcher-kva.example"
    assert partner.labels == (("partner", "acme"), ("site", "us"), ("team", "mail"))
    assert books.labels == (("site", "eu"), ("team", "mail"))
    assert config.dns == DnsSettings(servers=("127.0.0.1:5353", "[::1]:5353"), timeout=2.0)
    assert config.label_names == ("partner", "site", "team")
    # An MX host is probed as a target of its own, with the domain's settings.
    target = partner.target_for("mx1.partner.example", ("127.0.0.1",))
    assert target == Target(
        host="mx1.partner.example",
        port=2525,
        tls=TLSMode.IMPLICIT,
        name="mx1.partner.example:2525",
        servername="mx1.partner.example",
        ehlo_name="probe.example.net",
        timeout=20.0,
        interval=600.0,
        versions=(TLSVersion.TLS1_2, TLSVersion.TLS1_3),
        connections=2,
        addresses=("127.0.0.1",),
        senders=(BUILTIN_PROFILES["exchange-online"],),
        important_senders=("exchange-online",),
    )
    assert books.target_for("mx.books.example").tls is TLSMode.STARTTLS


def test_without_dns_the_system_resolver_is_used() -> None:
    config = parse_config("targets:\n  - domain: partner.example\n", "c.yaml")
    assert config.dns == DnsSettings()
    assert config.targets == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "targets:\n  - domain: partner.example\n    host: mx.partner.example\n",
            "c.yaml: targets[0].domain: give either `host` (one server) or `domain`"
            " (a mail domain's MX hosts), not both (line 2)",
        ),
        (
            "targets:\n  - port: 25\n",
            "c.yaml: targets[0]: `host` (a server) or `domain` (a mail domain) is required"
            " (line 2)",
        ),
        (
            "targets:\n  - domain: partner.example\n    servername: mx.partner.example\n",
            "c.yaml: targets[0].servername: cannot be set for a `domain`: each MX host is its"
            " own target, named host:port, with the MX host's name as servername (line 3)",
        ),
        (
            "targets:\n  - domain: 192.0.2.1\n",
            "c.yaml: targets[0].domain: '192.0.2.1' is an IP address, not a domain name"
            " (line 2)",
        ),
        (
            "targets:\n  - domain: partner.example\n  - domain: PARTNER.example.\n",
            "c.yaml: targets[1].domain: 'partner.example' is already the domain of targets[0]"
            " (line 3)",
        ),
        (
            "targets:\n  - domain: a.example\ndns:\n  servers: [ns1.example.org, 127.0.0.1]\n",
            "c.yaml: dns.servers[0]: DNS server 'ns1.example.org' is not an IP address"
            " (with an optional :PORT) (line 4)",
        ),
        (
            "targets:\n  - domain: partner.example\ndns:\n  servers: []\n",
            "c.yaml: dns.servers: must list at least one name server (or leave `servers` out)"
            " (line 4)",
        ),
        (
            "targets:\n  - domain: partner.example\ndns:\n  resolver: 127.0.0.1\n",
            "c.yaml: dns.resolver: unknown key (valid keys: servers, timeout) (line 4)",
        ),
        (
            "targets:\n  - domain: partner.example\ndns: 127.0.0.1\n",
            "c.yaml: dns: must be a mapping, got '127.0.0.1' (line 3)",
        ),
    ],
    ids=["both", "neither", "servername", "ip", "twice", "server-name", "no-servers",
         "unknown-key", "not-a-mapping"],
)  # fmt: skip
def test_domain_and_dns_problems_name_the_key(text: str, expected: str) -> None:
    found = tuple(f"c.yaml: {p}" for p in problems(text))
    assert expected in found, found
