"""The latest result of every target, and the exporter's own counters.

The scheduler writes here; the collector reads. Reads happen on the scrape thread, so
every read takes a snapshot instead of iterating live containers.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.mx import MxLookup
from exporter.policies import DomainPolicy
from exporter.results import ProbeResult, Reason
from exporter.target import MailDomain, Target


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    successful: bool
    last_success: float
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class ShardStatus:
    """This process's share of the config under `--shard=I/N`: shard `index` of `count`.
    `config_targets` counts the config file's targets, every shard's; `target_count` this
    shard's."""

    index: int
    count: int
    config_targets: int


@dataclass(frozen=True, slots=True)
class MxEntry:
    """One MX host of a domain, as probed: its name, preference and what to know of it."""

    host: str
    preference: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class DomainStatus:
    """A mail domain's last MX look-up (None before the first) and the hosts it is probed
    through: those found last, kept while look-ups fail."""

    domain: MailDomain
    lookup: MxLookup | None
    #: Unix time of the last look-up.
    checked: float | None
    hosts: tuple[MxEntry, ...]
    #: MTA-STS, TLS-RPT, DNSSEC and TLSA, looked up with the MX records.
    policy: DomainPolicy | None = None


class ResultStore:
    """Targets of the running config with their last result; counters since start."""

    def __init__(self) -> None:
        self._targets: dict[str, Target] = {}
        self._results: dict[str, ProbeResult] = {}
        #: Changes with every change of the targets or their results (not of the counters):
        #: an exposition of the per-target series made at one version holds until the next.
        self.version = 0
        self.probes_total = 0
        self.failures_total: Counter[Reason] = Counter()
        self.reload = ReloadStatus(successful=False, last_success=0.0)
        self.ready = False
        #: How late the most recently started probe started: seconds past its due time, not
        #: counting a wait for another probe of its host. Lasting lateness means the process
        #: cannot carry its targets: too small a `--probe.concurrency`, or a busy CPU.
        self.schedule_delay_seconds = 0.0
        #: Probes past their due time still waiting for a free slot (0 while slots are free).
        self.overdue_probes = 0
        #: Probes running now, and the most that may run at once.
        self.probes_running = 0
        self.probe_concurrency = 0
        #: How late the event loop runs, smoothed: no new probe starts while it is high.
        self.event_loop_lag_seconds = 0.0
        #: Set by the app under `--shard` (on every config load); None when this process
        #: probes every target of the config.
        self.shard: ShardStatus | None = None
        self._domains: tuple[DomainStatus, ...] = ()

    def set_domains(self, domains: tuple[DomainStatus, ...]) -> None:
        """The mail domains with their last look-ups, in the config's order."""
        if domains != self._domains:
            self._domains = domains
            self.version += 1

    def domains(self) -> tuple[DomainStatus, ...]:
        return self._domains

    def set_targets(self, targets: tuple[Target, ...], keep_results: frozenset[str]) -> None:
        """Install a new target list; results survive only for names in `keep_results`."""
        self._targets = {t.name: t for t in targets}
        self._results = {n: r for n, r in self._results.items() if n in keep_results}
        self.version += 1

    def record(self, target: Target, result: ProbeResult) -> None:
        """Store a finished probe, unless its target left the config meanwhile."""
        self.probes_total += 1
        if result.error is not None:
            self.failures_total[result.error] += 1
        if target.name in self._targets:
            self._results[target.name] = result
            self.version += 1

    def restore(self, results: Mapping[str, ProbeResult]) -> int:
        """Results kept from before a restart (`--storage.path`), for targets of the running
        config that have none yet; not counted as probes. How many were taken."""
        taken = {
            name: result
            for name, result in results.items()
            if name in self._targets and name not in self._results
        }
        if taken:
            self._results.update(taken)
            self.version += 1
        return len(taken)

    def probe_started(self, delay: float) -> None:
        """Note that a probe started `delay` seconds after it was due."""
        self.schedule_delay_seconds = max(0.0, delay)

    def reloaded(self, ok: bool, error: str = "") -> None:
        if ok:
            self.reload = ReloadStatus(True, time.time())
            self.ready = True
        else:
            self.reload = ReloadStatus(False, self.reload.last_success, error)

    @property
    def target_count(self) -> int:
        return len(self._targets)

    def snapshot(self) -> list[tuple[Target, ProbeResult | None]]:
        """Every target with its last result (None before the first probe ends)."""
        results = dict(self._results)
        return [(t, results.get(name)) for name, t in list(self._targets.items())]

    def result(self, name: str) -> ProbeResult | None:
        return self._results.get(name)
