"""HTTP: /metrics, health and readiness, reload, and the status pages for people
(rendered by `exporter.status`)."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from aiohttp import web
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from exporter import __version__
from exporter.ondemand import OnDemand
from exporter.status import Overview, Query, render_index, render_not_found, render_target
from exporter.store import ResultStore
from exporter.webprobe import add_routes as add_probe_routes

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
    #: Renders the status pages: a thread of their own, so a page never delays a scrape.
    pages: ThreadPoolExecutor


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


#: On every HTML page: nothing may load or run (no scripts at all), inline styles only.
HTML_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
        " base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Vary": "Accept-Encoding",
}


async def _html(request: web.Request, render: Callable[[], str], status: int = 200) -> web.Response:
    """A page rendered (and compressed) off the event loop: with thousands of targets it
    takes a good part of a second, and probes must not wait for it."""
    sources = request.app[SOURCES_KEY]
    loop = asyncio.get_running_loop()
    page = await loop.run_in_executor(sources.pages, render)
    body = page.encode("utf-8")
    headers = dict(HTML_HEADERS)
    if accepts_gzip(request.headers.get("Accept-Encoding", "")):
        body = await loop.run_in_executor(sources.pages, _gzip, body)
        headers["Content-Encoding"] = "gzip"
    return web.Response(
        status=status, body=body, headers=headers, content_type="text/html", charset="utf-8"
    )


async def index(request: web.Request) -> web.Response:
    """Every target at a glance, sorted and filtered by the query string."""
    store = request.app[SOURCES_KEY].store
    overview = Overview(__version__, store.reload, store.shard, store.snapshot(), store.domains())
    query = Query.parse(request.query)
    return await _html(request, partial(render_index, overview, query, time.time()))


async def target_page(request: web.Request) -> web.Response:
    """One target's settings, last result, transcript and certificate chain."""
    store = request.app[SOURCES_KEY].store
    name = request.query.get("name", "")
    for target, result in store.snapshot():
        if target.name == name:
            return await _html(request, partial(render_target, target, result, time.time()))
    return await _html(request, partial(render_not_found, name), status=404)


def make_app(
    store: ResultStore,
    registry: CollectorRegistry,
    reload_config: ReloadFunction,
    render: Renderer | None = None,
    on_demand: OnDemand | None = None,
) -> web.Application:
    """The HTTP app; `render`, when given, serves the expositions it knows faster than the
    registry would (the same bytes); `on_demand`, when given, serves /probe."""
    app = web.Application()
    executor = ThreadPoolExecutor(max_workers=METRICS_WORKERS, thread_name_prefix="metrics")
    pages = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pages")
    app[SOURCES_KEY] = Sources(store, registry, reload_config, render, executor, pages)

    async def shut_down_executor(_: web.Application) -> None:
        executor.shutdown(wait=False, cancel_futures=True)
        pages.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(shut_down_executor)
    app.router.add_get("/", index)
    app.router.add_get("/target", target_page)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    if on_demand is not None:
        add_probe_routes(app, on_demand)
    return app
