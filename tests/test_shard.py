"""Sharding (`--shard=I/N`): the hash, the spec, the app keeping each target on its shard, the
command line, and two real exporters splitting one config of real Postfix listeners."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.app import Exporter, describe_targets, shard_targets
from exporter.cli import main
from exporter.config import Config, parse_config
from exporter.shard import Shard, jump_hash, name_key, parse_shard, shard_of
from exporter.store import ShardStatus
from exporter.target import Target
from tests.support.exporter_process import (
    HOST,
    ExporterProcess,
    free_port,
    listener_defaults,
    run_exporter,
    target_entry,
    write_config,
)
from tests.support.postfix import PostfixServers

MAX_SHARDS = 64

names = st.text(min_size=1, max_size=40)
name_lists = st.lists(names, min_size=0, max_size=200, unique=True)
shard_counts = st.integers(min_value=1, max_value=MAX_SHARDS)
label_values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)


def target(name: str, *, port: int = 25, labels: tuple[tuple[str, str], ...] = ()) -> Target:
    return Target(host="mx.example.org", port=port, name=name, labels=labels)


def config_text(entries: list[dict[str, Any]]) -> str:
    lines = ["targets:"]
    for entry in entries:
        lines.append(f"  - host: {entry['host']}")
        for key in ("port", "name"):
            if key in entry:
                lines.append(f"    {key}: {entry[key]}")
        if entry.get("labels"):
            pairs = ", ".join(f"{k}: {v}" for k, v in entry["labels"].items())
            lines.append(f"    labels: {{{pairs}}}")
    return "\n".join(lines) + "\n"


def config_of(entries: list[dict[str, Any]]) -> Config:
    return parse_config(config_text(entries), "config.yaml", default_ehlo_name="probe.test")


# --- the hash ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "buckets", "bucket"),
    [
        # The reference implementation's results, as other implementations test them.
        (1, 1, 0),
        (42, 57, 43),
        (256, 1024, 520),
        (0xDEAD10CC, 1, 0),
        (0xDEAD10CC, 666, 361),
        (16045690984833335023, 255, 237),
        (0, 60, 0),
        (1, 60, 55),
        (2, 60, 46),
    ],
)
def test_jump_hash_matches_the_reference(key: int, buckets: int, bucket: int) -> None:
    assert jump_hash(key, buckets) == bucket


def test_name_key_is_the_first_eight_bytes_of_sha256() -> None:
    digest = hashlib.sha256(b"mx1.example.org:25").hexdigest()
    assert name_key("mx1.example.org:25") == int(digest[:16], 16)


# Pinned: a change here moves targets between the replicas of every sharded deployment.
@pytest.mark.parametrize(
    ("name", "shards", "shard"),
    [
        ("mx1.example.org:25", 2, 1),
        ("mx1.example.org:25", 3, 1),
        ("mx1.example.org:25", 10, 9),
        ("example-mx2", 3, 1),
        ("smtp.example.org:465", 7, 6),
        ("[2001:db8::25]:25", 5, 2),
        ("mx.xn--bcher-kva.example:25", 16, 13),
    ],
)
def test_shard_of_is_pinned(name: str, shards: int, shard: int) -> None:
    assert shard_of(name, shards) == shard


def test_jump_hash_refuses_no_buckets() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        jump_hash(1, 0)


@given(names, shard_counts)
def test_shard_is_in_range(name: str, shards: int) -> None:
    assert 0 <= shard_of(name, shards) < shards


@given(name_lists, shard_counts)
def test_shards_partition_every_target_list(target_names: list[str], shards: int) -> None:
    targets = [target(n) for n in target_names]
    owners = Counter(
        t.name for index in range(shards) for t in Shard(index, shards).select(targets)
    )
    assert owners == Counter(target_names)  # every target in exactly one shard


@given(name_lists, shard_counts)
def test_select_keeps_the_config_order(target_names: list[str], shards: int) -> None:
    targets = [target(n) for n in target_names]
    for index in range(shards):
        chosen = Shard(index, shards).select(targets)
        assert list(chosen) == [t for t in targets if t in chosen]


@given(names, st.integers(min_value=1, max_value=MAX_SHARDS - 1))
def test_one_more_shard_moves_targets_only_to_it(name: str, shards: int) -> None:
    before, after = shard_of(name, shards), shard_of(name, shards + 1)
    assert after in (before, shards)


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=12), st.integers(min_value=2, max_value=MAX_SHARDS))
def test_split_is_roughly_even(salt: str, shards: int) -> None:
    count = 6400
    sizes = Counter(shard_of(f"{salt}mx{i}.example.org:25", shards) for i in range(count))
    mean = count / shards
    sigma = (count * (1 / shards) * (1 - 1 / shards)) ** 0.5
    assert len(sizes) == shards
    assert all(abs(size - mean) < 6 * sigma for size in sizes.values()), sizes


# --- membership depends on the name only ------------------------------------------------------


@st.composite
def reloads(draw: st.DrawFn) -> tuple[list[Target], list[Target]]:
    """Two target lists sharing some names, whose shared targets differ in everything else:
    port, labels, position, and the targets around them."""
    shared = draw(st.lists(names, min_size=1, max_size=60, unique=True))
    extra = st.lists(names.filter(lambda n: n not in shared), max_size=30, unique=True)
    labels = st.lists(st.tuples(st.sampled_from(["site", "env"]), label_values), max_size=2)

    def make(name: str) -> Target:
        ports = st.integers(min_value=1, max_value=65535)
        return target(name, port=draw(ports), labels=tuple(dict(draw(labels)).items()))

    first = [make(n) for n in [*shared, *draw(extra)]]
    second = [make(n) for n in draw(st.permutations([*shared, *draw(extra)]))]
    return first, second


@given(reloads(), shard_counts)
def test_membership_depends_on_the_name_only(
    lists: tuple[list[Target], list[Target]], shards: int
) -> None:
    first, second = lists
    common = {t.name for t in first} & {t.name for t in second}
    for index in range(shards):
        shard = Shard(index, shards)
        before = {t.name for t in shard.select(first)} & common
        after = {t.name for t in shard.select(second)} & common
        assert before == after


def entries(names_ports: list[tuple[str, int]], **labels: str) -> list[dict[str, Any]]:
    """Config entries of named targets, each on its own host, all with `labels`."""
    return [
        {"host": f"mx{i}.example.org", "port": port, "name": name, "labels": labels}
        for i, (name, port) in enumerate(names_ports)
    ]


def test_app_selects_the_shards_targets() -> None:
    config = config_of(entries([(f"t{i}", 25) for i in range(40)]))
    shards = [shard_targets(config, Shard(i, 3)) for i in range(3)]
    assert sorted(t.name for s in shards for t in s) == sorted(t.name for t in config.targets)
    assert shard_targets(config, None) == config.targets
    assert describe_targets(config, None) == "40 targets"
    assert describe_targets(config, Shard(1, 3)) == f"{len(shards[1])} of 40 targets on shard 1/3"


def stored_names(exporter: Exporter) -> set[str]:
    return {t.name for t, _ in exporter.store.snapshot()}


async def test_reload_keeps_every_target_on_its_shard(tmp_path: Path) -> None:
    """A reload with other targets, other labels and another order: the store holds exactly
    this shard's targets before and after, and the shared ones stay."""
    path = tmp_path / "config.yaml"
    first = [(f"mx{i}", 25) for i in range(30)]
    moved = [(name, 587) for name, _ in reversed(first[10:])]
    second = moved + [(f"new{i}", 25) for i in range(20)]
    path.write_text(config_text(entries(first)))
    exporter = Exporter(str(path), 4, Shard(1, 3))
    exporter.install(config_of(entries(first)))
    before = stored_names(exporter)
    assert before == {n for n, _ in first if shard_of(n, 3) == 1}
    assert exporter.store.target_count == len(before)
    assert exporter.store.shard == ShardStatus(1, 3, 30)

    path.write_text(config_text(entries(second, site="eu")))
    ok, message = await exporter.reload()
    assert ok, message
    after = stored_names(exporter)
    assert after == {n for n, _ in second if shard_of(n, 3) == 1}
    assert before & after == before - {n for n, _ in first[:10]}
    assert exporter.store.shard == ShardStatus(1, 3, 40)
    assert message == f"config reloaded: {len(after)} of 40 targets on shard 1/3"
    assert all(dict(t.labels) == {"site": "eu"} for t, _ in exporter.store.snapshot())
    await exporter.stop_reloads()


def test_without_shard_the_store_has_every_target_and_no_shard() -> None:
    config = config_of(entries([(f"t{i}", 25) for i in range(5)]))
    exporter = Exporter("config.yaml", 4)
    exporter.install(config)
    assert exporter.store.target_count == 5
    assert exporter.store.shard is None


def test_a_shard_without_targets_runs_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    name = "only-one"
    config = config_of(entries([(name, 25)]))
    empty = Shard(1 - shard_of(name, 2), 2)
    exporter = Exporter("config.yaml", 4, empty)
    exporter.install(config)
    assert exporter.store.target_count == 0
    assert exporter.store.ready
    assert exporter.store.shard == ShardStatus(empty.index, 2, 1)
    assert "this shard has no targets" in caplog.text


# --- the spec -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "index", "count"), [("0/1", 0, 1), ("0/2", 0, 2), ("1/2", 1, 2), ("63/64", 63, 64)]
)
def test_parse_shard(text: str, index: int, count: int) -> None:
    shard = parse_shard(text)
    assert shard == Shard(index, count)
    assert str(shard) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("3/3", "I must be from 0 to 2 (N-1), got 3"),
        ("-1/2", "I must be a whole number from 0 to N-1, got '-1'"),
        ("0/0", "N must be at least 1, got 0"),
        ("a/b", "N must be a whole number of at least 1, got 'b'"),
        ("a/2", "I must be a whole number from 0 to N-1, got 'a'"),
        ("1", "expected I/N"),
        ("", "expected I/N"),
        ("0/2/3", "expected I/N"),
        ("/3", "I is empty"),
        ("0/", "N must be a whole number"),
        (" 0/2", "I must be a whole number"),
        ("0/+2", "N must be a whole number"),
        ("1.0/2", "I must be a whole number"),
        ("٣/4", "I must be a whole number"),  # a digit, but not an ASCII one
    ],
)
def test_parse_shard_refuses(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_shard(text)


@given(st.integers(min_value=1, max_value=10**6).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n - 1), st.just(n))
))  # fmt: skip
def test_parse_shard_reads_what_str_writes(spec: tuple[int, int]) -> None:
    shard = Shard(*spec)
    assert parse_shard(str(shard)) == shard


# --- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["3/3", "-1/2", "0/0", "a/b", "1", "", "/2"])
def test_bad_shard_is_a_usage_error_before_the_config_is_read(
    spec: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.yaml"  # read first, it would exit 1
    with pytest.raises(SystemExit) as exit_info:
        main([f"--config.file={missing}", "--config.check", f"--shard={spec}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --shard:" in err
    assert "missing.yaml" not in err
    assert "Traceback" not in err


def test_config_check_counts_the_shards_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target_names = [f"mx{i}" for i in range(12)]
    path = tmp_path / "config.yaml"
    path.write_text(config_text(entries([(n, 25) for n in target_names])))
    assert main([f"--config.file={path}", "--config.check"]) == 0
    assert capsys.readouterr().out == f"{path}: OK, 12 targets\n"
    for index in range(3):
        mine = sum(shard_of(n, 3) == index for n in target_names)
        assert main([f"--config.file={path}", "--config.check", f"--shard={index}/3"]) == 0
        assert capsys.readouterr().out == f"{path}: OK, {mine} of 12 targets on shard {index}/3\n"


def test_config_check_of_a_bad_file_with_a_shard(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("targets: []\n")
    done = run_exporter(f"--config.file={path}", "--config.check", "--shard=0/2")
    assert done.returncode == 1, done.stderr
    assert str(path) in done.stderr


# --- two real exporters split one config ------------------------------------------------------

FIRST_ROUND_TIMEOUT = 90.0


def shard_scrape_targets(process: ExporterProcess) -> set[str]:
    """The `target` label values of a shard once every one of its targets has a result."""

    def complete(scrape: Any) -> bool:
        expected = scrape.value("smtp_tls_exporter_targets")
        return expected is not None and len(scrape.targets()) == expected

    scrape = process.wait_for_scrape(
        complete, timeout=FIRST_ROUND_TIMEOUT, what="a result for every target of the shard"
    )
    found: set[str] = scrape.targets()
    every = {s.labels["target"] for s in scrape.samples if "target" in s.labels}
    assert every == found  # no series of another shard's target anywhere
    return found


def status_page_names(process: ExporterProcess, candidates: set[str]) -> set[str]:
    page = process.get("/").text
    return {name for name in candidates if f"<td>{name}</td>" in page}


@pytest.mark.postfix
def test_two_exporters_split_one_config(postfix: PostfixServers, tmp_path: Path) -> None:
    listeners = postfix.names
    closed = [f"closed{i}" for i in range(4)]
    targets = [target_entry(postfix, name) for name in listeners]
    targets += [{"host": HOST, "port": free_port(), "name": name} for name in closed]
    config: dict[str, Any] = {
        "defaults": listener_defaults(postfix),
        "targets": targets,
    }
    path = write_config(tmp_path / "config.yaml", config)
    every = {t["name"] for t in targets}
    with (
        ExporterProcess(path, extra_args=["--shard=0/2"]) as zero,
        ExporterProcess(path, extra_args=["--shard=1/2"]) as one,
    ):
        found = [shard_scrape_targets(zero), shard_scrape_targets(one)]
        assert found[0] | found[1] == every
        assert found[0] & found[1] == set()
        for index, names_found in enumerate(found):
            assert names_found == {n for n in every if shard_of(n, 2) == index}
        assert status_page_names(zero, every) == found[0]
        assert status_page_names(one, every) == found[1]
        for index, process in enumerate((zero, one)):
            summary = f"Shard {index} of 2 (0 to 1): {len(found[index])} of the config's"
            assert summary in process.get("/").text
            scrape = process.scrape()
            assert scrape.value("smtp_tls_exporter_shard_info", shard=str(index), shards="2") == 1
            assert scrape.value("smtp_tls_exporter_config_targets") == len(every)

        # A reload with the targets in reverse order, new labels and one more target: every
        # target stays with its exporter.
        config["targets"] = [t | {"labels": {"site": "moved"}} for t in reversed(targets)]
        config["targets"].append({"host": HOST, "port": free_port(), "name": "added"})
        write_config(path, config)
        for process in (zero, one):
            answer = process.reload()
            assert answer.status == 200, answer.text
        after = [shard_scrape_targets(zero), shard_scrape_targets(one)]
        added = [{"added"} if shard_of("added", 2) == i else set() for i in range(2)]
        assert after == [found[0] | added[0], found[1] | added[1]]
