"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.certs import TestCerts, make_test_certs
from tests.support.dns import DnsServer, nsd_available
from tests.support.dnssec import DnssecServers, dnssec_available
from tests.support.postfix import (
    PostfixServers,
    SystemPostfix,
    postfix_available,
    system_postfix,
)
from tests.support.tools import unavailable


@pytest.fixture(scope="session")
def system_postfix_before() -> SystemPostfix:
    """``/etc/postfix`` and the system instance as they were before any test server ran."""
    return system_postfix()


@pytest.fixture(scope="session")
def listener_certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    """The certificates the Postfix listeners present, and the DNSSEC zones' TLSA records
    match, made without starting either."""
    return make_test_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def postfix(
    tmp_path_factory: pytest.TempPathFactory,
    system_postfix_before: SystemPostfix,
    listener_certs: TestCerts,
) -> Iterator[PostfixServers]:
    """A real Postfix with one listener per TLS policy (see ``tests/support/postfix.py``).

    A private instance under the session's temporary directory: machines running these tests
    may carry real mail on their system Postfix, so the teardown fails the session if
    ``/etc/postfix`` changed or a system instance was started.

    Skipped where Postfix is not installed or the tests do not run as root; with
    ``CI=true`` that is a failure instead, so CI never passes by skipping.
    """
    reason = postfix_available()
    if reason is not None:
        unavailable(reason)
    servers = PostfixServers(tmp_path_factory.mktemp("postfix"), listener_certs)
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()
    after = system_postfix()
    assert after.config_files == system_postfix_before.config_files, "/etc/postfix changed"
    assert after.masters <= system_postfix_before.masters, "the system Postfix was started"


@pytest.fixture(scope="session")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    """A real authoritative DNS server (a private NSD) with a zone for every MX case (see
    ``tests/support/dns.py``); skipped without NSD, a failure under ``CI=true``."""
    reason = nsd_available()
    if reason is not None:
        unavailable(reason)
    with DnsServer(tmp_path_factory.mktemp("nsd")) as server:
        yield server


@pytest.fixture(scope="session")
def dnssec(
    tmp_path_factory: pytest.TempPathFactory, listener_certs: TestCerts
) -> Iterator[DnssecServers]:
    """Signed zones on a private NSD behind private validating unbounds, with TLSA records
    for the Postfix listeners' certificates (see ``tests/support/dnssec.py``); skipped
    without NSD, unbound or the ldns tools, a failure under ``CI=true``."""
    reason = dnssec_available()
    if reason is not None:
        unavailable(reason)
    with DnssecServers(tmp_path_factory.mktemp("dnssec"), listener_certs) as servers:
        yield servers
