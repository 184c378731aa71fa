"""The web config file (`--web.config.file`): TLS, client certificates, basic auth and
response headers for every HTTP endpoint, in the Prometheus exporter-toolkit's format, so a
file written for blackbox_exporter or node_exporter works here unchanged.

The file is checked the way the config file is (every problem at once, with key paths and
lines), the certificate, key and CA files with it, so a bad file stops the start or a
reload instead of failing handshakes later. `server_context` builds the SSL context the
listener serves. Where Python's ssl cannot do what the toolkit does, the file is refused
with the reason (`RequireAnyClientCert`), or `WebConfig.notes` says what differs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import ssl
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

import bcrypt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from exporter.config.problems import ProblemList, join
from exporter.config.values import describe
from exporter.config.yamlfile import (
    FileProblem,
    Positions,
    YamlProblem,
    load_yaml,
    one_line,
    read_text_file,
)


class ClientAuth(StrEnum):
    """`client_auth_type`: whether a client certificate is asked for, and verified."""

    NONE = "NoClientCert"
    #: The toolkit asks for a certificate but neither requires nor verifies it, so it admits
    #: every client; here none is asked for (Python's ssl verifies what it asks for).
    REQUEST = "RequestClientCert"
    VERIFY_IF_GIVEN = "VerifyClientCertIfGiven"
    REQUIRE_AND_VERIFY = "RequireAndVerifyClientCert"

    @property
    def verify_mode(self) -> ssl.VerifyMode:
        if self is ClientAuth.VERIFY_IF_GIVEN:
            return ssl.CERT_OPTIONAL
        if self is ClientAuth.REQUIRE_AND_VERIFY:
            return ssl.CERT_REQUIRED
        return ssl.CERT_NONE


#: Accepted by the toolkit, impossible with Python's ssl: a certificate required but not
#: verified (a verify callback would be needed).
UNVERIFIED_REQUIRED = ("RequireAnyClientCert", "RequireClientCert")

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
VERSION_NAMES = {version: name for name, version in TLS_VERSIONS.items()}

#: The TLS 1.2 suites Go's `tls.CipherSuites()` names (the toolkit takes no others), by
#: their OpenSSL names; the RSA key exchange ones are there for files written for older Go.
TLS12_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
#: TLS 1.3 suites: taken, and left as they are, as Go does (neither can choose them).
TLS13_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)

#: `curve_preferences` names and OpenSSL's.
CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}

#: The response headers the toolkit lets a file set, and the values it allows (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

#: A bcrypt hash as htpasswd (`$2y$`), Go (`$2a$`) and Python (`$2b$`) write them.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
#: Above this cost a check takes seconds, and every new login waits for it.
MAX_BCRYPT_COST = 14

_GO_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}

#: Says what is wrong with a PEM file's bytes, or None.
_Judge = Callable[[bytes], str | None]

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_TLS_STRINGS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file")
_TLS_KEYS = (
    *_TLS_STRINGS,
    "client_auth_type",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)


#: The most of a certificate, key or CA file read: CA bundles of whole systems take 200 KB.
MAX_PEM_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PemSource:
    """A certificate, key or CA bundle: a file (re-read when it changes) or inline PEM."""

    key: str
    path: str | None = None
    inline: str | None = None

    def read(self) -> bytes:
        """The PEM bytes; OSError when the file cannot be read or holds more than
        `MAX_PEM_BYTES` (a device such as /dev/zero would hold memory without end)."""
        if self.path is not None:
            with open(self.path, "rb") as handle:
                data = handle.read(MAX_PEM_BYTES + 1)
            if len(data) > MAX_PEM_BYTES:
                raise OSError(errno.EFBIG, "holds more than the 10 MiB a PEM file may have")
            return data
        return (self.inline or "").encode()


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """`tls_server_config`, its file paths made absolute (relative to the web config)."""

    cert: PemSource
    key: PemSource
    client_auth: ClientAuth = ClientAuth.NONE
    client_ca: PemSource | None = None
    #: None: not set; else a verified client certificate must carry one of these names.
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    #: Go names, as written (TLS 1.3 ones included).
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()

    def files(self) -> tuple[str, ...]:
        """The files a handshake depends on: re-read when they change."""
        sources = (self.cert, self.key, self.client_ca)
        return tuple(s.path for s in sources if s is not None and s.path is not None)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate_limit`: a token bucket of `burst` requests, one more every `interval` seconds."""

    interval: float
    burst: int


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What the web config file asks for; the default is plain HTTP, open to all."""

    source: str | None = None
    tls: TLSSettings | None = None
    #: (user name, bcrypt hash), both as bytes, as a request brings them.
    users: tuple[tuple[bytes, bytes], ...] = ()
    #: Checked instead when the user is unknown, at the users' cost, so an unknown user
    #: takes as long as a wrong password.
    unknown_user_hash: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: RateLimit | None = None
    http2: bool = True
    #: What is done differently from the toolkit, for the log.
    notes: tuple[str, ...] = ()

    def describe(self) -> dict[str, object]:
        """The settings that matter, as log fields (no secrets)."""
        fields: dict[str, object] = {"file": self.source, "tls": self.tls is not None}
        if self.tls is not None:
            fields["client_auth"] = self.tls.client_auth.value
            fields["min_version"] = VERSION_NAMES[self.tls.min_version]
        fields["basic_auth_users"] = len(self.users)
        if self.headers:
            fields["headers"] = ",".join(name for name, _ in self.headers)
        if self.rate_limit is not None:
            fields["rate_limit"] = f"{self.rate_limit.burst}/{self.rate_limit.interval:g}s"
        return fields


class WebConfigError(Exception):
    """The web config file is unusable; `problems` lists every reason, with its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        # one line each, whatever a key or file name holds: they go into logs and the
        # reload's HTTP answer
        self.problems: tuple[str, ...] = tuple(map(one_line, problems))
        super().__init__(source, self.problems)

    def __str__(self) -> str:
        return "\n".join(f"{one_line(self.source)}: {problem}" for problem in self.problems)


# --- Reading the file ----------------------------------------------------------------------


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and check the web config file at `path`; `WebConfigError` with every problem.
    Relative paths in it are relative to its directory, as the toolkit takes them."""
    source = os.fspath(path)
    try:
        text = read_text_file(source)  # bounded, as the config file
    except FileProblem as exc:
        raise WebConfigError(source, [str(exc)]) from None
    return parse_web_config(text, source, os.path.dirname(os.path.abspath(source)))


def parse_web_config(text: str, source: str, base_dir: str) -> WebConfig:
    """Check web config `text` (named `source` in messages) into a `WebConfig`."""
    try:
        data, positions = load_yaml(text)
    except YamlProblem as exc:
        raise WebConfigError(source, [str(exc)]) from None
    reader = _Reader(positions, base_dir)
    config = reader.document(data, source)
    if reader.problems:
        raise WebConfigError(source, reader.problems.messages())
    return config


class _Reader:
    """One walk over the document, collecting every problem."""

    def __init__(self, positions: Positions, base_dir: str) -> None:
        self.problems = ProblemList(positions)
        self.positions = positions
        self.base_dir = base_dir
        self.notes: list[str] = []
        #: id of each mapping read -> its key path, for keys given twice.
        self.paths: dict[int, str] = {}

    def document(self, data: object, source: str) -> WebConfig:
        top = self.mapping(data, "", _TOP_KEYS, whole_file=True)
        tls = self.tls(top.get("tls_server_config"))
        http = self.mapping(
            top.get("http_server_config"), "http_server_config", ("http2", "headers")
        )
        http2 = self.boolean(http, "http_server_config", "http2", default=True)
        headers = self.headers(http.get("headers"))
        users = self.users(top.get("basic_auth_users"))
        rate_limit = self.rate_limit(top.get("rate_limit"))
        for mapping, key, line in self.positions.duplicates:
            if id(mapping) in self.paths:
                self.problems.add(join(self.paths[id(mapping)], key), "is given twice", line)
        unknown = _unknown_user_hash(users) if users and not self.problems else b""
        return WebConfig(source, tls, users, unknown, headers, rate_limit, http2, tuple(self.notes))

    # --- shapes

    def mapping(
        self,
        value: object,
        path: str,
        keys: tuple[str, ...],
        *,
        whole_file: bool = False,
        unknown: str = "unknown key",
    ) -> dict[str, object]:
        """`value` as a mapping with only `keys`; {} when absent (null)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            where = "the file" if whole_file else path
            self.problems.add(
                "" if whole_file else path, f"{where} must be a mapping, got {describe(value)}"
            )
            return {}
        self.paths[id(value)] = path
        for key in value:
            if key not in keys:
                self.problems.add_at(value, path, key, f"{unknown} (known: {', '.join(keys)})")
        return value

    def string(self, mapping: dict[str, object], path: str, key: str) -> str | None:
        value = mapping.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.problem(mapping, path, key, f"must be a string, got {describe(value)}")
            return None
        return str(value)

    def boolean(self, mapping: dict[str, object], path: str, key: str, *, default: bool) -> bool:
        value = mapping.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(mapping, path, key, f"must be true or false, got {describe(value)}")
            return default
        return value

    def strings(self, mapping: dict[str, object], path: str, key: str) -> tuple[str, ...] | None:
        value = mapping.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(mapping, path, key, f"must be a list of strings, got {describe(value)}")
            return None
        return tuple(value)

    def problem(self, mapping: dict[str, object], path: str, key: str, message: str) -> None:
        self.problems.add_at(mapping, path, key, message)

    # --- tls_server_config

    def tls(self, value: object) -> TLSSettings | None:
        path = "tls_server_config"
        section = self.mapping(value, path, _TLS_KEYS)
        problems_before = len(self.problems)
        texts = {key: self.string(section, path, key) for key in _TLS_STRINGS}
        auth_name = self.string(section, path, "client_auth_type")
        if not any(texts.values()) and not auth_name:
            if section:  # as the toolkit: without a certificate, plain HTTP
                self.notes.append("tls_server_config names no certificate: plain HTTP is served")
            return None
        auth = self.client_auth(section, auth_name)
        cert = self.pem(section, texts, "cert", "cert_file", _certificate_problem)
        key = self.pem(section, texts, "key", "key_file", _key_problem)
        client_ca = self.pem(section, texts, "client_ca", "client_ca_file", _certificate_problem)
        if client_ca is not None and auth is ClientAuth.NONE:
            message = "is set, but client_auth_type is NoClientCert: set RequireAndVerifyClientCert"
            self.problem(section, path, client_ca.key, message)
        if client_ca is None and auth.verify_mode != ssl.CERT_NONE:
            self.notes.append(
                "client certificates are verified against the system's trust store"
                " (no client_ca_file), as the toolkit does"
            )
        sans = self.allowed_sans(section, auth)
        low = self.version(section, "min_version", ssl.TLSVersion.TLSv1_2)
        high = self.version(section, "max_version", ssl.TLSVersion.TLSv1_3)
        if low > high:
            message = f"{VERSION_NAMES[low]} is above max_version {VERSION_NAMES[high]}"
            self.problem(section, path, "min_version", message)
        suites = self.cipher_suites(section)
        curves = self.curves(section)
        prefer = self.boolean(section, path, "prefer_server_cipher_suites", default=True)
        if cert is None or key is None:
            return None
        tls = TLSSettings(cert, key, auth, client_ca, sans, low, high, suites, prefer, curves)
        if len(self.problems) == problems_before:
            self.check_context(section, tls)
        return tls

    def pem(
        self,
        section: dict[str, object],
        texts: dict[str, str | None],
        inline: str,
        file_key: str,
        judge: _Judge,
    ) -> PemSource | None:
        """The PEM source of `inline` or `file_key` (one of the two), checked with `judge`."""
        path = "tls_server_config"
        source = None
        if texts[inline] and texts[file_key]:
            self.problem(section, path, inline, f"set {inline} or {file_key}, not both")
        elif texts[file_key]:
            name = os.path.join(self.base_dir, os.path.expanduser(texts[file_key] or ""))
            source = PemSource(file_key, path=name)
        elif texts[inline]:
            source = PemSource(inline, inline=texts[inline])
        elif inline != "client_ca":
            self.problems.add(path, f"missing one of {inline} or {file_key}")
        if source is not None and not self.pem_problem(section, source, judge):
            return None
        return source

    def client_auth(self, section: dict[str, object], name: str | None) -> ClientAuth:
        """The type named; a problem for one Python's ssl cannot do, or none at all."""
        path = "tls_server_config"
        if name is None:
            return ClientAuth.NONE
        if name in UNVERIFIED_REQUIRED:
            message = (
                f"{name} cannot be honoured: Python's ssl verifies every client certificate"
                " it requires; use RequireAndVerifyClientCert with client_ca_file"
            )
            self.problem(section, path, "client_auth_type", message)
            return ClientAuth.REQUIRE_AND_VERIFY
        try:
            auth = ClientAuth(name)
        except ValueError:
            known = ", ".join([*(a.value for a in ClientAuth), *UNVERIFIED_REQUIRED[:1]])
            self.problem(section, path, "client_auth_type", f"{name!r} is not one of {known}")
            return ClientAuth.REQUIRE_AND_VERIFY  # what the rest is checked against
        if auth is ClientAuth.REQUEST:
            self.notes.append(
                "client_auth_type RequestClientCert: no client certificate is asked for;"
                " the toolkit would ask but admit every client all the same"
            )
        return auth

    def allowed_sans(self, section: dict[str, object], auth: ClientAuth) -> tuple[str, ...] | None:
        path = "tls_server_config"
        sans = self.strings(section, path, "client_allowed_sans")
        if sans is None:
            return None
        if not sans:
            message = "lists no name: no client could connect (leave it out to allow any)"
            self.problem(section, path, "client_allowed_sans", message)
        elif auth.verify_mode == ssl.CERT_NONE:
            message = (
                "needs client_auth_type RequireAndVerifyClientCert (or VerifyClientCertIfGiven):"
                " only a verified client certificate has names to match"
            )
            self.problem(section, path, "client_allowed_sans", message)
        return sans

    def version(
        self, section: dict[str, object], key: str, default: ssl.TLSVersion
    ) -> ssl.TLSVersion:
        name = self.string(section, "tls_server_config", key)
        if name is None:
            return default
        if name not in TLS_VERSIONS:
            message = f"{name!r} is not one of {', '.join(TLS_VERSIONS)}"
            self.problem(section, "tls_server_config", key, message)
            return default
        return TLS_VERSIONS[name]

    def cipher_suites(self, section: dict[str, object]) -> tuple[str, ...]:
        path = "tls_server_config"
        suites = self.strings(section, path, "cipher_suites") or ()
        unknown = [s for s in suites if s not in TLS12_SUITES and s not in TLS13_SUITES]
        for name in unknown:
            self.problems.add_at(
                section["cipher_suites"],
                join(path, "cipher_suites"),
                suites.index(name),
                f"unknown cipher suite {name!r}",
            )
        if suites and not unknown and not any(s in TLS12_SUITES for s in suites):
            message = "names only TLS 1.3 suites, which cannot be chosen: name TLS 1.2 ones"
            self.problem(section, path, "cipher_suites", message)
        return suites

    def curves(self, section: dict[str, object]) -> tuple[str, ...]:
        path = "tls_server_config"
        curves = self.strings(section, path, "curve_preferences") or ()
        for index, name in enumerate(curves):
            if name not in CURVES:
                self.problems.add_at(
                    section["curve_preferences"],
                    join(path, "curve_preferences"),
                    index,
                    f"unknown curve {name!r} (known: {', '.join(CURVES)})",
                )
        if len(set(curves)) > 1:
            self.notes.append(
                "curve_preferences: Python's ssl sets one curve only, so with several listed"
                " OpenSSL's default groups are offered (X25519, P-256, X448, P-521, P-384)"
            )
        return curves

    def check_context(self, section: dict[str, object], tls: TLSSettings) -> None:
        """Whether this OpenSSL has the suites asked for, and the key is the certificate's."""
        path = "tls_server_config"
        try:
            apply_handshake_settings(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), tls)
        except ssl.SSLError:
            message = "none of these suites is available in this OpenSSL"
            self.problem(section, path, "cipher_suites", message)
            return
        try:
            server_context(tls)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                message = f"is not the private key of the certificate in {tls.cert.key}"
            else:
                message = f"the certificate and key cannot be used: {exc}"
            self.problem(section, path, tls.key.key, message)
        except OSError as exc:  # a file that changed since it was read
            self.problem(section, path, tls.cert.key, f"cannot be loaded: {_os_problem(exc)}")

    def pem_problem(self, section: dict[str, object], source: PemSource, judge: _Judge) -> bool:
        """Whether `source` can be read and `judge` finds nothing wrong; else a problem."""
        try:
            problem = judge(source.read())
        except OSError as exc:
            problem = _os_problem(exc)
        except ValueError as exc:  # a NUL byte in the path; a lone surrogate in inline PEM
            problem = f"cannot be read: {exc}"
        if problem is not None:
            message = f"{source.path}: {problem}" if source.path else problem
            self.problem(section, "tls_server_config", source.key, message)
        return problem is None

    # --- http_server_config.headers, basic_auth_users, rate_limit

    def headers(self, value: object) -> tuple[tuple[str, str], ...]:
        path = "http_server_config.headers"
        section = self.mapping(value, path, tuple(HEADERS), unknown="cannot be set")
        found = []
        for name, allowed in HEADERS.items():
            text = self.string(section, path, name)
            if allowed is not None and name in section and text not in allowed:
                self.problem(
                    section,
                    path,
                    name,
                    f"must be one of {', '.join(allowed)}, got {describe(section.get(name))}",
                )
                continue
            if text is not None and any(ch != "\t" and (ch < " " or ch == "\x7f") for ch in text):
                # aiohttp drops every response whose header holds one: no endpoint would answer
                self.problem(section, path, name, "must be one line, without control characters")
            elif text is not None:
                found.append((name, text))
        return tuple(found)

    def users(self, value: object) -> tuple[tuple[bytes, bytes], ...]:
        path = "basic_auth_users"
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.problems.add(
                path, f"must be a mapping of user names to bcrypt hashes, got {describe(value)}"
            )
            return ()
        self.paths[id(value)] = path
        users = []
        for name, hashed in value.items():
            problem = _user_problem(name, hashed)
            if problem is not None:
                self.problems.add_at(value, path, name, problem)
            else:
                users.append((str(name).encode(), str(hashed).encode()))
        return tuple(users)

    def rate_limit(self, value: object) -> RateLimit | None:
        path = "rate_limit"
        section = self.mapping(value, path, ("interval", "burst"))
        interval = _go_duration(section.get("interval", 0))
        if interval is None:
            self.problem(
                section,
                path,
                "interval",
                f"must be a duration such as 1s or 100ms, got {describe(section.get('interval'))}",
            )
            return None
        burst = section.get("burst", 0)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            self.problem(section, path, "burst", f"must be a whole number, got {describe(burst)}")
            return None
        if interval == 0:
            return None  # as the toolkit: an interval of 0 turns the limit off
        if burst == 0:
            self.problem(
                section, path, "burst", "must be at least 1: with 0 every request would be refused"
            )
            return None
        return RateLimit(interval, burst)


def _os_problem(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot be read: {exc.strerror or exc}"


def _certificate_problem(data: bytes) -> str | None:
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        return "holds no PEM certificate"
    return None


def _key_problem(data: bytes) -> str | None:
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:
        return "the private key is encrypted: the toolkit's format takes unencrypted keys"
    except (ValueError, UnsupportedAlgorithm):
        return "holds no PEM private key"
    return None


def _user_problem(name: object, hashed: object) -> str | None:
    if isinstance(name, bool) or not isinstance(name, str | int):
        return f"the user name must be a string, got {describe(name)}"
    if ":" in str(name):
        return "a user name cannot contain ':' (basic auth splits there)"
    if any("\ud800" <= char <= "\udfff" for char in str(name)):  # a YAML escape, no text
        return "the user name is not text (a lone surrogate)"
    if not isinstance(hashed, str):
        return "must be a bcrypt hash, written as a string"
    match = BCRYPT_HASH.fullmatch(hashed)
    if match is None:
        return (
            "must be a bcrypt hash ($2y$10$ and 53 more characters), not the password:"
            " make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'"
        )
    cost = int(match.group(1))
    if not 4 <= cost <= MAX_BCRYPT_COST:
        return (
            f"bcrypt cost {cost} is outside 4 to {MAX_BCRYPT_COST}: above that every new login"
            " takes seconds; make the hash with cost 10 to 12"
        )
    return None


def _go_duration(value: object) -> float | None:
    """Seconds in a Go duration (`1s`, `1m30s`, `100ms`; a bare integer is nanoseconds, as
    YAML gives it to Go), or None if it is none or negative."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value / 1e9 if value >= 0 else None
    if not isinstance(value, str):
        return None
    if value == "0":
        return 0.0
    if _GO_DURATION.fullmatch(value) is None:
        return None
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", value)
    return sum(float(number) * _GO_UNITS[unit] for number, unit in parts)


def _unknown_user_hash(users: tuple[tuple[bytes, bytes], ...]) -> bytes:
    """A hash of a random password at the cost most users have."""
    costs = [int(hashed[4:6]) for _, hashed in users]
    cost = max(set(costs), key=costs.count)
    return bcrypt.hashpw(os.urandom(18), bcrypt.gensalt(rounds=cost))


def restart_problems(old: WebConfig, new: WebConfig) -> list[str]:
    """What a reload cannot change while the listener runs: the problems, if any."""
    problems = []
    if (old.tls is None) != (new.tls is None):
        state = "on" if new.tls is not None else "off"
        problems.append(f"tls_server_config: turning TLS {state} takes a restart")
    elif old.tls and new.tls and old.tls.curve_preferences != new.tls.curve_preferences:
        problems.append("tls_server_config.curve_preferences: a change takes a restart")
    return problems


# --- SSL contexts ----------------------------------------------------------------------------


def server_context(tls: TLSSettings) -> ssl.SSLContext:
    """The SSL context `tls` asks for, its files read now; `ssl.SSLError` or `OSError` when
    they cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    apply_handshake_settings(context, tls)
    if len(set(tls.curve_preferences)) == 1:
        context.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    with _pem_path(tls.cert) as cert, _pem_path(tls.key) as key:
        context.load_cert_chain(cert, key)
    if tls.client_auth.verify_mode != ssl.CERT_NONE:
        if tls.client_ca is None:
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        elif tls.client_ca.path is not None:
            context.load_verify_locations(cafile=tls.client_ca.path)
        else:
            context.load_verify_locations(cadata=tls.client_ca.inline)
    return context


def apply_handshake_settings(context: ssl.SSLContext, tls: TLSSettings) -> None:
    """The settings a connection takes from its context when it is accepted: versions,
    cipher suites and their order, and whether a client certificate is asked for."""
    with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated, and asked for
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = tls.min_version
        context.maximum_version = tls.max_version
    ciphers = cipher_string(tls)
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.verify_mode = tls.client_auth.verify_mode


def cipher_string(tls: TLSSettings) -> str | None:
    """OpenSSL's cipher list for the TLS 1.2 suites named (TLS 1.3's are not chosen, as in
    Go); below TLS 1.2, security level 0, without which OpenSSL refuses TLS 1.0 and 1.1."""
    names = [TLS12_SUITES[name] for name in tls.cipher_suites if name in TLS12_SUITES]
    legacy = tls.min_version < ssl.TLSVersion.TLSv1_2
    if not names and not legacy:
        return None  # Python's defaults
    return (":".join(names) or "DEFAULT") + (":@SECLEVEL=0" if legacy else "")


@contextlib.contextmanager
def _pem_path(source: PemSource) -> Iterator[str]:
    """A path ssl can load `source` from: its file, or inline PEM in an anonymous memory
    file (a temporary file where there is none), so a key never lands on a disk."""
    if source.path is not None:
        yield source.path
        return
    data = source.read()
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("web-config-pem", os.MFD_CLOEXEC)
        try:
            with os.fdopen(os.dup(fd), "wb") as file:
                file.write(data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(suffix=".pem") as file:  # pragma: no cover
        file.write(data)
        file.flush()
        yield file.name
