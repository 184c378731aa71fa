"""The exporter with `--web.config.file`, as users run it, spoken to by real clients: curl,
Python's urllib and ssl, and a real Prometheus. Basic auth on every endpoint (health
included, as the toolkit has it), client certificates, TLS versions, certificate rotation
without a restart, response headers, reloads that keep a good web config over a bad one,
and the checks at start."""

from __future__ import annotations

import signal
import socket
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.webconfig import load_web_config
from tests.support.exporter_process import HOST, free_port, run_exporter, write_config
from tests.support.prometheus import PrometheusServer, require_prometheus
from tests.support.webconfig import (
    CLIENT_NAME,
    SecureExporter,
    WebCerts,
    basic_header,
    bcrypt_hash,
    curl,
    server_organization,
    write_web_config,
)

ALICE = ("alice", "through the looking glass")
HEADERS = {
    "X-Frame-Options": "deny",
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> WebCerts:
    return WebCerts.make(tmp_path_factory.mktemp("web-certs"))


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """One target nobody listens on: the exporter has series, and probes nothing real."""
    return write_config(
        tmp_path / "config.yaml",
        {
            "defaults": {"interval": "10m", "timeout": "2s", "ehlo_name": "client.test"},
            "targets": [{"host": HOST, "port": free_port(), "name": "closed"}],
        },
    )


def web_config(certs: WebCerts, **tls: Any) -> dict[str, Any]:
    """TLS with `tls` settings, alice as the one user, and the headers."""
    return {
        "tls_server_config": certs.tls_config(**tls),
        "http_server_config": {"headers": HEADERS},
        "basic_auth_users": {ALICE[0]: bcrypt_hash(ALICE[1])},
    }


@pytest.fixture
def exporter(config_file: Path, certs: WebCerts) -> Iterator[SecureExporter]:
    """TLS and basic auth; the web config next to the certificates (relative paths)."""
    path = write_web_config(certs.directory / "web-basic.yml", web_config(certs))
    process = SecureExporter(config_file, path, certs=certs, credentials=ALICE)
    with process:
        yield process


def url(process: SecureExporter, path: str) -> str:
    return process.base_url + path


# --- basic auth ---------------------------------------------------------------------------


def test_basic_auth_with_curl(exporter: SecureExporter, certs: WebCerts) -> None:
    ca = ("--cacert", str(certs.server_ca_file))
    for path in ("/metrics", "/-/healthy", "/-/ready", "/", "/nowhere"):
        answer = curl(url(exporter, path), *ca)
        assert answer.status == 401, path
        assert answer.headers["www-authenticate"] == "Basic"
    for user, password in [("alice", "wrong"), ("mallory", ALICE[1]), ("", "")]:
        assert curl(url(exporter, "/metrics"), *ca, "-u", f"{user}:{password}").status == 401
    for path in ("/metrics", "/-/healthy", "/-/ready"):
        assert curl(url(exporter, path), *ca, "-u", ":".join(ALICE)).status == 200, path
    # The reload endpoint is guarded like the rest.
    assert curl(url(exporter, "/-/reload"), *ca, "-X", "POST").status == 401


def test_basic_auth_with_urllib(exporter: SecureExporter) -> None:
    assert exporter.get("/metrics").status == 200  # the process's own credentials
    assert "smtp_tls_probe_success" in exporter.metrics_text()
    for header in (basic_header("alice", "nope"), basic_header("bob", ALICE[1]), "Bearer x"):
        answer = exporter.get("/metrics", headers={"Authorization": header})
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"] == "Basic"
        assert answer.text == "Unauthorized\n"


def test_headers_on_every_answer(exporter: SecureExporter, certs: WebCerts) -> None:
    ca = ("--cacert", str(certs.server_ca_file))
    for path, credentials in [("/metrics", ALICE), ("/-/healthy", None), ("/nowhere", ALICE)]:
        auth = ("-u", ":".join(credentials)) if credentials else ()
        answer = curl(url(exporter, path), *ca, *auth)
        for name, value in HEADERS.items():
            assert answer.headers[name.lower()] == value, (path, name)
    # The status pages keep their own, stricter Content-Security-Policy.
    page = exporter.get("/")
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert page.headers["X-Frame-Options"] == "deny"


def test_plain_http_is_not_answered_on_the_tls_port(exporter: SecureExporter) -> None:
    answer = curl(f"http://{exporter.address}/metrics", "-u", ":".join(ALICE))
    assert answer.status == 0
    assert answer.exit_status != 0


# --- client certificates --------------------------------------------------------------------


def request_over_tls(context: ssl.SSLContext, port: int) -> bytes:
    """One HTTP request with alice's credentials; the answer's first bytes, or b"" when the
    connection ends without one. Raises what the TLS layer raises."""
    request = (
        f"GET /-/healthy HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Authorization: {basic_header(*ALICE)}\r\n\r\n"
    ).encode()
    with (
        socket.create_connection((HOST, port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=HOST) as tls,
    ):
        tls.sendall(request)
        return tls.recv(64)


def refused(context: ssl.SSLContext, port: int) -> bool:
    """True when no HTTP answer comes: the handshake (or, with TLS 1.3, the first read
    after it) fails, or the connection is closed."""
    try:
        return request_over_tls(context, port) == b""
    except (ssl.SSLError, ConnectionError):
        return True


@pytest.fixture
def mutual(config_file: Path, certs: WebCerts) -> Iterator[SecureExporter]:
    settings = web_config(
        certs,
        client_auth_type="RequireAndVerifyClientCert",
        client_ca_file=certs.client_ca_file.name,
        client_allowed_sans=[CLIENT_NAME],
    )
    path = write_web_config(certs.directory / "web-mutual.yml", settings)
    process = SecureExporter(
        config_file, path, certs=certs, credentials=ALICE, client=certs.client_file
    )
    with process:
        yield process


def test_client_certificates_with_python(mutual: SecureExporter, certs: WebCerts) -> None:
    port = mutual.port
    assert refused(certs.client_context(), port)  # none
    assert refused(certs.client_context(certs.client_other_ca_file), port)  # another CA
    assert refused(certs.client_context(certs.client_other_name_file), port)  # a name not allowed
    assert request_over_tls(certs.client_context(certs.client_file), port).startswith(
        b"HTTP/1.1 200"
    )
    assert mutual.get("/metrics").status == 200
    # The names refused are logged, for whoever sets up the scraper's certificate.
    assert "names=intruder.test" in mutual.log()


def test_client_certificates_with_curl(mutual: SecureExporter, certs: WebCerts) -> None:
    args = ("--cacert", str(certs.server_ca_file), "-u", ":".join(ALICE))
    target = url(mutual, "/metrics")
    for client in (None, certs.client_other_ca_file, certs.client_other_name_file):
        answer = curl(target, *args, *(("--cert", str(client)) if client else ()))
        assert answer.status == 0, client  # no HTTP answer at all
        assert answer.exit_status != 0
    assert curl(target, *args, "--cert", str(certs.client_file)).status == 200
    # TLS 1.2 too, where a missing certificate fails the handshake itself.
    answer = curl(target, *args, "--tls-max", "1.2")
    assert answer.status == 0
    assert curl(target, *args, "--tls-max", "1.2", "--cert", str(certs.client_file)).status == 200


# --- TLS versions, rotation, reload ------------------------------------------------------------


def tls11_client(certs: WebCerts) -> ssl.SSLContext:
    """A client that offers TLS 1.1 and nothing newer (OpenSSL needs security level 0)."""
    context = certs.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def negotiated(context: ssl.SSLContext, port: int) -> str | None:
    with (
        socket.create_connection((HOST, port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=HOST) as tls,
    ):
        return tls.version()


def test_tls11_refused_with_min_version_tls12_then_allowed_by_a_reload(
    config_file: Path, certs: WebCerts
) -> None:
    path = write_web_config(certs.directory / "web-versions.yml", web_config(certs))
    with SecureExporter(config_file, path, certs=certs, credentials=ALICE) as process:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            negotiated(tls11_client(certs), process.port)
        assert negotiated(certs.client_context(), process.port) == "TLSv1.3"
        # The same client gets TLS 1.1 once the web config allows it: it does offer 1.1.
        write_web_config(path, web_config(certs, min_version="TLS10"))
        assert process.reload().status == 200
        assert negotiated(tls11_client(certs), process.port) == "TLSv1.1"
        # And max_version holds new connections to TLS 1.2.
        write_web_config(path, web_config(certs, max_version="TLS12"))
        process.sighup()
        process.wait_until(
            lambda: negotiated(certs.client_context(), process.port) == "TLSv1.2",
            timeout=10,
            what="TLS 1.2 after the SIGHUP",
        )


def test_a_rotated_certificate_is_served_without_a_restart(
    exporter: SecureExporter, certs: WebCerts
) -> None:
    context = certs.client_context()
    assert server_organization(context, exporter.port) == "first"
    pid = exporter.proc.pid if exporter.proc else None
    try:
        certs.rotate_server("second")
        assert server_organization(context, exporter.port) == "second"  # the next connection
        assert exporter.get("/metrics").status == 200
        assert exporter.proc is not None
        assert exporter.proc.pid == pid
        assert "TLS files changed: new connections get them" in exporter.log()
    finally:
        certs.rotate_server("first")


def test_a_certificate_written_before_its_key_is_served_once_both_are(
    exporter: SecureExporter, certs: WebCerts
) -> None:
    """A rotation seen halfway (new certificate, old key) serves the old pair meanwhile."""
    context = certs.client_context()
    old_key = certs.server_key_file.read_bytes()
    try:
        certs.rotate_server("third")
        new_key = certs.server_key_file.read_bytes()
        certs.server_key_file.write_bytes(old_key)
        assert server_organization(context, exporter.port) == "first"
        assert "TLS files changed but cannot be loaded" in exporter.log()
        certs.server_key_file.write_bytes(new_key)
        # Rewritten in place within one tick of the file system's clock, the key may look
        # unchanged: the pair that failed is tried again a second later all the same.
        exporter.wait_until(
            lambda: server_organization(context, exporter.port) == "third",
            timeout=5,
            what="the new pair served",
        )
    finally:
        certs.rotate_server("first")


def reload_successful(process: SecureExporter) -> float | None:
    return process.scrape().value("smtp_tls_exporter_config_last_reload_successful")


def test_a_bad_web_config_on_reload_keeps_the_running_one(
    config_file: Path, certs: WebCerts
) -> None:
    path = write_web_config(certs.directory / "web-reload.yml", web_config(certs))
    with SecureExporter(config_file, path, certs=certs, credentials=ALICE) as process:
        bad = web_config(certs, client_auth_type="Sometimes", min_version="TLS9")
        bad["basic_auth_users"] = {"alice": "plaintext"}
        write_web_config(path, bad)
        answer = process.reload()
        assert answer.status == 500
        for problem in (
            "tls_server_config.client_auth_type: 'Sometimes' is not one of",
            "tls_server_config.min_version: 'TLS9' is not one of",
            "basic_auth_users.alice: must be a bcrypt hash",
        ):
            assert problem in answer.text
            assert problem in process.log()
        assert "plaintext" not in process.log()
        assert "web config reload failed; the previous web config keeps running" in process.log()
        assert reload_successful(process) == 0  # alice still gets in: the old file runs
        assert process.get("/metrics", headers={"Authorization": "Basic eDp5"}).status == 401
        # SIGHUP the same way; then turning TLS off is refused: it takes a restart.
        plain = web_config(certs)
        del plain["tls_server_config"]
        write_web_config(path, plain)
        process.signal(signal.SIGHUP)
        process.wait_until(
            lambda: "turning TLS off takes a restart" in process.log(),
            timeout=10,
            what="the refused reload in the log",
        )
        assert reload_successful(process) == 0
        write_web_config(path, web_config(certs))
        assert process.reload().status == 200
        assert reload_successful(process) == 1


# --- checks at start ----------------------------------------------------------------------------


def test_a_bad_web_config_stops_the_start_with_every_problem(
    config_file: Path, tmp_path: Path
) -> None:
    path = write_web_config(
        tmp_path / "web.yml",
        {
            "tls_server_config": {"cert_file": "nope.crt", "key_file": "nope.key"},
            "basic_auth_users": {"alice": "secret"},
            "http_server_config": {"headers": {"Server": "x"}},
        },
    )
    for flags in ((), ("--config.check",)):
        done = run_exporter(f"--config.file={config_file}", f"--web.config.file={path}", *flags)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        lines = done.stderr.splitlines()
        assert lines == [
            f"{path}: tls_server_config.cert_file: {tmp_path / 'nope.crt'}: no such file (line 2)",
            f"{path}: tls_server_config.key_file: {tmp_path / 'nope.key'}: no such file (line 3)",
            f"{path}: basic_auth_users.alice: must be a bcrypt hash ($2y$10$ and 53 more"
            " characters), not the password: make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'"
            " (line 5)",
            f"{path}: http_server_config.headers.Server: cannot be set (known:"
            " Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options,"
            " X-XSS-Protection, Content-Security-Policy) (line 8)",
        ]


def test_config_check_names_what_the_web_config_turns_on(
    config_file: Path, certs: WebCerts
) -> None:
    path = write_web_config(
        certs.directory / "web-check.yml",
        web_config(certs, client_auth_type="RequestClientCert"),
    )
    done = run_exporter(f"--config.file={config_file}", f"--web.config.file={path}",
                        "--config.check")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{path}: OK, TLS (client certificates: RequestClientCert), basic auth for 1 user," in (
        done.stdout
    )
    assert "note: client_auth_type RequestClientCert: no client certificate is asked for" in (
        done.stdout
    )


def test_both_files_bad_report_both(config_file: Path, tmp_path: Path) -> None:
    config_file.write_text("targets: 3\n")
    path = write_web_config(tmp_path / "web.yml", {"basic_auth_users": {"a": "b"}})
    done = run_exporter(f"--config.file={config_file}", f"--web.config.file={path}")
    assert done.returncode == 1
    assert f"{config_file}: targets" in done.stderr
    assert f"{path}: basic_auth_users.a: must be a bcrypt hash" in done.stderr


# --- Prometheus ------------------------------------------------------------------------------


@pytest.mark.prometheus
def test_prometheus_scrapes_over_tls_with_basic_auth_and_a_client_certificate(
    mutual: SecureExporter, certs: WebCerts, tmp_path: Path
) -> None:
    binary = require_prometheus()
    job = {
        "job_name": "smtp-tls-exporter",
        "scheme": "https",
        "tls_config": {
            "ca_file": str(certs.server_ca_file),
            "cert_file": str(certs.client_file.with_suffix(".crt")),
            "key_file": str(certs.client_file.with_suffix(".key")),
        },
        "basic_auth": {"username": ALICE[0], "password": ALICE[1]},
        "static_configs": [{"targets": [mutual.address]}],
    }
    with PrometheusServer(tmp_path / "prometheus", [], binary=binary, scrape_configs=[job]) as p:
        (target,) = p.wait_for_scrape_target_up(timeout=30)
        assert target["scrapeUrl"] == f"https://{mutual.address}/metrics"
        p.wait_until(
            lambda: p.query('smtp_tls_probe_success{target="closed"}'),
            timeout=30,
            what="the exporter's series",
        )
    # A wrong password: the target is down, and says why.
    job["basic_auth"] = {"username": ALICE[0], "password": "wrong"}
    with PrometheusServer(tmp_path / "prometheus-2", [], binary=binary, scrape_configs=[job]) as p:

        def down() -> dict[str, Any] | None:
            targets = p.active_targets()
            return targets[0] if targets and targets[0]["health"] == "down" else None

        target = p.wait_until(down, timeout=30, what="the target down")
        assert "401" in target["lastError"]


# --- the README ----------------------------------------------------------------------------


def test_the_readmes_web_config_is_accepted(certs: WebCerts, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Securing the endpoints\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block.startswith("# web-config.yml\n")
    (tmp_path / "exporter.crt").write_bytes(certs.server_cert_file.read_bytes())
    (tmp_path / "exporter.key").write_bytes(certs.server_key_file.read_bytes())
    path = tmp_path / "web-config.yml"
    path.write_text(block)
    config = load_web_config(path)
    assert config.tls is not None
    assert [name for name, _ in config.users] == [b"prometheus"]
    scrape = yaml.safe_load(section.split("```yaml\n", 2)[2].split("```", 1)[0])
    [job] = scrape["scrape_configs"]
    assert job["scheme"] == "https"
    assert set(job["tls_config"]) == {"ca_file"}
    assert job["basic_auth"]["username"] == "prometheus"
