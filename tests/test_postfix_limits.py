"""Real Postfix listeners that limit their clients, as mail servers limit scanners: one
allows twelve connections a minute from a client (anvil), one two at once. The budget keeps
probes under the first at the exporter's defaults; a probe that goes over either is
`rate_limited` with the server's words, never a refusal, and recovers once it keeps within."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.probe import ConnectionBudget, probe
from exporter.results import ProbeResult, Reason, Verdict
from exporter.target import DEFAULT_VERSIONS, Target
from tests.support.exporter_process import Scrape, running_exporter, target_entry, write_config
from tests.support.postfix import COUNT_LIMIT, RATE_LIMIT, PostfixServers

pytestmark = pytest.mark.postfix

#: What Postfix says to a client over either limit.
TOO_MANY = "421 4.7.0 mail.test Error: too many connections from 127.0.0.1"


def probe_all(targets: list[Target], budget: ConnectionBudget | None = None) -> list[ProbeResult]:
    async def every() -> list[ProbeResult]:
        return list(await asyncio.gather(*(probe(t, budget=budget) for t in targets)))

    return asyncio.run(every())


def log_says(postfix: PostfixServers, listener: str, words: str, wait: float = 0.0) -> bool:
    """Whether this run's log has `words` from `listener`'s smtpd (waiting up to `wait`)."""
    deadline = time.monotonic() + wait
    while True:
        lines = postfix.log_tail(5000).splitlines()
        if any(f"postfix-test/{listener}/" in line and words in line for line in lines):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def assert_verdicts_or_unknown(postfix: PostfixServers, name: str, result: ProbeResult) -> None:
    """Every version the server was asked about has its true verdict; the others are
    unknown for the server's words, none refused for them."""
    accepted = postfix.listener(name).versions
    for found in result.versions:
        if found.verdict is Verdict.UNKNOWN:
            assert found.detail == TOO_MANY, found
        else:
            expected = Verdict.ACCEPTED if found.version in accepted else Verdict.REFUSED
            assert found.verdict is expected, found


def test_the_budget_keeps_probes_under_a_servers_connection_rate_limit(
    postfix: PostfixServers,
) -> None:
    """Three targets on one address, probed at once at the default budget (fourteen a
    minute, what the server allows): two probes of six fit, the third says it did not fit in time
    and opens nothing, and the server never turns a connection away. A probe without the
    budget then goes over the limit: the server says so, and the probe reports it."""
    assert Target(host="x").max_connections_per_minute == RATE_LIMIT
    limited = postfix.target("rate_limit")
    targets = [dataclasses.replace(limited, name=f"rate-{n}") for n in "abc"]
    results = probe_all(targets, ConnectionBudget())
    errors = sorted((r.error.value if r.error else "ok") for r in results)
    assert errors == ["connection_budget", "ok", "ok"], [(r.error, r.error_detail) for r in results]
    (late,) = (r for r in results if not r.success)
    assert f"{RATE_LIMIT} connections a minute to 127.0.0.1 used" in late.error_detail
    assert {v.verdict for v in late.versions} == {Verdict.UNKNOWN}
    assert late.duration < 3  # no wait for what could not come in time
    assert not log_says(postfix, "rate_limit", "Connection rate limit exceeded", wait=1.0)

    (over,) = probe_all([limited])
    assert over.error is Reason.RATE_LIMITED, over.error_detail
    assert over.error_detail.startswith(TOO_MANY)
    # The connections the server still served keep their verdicts; those it turned away
    # are unknown, never refused.
    verdicts = {v.verdict for v in over.versions}
    assert Verdict.UNKNOWN in verdicts
    assert Verdict.REFUSED not in {v.verdict for v in over.versions if v.version.value == "1.2"}
    assert log_says(postfix, "rate_limit", "Connection rate limit exceeded", wait=5.0)


def test_a_server_limiting_connections_at_once(postfix: PostfixServers) -> None:
    """Six connections at once where the server allows two: the connections it turned away
    leave their versions unknown, those it served keep their true verdicts; one connection
    at a time (`connections: 1`) gets through whole."""
    assert COUNT_LIMIT < 6
    (tripped,) = probe_all([postfix.target("count_limit")])
    assert tripped.error is Reason.RATE_LIMITED, tripped.error_detail
    assert tripped.error_detail.startswith(TOO_MANY)
    assert_verdicts_or_unknown(postfix, "count_limit", tripped)
    assert Verdict.UNKNOWN in {v.verdict for v in tripped.versions}
    assert log_says(postfix, "count_limit", "Connection concurrency limit exceeded", wait=5.0)

    time.sleep(1.0)  # the server hears of the closed connections a moment later
    (recovered,) = probe_all([postfix.target("count_limit", connections=1)], ConnectionBudget())
    assert recovered.success, recovered.error_detail
    assert_verdicts_or_unknown(postfix, "count_limit", recovered)
    assert len(recovered.versions) == len(DEFAULT_VERSIONS)


def exporter_config(postfix: PostfixServers, targets: list[dict[str, Any]]) -> dict[str, Any]:
    """The exporter's defaults but for the listeners' CA, a short interval and a name."""
    defaults = {"interval": "1m", "timeout": "20s", "ehlo_name": "client.test"}
    return {"defaults": defaults | {"ca_file": str(postfix.ca_file)}, "targets": targets}


def test_the_running_exporter_shares_one_budget_per_address(
    postfix: PostfixServers, tmp_path: Path
) -> None:
    """Three targets on one address share its budget: two probes fit the minute, the
    third says connection_budget; an on-demand probe of that address then waits for room
    in the same budget, and says so too."""
    shared = [target_entry(postfix, "all") | {"name": f"shared-{n}"} for n in "abc"]
    config = exporter_config(postfix, shared) | {"on_demand": {"allow": ["127.0.0.1"]}}
    path = write_config(tmp_path / "config.yaml", config)
    with running_exporter(path) as process:
        scrape = process.wait_for_targets([t["name"] for t in shared], timeout=30)
        port = postfix.port("all")
        asked = process.get(f"/probe?target=127.0.0.1:{port}&servername=localhost&timeout=4s")
    errors = scrape.series("smtp_tls_probe_error_info")
    assert [s.labels["reason"] for s in errors] == ["connection_budget"], errors
    assert scrape.series("smtp_tls_backoff_seconds") == []
    assert asked.status == 200, asked.text
    answer = Scrape(asked.text)
    assert answer.value("smtp_tls_probe_success") == 0
    (error,) = answer.series("smtp_tls_probe_error_info")
    assert error.labels["reason"] == "connection_budget"


def test_the_running_exporter_backs_off_from_a_rate_limiting_server(
    postfix: PostfixServers, tmp_path: Path
) -> None:
    """A server that turns connections away: rate_limited, and the wait before the next
    probe doubled in smtp_tls_backoff_seconds."""
    limited = target_entry(postfix, "count_limit") | {"name": "limited"}
    path = write_config(tmp_path / "config.yaml", exporter_config(postfix, [limited]))
    with running_exporter(path) as process:
        scrape = process.wait_for_targets(["limited"], timeout=30)
    (error,) = scrape.series("smtp_tls_probe_error_info", target="limited")
    assert error.labels["reason"] == "rate_limited"
    assert error.labels["detail"].startswith(TOO_MANY)
    assert scrape.value("smtp_tls_backoff_seconds", target="limited") == 120
    assert scrape.value("smtp_tls_exporter_probe_failures_total", reason="rate_limited") == 1
