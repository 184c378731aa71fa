"""Fetching MTA-STS policies from real HTTPS servers on loopback, every way it can fail."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from exporter.mtasts import Mode, Result
from exporter.mtastsfetch import PolicyFetch, fetch_policy

DOMAIN = "partner.test"
POLICY = b"version: STSv1\nmode: enforce\nmx: mail.partner.test\nmax_age: 86400\n"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


@asynccontextmanager
async def https_server(authority: trustme.CA, handler: Handler, name: str) -> AsyncIterator[int]:
    """An HTTPS server on 127.0.0.1 whose certificate, from `authority`, names `name`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(context)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port
    finally:
        await runner.cleanup()


def serve(
    body: bytes, status: int = 200, content_type: str = "text/plain", **headers: str
) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.path == "/.well-known/mta-sts.txt"
        assert request.host.startswith(f"mta-sts.{DOMAIN}")
        return web.Response(body=body, status=status, content_type=content_type, headers=headers)

    return handler


def fetch(ca: tuple[trustme.CA, Path], handler: Handler, name: str = f"mta-sts.{DOMAIN}",
          other_ca: bool = False) -> PolicyFetch:  # fmt: skip
    authority, ca_file = ca

    async def run() -> PolicyFetch:
        issuer = trustme.CA() if other_ca else authority
        async with https_server(issuer, handler, name) as port:
            return await fetch_policy(DOMAIN, ("127.0.0.1",), ca_file=str(ca_file), port=port,
                                      timeout=3)  # fmt: skip

    return asyncio.run(run())


def test_a_good_policy(ca: tuple[trustme.CA, Path]) -> None:
    found = fetch(ca, serve(POLICY, content_type="text/plain", charset="utf-8"))
    assert found.result is Result.VALID, found.detail
    assert found.policy is not None
    assert found.policy.mode is Mode.ENFORCE
    assert found.policy.covers("mail.partner.test")


@pytest.mark.parametrize(
    ("handler", "result", "detail"),
    [
        (serve(b"not found", status=404), Result.FETCH_ERROR, "HTTP 404"),
        (serve(b"", status=301, Location="https://elsewhere.test/p"), Result.FETCH_ERROR,
         "redirects are not followed"),
        (serve(POLICY, content_type="text/html"), Result.INVALID, "Content-Type text/html"),
        (serve(POLICY + b"x: y\n" * 20000), Result.INVALID, "larger than 64 KiB"),
        (serve(POLICY.replace(b"enforce", b"strict")), Result.INVALID, "mode must be"),
    ],
    ids=["404", "redirect", "content-type", "too-large", "invalid"],
)  # fmt: skip
def test_what_senders_would_report(
    ca: tuple[trustme.CA, Path], handler: Handler, result: Result, detail: str
) -> None:
    found = fetch(ca, handler)
    assert found.result is result
    assert detail in found.detail
    assert found.policy is None


def test_a_certificate_senders_would_refuse(ca: tuple[trustme.CA, Path]) -> None:
    wrong_name = fetch(ca, serve(POLICY), name="www.partner.test")
    assert wrong_name.result is Result.WEBPKI_INVALID
    assert "certificate" in wrong_name.detail
    other_ca = fetch(ca, serve(POLICY), other_ca=True)
    assert other_ca.result is Result.WEBPKI_INVALID


def test_no_server_and_a_silent_one(ca: tuple[trustme.CA, Path]) -> None:
    _, ca_file = ca
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = asyncio.run(
        fetch_policy(DOMAIN, ("127.0.0.1",), ca_file=str(ca_file), port=port, timeout=3)
    )
    assert refused.result is Result.FETCH_ERROR
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        stalled = asyncio.run(
            fetch_policy(DOMAIN, ("127.0.0.1",), ca_file=str(ca_file), port=port, timeout=1)
        )
    assert stalled.result is Result.FETCH_ERROR
    assert "no answer within 1s" in stalled.detail
