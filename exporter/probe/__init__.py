"""One probe of one target: every configured version, the default client, the certificate.

Each version gets its own connection and SMTP dialogue, a ClientHello pinned to it and a
look at the server's answer. A few connections run at once (never many: mail servers
rate-limit) so greeting delays do not add up past the deadline. Once they are done, the
verdict weighs what all of them found.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, TypeVar

from exporter.probe import certs, verdict
from exporter.probe.budget import Claim, ConnectionBudget
from exporter.probe.connection import try_default_client, try_version
from exporter.probe.deadline import Deadline, ProbeFailure
from exporter.probe.endpoint import Endpoint, resolve
from exporter.probe.outcomes import DefaultOutcome, Failed, NotOffered, VersionOutcome
from exporter.probe.profile import ProfileOutcome, try_profile
from exporter.results import AddressResult, ProbeResult, Reason
from exporter.target import Target, TLSVersion
from exporter.transcript import Recorder

if TYPE_CHECKING:
    from exporter.senders import SenderProfile

__all__ = ["ConnectionBudget", "probe"]

_T = TypeVar("_T")

#: A little time past the deadline, so a step that times out at the deadline reports its
#: own reason rather than the probe's.
_GRACE: Final = 0.2

#: The share of its timeout a probe may wait for room in the connection budget; the rest
#: is for the connections themselves.
BUDGET_PATIENCE: Final = 0.5

#: Order of the connections: the likeliest to succeed first, so the chain and the
#: STARTTLS answer come early.
_ORDER: Final = (
    TLSVersion.TLS1_2,
    TLSVersion.TLS1_3,
    TLSVersion.TLS1_1,
    TLSVersion.TLS1_0,
    TLSVersion.SSL3,
    TLSVersion.SSL2,
)


async def probe(
    target: Target,
    trust: certs.TrustStore | None = None,
    budget: ConnectionBudget | None = None,
) -> ProbeResult:
    """Probe one target within its timeout; never raises for anything the server does.

    With a `budget` (the running exporter's, shared by all its probes), each connection
    waits for room at its address, for up to half the timeout; without one (`check`, a
    single probe) connections open at once."""
    started = time.time()
    clock = time.monotonic()
    deadline = Deadline.after(target.timeout)
    trust = trust or certs.trust_store(target.ca_file)
    recorder = Recorder()
    outcomes: dict[TLSVersion, VersionOutcome] = {}
    senders: dict[str, ProfileOutcome] = {}
    default: DefaultOutcome
    endpoint: Endpoint | None = None
    others: list[tuple[str, verdict.Findings]] = []

    def claim() -> Claim | None:
        if budget is None:
            return None
        patience = target.timeout * BUDGET_PATIENCE - (time.monotonic() - clock)
        return budget.claim(
            per_minute=target.max_connections_per_minute,
            at_once=target.connections,
            patience=max(0.0, patience),
        )

    try:
        if target.addresses:  # looked up already, through the configured DNS
            endpoint = Endpoint(list(target.addresses), target.port, claim())
        else:
            endpoint = await resolve(target.host, target.port, deadline, claim())
        recorder.connection("resolve").note(f"{target.host}: {', '.join(endpoint.addresses)}")
        outcomes, default = await _gather(target, endpoint, deadline, recorder, senders=senders)
        for address in _other_families(endpoint):
            alone = Endpoint([address], target.port, claim())
            found = await _gather(target, alone, deadline, recorder, via=address)
            others.append((address, verdict.decide(target, *found, trust)))
    except ProbeFailure as failure:
        recorder.connection("resolve").note(f"{failure.reason.value}: {failure.detail}")
        default = Failed.of(failure)
    except Exception as exc:  # a bug costs this probe, reported as such, nothing more
        default = Failed(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
    findings = verdict.decide(target, outcomes, default, trust, senders)
    addresses: tuple[AddressResult, ...] = ()
    if others and endpoint is not None and endpoint.working is not None:
        first = findings.at(endpoint.working)
        addresses = (first, *(found.at(address) for address, found in others))
    return findings.result(
        target.name,
        started=started,
        duration=time.monotonic() - clock,
        transcript=recorder.pack(),
        addresses=addresses,
    )


def _other_families(endpoint: Endpoint) -> list[str]:
    """The first address of each family but the one that answered: IPv4 and IPv6 are two
    paths mail takes, often to different machines, so each gets a probe of its own."""
    if endpoint.working is None:
        return []
    working_v6 = ":" in endpoint.working
    other = next((a for a in endpoint.addresses if (":" in a) != working_v6), None)
    return [] if other is None else [other]


def _ends_probe(outcome: object) -> bool:
    """True for answers every other connection of the probe would get too."""
    return isinstance(outcome, NotOffered) or (isinstance(outcome, Failed) and outcome.ends_probe)


def _holds_back(outcome: object) -> bool:
    """True for answers after which no further connection opens (those open finish)."""
    return isinstance(outcome, NotOffered) or (isinstance(outcome, Failed) and outcome.holds_back)


async def _gather(
    target: Target,
    endpoint: Endpoint,
    deadline: Deadline,
    recorder: Recorder,
    via: str = "",
    senders: dict[str, ProfileOutcome] | None = None,
) -> tuple[dict[TLSVersion, VersionOutcome], DefaultOutcome]:
    """Run every connection, a few at a time; stop early when all would fail alike. `via`
    names the address in the transcript, where the probe asks one address on its own;
    `senders`, when given, gets each sender profile's outcome (a connection each)."""
    gated = _gate(target.connections, deadline)
    suffix = f" via {via}" if via else ""

    def test(version: TLSVersion) -> Callable[[], Awaitable[VersionOutcome]]:
        return lambda: try_version(
            target, endpoint, version, deadline, recorder.connection(version.display + suffix)
        )

    ordered = [v for v in _ORDER if v in target.versions]
    profiles = target.senders if senders is not None else ()
    if endpoint.claim is not None:
        endpoint.claim.expect(len(ordered) + 1 + len(profiles))
    tasks = {asyncio.create_task(gated(test(v))): v for v in ordered[:1]}
    # The default client goes second: its chain is the one a TLS 1.3-only host gives.
    default_task = asyncio.create_task(
        gated(
            lambda: try_default_client(
                target, endpoint, deadline, recorder.connection("default client" + suffix)
            )
        )
    )
    tasks.update({asyncio.create_task(gated(test(v))): v for v in ordered[1:]})

    def sender(profile: SenderProfile) -> Callable[[], Awaitable[ProfileOutcome]]:
        log = recorder.connection(f"sender {profile.name}{suffix}")
        return lambda: try_profile(target, endpoint, profile, deadline, log)

    sender_tasks = {asyncio.create_task(gated(sender(p))): p.name for p in profiles}

    outcomes: dict[TLSVersion, VersionOutcome] = {}
    found: dict[asyncio.Task[Any], Any] = {}
    try:
        await _until_decided({default_task, *tasks, *sender_tasks}, found, deadline)
    finally:
        endpoint.finish()
    default: DefaultOutcome = found.get(
        default_task, Failed(Reason.PROBE_DEADLINE, "probe deadline reached")
    )
    outcomes = {version: found[task] for task, version in tasks.items() if task in found}
    if senders is not None:
        senders.update({name: found[task] for task, name in sender_tasks.items() if task in found})
    if any(isinstance(o, NotOffered) for o in outcomes.values()):
        # STARTTLS not offered stands for the default client too, whether it ran or not.
        default = NotOffered()
    return outcomes, default


async def _until_decided(
    pending: set[asyncio.Task[Any]], found: dict[asyncio.Task[Any], Any], deadline: Deadline
) -> None:
    """Wait for the connections' outcomes into `found`; cancel the rest once one answer
    stands for all of them, or at the deadline."""
    try:
        async with asyncio.timeout(deadline.budget() + _GRACE):
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                finished = [task for task in done if not task.cancelled()]
                found.update({task: task.result() for task in finished})
                if any(_ends_probe(task.result()) for task in finished):
                    break
    except TimeoutError:
        pass
    finally:
        await _cancel(pending)


def _gate(
    connections: int, deadline: Deadline
) -> Callable[[Callable[[], Awaitable[_T]]], Coroutine[Any, Any, _T]]:
    """At most `connections` at once; once one ends the probe (or the server rate-limits
    it, or the connection budget runs out), or time is up, no more open."""
    gate = asyncio.Semaphore(max(1, connections))
    stop = asyncio.Event()

    async def gated(work: Callable[[], Awaitable[_T]]) -> _T:
        async with gate:
            if stop.is_set() or deadline.left() <= 0:
                # Decided before this connection got its turn: don't open it at all.
                raise asyncio.CancelledError
            result = await work()
            if _holds_back(result):
                stop.set()
            return result

    return gated


async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*tasks, return_exceptions=True)
