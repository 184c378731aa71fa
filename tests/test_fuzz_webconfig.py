"""The web config file, anything at all: documents built from its keys with values that are
right, wrong, hostile (NUL bytes, lone surrogates, huge numbers, files that are no files)
or anything YAML can hold. Only WebConfigError may come out, each problem one line; what is
accepted can be served (its headers are ones a response can carry)."""

from __future__ import annotations

import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.webconfig import HEADERS, TLS12_SUITES, WebConfig, WebConfigError, parse_web_config
from tests.support.mutate import apply_edits, edits
from tests.support.webconfig import WebCerts, bcrypt_hash

QUICK = 5.0


@cache
def _certs() -> WebCerts:
    return WebCerts.make(Path(tempfile.mkdtemp(prefix="smtp-tls-fuzz-web-")))


@cache
def _hash() -> str:
    return bcrypt_hash("secret")


def webconfig_or_error(text: str) -> WebConfig | WebConfigError:
    """What `text` gives; only WebConfigError may escape, quickly, one line a problem."""
    started = time.monotonic()
    try:
        result: WebConfig | WebConfigError = parse_web_config(
            text, "web.yml", str(_certs().directory)
        )
    except WebConfigError as error:
        result = error
    assert time.monotonic() - started < QUICK
    if isinstance(result, WebConfigError):
        assert result.problems
        for problem in result.problems:
            assert problem
            assert problem.splitlines() == [problem], problem
            assert problem.encode("utf-8")  # it goes into the reload's HTTP answer
    else:
        for _, value in result.headers:
            # aiohttp drops the connection of every response carrying a control character
            assert all(ch == "\t" or " " <= ch != "\x7f" for ch in value), repr(value)
    return result


hostile_text = st.sampled_from(
    ["a\x00b", "\ud800", "~nobody/x", "/dev/null", "/", "", " ", "é", "\t", "a\x01b", "\x7f"]
)
files = st.sampled_from(
    ["server.crt", "server.key", "client-ca.pem", "client.pem", "missing.pem", ".", "/dev/zero"]
)
scalars = (
    hostile_text
    | files
    | st.sampled_from([True, 0, -1, 10**30, 1.5, None, "1s", "100ms", "-1s", "1h1m", "0"])
    | st.text(max_size=8)
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def inline_pem(draw: st.DrawFn) -> str:
    """A PEM block from the test files, maybe changed, maybe with hostile text around it."""
    name = draw(st.sampled_from(["server.crt", "server.key", "client-ca.pem"]))
    text = (_certs().directory / name).read_text()
    if draw(st.booleans()):
        text = apply_edits(text.encode(), draw(st.lists(edits, max_size=3))).decode(
            "utf-8", "replace"
        )
    return draw(hostile_text) + text if draw(st.booleans()) else text


tls_values: dict[str, st.SearchStrategy[Any]] = {
    "cert_file": files | scalars,
    "key_file": files | scalars,
    "client_ca_file": files | scalars,
    "cert": inline_pem() | scalars,
    "key": inline_pem() | scalars,
    "client_ca": inline_pem() | scalars,
    "client_auth_type": st.sampled_from(
        ["NoClientCert", "RequestClientCert", "RequireAndVerifyClientCert", "RequireAnyClientCert"]
    )
    | scalars,
    "client_allowed_sans": st.lists(st.sampled_from(["scraper.test", "\ud800"]), max_size=2)
    | scalars,
    "min_version": st.sampled_from(["TLS10", "TLS12", "TLS13"]) | scalars,
    "max_version": st.sampled_from(["TLS12", "TLS13"]) | scalars,
    "cipher_suites": st.lists(
        st.sampled_from([*list(TLS12_SUITES)[:3], "TLS_AES_128_GCM_SHA256", "x"]), max_size=3
    )
    | scalars,
    "prefer_server_cipher_suites": st.booleans() | scalars,
    "curve_preferences": st.lists(st.sampled_from(["X25519", "CurveP256", "P-1"]), max_size=2)
    | scalars,
}
documents = st.fixed_dictionaries(
    {},
    optional={
        "tls_server_config": st.fixed_dictionaries({}, optional=tls_values) | anything,
        "http_server_config": st.fixed_dictionaries(
            {},
            optional={
                "http2": st.booleans() | scalars,
                "headers": st.dictionaries(
                    st.sampled_from([*HEADERS, "Server"]),
                    st.sampled_from(["nosniff", "deny"]) | scalars,
                    max_size=3,
                )
                | anything,
            },
        )
        | anything,
        "basic_auth_users": st.dictionaries(
            st.sampled_from(["alice", "bob:x", "\ud800", "é"]) | st.text(max_size=4),
            st.just("HASH") | scalars,
            max_size=2,
        )
        | anything,
        "rate_limit": st.fixed_dictionaries(
            {}, optional={"interval": scalars, "burst": st.integers(-2, 30) | scalars}
        )
        | anything,
    },
)


def _dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, allow_unicode=False).replace("HASH", _hash())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_web_config_gives_settings_or_problems(document: dict[str, Any]) -> None:
    webconfig_or_error(_dump(document))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edits, min_size=1, max_size=5))
def test_a_good_web_config_with_random_edits_gives_settings_or_problems(
    changes: list[tuple[str, int, int, bytes]],
) -> None:
    good = _dump(
        {
            "tls_server_config": _certs().tls_config(client_auth_type="NoClientCert"),
            "http_server_config": {"headers": {"X-Frame-Options": "deny"}},
            "basic_auth_users": {"alice": "HASH"},
            "rate_limit": {"interval": "1s", "burst": 5},
        }
    )
    assert isinstance(webconfig_or_error(good), WebConfig)
    webconfig_or_error(apply_edits(good.encode(), changes).decode("utf-8", "replace"))
