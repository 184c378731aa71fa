"""Mail domains and name servers as users write them, anything at all: `mx.domain_name`
answers with a problem instead of raising, `mx.parse_server` raises only ValueError, and
what they accept reads back the same."""

from __future__ import annotations

import dns.name
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import mx, names

#: Text as YAML can hand it over: any code point, lone surrogates included ("\ud800").
any_char = st.characters(exclude_categories=())
pieces = st.sampled_from(
    [".", "..", "-", "_", "[", "]", ":", "::", "IPv6:", "xn--", "é", "ß", "\u200d", "\u0661", "²"]
)
name_like = st.lists(
    pieces | st.text(any_char, max_size=4) | st.from_regex(r"[a-z0-9]{1,70}", fullmatch=True),
    max_size=12,
).map("".join)
texts = st.text(any_char, max_size=80) | name_like


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_domain_names_answer_with_a_name_or_a_problem(text: str) -> None:
    ascii_name, name, problem = mx.domain_name(text)
    if name is None:
        assert problem
        assert ascii_name == text
        return
    assert problem is None
    assert ascii_name.isascii()
    assert ascii_name == ascii_name.lower()
    assert not ascii_name.endswith(".")
    assert name == dns.name.from_text(ascii_name)
    # What was accepted reads back the same, as the watcher looks it up again.
    assert mx.domain_name(ascii_name)[:2] == (ascii_name, name)


ports = st.integers(0, 70000).map(str) | st.text(any_char, max_size=6)
addresses = st.sampled_from(["192.0.2.53", "2001:db8::53", "::1", "[::1]", "fe80::1%eth0"])


def _server_or_problem(text: str) -> tuple[str, int] | str:
    try:
        return mx.parse_server(text)
    except ValueError as error:
        return str(error)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts | st.tuples(addresses | texts, ports).map(":".join))
def test_name_servers_parse_or_raise_value_error(text: str) -> None:
    parsed = _server_or_problem(text)
    if isinstance(parsed, str):
        assert parsed  # says what is wrong
        return
    host, port = parsed
    assert names.is_ip_address(host)
    assert 1 <= port <= 65535
    assert mx.parse_server(names.format_address(host, port)) == (host, port)


@settings(max_examples=200, deadline=None)
@given(addresses, st.integers(1, 65535))
def test_written_name_servers_read_back(address: str, port: int) -> None:
    host = address.strip("[]")
    assert mx.parse_server(names.format_address(host, port)) == (host, port)
    assert mx.parse_server(f" {address} ") == (host, 53)
