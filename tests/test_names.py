"""Names on the wire and in labels: what each rule accepts, what it refuses and why."""

from __future__ import annotations

import re

import pytest

from exporter.names import (
    RESERVED_LABELS,
    ehlo_name_problem,
    format_address,
    hostname_problem,
    is_ip_address,
    is_ipv4,
    is_ipv6,
    label_name_problem,
    machine_ehlo_name,
    parse_host,
    parse_listen_address,
    parse_port,
    sni_name,
    split_host_port,
    to_a_labels,
)

# --- Host names and addresses ----------------------------------------------------------------

GOOD_HOSTS = [
    # (written, host)
    ("mx.example.org", "mx.example.org"),
    ("MX.Example.ORG", "MX.Example.ORG"),
    ("mx.example.org.", "mx.example.org."),
    ("localhost", "localhost"),
    ("_smtp.example.org", "_smtp.example.org"),
    ("a-b.example", "a-b.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("xn--zz.example", "xn--zz.example"),  # an A-label written by hand reaches DNS as is
    ("192.0.2.1", "192.0.2.1"),
    ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("::1", "::1"),
    ("fe80::1%eth0", "fe80::1%eth0"),
    ("a" * 63 + ".example", "a" * 63 + ".example"),
]


@pytest.mark.parametrize(("written", "host"), GOOD_HOSTS)
def test_good_hosts(written: str, host: str) -> None:
    assert parse_host(written) == (host, None)
    assert parse_host(written, unicode=True) == (host, None)


BAD_HOSTS = [
    # (written, what the problem says)
    ("smtp://mx.example.org", "is a URL"),
    ("mx.example.org:25", "looks like host:port"),
    ("[2001:db8::1]:25", "looks like [address]:port"),
    ("[2001:db8::1", "has '[' without ']'"),
    ("[2001:db8::1]x", "has text after ']'"),
    ("[192.0.2.1]", "brackets, which are only for IPv6"),
    ("[mx.example.org]", "is not an IPv6 address inside [ ]"),
    ("2001:db8::zz", "is not a valid IPv6 address"),
    ("300.1.2.3", "is not a valid IPv4 address"),
    ("1.2.3", "is not a valid IPv4 address"),
    ("mx example.org", "contains white space"),
    ("mx.example.org\r\n", "contains white space"),
    ("mx!.example.org", "contains '!'"),
    ("mx..example.org", "has an empty part"),
    (".mx.example.org", "has an empty part"),
    ("-mx.example.org", "starts or ends with '-'"),
    ("mx-.example.org", "starts or ends with '-'"),
    ("a" * 64 + ".example", "longer than 63 characters"),
    (".".join(["a" * 60] * 5), "longer than 253 characters"),
    ("mx.example.123", "ends in an all-digit part"),
    ("", "has an empty part"),
]


@pytest.mark.parametrize(("written", "problem"), BAD_HOSTS)
def test_bad_hosts(written: str, problem: str) -> None:
    for unicode in (False, True):
        host, found = parse_host(written, unicode=unicode)
        assert host == written
        assert found is not None
        assert problem in found


UNICODE_HOSTS = [
    # (written, A-label form): IDNA 2008 after the UTS #46 mapping, as browsers and curl
    ("mx.bücher.example", "mx.xn--bcher-kva.example"),
    ("MX.Bücher.Example", "mx.xn--bcher-kva.example"),  # mapped to lower case
    ("mx.bücher.example.", "mx.xn--bcher-kva.example."),
    ("faß.example", "xn--fa-hia.example"),  # IDNA 2003 would make it fass.example
    ("ﬀ.example", "ff.example"),  # compatibility characters are mapped
    ("\uff4d\uff58\uff0eexample", "mx.example"),  # full-width m, x and dot
    ("mail。例え.テスト", "mail.xn--r8jz45g.xn--zckzah"),  # ideographic full stop
    ("mx_1.bücher.example", "mx_1.xn--bcher-kva.example"),  # ASCII labels pass unchecked
]


@pytest.mark.parametrize(("written", "a_labels"), UNICODE_HOSTS)
def test_unicode_hosts_become_a_labels(written: str, a_labels: str) -> None:
    assert parse_host(written, unicode=True) == (a_labels, None)
    assert to_a_labels(written) == (a_labels.lower(), None)


@pytest.mark.parametrize(("written", "a_labels"), UNICODE_HOSTS)
def test_unicode_hosts_without_unicode_name_their_a_labels(written: str, a_labels: str) -> None:
    host, problem = parse_host(written)
    assert host == written
    assert problem == f"is not ASCII; write it as {a_labels.lower()!r}"


REFUSED_BY_IDNA_2008 = [
    # (written, what the problem says)
    ("☃.example", "contains '☃' (U+2603), which IDNA 2008 does not allow"),
    ("i❤.ws", "IDNA 2008 does not allow; if it is registered under the older IDNA 2003"),
    ("i❤.ws", "write 'xn--i-7iq.ws'"),
    ("a\u200db.example", "contains U+200D where IDNA 2008 does not allow it"),
    ("\u05d0a.example", "mixes right-to-left and left-to-right text"),
    ("ab--ü.example", "hyphens in 3rd and 4th position"),
    ("ü" * 64 + ".example", "Label too long"),
    ("mx bücher.example", "contains white space"),
    ("mx!.bücher.example", "contains '!'"),
]


@pytest.mark.parametrize(("written", "problem"), REFUSED_BY_IDNA_2008)
def test_unicode_hosts_idna_2008_refuses(written: str, problem: str) -> None:
    for unicode in (False, True):
        host, found = parse_host(written, unicode=unicode)
        assert host == written
        assert found is not None
        assert problem in found


def test_a_character_idna_2003_dropped_gets_no_legacy_hint() -> None:
    """IDNA 2003 maps U+200D to nothing: 'ab.example' is another name, not a spelling."""
    _, problem = to_a_labels("a\u200db.example")
    assert problem is not None
    assert "IDNA 2003" not in problem


@pytest.mark.parametrize(
    ("name", "underscore", "problem"),
    [
        ("mx.example.org", False, None),
        ("_smtp.example.org", True, None),
        ("_smtp.example.org", False, "contains '_', which is not allowed here"),
        ("mx.bücher.example", True, "is not ASCII; write it as 'mx.xn--bcher-kva.example'"),
        ("a_b.bücher.example", False, "contains '_', which is not allowed here"),
    ],
)
def test_hostname_problem(name: str, underscore: bool, problem: str | None) -> None:
    assert hostname_problem(name, underscore=underscore) == problem


# --- EHLO names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("probe.example.org", None),
        ("localhost", None),
        ("[192.0.2.1]", None),
        ("[IPv6:2001:db8::1]", None),
        ("[ipv6:::1]", None),
        ("192.0.2.1", "is an address; EHLO needs it in brackets: '[192.0.2.1]'"),
        ("2001:db8::1", "is an address; EHLO needs it as '[IPv6:2001:db8::1]'"),
        ("[2001:db8::1]", "is not an address literal"),
        ("[IPv6:fe80::1%eth0]", "is not an address literal"),
        ("[x]", "is not an address literal"),
        ("probe.example.org.", "must not end with a dot"),
        ("probe_1.example.org", "contains '_', which is not allowed here"),
        ("probe example.org", "contains white space"),
        ("probe.example.org\r\nRSET", "contains white space"),
        ("héllo.test", "is not ASCII; write it as 'xn--hllo-bpa.test'"),
        ("☃.test", "IDNA 2008 does not allow"),
    ],
)
def test_ehlo_name_problem(name: str, problem: str | None) -> None:
    found = ehlo_name_problem(name)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(
    ("fqdn", "name"),
    [
        ("probe.example.org", "probe.example.org"),
        ("probe.example.org.", "probe.example.org"),
        ("buildhost", "localhost"),
        ("", "localhost"),
        ("bad_name.example.org", "localhost"),
        ("héllo.example.org", "localhost"),
    ],
)
def test_machine_ehlo_name(monkeypatch: pytest.MonkeyPatch, fqdn: str, name: str) -> None:
    monkeypatch.setattr("socket.getfqdn", lambda: fqdn)
    assert machine_ehlo_name() == name


# --- Label names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("site", None),
        ("_site", None),
        ("Site_2", None),
        ("1site", "is not a valid label name"),
        ("a-b", "is not a valid label name"),
        ("", "is not a valid label name"),
        ("ä", "is not a valid label name"),
        ("__name__", "reserved for Prometheus"),
        ("__x", "reserved for Prometheus"),
        ("target", "sets itself"),
        ("version", "sets itself"),
        ("instance", "sets itself"),
        ("job", "sets itself"),
    ],
)
def test_label_name_problem(name: str, problem: str | None) -> None:
    found = label_name_problem(name)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_every_reserved_label_is_refused() -> None:
    assert all(label_name_problem(name) is not None for name in RESERVED_LABELS)


# --- Addresses and ports -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "v4", "v6"),
    [
        ("192.0.2.1", True, False),
        ("2001:db8::1", False, True),
        ("::ffff:192.0.2.1", False, True),
        ("[::1]", False, False),
        ("192.0.2.256", False, False),
        ("mx.example.org", False, False),
    ],
)
def test_ip_addresses(text: str, v4: bool, v6: bool) -> None:
    assert (is_ipv4(text), is_ipv6(text), is_ip_address(text)) == (v4, v6, v4 or v6)


def test_no_idna_2003_hint_for_a_name_that_is_no_host_name() -> None:
    _, problem = parse_host("mx$ä.example", unicode=True)
    assert problem == "contains '$' (U+0024), which IDNA 2008 does not allow"


@pytest.mark.parametrize(
    ("servername", "sni"),
    [
        ("mx.example.org", "mx.example.org"),
        ("mx.example.org.", "mx.example.org"),
        ("192.0.2.1", None),
        ("2001:db8::1", None),
        ("[2001:db8::1]", None),
        ("192.0.2.1.", None),  # an address with a final dot is still an address
        ("mx.bücher.example", "mx.xn--bcher-kva.example"),
        ("☃.example", None),  # refused by IDNA 2008: no SNI rather than a wrong one
        (".", None),
    ],
)
def test_sni_name(servername: str, sni: str | None) -> None:
    assert sni_name(servername) == sni


@pytest.mark.parametrize(
    ("host", "port", "address"),
    [
        ("mx.example.org", 25, "mx.example.org:25"),
        ("192.0.2.1", 465, "192.0.2.1:465"),
        ("2001:db8::1", 587, "[2001:db8::1]:587"),
    ],
)
def test_format_address(host: str, port: int, address: str) -> None:
    assert format_address(host, port) == address


@pytest.mark.parametrize(
    ("text", "allow_zero", "port"),
    [("25", False, 25), ("65535", False, 65535), ("0", True, 0), ("1", False, 1)],
)
def test_parse_port(text: str, allow_zero: bool, port: int) -> None:
    assert parse_port(text, allow_zero=allow_zero) == port


@pytest.mark.parametrize(
    ("text", "allow_zero"),
    [("0", False), ("65536", False), ("-1", True), ("", True), ("2 5", True), ("x", False)],
)
def test_bad_port(text: str, allow_zero: bool) -> None:
    with pytest.raises(ValueError, match="port must be a number from"):
        parse_port(text, allow_zero=allow_zero)


@pytest.mark.parametrize(
    ("text", "split"),
    [
        ("mx.example.org", ("mx.example.org", None)),
        ("mx.example.org:25", ("mx.example.org", "25")),
        ("[2001:db8::1]:25", ("2001:db8::1", "25")),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("2001:db8::1", ("2001:db8::1", None)),
        (":9025", ("", "9025")),
    ],
)
def test_split_host_port(text: str, split: tuple[str, str | None]) -> None:
    assert split_host_port(text) == split


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[2001:db8::1", "expected [IPv6]:PORT"),
        ("[2001:db8::1]x", "expected [IPv6]:PORT"),
        ("2001:db8::zz:25", "an IPv6 address with a port needs brackets"),
        ("2001:db8:1:25", "an IPv6 address with a port needs brackets"),
        ("mx.example.org:25:26", "expected HOST or HOST:PORT"),
    ],
)
def test_bad_host_port(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        split_host_port(text)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        (":9025", (None, 9025)),
        ("0.0.0.0:9025", ("0.0.0.0", 9025)),
        ("[::1]:9025", ("::1", 9025)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_listen_address(text: str, address: tuple[str | None, int]) -> None:
    assert parse_listen_address(text) == address


@pytest.mark.parametrize("text", ["9025", "localhost", ":99999", "[::1]"])
def test_bad_listen_address(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|port must be"):
        parse_listen_address(text)
