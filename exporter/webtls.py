"""The listener's TLS: the SSL context the web config asks for, its certificate, key and
client CA files read again by the next handshake when they change (rotation without a
restart, as the toolkit does), a reload's settings taken by the next connection, and the
names `client_allowed_sans` admits.

OpenSSL gives a connection the versions, suites and client certificate request of the
context that accepted it, and the certificate, key and trust store of the context its
handshake switches to: `context` is the first and is updated in place on reload; each
handshake switches to a context built from the files as they are now.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import time

from cryptography import x509

from exporter.webconfig import TLSSettings, apply_handshake_settings, server_context

log = logging.getLogger("exporter")

#: For each file: (path, device, inode, size, mtime, ctime), or (path,) when it is missing.
FileStamp = tuple[tuple[object, ...], ...]

#: A file that could not be loaded is tried again at most this often (seconds): a file
#: rewritten in place may change twice within one tick of the file system's clock.
RETRY_SECONDS = 1.0


def file_stamp(tls: TLSSettings) -> FileStamp:
    """What changes when one of the files is replaced or rewritten; a stat per file."""
    stamps: list[tuple[object, ...]] = []
    for path in tls.files():
        try:
            st = os.stat(path)
        except OSError:
            stamps.append((path,))
        else:
            stamps.append((path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(stamps)


class LiveTLS:
    """The SSL context the listener serves with, kept up to date with files and reloads."""

    def __init__(self, tls: TLSSettings) -> None:
        self.settings = tls
        #: The listener's: each connection takes versions, suites and the client
        #: certificate request from it; its handshake then switches to `_current`.
        self.context = server_context(tls)
        self.context.sni_callback = self._on_client_hello
        self._current = self.context
        self._stamp = file_stamp(tls)
        self._failed: FileStamp | None = None
        self._retry_at = 0.0

    def update(self, tls: TLSSettings) -> None:
        """Serve `tls` (a reload's, checked already) from the next connection on;
        `ssl.SSLError` or `OSError` when its files cannot be used, and nothing changes."""
        current = server_context(tls)
        apply_handshake_settings(self.context, tls)
        self.settings, self._current = tls, current
        self._stamp, self._failed = file_stamp(tls), None

    def current(self) -> ssl.SSLContext:
        """The context of the files as they are: built anew when one changed; the last good
        one while the new files cannot be loaded (a key written after its certificate)."""
        stamp = file_stamp(self.settings)
        if stamp == self._stamp:
            return self._current
        if stamp == self._failed and time.monotonic() < self._retry_at:
            return self._current
        fields: dict[str, object] = {"files": ",".join(self.settings.files())}
        try:
            context = server_context(self.settings)
        except (OSError, ssl.SSLError, ValueError) as exc:
            if stamp != self._failed:
                fields["error"] = str(exc)
                message = "TLS files changed but cannot be loaded; serving the previous ones"
                log.warning(message, extra={"fields": fields})
            self._failed, self._retry_at = stamp, time.monotonic() + RETRY_SECONDS
            return self._current
        self._current, self._stamp, self._failed = context, stamp, None
        log.info("TLS files changed: new connections get them", extra={"fields": fields})
        return self._current

    def _on_client_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _: ssl.SSLContext
    ) -> None:
        """OpenSSL calls this for every ClientHello, with or without SNI."""
        try:
            current = self.current()
            if connection.context is not current:
                connection.context = current
        except Exception:  # never fail a handshake over a bug here: serve what it has
            log.exception("switching to the current TLS files failed")


def client_allowed(der: bytes | None, allowed: tuple[str, ...]) -> bool:
    """Whether a client certificate (DER) carries a SAN in `allowed`: DNS name, e-mail
    address, IP address or URI, matched exactly, as the toolkit matches them."""
    return der is not None and not client_names(der).isdisjoint(allowed)


@functools.lru_cache(maxsize=256)
def client_names(der: bytes) -> frozenset[str]:
    """The subject alternative names of a certificate, as text; none when it has none."""
    try:
        extension = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except (ValueError, x509.ExtensionNotFound):
        return frozenset()
    names = extension.value
    found: set[str] = set()
    for kind in (x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier):
        found.update(names.get_values_for_type(kind))
    found.update(str(ip) for ip in names.get_values_for_type(x509.IPAddress))
    return frozenset(found)
