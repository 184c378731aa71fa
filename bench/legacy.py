"""`python -m bench.legacy`: connections per round with and without `legacy_interval`.

The same fleet (the responder of `python -m bench`) is probed by a fresh exporter on a short
interval, twice: testing every version each round, and with `legacy_interval` set, so
SSLv3, TLS 1.0 and 1.1 are tested in the first round and not again for an hour. The
responder counts the connections it accepted; over three intervals after the first round,
divided by the probes that finished meanwhile, that is the connections of a round.

    python -m bench.legacy                  # 200 targets
    python -m bench.legacy --targets 1000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.fleet import FleetConfig, config_text
from bench.fleetcerts import make_fleet_certs
from bench.fleetrun import Options, Responder, exporter, responder
from bench.processes import HOST, http_get
from bench.scrape import read_results

#: The interval of both runs: short, so the second round comes soon.
INTERVAL = 20.0


@dataclass(frozen=True)
class Run:
    """Connections the responder accepted per probe, after the first round."""

    label: str
    probes: int
    connections: int

    @property
    def per_probe(self) -> float:
        return self.connections / self.probes if self.probes else float("nan")


def _snapshot(fleet: Responder, port: int) -> tuple[int, int, int]:
    """(connections accepted so far, probes finished so far, targets with a result)."""
    results = read_results(http_get(f"http://{HOST}:{port}/metrics").decode())
    return int(fleet.stats()["accepted"]), int(results.probes_total), len(results.finished)


def measure(options: Options, fleet: Responder, count: int, legacy: str | None) -> Run:
    """One exporter: the first round, then three intervals in which every probe but the
    first tests only what its schedule says; connections and probes in those."""
    label = f"legacy_interval {legacy}" if legacy else "every version every round"
    fleet_config = FleetConfig(
        ca_file=options.certs / "ca.pem", interval=f"{INTERVAL:g}s", timeout="15s"
    )
    config = config_text(count, fleet.port, fleet_config)
    if legacy:
        config = config.replace("defaults:\n", f"defaults:\n  legacy_interval: {legacy}\n", 1)
    with exporter(options, label.replace(" ", "-"), config) as run:
        run.ready()
        deadline = time.monotonic() + 600
        while _snapshot(fleet, run.port)[2] < count:  # the first round: every target once
            if time.monotonic() > deadline or not run.process.alive:
                raise SystemExit(f"{label}: the first round did not end")
            time.sleep(0.5)
        accepted, probes, _ = _snapshot(fleet, run.port)
        time.sleep(3 * INTERVAL)
        accepted_after, probes_after, _ = _snapshot(fleet, run.port)
    return Run(label, probes_after - probes, accepted_after - accepted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.legacy", description=__doc__)
    parser.add_argument("--targets", type=int, default=200, help="fleet size (200)")
    args = parser.parse_args(argv)
    count = args.targets
    with tempfile.TemporaryDirectory(prefix="bench-legacy-") as directory:
        workdir = Path(directory)
        certs = workdir / "certs"
        make_fleet_certs(certs, count)
        options = Options(workdir=workdir, certs=certs, say=lambda _: None)
        with responder(options, count) as fleet:
            runs = [measure(options, fleet, count, None), measure(options, fleet, count, "1h")]
    print(f"{count} targets, interval {INTERVAL:g}s, three intervals after the first round:")
    print(f"{'':32} {'probes':>8} {'connections':>12} {'per probe':>10}")
    for run in runs:
        print(f"{run.label:32} {run.probes:>8,} {run.connections:>12,} {run.per_probe:>10.2f}")
    ratio = runs[1].per_probe / runs[0].per_probe
    print(f"connections per round with legacy_interval: {ratio:.2f} of those without it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
