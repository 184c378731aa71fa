"""Mail transport policy end to end: the exporter watches signed and unsigned domains through
a real validating resolver (unbound over a private NSD with signed zones), fetches the
MTA-STS policy from a real HTTPS server on 127.0.0.1:443, and probes the MX hosts, which are
the real Postfix listeners whose certificates the zones' TLSA records describe."""

from __future__ import annotations

import errno
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.support.dnssec import BOGUS, INSECURE, SECURE, STS_ID, DnssecServers
from tests.support.exporter_process import ExporterProcess, Scrape, listener_defaults, write_config
from tests.support.postfix import PostfixServers
from tests.support.tools import unavailable

POLICY = f"version: STSv1\nmode: enforce\nmx: mail.{SECURE}\nmax_age: 86400\n".encode()


class _Policy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = self.path == "/.well-known/mta-sts.txt"
        body = POLICY if found else b"not here\n"
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture(scope="module")
def policy_ca(tmp_path_factory: pytest.TempPathFactory, postfix: PostfixServers) -> Iterator[Path]:
    """An HTTPS server on 127.0.0.1:443 for mta-sts.<secure zone>, and a CA bundle that
    trusts both it and the Postfix listeners."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(f"mta-sts.{SECURE}").configure_cert(context)
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 443), _Policy)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            unavailable(f"127.0.0.1:443 is not free for the MTA-STS policy server: {exc}")
        raise
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    bundle = tmp_path_factory.mktemp("policy-ca") / "ca.pem"
    bundle.write_bytes(postfix.ca_file.read_bytes() + authority.cert_pem.bytes())
    try:
        yield bundle
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def watched(
    postfix: PostfixServers,
    dnssec: DnssecServers,
    policy_ca: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[int, Scrape]]:
    port = postfix.listener("all").port
    config = {
        "defaults": listener_defaults(postfix, ca_file=str(policy_ca)),
        "targets": [{"domain": d, "port": port} for d in (SECURE, INSECURE, BOGUS)],
        "dns": {"servers": [dnssec.validating_server], "timeout": "3s"},
    }
    path = write_config(tmp_path_factory.mktemp("policies") / "config.yaml", config)
    hosts = {f"mail.{zone}:{port}" for zone in (SECURE, INSECURE, BOGUS)}
    with ExporterProcess(path) as process:
        scrape = process.wait_for_scrape(
            lambda s: (
                hosts <= s.targets()
                and len(s.series("smtp_tls_dnssec_info")) == 3
                and bool(s.series("smtp_tls_dane_tlsa_match"))
            ),
            timeout=90,
            what="every domain's policies and MX hosts",
        )
        yield port, scrape


@pytest.mark.postfix
def test_a_signed_domain_with_every_policy(watched: tuple[int, Scrape]) -> None:
    port, scrape = watched
    host = f"mail.{SECURE}:{port}"
    assert scrape.value("smtp_tls_mta_sts_policy_valid", domain=SECURE) == 1
    (info,) = scrape.series("smtp_tls_mta_sts_policy_info", domain=SECURE)
    assert (info.labels["id"], info.labels["mode"]) == (STS_ID, "enforce")
    assert scrape.value("smtp_tls_mta_sts_policy_max_age_seconds", domain=SECURE) == 86400
    assert scrape.value("smtp_tls_mta_sts_mx_covered", domain=SECURE, target=host) == 1
    assert scrape.value("smtp_tls_mta_sts_policy_changed_without_id", domain=SECURE) == 0
    assert scrape.value("smtp_tls_tlsrpt_record_valid", domain=SECURE) == 1
    assert scrape.value("smtp_tls_dnssec_secure", domain=SECURE) == 1
    (tlsa,) = scrape.series("smtp_tls_dane_tlsa_lookup_info", domain=SECURE)
    assert (tlsa.labels["target"], tlsa.labels["status"]) == (host, "secure")
    # DANE-EE matches the listener's key; the DANE-TA record's leaf names mail.test only.
    assert scrape.value("smtp_tls_dane_tlsa_match", target=host) == 1
    assert scrape.value("smtp_tls_dane_rollover_ready", target=host) == 0
    assert scrape.value("smtp_tls_probe_success", target=host) == 1


@pytest.mark.postfix
def test_an_unsigned_domain_with_broken_records(watched: tuple[int, Scrape]) -> None:
    port, scrape = watched
    assert scrape.value("smtp_tls_mta_sts_policy_valid", domain=INSECURE) == 0
    (info,) = scrape.series("smtp_tls_mta_sts_info", domain=INSECURE)
    assert info.labels["result"] == "record-invalid"
    assert "not 1-32 letters" in info.labels["detail"]
    assert scrape.value("smtp_tls_tlsrpt_record_valid", domain=INSECURE) == 0
    assert scrape.value("smtp_tls_dnssec_secure", domain=INSECURE) == 0
    (tlsa,) = scrape.series("smtp_tls_dane_tlsa_lookup_info", domain=INSECURE)
    assert tlsa.labels["status"] == "insecure"
    # Unsigned TLSA records: DANE does not apply, so no match is reported either way.
    assert scrape.value("smtp_tls_dane_tlsa_match", target=f"mail.{INSECURE}:{port}") is None


@pytest.mark.postfix
def test_bogus_tlsa_records_are_told_apart(watched: tuple[int, Scrape]) -> None:
    port, scrape = watched
    (tlsa,) = scrape.series("smtp_tls_dane_tlsa_lookup_info", domain=BOGUS)
    assert tlsa.labels["status"] == "bogus"
    assert scrape.value("smtp_tls_dnssec_secure", domain=BOGUS) == 1  # its MX answer is fine
    assert scrape.value("smtp_tls_dane_tlsa_match", target=f"mail.{BOGUS}:{port}") is None
    assert not scrape.series("smtp_tls_mta_sts_policy_valid", domain=BOGUS)  # no record


def test_a_policy_changed_without_a_new_id_is_reported_until_the_id_changes() -> None:
    """RFC 8461 3.1: senders fetch the policy again only when the record's id changes."""
    from exporter.mtasts import Mode, Policy, Result, StsRecord
    from exporter.mtastsfetch import PolicyFetch
    from exporter.policies import DomainPolicy, _baseline
    from exporter.policydns import DnssecLookup, DnssecStatus, RecordLookup, RecordStatus

    def sts(record_id: str) -> RecordLookup[StsRecord]:
        return RecordLookup(SECURE, RecordStatus.VALID, StsRecord(record_id))

    first = Policy(Mode.TESTING, 86400, ("mail.example.org",))
    second = Policy(Mode.ENFORCE, 86400, ("mail.example.org",))

    def state(record_id: str, policy: Policy, previous: DomainPolicy | None) -> DomainPolicy:
        fetched = PolicyFetch(Result.VALID, policy)
        baseline, changed = _baseline(sts(record_id), fetched, previous)
        return DomainPolicy(
            sts(record_id), fetched, changed, baseline,
            RecordLookup(SECURE, RecordStatus.ABSENT), DnssecLookup(SECURE, DnssecStatus.SECURE),
            (),
        )  # fmt: skip

    one = state("a1", first, None)
    assert not one.sts_changed_without_id
    changed = state("a1", second, one)
    assert changed.sts_changed_without_id
    still = state("a1", second, changed)
    assert still.sts_changed_without_id  # senders still hold the first policy
    renewed = state("a2", second, still)
    assert not renewed.sts_changed_without_id
