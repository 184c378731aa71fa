"""Real Prometheus scrapes an exporter holding ten thousand targets' results in under a
second, as it asks (its own Accept header, gzip): the figure users see on their targets page
as the scrape duration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.exporter_process import HOST, ExporterProcess, free_port, write_config
from tests.support.prometheus import JOB, PrometheusServer, require_prometheus

TARGETS = 10_000
#: How many of Prometheus's own scrapes the figure is taken over.
SCRAPES = 5


def fleet_config(port: int) -> dict[str, object]:
    """Ten thousand targets on loopback addresses where nothing listens: each probe ends at
    once with `connect_refused`, and every target has its full set of failure series."""
    hosts = [f"127.{20 + i // 62500}.{(i // 250) % 250 + 1}.{i % 250 + 1}" for i in range(TARGETS)]
    return {
        "defaults": {"interval": "1h", "timeout": "10s", "ehlo_name": "client.test"},
        "targets": [{"host": host, "port": port} for host in hosts],
    }


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    workdir = tmp_path_factory.mktemp("scale")
    config = write_config(workdir / "exporter.yaml", fleet_config(free_port()))
    process = ExporterProcess(config)
    try:
        process.start()
        process.wait_for_scrape(
            lambda scrape: scrape.value("smtp_tls_exporter_probes_total") == TARGETS,
            timeout=180,
            what=f"a first round of {TARGETS} targets",
            interval=2.0,
        )
        yield process
    finally:
        process.stop()


def test_prometheus_scrapes_ten_thousand_targets_in_under_a_second(
    exporter: ExporterProcess, tmp_path: Path
) -> None:
    binary = require_prometheus()
    with PrometheusServer(
        tmp_path / "prometheus", [f"{HOST}:{exporter.port}"], scrape_interval="2s", binary=binary
    ) as prometheus:
        prometheus.wait_for_scrape_target_up(timeout=30)
        selector = f'{{job="{JOB}"}}'

        def scraped() -> bool:
            counts = prometheus.query(f"count_over_time(scrape_duration_seconds{selector}[5m])")
            return bool(counts) and float(counts[0]["value"][1]) >= SCRAPES

        prometheus.wait_until(scraped, timeout=60, what=f"{SCRAPES} scrapes")
        (slowest,) = prometheus.query(f"max_over_time(scrape_duration_seconds{selector}[5m])")
        (samples,) = prometheus.query(f"scrape_samples_scraped{selector}")
        (successes,) = prometheus.query(f"count(smtp_tls_probe_success{selector} == 0)")
    assert float(slowest["value"][1]) < 1.0
    assert float(samples["value"][1]) > TARGETS * 4  # success, error, duration, timestamp each
    assert float(successes["value"][1]) == TARGETS
