"""The coverage-guided fuzzing's corpus, replayed: every input kept in bench/fuzz/corpus
(seeds, and findings once fixed) runs through its target's harness with only the errors its
callers handle. And `python -m bench.fuzz` itself works: it lists, reproduces, and, where
atheris is installed, fuzzes a target briefly and finds nothing."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bench.fuzz.harnesses import HARNESSES, Harness

REPO = Path(__file__).resolve().parents[1]


def corpus_files() -> list[tuple[str, Path]]:
    return [
        (name, path)
        for name, harness in HARNESSES.items()
        for path in sorted(harness.corpus.iterdir())
        if path.is_file()
    ]


@pytest.mark.parametrize("harness", list(HARNESSES.values()), ids=list(HARNESSES))
def test_every_target_has_seeds(harness: Harness) -> None:
    assert len(list(harness.corpus.iterdir())) >= 5


@pytest.mark.parametrize(
    ("target", "path"), corpus_files(), ids=[f"{t}/{p.name}" for t, p in corpus_files()]
)
def test_every_corpus_input_runs_cleanly(target: str, path: Path) -> None:
    HARNESSES[target].one_input(path.read_bytes())


def test_structured_edits_of_certificates_stay_chains() -> None:
    """The certificate target's own mutation: DER changed inside, lengths right, still a
    chain the harness reads; nothing to edit in bytes that are no chain."""
    harness = HARNESSES["certificate"]
    assert harness.edit is not None
    seed = (harness.corpus / "rsa-chain").read_bytes()
    rng = random.Random(7)
    edited = [harness.edit(seed, rng) for _ in range(50)]
    assert all(e is not None and e[0] == seed[0] for e in edited)
    assert len(set(edited)) > 10
    for data in edited:
        assert data is not None
        harness.one_input(data)
    assert harness.edit(b"", rng) is None
    assert harness.edit(b"\x00\x00\x00\x05abcde", rng) is None


def fuzz_command(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.fuzz", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_command_lists_its_targets() -> None:
    done = fuzz_command("--list")
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == list(HARNESSES)


def test_reproduce_replays_one_input() -> None:
    seed = HARNESSES["smtp"].corpus / "postfix"
    done = fuzz_command("--target", "smtp", "--reproduce", str(seed))
    assert done.returncode == 0, done.stderr
    assert "runs cleanly" in done.stdout


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_a_short_run_finds_nothing(tmp_path: Path) -> None:
    done = fuzz_command(
        "--target",
        "hello",
        "--budget",
        "3",
        "--crashes",
        str(tmp_path / "crashes"),
        "--work",
        str(tmp_path / "corpus"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("hello        ok: "), done.stdout
    assert list((tmp_path / "crashes" / "hello").iterdir()) == []
