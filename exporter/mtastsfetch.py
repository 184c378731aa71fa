"""Fetching a domain's MTA-STS policy the way RFC 8461 3.3 tells senders to.

`https://mta-sts.<domain>/.well-known/mta-sts.txt`, with a certificate valid for that name
under the trust store in use (WebPKI), answered 200 with `text/plain`; redirects are not
followed and at most 64 KiB is read. Each way it can fail is named as TLS reports name it:
`sts-webpki-invalid` (the certificate), `sts-policy-fetch-error` (no answer, not 200),
`sts-policy-invalid` (the answer is no valid policy).
"""

from __future__ import annotations

import functools
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from exporter.mtasts import MAX_POLICY_BYTES, Policy, PolicyInvalid, Result, parse_policy

#: The path every policy lives at.
WELL_KNOWN: Final = "/.well-known/mta-sts.txt"
DEFAULT_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class PolicyFetch:
    """What fetching the policy gave: the result, the policy when valid, and why not."""

    result: Result
    policy: Policy | None = None
    detail: str = ""


class _Addresses(AbstractResolver):
    """The policy host's addresses as already looked up (through the configured DNS), so
    the connection goes where the checks looked, with no look-up of its own."""

    def __init__(self, addresses: tuple[str, ...]) -> None:
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        found = []
        for address in self._addresses:
            kind = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family in (socket.AF_UNSPEC, kind):
                found.append(
                    ResolveResult(
                        hostname=host,
                        host=address,
                        port=port,
                        family=kind,
                        proto=0,
                        flags=socket.AI_NUMERICHOST,
                    )
                )
        return found

    async def close(self) -> None:
        return None


@functools.lru_cache(maxsize=16)
def _context(ca_file: str | None) -> ssl.SSLContext:
    """WebPKI as senders do it: the trust store in use, the name checked."""
    return ssl.create_default_context(cafile=ca_file)


def policy_url(domain: str, port: int = 443) -> str:
    host = f"mta-sts.{domain}"
    return f"https://{host}{WELL_KNOWN}" if port == 443 else f"https://{host}:{port}{WELL_KNOWN}"


async def fetch_policy(
    domain: str,
    addresses: tuple[str, ...] = (),
    *,
    ca_file: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    port: int = 443,
) -> PolicyFetch:
    """The policy of `domain`, or why senders could not use it. `addresses`: where
    `mta-sts.<domain>` is (empty: the system resolver finds it)."""
    resolver: Any = _Addresses(addresses) if addresses else None
    connector = aiohttp.TCPConnector(ssl=_context(ca_file), resolver=resolver, force_close=True)
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as session:
            return await _get(session, policy_url(domain, port))
    except aiohttp.ClientConnectorCertificateError as exc:
        return PolicyFetch(Result.WEBPKI_INVALID, detail=_cert_problem(exc))
    except aiohttp.ClientSSLError as exc:
        return PolicyFetch(Result.WEBPKI_INVALID, detail=f"TLS: {_words(exc)}")
    except TimeoutError:  # before OSError, whose kind it is
        return PolicyFetch(Result.FETCH_ERROR, detail=f"no answer within {timeout:g}s")
    except (aiohttp.ClientError, OSError) as exc:
        return PolicyFetch(Result.FETCH_ERROR, detail=_words(exc))


async def _get(session: aiohttp.ClientSession, url: str) -> PolicyFetch:
    headers = {"Accept": "text/plain"}
    async with session.get(url, allow_redirects=False, headers=headers) as response:
        if 300 <= response.status < 400:
            where = response.headers.get("Location", "")[:200]
            return PolicyFetch(
                Result.FETCH_ERROR,
                detail=f"HTTP {response.status} to {where!r}: redirects are not followed",
            )
        if response.status != 200:
            return PolicyFetch(Result.FETCH_ERROR, detail=f"HTTP {response.status}")
        if response.content_type != "text/plain":
            kind = response.content_type[:80]
            return PolicyFetch(Result.INVALID, detail=f"Content-Type {kind}, not text/plain")
        body = await _bounded(response)
    if body is None:
        return PolicyFetch(Result.INVALID, detail=f"larger than {MAX_POLICY_BYTES // 1024} KiB")
    try:
        return PolicyFetch(Result.VALID, parse_policy(body))
    except PolicyInvalid as exc:
        return PolicyFetch(Result.INVALID, detail=str(exc))


async def _bounded(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None past the size limit (read no further than one byte beyond)."""
    body = bytearray()
    while len(body) <= MAX_POLICY_BYTES:
        chunk = await response.content.read(MAX_POLICY_BYTES + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    return None


def _cert_problem(exc: aiohttp.ClientConnectorCertificateError) -> str:
    error = exc.certificate_error
    reason = getattr(error, "verify_message", None) or getattr(error, "reason", None)
    return f"certificate: {reason or _words(error)}"


def _words(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
