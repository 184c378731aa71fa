"""Whether the exporter's verdicts on the fleet are right: each address's profile says what
its server accepts, so every wrong series is found, not just counted as a success."""

from __future__ import annotations

from bench.fleet import index_of, profile_of
from bench.scrape import Results
from exporter.target import DEFAULT_VERSIONS


def expected(target: str) -> tuple[dict[str, float], str | None] | None:
    """The version series and the default client's version a fleet target must show, None
    for a target outside the fleet."""
    host = target.rpartition(":")[0]
    index = index_of(host)
    if index is None:
        return None
    profile = profile_of(index)
    versions = {v.value: 1.0 if v in profile.accepted else 0.0 for v in DEFAULT_VERSIONS}
    return versions, profile.default_client


def wrong_verdicts(results: Results) -> list[str]:
    """One line per target whose series differ from what its server does."""
    wrong = []
    for target in sorted(results.finished):
        want = expected(target)
        if want is None:
            wrong.append(f"{target}: not a fleet address")
            continue
        versions, negotiated = want
        got = results.versions.get(target, {})
        if got != versions:
            wrong.append(f"{target}: versions {got}, expected {versions}")
        if results.negotiated.get(target) != negotiated:
            wrong.append(
                f"{target}: default client {results.negotiated.get(target)}, expected {negotiated}"
            )
    return wrong
