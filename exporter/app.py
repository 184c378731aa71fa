"""The running exporter: config (re)loading, scheduler, results and HTTP wired together."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from exporter import limits
from exporter.collector import DomainCollector, ExporterCollector, ResultCollector
from exporter.config import Config, ConfigError, load_config
from exporter.domains import DomainWatcher
from exporter.exposition import CachedExposition
from exporter.names import format_address
from exporter.ondemand import OnDemand, OnDemandCollector
from exporter.probe import probe
from exporter.results import ProbeResult
from exporter.scheduler import Scheduler
from exporter.shard import Shard
from exporter.store import ResultStore, ShardStatus
from exporter.target import MailDomain, Target
from exporter.web import make_app
from exporter.webconfig import WebConfig
from exporter.webguard import WebGuard

log = logging.getLogger("exporter")


def log_result(target: Target, result: ProbeResult) -> None:
    """Log a finished probe: at debug when it succeeded, at info when it failed or when the
    certificate does not verify, with the reason and the server's words."""
    fields = {
        "target": target.name,
        "success": result.success,
        "duration_seconds": round(result.duration, 3),
        "versions": ",".join(v.version.value for v in result.versions if v.supported) or "none",
    }
    if result.error is None:
        log.debug("probe finished", extra={"fields": fields})
    else:
        fields["reason"] = result.error.value
        fields["detail"] = result.error_detail
        log.info("probe failed", extra={"fields": fields})
    cert = result.certificate
    if cert is not None and not cert.verified:
        reason = cert.verify_error.value if cert.verify_error is not None else "unknown"
        log.info(
            "certificate does not verify",
            extra={
                "fields": {"target": target.name, "reason": reason, "detail": cert.verify_detail}
            },
        )


def shard_targets(config: Config, shard: Shard | None) -> tuple[Target, ...]:
    """The targets this process probes: its shard's share of the config, or all of them."""
    return config.targets if shard is None else shard.select(config.targets)


def shard_domains(config: Config, shard: Shard | None) -> tuple[MailDomain, ...]:
    """The mail domains this process watches: its shard's share (by domain), or all."""
    return config.domains if shard is None else shard.select(config.domains)


def describe_targets(config: Config, shard: Shard | None) -> str:
    """How many targets this process probes, for people: `14 targets`, or
    `5 of 14 targets on shard 0/3`, and the mail domains when there are any."""
    text = f"{len(config.targets)} targets"
    if shard is not None:
        text = f"{len(shard_targets(config, shard))} of {text} on shard {shard}"
    if config.domains:
        text += f", {len(shard_domains(config, shard))} mail domains"
    return text


class ChainedCollector(Collector):
    """Several collectors as one, in order: what the cached exposition appends."""

    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


class Exporter:
    """Owns the running config; reloads swap it only when the new file is valid."""

    def __init__(
        self,
        config_file: str,
        concurrency: int,
        shard: Shard | None = None,
        web_config: WebConfig | None = None,
    ) -> None:
        self.config_file = config_file
        #: `--web.config.file`: TLS, basic auth and headers of every endpoint; reloaded with
        #: the config, each file kept as it runs when its new version is bad.
        self.web = WebGuard(web_config or WebConfig())
        #: `--shard`: probe only this share of the config's targets; None probes them all.
        self.shard = shard
        self.store = ResultStore()
        self.scheduler = Scheduler(self.store, probe, concurrency, on_result=log_result)
        self.watcher = DomainWatcher(self.store, self.scheduler.apply)
        #: /probe: who may be probed on demand comes with every config load.
        self.on_demand = OnDemand(probe)
        self.config: Config | None = None
        self._reload_lock = asyncio.Lock()
        # The loop keeps only weak references to tasks: these keep a reload alive to its end.
        self._reload_tasks: set[asyncio.Task[tuple[bool, str]]] = set()

    def install(self, config: Config) -> None:
        """Run `config`: at start and on every reload, so each target stays on its shard."""
        targets = shard_targets(config, self.shard)
        domains = shard_domains(config, self.shard)
        self.config = config
        self.watcher.configure(targets, domains, config.dns)
        self.on_demand.configure(config.on_demand, config.dns)
        fields: dict[str, object] = {"file": self.config_file, "targets": len(targets)}
        if config.domains:
            fields["domains"] = len(domains)
        if self.shard is not None:
            self.store.shard = ShardStatus(self.shard.index, self.shard.count, len(config.targets))
            fields |= {"shard": str(self.shard), "config_targets": len(config.targets)}
        self.store.reloaded(True)
        log.info("config loaded", extra={"fields": fields})
        if not targets and not domains:
            log.warning(
                "this shard has no targets of the config; it probes nothing until a reload",
                extra={"fields": fields},
            )

    async def reload(self) -> tuple[bool, str]:
        async with self._reload_lock:
            web_problems = await self.web.reload()
            loop = asyncio.get_running_loop()
            try:
                config = await loop.run_in_executor(None, load_config, self.config_file)
            except ConfigError as exc:
                message = "\n".join(filter(None, (str(exc), web_problems)))
                self.store.reloaded(False, message)
                log.error(
                    "config reload failed; the previous config keeps running",
                    extra={"fields": {"file": self.config_file, "problems": list(exc.problems)}},
                )
                return False, message
            self.install(config)
            if web_problems is not None:
                self.store.reloaded(False, web_problems)
                return False, web_problems
            return True, f"config reloaded: {describe_targets(config, self.shard)}"

    def reload_soon(self) -> asyncio.Task[tuple[bool, str]]:
        """Start a reload in the background (for SIGHUP); the task is held until it ends."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reload_tasks.add(task)
        task.add_done_callback(self._reload_tasks.discard)
        return task

    @property
    def reloads_pending(self) -> int:
        """Reloads started by a signal that have not ended yet."""
        return len(self._reload_tasks)

    async def stop_reloads(self) -> None:
        """Cancel reloads still running in the background and wait for them."""
        tasks = list(self._reload_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _serve(exporter: Exporter, config: Config, host: str | None, port: int) -> int:
    # Signals first: a SIGHUP or SIGTERM during start-up must not kill the process.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, exporter.reload_soon)
    registry = CollectorRegistry(auto_describe=False)
    own = ExporterCollector(exporter.store)
    domains = DomainCollector(exporter.store)
    on_demand = OnDemandCollector(exporter.on_demand)
    registry.register(ResultCollector(exporter.store))
    registry.register(domains)
    registry.register(own)
    registry.register(on_demand)
    exposition = CachedExposition(exporter.store, ChainedCollector(domains, own, on_demand))
    app = make_app(exporter.store, registry, exporter.reload, exposition.render, exporter.on_demand)
    exporter.web.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner, host=host, port=port, reuse_address=True, ssl_context=exporter.web.ssl_context
    )
    try:
        await site.start()
    except OSError as exc:
        print(f"smtp-tls-exporter: cannot listen on {host or ''}:{port}: {exc.strerror}",
              file=sys.stderr)  # fmt: skip
        await runner.cleanup()
        return 1
    if exporter.config is None:  # a SIGHUP during start-up may have loaded it already
        exporter.install(config)
    bound = sorted({format_address(a[0], a[1]) for a in runner.addresses})
    scheme = "https" if exporter.web.tls is not None else "http"
    log.info("listening", extra={"fields": {"address": ",".join(bound), "scheme": scheme}})
    exporter.web.log_loaded()
    dispatcher = asyncio.create_task(exporter.scheduler.run())
    watcher = asyncio.create_task(exporter.watcher.run())
    await stop.wait()
    log.info("shutting down")
    dispatcher.cancel()
    watcher.cancel()
    await asyncio.gather(dispatcher, watcher, return_exceptions=True)
    await exporter.scheduler.stop()
    await exporter.stop_reloads()
    await runner.cleanup()
    return 0


def serve(
    config_file: str,
    config: Config,
    host: str | None,
    port: int,
    concurrency: int | None,
    shard: Shard | None = None,
    web_config: WebConfig | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; 1 when the listen address cannot be bound (or the
    web config's TLS files stopped loading since they were checked).

    `concurrency` bounds probes at once; None: as many as the open files limit allows."""
    # Until the event loop takes the signals over, a SIGHUP (a reload sent too early)
    # must not end the process.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    open_files = limits.raise_open_files_limit()
    bound = limits.concurrency(concurrency, open_files)
    factory = _loop_factory()
    fields = {
        "probes": bound,
        "open_files": open_files,
        "event_loop": "asyncio" if factory is None else factory.__module__.split(".")[0],
    }
    if concurrency is not None and bound < concurrency:
        log.warning(
            "--probe.concurrency is more than the open files allow", extra={"fields": fields}
        )
    else:
        log.info("probe concurrency", extra={"fields": fields})
    try:
        exporter = Exporter(config_file, bound, shard, web_config)
    except (OSError, ssl.SSLError) as exc:
        print(f"smtp-tls-exporter: the web config's TLS files: {exc}", file=sys.stderr)
        return 1
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_serve(exporter, config, host, port))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (a dependency wherever it has wheels): the same work
    for about a sixth less CPU and memory per probe, measured with `python -m bench`;
    asyncio's own loop elsewhere."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
