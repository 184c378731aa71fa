"""The status pages: what a person sees for each target, hostile server text kept inert,
sorting and filtering from the query string, and the page of one target with its transcript."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.registry import CollectorRegistry

from exporter.results import (
    CertificateInfo,
    ChainCertificate,
    Negotiated,
    ProbeResult,
    Reason,
    SenderResult,
    Verdict,
    VerifyError,
    VersionResult,
)
from exporter.senders import BUILTIN_PROFILES
from exporter.status import (
    CERT_WARN_DAYS,
    Overview,
    Query,
    render_index,
    render_not_found,
    render_target,
    target_href,
)
from exporter.store import ReloadStatus, ResultStore, ShardStatus
from exporter.target import Target, TLSMode, TLSVersion
from exporter.transcript import Recorder
from exporter.web import make_app
from tests.support.pages import Page

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()
HOSTILE = "<script>alert(1)</script>\"'</td></tr><img src=x onerror=alert(2)>"
#: Every element the pages are made of: anything else came from the data.
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "a", "small",
    "strong", "span", "code", "form", "label", "input", "select", "option", "button", "table",
    "thead", "tbody", "tr", "th", "td", "section",
}  # fmt: skip


def certificate(
    days_left: float, *, verified: bool = True, subject: str = "CN=mx"
) -> CertificateInfo:
    not_after = datetime.fromtimestamp(NOW, UTC) + timedelta(days=days_left)
    not_before = not_after - timedelta(days=90)
    return CertificateInfo(
        subject=subject,
        issuer="CN=Example CA",
        serial="1f",
        sans=("mx.example.org",),
        not_before=not_before,
        not_after=not_after,
        key_type="RSA",
        key_bits=2048,
        signature_algorithm="sha256WithRSAEncryption",
        fingerprint_sha256="ab" * 32,
        chain=(
            ChainCertificate(subject, "CN=Example CA", not_before, not_after, "ab" * 32),
            ChainCertificate(
                "CN=Example CA",
                "CN=Example Root",
                datetime(2025, 1, 1, tzinfo=UTC),
                datetime(2026, 6, 11, tzinfo=UTC),
                "cd" * 32,
            ),
        ),
        verified=verified,
        verify_error=None if verified else VerifyError.HOSTNAME_MISMATCH,
        verify_detail="" if verified else "certificate is for other.example.org",
    )


def result(
    target: Target,
    *,
    accepted: tuple[TLSVersion, ...] = (TLSVersion.TLS1_2, TLSVersion.TLS1_3),
    error: Reason | None = None,
    detail: str = "",
    cert: CertificateInfo | None = None,
    transcript: bytes = b"",
    finished: float = NOW - 60,
) -> ProbeResult:
    verdicts = tuple(
        VersionResult(v, Verdict.ACCEPTED, "", 0x1301)
        if v in accepted
        else VersionResult(v, Verdict.REFUSED, "alert protocol_version")
        for v in target.versions
    )
    return ProbeResult(
        target=target.name,
        started=finished - 1.5,
        duration=1.5,
        success=error is None,
        error=error,
        error_detail=detail,
        starttls_advertised=True,
        versions=verdicts,
        negotiated=Negotiated("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
        certificate=cert,
        transcript=transcript,
    )


#: Exchange Online's verdicts: what it gets from a modern server, and from one that takes
#: TLS 1.2 only with static-RSA CBC suites.
EXCHANGE_OK = SenderResult("exchange-online", "compatible", version=0x0303, suite=0xC030)
EXCHANGE_CBC = SenderResult("exchange-online", "incompatible", "alert", "alert handshake_failure")
GMAIL_UNKNOWN = SenderResult("gmail", "unknown", detail="read timeout")


def overview(*targets: tuple[Target, ProbeResult | None]) -> Overview:
    return Overview("1.2.3", ReloadStatus(True, NOW - 3600), None, targets)


def index(*targets: tuple[Target, ProbeResult | None], **query: str) -> Page:
    return Page(render_index(overview(*targets), Query.parse(query), NOW))


def names(page: Page) -> list[str]:
    return [row["Target"] for row in page.table()]


def fleet() -> list[tuple[Target, ProbeResult | None]]:
    """Four targets, each notable in one way."""
    ok = Target(host="mx1.example.org", name="alpha", labels=(("site", "eu"),))
    legacy = Target(host="mx2.example.org", name="bravo")
    failing = Target(host="mx3.example.org", name="charlie")
    waiting = Target(host="mx4.example.org", name="delta", tls=TLSMode.IMPLICIT, port=465)
    ok_result = result(ok, cert=certificate(80))
    legacy_result = result(legacy, accepted=tuple(TLSVersion), cert=certificate(5, verified=False))
    return [
        (ok, replace(ok_result, senders=(EXCHANGE_OK, GMAIL_UNKNOWN))),
        (legacy, replace(legacy_result, senders=(EXCHANGE_CBC,))),
        (failing, result(failing, error=Reason.CONNECT_REFUSED, detail="Connection refused")),
        (waiting, None),
    ]


# --- the overview ----------------------------------------------------------------------------


def test_every_target_shows_its_verdicts_certificate_and_times() -> None:
    page = index(*fleet(), sort="name")
    rows = {row["Target"]: row for row in page.table()}
    assert list(rows) == ["alpha", "bravo", "charlie", "delta"]
    alpha = rows["alpha"]
    assert alpha["TLSv1.2"] == alpha["TLSv1.3"] == "accepted"
    assert alpha["SSLv3"] == alpha["TLSv1.0"] == alpha["TLSv1.1"] == "refused"
    assert "SSLv2" not in alpha  # no target tests it: no column
    assert alpha["STARTTLS"] == "yes"
    assert alpha["TLS"] == "starttls"
    assert alpha["Cert days"] == "80"
    assert alpha["Certificate"] == "verified"
    assert alpha["Status"] == "ok"
    assert alpha["Last probe"] == "11:59:00Z 1m ago"
    assert alpha["Next probe (est.)"].startswith("≈ 12:03:58Z")  # started + 5m interval
    assert rows["bravo"]["TLSv1.0"] == "accepted"
    assert rows["bravo"]["Certificate"] == "hostname_mismatch"
    assert rows["charlie"]["Status"] == "connect_refused"
    assert rows["charlie"]["Failure"] == "Connection refused why?"
    assert rows["delta"]["Status"] == "waiting"
    assert rows["delta"]["TLS"] == "implicit"
    assert "Last config load: successful." in page.text


def test_every_target_and_every_failure_links_to_its_page() -> None:
    targets = [*fleet(), (Target(host="mx9.example.org", name="a b/c?d&e=f#g"), None)]
    page = index(*targets)
    pages = {unquote(link.removeprefix("target?name=")) for link in page.links}
    assert {target.name for target, _ in targets} <= pages
    failure = 'href="target?name=charlie">connect_refused</a>'
    assert failure in render_index(overview(*targets), Query(), NOW)
    assert target_href("a b/c?d&e=f#g") == "target?name=a%20b%2Fc%3Fd%26e%3Df%23g"


def test_rows_keep_the_markup_the_end_to_end_tests_read() -> None:
    """tests/test_exporter.py finds a target's row by `<td>NAME</td>` and its state in it."""
    text = render_index(overview(*fleet()), Query(), NOW)
    rows = text.split("<tr>")
    alpha = next(row for row in rows if "<td>alpha</td>" in row)
    assert "<td>ok</td>" in alpha
    charlie = next(row for row in rows if "<td>charlie</td>" in row)
    assert "connect_refused" in charlie
    assert "<td>bravo</td>" not in charlie


def test_the_exporters_own_state_stays_on_top() -> None:
    targets = fleet()
    shard = ShardStatus(index=1, count=3, config_targets=12)
    failed = ReloadStatus(False, NOW - 60, "config.yaml: targets[0].port: bad <value>")
    text = render_index(Overview("1.2.3", failed, shard, targets), Query(), NOW)
    assert "Version 1.2.3." in text
    for link in ('href="/metrics"', 'href="/-/healthy"', 'href="/-/ready"'):
        assert link in text
    assert "Last config load: FAILED: config.yaml: targets[0].port: bad &lt;value&gt;." in text
    assert "Shard 1 of 3 (0 to 2): 4 of the config's 12 targets." in text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["charlie", "delta", "alpha", "bravo"]),  # failing first, then waiting, then ok
        ({"sort": "name", "order": "desc"}, ["delta", "charlie", "bravo", "alpha"]),
        ({"sort": "cert_days"}, ["bravo", "alpha", "charlie", "delta"]),  # no certificate: last
        ({"sort": "cert_days", "order": "desc"}, ["alpha", "bravo", "charlie", "delta"]),
        ({"sort": "v-1.0"}, ["bravo", "alpha", "charlie", "delta"]),
        ({"sort": "verify"}, ["bravo", "alpha", "charlie", "delta"]),
        ({"sort": "tls"}, ["delta", "alpha", "bravo", "charlie"]),  # implicit before starttls
        ({"sort": "no-such-column", "order": "sideways"}, ["charlie", "delta", "alpha", "bravo"]),
    ],
)
def test_sorting_by_the_query_string(query: dict[str, str], expected: list[str]) -> None:
    assert names(index(*fleet(), **query)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "failing"}, ["charlie"]),
        ({"status": "waiting"}, ["delta"]),
        ({"status": "ok", "sort": "name"}, ["alpha", "bravo"]),
        ({"status": "certificate"}, ["bravo"]),
        ({"status": "legacy"}, ["bravo"]),
        ({"status": "senders"}, ["bravo"]),  # alpha's unknown Gmail verdict does not count
        ({"q": "MX3.example"}, ["charlie"]),  # address, any case
        ({"q": "eu"}, ["alpha"]),  # a label's value
        ({"q": "refused", "status": "failing"}, ["charlie"]),  # the failure
        ({"q": "refused", "status": "ok"}, []),
        ({"status": "bogus", "sort": "name"}, ["alpha", "bravo", "charlie", "delta"]),
    ],
)
def test_filtering_by_the_query_string(query: dict[str, str], expected: list[str]) -> None:
    assert names(index(*fleet(), **query)) == expected


def test_headers_sort_and_the_form_keep_the_filter() -> None:
    text = render_index(overview(*fleet()), Query(q="a&b", status="failing", sort="name"), NOW)
    page = Page(text)
    assert "?q=a%26b&status=failing&sort=name&order=desc" in page.links  # the other way round
    assert "?q=a%26b&status=failing&sort=cert_days" in page.links
    assert "?q=a%26b&status=legacy&sort=name" in page.links  # the summary's links
    assert 'href="?q=a%26b&amp;status=failing&amp;sort=name&amp;order=desc"' in text
    assert ("name", "q") in page.attributes
    assert ("value", "a&b") in page.attributes
    assert Query().href() == "./"


def test_the_summary_counts_every_kind_of_trouble() -> None:
    text = index(*fleet()).text
    assert "4 targets: 1 failing, 1 waiting, 2 ok." in text
    assert f"certificate to look at (not verified, or under {CERT_WARN_DAYS} days left): 1." in text
    assert "Accepting a legacy version (SSLv2, SSLv3, TLS 1.0 or 1.1): 1." in text
    assert "Incompatible with a sender they test: 1." in text
    assert "?status=senders" in index(*fleet()).links


def test_rows_beyond_the_limit_are_left_out_with_a_hint() -> None:
    targets = [(Target(host=f"mx{n}.example.org", name=f"t{n:02}"), None) for n in range(12)]
    text = render_index(overview(*targets), Query(sort="name"), NOW, limit=5)
    assert names(Page(text)) == ["t00", "t01", "t02", "t03", "t04"]
    assert "Showing the first 5 of 12 matching targets." in text
    assert "Narrow them down with the search or the filter." in text


def test_ten_thousand_targets_render_in_well_under_a_second() -> None:
    recorder = Recorder()
    recorder.connection("TLSv1.2").server("220 mx.example.org ESMTP")
    packed = recorder.pack()
    targets: list[tuple[Target, ProbeResult | None]] = []
    for n in range(10_000):
        target = Target(host=f"mx{n}.example.org")
        failed = Reason.CONNECT_TIMEOUT if n % 10 == 0 else None
        cert = certificate(n % 400, verified=n % 7 != 0)
        targets.append((target, result(target, error=failed, cert=cert, transcript=packed)))
    started = time.perf_counter()
    text = render_index(overview(*targets), Query(sort="cert_days"), NOW)
    elapsed = time.perf_counter() - started
    assert text.count("<tr><td>") == 10_000
    assert elapsed < 1.0, f"{elapsed:.2f}s"


# --- hostile text ----------------------------------------------------------------------------


def hostile_fleet() -> list[tuple[Target, ProbeResult | None]]:
    target = Target(host="mx.example.org", name=HOSTILE, labels=(("site", HOSTILE),))
    recorder = Recorder()
    connection = recorder.connection(HOSTILE)
    connection.server("220 " + HOSTILE)
    connection.server("250-" + "A" * 5000)
    found = result(
        target,
        error=Reason.GREETING_REJECTED,
        detail="554 " + HOSTILE + "x" * 5000,
        cert=certificate(30, verified=False, subject="CN=" + HOSTILE),
        transcript=recorder.pack(),
    )
    # A profile of the config is named by its user; the rest is the server's words.
    senders = (
        SenderResult(HOSTILE, "incompatible", HOSTILE, "plaintext answer: " + HOSTILE),
        SenderResult("exchange-online", HOSTILE, detail=HOSTILE),
    )
    return [(target, replace(found, senders=senders))]


def senders_table(page: Page) -> list[list[str]]:
    """The target page's table of senders, its heading first."""
    (table,) = (table for table in page.tables if table and table[0][:1] == ["Profile"])
    return table


def assert_inert(text: str) -> Page:
    page = Page(text)
    assert page.tags <= PAGE_TAGS, page.tags - PAGE_TAGS
    assert not [name for name, _ in page.attributes if name.startswith("on")]
    assert "<script" not in text.lower()
    assert "<img" not in text.lower()
    return page


def test_hostile_server_text_comes_out_escaped_on_the_overview() -> None:
    text = render_index(overview(*hostile_fleet()), Query(q=HOSTILE), NOW)
    page = assert_inert(text)
    (row,) = page.table()
    assert row["Target"] == HOSTILE  # what a person reads is the text itself
    assert len(row["Failure"]) < 300  # cut: the target's page has all of it
    assert ("value", HOSTILE) in page.attributes  # the search box, quotes and all
    assert "target?name=" + quote(HOSTILE, safe="") in page.links


def test_hostile_server_text_comes_out_escaped_on_the_target_page() -> None:
    ((target, found),) = hostile_fleet()
    text = render_target(target, found, NOW)
    page = assert_inert(text)
    shown = page.text
    assert "220 " + HOSTILE in shown
    assert "250-" + "A" * 500 in shown  # as much as the transcript keeps, wrapped by the style
    assert "554 " + HOSTILE in shown
    assert "CN=" + HOSTILE in shown
    senders = senders_table(page)
    assert senders[0] == ["Profile", "Result", "Version", "Cipher", "What failed", "Detail"]
    assert senders[1] == [HOSTILE, "incompatible", "", "", HOSTILE, "plaintext answer: " + HOSTILE]
    assert senders[2] == ["exchange-online", HOSTILE, "", "", "", HOSTILE]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&lt;/td&gt;" in text
    assert_inert(render_not_found(HOSTILE))


# --- one target ------------------------------------------------------------------------------


def transcript() -> bytes:
    recorder = Recorder()
    pinned = recorder.connection("TLSv1.2")
    default = recorder.connection("default client")
    pinned.note("connected to 192.0.2.1:25")
    pinned.server("220 mx.example.org ESMTP")
    pinned.client("EHLO probe.example.org")
    pinned.server("250-mx.example.org")
    pinned.server("250 STARTTLS")
    pinned.client("STARTTLS")
    pinned.server("220 2.0.0 Ready to start TLS")
    pinned.note("ServerHello TLSv1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    default.note("handshake: TLSv1.3 TLS_AES_128_GCM_SHA256")
    return recorder.pack()


def test_the_target_page_shows_settings_verdicts_transcript_and_chain() -> None:
    target = Target(
        host="mx.example.org",
        name="mx",
        servername="mail.example.org",
        ehlo_name="probe.example.org",
        versions=(TLSVersion.TLS1_0, TLSVersion.TLS1_2, TLSVersion.TLS1_3),
        senders=(BUILTIN_PROFILES["exchange-online"], BUILTIN_PROFILES["gmail"]),
        important_senders=("exchange-online",),
    )
    cert = certificate(30, verified=False)
    senders = (EXCHANGE_OK, GMAIL_UNKNOWN)
    found = replace(result(target, cert=cert, transcript=transcript()), senders=senders)
    page = Page(render_target(target, found, NOW))
    rows = [row for row in page.rows if row]
    shown = page.text

    assert ["Address", "mx.example.org:25"] in rows
    assert ["Servername", "mail.example.org"] in rows
    assert ["TLS mode", "starttls"] in rows
    assert ["Versions", "TLSv1.0 TLSv1.2 TLSv1.3"] in rows
    assert ["EHLO name", "probe.example.org"] in rows
    assert ["Status", "ok"] in rows
    assert ["Next probe", "about 2026-06-01 12:03:58Z (an estimate)"] in rows
    assert ["TLSv1.0", "refused", "", "alert protocol_version"] in rows
    assert ["TLSv1.2", "accepted", "TLS_AES_128_GCM_SHA256", ""] in rows
    assert ["Senders", "exchange-online (important), gmail"] in rows
    assert senders_table(page)[1:] == [
        ["exchange-online", "compatible", "TLSv1.2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "",
         ""],
        ["gmail", "unknown", "", "", "", "read timeout"],
    ]  # fmt: skip
    assert "#senders" in page.links

    lines = [row for row in rows if len(row) == 3 and re.fullmatch(r"\+\d+\.\d ms", row[0])]
    assert [row[1:] for row in lines[:4]] == [
        ["note", "connected to 192.0.2.1:25"],
        ["S:", "220 mx.example.org ESMTP"],
        ["C:", "EHLO probe.example.org"],
        ["S:", "250-mx.example.org"],
    ]
    assert ["C:", "STARTTLS"] in [row[1:] for row in lines]
    assert shown.index("default client") > shown.index("Ready to start TLS")  # in order
    assert "handshake: TLSv1.3 TLS_AES_128_GCM_SHA256" in shown

    assert [
        "Verification",
        "NOT verified: hostname_mismatch certificate is for other.example.org",
    ] in rows
    assert ["Valid until", "2026-07-01 12:00:00Z (30 days left)"] in rows
    assert [
        "1",
        "CN=Example CA",
        "CN=Example Root",
        "2025-01-01 00:00:00Z",
        "2026-06-11 00:00:00Z",
        "10 days left",
        "cd" * 32,
    ] in rows
    assert "Chain as sent (2)" in shown


def test_a_target_without_a_result_or_transcript_says_so() -> None:
    target = Target(host="mx.example.org")
    waiting = Page(render_target(target, None, NOW)).text
    assert "Waiting for the first probe." in waiting
    bare = Page(render_target(target, result(target), NOW)).text
    assert "This probe recorded no transcript." in bare
    assert "This target tests no sender (senders is empty)." in bare
    assert "No certificate was read." in bare
    failed = replace(result(target), negotiated=None, default_client_error="<alert> 40")
    assert "handshake failed: <alert> 40" in Page(render_target(target, failed, NOW)).text


# --- over HTTP -------------------------------------------------------------------------------


def test_pages_over_http_with_their_headers_and_a_404_for_unknown_targets() -> None:
    store = ResultStore()
    targets = fleet()
    store.set_targets(tuple(target for target, _ in targets), frozenset())
    for target, found in targets:
        if found is not None:
            store.record(target, found)
    store.reloaded(True)

    async def reload() -> tuple[bool, str]:
        return True, "ok"

    async def main() -> None:
        async with TestClient(TestServer(make_app(store, CollectorRegistry(), reload))) as client:
            for path in ("/?sort=name&status=failing", "/target?name=charlie"):
                response = await client.get(path, headers={"Accept-Encoding": "gzip"})
                assert response.status == 200, path
                assert response.headers["Content-Type"] == "text/html; charset=utf-8"
                assert response.headers["Content-Encoding"] == "gzip"
                csp = response.headers["Content-Security-Policy"]
                assert "default-src 'none'" in csp
                assert "style-src 'unsafe-inline'" in csp
                assert "script-src" not in csp  # no script may run
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert "charlie" in await response.text()
            missing = await client.get("/target", params={"name": "<nobody>"})
            assert missing.status == 404
            assert missing.headers["X-Content-Type-Options"] == "nosniff"
            assert "No target is named <code>&lt;nobody&gt;</code>" in await missing.text()
            assert (await client.get("/target")).status == 404

    asyncio.run(main())


def test_the_target_page_says_what_kept_each_sender_out() -> None:
    """An incompatible sender with what failed and the server's words; no link on a profile."""
    target = Target(host="mx.example.org", senders=(BUILTIN_PROFILES["exchange-online"],))
    found = replace(result(target), senders=(EXCHANGE_CBC,))
    page = Page(render_target(target, found, NOW))
    assert senders_table(page)[1:] == [
        ["exchange-online", "incompatible", "", "", "alert", "alert handshake_failure"]
    ]
    assert not [link for link in page.links if "exchange-online" in link]
    assert ["Senders", "exchange-online"] in page.rows  # not important here
    tested = Target(host="mx.example.org", senders=(BUILTIN_PROFILES["gmail"],))
    assert (
        "This probe reached no sender's verdict."
        in Page(render_target(tested, result(tested), NOW)).text
    )
