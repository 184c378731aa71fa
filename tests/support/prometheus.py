"""A real Prometheus server scraping the exporter, for tests of queries and alert rules.

``PrometheusServer`` writes a ``prometheus.yml`` with one scrape job, starts the
``prometheus`` binary (Debian's ``prometheus`` package, ``scripts/install-test-deps.sh``) on a
free loopback port with its TSDB in a temporary directory, and waits for ``/-/ready``.
Its HTTP API answers through :meth:`PrometheusServer.api`.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import yaml

from tests.support.exporter_process import HOST, free_port
from tests.support.process import ServiceProcess
from tests.support.tools import unavailable

#: The Accept header Prometheus 2.x sends when scraping.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
#: The Accept header Prometheus 3.x sends by default.
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)

JOB = "smtp-tls-exporter"


def prometheus_binary() -> str | None:
    """The ``prometheus`` executable, None when it is not installed."""
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )


def require_prometheus() -> str:
    """The prometheus binary; skip without it, but fail under CI=true."""
    binary = prometheus_binary()
    if binary is None:
        unavailable("prometheus is not installed (scripts/install-test-deps.sh installs it)")
        raise AssertionError("unreachable")
    return binary


class PrometheusError(AssertionError):
    """Prometheus did not start, or did not reach a state a test waited for."""


class PrometheusServer(ServiceProcess):
    """One Prometheus process; use as a context manager so it is always stopped."""

    name = "prometheus"
    error = PrometheusError
    poll_interval = 0.5

    def __init__(
        self,
        workdir: Path,
        scrape_targets: Sequence[str],
        *,
        rule_files: Sequence[Path] = (),
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        binary: str | None = None,
        scrape_configs: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        self.workdir = workdir
        self.scrape_targets = list(scrape_targets)
        #: Scrape jobs of the test's own (e.g. /probe through relabel_configs) instead of
        #: the one job scraping `scrape_targets`.
        self.scrape_configs = None if scrape_configs is None else list(scrape_configs)
        self.rule_files = list(rule_files)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.binary = binary or prometheus_binary() or "prometheus"
        self.port = free_port()
        self.config_file = workdir / "prometheus.yml"
        super().__init__(workdir / "prometheus.log")

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": self.scrape_configs
            or [{"job_name": JOB, "static_configs": [{"targets": self.scrape_targets}]}],
        }

    # --- life cycle -----------------------------------------------------------------

    def start(self, ready_timeout: float = 30.0) -> Self:
        """Write the config, start Prometheus and wait until ``/-/ready`` answers 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self._launch(
            [
                self.binary,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--log.level=info",
            ],
            ready_timeout=ready_timeout,
            cwd=self.workdir,
        )
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """As for any process, with more time: Prometheus closes its TSDB on the way out."""
        return super().stop(timeout)

    # --- HTTP API -------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a successful answer."""
        url = f"{self.base_url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as error:
            with error:
                text = error.read().decode(errors="replace")
            raise PrometheusError(f"GET {url}: {error.code} {text}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"GET {url}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result as a list of ``{"metric": ..., "value": [t, "v"]}``."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def active_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return targets

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    # --- waiting --------------------------------------------------------------------

    def wait_for_scrape_target_up(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every scrape target is up; the active targets."""

        def all_up() -> list[dict[str, Any]] | None:
            targets = self.active_targets()
            if targets and all(t["health"] == "up" for t in targets):
                return targets
            return None

        try:
            return self.wait_until(all_up, timeout=timeout, what="scrape targets up")
        except PrometheusError as error:
            raise PrometheusError(f"{error}\ntargets: {self.active_targets()}") from None
