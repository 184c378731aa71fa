"""On-demand probes for /probe: the allow-list checked before anything is looked up or
connected to, the target resolved once and its addresses checked, a bound on probes at
once, and the last result kept for `min_interval` so scrapes cannot make the exporter hammer
a mail server (or a second Prometheus of an HA pair double the load).

The probe is handed in by `app`, so this module does not import it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import mx
from exporter.access import OnDemandSettings
from exporter.names import is_ip_address
from exporter.results import ProbeResult, Reason
from exporter.target import DnsSettings, Target, TLSMode

log = logging.getLogger("exporter")

ProbeFunction = Callable[[Target], Awaitable[ProbeResult]]
Resolve = Callable[[str, int, float], Awaitable[tuple[str, ...]]]

#: Extra time past a probe's own timeout before it is abandoned (as the scheduler does).
_SAFETY_MARGIN: Final = 5.0
#: Results kept at most, the oldest dropped first: names under a wildcard are endless.
MAX_KEPT: Final = 10_000


class Outcome(enum.Enum):
    """What became of a request; the values are the `result` label of the counter."""

    PROBED = "probed"
    CACHED = "cached"
    REFUSED = "refused"
    INVALID = "invalid"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """One /probe request, its parameters checked: the host (lowercase A-labels, or an IP
    address without brackets), how to speak to it, and the time it may take."""

    host: str
    port: int
    tls: TLSMode
    #: SNI and the name the certificate must match; "" for the host.
    servername: str = ""
    #: Seconds the probe may take at most: the `timeout` parameter and what the scrape
    #: timeout leaves; None: the timeout of `defaults`.
    timeout: float | None = None

    @property
    def key(self) -> tuple[str, int, TLSMode, str]:
        """What makes two requests the same probe."""
        return (self.host, self.port, self.tls, self.servername or self.host)


@dataclass(frozen=True, slots=True)
class Answer:
    """What /probe answers: a result to expose (with the target it describes), or a refusal
    (`status` 403 or 429) with its reason."""

    status: int
    message: str = ""
    target: Target | None = None
    result: ProbeResult | None = None


@dataclass(slots=True)
class _Kept:
    target: Target
    result: ProbeResult
    #: Monotonic time the probe ended.
    at: float


class OnDemand:
    """Runs the probes /probe asks for under the config's `on_demand` (None: refuse all)."""

    def __init__(
        self,
        probe: ProbeFunction,
        *,
        resolve: Resolve | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._resolve_override = resolve
        self._clock = clock
        self._settings: OnDemandSettings | None = None
        self._resolver: mx.Resolver | None = None
        self._dns_timeout = DnsSettings().timeout
        self._kept: dict[tuple[str, int, TLSMode, str], _Kept] = {}
        self._running: dict[tuple[str, int, TLSMode, str], asyncio.Task[Answer]] = {}
        #: Probes (with their look-ups) running now, whichever config started them.
        self.probes_running = 0
        self.counts: Counter[Outcome] = Counter()

    def configure(self, settings: OnDemandSettings | None, dns: DnsSettings) -> None:
        """Take a (re)loaded config: results kept under the old rules are dropped, and
        probes still running under them are not joined."""
        self._settings = settings
        self._resolver = mx.Resolver(dns.servers, dns.timeout) if dns.servers else None
        self._dns_timeout = dns.timeout
        self._kept.clear()
        self._running = {}

    def count(self, outcome: Outcome) -> None:
        self.counts[outcome] += 1

    async def answer(self, request: ProbeRequest) -> Answer:
        """The result for `request`: a new probe, the last one within `min_interval`, the
        one running for the same target, or a refusal."""
        settings = self._settings
        if settings is None:
            return self._refuse(
                request, 403, "on-demand probes are off: the config has no on_demand"
            )
        refusal = settings.policy.host_refusal(request.host)
        if refusal is not None:
            return self._refuse(request, 403, refusal)
        key = request.key
        kept = self._kept.get(key)
        if kept is not None and self._clock() - kept.at < settings.min_interval:
            self.count(Outcome.CACHED)
            return Answer(200, target=kept.target, result=kept.result)
        running = self._running.get(key)
        if running is not None:
            self.count(Outcome.CACHED)
            return await asyncio.shield(running)
        if self.probes_running >= settings.max_concurrent:
            message = (
                f"too many on-demand probes at once (on_demand.max_concurrent:"
                f" {settings.max_concurrent}); try again later"
            )
            return self._refuse(request, 429, message, Outcome.BUSY)
        task = asyncio.get_running_loop().create_task(self._run(request, settings))
        self._running[key] = task
        self.probes_running += 1
        # Shielded: a scrape that gives up must not cancel the probe others wait for.
        return await asyncio.shield(task)

    def _refuse(
        self, request: ProbeRequest, status: int, message: str, outcome: Outcome = Outcome.REFUSED
    ) -> Answer:
        self.count(outcome)
        log.debug(
            "on-demand probe refused",
            extra={"fields": {"host": request.host, "status": status, "reason": message}},
        )
        return Answer(status, message)

    async def _run(self, request: ProbeRequest, settings: OnDemandSettings) -> Answer:
        """Resolve, check the addresses, probe: the answer every request for it shares."""
        key = request.key
        try:
            answer = await self._resolve_and_probe(request, settings)
        finally:
            self.probes_running -= 1
            if self._running.get(key) is asyncio.current_task():
                del self._running[key]
        if answer.result is not None and answer.target is not None and settings is self._settings:
            # The transcript is for the status page, which on-demand probes are not on.
            result = dataclasses.replace(answer.result, transcript=b"")
            self._kept[key] = _Kept(answer.target, result, self._clock())
            self._forget_old(settings.min_interval)
        return answer

    async def _resolve_and_probe(self, request: ProbeRequest, settings: OnDemandSettings) -> Answer:
        template = settings.template
        timeout = min(template.timeout, request.timeout or template.timeout)
        target = dataclasses.replace(
            template,
            host=request.host,
            port=request.port,
            tls=request.tls,
            name="",
            servername=request.servername or request.host,
            timeout=timeout,
        )
        started, clock = time.time(), time.monotonic()
        try:
            addresses = await self._addresses(request.host, request.port, timeout)
        except Exception as exc:  # LookupFailed, or a bug that costs this probe only
            self.count(Outcome.PROBED)
            failed = isinstance(exc, LookupFailed)
            result = ProbeResult.unreached(
                target.name,
                target.versions,
                started=started,
                duration=time.monotonic() - clock,
                reason=Reason.RESOLVE_FAILED if failed else Reason.INTERNAL_ERROR,
                detail=str(exc) if failed else f"{type(exc).__name__}: {exc}",
            )
            return Answer(200, target=target, result=result)
        refusal = settings.policy.address_refusal(request.host, addresses)
        if refusal is not None:
            return self._refuse(request, 403, refusal)
        left = timeout - (time.monotonic() - clock)
        target = dataclasses.replace(target, addresses=addresses, timeout=max(left, 0.001))
        self.count(Outcome.PROBED)
        try:
            async with asyncio.timeout(target.timeout + _SAFETY_MARGIN):
                result = await self._probe(target)
        except TimeoutError:
            result = ProbeResult.unreached(
                target.name,
                target.versions,
                started=started,
                duration=time.monotonic() - clock,
                reason=Reason.PROBE_DEADLINE,
                detail="probe overran",
            )
        log.debug(
            "on-demand probe finished",
            extra={"fields": {"target": target.name, "success": result.success}},
        )
        return Answer(200, target=target, result=result)

    async def _addresses(self, host: str, port: int, timeout: float) -> tuple[str, ...]:
        """Every address of `host`, looked up once: what is checked is what the probe
        connects to. Through `dns.servers` when configured, else the system's resolver."""
        if self._resolve_override is not None:
            return await self._resolve_override(host, port, timeout)
        within = min(timeout, self._dns_timeout)
        if self._resolver is not None:
            try:
                async with asyncio.timeout(within):
                    found = await mx.addresses(host, self._resolver)
            except mx.DnsFailure as failure:
                raise LookupFailed(failure.detail) from None
            except TimeoutError:
                raise LookupFailed(f"{host}: no answer within {within:g}s") from None
        else:
            found = await system_addresses(host, port, within)
        if not found:
            raise LookupFailed(f"{host}: no address")
        return found

    def _forget_old(self, min_interval: float) -> None:
        now = self._clock()
        for key in [k for k, kept in self._kept.items() if now - kept.at >= min_interval]:
            del self._kept[key]
        while len(self._kept) > MAX_KEPT:
            del self._kept[next(iter(self._kept))]


class LookupFailed(Exception):
    """The target's name did not resolve: a probe result (resolve_failed), not a refusal."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


async def system_addresses(host: str, port: int, timeout: float) -> tuple[str, ...]:
    """The host's addresses from the system's resolver (getaddrinfo: /etc/hosts too), in
    its order of preference."""
    if is_ip_address(host):
        return (host,)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise LookupFailed(f"{host}: no answer within {timeout:g}s") from None
    except (socket.gaierror, UnicodeError) as exc:
        raise LookupFailed(f"{host}: {exc}") from None
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


class OnDemandCollector(Collector):
    """The on-demand requests by outcome, and the probes running now."""

    def __init__(self, on_demand: OnDemand) -> None:
        self._on_demand = on_demand

    def collect(self) -> Iterator[Metric]:
        counts = self._on_demand.counts
        requests = CounterMetricFamily(
            "smtp_tls_exporter_on_demand_probes",
            "/probe requests by what became of them: probed, cached (the last result, or the"
            " probe already running for the same target), refused (403), invalid (400),"
            " busy (429).",
            labels=["result"],
        )
        for outcome in Outcome:
            requests.add_metric([outcome.value], counts.get(outcome, 0))
        yield requests
        yield GaugeMetricFamily(
            "smtp_tls_exporter_on_demand_probes_running",
            "On-demand probes running now (their look-ups included).",
            self._on_demand.probes_running,
        )
