"""The connection budget per server address: a sliding minute of starts, connections open at
once, whole reservations per probe, and failing at once when no turn can come in time.

Time is a clock the test moves by hand, so a minute of budget passes in a moment; the last
cases run real probes against an in-process server.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine

import pytest

from exporter.defaults import DEFAULT_MAX_CONNECTIONS_PER_MINUTE
from exporter.probe import probe
from exporter.probe.budget import WINDOW, Claim, ConnectionBudget
from exporter.probe.deadline import ProbeFailure
from exporter.results import ProbeResult, Reason, Verdict
from exporter.target import Target
from tests.support.certs import TestCerts, make_test_certs
from tests.support.clock import ManualClock
from tests.support.inproc import Behaviour, InprocServer, tls_context

ADDRESS = "192.0.2.25"


def run(case: Callable[[], Coroutine[object, object, None]]) -> None:
    asyncio.run(case())


def claim(budget: ConnectionBudget, expect: int, **limits: float) -> Claim:
    settings = {"per_minute": 12, "at_once": 6, "patience": 15.0} | limits
    made = budget.claim(
        per_minute=int(settings["per_minute"]),
        at_once=int(settings["at_once"]),
        patience=settings["patience"],
    )
    made.expect(expect)
    return made


async def connect_all(made: Claim, count: int, address: str = ADDRESS) -> None:
    """`count` connections one after another, each closed before the next."""
    for _ in range(count):
        close = await made.connection(address)
        close()
    made.close()


def test_a_minute_holds_at_most_its_budget_of_starts() -> None:
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        await connect_all(claim(budget, 6), 6)
        await connect_all(claim(budget, 6), 6)
        assert budget.counted(ADDRESS) == (12, 0)
        late = asyncio.create_task(connect_all(claim(budget, 6, patience=90.0), 6))
        await clock.advance(WINDOW - 1)
        assert not late.done()  # the first twelve are still in the window
        await clock.advance(1)
        await late
        assert clock.monotonic() == 1000.0 + WINDOW
        assert budget.counted(ADDRESS) == (6, 0)

    run(case)


def test_a_probe_that_cannot_fit_before_its_patience_ends_fails_at_once() -> None:
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        await connect_all(claim(budget, 6), 6)
        await clock.advance(10)
        await connect_all(claim(budget, 6), 6)
        with pytest.raises(ProbeFailure) as failed:
            await claim(budget, 6, patience=15.0).connection(ADDRESS)
        assert failed.value.reason is Reason.CONNECTION_BUDGET
        assert ADDRESS in failed.value.detail
        assert "in 50s" in failed.value.detail  # the first six leave the window then
        assert clock.monotonic() == 1010.0  # no waiting for what cannot come
        assert budget.counted(ADDRESS) == (12, 0)

    run(case)


def test_probes_take_their_starts_whole() -> None:
    """Two probes asking for six each when there is room for nine: the first gets its six,
    the second waits for six rather than starting three."""
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        await connect_all(claim(budget, 3), 3)
        await clock.advance(30)
        await connect_all(claim(budget, 6), 6)
        second = claim(budget, 6, patience=60.0)
        waiting = asyncio.create_task(second.connection(ADDRESS))
        await clock.advance(29)
        assert not waiting.done()
        assert budget.counted(ADDRESS) == (9, 0)  # nothing of the second's taken yet
        await clock.advance(1)  # the first three leave the window: room for six
        (await waiting)()
        await connect_all(second, 5)
        assert budget.counted(ADDRESS) == (12, 0)

    run(case)


def test_unused_reservations_go_back() -> None:
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        stopped_early = claim(budget, 6)
        (await stopped_early.connection(ADDRESS))()
        assert budget.counted(ADDRESS) == (6, 0)  # one made, five reserved
        stopped_early.close()
        assert budget.counted(ADDRESS) == (1, 0)
        await connect_all(claim(budget, 11), 11)  # no wait: room for the rest
        assert clock.monotonic() == 1000.0

    run(case)


def test_a_reservation_given_back_wakes_a_waiting_probe() -> None:
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        first = claim(budget, 12)
        (await first.connection(ADDRESS))()
        waiting = asyncio.create_task(connect_all(claim(budget, 6), 6))
        await clock.advance(5)
        assert not waiting.done()
        first.close()  # it stopped after one connection: eleven go back
        await clock.settle()
        assert waiting.done()
        await waiting
        assert clock.monotonic() == 1005.0

    run(case)


def test_connections_open_at_once_are_shared_by_every_probe_of_the_address() -> None:
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        a, b = claim(budget, 3, at_once=2), claim(budget, 3, at_once=2)
        open_a = [await a.connection(ADDRESS) for _ in range(2)]
        waiting = asyncio.create_task(b.connection(ADDRESS))
        await clock.advance(3)
        assert not waiting.done()
        assert budget.counted(ADDRESS) == (6, 2)
        open_a[0]()
        await clock.settle()
        close_b = await waiting
        assert budget.counted(ADDRESS)[1] == 2
        open_a[1]()
        close_b()
        close_b()  # closing twice gives back one place only
        assert budget.counted(ADDRESS)[1] == 0

    run(case)


def test_a_connection_waits_for_a_place_only_as_long_as_its_patience() -> None:
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        holder = claim(budget, 1, at_once=1)
        await holder.connection(ADDRESS)  # never closed
        waiting = asyncio.create_task(claim(budget, 1, at_once=1, patience=4.0).connection(ADDRESS))
        await clock.advance(4)
        with pytest.raises(ProbeFailure) as failed:
            await waiting
        assert failed.value.reason is Reason.CONNECTION_BUDGET
        assert "open" in failed.value.detail

    run(case)


def test_addresses_have_budgets_of_their_own() -> None:
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        await connect_all(claim(budget, 12), 12)
        await connect_all(claim(budget, 12), 12, address="2001:db8::25")
        assert budget.counted(ADDRESS) == (12, 0)
        assert budget.counted("2001:db8::25") == (12, 0)
        assert clock.monotonic() == 1000.0

    run(case)


def test_each_target_is_held_to_its_own_limit_over_the_shared_count() -> None:
    """A target allowing more may start where one allowing less must wait."""
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        await connect_all(claim(budget, 12), 12)
        await connect_all(claim(budget, 6, per_minute=30), 6)
        with pytest.raises(ProbeFailure):
            await claim(budget, 1).connection(ADDRESS)
        assert budget.counted(ADDRESS) == (18, 0)

    run(case)


def test_a_probe_needing_more_than_the_budget_takes_what_a_minute_holds() -> None:
    """Six connections at three a minute: three start, the rest wait for the window."""
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        made = claim(budget, 6, per_minute=3, patience=200.0)
        task = asyncio.create_task(connect_all(made, 6))
        await clock.settle()
        assert budget.counted(ADDRESS) == (3, 0)
        assert not task.done()
        await clock.advance(WINDOW)  # the first three leave the window, the last three start
        assert task.done()
        await task
        assert budget.counted(ADDRESS) == (3, 0)

    run(case)


def test_idle_addresses_are_forgotten() -> None:
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        await connect_all(claim(budget, 1), 1)
        await clock.advance(2 * WINDOW)
        await connect_all(claim(budget, 1), 1, address="192.0.2.26")
        assert budget.counted(ADDRESS) == (0, 0)
        assert ADDRESS not in budget._addresses

    run(case)


def test_connections_of_one_probe_at_once_take_one_start_each() -> None:
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        made = claim(budget, 6)
        (await made.connection(ADDRESS))()  # the first alone, as the endpoint does
        closes = await asyncio.gather(*(made.connection(ADDRESS) for _ in range(5)))
        assert budget.counted(ADDRESS) == (6, 5)
        for close in closes:
            close()
        made.close()
        assert budget.counted(ADDRESS) == (6, 0)

    run(case)


# --- probes ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_test_certs(tmp_path_factory.mktemp("certs"))


def serving(made: TestCerts) -> InprocServer:
    context = tls_context(
        str(made.rsa.cert), str(made.rsa.key), ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_3
    )
    return InprocServer(Behaviour(context=context))


def target_of(server: InprocServer, name: str) -> Target:
    """Every version but SSLv2: six connections a probe."""
    return Target(
        host=server.host,
        port=server.port,
        name=name,
        servername="mail.test",
        ehlo_name="probe.test",
        timeout=10.0,
    )


def test_probes_sharing_an_address_wait_for_the_budget(certs: TestCerts) -> None:
    """Three targets on one address, one budget at the default (fourteen a minute): two
    probes of six connections fit, the third cannot before its patience ends and says so
    at once, without a connection."""
    budget = ConnectionBudget()
    with serving(certs) as server:

        async def three() -> list[ProbeResult]:
            targets = [target_of(server, name) for name in ("a", "b", "c")]
            return list(await asyncio.gather(*(probe(t, budget=budget) for t in targets)))

        results = asyncio.run(three())
        seen = len(server.behaviour.connections)
    assert seen == 12
    failed = [r for r in results if not r.success]
    assert len(failed) == 1, [(r.target, r.error, r.error_detail) for r in results]
    (late,) = failed
    assert late.error is Reason.CONNECTION_BUDGET
    limit = DEFAULT_MAX_CONNECTIONS_PER_MINUTE
    assert f"{limit} connections a minute to 127.0.0.1 used" in late.error_detail
    assert {v.verdict for v in late.versions} == {Verdict.UNKNOWN}
    assert late.duration < 5  # it did not wait for what could not come
    assert budget.counted("127.0.0.1") == (12, 0)


def test_a_probe_without_a_budget_never_waits(certs: TestCerts) -> None:
    """`check` probes without a budget: one probe's connections open at once."""
    with serving(certs) as server:
        for _ in range(3):
            assert asyncio.run(probe(target_of(server, "a"))).success
        assert len(server.behaviour.connections) == 18


def test_a_connection_after_the_probe_closed_its_claim_takes_only_its_own_start() -> None:
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        made = claim(budget, 6)
        (await made.connection(ADDRESS))()
        made.close()
        (await made.connection(ADDRESS))()
        assert budget.counted(ADDRESS) == (2, 0)
        made.close()
        assert budget.counted(ADDRESS) == (2, 0)

    run(case)


def test_a_start_taken_for_a_connection_that_got_no_place_goes_back() -> None:
    clock = ManualClock()
    budget = ConnectionBudget(clock)

    async def case() -> None:
        await claim(budget, 1, at_once=1).connection(ADDRESS)  # never closed
        waiting = claim(budget, 3, at_once=1, patience=2.0)
        task = asyncio.create_task(waiting.connection(ADDRESS))
        await clock.advance(2)
        with pytest.raises(ProbeFailure):
            await task
        assert budget.counted(ADDRESS) == (3, 1)  # one made, two still reserved
        waiting.close()
        assert budget.counted(ADDRESS) == (1, 1)

    run(case)
