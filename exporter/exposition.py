"""The /metrics body, fast: each target's sample lines are rendered once per probe result
and reused on every scrape until the next one, so a scrape of tens of thousands of targets is
mostly string joining. The bytes are the client library's own, byte for byte (a test holds
that); formats this does not know are left to the client library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.collector import FAMILIES, add_result
from exporter.results import ProbeResult
from exporter.store import ResultStore
from exporter.target import Target

_go_float = cast(Callable[[float], str], floatToGoString)
_openmetrics_latest = cast(Callable[[Collector], bytes], openmetrics.generate_latest)
_text_latest = cast(Callable[[Collector], bytes], generate_latest)

TEXT = "text"
OPENMETRICS = "openmetrics"


#: `escaping` values under which every name of this exporter (all legacy names) is written
#: as it is; `dots` and `values` rewrite underscores, and are left to the client library.
_VERBATIM_ESCAPING = (None, "underscores", "allow-utf-8")


def exposition_format(content_type: str) -> str | None:
    """`TEXT` or `OPENMETRICS` for the content types of those formats, else None.

    `charset` is always UTF-8. prometheus_client 0.26 adds `escaping=underscores` to the
    OpenMetrics type it answers Prometheus 2 with, `escaping=allow-utf-8` for Prometheus 3:
    both leave legacy names as they are, so the cached lines serve them, and the text format
    1.0.0 (Prometheus 3) is then byte for byte the text format 0.0.4.
    """
    media, *params = (part.strip() for part in content_type.split(";"))
    values = dict(_param(p) for p in params)
    if values.get("escaping") not in _VERBATIM_ESCAPING:
        return None
    version = values.get("version")
    if media == "text/plain" and version in (None, "0.0.4", "1.0.0"):
        return TEXT
    if media == "application/openmetrics-text" and version == "1.0.0":
        return OPENMETRICS
    return None


def _param(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    return name.strip().lower(), value.strip()


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _text_header(name: str, kind: str, doc: str) -> str:
    kind = "gauge" if kind == "info" else kind
    doc = doc.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


def _openmetrics_header(name: str, kind: str, doc: str) -> str:
    family = name.removesuffix("_info") if kind == "info" else name
    return f"# HELP {family} {_escape(doc)}\n# TYPE {family} {kind}\n"


_HEADERS = {
    TEXT: {name: _text_header(name, kind, doc) for name, kind, doc in FAMILIES},
    OPENMETRICS: {name: _openmetrics_header(name, kind, doc) for name, kind, doc in FAMILIES},
}
_FAMILY_ORDER = tuple(name for name, _, _ in FAMILIES)


def _render_lines(target: Target, result: ProbeResult) -> dict[str, str]:
    """One target's sample lines in the text format, by family."""
    lines: dict[str, list[str]] = {}

    def sink(name: str, labels: dict[str, str], value: float) -> None:
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        lines.setdefault(name, []).append(f"{name}{{{text}}} {_go_float(value)}\n")

    add_result(sink, target, result)
    return {name: "".join(parts) for name, parts in lines.items()}


class CachedExposition:
    """Per-target families from rendered lines, the exporter's own through the client library."""

    def __init__(self, store: ResultStore, own: Collector) -> None:
        self._store = store
        self._own = own
        #: Target name -> (target, result, its lines by family, in `_FAMILY_ORDER`).
        self._rendered: dict[str, tuple[Target, ProbeResult, tuple[str, ...]]] = {}
        #: (format, store version, the per-target families' text): the last one rendered
        #: only, as Prometheus asks for one format (14 MB at 10,000 targets).
        self._body: tuple[str, int, bytes] | None = None

    def render(self, content_type: str) -> bytes | None:
        """The exposition for `content_type`, or None for formats it does not know."""
        kind = exposition_format(content_type)
        if kind is None:
            return None
        own = _text_latest(self._own) if kind == TEXT else _openmetrics_latest(self._own)
        version = self._store.version
        kept = self._body
        if kept is not None and kept[:2] == (kind, version):
            return kept[2] + own
        rows = self._sample_rows()
        headers = _HEADERS[kind]
        parts = []
        for index, name in enumerate(_FAMILY_ORDER):
            parts.append(headers[name])
            parts.append("".join([row[index] for row in rows]))
        body = "".join(parts).encode()
        self._body = (kind, version, body)
        return body + own

    def _sample_rows(self) -> list[tuple[str, ...]]:
        """Every target's sample lines, one string per family (the same in both formats),
        rendered again only for targets with a new result."""
        cache = self._rendered
        fresh: dict[str, tuple[Target, ProbeResult, tuple[str, ...]]] = {}
        for target, result in self._store.snapshot():
            if result is None:
                continue
            hit = cache.get(target.name)
            if hit is not None and hit[0] is target and hit[1] is result:
                fresh[target.name] = hit
            else:
                lines = _render_lines(target, result)
                row = tuple(lines.get(name, "") for name in _FAMILY_ORDER)
                fresh[target.name] = (target, result, row)
        self._rendered = fresh
        return [entry[2] for entry in fresh.values()]
