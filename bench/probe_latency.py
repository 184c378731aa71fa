"""How long one probe of a healthy server takes on loopback (all five versions).

Starts an in-process STARTTLS server that speaks TLS 1.0-1.3 (or probes HOST:PORT given on
the command line) and prints the median, 95th percentile and worst of N probes.

    python bench/probe_latency.py [--runs 50] [HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.probe import probe
from exporter.target import Target


async def measure(target: Target, runs: int) -> list[float]:
    durations = []
    for _ in range(runs):
        start = time.perf_counter()
        result = await probe(target)
        durations.append(time.perf_counter() - start)
        if not result.success:
            raise SystemExit(f"probe failed: {result.error} {result.error_detail}")
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("address", nargs="?")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    if args.address:
        host, _, port = args.address.rpartition(":")
        durations = asyncio.run(measure(Target(host=host, port=int(port)), args.runs))
    else:
        import ssl

        from tests.support.certs import make_test_certs
        from tests.support.inproc import Behaviour, InprocServer, tls_context

        certs = make_test_certs(Path(tempfile.mkdtemp()))
        context = tls_context(
            str(certs.rsa.cert), str(certs.rsa.key), ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_3
        )
        with InprocServer(Behaviour(context=context)) as server:
            target = Target(
                host=server.host,
                port=server.port,
                servername="mail.test",
                ca_file=str(certs.ca_pem),
            )
            durations = asyncio.run(measure(target, args.runs))
    durations.sort()
    p95 = durations[max(0, int(len(durations) * 0.95) - 1)]
    print(f"probes: {len(durations)} (6 connections each: 5 versions and the default client)")
    print(f"median: {statistics.median(durations) * 1000:.1f} ms")
    print(f"p95:    {p95 * 1000:.1f} ms")
    print(f"worst:  {durations[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
