"""/probe as Prometheus users run it: the exporter process, real Postfix listeners, and a
real Prometheus scraping /probe through relabel_configs (`__address__` -> `__param_target`
-> `instance`, the exporter as `__address__`), as the README shows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.exporter_process import (
    HOST,
    ExporterProcess,
    Scrape,
    listener_defaults,
    target_entry,
    write_config,
)
from tests.support.postfix import PostfixServers
from tests.support.prometheus import PrometheusServer, require_prometheus

pytestmark = [pytest.mark.postfix, pytest.mark.prometheus]

README = Path(__file__).resolve().parent.parent / "README.md"
JOB = "smtp-tls-probe"
#: Listeners scraped through /probe, and the versions each accepts.
PROBED = {"tls10": {"1.0"}, "tls12": {"1.2"}, "all": {"1.0", "1.1", "1.2", "1.3"}}


def readme_scrape_config() -> dict[str, Any]:
    """The scrape job the README shows for /probe."""
    section = README.read_text().split("\n## Probing on demand: /probe\n", 1)[1]
    block = next(part for part in section.split("```yaml\n")[1:] if "scrape_configs" in part)
    (job,) = yaml.safe_load(block.split("```", 1)[0])["scrape_configs"]
    assert isinstance(job, dict)
    return job


def scrape_config(postfix: PostfixServers, exporter: str) -> dict[str, Any]:
    """The README's scrape job, with the listeners as targets, scraped every 5 s."""
    job = readme_scrape_config()
    *relabel, to_exporter = job["relabel_configs"]
    return job | {
        "params": {"servername": ["localhost"]},
        "scrape_interval": "5s",
        "scrape_timeout": "5s",
        "static_configs": [
            {"targets": [f"{HOST}:{postfix.listener(name).port}" for name in PROBED]}
        ],
        "relabel_configs": [*relabel, to_exporter | {"replacement": exporter}],
    }


def test_the_readme_scrape_config_is_the_blackbox_pattern() -> None:
    job = readme_scrape_config()
    assert job["job_name"] == JOB
    assert job["metrics_path"] == "/probe"
    assert job["relabel_configs"] == [
        {"source_labels": ["__address__"], "target_label": "__param_target"},
        {"source_labels": ["__param_target"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": "mail-tls-exporter:9025"},
    ]


@pytest.fixture(scope="module")
def exporter(
    postfix: PostfixServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    workdir = tmp_path_factory.mktemp("ondemand")
    config = {
        "defaults": listener_defaults(postfix, versions=["1.0", "1.1", "1.2", "1.3"]),
        "targets": [target_entry(postfix, "all")],
        "on_demand": {"allow": ["127.0.0.1"], "min_interval": "1m"},
    }
    process = ExporterProcess(write_config(workdir / "exporter.yaml", config))
    try:
        process.start()
        process.wait_for_targets(["all"], timeout=60)
        yield process
    finally:
        process.stop()


def test_probe_answers_with_the_series_of_metrics(
    exporter: ExporterProcess, postfix: PostfixServers
) -> None:
    """The listener `all` is a config target too: /probe has the same families and labels,
    the `target` label being host:port."""
    port = postfix.listener("all").port
    response = exporter.get(f"/probe?target={HOST}:{port}&servername=localhost", timeout=60)
    assert response.status == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    probed = Scrape(response.text)
    assert probed.value("smtp_tls_probe_success") == 1
    name = f"{HOST}:{port}"
    assert {s.labels["target"] for s in probed.samples} == {name}
    scheduled = exporter.scrape().for_target("all")

    def shape(samples: list[Any]) -> set[tuple[str, tuple[str, ...]]]:
        return {(s.name, tuple(sorted(k for k in s.labels if k != "target"))) for s in samples}

    assert shape(probed.samples) == shape(scheduled)
    for version in ("1.0", "1.1", "1.2", "1.3"):
        assert probed.value("smtp_tls_version_supported", version=version) == 1
    assert probed.value("smtp_tls_cert_verified") == 1


def test_refusals_over_http(exporter: ExporterProcess, postfix: PostfixServers) -> None:
    port = postfix.listener("all").port
    refused = exporter.get(f"/probe?target=localhost:{port}")
    assert (refused.status, refused.text) == (403, "localhost is not in on_demand.allow\n")
    bad = exporter.get("/probe?target=127.0.0.1:0")
    assert bad.status == 400
    assert bad.text == "target '127.0.0.1:0': port must be a number from 1 to 65535, got '0'\n"
    scrape = exporter.scrape()
    assert (scrape.value("smtp_tls_exporter_on_demand_probes_total", result="refused") or 0) >= 1
    assert (scrape.value("smtp_tls_exporter_on_demand_probes_total", result="invalid") or 0) >= 1


def test_prometheus_scrapes_probe_through_relabel_configs(
    exporter: ExporterProcess, postfix: PostfixServers, tmp_path: Path
) -> None:
    binary = require_prometheus()
    prometheus = PrometheusServer(
        tmp_path / "prometheus",
        [],
        binary=binary,
        scrape_configs=[scrape_config(postfix, exporter.address)],
    )
    with prometheus:
        targets = prometheus.wait_for_scrape_target_up(timeout=60)
        assert {t["labels"]["instance"] for t in targets} == {
            f"{HOST}:{postfix.listener(name).port}" for name in PROBED
        }
        assert {t["scrapeUrl"].split("?")[0] for t in targets} == {
            f"http://{exporter.address}/probe"
        }
        for name, accepted in PROBED.items():
            instance = f"{HOST}:{postfix.listener(name).port}"
            selector = f'{{job="{JOB}",instance="{instance}"}}'

            def versions(selector: str = selector) -> dict[str, float] | None:
                found = prometheus.query(f"smtp_tls_version_supported{selector}")
                return {r["metric"]["version"]: float(r["value"][1]) for r in found} or None

            seen = prometheus.wait_until(versions, timeout=30, what=f"series of {instance}")
            assert {v for v, value in seen.items() if value == 1} == accepted
            (success,) = prometheus.query(f"smtp_tls_probe_success{selector}")
            assert success["metric"]["target"] == instance  # target and instance agree
            assert success["value"][1] == "1"
    scrape = exporter.scrape()
    assert (scrape.value("smtp_tls_exporter_on_demand_probes_total", result="probed") or 0) >= 3
