"""HTTP: /metrics, health and readiness, reload, and a status page for people."""

from __future__ import annotations

import asyncio
import gzip
import html
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from exporter import __version__
from exporter.store import ResultStore

#: Runs a reload; returns (ok, message).
ReloadFunction = Callable[[], Awaitable[tuple[bool, str]]]
#: Builds the exposition for a content type quickly, or None for unknown formats.
Renderer = Callable[[str], bytes | None]


@dataclass(frozen=True, slots=True)
class Sources:
    """What the handlers read and call."""

    store: ResultStore
    registry: CollectorRegistry
    reload: ReloadFunction
    render: Renderer | None
    #: Renders (and compresses) /metrics off the event loop.
    executor: ThreadPoolExecutor


SOURCES_KEY = web.AppKey("sources", Sources)

#: Threads that render (and compress) /metrics. Their own pool: the loop's default executor
#: also runs DNS lookups (`loop.getaddrinfo`), and a slow resolver must not delay scrapes.
METRICS_WORKERS = 2


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header asks for gzip: listed, and not with q=0."""
    for item in header.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if coding.lower() != "gzip":
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0  # unreadable: do not guess
        return quality > 0  # also false for "q=nan"
    return False


async def metrics(request: web.Request) -> web.StreamResponse:
    """The exposition is built off the event loop: a large one must not stall probes."""
    sources = request.app[SOURCES_KEY]
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    loop = asyncio.get_running_loop()
    executor = sources.executor
    fast = sources.render
    body = await loop.run_in_executor(executor, fast, content_type) if fast else None
    if body is None:
        body = await loop.run_in_executor(executor, encoder, sources.registry)
    headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    if accepts_gzip(request.headers.get("Accept-Encoding", "")):
        body = await loop.run_in_executor(executor, _gzip, body)
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


def _gzip(body: bytes) -> bytes:
    """Fast compression: level 1 is three times quicker than zlib's default on an
    exposition and within a tenth of its size (lines repeat, whatever the level)."""
    return gzip.compress(body, compresslevel=1, mtime=0)


async def healthy(_: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def ready(request: web.Request) -> web.Response:
    if request.app[SOURCES_KEY].store.ready:
        return web.Response(text="OK\n")
    return web.Response(status=503, text="config not loaded\n")


async def reload(request: web.Request) -> web.Response:
    ok, message = await request.app[SOURCES_KEY].reload()
    return web.Response(status=200 if ok else 500, text=message + "\n")


def _cell(value: object) -> str:
    return f"<td>{html.escape(str(value))}</td>"


async def index(request: web.Request) -> web.Response:
    """Links, the reload state, and one row per target with the reason for any failure."""
    store = request.app[SOURCES_KEY].store
    now = time.time()
    rows = []
    for target, result in store.snapshot():
        if result is None:
            rows.append(
                "<tr>" + _cell(target.name) + _cell(target.address) + '<td colspan="5">'
                "waiting for the first probe</td></tr>"
            )
            continue
        accepted = " ".join(v.version.value for v in result.versions if v.supported) or "-"
        status = "ok" if result.success else f"{result.error.value if result.error else ''}"
        detail = result.error_detail
        cert = result.certificate
        cert_text = "-"
        if cert is not None:
            days = (cert.not_after.timestamp() - now) / 86400
            verify = (
                "verified"
                if cert.verified
                else (cert.verify_error.value if cert.verify_error else "not verified")
            )
            cert_text = f"{days:.0f} days left, {verify}"
        when = datetime.fromtimestamp(result.finished, UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(
            "<tr>"
            + _cell(target.name)
            + _cell(target.address)
            + _cell(f"{when}Z")
            + _cell(status)
            + _cell(detail)
            + _cell(accepted)
            + _cell(cert_text)
            + "</tr>"
        )
    reload_state = store.reload
    reload_text = "successful" if reload_state.successful else f"FAILED: {reload_state.last_error}"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>SMTP TLS exporter</title>
<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}</style></head>
<body><h1>SMTP TLS exporter</h1>
<p>Version {html.escape(__version__)}.
<a href="/metrics">Metrics</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a>
· POST /-/reload reloads the config.</p>
<p>Last config load: {html.escape(reload_text)}.{_shard_text(store)}</p>
<table><tr><th>Target</th><th>Address</th><th>Last probe</th><th>Status</th><th>Detail</th>
<th>Accepted versions</th><th>Certificate</th></tr>
{"".join(rows)}
</table></body></html>
"""
    return web.Response(text=page, content_type="text/html")


def _shard_text(store: ResultStore) -> str:
    shard = store.shard
    if shard is None:
        return ""
    return (
        f" Shard {shard.index} of {shard.count} (0 to {shard.count - 1}):"
        f" {store.target_count} of the config's {shard.config_targets} targets."
    )


def make_app(
    store: ResultStore,
    registry: CollectorRegistry,
    reload_config: ReloadFunction,
    render: Renderer | None = None,
) -> web.Application:
    """The HTTP app; `render`, when given, serves the expositions it knows faster than the
    registry would (the same bytes)."""
    app = web.Application()
    executor = ThreadPoolExecutor(max_workers=METRICS_WORKERS, thread_name_prefix="metrics")
    app[SOURCES_KEY] = Sources(store, registry, reload_config, render, executor)

    async def shut_down_executor(_: web.Application) -> None:
        executor.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(shut_down_executor)
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    return app
