"""`--storage.path` end to end: the console script killed in the middle of a round and
started again on the same directory serves what it knew at once, and does not probe again
what is not due; an unusable file or directory as users would meet them."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import make_test_certs
from tests.support.exporter_process import (
    ExporterProcess,
    Scrape,
    run_exporter,
    running_exporter,
    write_config,
)
from tests.support.inproc import Behaviour, InprocServer, tls_context

#: Every in-process server on an address of its own: one probe per host at a time, and the
#: silent one keeps its host busy.
HEALTHY, NO_STARTTLS, SILENT = "127.0.0.21", "127.0.0.22", "127.0.0.23"
#: How long the restarted exporter is watched for probes it should not make.
QUIET = 4.0


def _series(scrape: Scrape) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every per-target sample: (name, labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in scrape.samples
        if "target" in s.labels
    }


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, InprocServer]]:
    certs = make_test_certs(tmp_path / "certs")
    context = tls_context(str(certs.rsa.cert), str(certs.rsa.key))
    with (
        InprocServer(Behaviour(context=context), host=HEALTHY) as healthy,
        InprocServer(Behaviour(starttls=False), host=NO_STARTTLS) as plain,
        InprocServer(Behaviour(silent=True), host=SILENT) as silent,
    ):
        yield {"healthy": healthy, "no_starttls": plain, "silent": silent}


def _config(tmp_path: Path, servers: dict[str, InprocServer]) -> Path:
    targets = [
        {"host": s.host, "port": s.port, "name": name, "servername": "mail.test"}
        for name, s in servers.items()
    ]
    targets[-1]["timeout"] = "2m"  # the silent server's probe outlives the first exporter
    config = {
        "defaults": {"interval": "1h", "timeout": "20s", "ehlo_name": "probe.test"},
        "targets": targets,
    }
    return write_config(tmp_path / "config.yaml", config)


def test_a_restart_after_kill_serves_the_last_results_and_probes_only_what_is_due(
    tmp_path: Path, servers: dict[str, InprocServer]
) -> None:
    config = _config(tmp_path, servers)
    flags = [f"--storage.path={tmp_path / 'data'}"]
    first = ExporterProcess(config, extra_args=flags)
    with first:
        first.wait_for_targets(["healthy", "no_starttls"], timeout=30)
        first.wait_for_scrape(
            lambda s: (
                s.value("smtp_tls_exporter_storage_writes_total") == 2
                and s.value("smtp_tls_exporter_probes_running") == 1
            ),
            timeout=10,
            what="both results written, the silent server's probe still running",
        )
        assert servers["silent"].behaviour.connections  # the round is not over
        before = first.scrape()
        first.signal(signal.SIGKILL)
        assert first.wait_exit(10) == -signal.SIGKILL
    assert before.targets() == {"healthy", "no_starttls"}
    opened = {name: len(s.behaviour.connections) for name, s in servers.items()}

    with ExporterProcess(config, extra_args=flags) as second:
        after = second.scrape()  # the first scrape once ready
        restored = _series(before)
        assert {k: v for k, v in _series(after).items() if k in restored} == restored
        assert after.value("smtp_tls_probe_timestamp_seconds", target="healthy") == before.value(
            "smtp_tls_probe_timestamp_seconds", target="healthy"
        )
        assert after.value("smtp_tls_exporter_storage_restored_targets") == 2
        assert after.value("smtp_tls_exporter_probes_total") == 0
        time.sleep(QUIET)
        assert len(servers["healthy"].behaviour.connections) == opened["healthy"]
        assert len(servers["no_starttls"].behaviour.connections) == opened["no_starttls"]
        # The silent server's probe never ended, so nothing was kept: it starts again.
        assert len(servers["silent"].behaviour.connections) > opened["silent"]
        assert second.scrape().value("smtp_tls_exporter_probes_total") == 0
        assert any("results restored" in line for line in second.log_lines())


def test_a_damaged_database_is_set_aside_and_the_exporter_runs(
    tmp_path: Path, servers: dict[str, InprocServer]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "results.sqlite3").write_bytes(b"not a database, just bytes" * 100)
    with running_exporter(
        _config(tmp_path, servers), extra_args=[f"--storage.path={data}"]
    ) as exporter:
        scrape = exporter.wait_for_targets(["healthy"], timeout=30)
        assert scrape.value("smtp_tls_exporter_storage_errors_total", operation="open") == 1
        [line] = [line for line in exporter.log_lines() if "set aside" in line]
    assert "level=error" in line
    assert f"file={data / 'results.sqlite3'}" in line
    assert 'problem="file is not a database' in line
    [moved] = [p for p in data.iterdir() if p.name.startswith("results.sqlite3.corrupt-")]
    assert moved.read_bytes() == b"not a database, just bytes" * 100
    assert f"moved_to={moved}" in line


def test_a_storage_path_that_cannot_be_written_stops_the_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = write_config(tmp_path / "config.yaml", {"targets": [{"host": "127.0.0.1"}]})
    done = run_exporter(
        f"--config.file={config}", "--web.listen-address=127.0.0.1:0",
        f"--storage.path={blocker}/data",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"smtp-tls-exporter: --storage.path: {blocker}/data: cannot write there: Not a directory"
    )
    assert "Traceback" not in done.stderr
