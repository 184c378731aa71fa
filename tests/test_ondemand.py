"""/probe (exporter.ondemand, exporter.webprobe): refusals before any connection, bad
parameters, the last result within min_interval, the bound on probes at once, and real
probes of in-process servers answered with their series.

Names that must resolve to loopback, private or metadata addresses come from the test DNS
server's `ondemand.test` zone; nothing here connects anywhere but loopback: a name leading
elsewhere must be refused before the probe runs, which a stand-in probe records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from exporter.app import Exporter
from exporter.collector import ResultCollector
from exporter.config import parse_config
from exporter.ondemand import OnDemand, OnDemandCollector, Resolve
from exporter.probe import probe as real_probe
from exporter.results import ProbeResult, Reason
from exporter.store import ResultStore
from exporter.target import Target
from exporter.web import make_app
from tests.support.certs import TestCerts, make_test_certs
from tests.support.dns import DnsServer, SilentDnsServer
from tests.support.inproc import Behaviour, InprocServer, tls_context
from tests.support.prometheus import PROMETHEUS_ACCEPT

V = ssl.TLSVersion
ProbeFunction = Callable[[Target], Awaitable[ProbeResult]]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_test_certs(tmp_path_factory.mktemp("certs"))


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


class StandIn:
    """A probe that connects nowhere: it records each target, may wait for `gate`, and
    answers a refused connection."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.targets: list[Target] = []
        self.gate = gate

    async def __call__(self, target: Target) -> ProbeResult:
        self.targets.append(target)
        if self.gate is not None:
            await self.gate.wait()
        return ProbeResult.unreached(
            target.name,
            target.versions,
            started=time.time(),
            duration=0.01,
            reason=Reason.CONNECT_REFUSED,
            detail="stand-in",
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config_text(
    *allow: str, dns: DnsServer | None = None, on_demand: str = "", defaults: str = ""
) -> str:
    """A config with one scheduled target (never run here) and `on_demand.allow`."""
    text = (
        "defaults:\n  timeout: 5s\n  labels: {env: test}\n"
        f"{defaults}"
        "targets:\n  - host: 127.0.0.1\n    port: 1\n"
        f"on_demand:\n  allow: {json.dumps(list(allow))}\n{on_demand}"
    )
    if dns is not None:
        text += f"dns:\n  servers: {json.dumps(dns.servers[:1])}\n"
    return text


async def documentation_net(host: str, _port: int, _timeout: float) -> tuple[str, ...]:
    """A stand-in resolver: every name is 192.0.2.1 (TEST-NET-1, where a stand-in probe
    never connects); an address is itself."""
    return (host,) if ":" in host or host[-1].isdigit() else ("192.0.2.1",)


def on_demand_for(
    text: str | None,
    probe: ProbeFunction,
    clock: Callable[[], float] = time.monotonic,
    *,
    system_resolver: bool = False,
) -> OnDemand:
    """Runs `probe` under the on_demand of config `text` (None: a config without it). A
    stand-in probe gets a stand-in resolver unless the config names a DNS server or
    `system_resolver` is asked for."""
    resolve: Resolve | None = None
    stand_in = isinstance(probe, StandIn)
    if stand_in and not system_resolver and (text is None or "dns:" not in text):
        resolve = documentation_net
    on_demand = OnDemand(probe, clock=clock, resolve=resolve)
    if text is None:
        text = "targets:\n  - host: 127.0.0.1\n    port: 1\n"
    config = parse_config(text, "ondemand.yaml", default_ehlo_name="probe.test")
    on_demand.configure(config.on_demand, config.dns)
    return on_demand


async def _reload() -> tuple[bool, str]:
    return True, "ok"


@contextlib.asynccontextmanager
async def client_for(on_demand: OnDemand) -> AsyncIterator[TestClient[Any, Any]]:
    app = make_app(ResultStore(), CollectorRegistry(), _reload, on_demand=on_demand)
    async with TestClient(TestServer(app)) as client:
        yield client


async def get(
    client: TestClient[Any, Any], path: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    response = await client.get(path, headers=headers)
    return response.status, await response.text()


def answers(
    on_demand: OnDemand, *paths: str, headers: dict[str, str] | None = None
) -> list[tuple[int, str]]:
    """Each path's status and body, asked one after the other."""

    async def main() -> list[tuple[int, str]]:
        async with client_for(on_demand) as client:
            return [await get(client, path, headers) for path in paths]

    return asyncio.run(main())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_readme_example_loads() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("\n## Probing on demand: /probe\n", 1)[1]
    block = next(p for p in section.split("```yaml\n")[1:] if p.startswith("on_demand:"))
    text = "targets:\n  - host: mx.example.org\n" + block.split("```", 1)[0]
    settings = parse_config(text, "README.md", default_ehlo_name="p.test").on_demand
    assert settings is not None
    assert settings.policy.host_refusal("a.b.example.org") is None
    assert settings.policy.host_refusal("10.20.0.25") is None
    assert settings.policy.host_refusal("example.org") is not None
    assert (settings.min_interval, settings.max_concurrent) == (60.0, 10)


# --- Closed by default --------------------------------------------------------------------


@pytest.mark.parametrize("target", ["mx.example.org", "127.0.0.1:25", "[::1]:25", "localhost"])
def test_without_on_demand_every_request_is_refused(target: str) -> None:
    stand_in = StandIn()
    ((status, body),) = answers(on_demand_for(None, stand_in), f"/probe?target={target}")
    assert status == 403
    assert body == "on-demand probes are off: the config has no on_demand\n"
    assert stand_in.targets == []


def test_an_empty_allow_list_refuses_everything() -> None:
    stand_in = StandIn()
    on_demand = on_demand_for(config_text(), stand_in)
    ((status, body),) = answers(on_demand, "/probe?target=127.0.0.1")
    assert (status, body) == (403, "127.0.0.1 (loopback) is not in on_demand.allow\n")
    assert stand_in.targets == []


def test_a_name_not_allowed_is_refused_before_it_is_looked_up() -> None:
    stand_in = StandIn()
    looked_up: list[str] = []

    async def resolve(host: str, _port: int, _timeout: float) -> tuple[str, ...]:
        looked_up.append(host)
        return ("192.0.2.1",)

    on_demand = OnDemand(stand_in, resolve=resolve)
    config = parse_config(config_text("*.example.org"), "x.yaml", default_ehlo_name="p.test")
    on_demand.configure(config.on_demand, config.dns)
    results = answers(
        on_demand,
        "/probe?target=example.org",
        "/probe?target=mx.example.net",
        "/probe?target=mx.example.org.evil.test",
        "/probe?target=192.0.2.1",
    )
    assert [status for status, _ in results] == [403] * 4
    assert results[0][1] == "example.org is not in on_demand.allow\n"
    assert looked_up == []
    assert stand_in.targets == []
    assert answers(on_demand, "/probe?target=MX1.Example.org.")[0][0] == 200
    assert looked_up == ["mx1.example.org"]
    (target,) = stand_in.targets
    assert (target.name, target.addresses) == ("mx1.example.org:25", ("192.0.2.1",))


# --- Names that lead inside -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "address", "kind"),
    [
        ("loopback", "127.0.0.1", "loopback"),
        ("loopback6", "::1", "loopback"),
        ("private", "10.0.0.1", "private"),
        ("metadata", "169.254.169.254", "cloud metadata"),
        ("metadata6", "fd00:ec2::254", "cloud metadata"),
        ("mapped", "::ffff:127.0.0.1", "loopback"),
    ],
)
def test_an_allowed_name_leading_inside_is_refused(
    dns_server: DnsServer, name: str, address: str, kind: str
) -> None:
    stand_in = StandIn()
    # A wide network admits none of these: only a rule of their own would.
    text = config_text("*.ondemand.test", "0.0.0.0/0", "::/0", "169.254.0.0/16", dns=dns_server)
    ((status, body),) = answers(
        on_demand_for(text, stand_in), f"/probe?target={name}.ondemand.test"
    )
    assert status == 403
    assert body == (
        f"{name}.ondemand.test resolves to {address} ({kind}),"
        " which on_demand.allow does not list\n"
    )
    assert stand_in.targets == []


def test_one_address_not_allowed_refuses_the_name(dns_server: DnsServer) -> None:
    stand_in = StandIn()
    text = config_text("mixed.ondemand.test", "127.0.0.1", dns=dns_server)
    ((status, body),) = answers(on_demand_for(text, stand_in), "/probe?target=mixed.ondemand.test")
    assert status == 403
    assert "resolves to 10.0.0.1 (private)" in body
    assert stand_in.targets == []


def test_a_private_address_allowed_too_lets_the_probe_run_there_only(
    dns_server: DnsServer,
) -> None:
    """The probe gets the addresses checked, so it never looks the name up again."""
    stand_in = StandIn()
    text = config_text("private.ondemand.test", "10.0.0.0/8", dns=dns_server)
    ((status, _),) = answers(on_demand_for(text, stand_in), "/probe?target=private.ondemand.test")
    assert status == 200
    (target,) = stand_in.targets  # a stand-in: nothing connects to 10.0.0.1
    assert target.host == "private.ondemand.test"
    assert target.addresses == ("10.0.0.1",)


def test_a_public_address_needs_no_rule_of_its_own(dns_server: DnsServer) -> None:
    stand_in = StandIn()
    text = config_text("*.ondemand.test", dns=dns_server)
    ((status, _),) = answers(on_demand_for(text, stand_in), "/probe?target=public.ondemand.test")
    assert status == 200
    (target,) = stand_in.targets  # a stand-in: nothing connects to 192.0.2.1
    assert target.addresses == ("192.0.2.1",)


def test_a_name_that_does_not_resolve_is_a_failed_probe(dns_server: DnsServer) -> None:
    stand_in = StandIn()
    text = config_text("*.ondemand.test", dns=dns_server)
    ((status, body),) = answers(on_demand_for(text, stand_in), "/probe?target=absent.ondemand.test")
    assert status == 200
    assert stand_in.targets == []
    found = samples(body)
    target = ("target", "absent.ondemand.test:25")
    assert found[("smtp_tls_probe_success", frozenset({target, ("env", "test")}))] == 0
    errors = [labels for name, labels in found if name == "smtp_tls_probe_error_info"]
    assert dict(errors[0])["reason"] == "resolve_failed"
    assert "NXDOMAIN" in dict(errors[0])["detail"]


def test_a_name_server_that_never_answers_is_a_failed_probe_in_time() -> None:
    stand_in = StandIn()
    with SilentDnsServer() as silent:
        text = config_text("*.example.org") + f"dns:\n  servers: [{silent.server}]\n"
        on_demand = on_demand_for(text, stand_in)
        start = time.monotonic()
        ((status, body),) = answers(on_demand, "/probe?target=mx.example.org&timeout=1s")
    assert time.monotonic() - start < 3
    assert status == 200
    assert stand_in.targets == []
    (error,) = [
        dict(labels) for name, labels in samples(body) if name == "smtp_tls_probe_error_info"
    ]
    assert error["reason"] == "resolve_failed"
    assert error["detail"] == "mx.example.org: no answer within 1s"


def test_the_system_resolver_is_checked_too() -> None:
    """Without dns.servers, names resolve through the system (localhost: /etc/hosts)."""
    stand_in = StandIn()
    refused = on_demand_for(config_text("localhost"), stand_in, system_resolver=True)
    ((status, body),) = answers(refused, "/probe?target=localhost")
    assert status == 403
    assert "(loopback), which on_demand.allow does not list" in body
    allowed = on_demand_for(
        config_text("localhost", "127.0.0.1", "::1"), stand_in, system_resolver=True
    )
    ((status, _),) = answers(allowed, "/probe?target=localhost:2525")
    assert status == 200
    (target,) = stand_in.targets
    assert "127.0.0.1" in target.addresses
    assert set(target.addresses) <= {"127.0.0.1", "::1"}


# --- Real probes ---------------------------------------------------------------------------


def probe_config(*allow: str, dns: DnsServer | None = None, ca: Path) -> str:
    defaults = f"  versions: ['1.2', '1.3']\n  ca_file: {json.dumps(str(ca))}\n"
    return config_text(*allow, dns=dns, defaults=defaults)


def test_an_allowed_name_probes_exactly_its_checked_addresses(
    dns_server: DnsServer, certs: TestCerts
) -> None:
    behaviour = Behaviour(context=tls_context(str(certs.rsa.cert), str(certs.rsa.key)))
    with InprocServer(behaviour) as server:
        refused = on_demand_for(
            probe_config("*.ondemand.test", dns=dns_server, ca=certs.ca_pem), real_probe
        )
        path = f"/probe?target=loopback.ondemand.test:{server.port}&servername=mail.test"
        ((status, _),) = answers(refused, path)
        assert status == 403
        assert behaviour.connections == []  # refused before connecting
        allowed = on_demand_for(
            probe_config("*.ondemand.test", "127.0.0.1", dns=dns_server, ca=certs.ca_pem),
            real_probe,
        )
        ((status, body),) = answers(allowed, path)
    assert status == 200, body
    assert behaviour.connections
    found = samples(body)
    labels = frozenset({("target", f"loopback.ondemand.test:{server.port}"), ("env", "test")})
    assert found[("smtp_tls_probe_success", labels)] == 1
    assert found[("smtp_tls_version_supported", labels | {("version", "1.2")})] == 1
    assert found[("smtp_tls_cert_verified", labels)] == 1


def test_an_allowed_address_is_probed_with_the_series_of_metrics(certs: TestCerts) -> None:
    """The same families, labels and values as the target's series in /metrics."""
    behaviour = Behaviour(context=tls_context(str(certs.rsa.cert), str(certs.rsa.key)))
    probed: list[tuple[Target, ProbeResult]] = []

    async def recording(target: Target) -> ProbeResult:
        result = await real_probe(target)
        probed.append((target, result))
        return result

    with InprocServer(behaviour) as server:
        on_demand = on_demand_for(probe_config("127.0.0.0/8", ca=certs.ca_pem), recording)
        ((status, body),) = answers(on_demand, f"/probe?target=127.0.0.1:{server.port}")
    assert status == 200, body
    ((target, result),) = probed
    assert result.success
    store = ResultStore()
    store.set_targets((target,), frozenset())
    store.record(target, result)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ResultCollector(store))
    assert samples(body) == samples(generate_latest(registry).decode())
    labels = frozenset({("target", f"127.0.0.1:{server.port}"), ("env", "test")})
    assert samples(body)[("smtp_tls_probe_success", labels)] == 1


@pytest.mark.skipif(not has_ipv6(), reason="no ::1 on this machine")
def test_ipv6(dns_server: DnsServer, certs: TestCerts) -> None:
    behaviour = Behaviour(context=tls_context(str(certs.rsa.cert), str(certs.rsa.key)))
    with InprocServer(behaviour, host="::1") as server:
        refused = on_demand_for(
            probe_config("loopback6.ondemand.test", dns=dns_server, ca=certs.ca_pem), real_probe
        )
        by_name = f"/probe?target=loopback6.ondemand.test:{server.port}"
        by_address = f"/probe?target=[::1]:{server.port}"
        results = answers(refused, by_name, by_address)
        assert [status for status, _ in results] == [403, 403]
        assert results[1][1] == "::1 (loopback) is not in on_demand.allow\n"
        assert behaviour.connections == []
        allowed = on_demand_for(
            probe_config("loopback6.ondemand.test", "::1", dns=dns_server, ca=certs.ca_pem),
            real_probe,
        )
        results = answers(allowed, by_name, by_address)
    assert [status for status, _ in results] == [200, 200]
    for (_, body), target in zip(
        results, [f"loopback6.ondemand.test:{server.port}", f"[::1]:{server.port}"], strict=True
    ):
        found = samples(body)
        assert found[("smtp_tls_probe_success", frozenset({("target", target), ("env", "test")}))]


def test_openmetrics_when_asked() -> None:
    on_demand = on_demand_for(config_text("192.0.2.1"), StandIn())
    response: dict[str, str] = {}

    async def main() -> None:
        async with client_for(on_demand) as client:
            answer = await client.get(
                "/probe?target=192.0.2.1", headers={"Accept": PROMETHEUS_ACCEPT}
            )
            response["type"] = answer.headers["Content-Type"]
            response["body"] = await answer.text()

    asyncio.run(main())
    assert response["type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response["body"].endswith("# EOF\n")
    assert 'smtp_tls_probe_success{env="test",target="192.0.2.1:25"} 0.0' in response["body"]


# --- Bad parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "the target parameter is required: /probe?target=HOST[:PORT]"),
        ("target=", "the target parameter is required"),
        ("target=a%20b", "target 'a b': the host contains white space"),
        ("target=mx.example.org:70000", "port must be a number from 1 to 65535, got '70000'"),
        ("target=mx.example.org:smtp", "port must be a number from 1 to 65535, got 'smtp'"),
        ("target=2001:db8::1:25:x", "target '2001:db8::1:25:x'"),
        ("target=[::1", "target '[::1'"),
        ("target=https://mx.example.org", "target 'https://mx.example.org'"),
        ("target=mx.example.org&tls=ssl", "tls must be 'starttls' or 'implicit', got 'ssl'"),
        ("target=mx.example.org&servername=a%20b", "servername 'a b' contains white space"),
        ("target=mx.example.org&timeout=soon", "timeout must be a duration like 10s"),
        ("target=mx.example.org&timeout=0s", "timeout must be a duration like 10s"),
        ("target=mx.example.org&timeout=-1", "timeout must be a duration like 10s"),
        ("target=mx.example.org&module=smtp", "unknown parameter 'module' (valid: target, tls,"),
        ("target=a.example.org&target=b.example.org", "parameter 'target' is given more than once"),
    ],
)
def test_bad_parameters(query: str, message: str) -> None:
    stand_in = StandIn()
    on_demand = on_demand_for(config_text("*.example.org", "::/0"), stand_in)
    ((status, body),) = answers(on_demand, f"/probe?{query}")
    assert status == 400
    assert message in body
    assert body.endswith("\n")
    assert body.count("\n") == 1
    assert stand_in.targets == []


@pytest.mark.parametrize("header", ["soon", "0", "-3", "nan", "inf"])
def test_a_bad_scrape_timeout_header(header: str) -> None:
    on_demand = on_demand_for(config_text("*.example.org"), StandIn())
    ((status, body),) = answers(
        on_demand,
        "/probe?target=mx.example.org",
        headers={"X-Prometheus-Scrape-Timeout-Seconds": header},
    )
    assert status == 400
    assert "X-Prometheus-Scrape-Timeout-Seconds must be a number of seconds" in body


def test_parameters_reach_the_probe() -> None:
    stand_in = StandIn()
    on_demand = on_demand_for(config_text("*.example.org", "2001:db8::/32"), stand_in)
    results = answers(
        on_demand,
        "/probe?target=mx.example.org",
        "/probe?target=mx2.example.org:465",
        "/probe?target=mx3.example.org:587&tls=IMPLICIT&servername=Mail.Example.org.",
        "/probe?target=[2001:DB8::1]",
        "/probe?target=2001:db8::2",
    )
    assert [status for status, _ in results] == [200] * 5
    first, second, third, fourth, fifth = stand_in.targets
    assert (first.name, first.tls.value, first.servername) == (
        "mx.example.org:25",
        "starttls",
        "mx.example.org",
    )
    assert (second.name, second.tls.value) == ("mx2.example.org:465", "implicit")
    assert (third.name, third.tls.value, third.servername) == (
        "mx3.example.org:587",
        "implicit",
        "mail.example.org",
    )
    assert (fourth.name, fourth.addresses) == ("[2001:db8::1]:25", ("2001:db8::1",))
    assert fifth.name == "[2001:db8::2]:25"
    # The probe's own settings are those of `defaults`.
    assert (first.ehlo_name, first.labels) == ("probe.test", (("env", "test"),))


@pytest.mark.parametrize(
    ("query", "header", "timeout"),
    [
        ("", None, 5.0),  # defaults.timeout
        ("&timeout=2s", None, 2.0),
        ("&timeout=1.5", None, 1.5),
        ("&timeout=1m", None, 5.0),  # never past defaults.timeout
        ("", "3", 2.5),  # the scrape timeout less 0.5 s
        ("&timeout=2s", "10", 2.0),
        ("&timeout=4s", "3", 2.5),
        ("", "0.6", 0.3),  # half of a short scrape timeout
        ("", "30", 5.0),
    ],
)
def test_the_probe_ends_before_the_scrape_does(
    query: str, header: str | None, timeout: float
) -> None:
    stand_in = StandIn()
    on_demand = on_demand_for(config_text("*.example.org"), stand_in)
    headers = None if header is None else {"X-Prometheus-Scrape-Timeout-Seconds": header}
    ((status, _),) = answers(on_demand, f"/probe?target=mx.example.org{query}", headers=headers)
    assert status == 200
    (target,) = stand_in.targets
    assert target.timeout == pytest.approx(timeout, abs=0.05)


# --- Repeats, the bound, reloads -------------------------------------------------------------


def test_a_repeat_within_min_interval_gets_the_last_result(certs: TestCerts) -> None:
    behaviour = Behaviour(context=tls_context(str(certs.rsa.cert), str(certs.rsa.key)))
    clock = Clock()
    with InprocServer(behaviour) as server:
        text = probe_config("127.0.0.1", ca=certs.ca_pem)
        on_demand = on_demand_for(text, real_probe, clock)
        path = f"/probe?target=127.0.0.1:{server.port}"

        async def main() -> list[tuple[int, str, int]]:
            seen = []
            async with client_for(on_demand) as client:
                for step in (0.0, 30.0, 29.0, 2.0):  # 0 s, 30 s, 59 s, 61 s
                    clock.now += step
                    status, body = await get(client, path)
                    seen.append((status, body, len(behaviour.connections)))
            return seen

        seen = asyncio.run(main())
    assert [status for status, _, _ in seen] == [200] * 4
    first, cached, still_cached, fresh = (connections for _, _, connections in seen)
    assert first > 0
    assert cached == still_cached == first  # no connection within min_interval
    assert fresh > first
    assert seen[1][1] == seen[0][1]  # the same result, its timestamp included
    counts = {o.value: n for o, n in on_demand.counts.items()}
    assert counts == {"probed": 2, "cached": 2}


def test_the_results_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("exporter.ondemand.MAX_KEPT", 2)
    stand_in = StandIn()
    on_demand = on_demand_for(config_text("*.example.org"), stand_in)
    answers(on_demand, *(f"/probe?target={name}.example.org" for name in "abcb"))
    assert len(stand_in.targets) == 3  # b's result was kept
    answers(on_demand, "/probe?target=a.example.org")  # dropped, the oldest
    assert len(stand_in.targets) == 4


def test_other_parameters_are_another_probe() -> None:
    stand_in = StandIn()
    on_demand = on_demand_for(config_text("*.example.org"), stand_in)
    answers(
        on_demand,
        "/probe?target=mx.example.org",
        "/probe?target=mx.example.org:25&timeout=3s",  # the same probe
        "/probe?target=mx.example.org:587",
        "/probe?target=mx.example.org&tls=implicit",
        "/probe?target=mx.example.org&servername=other.example.org",
    )
    assert len(stand_in.targets) == 4


def test_requests_for_a_probe_running_share_it() -> None:
    """An HA pair of Prometheus servers scrapes at about the same time: one probe."""

    async def main() -> tuple[list[int], int]:
        gate = asyncio.Event()
        stand_in = StandIn(gate)
        on_demand = on_demand_for(config_text("*.example.org"), stand_in)
        async with client_for(on_demand) as client:
            requests = [
                asyncio.ensure_future(get(client, "/probe?target=mx.example.org")) for _ in range(3)
            ]
            await asyncio.sleep(0.2)
            gate.set()
            done = await asyncio.gather(*requests)
        return [status for status, _ in done], len(stand_in.targets)

    statuses, probes = asyncio.run(main())
    assert statuses == [200, 200, 200]
    assert probes == 1


def test_too_many_probes_at_once_are_refused() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        stand_in = StandIn(gate)
        text = config_text("*.example.org", on_demand="  max_concurrent: 2\n")
        on_demand = on_demand_for(text, stand_in)
        async with client_for(on_demand) as client:
            running = [
                asyncio.ensure_future(get(client, f"/probe?target=mx{i}.example.org"))
                for i in (1, 2)
            ]
            await asyncio.sleep(0.2)
            response = await client.get("/probe?target=mx3.example.org")
            assert response.status == 429
            assert await response.text() == (
                "too many on-demand probes at once (on_demand.max_concurrent: 2); try again later\n"
            )
            assert response.headers["Retry-After"] == "1"
            # A request for a probe already running joins it rather than counting.
            joining = asyncio.ensure_future(get(client, "/probe?target=mx1.example.org"))
            await asyncio.sleep(0.1)
            assert not joining.done()
            gate.set()
            assert [status for status, _ in await asyncio.gather(*running, joining)] == [200] * 3
            assert (await get(client, "/probe?target=mx3.example.org"))[0] == 200
            assert len(stand_in.targets) == 3
            assert on_demand.probes_running == 0
            metrics = {
                (s.name, s.labels.get("result")): s.value
                for family in OnDemandCollector(on_demand).collect()
                for s in family.samples
            }
            assert metrics == {
                ("smtp_tls_exporter_on_demand_probes_total", "probed"): 3,
                ("smtp_tls_exporter_on_demand_probes_total", "cached"): 1,
                ("smtp_tls_exporter_on_demand_probes_total", "refused"): 0,
                ("smtp_tls_exporter_on_demand_probes_total", "invalid"): 0,
                ("smtp_tls_exporter_on_demand_probes_total", "busy"): 1,
                ("smtp_tls_exporter_on_demand_probes_running", None): 0,
            }

    asyncio.run(main())


def test_a_scrape_that_gives_up_does_not_cancel_the_probe() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        stand_in = StandIn(gate)
        on_demand = on_demand_for(config_text("*.example.org"), stand_in)
        async with client_for(on_demand) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.get("/probe?target=mx.example.org")
            gate.set()
            assert (await get(client, "/probe?target=mx.example.org"))[0] == 200
        assert len(stand_in.targets) == 1

    asyncio.run(main())


def test_a_reload_swaps_the_rules_and_forgets_the_results(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text("*.example.org"))

    async def main() -> None:
        exporter = Exporter(str(config), 1)
        stand_in = StandIn()
        exporter.on_demand = on_demand = OnDemand(stand_in, resolve=documentation_net)
        assert (await exporter.reload())[0]
        async with client_for(on_demand) as client:
            assert (await get(client, "/probe?target=mx.example.org"))[0] == 200
            assert (await get(client, "/probe?target=mx.example.org"))[0] == 200
            assert len(stand_in.targets) == 1
            config.write_text(config_text("*.example.org", "mx.example.net"))
            assert (await exporter.reload())[0]
            assert (await get(client, "/probe?target=mx.example.org"))[0] == 200
            assert len(stand_in.targets) == 2  # probed anew
            assert (await get(client, "/probe?target=mx.example.net"))[0] == 200
            config.write_text(config_text("mx.example.net"))
            assert (await exporter.reload())[0]
            status, body = await get(client, "/probe?target=mx.example.org")
            assert (status, body) == (403, "mx.example.org is not in on_demand.allow\n")
            config.write_text("targets:\n  - host: 127.0.0.1\n    port: 1\n")
            assert (await exporter.reload())[0]
            assert (await get(client, "/probe?target=mx.example.net"))[0] == 403
        await exporter.scheduler.stop()

    asyncio.run(main())
