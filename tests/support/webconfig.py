"""The exporter behind a web config (`--web.config.file`): certificates for the server and
its clients, bcrypt hashes, web config files, and the clients that speak to it over HTTPS
with basic auth: Python's urllib and ssl, and curl.

``WebCerts`` holds two CAs, a server certificate, client certificates (one with the
allowed name, one with another name, one from a CA the server does not trust) and can
issue the server a new certificate, written the way a rotation writes it.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import bcrypt
import trustme
import yaml
from cryptography import x509

from tests.support.exporter_process import ExporterProcess, Response
from tests.support.tools import require_tool

#: The name the server certificates are for (and that clients connect to).
SERVER_NAMES = ("localhost", "127.0.0.1")
#: The client certificate name `client_allowed_sans` admits in the tests.
CLIENT_NAME = "scraper.test"


def bcrypt_hash(password: str, cost: int = 4) -> str:
    """A hash as htpasswd writes it (`$2y$`); cost 4 keeps tests fast."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    return "$2y$" + hashed[4:]


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write_web_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


@dataclass(frozen=True)
class WebCerts:
    """Certificates for the server and its clients, as PEM files in `directory`."""

    directory: Path
    server_ca: trustme.CA
    client_ca: trustme.CA

    @classmethod
    def make(cls, directory: Path) -> Self:
        directory.mkdir(parents=True, exist_ok=True)
        certs = cls(directory, trustme.CA(), trustme.CA())
        certs.server_ca.cert_pem.write_to_path(str(certs.server_ca_file))
        certs.client_ca.cert_pem.write_to_path(str(certs.client_ca_file))
        certs.rotate_server("first")
        _write_client(certs.client_ca, CLIENT_NAME, certs.client_file)
        _write_client(certs.client_ca, "intruder.test", certs.client_other_name_file)
        _write_client(trustme.CA(), CLIENT_NAME, certs.client_other_ca_file)
        return certs

    @property
    def server_ca_file(self) -> Path:
        return self.directory / "server-ca.pem"

    @property
    def client_ca_file(self) -> Path:
        return self.directory / "client-ca.pem"

    @property
    def server_cert_file(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key_file(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_file(self) -> Path:
        """Key and certificate of a client the server admits (SAN `CLIENT_NAME`)."""
        return self.directory / "client.pem"

    @property
    def client_other_name_file(self) -> Path:
        """A client of the right CA whose certificate names someone else."""
        return self.directory / "client-other-name.pem"

    @property
    def client_other_ca_file(self) -> Path:
        """A client whose certificate comes from a CA the server does not trust."""
        return self.directory / "client-other-ca.pem"

    def rotate_server(self, organization: str) -> None:
        """A new server certificate and key, each written to a new file and renamed over
        the old one (what cert-manager and Kubernetes' Secret volumes amount to)."""
        leaf = self.server_ca.issue_cert(*SERVER_NAMES, organization_name=organization)
        for data, path in (
            (leaf.private_key_pem.bytes(), self.server_key_file),
            (b"".join(blob.bytes() for blob in leaf.cert_chain_pems), self.server_cert_file),
        ):
            temporary = path.with_suffix(".new")
            temporary.write_bytes(data)
            os.replace(temporary, path)

    def tls_config(self, **extra: Any) -> dict[str, Any]:
        """`tls_server_config` serving the server certificate, with `extra` keys."""
        return {
            "cert_file": self.server_cert_file.name,  # relative: to the web config's directory
            "key_file": self.server_key_file.name,
            **extra,
        }

    def client_context(self, client: Path | None = None) -> ssl.SSLContext:
        """A client's context trusting the server CA, presenting `client` if given."""
        context = ssl.create_default_context(cafile=str(self.server_ca_file))
        if client is not None:
            context.load_cert_chain(str(client))
        return context


def _write_client(ca: trustme.CA, name: str, path: Path) -> None:
    """Key and certificate in `path`, and each alone beside it (`.crt`, `.key`) for
    clients that take them apart, as Prometheus does."""
    leaf = ca.issue_cert(name, common_name=name)
    leaf.private_key_and_cert_chain_pem.write_to_path(str(path))
    leaf.cert_chain_pems[0].write_to_path(str(path.with_suffix(".crt")))
    leaf.private_key_pem.write_to_path(str(path.with_suffix(".key")))


def server_organization(context: ssl.SSLContext, port: int, host: str = "127.0.0.1") -> str:
    """The organization in the certificate the server presents now, on a new connection."""
    with (
        socket.create_connection((host, port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(
        x509.NameOID.ORGANIZATION_NAME
    )
    return str(names[0].value)


class SecureExporter(ExporterProcess):
    """An exporter run with `--web.config.file`, spoken to with TLS and credentials."""

    name = "exporter (web config)"

    def __init__(
        self,
        config_file: Path,
        web_config: Path,
        *,
        certs: WebCerts | None,
        credentials: tuple[str, str] | None = None,
        client: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(config_file, extra_args=[f"--web.config.file={web_config}", *extra_args])
        self.certs = certs
        self.credentials = credentials
        self.client = client

    @property
    def base_url(self) -> str:
        scheme = "https" if self.certs is not None else "http"
        return f"{scheme}://{self.address}"

    def context(self) -> ssl.SSLContext | None:
        return self.certs.client_context(self.client) if self.certs is not None else None

    def _ready(self) -> bool:
        try:
            return self.request("/-/ready", timeout=2).status == 200
        except OSError:
            return False

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Response:
        """As `ExporterProcess.request`, over TLS and with the credentials (when set)."""
        sent = dict(headers or {})
        if self.credentials is not None:
            sent.setdefault("Authorization", basic_header(*self.credentials))
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            headers=sent,
            data=b"" if method in ("POST", "PUT") else None,
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.context()) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return Response(error.code, error.headers, error.read())


@dataclass(frozen=True)
class CurlResult:
    """What curl got: its exit status, the HTTP status (0: none) and headers."""

    exit_status: int
    status: int
    headers: dict[str, str]
    stderr: str


def curl(url: str, *args: str) -> CurlResult:
    """One request with curl (`args` before the URL); the status and response headers."""
    binary = require_tool("curl", "apt-get install curl")
    done = subprocess.run(
        [binary, "--silent", "--show-error", "--max-time", "10", "--output", "/dev/null",
         "--dump-header", "-", "--write-out", "%{http_code}", *args, url],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    *header_lines, status = done.stdout.rstrip("\n").split("\n") or ["000"]
    headers = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return CurlResult(done.returncode, int(status or 0), headers, done.stderr)


def curl_available() -> bool:
    return shutil.which("curl") is not None
