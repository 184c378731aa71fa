"""Who /probe may probe (exporter.access): allow rules, and the addresses a name may not lead
to unless they are allowed themselves."""

from __future__ import annotations

import re

import pytest

from exporter.access import AccessPolicy, parse_rule, plain_address, special


def policy(*rules: str) -> AccessPolicy:
    return AccessPolicy.of(rules)


# --- Names ---------------------------------------------------------------------------------


def test_nothing_is_admitted_without_rules() -> None:
    empty = policy()
    assert empty.host_refusal("mx.example.org") == "mx.example.org is not in on_demand.allow"
    assert empty.host_refusal("192.0.2.1") is not None
    assert empty.host_refusal("::1") is not None


@pytest.mark.parametrize(
    ("host", "admitted"),
    [
        ("mx.partner.net", True),
        ("MX.Partner.NET.", True),
        ("a.mx.partner.net", False),
        ("partner.net", False),
        ("mx.partner.net.evil.example", False),
        ("xmx.partner.net", False),
    ],
)
def test_an_exact_name(host: str, admitted: bool) -> None:
    assert (policy("mx.partner.net").host_refusal(host) is None) is admitted


@pytest.mark.parametrize(
    ("host", "admitted"),
    [
        ("mx1.example.org", True),
        ("a.b.c.example.org", True),  # one or more labels before the domain
        ("EXAMPLE-X.example.org.", True),
        ("example.org", False),  # not the domain itself
        ("badexample.org", False),
        ("example.org.evil.test", False),
        ("mx1.example.org.evil.test", False),
    ],
)
def test_a_wildcard_admits_every_name_under_its_domain(host: str, admitted: bool) -> None:
    assert (policy("*.example.org").host_refusal(host) is None) is admitted


def test_a_unicode_rule_matches_its_a_labels() -> None:
    assert policy("*.bücher.example").host_refusal("mx.xn--bcher-kva.example") is None
    assert policy("MX.bücher.example.").host_refusal("mx.xn--bcher-kva.example") is None


def test_a_name_rule_admits_no_address_and_an_address_rule_no_name() -> None:
    assert policy("localhost").host_refusal("127.0.0.1") is not None
    assert policy("127.0.0.1").host_refusal("localhost") is not None


# --- Addresses and networks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "host", "admitted"),
    [
        (("192.0.2.0/24",), "192.0.2.77", True),
        (("192.0.2.0/24",), "192.0.3.1", False),
        (("192.0.2.1",), "192.0.2.1", True),
        (("2001:db8::/32",), "2001:db8:1::25", True),
        (("2001:db8::/32",), "[2001:db8::1]", True),
        (("2001:db8::/32",), "2001:db9::1", False),
        (("192.0.2.0/24",), "::ffff:192.0.2.5", True),  # the same address, mapped
        (("::ffff:192.0.2.0/120",), "192.0.2.5", True),
        (("10.0.0.0/8",), "10.9.8.7", True),
        (("10.1.0.0/16",), "10.2.0.1", False),
        (("127.0.0.1",), "127.0.0.1", True),
        (("::1",), "::1", True),
        (("::1",), "127.0.0.1", False),
        (("127.0.0.0/8",), "::ffff:127.0.0.1", True),
    ],
)
def test_address_rules(rules: tuple[str, ...], host: str, admitted: bool) -> None:
    assert (policy(*rules).host_refusal(host) is None) is admitted


@pytest.mark.parametrize(
    ("rule", "address"),
    [
        ("0.0.0.0/0", "127.0.0.1"),
        ("0.0.0.0/0", "10.0.0.1"),
        ("0.0.0.0/0", "169.254.169.254"),
        ("::/0", "::1"),
        ("::/0", "fd00::1"),
        ("::/0", "fd00:ec2::254"),
        ("::/0", "::ffff:127.0.0.1"),
        ("169.254.0.0/16", "169.254.169.254"),  # the metadata address needs its own rule
        ("fc00::/7", "fd00:ec2::254"),
        ("8.0.0.0/5", "10.0.0.1"),  # wider than the private range
    ],
)
def test_a_wide_network_does_not_admit_the_special_addresses_in_it(rule: str, address: str) -> None:
    assert policy(rule).host_refusal(address) is not None


def test_a_wide_network_admits_public_addresses() -> None:
    assert policy("0.0.0.0/0").host_refusal("192.0.2.1") is None
    assert policy("::/0").host_refusal("2001:db8::1") is None


def test_the_metadata_address_is_admitted_by_itself() -> None:
    assert policy("169.254.169.254").host_refusal("169.254.169.254") is None
    assert policy("fd00:ec2::254").host_refusal("fd00:ec2::254") is None
    assert policy("169.254.0.0/16").host_refusal("169.254.1.1") is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private (unique local)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("255.255.255.255", "reserved"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a00:1", "private, embedded"),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::1", "loopback, embedded"),  # 6to4 of 127.0.0.1
    ],
)
def test_special_addresses(address: str, kind: str) -> None:
    found = special(plain_address(address))
    assert found is not None
    assert found.kind == kind


@pytest.mark.parametrize(
    "address", ["192.0.2.1", "8.8.8.8", "2001:db8::1", "2a00:1450::1", "64:ff9b::808:808"]
)
def test_public_addresses(address: str) -> None:
    assert special(plain_address(address)) is None


# --- Names that resolve ----------------------------------------------------------------------


def test_a_name_resolving_to_public_addresses_needs_no_address_rule() -> None:
    allowed = policy("*.example.org")
    assert allowed.address_refusal("mx.example.org", ["192.0.2.1", "2001:db8::1"]) is None


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "10.0.0.1", "192.168.0.1", "fd00::1", "169.254.169.254", "fd00:ec2::254"],
)
def test_a_name_resolving_inside_is_refused(address: str) -> None:
    refusal = policy("*.example.org").address_refusal("mx.example.org", ["192.0.2.1", address])
    assert refusal is not None
    assert refusal.startswith(f"mx.example.org resolves to {address} (")
    assert refusal.endswith("which on_demand.allow does not list")


def test_a_name_resolving_inside_is_admitted_when_the_address_is_too() -> None:
    allowed = policy("*.example.org", "127.0.0.1", "10.0.0.0/8", "::1")
    assert allowed.address_refusal("mx.example.org", ["127.0.0.1", "::1", "10.1.1.1"]) is None
    assert allowed.address_refusal("mx.example.org", ["127.0.0.1", "192.168.0.1"]) is not None


# --- Writing rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "must not be empty"),
        ("*", "a wildcard is '*.' before a domain"),
        ("mx.*.example.org", "a wildcard is '*.' before a domain"),
        ("*example.org", "a wildcard is '*.' before a domain"),
        ("*.192.0.2.1", "not an address"),
        ("10.0.0.1/8", "did you mean '10.0.0.0/8'?"),
        ("10.0.0.0/33", "is not an IP network"),
        ("mx.example.org:25", "has a port"),
        ("[::1]:25", "has a port"),
        ("a b", "white space"),
        ("https://mx.example.org", "is a URL"),
    ],
)
def test_bad_rules_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_rule(text)


def test_rules_are_read_as_written() -> None:
    assert parse_rule(" *.Example.ORG. ").name == "example.org"
    assert parse_rule("[2001:db8::1]").network is not None
    assert str(parse_rule("::ffff:10.0.0.0/104").network) == "10.0.0.0/8"
