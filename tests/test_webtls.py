"""The listener's TLS in process: the context switched to when the files change, the last
good one kept while they do not load, a reload's settings, and the client's names."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from exporter import webtls
from exporter.webconfig import TLSSettings, load_web_config, server_context
from exporter.webtls import LiveTLS, client_allowed, client_names
from tests.support.webconfig import CLIENT_NAME, WebCerts, write_web_config


@pytest.fixture
def certs(tmp_path: Path) -> WebCerts:
    return WebCerts.make(tmp_path / "certs")


def settings(certs: WebCerts, **extra: object) -> TLSSettings:
    path = write_web_config(
        certs.directory / "web.yml", {"tls_server_config": certs.tls_config(**extra)}
    )
    tls = load_web_config(path).tls
    assert tls is not None
    return tls


def test_changed_files_give_a_new_context_bad_ones_keep_the_last(
    certs: WebCerts, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = LiveTLS(settings(certs))
    first = live.current()
    assert live.current() is first  # nothing changed: nothing is read
    certs.rotate_server("second")
    second = live.current()
    assert second is not first
    # A certificate whose key is not there yet: the last good context stays, and is not
    # rebuilt at every handshake until a second has passed.
    certs.server_key_file.write_bytes(certs.client_file.read_bytes())
    builds = []
    real = server_context

    def counting(tls: TLSSettings) -> ssl.SSLContext:
        builds.append(tls)
        return real(tls)

    monkeypatch.setattr(webtls, "server_context", counting)
    assert live.current() is second
    assert live.current() is second
    assert len(builds) == 1
    monkeypatch.setattr(webtls, "RETRY_SECONDS", 0.0)
    live._retry_at = 0.0
    assert live.current() is second
    assert len(builds) == 2  # tried again once the time was up
    certs.rotate_server("third")
    assert live.current() not in (first, second)


def accepting(live: LiveTLS) -> tuple[ssl.TLSVersion, ssl.VerifyMode]:
    return live.context.minimum_version, live.context.verify_mode


def test_a_reload_changes_what_new_connections_are_accepted_with(certs: WebCerts) -> None:
    live = LiveTLS(settings(certs))
    assert accepting(live) == (ssl.TLSVersion.TLSv1_2, ssl.CERT_NONE)
    live.update(
        settings(
            certs,
            min_version="TLS13",
            client_auth_type="RequireAndVerifyClientCert",
            client_ca_file=certs.client_ca_file.name,
        )
    )
    # The listener's own context: versions and the certificate request are taken from it.
    assert accepting(live) == (ssl.TLSVersion.TLSv1_3, ssl.CERT_REQUIRED)
    assert live.current() is not live.context


def test_client_names() -> None:
    leaf = trustme.CA().issue_cert(CLIENT_NAME, "192.0.2.7", "2001:db8::7", "ops@example.org")
    der = leaf.cert_chain_pems[0].bytes()
    der = ssl.PEM_cert_to_DER_cert(der.decode())
    assert client_names(der) == {CLIENT_NAME, "192.0.2.7", "2001:db8::7", "ops@example.org"}
    assert client_allowed(der, ("2001:db8::7",))
    assert not client_allowed(der, ("other.test",))
    assert not client_allowed(None, (CLIENT_NAME,))
    assert client_names(b"not a certificate") == frozenset()
