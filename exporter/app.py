"""The running exporter: config (re)loading, scheduler, results and HTTP wired together."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Callable, Iterable, Mapping

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
from exporter.probe import ConnectionBudget, probe
from exporter.results import ProbeResult
from exporter.scheduler import Scheduler, probe_key
from exporter.shard import Shard
from exporter.storage import (
    ResultStorage,
    StorageCollector,
    StorageError,
    StoredResult,
    open_storage,
    probe_digest,
)
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
        storage: ResultStorage | None = None,
    ) -> None:
        self.config_file = config_file
        #: `--web.config.file`: TLS, basic auth and headers of every endpoint; reloaded with
        #: the config, each file kept as it runs when its new version is bad.
        self.web = WebGuard(web_config or WebConfig())
        #: `--shard`: probe only this share of the config's targets; None probes them all.
        self.shard = shard
        self.store = ResultStore()
        #: Connections to each server address, over every probe of the process, scheduled
        #: and on demand: mail servers count per client address.
        self.budget = ConnectionBudget()
        self.scheduler = Scheduler(self.store, self._probe, concurrency, on_result=self._on_result)
        self.watcher = DomainWatcher(self.store, self._apply)
        #: `--storage.path`: every result is kept there; None keeps them in memory only.
        self.storage = storage
        #: Results from the storage whose targets have not appeared yet (a mail domain's MX
        #: hosts appear after its first look-up).
        self._stored: dict[str, StoredResult] = {}
        #: /probe: who may be probed on demand comes with every config load.
        self.on_demand = OnDemand(self._probe)
        self.config: Config | None = None
        self._reload_lock = asyncio.Lock()
        # The loop keeps only weak references to tasks: these keep a reload alive to its end.
        self._reload_tasks: set[asyncio.Task[tuple[bool, str]]] = set()

    async def _probe(self, target: Target) -> ProbeResult:
        """One probe within the process's connection budget."""
        return await probe(target, budget=self.budget)

    def resume_from(self, stored: Mapping[str, StoredResult]) -> None:
        """Results kept by the storage: each target among them that appears with the same
        probe settings gets its result back and resumes its schedule."""
        self._stored = dict(stored)

    def _on_result(self, target: Target, result: ProbeResult) -> None:
        log_result(target, result)
        if self.storage is not None:
            self.storage.save(target.name, probe_digest(probe_key(target)), result)

    def _apply(self, targets: tuple[Target, ...]) -> None:
        """Hand the targets to the scheduler, those with a stored result resumed. The
        storage keeps only the running targets' results, once every mail domain has been
        looked up (before that, its MX hosts' results wait for them)."""
        resumed: dict[str, ProbeResult] = {}
        for target in targets:
            kept = self._stored.pop(target.name, None)
            if kept is not None and kept.probe_key == probe_digest(probe_key(target)):
                resumed[target.name] = kept.result
        self.scheduler.apply(targets, resumed)
        if self.storage is None:
            return
        if resumed:
            restored = self.store.restore(resumed)
            self.storage.restored_targets += restored
            log.info("results restored", extra={"fields": {"targets": restored}})
        if all(domain.checked is not None for domain in self.store.domains()):
            self._stored.clear()
            self.storage.retain(frozenset(target.name for target in targets))

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
    extra: tuple[Collector, ...] = (domains, own, on_demand)
    if exporter.storage is not None:
        stored = StorageCollector(exporter.storage)
        registry.register(stored)
        extra += (stored,)
    exposition = CachedExposition(exporter.store, ChainedCollector(*extra))
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
    listen: tuple[str | None, int],
    concurrency: int | None,
    shard: Shard | None = None,
    web_config: WebConfig | None = None,
    storage_path: str | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; 1 when the listen address cannot be bound (or the
    web config's TLS files stopped loading since they were checked, or `storage_path`
    cannot hold the results).

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
    storage: ResultStorage | None = None
    stored: dict[str, StoredResult] = {}
    if storage_path is not None:
        try:
            storage, stored = open_storage(storage_path)
        except StorageError as exc:
            print(f"smtp-tls-exporter: --storage.path: {exc}", file=sys.stderr)
            return 1
        fields = {"file": str(storage.file), "results": len(stored)}
        log.info("storage opened", extra={"fields": fields})
    try:
        exporter = Exporter(config_file, bound, shard, web_config, storage)
    except (OSError, ssl.SSLError) as exc:
        print(f"smtp-tls-exporter: the web config's TLS files: {exc}", file=sys.stderr)
        if storage is not None:
            storage.close()
        return 1
    exporter.resume_from(stored)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_serve(exporter, config, *listen))
    finally:
        if storage is not None:
            storage.close()  # the last results written


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (a dependency wherever it has wheels): the same work
    for about a sixth less CPU and memory per probe, measured with `python -m bench`;
    asyncio's own loop elsewhere."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
