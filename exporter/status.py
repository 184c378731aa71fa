"""The status pages for people: every target at a glance, and one target's last probe in full.

Pure functions from stored data to HTML, so they are tested without a server and rendered
off the event loop. Sorting and filtering happen here, from the query string, so the pages
need no script. Everything a server sent (and every name from the config) is hostile text:
each value is escaped, names in links are percent-encoded, and the overview renders at
most `MAX_ROWS` rows.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote, urlencode

from exporter.names import format_address
from exporter.probe.suites import suite_name
from exporter.results import CertificateInfo, ProbeResult, SenderResult, Verdict, VersionResult
from exporter.store import DomainStatus, ReloadStatus, ShardStatus
from exporter.target import Target, TLSVersion
from exporter.transcript import ConnectionLog, Kind, unpack

#: Rows the overview renders at most; 10,000 targets is a supported size and fits.
MAX_ROWS: Final = 10_000
#: A certificate this close to its end needs attention (the alerts' threshold).
CERT_WARN_DAYS: Final = 14
#: Characters of a failure detail shown in the overview; the target's page has all of it.
DETAIL_CHARS: Final = 200
#: Characters of the search text kept from the query string.
MAX_SEARCH: Final = 200
#: Versions a server should no longer accept.
LEGACY: Final = frozenset({TLSVersion.SSL2, TLSVersion.SSL3, TLSVersion.TLS1_0, TLSVersion.TLS1_1})

#: The `status` filter: its values, and what the form calls them.
STATUSES: Final = {
    "all": "every target",
    "failing": "probe failing",
    "waiting": "waiting for a first probe",
    "ok": "probe ok",
    "certificate": f"certificate not verified or within {CERT_WARN_DAYS} days of expiry",
    "legacy": "accepting SSLv2, SSLv3, TLS 1.0 or 1.1",
    "senders": "incompatible with a sender they test",
}

_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;margin:1em;color:#222}"
    "table{border-collapse:collapse;margin-bottom:1em}"
    "td,th{padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #e4e4e4}"
    "th{background:#f4f4f4;white-space:nowrap}th a{color:inherit}"
    ".bad{background:#fbd5d5}.warn{background:#ffe6b3}.acc{color:#075e07}.ref{color:#666}"
    ".unk{color:#8a5a00}.num{text-align:right;white-space:nowrap}.when{white-space:nowrap}"
    ".wrap{min-width:14em;max-width:40em;overflow-wrap:anywhere}"
    ".mono,.tx td{font-family:ui-monospace,monospace}"
    ".tx td.text{white-space:pre-wrap;overflow-wrap:anywhere}"
    ".tx .client{color:#0b3d91}.tx .note{color:#777;font-style:italic}"
    "form{margin:1em 0}small{color:#666}"
)


#: Shown where there is nothing to show.
_NONE: Final = "&ndash;"


def _e(value: object) -> str:
    """Text for HTML, in element content and quoted attributes alike."""
    return html.escape(str(value), quote=True)


def target_href(name: str) -> str:
    """The link to a target's page, relative so the pages work under a path prefix too."""
    return "target?name=" + quote(name, safe="")


def _utc(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(moment))


def _short_utc(moment: float, now: float) -> str:
    """The time of day alone when it is today's (UTC), else the date too."""
    if time.gmtime(moment)[:3] == time.gmtime(now)[:3]:
        return time.strftime("%H:%M:%SZ", time.gmtime(moment))
    return time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(moment))


def _span(seconds: float) -> str:
    """A rough length of time: 45s, 12m, 3h, 9d."""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2 or (unit == "m" and seconds >= size):
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _days_left(moment: datetime, now: float) -> float:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (aware.timestamp() - now) / 86400


def next_probe_estimate(target: Target, result: ProbeResult) -> float:
    """When the next probe should start: one interval after the last one started (or the
    back-off's wait, while the server rate-limits the probes). An
    estimate: the scheduler keeps each target on a phase grid of its own, and the probe
    after a target's first one (at start, or when a reload adds it) moves onto that grid,
    up to half an interval earlier or later; a probe kept waiting for a slot starts late."""
    return result.started + max(target.interval, result.backoff)


def _verification(cert: CertificateInfo) -> str:
    if cert.verified:
        return "verified"
    return cert.verify_error.value if cert.verify_error else "not verified"


# --- the overview -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overview:
    """What the overview shows: the exporter's own state, and every target with its last
    result (None before its first probe ends)."""

    version: str
    reload: ReloadStatus
    shard: ShardStatus | None
    targets: Sequence[tuple[Target, ProbeResult | None]]
    #: Mail domains with their last MX look-up, in the config's order.
    domains: Sequence[DomainStatus] = ()


@dataclass(frozen=True, slots=True)
class Query:
    """How the overview is sorted and filtered, read from the query string; anything
    unknown falls back to the default rather than failing the page."""

    sort: str = "status"
    order: str = "asc"
    q: str = ""
    status: str = "all"

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        sort = params.get("sort", "")
        status = params.get("status", "")
        return cls(
            sort=sort if sort in _SORT_KEYS else "status",
            order="desc" if params.get("order") == "desc" else "asc",
            q=params.get("q", "").strip()[:MAX_SEARCH],
            status=status if status in STATUSES else "all",
        )

    def href(self, **changes: str) -> str:
        """The overview's link with `changes`, leaving out what is the default."""
        query = replace(self, **changes)
        default = Query()
        params = [
            (key, value)
            for key in ("q", "status", "sort", "order")
            if (value := getattr(query, key)) != getattr(default, key)
        ]
        return "?" + urlencode(params, quote_via=quote) if params else "./"


class _Row:
    """One target as the overview sees it, with what sorting and filtering need."""

    __slots__ = ("cert_days", "result", "state", "target", "verdicts")

    def __init__(self, target: Target, result: ProbeResult | None, now: float) -> None:
        self.target = target
        self.result = result
        self.verdicts: dict[TLSVersion, VersionResult] = (
            {v.version: v for v in result.versions} if result else {}
        )
        cert = result.certificate if result else None
        self.cert_days = _days_left(cert.not_after, now) if cert else None
        self.state = "waiting" if result is None else "ok" if result.success else "failing"

    def matches(self, status: str, needle: str) -> bool:
        if status in ("failing", "waiting", "ok") and self.state != status:
            return False
        if status == "certificate" and not self.cert_attention:
            return False
        if status == "legacy" and not self.legacy:
            return False
        if status == "senders" and not self.incompatible_senders:
            return False
        return not needle or needle in self.haystack

    @property
    def cert_attention(self) -> bool:
        cert = self.result.certificate if self.result else None
        if cert is None or self.cert_days is None:
            return False
        return not cert.verified or self.cert_days < CERT_WARN_DAYS

    @property
    def legacy(self) -> bool:
        return any(
            v.verdict is Verdict.ACCEPTED
            for version, v in self.verdicts.items()
            if version in LEGACY
        )

    @property
    def incompatible_senders(self) -> bool:
        """Whether a sender the target tests is turned away (unknown verdicts are not)."""
        return self.result is not None and any(
            sender.compatible is False for sender in self.result.senders
        )

    @property
    def haystack(self) -> str:
        t, r = self.target, self.result
        parts = [t.name, t.address, t.servername, *(value for _, value in t.labels)]
        if r is not None and r.error is not None:
            parts += [r.error.value, r.error_detail]
        return "\n".join(parts).casefold()


#: A sort value: every key gives one of these, or None for "nothing to sort by" (last).
SortValue = tuple[float, str]


def _by_status(row: _Row) -> SortValue:
    r = row.result
    if r is None:
        return (1, "")
    if not r.success:
        return (0, r.error.value if r.error else "")
    return (2, "")


def _by_verify(row: _Row) -> SortValue | None:
    cert = row.result.certificate if row.result else None
    if cert is None:
        return None
    return (1, "") if cert.verified else (0, _verification(cert))


def _by_starttls(row: _Row) -> SortValue | None:
    advertised = row.result.starttls_advertised if row.result else None
    return None if advertised is None else (float(advertised), "")


def _by_version(version: TLSVersion) -> Callable[[_Row], SortValue | None]:
    rank = {Verdict.ACCEPTED: 0.0, Verdict.REFUSED: 1.0, Verdict.UNKNOWN: 2.0}

    def key(row: _Row) -> SortValue | None:
        found = row.verdicts.get(version)
        return None if found is None else (rank[found.verdict], "")

    return key


def _by_next(row: _Row) -> SortValue | None:
    r = row.result
    return None if r is None else (next_probe_estimate(row.target, r), "")


_SORT_KEYS: Final[dict[str, Callable[[_Row], SortValue | None]]] = {
    "name": lambda row: (0, row.target.name.casefold()),
    "address": lambda row: (0, row.target.address.casefold()),
    "tls": lambda row: (0, row.target.tls.value),
    "starttls": _by_starttls,
    **{f"v-{v.value}": _by_version(v) for v in TLSVersion},
    "cert_days": lambda row: None if row.cert_days is None else (row.cert_days, ""),
    "verify": _by_verify,
    "status": _by_status,
    "last": lambda row: None if row.result is None else (row.result.finished, ""),
    "next": _by_next,
}


def _sorted(rows: list[_Row], query: Query) -> list[_Row]:
    """Rows by the query's key, ties by name; rows with nothing to sort by come last
    whichever the order."""
    key = _SORT_KEYS[query.sort]
    present: list[tuple[SortValue, _Row]] = []
    missing: list[_Row] = []
    for row in sorted(rows, key=lambda row: row.target.name.casefold()):
        value = key(row)
        if value is None:
            missing.append(row)
        else:
            present.append((value, row))
    present.sort(key=lambda pair: pair[0], reverse=query.order == "desc")
    return [row for _, row in present] + missing


def _header(query: Query, key: str, label: str, title: str = "") -> str:
    """A column heading that sorts by its column; again, the other way round."""
    order = "asc"
    mark = ""
    if query.sort == key:
        order = "desc" if query.order == "asc" else "asc"
        mark = " ▲" if query.order == "asc" else " ▼"
    hint = f' title="{_e(title)}"' if title else ""
    href = _e(query.href(sort=key, order=order))
    return f'<th{hint}><a href="{href}">{_e(label)}{mark}</a></th>'


_VERDICT_CSS: Final = {Verdict.ACCEPTED: "acc", Verdict.REFUSED: "ref", Verdict.UNKNOWN: "unk"}


def _version_cell(row: _Row, version: TLSVersion) -> str:
    found = row.verdicts.get(version)
    if found is None:
        return f"<td>{_NONE}</td>" if row.result is not None else "<td></td>"
    verdict = found.verdict
    css = "warn" if verdict is Verdict.ACCEPTED and version in LEGACY else _VERDICT_CSS[verdict]
    return f'<td class="{css}">{verdict.value}</td>'


def _cert_cells(row: _Row) -> str:
    cert = row.result.certificate if row.result else None
    if cert is None or row.cert_days is None:
        return "<td></td><td></td>"
    days = row.cert_days
    css = "num bad" if days < 0 else "num warn" if days < CERT_WARN_DAYS else "num"
    if cert.verified:
        verify_cell = "<td>verified</td>"
    else:
        title = f' title="{_e(cert.verify_detail)}"' if cert.verify_detail else ""
        verify_cell = f'<td class="bad"{title}>{_e(_verification(cert))}</td>'
    return f'<td class="{css}">{days:.0f}</td>{verify_cell}'


def _status_cells(row: _Row, link: str, now: float) -> str:
    r = row.result
    if r is None:
        return "<td>waiting</td><td></td><td></td><td></td>"
    if r.success:
        status = "<td>ok</td><td></td>"
    else:
        reason = r.error.value if r.error else "failed"
        detail = r.error_detail
        short = detail if len(detail) <= DETAIL_CHARS else detail[:DETAIL_CHARS] + "…"
        status = (
            f'<td class="bad"><a href="{link}">{_e(reason)}</a></td>'
            f'<td class="wrap">{_e(short)} <a href="{link}">why?</a></td>'
        )
    finished = r.finished
    upcoming = next_probe_estimate(row.target, r)
    last = f"{_short_utc(finished, now)} <small>{_span(now - finished)} ago</small>"
    if upcoming <= now:
        later = "due now"
    else:
        later = f"≈ {_short_utc(upcoming, now)} <small>in {_span(upcoming - now)}</small>"
    return f'{status}<td class="when">{last}</td><td class="when">{later}</td>'


def _row_html(row: _Row, versions: Sequence[TLSVersion], now: float) -> str:
    t = row.target
    r = row.result
    link = _e(target_href(t.name))
    starttls = ""
    if r is not None and r.starttls_advertised is not None:
        starttls = "yes" if r.starttls_advertised else "no"
    starttls_css = ' class="bad"' if starttls == "no" else ""
    parts = [
        f"<tr><td>{_e(t.name)}</td>",
        f'<td><a href="{link}">details</a></td>',
        f"<td>{_e(t.address)}</td><td>{t.tls.value}</td><td{starttls_css}>{starttls}</td>",
        *(_version_cell(row, v) for v in versions),
        _cert_cells(row),
        _status_cells(row, link, now),
        "</tr>",
    ]
    return "".join(parts)


def _summary(rows: Sequence[_Row], query: Query) -> str:
    """Counts of every kind of trouble, each a link to the targets it counts."""
    counts = {key: 0 for key in STATUSES}
    for row in rows:
        counts[row.state] += 1
        counts["certificate"] += row.cert_attention
        counts["legacy"] += row.legacy
        counts["senders"] += row.incompatible_senders
    counts["all"] = len(rows)

    def link(key: str, text: str = "") -> str:
        href = _e(query.href(status=key))
        return f'<a href="{href}">{counts[key]}{" " + text if text else ""}</a>'

    return (
        f"<p>{link('all', 'targets')}: {link('failing', 'failing')},"
        f" {link('waiting', 'waiting')}, {link('ok', 'ok')}."
        f" With a certificate to look at (not verified, or under {CERT_WARN_DAYS} days left):"
        f" {link('certificate')}. Accepting a legacy version (SSLv2, SSLv3, TLS 1.0 or 1.1):"
        f" {link('legacy')}. Incompatible with a sender they test: {link('senders')}.</p>"
    )


def _form(query: Query) -> str:
    options = "".join(
        f'<option value="{key}"{" selected" if key == query.status else ""}>{_e(text)}</option>'
        for key, text in STATUSES.items()
    )
    return (
        '<form method="get" action="./">'
        '<label>Search <input type="search" name="q" size="30" maxlength="200"'
        f' placeholder="name, address, label, failure" value="{_e(query.q)}"></label> '
        f'<label>Show <select name="status">{options}</select></label>'
        f'<input type="hidden" name="sort" value="{_e(query.sort)}">'
        f'<input type="hidden" name="order" value="{_e(query.order)}"> '
        '<button type="submit">Filter</button> <a href="./">clear</a></form>'
    )


def _shard_text(shard: ShardStatus | None, targets: int) -> str:
    """The shard sentence; numbers only, so nothing in it needs escaping."""
    if shard is None:
        return ""
    return (
        f" Shard {shard.index} of {shard.count} (0 to {shard.count - 1}):"
        f" {targets} of the config's {shard.config_targets} targets."
    )


def render_index(overview: Overview, query: Query, now: float, limit: int = MAX_ROWS) -> str:
    """The overview: the exporter's state, then one row per target, sorted and filtered."""
    rows = [_Row(target, result, now) for target, result in overview.targets]
    present = {v for target, _ in overview.targets for v in target.versions}
    versions = [v for v in TLSVersion if v in present]
    needle = query.q.casefold()
    shown = _sorted([row for row in rows if row.matches(query.status, needle)], query)
    reload = overview.reload
    reload_text = "successful" if reload.successful else f"FAILED: {reload.last_error}"
    headers = [
        _header(query, "name", "Target"),
        "<th>Page</th>",
        _header(query, "address", "Address"),
        _header(query, "tls", "TLS"),
        _header(query, "starttls", "STARTTLS", "advertised in the EHLO answer"),
        *(_header(query, f"v-{v.value}", v.display) for v in versions),
        _header(query, "cert_days", "Cert days", "days until the certificate expires"),
        _header(query, "verify", "Certificate"),
        _header(query, "status", "Status"),
        "<th>Failure</th>",
        _header(query, "last", "Last probe"),
        _header(query, "next", "Next probe (est.)", "one interval after the last start"),
    ]
    note = ""
    if len(shown) > limit:
        note = (
            f"<p><strong>Showing the first {limit:,} of {len(shown):,} matching targets.</strong>"
            " Narrow them down with the search or the filter.</p>"
        )
    elif len(shown) != len(rows):
        note = f"<p>{len(shown):,} of {len(rows):,} targets match.</p>"
    body = [
        "<h1>SMTP TLS exporter</h1>",
        f"<p>Version {_e(overview.version)}.",
        ' <a href="/metrics">Metrics</a> · <a href="/-/healthy">Health</a>',
        ' · <a href="/-/ready">Readiness</a> · POST /-/reload reloads the config.</p>',
        f"<p>Last config load: {_e(reload_text)}.{_shard_text(overview.shard, len(rows))}</p>",
        _summary(rows, query),
        _form(query),
        note,
        "<table><thead><tr>",
        *headers,
        "</tr></thead><tbody>\n",
        "\n".join(_row_html(row, versions, now) for row in shown[:limit]),
        "\n</tbody></table>",
        _domains(overview.domains, {row.target.name: row for row in rows}, now, limit),
        "<p><small>Times are UTC. Next probe: an estimate, one interval after the last"
        " probe started.</small></p>",
    ]
    return _page("SMTP TLS exporter", "".join(body))


def _host_state(row: _Row | None) -> str:
    """An MX host in a few words: what a sender needs from it is TLS 1.2."""
    result = None if row is None else row.result
    if result is None:
        return "waiting"
    if not result.success:
        return f"failing: {result.error.value if result.error else 'unknown'}"
    tls12 = result.version(TLSVersion.TLS1_2)
    if tls12 is not None and tls12.supported is False:
        return "refuses TLS 1.2"
    return "ok"


def _domains(
    domains: Sequence[DomainStatus], rows: Mapping[str, _Row], now: float, limit: int
) -> str:
    """Mail domains: the look-up, and each MX host with its verdict and a link to it."""
    if not domains:
        return ""
    lines = [
        '<h2 id="domains">Mail domains</h2><table><thead><tr><th>Domain</th>'
        "<th>MX look-up</th><th>Looked up</th><th>MX hosts (preference: status)</th>"
        "<th>What is wrong</th></tr></thead><tbody>"
    ]
    for status in domains[:limit]:
        lookup = status.lookup
        port = status.domain.template.port
        hosts = []
        for host in status.hosts:
            name = format_address(host.host, port)
            row = rows.get(name)
            state = _host_state(row)
            hosts.append(
                f'{host.preference}: <a href="{target_href(name)}">{_e(host.host)}</a>'
                f" ({_e(state)})"
            )
        wrong = [] if lookup is None else [lookup.detail, *lookup.problems]
        wrong += [f"{h.host}: {h.note}" for h in status.hosts if h.note]
        lines.append(
            f"<tr><td>{_e(status.domain.domain)}</td>"
            f"<td>{_e(lookup.status.value if lookup else 'waiting')}</td>"
            f"<td>{_short_utc(status.checked, now) if status.checked else ''}</td>"
            f"<td>{'<br>'.join(hosts) or 'none'}</td>"
            f"<td>{'<br>'.join(_e(w) for w in wrong if w)}</td></tr>"
        )
    lines.append("</tbody></table>")
    return "".join(lines)


# --- one target ---------------------------------------------------------------------------


def _table(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of headings and cells given as HTML already escaped."""
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _settings(target: Target) -> str:
    labels = ", ".join(f"{_e(k)}={_e(v)}" for k, v in target.labels) or _NONE
    return _table(
        [
            ("Address", _e(target.address)),
            ("Servername", _e(target.servername)),
            ("TLS mode", target.tls.value),
            ("Versions", " ".join(v.display for v in target.versions)),
            ("Senders", _sender_names(target)),
            ("EHLO name", _e(target.ehlo_name)),
            ("Interval", f"{target.interval:g}s"),
            ("Timeout", f"{target.timeout:g}s"),
            ("Connections", str(target.connections)),
            ("Connections a minute", f"{target.max_connections_per_minute} per address"),
            ("CA file", _e(target.ca_file) if target.ca_file else "the system store"),
            ("Labels", labels),
        ]
    )


def _sender_names(target: Target) -> str:
    """The senders the target tests, the important ones (whose incompatibility alerts) said."""
    names = [
        _e(p.name) + (" (important)" if p.name in target.important_senders else "")
        for p in target.senders
    ]
    return ", ".join(names) or "none"


def _summary_of(target: Target, result: ProbeResult, now: float) -> str:
    if result.success:
        status = "ok"
    else:
        reason = result.error.value if result.error else "failed"
        status = f'<span class="bad">FAILED: {_e(reason)}</span>'
    if result.error_detail:
        status += f' <span class="wrap">{_e(result.error_detail)}</span>'
    advertised = result.starttls_advertised
    starttls = _NONE if advertised is None else "yes" if advertised else "NOT advertised"
    if result.negotiated:
        negotiated = f"{_e(result.negotiated.version)} {_e(result.negotiated.cipher)}"
    elif result.default_client_error:
        negotiated = f"handshake failed: {_e(result.default_client_error)}"
    else:
        negotiated = "no handshake"
    upcoming = next_probe_estimate(target, result)
    return _table(
        [
            ("Status", status),
            ("Started", _utc(result.started)),
            ("Duration", f"{result.duration:.2f}s"),
            ("Finished", f"{_utc(result.finished)} ({_span(now - result.finished)} ago)"),
            ("Next probe", f"about {_utc(upcoming)} (an estimate)"),
            ("STARTTLS", starttls),
            ("Default client", negotiated),
        ]
    )


def _versions(result: ProbeResult) -> str:
    rows = []
    for v in result.versions:
        css = _VERDICT_CSS[v.verdict]
        if v.verdict is Verdict.ACCEPTED and v.version in LEGACY:
            css = "warn"
        cipher = suite_name(v.cipher) if v.cipher is not None else ""
        rows.append(
            f'<tr><td>{v.version.display}</td><td class="{css}">{v.verdict.value}</td>'
            f'<td class="mono">{_e(cipher)}</td><td class="wrap">{_e(v.detail)}</td></tr>'
        )
    return (
        "<table><tr><th>Version</th><th>Verdict</th><th>Cipher</th><th>Detail</th></tr>"
        + "".join(rows)
        + "</table>"
    )


_SENDER_CSS: Final = {"compatible": "acc", "incompatible": "bad", "unknown": "unk"}


def _sender_row(sender: SenderResult) -> str:
    version = TLSVersion.from_wire(sender.version) if sender.version else None
    cipher = suite_name(sender.suite) if sender.suite is not None else ""
    css = _SENDER_CSS.get(sender.compatibility, "unk")
    return (
        f'<tr><td>{_e(sender.profile)}</td><td class="{css}">{_e(sender.compatibility)}</td>'
        f"<td>{version.display if version else ''}</td>"
        f'<td class="mono">{_e(cipher)}</td><td>{_e(sender.failure)}</td>'
        f'<td class="wrap">{_e(sender.detail)}</td></tr>'
    )


def _senders(target: Target, result: ProbeResult) -> str:
    """What each sender the target tests gets: its ClientHello's verdict, one connection."""
    if not result.senders:
        if not target.senders:
            return "<p>This target tests no sender (<code>senders</code> is empty).</p>"
        return "<p>This probe reached no sender's verdict.</p>"
    return (
        "<p><small>Each sender's own ClientHello (its versions, suites, groups and signature"
        " algorithms), one connection each. Accepting a version is not enough: a sender"
        " is compatible only when the server takes what it offers.</small></p>"
        "<table><tr><th>Profile</th><th>Result</th><th>Version</th><th>Cipher</th>"
        "<th>What failed</th><th>Detail</th></tr>"
        + "".join(_sender_row(sender) for sender in result.senders)
        + "</table>"
    )


_DIRECTION: Final = {Kind.CLIENT: "C:", Kind.SERVER: "S:", Kind.NOTE: "note"}


def _connection(log: ConnectionLog) -> str:
    rows = [
        f'<tr class="{line.kind.value}"><td class="num">+{line.at * 1000:.1f} ms</td>'
        f'<td>{_DIRECTION[line.kind]}</td><td class="text">{_e(line.text)}</td></tr>'
        for line in log.lines
    ]
    return (
        f"<section><h3>{_e(log.purpose)}</h3>"
        '<table class="tx"><tr><th>Time</th><th>Dir</th><th>Text</th></tr>'
        + "".join(rows)
        + "</table></section>"
    )


def _transcript(result: ProbeResult) -> str:
    logs = unpack(result.transcript)
    if not logs:
        return "<p>This probe recorded no transcript.</p>"
    return (
        "<p><small>Times from the start of the probe. C: the probe, S: the server;"
        " connections ran at once.</small></p>" + "".join(_connection(log) for log in logs)
    )


def _days(moment: datetime, now: float) -> str:
    days = _days_left(moment, now)
    css = "bad" if days < 0 else "warn" if days < CERT_WARN_DAYS else ""
    text = f"{days:.0f} days left" if days >= 0 else f"expired {-days:.0f} days ago"
    return f'<span class="{css}">{text}</span>' if css else text


def _date(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _certificate(cert: CertificateInfo, now: float) -> str:
    if cert.verified:
        verification = "verified"
    else:
        verification = f'<span class="bad">NOT verified: {_e(_verification(cert))}</span>'
    if cert.verify_detail:
        verification += f' <span class="wrap">{_e(cert.verify_detail)}</span>'
    leaf = _table(
        [
            ("Subject", _e(cert.subject)),
            ("Issuer", _e(cert.issuer)),
            ("Names", _e(", ".join(cert.sans)) or _NONE),
            ("Valid from", _date(cert.not_before)),
            ("Valid until", f"{_date(cert.not_after)} ({_days(cert.not_after, now)})"),
            ("Key", f"{_e(cert.key_type)} {cert.key_bits}"),
            ("Signature", _e(cert.signature_algorithm)),
            ("Serial", f'<span class="mono wrap">{_e(cert.serial)}</span>'),
            ("SHA-256", f'<span class="mono wrap">{_e(cert.fingerprint_sha256)}</span>'),
            ("Verification", verification),
        ]
    )
    chain = "".join(
        f"<tr><td>{number}</td><td>{_e(c.subject)}</td><td>{_e(c.issuer)}</td>"
        f"<td>{_date(c.not_before)}</td><td>{_date(c.not_after)}</td>"
        f"<td>{_days(c.not_after, now)}</td>"
        f'<td class="mono wrap">{_e(c.fingerprint_sha256)}</td></tr>'
        for number, c in enumerate(cert.chain)
    )
    return (
        leaf + f"<h3>Chain as sent ({len(cert.chain)})</h3>"
        "<table><tr><th>#</th><th>Subject</th><th>Issuer</th><th>Not before</th>"
        "<th>Not after</th><th>Left</th><th>SHA-256</th></tr>" + chain + "</table>"
    )


def render_target(target: Target, result: ProbeResult | None, now: float) -> str:
    """One target: its settings, its last result, each version, the transcript, the chain."""
    body = [
        '<p><a href="./">← all targets</a></p>',
        f"<h1>{_e(target.name)}</h1>",
        '<p><a href="#settings">Settings</a> · <a href="#result">Last probe</a>'
        ' · <a href="#versions">Versions</a> · <a href="#senders">Senders</a>'
        ' · <a href="#transcript">Transcript</a>'
        ' · <a href="#certificate">Certificate</a></p>',
        '<h2 id="settings">Settings</h2>',
        _settings(target),
        '<h2 id="result">Last probe</h2>',
    ]
    if result is None:
        body.append("<p>Waiting for the first probe.</p>")
        return _page(f"{target.name} · SMTP TLS exporter", "".join(body))
    body += [
        _summary_of(target, result, now),
        '<h2 id="versions">Versions</h2>',
        _versions(result),
        '<h2 id="senders">Senders</h2>',
        _senders(target, result),
        '<h2 id="transcript">Transcript</h2>',
        _transcript(result),
        '<h2 id="certificate">Certificate</h2>',
        _certificate(result.certificate, now)
        if result.certificate
        else "<p>No certificate was read.</p>",
        "<p><small>Times are UTC.</small></p>",
    ]
    return _page(f"{target.name} · SMTP TLS exporter", "".join(body))


def render_not_found(name: str) -> str:
    """The page for a name no target of this process has."""
    shown = name if len(name) <= DETAIL_CHARS else name[:DETAIL_CHARS] + "…"
    return _page(
        "No such target · SMTP TLS exporter",
        '<p><a href="./">← all targets</a></p><h1>No such target</h1>'
        f"<p>No target is named <code>{_e(shown)}</code> in this exporter's config"
        " (under <code>--shard</code>, in this shard). Target names are the"
        " <code>target</code> label values.</p>",
    )


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n<body>{body}</body></html>\n"
    )
