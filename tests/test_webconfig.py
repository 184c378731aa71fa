"""The web config file: the exporter-toolkit's format read as the toolkit reads it, every
problem at once with key paths and lines, and the SSL contexts it asks for."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from exporter.webconfig import (
    TLS12_SUITES,
    ClientAuth,
    RateLimit,
    WebConfig,
    WebConfigError,
    cipher_string,
    load_web_config,
    parse_web_config,
    restart_problems,
    server_context,
)
from tests.support.webconfig import WebCerts, bcrypt_hash

#: The toolkit's own sample (docs/web-config.yml), its hashes and all.
TOOLKIT_SAMPLE = """\
# TLS and basic authentication configuration example.
tls_server_config:
  cert_file: server.crt
  key_file: server.key

# Usernames and passwords required to connect.
basic_auth_users:
  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze
  bob: $2y$10$hLqFl9jSjoAAy95Z/zw8Ye8wkdMBM8c5Bn1ptYqP/AXyV0.oy0S8m

# Rate limiting requests on the endpoint using a token bucket
rate_limit:
  interval: "1s"
  burst: 20
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> WebCerts:
    return WebCerts.make(tmp_path_factory.mktemp("web-certs"))


def parse(text: str, certs: WebCerts) -> WebConfig:
    return parse_web_config(text, "web.yml", str(certs.directory))


def problems(text: str, certs: WebCerts) -> list[str]:
    with pytest.raises(WebConfigError) as caught:
        parse(text, certs)
    return list(caught.value.problems)


def test_an_empty_file_serves_plain_http_to_everyone(certs: WebCerts) -> None:
    config = parse("", certs)
    assert config.tls is None
    assert config.users == ()
    assert config.headers == ()
    assert config.http2 is True


def test_the_toolkits_sample_file_works_unchanged(certs: WebCerts) -> None:
    (certs.directory / "server.crt").write_bytes(certs.server_cert_file.read_bytes())
    (certs.directory / "server.key").write_bytes(certs.server_key_file.read_bytes())
    path = certs.directory / "web-config.yml"
    path.write_text(TOOLKIT_SAMPLE)
    config = load_web_config(path)
    assert config.tls is not None
    # Relative paths are relative to the web config's directory, as the toolkit has them.
    assert config.tls.cert.path == str(certs.directory / "server.crt")
    assert config.tls.min_version == ssl.TLSVersion.TLSv1_2  # the toolkit's default
    assert config.tls.max_version == ssl.TLSVersion.TLSv1_3
    assert config.tls.client_auth is ClientAuth.NONE
    assert [name for name, _ in config.users] == [b"alice", b"bob"]
    assert config.rate_limit == RateLimit(interval=1.0, burst=20)
    # An unknown user is checked against a hash of the users' cost (10).
    assert config.unknown_user_hash.startswith(b"$2b$10$")
    assert config.notes == ()


def test_every_problem_at_once_with_key_paths_and_lines(certs: WebCerts) -> None:
    text = """\
tls_server_config:
  cert_file: missing.crt
  key_file: server.crt
  min_version: TLS14
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_RC4_128_SHA]
  curve_preferences: [CurveP257]
  cert_filse: server.crt
http_server_config:
  headers:
    Content-Type: text/html
    X-Frame-Options: allowall
basic_auth_users:
  alice: hunter2
  bob: $2y$20$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze
rate_limit:
  interval: soon
"""
    found = problems(text, certs)
    missing = certs.directory / "missing.crt"
    assert found == [
        f"tls_server_config.cert_file: {missing}: no such file (line 2)",
        f"tls_server_config.key_file: {certs.directory / 'server.crt'}: holds no PEM private key"
        " (line 3)",
        "tls_server_config.min_version: 'TLS14' is not one of TLS10, TLS11, TLS12, TLS13 (line 4)",
        "tls_server_config.cipher_suites[1]: unknown cipher suite 'TLS_RSA_WITH_RC4_128_SHA'"
        " (line 5)",
        "tls_server_config.curve_preferences[0]: unknown curve 'CurveP257' (known: CurveP256,"
        " CurveP384, CurveP521, X25519) (line 6)",
        "tls_server_config.cert_filse: unknown key (known: cert, key, client_ca, cert_file,"
        " key_file, client_ca_file, client_auth_type, client_allowed_sans, min_version,"
        " max_version, cipher_suites, prefer_server_cipher_suites, curve_preferences) (line 7)",
        "http_server_config.headers.Content-Type: cannot be set (known: Strict-Transport-Security,"
        " X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)"
        " (line 10)",
        "http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin, got"
        " 'allowall' (line 11)",
        "basic_auth_users.alice: must be a bcrypt hash ($2y$10$ and 53 more characters), not the"
        " password: make one with htpasswd -nBC 10 \"\" | tr -d ':\\n' (line 13)",
        "basic_auth_users.bob: bcrypt cost 20 is outside 4 to 14: above that every new login"
        " takes seconds; make the hash with cost 10 to 12 (line 14)",
        "rate_limit.interval: must be a duration such as 1s or 100ms, got 'soon' (line 16)",
    ]
    assert all("hunter2" not in problem for problem in found)  # a password is never shown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The toolkit's own bad test files, and what it says of them.
        ("tls_server_config: {cert_file: '', key_file: server.key}", "missing one of cert or"),
        ("tls_server_config: {cert: '', key_file: server.key}", "missing one of cert or cert_file"),
        ("tls_server_config: {cert_file: server.crt, key_file: ''}", "missing one of key or"),
        ("tls_server_config: {cert_file: server.crt, key_file: server.key,"
         " client_ca_file: client-ca.pem}", "is set, but client_auth_type is NoClientCert"),
        ("tls_server_config: {cert_file: server.crt, key_file: server.key,"
         " client_auth_type: x}", "'x' is not one of NoClientCert"),
        ("basic_auth_users: {john: doe}", "must be a bcrypt hash"),
        ("tls_server_config: {cert_file: server.crt, key_file: server.key, cipher_suites:"
         " [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048]}", "unknown cipher suite"),
        ("http_server_config: {headers: {X-Content-Type-Options: sniff}}", "one of nosniff"),
        ("hWkNKCp3fvIx3jKnsaBI\nTuEjdwNS8A2vYdFbiKqr", "the file must be a mapping"),
        ("tls_server_config: {cert_filse: server.crt}", "unknown key"),
        # Beyond the toolkit: what Python's ssl cannot do, and what would lock everyone out.
        ("tls_server_config: {cert_file: server.crt, key_file: server.key,"
         " client_auth_type: RequireAnyClientCert}", "RequireAnyClientCert cannot be honoured"),
        ("tls_server_config: {cert_file: server.crt, key_file: server.key,"
         " client_allowed_sans: [a]}", "client_allowed_sans: needs client_auth_type"),
        ("tls_server_config: {cert_file: server.crt, key_file: server.key,"
         " min_version: TLS13, max_version: TLS12}", "TLS13 is above max_version TLS12"),
        ("tls_server_config: {cert_file: server.crt, key_file: server.key,"
         " cipher_suites: [TLS_AES_128_GCM_SHA256]}", "names only TLS 1.3 suites"),
        ("tls_server_config: {cert_file: server.crt, cert: x, key_file: server.key}",
         "set cert or cert_file, not both"),
        ("rate_limit: {interval: 1s, burst: 0}", "burst: must be at least 1"),
        ("basic_auth_users: {'a:b': $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze}",
         "cannot contain ':'"),
        ("basic_auth_users:\n  a: x\n  a: y\n", "basic_auth_users.a: is given twice (line 3)"),
    ],
)  # fmt: skip
def test_bad_files(text: str, expected: str, certs: WebCerts) -> None:
    for name in ("server.crt", "server.key"):
        source = certs.server_cert_file if name.endswith("crt") else certs.server_key_file
        (certs.directory / name).write_bytes(source.read_bytes())
    found = problems(text, certs)
    assert any(expected in problem for problem in found), found


def test_a_key_that_is_not_the_certificates(certs: WebCerts, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(certs.client_file.read_bytes())  # the client's key (and certificate)
    text = f"tls_server_config: {{cert_file: {certs.server_cert_file}, key_file: {other}}}"
    assert problems(text, certs) == [
        "tls_server_config.key_file: is not the private key of the certificate in cert_file"
        " (line 1)"
    ]


def test_an_unreadable_web_config_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="file not found"):
        load_web_config(tmp_path / "nope.yml")
    with pytest.raises(WebConfigError, match="is a directory"):
        load_web_config(tmp_path)


def test_a_web_config_file_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    """As the config file: an endless device or a huge file costs 10 MiB at most."""
    with pytest.raises(WebConfigError, match="holds more than the 10 MiB"):
        load_web_config("/dev/zero")
    huge = tmp_path / "huge.yml"
    huge.write_bytes(b"")
    os.truncate(huge, 100 * 1024 * 1024)
    with pytest.raises(WebConfigError, match="104,857,600 bytes, more than the 10 MiB"):
        load_web_config(huge)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('tls_server_config: {cert_file: "server.crt\\0", key_file: server.key}',
         "tls_server_config.cert_file: "),
        ('tls_server_config: {cert: "\\ud800", key_file: server.key}',
         "tls_server_config.cert: cannot be read: "),
    ],
    ids=["nul-in-path", "surrogate-inline"],
)  # fmt: skip
def test_pem_text_that_no_file_or_encoding_takes_is_a_problem(
    text: str, expected: str, certs: WebCerts
) -> None:
    found = problems(text, certs)
    assert any(problem.startswith(expected) for problem in found), found


def test_problems_are_text_even_when_the_file_writes_lone_surrogates(certs: WebCerts) -> None:
    """A YAML escape can make a key no encoding takes: the problem naming it goes into the
    reload's HTTP answer all the same."""
    error = WebConfigError("web\udcff.yml", ["\ud800: unknown key"])
    assert error.problems == ("\\ud800: unknown key",)
    assert str(error).encode("utf-8") == b"web\\udcff.yml: \\ud800: unknown key"
    found = problems('"\\ud800": 1', certs)
    assert all(problem.encode("utf-8") for problem in found)


def test_a_key_with_a_line_break_still_makes_a_one_line_problem(certs: WebCerts) -> None:
    found = problems('tls_server_config: {"a\\nb\\u2028c\\x1b[31m": 1}', certs)
    assert len(found) == 1
    assert found[0].splitlines() == [found[0]]
    assert found[0].isprintable()


def test_a_pem_file_is_read_only_up_to_the_limit(certs: WebCerts, tmp_path: Path) -> None:
    """An endless device or a huge file named as certificate, key or CA costs 10 MiB at most."""
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"")
    os.truncate(huge, 100 * 1024 * 1024)
    text = f"tls_server_config: {{cert_file: /dev/zero, key_file: {huge}}}"
    found = problems(text, certs)
    assert found == [
        "tls_server_config.cert_file: /dev/zero: cannot be read: holds more than the 10 MiB"
        " a PEM file may have (line 1)",
        f"tls_server_config.key_file: {huge}: cannot be read: holds more than the 10 MiB"
        " a PEM file may have (line 1)",
    ]


def test_inline_certificate_and_key(certs: WebCerts) -> None:
    indent = "\n      "
    cert = indent.join(certs.server_cert_file.read_text().splitlines())
    key = indent.join(certs.server_key_file.read_text().splitlines())
    text = f"tls_server_config:\n  cert: |{indent}{cert}\n  key: |{indent}{key}\n"
    config = parse(text, certs)
    assert config.tls is not None
    assert config.tls.cert.path is None
    assert config.tls.files() == ()  # nothing to watch
    context = server_context(config.tls)
    assert context.verify_mode == ssl.CERT_NONE


def test_client_certificate_settings(certs: WebCerts) -> None:
    text = f"""\
tls_server_config:
  cert_file: {certs.server_cert_file}
  key_file: {certs.server_key_file}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {certs.client_ca_file.name}
  client_allowed_sans: [scraper.test]
  min_version: TLS13
"""
    config = parse(text, certs)
    assert config.tls is not None
    assert config.tls.client_allowed_sans == ("scraper.test",)
    assert config.tls.files() == (
        str(certs.server_cert_file),
        str(certs.server_key_file),
        str(certs.client_ca_file),
    )
    context = server_context(config.tls)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize(
    ("settings", "note"),
    [
        ("client_auth_type: RequestClientCert", "no client certificate is asked for"),
        ("curve_preferences: [X25519, CurveP256]", "sets one curve only"),
        ("client_auth_type: VerifyClientCertIfGiven", "verified against the system's trust store"),
        ("min_version: TLS10", None),
    ],
)
def test_what_is_done_differently_is_noted(
    certs: WebCerts, settings: str, note: str | None
) -> None:
    text = (
        f"tls_server_config:\n  cert_file: {certs.server_cert_file}\n"
        f"  key_file: {certs.server_key_file}\n  {settings}\n"
    )
    config = parse(text, certs)
    assert config.tls is not None
    server_context(config.tls)  # and it can be served
    if note is None:
        assert config.notes == ()
    else:
        assert [n for n in config.notes if note in n], config.notes


def test_tls_settings_without_a_certificate_serve_plain_http(certs: WebCerts) -> None:
    """As the toolkit: TLS is on only when a certificate, key or client CA is named."""
    config = parse("tls_server_config: {min_version: TLS13}", certs)
    assert config.tls is None
    assert config.notes == ("tls_server_config names no certificate: plain HTTP is served",)


def test_every_tls12_suite_the_toolkit_names_is_known_to_openssl() -> None:
    for go_name, openssl_name in TLS12_SUITES.items():
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_ciphers(openssl_name)
        names = {cipher["name"] for cipher in context.get_ciphers()}
        assert openssl_name in names, go_name


def test_cipher_string(certs: WebCerts) -> None:
    def tls(extra: str) -> str | None:
        config = parse(
            f"tls_server_config: {{cert_file: {certs.server_cert_file},"
            f" key_file: {certs.server_key_file}, {extra}}}",
            certs,
        )
        assert config.tls is not None
        return cipher_string(config.tls)

    assert tls("min_version: TLS12") is None  # Python's defaults
    assert tls(
        "cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]"
    ) == ("ECDHE-RSA-AES128-GCM-SHA256")
    assert tls("min_version: TLS11") == "DEFAULT:@SECLEVEL=0"


def test_headers_and_http2(certs: WebCerts) -> None:
    config = parse(
        """\
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000; includeSubDomains
    X-Content-Type-Options: nosniff
    X-XSS-Protection: "1"
    Content-Security-Policy: "default-src 'self' *.test.example.net"
""",
        certs,
    )
    assert config.http2 is False
    assert dict(config.headers) == {
        "X-Frame-Options": "deny",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
        "X-XSS-Protection": "1",
        "Content-Security-Policy": "default-src 'self' *.test.example.net",
    }


@pytest.mark.parametrize("value", ["a\\0b", "a\\x01b", "a\\x7fb", "a\\rb"])
def test_a_header_no_response_can_carry_is_a_problem(value: str, certs: WebCerts) -> None:
    """aiohttp drops the connection of a response whose header holds a control character:
    such a value would break every endpoint."""
    text = f'http_server_config: {{headers: {{Content-Security-Policy: "{value}"}}}}'
    found = problems(text, certs)
    assert len(found) == 1, found
    assert found[0].startswith("http_server_config.headers.Content-Security-Policy: must be one")


def test_a_header_may_hold_a_tab(certs: WebCerts) -> None:
    config = parse('http_server_config: {headers: {X-XSS-Protection: "1;\\tmode=block"}}', certs)
    assert dict(config.headers) == {"X-XSS-Protection": "1;\tmode=block"}


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [("1s", 1.0), ("100ms", 0.1), ("1m30s", 90.0), ("1.5h", 5400.0), (0, None), ("0", None)],
)
def test_rate_limit_interval(interval: object, seconds: float | None, certs: WebCerts) -> None:
    config = parse(f"rate_limit: {{interval: {interval!r}, burst: 3}}", certs)
    assert config.rate_limit == (RateLimit(seconds, 3) if seconds is not None else None)


def test_a_user_name_that_is_no_text_is_a_problem(certs: WebCerts) -> None:
    found = problems(f'basic_auth_users: {{"\\ud800": "{bcrypt_hash("pw")}"}}', certs)
    assert found == [
        "basic_auth_users.\\ud800: the user name is not text (a lone surrogate) (line 1)"
    ]


def test_user_hashes_of_every_bcrypt_flavour(certs: WebCerts) -> None:
    python = bcrypt_hash("pw").replace("$2y$", "$2b$")
    go = python.replace("$2b$", "$2a$")
    htpasswd = python.replace("$2b$", "$2y$")
    config = parse(f"basic_auth_users: {{a: '{python}', b: '{go}', c: '{htpasswd}', 7: '{go}'}}",
                   certs)  # fmt: skip
    assert [name for name, _ in config.users] == [b"a", b"b", b"c", b"7"]


def test_what_a_reload_cannot_change(certs: WebCerts) -> None:
    files = f"cert_file: {certs.server_cert_file}, key_file: {certs.server_key_file}"
    tls = f"tls_server_config: {{{files}"
    plain = parse("", certs)
    secure = parse(tls + "}", certs)
    curve = parse(tls + ", curve_preferences: [X25519]}", certs)
    assert restart_problems(plain, secure) == ["tls_server_config: turning TLS on takes a restart"]
    assert restart_problems(secure, plain) == ["tls_server_config: turning TLS off takes a restart"]
    assert restart_problems(secure, curve) == [
        "tls_server_config.curve_preferences: a change takes a restart"
    ]
    assert restart_problems(secure, parse(tls + ", min_version: TLS13}", certs)) == []
