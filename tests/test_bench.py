"""The bench's responder stays honest: the exporter, run as users run it, gets from it the
verdicts each fleet address's profile stands for (a refused version is a 0, not a missing
series), and the responder's own counters say what the bench waits on."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from bench.fleet import FleetConfig, address, config_text, index_of, profile_of
from bench.fleetcerts import make_fleet_certs
from bench.fleetrun import Options, exporter, responder, round_time, wait_round
from bench.flights import offered_versions
from bench.responder import CONNECTIONS_PER_PROBE
from bench.scrape import read_results, scrape
from bench.verdicts import wrong_verdicts
from exporter.probe.hello import client_hello
from exporter.senders import DEFAULT_SENDERS
from exporter.target import DEFAULT_VERSIONS

#: Ten addresses hold every profile: seven modern, two wide, one legacy.
COUNT = 10


@pytest.fixture
def options(tmp_path: Path) -> Options:
    certs = tmp_path / "certs"
    make_fleet_certs(certs, COUNT)
    return Options(workdir=tmp_path, certs=certs, say=lambda _: None)


def test_exporter_gets_each_profiles_verdicts_from_the_responder(options: Options) -> None:
    with responder(options, COUNT) as fleet:
        config = config_text(COUNT, fleet.port, FleetConfig(ca_file=options.certs / "ca.pem"))
        with exporter(options, "smoke", config) as running:
            running.ready()
            done_at = wait_round(fleet, running.process, COUNT, timeout=20)
            results = read_results(scrape("127.0.0.1", running.port).text)
            stats = fleet.stats()

    assert done_at is not None
    assert results.targets == COUNT
    assert wrong_verdicts(results) == []
    assert results.succeeded == results.verified == set(results.finished)
    assert round_time(results, COUNT, done_at, running.process.started) is not None
    modern, wide, legacy = (f"{address(i)}:{fleet.port}" for i in (0, 7, 9))
    assert results.versions[modern] == {"ssl3": 0, "1.0": 0, "1.1": 0, "1.2": 1, "1.3": 1}
    assert results.versions[wide] == {"ssl3": 0, "1.0": 1, "1.1": 1, "1.2": 1, "1.3": 1}
    assert results.versions[legacy] == {"ssl3": 0, "1.0": 1, "1.1": 1, "1.2": 1, "1.3": 0}
    assert results.negotiated[legacy] == "TLSv1.2"
    assert len(set(results.fingerprints.values())) == COUNT  # a certificate per target
    assert stats["handshakes"] == COUNT  # only the default client's hello costs a handshake
    # The versions and the default sender's hello are answered from recordings.
    assert stats["replayed"] == COUNT * (len(DEFAULT_VERSIONS) + len(DEFAULT_SENDERS))
    assert stats["closed"] == COUNT * CONNECTIONS_PER_PROBE


def test_pinned_hellos_offer_one_version_and_a_default_client_several() -> None:
    for version in DEFAULT_VERSIONS:
        assert offered_versions(client_hello(version, "mail.test")) == (version.wire,)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.create_default_context()
    client = context.wrap_bio(incoming, outgoing, server_hostname="mail.test")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    assert set(offered_versions(outgoing.read())) >= {0x0303, 0x0304}


def test_fleet_addresses_map_back_to_their_index() -> None:
    for index in (0, 249, 250, 62_499, 62_500, 100_000):
        assert index_of(address(index)) == index
    assert index_of("127.0.0.1") is None
    assert profile_of(9).name == "legacy"
