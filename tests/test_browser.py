"""The status pages in a real browser: headless Chromium loads them from a running exporter
that probes the Postfix listeners, and the test reads what a person would see there (the DOM
after loading) against what the same exporter's /metrics says. Screenshots of each page are
kept in the test's temporary directory.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin

import pytest

from exporter.target import TLSVersion
from tests.support.exporter_process import (
    HOST,
    ExporterProcess,
    Scrape,
    free_port,
    listener_defaults,
    running_exporter,
    target_entry,
    write_config,
)
from tests.support.pages import Page
from tests.support.postfix import PostfixServers
from tests.support.tools import require_tool

LISTENERS = ("all", "tls12", "tls10_11", "no_starttls", "expired")
#: A name with everything HTML and URLs treat specially, for the tls13 listener.
ODD = 'odd <b>name</b> & "quotes" ?#/'
CLOSED = "closed"
NAMES = (*LISTENERS, ODD, CLOSED)
VERSIONS = ("ssl3", "1.0", "1.1", "1.2", "1.3")
#: Six targets of one host are probed one after another.
FIRST_ROUND_TIMEOUT = 90.0
#: One run of the browser: start, load, dump, quit.
BROWSER_TIMEOUT = 60.0


@dataclass(frozen=True)
class Browser:
    """Headless Chromium, one run per page, with a profile of its own."""

    path: str
    profile: Path

    def _run(self, *args: str) -> str:
        command = [
            self.path,
            "--headless",
            "--no-sandbox",  # the tests run as root, where Chromium's sandbox will not start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={self.profile}",
            *args,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT, check=False
        )
        assert done.returncode == 0, f"{command}: {done.returncode}\n{done.stderr[-4000:]}"
        return done.stdout

    def dom(self, url: str) -> Page:
        """The page as loaded: the DOM the browser built, read as a person sees it."""
        return Page(self._run("--dump-dom", url))

    def screenshot(self, url: str, path: Path, width: int, height: int) -> Path:
        self._run(f"--screenshot={path}", f"--window-size={width},{height}", url)
        assert path.is_file(), f"no screenshot at {path}"
        assert path.stat().st_size > 1000, f"an empty screenshot at {path}"
        print(f"screenshot: {path}")
        return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Browser:
    path = require_tool("chromium", "scripts/install-test-deps.sh installs it")
    return Browser(path, tmp_path_factory.mktemp("chromium-profile"))


@dataclass(frozen=True)
class Fleet:
    process: ExporterProcess
    scrape: Scrape

    def url(self, path: str) -> str:
        return self.process.base_url + path


@pytest.fixture(scope="module")
def fleet(postfix: PostfixServers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    targets = [target_entry(postfix, name) for name in LISTENERS]
    targets.append(target_entry(postfix, "tls13") | {"name": ODD})
    targets.append({"host": HOST, "port": free_port(HOST), "name": CLOSED})
    config = {"defaults": listener_defaults(postfix), "targets": targets}
    path = write_config(tmp_path_factory.mktemp("browser") / "config.yaml", config)
    with running_exporter(path) as process:
        scrape = process.wait_for_targets(NAMES, timeout=FIRST_ROUND_TIMEOUT)
        yield Fleet(process, scrape)


def expected_verdict(scrape: Scrape, target: str, version: str) -> str:
    """What /metrics says of one version: 1 accepted, 0 refused, absent unknown."""
    value = scrape.value("smtp_tls_version_supported", target=target, version=version)
    return {None: "unknown", 1.0: "accepted", 0.0: "refused"}[value]


def days_left(scrape: Scrape, target: str) -> float | None:
    not_after = scrape.value("smtp_tls_cert_not_after_timestamp_seconds", target=target)
    finished = scrape.value("smtp_tls_probe_timestamp_seconds", target=target)
    if not_after is None or finished is None:
        return None
    return (not_after - finished) / 86400


@pytest.mark.postfix
def test_the_overview_shows_what_metrics_say(
    fleet: Fleet, browser: Browser, tmp_path: Path
) -> None:
    url = fleet.url("/?sort=name")
    page = browser.dom(url)
    shot = browser.screenshot(url, tmp_path / "overview.png", 1800, 700)
    scrape = fleet.process.scrape()
    rows = {row["Target"]: row for row in page.table()}
    assert sorted(rows) == sorted(NAMES), f"{page.text[:2000]}\nscreenshot: {shot}"
    assert list(rows) == sorted(NAMES, key=str.casefold), f"not sorted by name; see {shot}"

    for name, row in rows.items():
        seen = {version: row[TLSVersion(version).display] for version in VERSIONS}
        wanted = {version: expected_verdict(scrape, name, version) for version in VERSIONS}
        assert seen == wanted, f"{name}: {row}; screenshot: {shot}"
        days = days_left(scrape, name)
        if days is None:
            assert row["Cert days"] == "", row
        else:
            assert abs(float(row["Cert days"]) - days) <= 1, (row, days)
    assert rows["all"]["TLSv1.2"] == "accepted"
    assert rows["tls12"]["TLSv1.0"] == "refused"
    assert rows["all"]["Status"] == "ok"
    assert rows["all"]["Certificate"] == "verified"
    assert rows["all"]["STARTTLS"] == "yes"
    assert rows["no_starttls"]["STARTTLS"] == "no"
    assert rows["expired"]["Certificate"] == "expired"
    assert float(rows["expired"]["Cert days"]) < 0
    assert rows[CLOSED]["Status"] == "connect_refused"
    assert rows[CLOSED]["Failure"].endswith("why?"), rows[CLOSED]
    assert "7 targets: 1 failing, 0 waiting, 6 ok." in page.text, page.text[:2000]
    assert "Accepting a legacy version (SSLv2, SSLv3, TLS 1.0 or 1.1): 3." in page.text

    failing = browser.dom(fleet.url("/?status=failing"))
    assert [row["Target"] for row in failing.table()] == [CLOSED]


@pytest.mark.postfix
def test_the_link_of_a_target_leads_to_its_page(fleet: Fleet, browser: Browser) -> None:
    overview_url = fleet.url("/")
    links = browser.dom(overview_url).links
    link = "target?name=" + quote(ODD, safe="")
    assert link in links, links
    page = browser.dom(urljoin(overview_url, link))
    assert ODD in page.text
    assert ["Address", f"{HOST}:2604"] in page.rows
    missing = browser.dom(fleet.url("/target?name=nobody"))
    assert "No such target" in missing.text


@pytest.mark.postfix
def test_the_target_page_shows_the_transcript_and_the_certificate(
    fleet: Fleet, browser: Browser, tmp_path: Path
) -> None:
    overview_url = fleet.url("/")
    assert "target?name=all" in browser.dom(overview_url).links
    url = urljoin(overview_url, "target?name=all")
    page = browser.dom(url)
    shot = browser.screenshot(url, tmp_path / "target-all.png", 1280, 4000)
    scrape = fleet.process.scrape()
    context = f"{page.text[:3000]}\nscreenshot: {shot}"

    for version in VERSIONS:
        display = TLSVersion(version).display
        (row,) = [row for row in page.rows if len(row) == 4 and row[0] == display]
        assert row[1] == expected_verdict(scrape, "all", version), (row, context)
    assert ["Status", "ok"] in page.rows, context

    lines = [
        row[1:] for row in page.rows if len(row) == 3 and re.fullmatch(r"\+\d+\.\d ms", row[0])
    ]
    assert lines, f"no transcript lines; {context}"
    assert any(d == "S:" and text.startswith("220") for d, text in lines), lines
    assert ["C:", "EHLO client.test"] in lines, lines
    assert ["C:", "STARTTLS"] in lines, lines

    (info,) = scrape.series("smtp_tls_cert_info", target="all")
    assert ["Subject", info.labels["subject"]] in page.rows, context
    assert ["Verification", "verified"] in page.rows, context
    chain = [row for row in page.rows if len(row) == 7 and row[0].isdigit()]
    assert len(chain) >= 2, context  # the leaf and its intermediate
    assert all(row[5].endswith("days left") for row in chain), chain

    expired = browser.dom(urljoin(overview_url, "target?name=expired"))
    verification = [row for row in expired.rows if row[:1] == ["Verification"]]
    assert verification, expired.text[:3000]
    assert verification[0][1].startswith("NOT verified: expired"), verification
