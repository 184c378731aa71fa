"""The running exporter (exporter.app) and its HTTP layer: logging of outcomes, signal
reloads, /metrics serving."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter.probe import probe
from exporter.results import ProbeResult, Reason
from exporter.scheduler import Scheduler
from exporter.store import ResultStore
from exporter.target import Target
from tests.support.certs import make_test_certs
from tests.support.inproc import Behaviour, InprocServer, tls_context
from tests.support.prometheus import PROMETHEUS_3_ACCEPT, PROMETHEUS_ACCEPT
from tests.support.scheduling import inproc_target


def test_a_certificate_that_does_not_verify_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from exporter.app import log_result

    certs = make_test_certs(tmp_path)
    context = tls_context(str(certs.expired.cert), str(certs.expired.key))
    store = ResultStore()
    with InprocServer(Behaviour(context=context), host="127.0.0.8") as server:
        expired = inproc_target(
            server, "expired", servername="mail.test", ca_file=str(certs.ca_pem)
        )

        async def main() -> None:
            done = asyncio.Event()

            def on_result(target: Target, result: ProbeResult) -> None:
                log_result(target, result)
                done.set()

            scheduler = Scheduler(store, probe, on_result=on_result)
            scheduler.apply((expired,))
            task = asyncio.create_task(scheduler.run())
            await asyncio.wait_for(done.wait(), timeout=10)
            task.cancel()
            await scheduler.stop()

        with caplog.at_level(logging.DEBUG, logger="exporter"):
            asyncio.run(main())
    result = store.result("expired")
    assert result is not None, result
    assert result.success, result
    assert result.certificate is not None
    assert not result.certificate.verified
    (record,) = [r for r in caplog.records if r.getMessage() == "certificate does not verify"]
    assert record.levelno == logging.INFO
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["target"] == "expired"
    assert fields["reason"] == "expired"
    assert fields["detail"] == result.certificate.verify_detail
    assert fields["detail"]


def test_a_signal_reload_task_is_held_until_it_ends(tmp_path: Path) -> None:
    from exporter.app import Exporter

    config = tmp_path / "config.yaml"
    config.write_text("targets:\n  - host: 127.0.0.1\n    port: 1\n    ehlo_name: probe.test\n")

    async def main() -> None:
        exporter = Exporter(str(config), 1)
        task = exporter.reload_soon()
        assert exporter.reloads_pending == 1
        assert await task == (True, "config reloaded: 1 targets")
        await asyncio.sleep(0)
        assert exporter.reloads_pending == 0
        assert exporter.config is not None
        assert len(exporter.config.targets) == 1
        pending = exporter.reload_soon()
        await exporter.stop_reloads()
        assert pending.done()
        assert exporter.reloads_pending == 0
        await exporter.scheduler.stop()

    asyncio.run(main())


def _metrics_app() -> web.Application:
    from prometheus_client import Gauge
    from prometheus_client.registry import CollectorRegistry

    from exporter.web import make_app

    registry = CollectorRegistry()
    Gauge("some_gauge", "A gauge with enough text to be worth compressing.", registry=registry)

    async def reload() -> tuple[bool, str]:
        return True, "ok"

    return make_app(ResultStore(), registry, reload)


def test_a_slow_resolver_does_not_delay_scrapes(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from exporter.web import SOURCES_KEY

    release = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: object, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.test":
            release.wait(10)
            raise socket.gaierror(socket.EAI_AGAIN, "slow resolver")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        app = _metrics_app()
        async with TestClient(TestServer(app)) as client:
            # Every thread of the default executor waits for the resolver.
            lookups = [asyncio.ensure_future(loop.getaddrinfo("slow.test", 25)) for _ in range(4)]
            await asyncio.sleep(0.1)
            try:
                start = time.monotonic()
                async with asyncio.timeout(3):
                    for encoding in ("gzip", "identity"):
                        response = await client.get(
                            "/metrics", headers={"Accept-Encoding": encoding}
                        )
                        assert response.status == 200
                        assert "some_gauge" in await response.text()
                assert time.monotonic() - start < 1.0
                assert not any(lookup.done() for lookup in lookups)
            finally:
                release.set()
                await asyncio.gather(*lookups, return_exceptions=True)
            executor = app[SOURCES_KEY].executor
        with pytest.raises(RuntimeError, match="shutdown"):  # closed with the app
            executor.submit(int)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000, identity", False),
        ("deflate, GZIP;Q=0", False),
        ("identity", False),
        ("", False),
    ],
)
def test_metrics_compression_follows_accept_encoding(accept_encoding: str, gzipped: bool) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    async def main() -> None:
        async with TestClient(TestServer(_metrics_app())) as client:
            response = await client.get("/metrics", headers={"Accept-Encoding": accept_encoding})
            assert response.status == 200
            assert ("gzip" in response.headers.get("Content-Encoding", "")) is gzipped
            assert "some_gauge" in await response.text()

    asyncio.run(main())


# --- Schedule lag -------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [PROMETHEUS_ACCEPT, PROMETHEUS_3_ACCEPT])
def test_prometheus_scrapes_take_the_cached_path(accept: str) -> None:
    """What Prometheus 2 and 3 ask for (their Accept headers, gzip) is served from the cached
    lines, and is what the client library would have sent."""
    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.registry import CollectorRegistry

    from exporter.collector import ExporterCollector, ResultCollector
    from exporter.exposition import CachedExposition
    from exporter.web import make_app

    store = ResultStore()
    target = Target(host="mx.example.org")
    store.set_targets((target,), frozenset())
    store.record(
        target,
        ProbeResult.unreached(
            target.name,
            target.versions,
            started=1.8e9,
            duration=0.5,
            reason=Reason.EHLO_REJECTED,
            detail="554 no",
        ),
    )
    registry = CollectorRegistry(auto_describe=False)
    own = ExporterCollector(store)
    registry.register(ResultCollector(store))
    registry.register(own)
    cached = CachedExposition(store, own)
    served: list[bool] = []

    def render(content_type: str) -> bytes | None:
        body = cached.render(content_type)
        served.append(body is not None)
        return body

    async def reload() -> tuple[bool, str]:
        return True, "ok"

    async def main() -> None:
        app = make_app(store, registry, reload, render)
        async with TestClient(TestServer(app)) as client:
            response = await client.get(
                "/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"}
            )
            assert response.status == 200
            assert response.headers["Content-Encoding"] == "gzip"
            encoder, content_type = choose_encoder(accept)
            assert response.headers["Content-Type"] == content_type
            assert await response.read() == encoder(registry)  # aiohttp decompresses

    asyncio.run(main())
    assert served == [True]
