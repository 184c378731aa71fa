"""The web config on every request, in process: basic auth (bcrypt in its own thread, the
same cost for a wrong password, an unknown user and a right one, successes cached), the
rate limit, the response headers, and reloads that keep the running web config when the
new one is bad."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from exporter import webguard
from exporter.webconfig import RateLimit, WebConfig, load_web_config, parse_web_config
from exporter.webguard import BasicAuth, TokenBucket, WebGuard, basic_credentials, find_hash
from tests.support.webconfig import basic_header, bcrypt_hash, write_web_config

ALICE = ("alice", "wonderland")


def users_config(tmp_path: Path, **users: str) -> WebConfig:
    """A web config of these users (name -> password), read from a file."""
    hashes = {name: bcrypt_hash(password) for name, password in users.items()}
    return load_web_config(write_web_config(tmp_path / "web.yml", {"basic_auth_users": hashes}))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic_header("alice", "pw"), (b"alice", b"pw")),
        (basic_header("alice", "p:w"), (b"alice", b"p:w")),  # split at the first colon
        (basic_header("", ""), (b"", b"")),
        ("basic " + base64.b64encode(b"a:b").decode(), (b"a", b"b")),
        ("Basic " + base64.b64encode(b"no colon").decode(), None),
        ("Basic !!!", None),
        ("Basic ünï", None),
        ("Bearer abc", None),
        ("", None),
    ],
)
def test_basic_credentials(header: str, expected: tuple[bytes, bytes] | None) -> None:
    assert basic_credentials(header) == expected


def test_find_hash_looks_at_every_user() -> None:
    users = ((b"alice", b"h1"), (b"bob", b"h2"))
    assert find_hash(users, b"bob") == b"h2"
    assert find_hash(users, b"carol") is None
    assert find_hash(users, b"alic") is None


class CountingChecks:
    """Stands in for the bcrypt check: records each (password, hash) and its thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[bytes, bytes, str]] = []
        real = webguard._bcrypt_matches

        def check(password: bytes, hashed: bytes) -> bool:
            self.calls.append((password, hashed, threading.current_thread().name))
            return real(password, hashed)

        monkeypatch.setattr(webguard, "_bcrypt_matches", check)


async def test_every_answer_costs_one_bcrypt_check_of_the_same_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = users_config(tmp_path, alice="wonderland")
    checks = CountingChecks(monkeypatch)
    auth = BasicAuth()
    try:
        assert not await auth.check(config, basic_header("alice", "wrong"))
        assert not await auth.check(config, basic_header("mallory", "wonderland"))
        assert await auth.check(config, basic_header(*ALICE))
    finally:
        auth.executor.shutdown()
    assert len(checks.calls) == 3
    alice_hash = config.users[0][1]
    assert [hashed for _, hashed, _ in checks.calls] == [
        alice_hash,
        config.unknown_user_hash,  # an unknown user: the dummy hash, at alice's cost
        alice_hash,
    ]
    assert config.unknown_user_hash[4:7] == alice_hash[4:7] == b"04$"
    # Never on the event loop's thread.
    assert {thread for _, _, thread in checks.calls} == {"bcrypt_0"}


async def test_a_success_is_cached_a_failure_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = users_config(tmp_path, alice="wonderland")
    checks = CountingChecks(monkeypatch)
    auth = BasicAuth()
    try:
        for _ in range(3):
            assert await auth.check(config, basic_header(*ALICE))
            assert not await auth.check(config, basic_header("alice", "wrong"))
        assert len(checks.calls) == 1 + 3  # the right password once, every wrong one
        # A new hash for alice (a reload) is a new cache key: checked again.
        changed = users_config(tmp_path, alice="wonderland")
        assert await auth.check(changed, basic_header(*ALICE))
        assert len(checks.calls) == 5
        # A user taken out of the file is refused, cached or not.
        assert not await auth.check(users_config(tmp_path, bob="x"), basic_header(*ALICE))
    finally:
        auth.executor.shutdown()


async def test_a_slow_check_does_not_hold_up_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = users_config(tmp_path, alice="wonderland")

    def slow(_password: bytes, _hashed: bytes) -> bool:
        time.sleep(0.5)
        return False

    monkeypatch.setattr(webguard, "_bcrypt_matches", slow)
    auth = BasicAuth()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        assert not await auth.check(config, basic_header("alice", "x"))
    finally:
        ticker.cancel()
        auth.executor.shutdown()
    assert ticks >= 20  # the loop ran on while the check took its half second


def test_token_bucket() -> None:
    now = [100.0]
    bucket = TokenBucket(RateLimit(interval=1.0, burst=2), clock=lambda: now[0])
    assert [bucket.allow() for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert not bucket.allow()
    now[0] += 0.5
    assert bucket.allow()
    now[0] += 60
    assert [bucket.allow() for _ in range(3)] == [True, True, False]  # never more than burst


async def page(_: web.Request) -> web.Response:
    return web.Response(text="page\n", headers={"Content-Security-Policy": "default-src 'none'"})


async def plain(_: web.Request) -> web.Response:
    return web.Response(text="plain\n")


Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[tuple[Client, WebGuard]]:
    text = f"""\
basic_auth_users:
  alice: {bcrypt_hash(ALICE[1])}
http_server_config:
  headers:
    Content-Security-Policy: "default-src 'self'"
    X-Frame-Options: deny
rate_limit:
  interval: 1m
  burst: 4
"""
    path = tmp_path / "web.yml"
    path.write_text(text)
    guard = WebGuard(load_web_config(path))
    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get("/plain", plain)
    guard.attach(app)
    async with TestClient(TestServer(app)) as client:
        yield client, guard


async def test_requests_pass_the_guard(
    guarded: tuple[Client, WebGuard],
) -> None:
    client, _ = guarded
    answer = await client.get("/plain")
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == "Basic"
    assert answer.headers["X-Frame-Options"] == "deny"  # on a refusal too
    answer = await client.get("/plain", headers={"Authorization": basic_header(*ALICE)})
    assert answer.status == 200
    assert answer.headers["Content-Security-Policy"] == "default-src 'self'"
    # A handler's own header stays, as in the toolkit (where the file's are set first).
    answer = await client.get("/page", headers={"Authorization": basic_header(*ALICE)})
    assert answer.headers["Content-Security-Policy"] == "default-src 'none'"
    assert answer.headers["X-Frame-Options"] == "deny"
    answer = await client.get("/nowhere", headers={"Authorization": basic_header(*ALICE)})
    assert answer.status == 404
    # Four requests a minute: the fifth is refused, before anything else is looked at.
    answer = await client.get("/plain")
    assert answer.status == 429


async def test_a_bad_reload_keeps_the_running_web_config(
    guarded: tuple[Client, WebGuard], tmp_path: Path
) -> None:
    client, guard = guarded
    before = guard.config
    (tmp_path / "web.yml").write_text("basic_auth_users: {alice: wonderland}\n")
    problems = await guard.reload()
    assert problems is not None
    assert "basic_auth_users.alice: must be a bcrypt hash" in problems
    assert guard.config is before
    answer = await client.get("/plain", headers={"Authorization": basic_header(*ALICE)})
    assert answer.status == 200
    # A good one is taken by the next request.
    (tmp_path / "web.yml").write_text(f"basic_auth_users: {{bob: '{bcrypt_hash('b')}'}}\n")
    assert await guard.reload() is None
    answer = await client.get("/plain", headers={"Authorization": basic_header(*ALICE)})
    assert answer.status == 401
    answer = await client.get("/plain", headers={"Authorization": basic_header("bob", "b")})
    assert answer.status == 200


def test_no_web_config_guards_nothing() -> None:
    guard = WebGuard(parse_web_config("", "web.yml", "."))
    assert guard.ssl_context is None
    assert guard.tls is None
