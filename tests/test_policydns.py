"""Mail transport policy in the DNS, through a real validating resolver: TLSA records with
their DNSSEC status (secure, insecure, bogus, none, failures), MTA-STS and TLS-RPT records
through their parsers, and the AD bit believed only from a resolver the user named."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator

import dns.flags
import dns.name
import dns.nameserver
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exporter import dane, policydns
from exporter.mtasts import StsRecord
from exporter.mx import DnsFailure, MxStatus, Resolver
from exporter.policydns import (
    DnssecStatus,
    RecordLookup,
    RecordStatus,
    TlsaLookup,
    TlsaStatus,
)
from exporter.tlsrpt import TlsRptRecord
from tests.support.dns import SilentDnsServer
from tests.support.dnssec import (
    BOGUS,
    BROKEN,
    EXPIRED,
    INSECURE,
    SECURE,
    STS_ID,
    TLSA_PORTS,
    TLSRPT_RUA,
    DnssecServers,
)
from tests.support.postfix import PostfixServers


@pytest.fixture(params=[True, False], ids=["ede", "cd"])
def resolver(request: pytest.FixtureRequest, dnssec: DnssecServers) -> Resolver:
    """The unbound that sends extended errors, and the one that does not (bogus is then told
    by asking again with checking disabled)."""
    return dnssec.resolver(timeout=3.0, ede=request.param)


@pytest.fixture
def silent() -> Iterator[SilentDnsServer]:
    with SilentDnsServer() as server:
        yield server


# --- TLSA --------------------------------------------------------------------------------


async def test_secure_tlsa_records_match_the_listeners_certificates(
    resolver: Resolver, dnssec: DnssecServers
) -> None:
    found = await policydns.tlsa(f"mail.{SECURE}", 25, resolver)
    assert found == TlsaLookup(
        f"mail.{SECURE}",
        25,
        TlsaStatus.SECURE,
        records=tuple(sorted(dnssec.tlsa[25], key=lambda r: (r.usage, r.selector, r.data))),
        base_domain=f"mail.{SECURE}",
        validated=True,
        detail=f"_25._tcp.mail.{SECURE}: signed and validated",
    )
    assert found.dane_applies
    assert found.names == (f"mail.{SECURE}",)


async def test_every_listener_port_has_its_own_records(dnssec: DnssecServers) -> None:
    resolver = dnssec.resolver(timeout=3.0)
    for port in TLSA_PORTS:
        found = await policydns.tlsa(f"MAIL.{SECURE}.", port, resolver)
        assert found.status is TlsaStatus.SECURE, port
        assert set(found.records) == set(dnssec.tlsa[port]), port
        assert found.host == f"mail.{SECURE}"


async def test_secure_records_match_the_chain_they_were_made_for(dnssec: DnssecServers) -> None:
    """DANE-EE matches; DANE-TA does not hold, for the test leaves name mail.test and not the
    MX host (RFC 7672 3.2.2): a case a DANE check must tell apart."""
    found = await policydns.tlsa(f"mail.{SECURE}", 25, dnssec.resolver(timeout=3.0))
    pems = (dnssec.certs.rsa.leaf, dnssec.certs.intermediate_pem)
    chain = tuple(
        x509.load_pem_x509_certificate(p.read_bytes()).public_bytes(Encoding.DER) for p in pems
    )
    result = dane.check(chain, list(found.records), found.names)
    assert result.matching == tuple(
        r.text() for r in found.records if r.usage == dane.Usage.DANE_EE
    )
    assert not result.rollover_ready


def presented_leaf(host: str, port: int, *, implicit: bool) -> bytes:
    """The leaf certificate a Postfix listener presents, in DER (not verified)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if implicit:
        with smtplib.SMTP_SSL(host, port, timeout=10, context=context) as smtp:
            return peer_leaf(smtp.sock)
    with smtplib.SMTP(host, port, timeout=10) as smtp:
        smtp.starttls(context=context)
        return peer_leaf(smtp.sock)


def peer_leaf(sock: object) -> bytes:
    assert isinstance(sock, ssl.SSLSocket)
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der


@pytest.mark.postfix
@pytest.mark.parametrize(
    "listener", ["all", "tls13", "ecdsa", "selfsigned", "expired", "implicit", "incomplete_chain"]
)
async def test_records_match_what_the_listener_presents(
    dnssec: DnssecServers, postfix: PostfixServers, listener: str
) -> None:
    host, port = postfix.address(listener)
    found = await policydns.tlsa(f"mail.{SECURE}", port, dnssec.resolver(timeout=3.0))
    leaf = presented_leaf(host, port, implicit=listener == "implicit")
    result = dane.check((leaf,), list(found.records), found.names)
    assert result.matched, result.detail
    wrong = await policydns.tlsa(f"mismatch.{SECURE}", port, dnssec.resolver(timeout=3.0))
    assert not dane.check((leaf,), list(wrong.records), wrong.names).matched


async def test_cname_of_the_mx_host_leads_to_the_targets_records(resolver: Resolver) -> None:
    found = await policydns.tlsa(f"alias.{SECURE}", 25, resolver)
    assert found.status is TlsaStatus.SECURE
    assert found.base_domain == f"mail.{SECURE}"
    assert found.names == (f"mail.{SECURE}", f"alias.{SECURE}")


async def test_cname_target_without_records_falls_back_to_the_initial_name(
    resolver: Resolver,
) -> None:
    found = await policydns.tlsa(f"alias2.{SECURE}", 25, resolver)
    assert found.status is TlsaStatus.SECURE
    assert found.base_domain == f"alias2.{SECURE}"


async def test_no_tlsa_records_proven_absent(resolver: Resolver) -> None:
    found = await policydns.tlsa(f"plain.{SECURE}", 25, resolver)
    assert found == TlsaLookup(
        f"plain.{SECURE}",
        25,
        TlsaStatus.NO_RECORDS,
        validated=True,
        detail=f"no TLSA records at _25._tcp.plain.{SECURE}",
    )
    assert not found.dane_applies


async def test_tlsa_name_with_other_records_only_is_no_records(resolver: Resolver) -> None:
    found = await policydns.tlsa(f"nodata.{SECURE}", 25, resolver)
    assert found.status is TlsaStatus.NO_RECORDS
    assert found.validated


async def test_mx_host_that_does_not_exist(resolver: Resolver) -> None:
    found = await policydns.tlsa(f"absent.{SECURE}", 25, resolver)
    assert found.status is TlsaStatus.NO_RECORDS
    assert found.detail == "the MX host does not exist (NXDOMAIN)"
    assert found.validated


async def test_records_in_an_unsigned_zone_are_insecure(resolver: Resolver) -> None:
    found = await policydns.tlsa(f"mail.{INSECURE}", 25, resolver)
    assert found.status is TlsaStatus.INSECURE
    assert len(found.records) == 2  # reported, though DANE does not apply
    assert not found.validated
    assert not found.dane_applies
    assert "not signed, so DANE does not apply" in found.detail


async def test_changed_record_data_is_bogus(resolver: Resolver) -> None:
    found = await policydns.tlsa(f"mail.{BOGUS}", 25, resolver)
    assert found.status is TlsaStatus.BOGUS
    assert found.failure is MxStatus.SERVFAIL
    assert found.records == ()
    assert "DNSSEC validation failed" in found.detail
    assert found.detail.startswith(f"TLSA of _25._tcp.mail.{BOGUS}: SERVFAIL from ")


async def test_bogus_is_named_by_the_extended_error_or_found_with_checking_disabled(
    dnssec: DnssecServers,
) -> None:
    with_ede = await policydns.tlsa(f"mail.{BOGUS}", 25, dnssec.resolver(timeout=3.0))
    assert "DNSSEC validation failed (dnssec bogus" in with_ede.detail
    without = await policydns.tlsa(f"mail.{BOGUS}", 25, dnssec.resolver(3.0, ede=False))
    assert without.detail.endswith("answered with checking disabled: DNSSEC validation failed")


async def test_expired_signatures_make_the_host_bogus(dnssec: DnssecServers) -> None:
    found = await policydns.tlsa(f"mail.{EXPIRED}", 25, dnssec.resolver(timeout=3.0))
    assert found.status is TlsaStatus.BOGUS
    assert found.detail.startswith(f"A of mail.{EXPIRED}: SERVFAIL")
    assert "signature expired" in found.detail


async def test_servfail_of_a_broken_zone_is_an_error_not_bogus(resolver: Resolver) -> None:
    found = await policydns.tlsa(f"mail.{BROKEN}", 25, resolver)
    assert found.status is TlsaStatus.ERROR
    assert found.failure is MxStatus.SERVFAIL
    assert found.detail.startswith(f"A of mail.{BROKEN}: SERVFAIL from ")
    assert "DNSSEC" not in found.detail


async def test_timeout(silent: SilentDnsServer) -> None:
    found = await policydns.tlsa(f"mail.{SECURE}", 25, Resolver([silent.server], timeout=0.3))
    assert found.status is TlsaStatus.ERROR
    assert found.failure is MxStatus.TIMEOUT
    assert found.detail == f"A of mail.{SECURE}: no answer within 0.3s from {silent.server}"


async def test_not_a_host_name() -> None:
    found = await policydns.tlsa("192.0.2.1", 25, Resolver(["127.0.0.1:1"]))
    assert found.status is TlsaStatus.ERROR
    assert "is an IP address" in found.detail


async def test_queries_set_the_do_bit(dnssec: DnssecServers) -> None:
    """The authoritative server sends signatures only to a query with DO set."""
    direct = Resolver([dnssec.nsd_server], timeout=3.0)
    name = dns.name.from_text(f"_25._tcp.mail.{SECURE}")
    answer = await direct.query(name, dns.rdatatype.TLSA, dnssec=True)
    assert answer.response.find_rrset(
        answer.response.answer, name, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.TLSA
    )
    plain = await direct.query(name, dns.rdatatype.TLSA)
    assert len(plain.response.answer) == 1  # the TLSA records alone


async def test_a_server_that_does_not_validate_is_insecure(dnssec: DnssecServers) -> None:
    """Named in dns.servers but only authoritative: it never sets AD, so nothing is secure."""
    found = await policydns.tlsa(f"mail.{SECURE}", 25, Resolver([dnssec.nsd_server]))
    assert found.status is TlsaStatus.INSECURE
    assert not found.validated


async def test_the_system_resolvers_ad_bit_is_not_believed(
    dnssec: DnssecServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same validating unbound, found through the system's configuration instead of
    dns.servers: its AD bit arrives but proves nothing, so the records are unknown."""
    unbound = dnssec.unbound
    assert unbound is not None

    def system_config(self: dns.resolver.BaseResolver, _filename: object = None) -> None:
        self.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", unbound.port)]

    monkeypatch.setattr(dns.resolver.BaseResolver, "read_resolv_conf", system_config)
    system = Resolver(timeout=3.0)
    assert not policydns.trusted(system)
    name = dns.name.from_text(f"_25._tcp.mail.{SECURE}")
    answer = await system.query(name, dns.rdatatype.TLSA, dnssec=True)
    assert answer.response.flags & dns.flags.AD  # it did say secure

    found = await policydns.tlsa(f"mail.{SECURE}", 25, system)
    assert found.status is TlsaStatus.UNKNOWN
    assert len(found.records) == 2
    assert not found.validated
    assert not found.dane_applies
    assert "name a validating one in dns.servers" in found.detail
    absent = await policydns.tlsa(f"plain.{SECURE}", 25, system)
    assert absent.status is TlsaStatus.NO_RECORDS
    assert not absent.validated
    mx_answer = await policydns.dnssec_secure(SECURE, system)
    assert mx_answer.status is DnssecStatus.UNKNOWN
    bogus = await policydns.tlsa(f"mail.{BOGUS}", 25, system)
    assert bogus.status is TlsaStatus.ERROR  # not proven bogus either


# --- the domain's MX answer ------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "status"),
    [
        (SECURE, DnssecStatus.SECURE),
        (f"notlsa.{SECURE}", DnssecStatus.SECURE),
        (f"absent.{SECURE}", DnssecStatus.SECURE),  # its absence is signed
        (BOGUS, DnssecStatus.SECURE),  # only its TLSA records are broken
        (INSECURE, DnssecStatus.INSECURE),
        (EXPIRED, DnssecStatus.BOGUS),
        (BROKEN, DnssecStatus.ERROR),
    ],
)
async def test_dnssec_secure(resolver: Resolver, domain: str, status: DnssecStatus) -> None:
    found = await policydns.dnssec_secure(domain, resolver)
    assert (found.domain, found.status) == (domain, status)


async def test_dnssec_secure_says_why(resolver: Resolver) -> None:
    secure = await policydns.dnssec_secure(SECURE, resolver)
    assert secure.detail == f"MX of {SECURE}: signed and validated"
    assert secure.failure is None
    insecure = await policydns.dnssec_secure(INSECURE, resolver)
    assert insecure.detail == f"MX of {INSECURE}: not signed"
    broken = await policydns.dnssec_secure(BROKEN, resolver)
    assert broken.failure is MxStatus.SERVFAIL


async def test_dnssec_secure_timeout(silent: SilentDnsServer) -> None:
    found = await policydns.dnssec_secure(SECURE, Resolver([silent.server], timeout=0.3))
    assert (found.status, found.failure) == (DnssecStatus.ERROR, MxStatus.TIMEOUT)


# --- TXT, MTA-STS and TLS-RPT records ----------------------------------------------------


async def test_txt_joins_each_records_strings(resolver: Resolver) -> None:
    texts = await policydns.txt(f"_mta-sts.{SECURE}", resolver)
    assert texts == ["an unrelated record", f"v=STSv1; id={STS_ID};"]


async def test_txt_of_a_missing_name_or_type_is_empty(resolver: Resolver) -> None:
    assert await policydns.txt(f"_mta-sts.absent.{SECURE}", resolver) == []
    assert await policydns.txt(f"mail.{SECURE}", resolver) == []


async def test_txt_failures_raise(resolver: Resolver, silent: SilentDnsServer) -> None:
    with pytest.raises(DnsFailure) as servfail:
        await policydns.txt(f"_mta-sts.{BROKEN}", resolver)
    assert servfail.value.status is MxStatus.SERVFAIL
    with pytest.raises(DnsFailure) as timeout:
        await policydns.txt(f"_mta-sts.{SECURE}", Resolver([silent.server], timeout=0.3))
    assert timeout.value.status is MxStatus.TIMEOUT


async def test_mta_sts_record(resolver: Resolver) -> None:
    found = await policydns.mta_sts_record(SECURE.upper(), resolver)
    assert found == RecordLookup(SECURE, RecordStatus.VALID, StsRecord(STS_ID))


async def test_tlsrpt_record(resolver: Resolver) -> None:
    found = await policydns.tlsrpt_record(SECURE, resolver)
    assert found == RecordLookup(SECURE, RecordStatus.VALID, TlsRptRecord((TLSRPT_RUA,)))


async def test_invalid_records_say_why(resolver: Resolver) -> None:
    sts = await policydns.mta_sts_record(INSECURE, resolver)
    assert sts == RecordLookup(
        INSECURE,
        RecordStatus.INVALID,
        detail=f"_mta-sts.{INSECURE}: id 'not-an-id!' is not 1-32 letters and digits",
    )
    rpt = await policydns.tlsrpt_record(INSECURE, resolver)
    assert rpt.status is RecordStatus.INVALID
    assert rpt.detail == (
        f"_smtp._tls.{INSECURE}: 2 TXT records start with v=TLSRPTv1; exactly one may"
    )


async def test_no_record_is_absent_not_an_error(resolver: Resolver) -> None:
    sts = await policydns.mta_sts_record(BOGUS, resolver)  # NXDOMAIN
    assert sts == RecordLookup(BOGUS, RecordStatus.ABSENT, detail=f"no record at _mta-sts.{BOGUS}")
    rpt = await policydns.tlsrpt_record(f"absent.{SECURE}", resolver)
    assert rpt.status is RecordStatus.ABSENT


async def test_record_look_up_failures(resolver: Resolver, silent: SilentDnsServer) -> None:
    broken = await policydns.mta_sts_record(BROKEN, resolver)
    assert (broken.status, broken.failure) == (RecordStatus.DNS_FAILURE, MxStatus.SERVFAIL)
    assert broken.detail.startswith(f"TXT of _mta-sts.{BROKEN}: SERVFAIL from ")
    bogus = await policydns.tlsrpt_record(EXPIRED, resolver)
    assert (bogus.status, bogus.failure) == (RecordStatus.DNS_FAILURE, MxStatus.SERVFAIL)
    timeout = await policydns.tlsrpt_record(SECURE, Resolver([silent.server], timeout=0.3))
    assert (timeout.status, timeout.failure) == (RecordStatus.DNS_FAILURE, MxStatus.TIMEOUT)
    bad = await policydns.mta_sts_record("not a domain", resolver)
    assert (bad.status, bad.failure) == (RecordStatus.DNS_FAILURE, MxStatus.ERROR)
