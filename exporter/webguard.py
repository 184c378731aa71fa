"""The web config applied to every request, as the toolkit applies it: the rate limit, the
client certificate's names, basic auth and the response headers. Every path is covered,
the health endpoints too (the toolkit guards its whole handler), so a probe of /-/healthy
brings the credentials.

A bcrypt check takes tens of milliseconds: it runs in a thread of its own, one at a time
(as the toolkit's mutex has it), so it never holds up the event loop or a scrape, and a
success is kept (keyed by a keyed hash of user, password and hash, never the password) so
Prometheus, sending the same credentials every scrape, pays for it once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import bcrypt
from aiohttp import web

from exporter.webconfig import (
    RateLimit,
    WebConfig,
    WebConfigError,
    load_web_config,
    restart_problems,
)
from exporter.webtls import LiveTLS, client_allowed, client_names

log = logging.getLogger("exporter")

#: Successful checks kept, as many as the toolkit keeps.
AUTH_CACHE_SIZE = 100

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def basic_credentials(header: str) -> tuple[bytes, bytes] | None:
    """User and password of an `Authorization: Basic ...` header, None for anything else."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


def find_hash(users: tuple[tuple[bytes, bytes], ...], name: bytes) -> bytes | None:
    """The hash of user `name`, None if unknown; every name is compared, in constant time,
    so how long this takes says nothing about which users exist."""
    found = None
    for user, hashed in users:
        if hmac.compare_digest(user, name):
            found = hashed
    return found


def _bcrypt_matches(password: bytes, hashed: bytes) -> bool:
    # bcrypt reads 72 bytes at most, as Go's does; Python's refuses longer ones instead.
    return bcrypt.checkpw(password[:72], hashed)


class BasicAuth:
    """Checks credentials against the web config's users; successes are cached."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt")
        self._key = os.urandom(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()

    async def check(self, config: WebConfig, header: str) -> bool:
        """Whether `header` names a user of `config` with the right password. A wrong
        password and an unknown user cost one bcrypt check, as a right one does."""
        credentials = basic_credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = find_hash(config.users, user)
        key = self._cache_key(user, password, hashed) if hashed is not None else None
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            return True
        loop = asyncio.get_running_loop()
        against = hashed if hashed is not None else config.unknown_user_hash
        matches = await loop.run_in_executor(self.executor, _bcrypt_matches, password, against)
        if not matches or key is None:
            return False
        self._cache[key] = None
        while len(self._cache) > AUTH_CACHE_SIZE:
            self._cache.popitem(last=False)
        return True

    def _cache_key(self, user: bytes, password: bytes, hashed: bytes) -> bytes:
        """A new hash of a user means a new key: a reload that changes it drops the entry."""
        parts = (user, hashed, password)
        message = b"".join(len(part).to_bytes(4, "big") + part for part in parts)
        return hmac.new(self._key, message, hashlib.sha256).digest()


class TokenBucket:
    """`rate_limit`: `burst` requests at once, one more every `interval` (Go's rate.Limiter)."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)
        self._updated = clock()

    def allow(self) -> bool:
        now = self._clock()
        refill = (now - self._updated) / self.limit.interval
        self._tokens = min(float(self.limit.burst), self._tokens + refill)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class WebGuard:
    """The running web config: what every request passes, and the listener's TLS."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        #: None when the endpoints are served over plain HTTP.
        self.tls = LiveTLS(config.tls) if config.tls is not None else None
        self.auth = BasicAuth()
        self._bucket = TokenBucket(config.rate_limit) if config.rate_limit else None

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self.tls.context if self.tls is not None else None

    def attach(self, app: web.Application) -> None:
        """Guard every route of `app` (before it starts), and set the headers."""
        app.middlewares.append(self._middleware)
        app.on_response_prepare.append(self._set_headers)
        app.on_cleanup.append(self._close)

    def log_loaded(self) -> None:
        if self.config.source is None:
            return
        log.info("web config loaded", extra={"fields": self.config.describe()})
        for note in self.config.notes:
            log.warning(note, extra={"fields": {"file": self.config.source}})

    async def reload(self) -> str | None:
        """Read the web config file again and serve it; None, or every problem (the web
        config running stays) as one message."""
        source = self.config.source
        if source is None:
            return None
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(None, load_web_config, source)
            self.apply(new)
        except WebConfigError as exc:
            log.error(
                "web config reload failed; the previous web config keeps running",
                extra={"fields": {"file": source, "problems": list(exc.problems)}},
            )
            return str(exc)
        self.log_loaded()
        return None

    def apply(self, new: WebConfig) -> None:
        """Serve `new` from the next request and connection on; `WebConfigError` when it
        asks for what only a restart can do, or its files stopped loading."""
        source = new.source or ""
        problems = restart_problems(self.config, new)
        if problems:
            raise WebConfigError(source, problems)
        if self.tls is not None and new.tls is not None:
            try:
                self.tls.update(new.tls)
            except (OSError, ssl.SSLError) as exc:
                raise WebConfigError(source, [f"tls_server_config: {exc}"]) from None
        if new.rate_limit != self.config.rate_limit:
            self._bucket = TokenBucket(new.rate_limit) if new.rate_limit else None
        self.config = new

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        config = self.config
        if self._bucket is not None and not self._bucket.allow():
            return web.Response(status=429, text="Too Many Requests\n")
        sans = config.tls.client_allowed_sans if config.tls is not None else None
        if sans is not None and not self._client_allowed(request, sans):
            # The toolkit refuses the handshake; the closest here: no answer at all.
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        if config.users and not await self.auth.check(
            config, request.headers.get("Authorization", "")
        ):
            return web.Response(
                status=401, text="Unauthorized\n", headers={"WWW-Authenticate": "Basic"}
            )
        return await handler(request)

    @staticmethod
    def _client_allowed(request: web.Request, sans: tuple[str, ...]) -> bool:
        transport = request.transport
        connection = transport.get_extra_info("ssl_object") if transport is not None else None
        der = None
        if isinstance(connection, ssl.SSLObject | ssl.SSLSocket):
            der = connection.getpeercert(binary_form=True)
        if client_allowed(der, sans):
            return True
        names = ",".join(sorted(client_names(der))) if der else "no certificate"
        log.info(
            "client certificate names none of client_allowed_sans: connection closed",
            extra={"fields": {"client": request.remote, "names": names}},
        )
        return False

    async def _set_headers(self, _: web.Request, response: web.StreamResponse) -> None:
        """The configured headers, unless the handler set its own (as in the toolkit, where
        they are set before the handler runs): the status pages keep their stricter
        Content-Security-Policy."""
        for name, value in self.config.headers:
            if name not in response.headers:
                response.headers[name] = value

    async def _close(self, _: web.Application) -> None:
        self.auth.executor.shutdown(wait=False, cancel_futures=True)
