"""Config files as people (and copy-paste) write them, anything at all: anchors, aliases
(recursive ones too), merge keys and tags everywhere, and the example config with random
edits. Only ConfigError may come out, each problem one line naming the file; LibYAML and
the pure-Python parser read the same document alike."""

from __future__ import annotations

import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import Config, ConfigError, parse_config
from exporter.config.schema import SETTING_KEYS, TARGET_KEYS
from exporter.config.yamlfile import YamlProblem, load_yaml
from tests.support.mutate import apply_edits, edits

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = (REPO / "config.example.yaml").read_text()
EHLO = "probe.example.org"
#: Far above what any of these files needs.
QUICK = 5.0


def config_or_error(text: str) -> Config | ConfigError:
    """What `text` gives; only ConfigError may escape, quickly, with one-line problems."""
    started = time.monotonic()
    try:
        result: Config | ConfigError = parse_config(
            text, "fuzz.yaml", base_dir=REPO, default_ehlo_name=EHLO
        )
    except ConfigError as error:
        result = error
    assert time.monotonic() - started < QUICK
    if isinstance(result, ConfigError):
        assert result.problems
        for problem in result.problems:
            assert problem
            assert problem.splitlines() == [problem], problem
            assert problem.encode("utf-8")  # it goes into HTTP answers and the status page
        assert all(line.startswith("fuzz.yaml: ") for line in str(result).splitlines())
    return result


# --- YAML with anchors, aliases, merge keys and tags ------------------------------------

KEYS = ["defaults", "targets", "dns", "x-common", *TARGET_KEYS, *SETTING_KEYS, "<<", "?", ""]
SCALARS = [
    "mx.example.org", "192.0.2.1", "'[::1]'", "25", "465", "-1", "0x19", "5m", "1h30m", "0",
    "1e999", ".nan", "~", "null", "yes", "no", "starttls", "implicit", "ssl2", "'1.2'", "1.3",
    '"\\ud800"', '"\\x00"', "'é.example'", "2001-13-40", "!!binary aGk=", "!!int x",
    "!!str 5", "!!float 1", "!!timestamp 2001-01-01", "!!null ''", "!!bool maybe",
    "!!python/object:os.system x", "!custom x", "|\n  x\n", "''", '""',
]  # fmt: skip


@st.composite
def flow_yaml(draw: st.DrawFn, anchors: list[str], depth: int = 0) -> str:
    """One YAML node in flow style; it may carry an anchor, or be an alias to any anchor
    so far (one still open included: a recursive document)."""
    if anchors and draw(st.integers(0, 4)) == 0:
        return "*" + draw(st.sampled_from(anchors))
    prefix = ""
    if draw(st.integers(0, 3)) == 0:
        name = f"a{len(anchors)}"
        anchors.append(name)
        prefix = f"&{name} "
    kind = draw(st.sampled_from(["scalar", "list", "map"] if depth < 4 else ["scalar"]))
    if kind == "scalar":
        return prefix + draw(st.sampled_from(SCALARS) | st.text(max_size=6).map(repr))
    size = draw(st.integers(0, 4))
    if kind == "list":
        items = [draw(flow_yaml(anchors, depth + 1)) for _ in range(size)]
        return prefix + "[" + ", ".join(items) + "]"
    pairs = []
    for _ in range(size):
        key = draw(st.sampled_from(KEYS))
        value = draw(flow_yaml(anchors, depth + 1))
        pairs.append(f"{key}: {value}" if key != "?" else f"? {value}")
    merge = draw(st.booleans())
    if anchors and merge:
        pairs.append("<<: *" + draw(st.sampled_from(anchors)))
    return prefix + "{" + ", ".join(pairs) + "}"


@st.composite
def documents(draw: st.DrawFn) -> str:
    anchors: list[str] = []
    lines = [
        f"{key}: {draw(flow_yaml(anchors))}"
        for key in draw(st.lists(st.sampled_from(KEYS[:4]), max_size=4, unique=True))
    ]
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_anchors_aliases_merges_and_tags_give_a_config_or_problems(text: str) -> None:
    config_or_error(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edits, min_size=1, max_size=6))
def test_the_example_config_with_random_edits_gives_a_config_or_problems(
    changes: list[tuple[str, int, int, bytes]],
) -> None:
    raw = apply_edits(EXAMPLE.encode(), changes)
    config_or_error(raw.decode("utf-8", "replace"))


def test_the_example_config_loads() -> None:
    assert isinstance(config_or_error(EXAMPLE), Config)


# --- both YAML parsers read a document alike --------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents() | st.lists(st.sampled_from(EXAMPLE.splitlines()), max_size=12).map("\n".join))
def test_libyaml_and_pure_python_agree(text: str) -> None:
    """The fast path must not change what a file means: where both parsers read it, the
    data and every line number are the same."""
    try:
        fast, fast_positions = load_yaml(text)
        slow, slow_positions = load_yaml(text, libyaml=False)
    except YamlProblem:
        return
    assert repr(fast) == repr(slow)
    assert [lines for _, lines in fast_positions.lines.values()] == [
        lines for _, lines in slow_positions.lines.values()
    ]
    assert [(key, line) for _, key, line in fast_positions.duplicates] == [
        (key, line) for _, key, line in slow_positions.duplicates
    ]
