"""MX look-ups against a real DNS server: what a mail domain's records make of its hosts, and
each way the DNS fails, as users will see them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.mx import (
    MAX_HOSTS,
    DnsFailure,
    MxHost,
    MxLookup,
    MxStatus,
    Resolver,
    addresses,
    lookup,
    parse_server,
)
from tests.support.dns import DnsServer, SilentDnsServer

CNAME_NOTE = "MX target is a CNAME to mail.test (RFC 5321 5.1 forbids it; most senders follow it)"


@pytest.fixture
def resolver(dns_server: DnsServer) -> Resolver:
    return dns_server.resolver(timeout=3.0)


@pytest.fixture
def silent() -> Iterator[SilentDnsServer]:
    with SilentDnsServer() as server:
        yield server


async def test_two_mx_sorted_by_preference_names_lowercase(resolver: Resolver) -> None:
    result = await lookup("two.mail.test", resolver)
    assert result == MxLookup(
        "two.mail.test",
        MxStatus.OK,
        hosts=(MxHost("mail.test", 10), MxHost("mx2.mail.test", 20)),
    )
    assert result.answered


async def test_domain_as_written_is_normalised(resolver: Resolver) -> None:
    result = await lookup("Two.Mail.Test.", resolver)
    assert result.domain == "two.mail.test"
    assert [h.name for h in result.hosts] == ["mail.test", "mx2.mail.test"]


async def test_unicode_domain_is_looked_up_as_a_labels(resolver: Resolver) -> None:
    result = await lookup("bücher.mail.test", resolver)
    assert result.domain == "xn--bcher-kva.mail.test"
    assert result.status is MxStatus.OK
    assert result.hosts == (MxHost("mail.test", 10),)


async def test_null_mx(resolver: Resolver) -> None:
    result = await lookup("null.mail.test", resolver)
    assert result.status is MxStatus.NULL_MX
    assert result.hosts == ()
    assert result.detail == "null MX (RFC 7505): the domain accepts no mail"
    assert result.problems == ()
    assert result.answered


async def test_null_mx_next_to_a_real_one_is_a_problem_not_a_host(resolver: Resolver) -> None:
    result = await lookup("mixednull.mail.test", resolver)
    assert result.status is MxStatus.OK
    assert result.hosts == (MxHost("mail.test", 10),)
    assert result.problems == (
        "MX 0 .: a null MX among other MX records (RFC 7505 allows it only alone); not probed",
    )


async def test_no_mx_falls_back_to_the_domains_own_address(resolver: Resolver) -> None:
    result = await lookup("own.mail.test", resolver)
    note = "no MX records: the domain's own address receives its mail (RFC 5321 5.1)"
    assert result == MxLookup(
        "own.mail.test",
        MxStatus.NO_MX,
        hosts=(MxHost("own.mail.test", 0, note),),
        detail=note,
    )
    assert result.answered


async def test_no_mx_and_no_address_receives_no_mail(resolver: Resolver) -> None:
    result = await lookup("nothing.mail.test", resolver)
    assert result.status is MxStatus.NO_MAIL_HOST
    assert result.hosts == ()
    assert result.detail == (
        "no MX records and no A/AAAA records: nothing receives the domain's mail"
    )


async def test_nxdomain(resolver: Resolver) -> None:
    result = await lookup("absent.mail.test", resolver)
    assert result == MxLookup(
        "absent.mail.test",
        MxStatus.NXDOMAIN,
        detail="MX of absent.mail.test: the name does not exist (NXDOMAIN)",
    )
    assert not result.answered


async def test_servfail_names_the_server(resolver: Resolver, dns_server: DnsServer) -> None:
    result = await lookup("any.broken.test", resolver)
    assert result.status is MxStatus.SERVFAIL
    assert result.detail == f"MX of any.broken.test: SERVFAIL from 127.0.0.1:{dns_server.port}"
    assert result.hosts == ()
    assert not result.answered


async def test_refused_is_an_error_with_the_servers_word(
    resolver: Resolver, dns_server: DnsServer
) -> None:
    result = await lookup("elsewhere.example", resolver)
    assert result.status is MxStatus.ERROR
    assert result.detail == f"MX of elsewhere.example: REFUSED from 127.0.0.1:{dns_server.port}"


async def test_timeout(silent: SilentDnsServer) -> None:
    result = await lookup("two.mail.test", Resolver([silent.server], timeout=0.3))
    assert result.status is MxStatus.TIMEOUT
    assert result.detail == f"MX of two.mail.test: no answer within 0.3s from {silent.server}"
    assert not result.answered


async def test_a_second_server_answers_when_the_first_is_silent(
    silent: SilentDnsServer, dns_server: DnsServer
) -> None:
    both = Resolver([silent.server, dns_server.servers[0]], timeout=1.5)
    result = await lookup("two.mail.test", both)
    assert result.status is MxStatus.OK


async def test_mx_naming_a_cname_is_kept_with_a_note(resolver: Resolver) -> None:
    result = await lookup("cname.mail.test", resolver)
    assert result.status is MxStatus.OK
    assert result.hosts == (MxHost("alias.mail.test", 10, CNAME_NOTE),)


async def test_mx_naming_an_ip_literal_is_a_problem_not_a_host(resolver: Resolver) -> None:
    result = await lookup("literal.mail.test", resolver)
    assert result.status is MxStatus.OK
    assert result.hosts == (MxHost("mail.test", 30),)
    why = "an IP address, not a host name (RFC 5321 5.1); mail servers refuse such an MX"
    assert result.problems == (
        f"MX 10 [192.0.2.1]: {why}; not probed",
        f"MX 20 192.0.2.2: {why}; not probed",
    )


async def test_hosted_mail_two_domains_name_one_host(resolver: Resolver) -> None:
    a = await lookup("hosted-a.mail.test", resolver)
    b = await lookup("hosted-b.mail.test", resolver)
    assert a.hosts == (MxHost("mx.hoster.test", 10),)
    assert b.hosts == (MxHost("mx.hoster.test", 5),)
    assert await addresses("mx.hoster.test", resolver) == ("::1", "127.0.0.1")


async def test_duplicate_mx_names_collapse_to_the_lowest_preference(resolver: Resolver) -> None:
    result = await lookup("dup.mail.test", resolver)
    assert result.hosts == (MxHost("mail.test", 10), MxHost("mx2.mail.test", 20))
    assert result.problems == ()


async def test_at_most_max_hosts_are_kept(resolver: Resolver) -> None:
    result = await lookup("many.mail.test", resolver)  # 70 records: over UDP with EDNS or TCP
    assert result.status is MxStatus.OK
    assert len(result.hosts) == MAX_HOSTS
    assert result.hosts[0] == MxHost("host00.mail.test", 0)
    assert [h.preference for h in result.hosts] == list(range(MAX_HOSTS))
    assert result.problems == (f"70 MX hosts; only the {MAX_HOSTS} most preferred kept",)


async def test_mx_naming_a_missing_host_is_kept_with_a_note(resolver: Resolver) -> None:
    result = await lookup("dangling.mail.test", resolver)
    assert result.hosts == (MxHost("missing.mail.test", 10, "MX target does not exist (NXDOMAIN)"),)


@pytest.mark.parametrize(
    ("domain", "detail"),
    [
        ("", "'' is empty"),
        ("192.0.2.1", "'192.0.2.1' is an IP address, not a domain name"),
        ("bad domain.test", "'bad domain.test' contains white space"),
        ("a..test", "'a..test' has an empty part (two dots in a row, or a leading dot)"),
    ],
)
async def test_a_domain_that_is_no_domain_is_an_error_without_a_query(
    domain: str, detail: str, silent: SilentDnsServer
) -> None:
    result = await lookup(domain, Resolver([silent.server], timeout=0.2))
    assert result.status is MxStatus.ERROR
    assert result.detail == detail


async def test_addresses_of_both_families(resolver: Resolver) -> None:
    assert await addresses("mail.test", resolver) == ("::1", "127.0.0.1")
    assert await addresses("v4only.mail.test", resolver) == ("127.0.0.1",)
    assert await addresses("v6only.mail.test", resolver) == ("::1",)
    assert await addresses("nothing.mail.test", resolver) == ()


async def test_addresses_of_an_ip_literal_need_no_dns(silent: SilentDnsServer) -> None:
    quiet = Resolver([silent.server], timeout=0.2)
    assert await addresses("192.0.2.1", quiet) == ("192.0.2.1",)
    assert await addresses("[2001:db8::1]", quiet) == ("2001:db8::1",)


@pytest.mark.parametrize(
    ("host", "status"),
    [("absent.mail.test", MxStatus.NXDOMAIN), ("any.broken.test", MxStatus.SERVFAIL)],
)
async def test_addresses_failures_are_classified(
    host: str, status: MxStatus, resolver: Resolver
) -> None:
    with pytest.raises(DnsFailure) as failure:
        await addresses(host, resolver)
    assert failure.value.status is status


async def test_addresses_timeout(silent: SilentDnsServer) -> None:
    with pytest.raises(DnsFailure) as failure:
        await addresses("mail.test", Resolver([silent.server], timeout=0.3))
    assert failure.value.status is MxStatus.TIMEOUT


async def test_ipv6_server_address(dns_server: DnsServer) -> None:
    if len(dns_server.servers) < 2:
        pytest.skip("::1 cannot be bound here")
    result = await lookup("two.mail.test", Resolver([dns_server.servers[1]], timeout=3.0))
    assert result.status is MxStatus.OK


@pytest.mark.parametrize(
    ("text", "server"),
    [
        ("192.0.2.53", ("192.0.2.53", 53)),
        ("192.0.2.53:5353", ("192.0.2.53", 5353)),
        ("2001:db8::53", ("2001:db8::53", 53)),
        ("[2001:db8::53]:5353", ("2001:db8::53", 5353)),
    ],
)
def test_parse_server(text: str, server: tuple[str, int]) -> None:
    assert parse_server(text) == server


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dns.example", "is not an IP address"),
        ("192.0.2.53:0", "port must be a number from 1 to 65535"),
        ("2001:db8::53:5353x", "bad address"),
    ],
)
def test_parse_server_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_server(text)


def test_resolver_describes_its_servers() -> None:
    assert Resolver(["192.0.2.53", "[2001:db8::53]:5353"]).describe() == (
        "192.0.2.53:53, [2001:db8::53]:5353"
    )
    assert Resolver().describe() == "the system's DNS servers"
    with pytest.raises(ValueError, match="must be positive"):
        Resolver(timeout=0)
