"""/probe?target=HOST[:PORT][&tls=implicit][&servername=NAME][&timeout=10s]: one probe,
answered with its series, as blackbox_exporter's /probe is scraped (`__param_target`).

The series are those of /metrics for a target (`target` is `host:port`, plus the labels of
`defaults`), in the format Prometheus asks for. A bad parameter is 400, a host the
config does not admit 403, too many probes at once 429, each with one line saying why.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable

from aiohttp import web
from multidict import MultiMapping
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.collector import FAMILIES, add_result
from exporter.defaults import DEFAULT_PORT, IMPLICIT_PORT, SCRAPE_TIMEOUT_OFFSET
from exporter.durations import parse_duration
from exporter.names import is_ip_address, parse_host, parse_port, split_host_port
from exporter.ondemand import OnDemand, Outcome, ProbeRequest
from exporter.results import ProbeResult
from exporter.target import Target, TLSMode

ON_DEMAND_KEY = web.AppKey("on_demand", OnDemand)
#: What Prometheus tells the exporter about the time a scrape may take.
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
PARAMETERS = ("target", "tls", "servername", "timeout")
USAGE = "/probe?target=HOST[:PORT][&tls=starttls|implicit][&servername=NAME][&timeout=10s]"


class BadRequest(ValueError):
    """A parameter /probe cannot use; the message says which and why, on one line."""


def parse_request(query: MultiMapping[str], scrape_timeout: str | None = None) -> ProbeRequest:
    """The request from its query parameters (a repeated one is refused) and Prometheus'
    scrape timeout header."""
    for name in query:
        if name not in PARAMETERS:
            raise BadRequest(f"unknown parameter {name!r} (valid: {', '.join(PARAMETERS)})")
        if len(query.getall(name)) > 1:
            raise BadRequest(f"parameter {name!r} is given more than once")
    host, port = _target(query.get("target", ""))
    tls = _tls(query.get("tls"), port)
    servername = _servername(query.get("servername"))
    limits = [t for t in (_timeout(query.get("timeout")), _scrape(scrape_timeout)) if t]
    return ProbeRequest(host, port, tls, servername, min(limits) if limits else None)


def _target(text: str) -> tuple[str, int]:
    if not text.strip():
        raise BadRequest(f"the target parameter is required: {USAGE}")
    if "://" in text:
        raise BadRequest(f"target {text!r} is a URL; give HOST[:PORT]")
    try:
        host, port_text = split_host_port(text.strip())
        port = DEFAULT_PORT if port_text is None else parse_port(port_text)
    except ValueError as exc:
        raise BadRequest(f"target {text!r}: {exc}") from None
    name, problem = parse_host(host, unicode=True)
    if problem is not None or not host:
        raise BadRequest(f"target {text!r}: the host {problem or 'is empty'}")
    if is_ip_address(name):
        return str(ipaddress.ip_address(name)), port
    return name.rstrip(".").lower(), port


def _tls(text: str | None, port: int) -> TLSMode:
    if text is None:
        return TLSMode.IMPLICIT if port == IMPLICIT_PORT else TLSMode.STARTTLS
    try:
        return TLSMode(text.strip().lower())
    except ValueError:
        raise BadRequest(f"tls must be 'starttls' or 'implicit', got {text!r}") from None


def _servername(text: str | None) -> str:
    if text is None:
        return ""
    name, problem = parse_host(text.strip().rstrip("."), unicode=True)
    if problem is not None or not name:
        raise BadRequest(f"servername {text!r} {problem or 'is empty'}")
    return name.lower()


def _timeout(text: str | None) -> float | None:
    if text is None:
        return None
    seconds = parse_duration(text.strip())
    if seconds is None:
        try:
            seconds = float(text)
        except ValueError:
            seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise BadRequest(
            f"timeout must be a duration like 10s or a number of seconds, got {text!r}"
        )
    return seconds


def _scrape(text: str | None) -> float | None:
    """What the scrape timeout leaves for the probe: the answer must arrive before
    Prometheus gives up, so the probe ends `SCRAPE_TIMEOUT_OFFSET` earlier (at half the
    scrape timeout when that is shorter)."""
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadRequest(f"{SCRAPE_TIMEOUT_HEADER} must be a number of seconds, got {text!r}")
    return max(seconds - SCRAPE_TIMEOUT_OFFSET, seconds / 2)


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(target: Target, result: ProbeResult, accept: str) -> tuple[bytes, str]:
    """The probe's series in the format `accept` asks for, and its content type."""
    families = {
        name: Metric(name.removesuffix("_info") if kind == "info" else name, doc, kind)
        for name, kind, doc in FAMILIES
    }
    add_result(lambda n, ls, v: families[n].add_sample(n, ls, v), target, result)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(f for f in families.values() if f.samples))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


async def probe(request: web.Request) -> web.Response:
    on_demand = request.app[ON_DEMAND_KEY]
    try:
        wanted = parse_request(request.query, request.headers.get(SCRAPE_TIMEOUT_HEADER))
    except BadRequest as exc:
        on_demand.count(Outcome.INVALID)
        return web.Response(status=400, text=f"{exc}\n")
    answer = await on_demand.answer(wanted)
    if answer.target is None or answer.result is None:
        headers = {"Retry-After": "1"} if answer.status == 429 else None
        return web.Response(status=answer.status, text=f"{answer.message}\n", headers=headers)
    body, content_type = exposition(answer.target, answer.result, request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


def add_routes(app: web.Application, on_demand: OnDemand) -> None:
    """Serve /probe from `on_demand`."""
    app[ON_DEMAND_KEY] = on_demand
    app.router.add_get("/probe", probe)
