"""The status pages' query strings, anything at all: parsing never fails, and whatever comes
in leaves the page's markup as it was; the search text comes back out as it went in."""

from __future__ import annotations

from dataclasses import replace
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.results import ProbeResult, Reason, Verdict, VersionResult
from exporter.status import (
    MAX_SEARCH,
    STATUSES,
    Overview,
    Query,
    render_index,
    render_not_found,
)
from exporter.store import ReloadStatus
from exporter.target import Target, TLSVersion

NOW = 1_780_000_000.0
HOSTILE = ["<script>", "</td>", '"', "'", "&amp;", "&", "<!--", "]]>", "javascript:", "\x00", "%"]

#: Query string text: what URLs carry, escapes that do not decode, and markup.
qs_text = st.lists(
    st.sampled_from([*HOSTILE, "=", "&", ";", "+", "%3C", "%22", "%ff", "%zz", "q", "sort"])
    | st.text(max_size=6),
    max_size=12,
).map("".join)
keys = st.sampled_from(["q", "sort", "order", "status", "name", "Q", ""])
values = (
    st.sampled_from(["name", "status", "v-1.2", "cert_days", "desc", "asc", "failing", "legacy"])
    | qs_text
)
query_strings = qs_text | st.lists(st.tuples(keys, values).map("=".join), max_size=6).map("&".join)


class Markup(HTMLParser):
    """A page's elements as (tag, attribute names), the form's values, and every link."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, tuple[str, ...]]] = []
        self.inputs: dict[str, str] = {}
        self.links: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, tuple(sorted(name for name, _ in attrs))))
        found = dict(attrs)
        if tag == "input" and found.get("name"):
            self.inputs[str(found["name"])] = found.get("value") or ""
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))


def request_query(query_string: str) -> Query:
    """The query as the server reads it from a request line."""
    return Query.parse(make_mocked_request("GET", "/?" + query_string).query)


def _overview(*targets: tuple[Target, ProbeResult | None]) -> Overview:
    return Overview("1.2.3", ReloadStatus(True, NOW - 60), None, targets)


def _fleet() -> list[tuple[Target, ProbeResult | None]]:
    hostile = Target(host="mx.example.org", name="<b>x</b>\"'&", labels=(("site", "<i>"),))
    failing = ProbeResult(
        target=hostile.name,
        started=NOW - 10,
        duration=1.0,
        success=False,
        error=Reason.SMTP_PROTOCOL_ERROR,
        error_detail="<script>alert(1)</script>",
        starttls_advertised=True,
        versions=tuple(VersionResult(v, Verdict.UNKNOWN, "") for v in hostile.versions),
        negotiated=None,
        certificate=None,
    )
    plain = Target(host="mx2.example.org")
    return [(hostile, failing), (plain, None)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query_strings)
def test_any_query_string_gives_a_query_within_its_choices(query_string: str) -> None:
    query = request_query(query_string)
    assert query.order in ("asc", "desc")
    assert query.status in STATUSES
    assert len(query.q) <= MAX_SEARCH
    assert query.q == query.q.lstrip()
    Markup(render_index(_overview(), query, NOW))  # renders


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query_strings)
def test_no_query_changes_the_markup_and_the_search_comes_back_as_typed(
    query_string: str,
) -> None:
    query = request_query(query_string)
    page = Markup(render_index(_overview(), query, NOW))
    plain = Markup(render_index(_overview(), replace(query, q=""), NOW))
    assert page.elements == plain.elements
    assert page.inputs["q"] == query.q
    assert page.inputs["sort"] == query.sort
    # Every link that keeps the search keeps it exactly, as the server reads it back.
    kept = [link for link in page.links if link.startswith("?")]
    for link in kept:
        assert parse_qs(urlsplit(link).query).get("q", [""]) == [query.q]
    assert request_query(kept[0][1:]).q == query.q


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query_strings)
def test_hostile_targets_and_queries_add_no_markup(query_string: str) -> None:
    query = request_query(query_string)
    allowed = Markup(render_index(_overview(*_fleet()), Query(), NOW))
    page = Markup(render_index(_overview(*_fleet()), query, NOW))
    assert set(page.elements) <= set(allowed.elements) | {("p", ())}  # "n of m targets match"
    for link in page.links:
        assert not link.lower().lstrip().startswith("javascript:")


@settings(max_examples=150, deadline=None)
@given(qs_text)
def test_an_unknown_target_name_is_shown_as_text(query_string: str) -> None:
    name = make_mocked_request("GET", "/target?name=" + query_string).query.get("name", "")
    page = Markup(render_not_found(name))
    assert page.elements == Markup(render_not_found("x")).elements


def test_every_sort_key_of_the_page_is_taken_back() -> None:
    page = Markup(render_index(_overview(*_fleet()), Query(), NOW))
    sorts = {request_query(link[1:]).sort for link in page.links if link.startswith("?")}
    assert {"name", "status", f"v-{TLSVersion.TLS1_2.value}"} <= sorts
