"""Memory and scrape cost of many stored results: what one process watching tens of
thousands of MX hosts spends on /metrics.

    python bench/exposition.py [--targets 20000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from exporter.collector import ExporterCollector, ResultCollector
from exporter.exposition import CachedExposition
from exporter.results import (
    CertificateInfo,
    ChainCertificate,
    Negotiated,
    ProbeResult,
    Verdict,
    VersionResult,
)
from exporter.store import ResultStore
from exporter.target import DEFAULT_VERSIONS, Target


def result(name: str, now: datetime) -> ProbeResult:
    chain = tuple(
        ChainCertificate(f"CN={name}", "CN=Issuer", now, now + timedelta(days=90), f"{i:064x}")
        for i in range(2)
    )
    cert = CertificateInfo(
        subject=f"CN={name}", issuer="CN=Issuer", serial="0123456789abcdef", sans=(name,),
        not_before=now, not_after=now + timedelta(days=90), key_type="RSA", key_bits=2048,
        signature_algorithm="sha256WithRSAEncryption", fingerprint_sha256="ab" * 32,
        chain=chain, verified=True,
    )  # fmt: skip
    versions = tuple(
        VersionResult(v, Verdict.ACCEPTED if v.value >= "1.2" else Verdict.REFUSED, "")
        for v in DEFAULT_VERSIONS
    )
    return ProbeResult(
        target=name, started=time.time(), duration=0.4, success=True, error=None,
        error_detail="", starttls_advertised=True, versions=versions,
        negotiated=Negotiated("TLSv1.3", "TLS_AES_256_GCM_SHA384"), certificate=cert,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=20000)
    args = parser.parse_args()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store = ResultStore()
    targets = tuple(
        Target(host=f"mx{i}.example.org", labels=(("site", "eu"),)) for i in range(args.targets)
    )
    store.set_targets(targets, frozenset())
    now = datetime.now(UTC)
    for target in targets:
        store.record(target, result(target.name, now))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    registry = CollectorRegistry(auto_describe=False)
    own = ExporterCollector(store)
    registry.register(ResultCollector(store))
    registry.register(own)
    exposition = CachedExposition(store, own)
    start = time.perf_counter()
    body = generate_latest(registry)
    elapsed = time.perf_counter() - start
    timings = []
    for _ in range(3):  # the first render fills the cache; later scrapes reuse it
        start = time.perf_counter()
        fast = exposition.render(CONTENT_TYPE_PLAIN_0_0_4)
        timings.append(time.perf_counter() - start)
    assert fast == body
    openmetrics_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    start = time.perf_counter()
    exposition.render(openmetrics_type)
    openmetrics_time = time.perf_counter() - start
    print(f"targets:              {args.targets}")
    print(f"results in memory:    {(after - before) / 1024:.1f} MiB (max RSS growth)")
    lines = body.count(b"\n")
    print(f"exposition:           {len(body) / 1e6:.1f} MB, {lines} lines")
    print(f"client library:       {elapsed:.2f} s per scrape")
    print(f"text fast path:       {timings[0]:.2f} s first scrape, {timings[-1]:.2f} s after")
    print(f"OpenMetrics (cached): {openmetrics_time:.2f} s")


if __name__ == "__main__":
    main()
