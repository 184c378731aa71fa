"""The long-running exporter end to end: the console script, real Postfix targets, HTTP.

One exporter probes every Postfix test listener (plus a closed port) for the whole module;
reload, shutdown and logging tests start their own small exporters.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from exporter import __version__
from exporter.target import TLSMode, TLSVersion
from tests.support.exporter_process import (
    HOST,
    ExporterProcess,
    Scrape,
    free_port,
    listener_defaults,
    run_exporter,
    running_exporter,
    target_entry,
    write_config,
)
from tests.support.postfix import LISTENERS, PostfixServers, ipv6_loopback_usable
from tests.support.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The versions probed by default, and their `version` label values.
DEFAULT_VERSIONS = ("ssl3", "1.0", "1.1", "1.2", "1.3")
#: Listeners whose series also carry `site="test"`.
LABELLED = frozenset({"tls10", "all", "implicit", "expired"})
CLOSED = "closed"
#: The first round probes ~17 targets one at a time (one probe per host), postscreen ~6 s.
FIRST_ROUND_TIMEOUT = 90.0


def config_for(
    postfix: PostfixServers, names: list[str], *, interval: str = "5m", **defaults: Any
) -> dict[str, Any]:
    targets = [
        target_entry(postfix, name, **({"labels": {"site": "test"}} if name in LABELLED else {}))
        for name in names
    ]
    return {
        "defaults": listener_defaults(postfix, interval=interval, **defaults),
        "targets": targets,
    }


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    return free_port(HOST)


# --- one exporter probing every listener ------------------------------------------------


class Fleet:
    """The module's exporter and its first complete scrape."""

    def __init__(self, process: ExporterProcess, names: list[str], scrape: Scrape) -> None:
        self.process = process
        self.names = names
        self.scrape = scrape

    @property
    def all_targets(self) -> list[str]:
        return [*self.names, CLOSED]


@pytest.fixture(scope="module")
def fleet(postfix: PostfixServers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    names = postfix.names
    config = config_for(postfix, names, interval="10m")
    config["targets"].append({"host": HOST, "port": closed_port(), "name": CLOSED})
    path = write_config(tmp_path_factory.mktemp("fleet") / "config.yaml", config)
    with running_exporter(path) as process:
        scrape = process.wait_for_targets([*names, CLOSED], timeout=FIRST_ROUND_TIMEOUT)
        yield Fleet(process, names, scrape)


def expected_verify_error(name: str) -> str | None:
    listener = LISTENERS[name]
    if not listener.full_chain:
        return "incomplete_chain"
    return {"expired": "expired", "selfsigned": "self_signed"}.get(listener.cert)


def expected_negotiated(versions: frozenset[TLSVersion]) -> str | None:
    """What a default modern client (TLS 1.2 and newer) ends up with."""
    if TLSVersion.TLS1_3 in versions:
        return "TLSv1.3"
    if TLSVersion.TLS1_2 in versions:
        return "TLSv1.2"
    return None


def assert_certificate_series(
    scrape: Scrape, postfix: PostfixServers, name: str, context: str
) -> None:
    """The certificate series of one listener match the certificate it presents."""
    listener = postfix.listener(name)
    one = {"target": name}
    cert_series = [s for s in scrape.for_target(name) if s.name.startswith("smtp_tls_cert_")]
    if not listener.versions:
        assert cert_series == [], context  # no STARTTLS: no certificate to read
        return
    files = postfix.certs.all()[listener.cert]
    not_after = scrape.value("smtp_tls_cert_not_after_timestamp_seconds", **one)
    not_before = scrape.value("smtp_tls_cert_not_before_timestamp_seconds", **one)
    assert not_after is not None
    assert int(not_after) == int(files.not_after.timestamp())
    assert not_before is not None
    assert int(not_before) == int(files.not_before.timestamp())
    chain_not_after = scrape.value("smtp_tls_cert_chain_not_after_timestamp_seconds", **one)
    assert chain_not_after is not None
    assert chain_not_after <= not_after

    reason = expected_verify_error(name)
    assert scrape.value("smtp_tls_cert_verified", **one) == float(reason is None), context
    errors = scrape.series("smtp_tls_cert_verify_error_info", **one)
    assert [s.labels["reason"] for s in errors] == ([reason] if reason else []), context

    (info,) = scrape.series("smtp_tls_cert_info", **one)
    assert info.value == 1
    leaf = files.leaf_certificate()
    if listener.cert == "ecdsa":
        assert (info.labels["key_type"], info.labels["key_bits"]) == ("EC", "256")
    else:
        assert (info.labels["key_type"], info.labels["key_bits"]) == ("RSA", "2048")
    assert info.labels["fingerprint_sha256"] == leaf.fingerprint(hashes.SHA256()).hex()
    if listener.cert != "selfsigned":
        assert "localhost" in info.labels["sans"]


@pytest.mark.postfix
@pytest.mark.parametrize("name", list(LISTENERS))
def test_listener_series(fleet: Fleet, postfix: PostfixServers, name: str) -> None:
    if name not in fleet.names:
        pytest.skip(f"listener {name} does not run here (no usable ::1)")
    listener = postfix.listener(name)
    scrape = fleet.scrape
    one = {"target": name}
    context = "\n".join(str(s) for s in scrape.for_target(name))

    supported = {
        s.labels["version"]: s.value for s in scrape.series("smtp_tls_version_supported", **one)
    }
    expected_versions = {v: float(TLSVersion(v) in listener.versions) for v in DEFAULT_VERSIONS}
    assert supported == expected_versions, context
    assert supported["ssl3"] == 0
    assert scrape.value("smtp_tls_probe_success", **one) == 1, context
    assert scrape.series("smtp_tls_probe_error_info", **one) == []

    starttls = scrape.value("smtp_tls_starttls_advertised", **one)
    if listener.tls is TLSMode.IMPLICIT:
        assert starttls is None, context
    else:
        assert starttls == float(listener.starttls), context

    negotiated = scrape.series("smtp_tls_negotiated_info", **one)
    expected = expected_negotiated(listener.versions)
    assert [s.labels["version"] for s in negotiated] == ([expected] if expected else []), context
    assert all(s.value == 1 and s.labels["cipher"] for s in negotiated)

    site = "test" if name in LABELLED else None
    for sample in scrape.for_target(name):
        assert sample.labels.get("site") == site, sample

    duration = scrape.value("smtp_tls_probe_duration_seconds", **one)
    assert duration is not None
    assert 0 < duration < 30
    assert duration >= listener.greet_delay
    finished = scrape.value("smtp_tls_probe_timestamp_seconds", **one)
    assert finished is not None
    assert time.time() - 300 < finished <= time.time()

    assert_certificate_series(scrape, postfix, name, context)


@pytest.mark.postfix
def test_exporter_series(fleet: Fleet) -> None:
    scrape = fleet.scrape
    assert scrape.value("smtp_tls_exporter_targets") == len(fleet.all_targets)
    assert scrape.targets() == set(fleet.all_targets)
    probes = scrape.value("smtp_tls_exporter_probes_total")
    assert probes is not None
    assert probes >= len(fleet.all_targets)
    assert scrape.value("smtp_tls_exporter_config_last_reload_successful") == 1
    loaded = scrape.value("smtp_tls_exporter_config_last_reload_success_timestamp_seconds")
    assert loaded is not None
    assert time.time() - 600 < loaded <= time.time()
    (build,) = scrape.series("smtp_tls_exporter_build_info")
    assert build.value == 1
    assert build.labels["version"] == __version__
    assert build.labels["python_version"]
    assert "OpenSSL" in build.labels["openssl_version"]
    for family in scrape.families.values():
        assert family.documentation, f"{family.name} has no HELP"
        assert family.type in ("gauge", "counter", "info"), family.name
    # Exporter-wide series carry no target label.
    for sample in scrape.samples:
        if sample.name.startswith("smtp_tls_exporter_"):
            assert "target" not in sample.labels, sample


@pytest.mark.postfix
def test_closed_port_target(fleet: Fleet) -> None:
    scrape = fleet.scrape
    one = {"target": CLOSED}
    assert scrape.value("smtp_tls_probe_success", **one) == 0
    (error,) = scrape.series("smtp_tls_probe_error_info", **one)
    assert error.labels["reason"] == "connect_refused"
    assert error.value == 1
    assert scrape.series("smtp_tls_version_supported", **one) == []
    assert scrape.series("smtp_tls_starttls_advertised", **one) == []
    assert scrape.series("smtp_tls_cert_not_after_timestamp_seconds", **one) == []
    failures = scrape.value("smtp_tls_exporter_probe_failures_total", reason="connect_refused")
    assert failures is not None
    assert failures >= 1
    assert scrape.value("smtp_tls_exporter_probe_failures_total", reason="internal_error") == 0


@pytest.mark.postfix
def test_failing_probe_is_logged_with_its_reason(fleet: Fleet) -> None:
    lines = [
        line
        for line in fleet.process.log_lines()
        if "probe failed" in line and f"target={CLOSED}" in line
    ]
    assert lines, fleet.process.log()
    assert "level=info" in lines[0]
    assert "reason=connect_refused" in lines[0]
    assert "Traceback" not in fleet.process.log()


@pytest.mark.postfix
@pytest.mark.prometheus
def test_promtool_accepts_a_real_scrape(fleet: Fleet) -> None:
    promtool = require_tool("promtool", "scripts/install-test-deps.sh installs it")
    text = fleet.process.metrics_text()
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.postfix
def test_openmetrics_when_asked(fleet: Fleet) -> None:
    response = fleet.process.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status == 200
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("application/openmetrics-text"), content_type
    assert "version=1.0.0" in content_type
    assert response.text.endswith("# EOF\n")
    families = {
        f.name: f
        for f in openmetrics_families(response.text)  # type: ignore[no-untyped-call]
    }  # the strict parser
    success = {s.labels["target"]: s.value for s in families["smtp_tls_probe_success"].samples}
    assert success["all"] == 1
    assert success[CLOSED] == 0
    assert families["smtp_tls_cert"].type == "info"
    assert families["smtp_tls_exporter_probes"].type == "counter"
    plain = fleet.process.get("/metrics")
    assert plain.headers["Content-Type"].startswith("text/plain")
    assert "# EOF" not in plain.text


@pytest.mark.postfix
def test_gzip_when_asked(fleet: Fleet) -> None:
    response = fleet.process.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(response.body).decode()
    assert Scrape(text).value("smtp_tls_probe_success", target="all") == 1


@pytest.mark.postfix
def test_health_readiness_and_status_page(fleet: Fleet) -> None:
    process = fleet.process
    assert process.get("/-/healthy").status == 200
    assert process.get("/-/ready").status == 200
    page = process.get("/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    for name in fleet.all_targets:
        assert f"<td>{name}</td>" in page.text, name
    closed_row = next(row for row in page.text.split("<tr>") if f"<td>{CLOSED}</td>" in row)
    assert "connect_refused" in closed_row
    all_row = next(row for row in page.text.split("<tr>") if "<td>all</td>" in row)
    assert "<td>ok</td>" in all_row
    assert process.get("/-/reload").status == 405


# --- reload -----------------------------------------------------------------------------


@pytest.mark.postfix
def test_sighup_adds_removes_and_keeps_targets(postfix: PostfixServers, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    write_config(path, config_for(postfix, ["tls12", "tls13", "tls11"]))
    with running_exporter(path) as process:
        before = process.wait_for_targets(["tls12", "tls13", "tls11"], timeout=60)
        kept_at = before.value("smtp_tls_probe_timestamp_seconds", target="tls12")
        relabelled_at = before.value("smtp_tls_probe_timestamp_seconds", target="tls11")
        loaded_at = before.value("smtp_tls_exporter_config_last_reload_success_timestamp_seconds")
        assert kept_at is not None
        assert relabelled_at is not None
        assert loaded_at is not None

        # tls13 leaves, tls10 arrives, tls11 gets another label and interval (neither changes
        # what a probe measures), tls12 stays as it is.
        config = config_for(postfix, ["tls12", "tls11", "tls10"])
        config["targets"][1] |= {"labels": {"site": "elsewhere"}, "interval": "10m"}
        write_config(path, config)
        process.sighup()
        after = process.wait_for_scrape(
            lambda s: (
                "tls13" not in s.targets("smtp_tls_probe_success")
                and s.value("smtp_tls_exporter_targets") == 3
            ),
            timeout=10,
            what="the reloaded target list",
        )
        # Right after the reload: nothing re-probed, the removed target's series are gone.
        assert after.value("smtp_tls_probe_timestamp_seconds", target="tls12") == kept_at
        assert after.value("smtp_tls_probe_timestamp_seconds", target="tls11") == relabelled_at
        assert after.for_target("tls13") == []
        assert after.value("smtp_tls_exporter_config_last_reload_successful") == 1
        reloaded_at = after.value("smtp_tls_exporter_config_last_reload_success_timestamp_seconds")
        assert reloaded_at is not None
        assert reloaded_at > loaded_at

        done = process.wait_for_targets(["tls10"], timeout=30)
        assert done.value("smtp_tls_version_supported", target="tls10", version="1.0") == 1
        assert done.value("smtp_tls_probe_timestamp_seconds", target="tls12") == kept_at
        assert done.value("smtp_tls_probe_timestamp_seconds", target="tls11") == relabelled_at
        assert {s.labels.get("site") for s in done.for_target("tls11")} == {"elsewhere"}
        assert done.for_target("tls13") == []
        assert "config loaded" in process.log()


BAD_FILES = {
    "yaml": ("targets: [\n", "invalid YAML"),
    "key": (
        "targets:\n  - host: 127.0.0.1\n    prot: 25\n",
        "targets[0].prot: unknown key",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_reload_keeps_the_old_config(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    good: dict[str, Any] = {
        "defaults": {"interval": "5m", "timeout": "5s", "ehlo_name": "client.test"},
        "targets": [{"host": HOST, "port": closed_port(), "name": "old"}],
    }
    write_config(path, good)
    text, problem = BAD_FILES[kind]
    with running_exporter(path) as process:
        process.wait_for_targets(["old"], timeout=20)
        path.write_text(text)
        response = process.reload()
        assert response.status == 500
        assert str(path) in response.text, response.text
        assert problem in response.text, response.text

        scrape = process.scrape()
        assert scrape.value("smtp_tls_exporter_config_last_reload_successful") == 0
        assert scrape.targets() == {"old"}
        assert scrape.value("smtp_tls_exporter_targets") == 1
        assert scrape.value("smtp_tls_probe_success", target="old") == 0
        log = process.log()
        failed = [line for line in log.splitlines() if "config reload failed" in line]
        assert failed, log
        assert "level=error" in failed[0]
        assert str(path) in failed[0], failed[0]
        assert problem in failed[0], failed[0]
        assert "FAILED" in process.get("/").text

        # SIGHUP reports the same way.
        process.sighup()
        process.wait_until(
            lambda: sum("config reload failed" in line for line in process.log_lines()) >= 2,
            timeout=10,
            what="a second reload failure in the log",
        )

        good["targets"].append({"host": HOST, "port": closed_port(), "name": "new"})
        write_config(path, good)
        response = process.reload()
        assert response.status == 200, response.text
        scrape = process.wait_for_targets(["old", "new"], timeout=20)
        assert scrape.value("smtp_tls_exporter_config_last_reload_successful") == 1
        assert process.running
        assert "Traceback" not in process.log()


# --- life cycle and command line --------------------------------------------------------


@pytest.mark.postfix
def test_sigterm_stops_promptly_during_a_probe(postfix: PostfixServers, tmp_path: Path) -> None:
    # The postscreen listener holds the greeting for seconds: a probe is in flight.
    path = write_config(tmp_path / "config.yaml", config_for(postfix, ["postscreen"]))
    process = ExporterProcess(path)
    try:
        process.start()  # ready: the first probe has started
        assert process.scrape().targets() == set()  # still probing
        started = time.monotonic()
        process.sigterm()
        assert process.wait_exit(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert "Traceback" not in process.log()
        assert "shutting down" in process.log()
    finally:
        process.stop()


def test_sigterm_when_idle(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.yaml", {"targets": [{"host": HOST, "port": closed_port()}]}
    )
    with running_exporter(path) as process:
        process.sigterm()
        assert process.wait_exit(timeout=10) == 0


def test_bad_config_at_startup(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("targets:\n  - host: 127.0.0.1\n    port: 70000\n    tls: sometimes\n")
    done = run_exporter(f"--config.file={path}", f"--web.listen-address={HOST}:{free_port()}")
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    assert f"{path}: targets[0].port:" in done.stderr
    assert f"{path}: targets[0].tls:" in done.stderr  # every problem at once


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    done = run_exporter(f"--config.file={path}", f"--web.listen-address={HOST}:{free_port()}")
    assert done.returncode == 1
    assert str(path) in done.stderr
    assert "Traceback" not in done.stderr


def test_config_check() -> None:
    done = run_exporter("--config.file=config.example.yaml", "--config.check", cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "config.example.yaml" in done.stdout


def test_config_check_of_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("defaults:\n  interval: soon\ntargets: []\n")
    done = run_exporter(f"--config.file={path}", "--config.check")
    assert done.returncode == 1
    assert f"{path}: defaults.interval:" in done.stderr
    assert "Traceback" not in done.stderr


def test_listen_address_in_use(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.yaml", {"targets": [{"host": HOST, "port": closed_port()}]}
    )
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_exporter(f"--config.file={path}", f"--web.listen-address={HOST}:{port}")
    assert done.returncode == 1, done
    assert f"{port}" in done.stderr, done.stderr
    assert "listen" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_listens_on_ipv6_loopback(tmp_path: Path) -> None:
    if not ipv6_loopback_usable():
        pytest.skip("::1 is not usable on this machine")
    path = write_config(
        tmp_path / "config.yaml", {"targets": [{"host": HOST, "port": closed_port()}]}
    )
    process = ExporterProcess(path, host="::1")
    with process:
        assert process.base_url.startswith("http://[::1]:")
        assert process.get("/-/healthy").status == 200
        process.wait_for_scrape(
            lambda s: s.value("smtp_tls_exporter_targets") == 1, timeout=10, what="targets"
        )
        with socket.socket() as sock:  # only where it was told to listen
            assert sock.connect_ex((HOST, process.port)) != 0


@pytest.mark.parametrize(
    "args",
    [["--no-such-flag"], ["--log.level=loud"], ["--web.listen-address=nowhere"]],
    ids=["unknown", "bad-choice", "bad-address"],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.yaml", {"targets": [{"host": HOST, "port": closed_port()}]}
    )
    done = run_exporter(f"--config.file={path}", *args)
    assert done.returncode == 2, done
    assert "usage:" in done.stderr
    assert "Traceback" not in done.stderr


def test_json_logs(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.yaml",
        {"targets": [{"host": HOST, "port": closed_port(), "name": "refused"}]},
    )
    with running_exporter(path, extra_args=["--log.format=json"]) as process:
        process.wait_until(
            lambda: "probe failed" in process.log(), timeout=20, what="a failed probe's log line"
        )
        process.sigterm()
        assert process.wait_exit(timeout=10) == 0
        events = [json.loads(line) for line in process.log_lines()]
    messages = [event["msg"] for event in events]
    assert "config loaded" in messages, messages
    assert "listening" in messages, messages
    failed = next(event for event in events if event["msg"] == "probe failed")
    assert failed["level"] == "info"
    assert failed["target"] == "refused"
    assert failed["reason"] == "connect_refused"
    assert all({"ts", "level", "msg"} <= event.keys() for event in events)


def test_probing_goes_on_after_reloads_during_dispatch(tmp_path: Path) -> None:
    # One probe at a time over many quick targets: the dispatcher starts a probe on nearly
    # every turn of the event loop, so reloads land between a start and the probe's first step.
    port = closed_port()
    names = [f"host{i}" for i in range(1, 41)]

    def config(timeout: str) -> dict[str, Any]:
        return {
            "defaults": {"interval": "1s", "timeout": timeout, "ehlo_name": "client.test"},
            "targets": [
                {"host": f"127.0.0.{i}", "port": port, "name": name}
                for i, name in enumerate(names, start=1)
            ],
        }

    def probed_since(when: float) -> Callable[[Scrape], bool]:
        def check(scrape: Scrape) -> bool:
            stamps = [scrape.value("smtp_tls_probe_timestamp_seconds", target=n) for n in names]
            return all(stamp is not None and stamp > when for stamp in stamps)

        return check

    path = write_config(tmp_path / "config.yaml", config("1s"))
    with running_exporter(path, extra_args=["--probe.concurrency=1"]) as process:
        process.wait_for_targets(names, timeout=30)
        for reloads in range(100, 301, 100):
            for reload in range(100):
                # Another timeout changes every target, so each reload replaces them all.
                write_config(path, config("500ms" if reload % 2 else "1s"))
                process.sighup()
                time.sleep(0.02)
            # Reloads take turns: this one ends after those the signals started.
            assert process.reload().status == 200
            process.wait_for_scrape(
                probed_since(time.time()),
                timeout=10,
                what=f"a probe of every target after {reloads} reloads",
            )


@pytest.mark.postfix
def test_the_exporter_runs_on_uvloop_where_installed(fleet: Fleet) -> None:
    """uvloop is a dependency wherever it has wheels; the start-up line says which loop
    runs, and every other test of the running exporter runs on it."""
    import importlib.util

    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    started = [line for line in fleet.process.log_lines() if "probe concurrency" in line]
    assert started, fleet.process.log()
    assert f"event_loop={expected}" in started[0]
