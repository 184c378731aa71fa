"""`python -m bench.fuzz`: coverage-guided fuzzing of every parser fed by the network or by
users, each target for its share of a time budget.

    python -m bench.fuzz                       # every target, 240 s of fuzzing in all
    python -m bench.fuzz --budget 3600         # an hour: 15 minutes a target
    python -m bench.fuzz --target hello --target smtp --budget 120
    python -m bench.fuzz --target config --reproduce CRASH_FILE   # one input, its traceback
    python -m bench.fuzz --save-corpus         # keep inputs that add coverage in the repo

Each target runs under atheris (libFuzzer) in a process of its own (its start-up, some
seconds, comes on top of its share), over its corpus in the
repository (bench/fuzz/corpus/TARGET, seeds from `python -m bench.fuzz.seeds`) plus a work
corpus outside it that grows from run to run. An input that lets out an error the callers
do not handle, fails a check, takes longer than --timeout or grows the process past
--rss-limit-mb is written to the crash directory (outside the repository by default) and
the run exits 1. A finding becomes a regression input once copied into the target's corpus
directory: the test suite replays every corpus file (tests/test_fuzz_corpus.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.fuzz.harnesses import HARNESSES, SCRATCH_ENV, Harness, scratch_parent

DEFAULT_BUDGET: Final = 240.0
#: The most memory a target's process may hold (libFuzzer's -rss_limit_mb).
DEFAULT_RSS_MB: Final = 1024
#: The longest one input may take (libFuzzer's -timeout), far above any real input.
DEFAULT_TIMEOUT: Final = 10
#: Past its share, a target's process gets this long to finish before it is killed.
_GRACE: Final = 60.0
REPO: Final = Path(__file__).resolve().parents[2]


def default_state() -> Path:
    return Path(tempfile.gettempdir()) / "smtp-tls-exporter-fuzz"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.fuzz",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds in all (240)")
    p.add_argument("--target", action="append", choices=sorted(HARNESSES), help="repeatable (all)")
    p.add_argument("--crashes", type=Path, help="where findings go (TMPDIR/...)/crashes")
    p.add_argument("--work", type=Path, help="the growing corpora (TMPDIR/...)/corpus")
    p.add_argument("--rss-limit-mb", type=int, default=DEFAULT_RSS_MB, help="per target (1024)")
    p.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="seconds per input (10)")
    p.add_argument("--save-corpus", action="store_true", help="merge new coverage into the repo")
    p.add_argument("--reproduce", type=Path, help="run one input through --target, no fuzzing")
    p.add_argument("--list", action="store_true", help="the targets and what they feed")
    return p


@dataclass(frozen=True)
class Outcome:
    target: str
    seconds: float
    executions: int
    corpus: int
    findings: tuple[Path, ...]
    status: int
    log: Path


def _dictionary(harness: Harness, directory: Path) -> list[str]:
    if not harness.dictionary:
        return []
    path = directory / f"{harness.name}.dict"
    path.write_text("".join(f'"{_escaped(word)}"\n' for word in harness.dictionary))
    return [f"-dict={path}"]


def _escaped(word: bytes) -> str:
    """A dictionary word as libFuzzer reads it: every byte as \\xNN."""
    return "".join(f"\\x{b:02x}" for b in word)


def _stat(log: str, name: str) -> int:
    for line in log.splitlines():
        if line.startswith(f"stat::{name}:"):
            return int(line.split(":")[-1].strip() or 0)
    return 0


def fuzz(harness: Harness, seconds: float, args: argparse.Namespace) -> Outcome:
    """Run one target for `seconds`; what it found."""
    crashes = (args.crashes or default_state() / "crashes") / harness.name
    work = (args.work or default_state() / "corpus") / harness.name
    logs = default_state() / "logs"
    for directory in (crashes, work, logs):
        directory.mkdir(parents=True, exist_ok=True)
    before = set(crashes.iterdir())
    log = logs / f"{harness.name}.log"
    command = [
        sys.executable,
        "-m",
        "bench.fuzz.worker",
        harness.name,
        f"-max_total_time={max(1, int(seconds))}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-timeout={args.timeout}",
        f"-max_len={harness.max_len}",
        f"-artifact_prefix={crashes}/",
        "-print_final_stats=1",
        *_dictionary(harness, logs),
        str(work),
        str(harness.corpus),
    ]
    started = time.monotonic()
    scratch = tempfile.mkdtemp(prefix=f"smtp-tls-fuzz-{harness.name}-", dir=scratch_parent())
    env = {**os.environ, SCRATCH_ENV: scratch}
    try:
        status = _run(command, env, log, seconds + _GRACE)
        if args.save_corpus:
            merge = [*command[:4], "-merge=1", str(harness.corpus), str(work)]
            _run(merge, env, logs / f"{harness.name}-merge.log", None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = log.read_text(errors="replace")
    findings = tuple(sorted(set(crashes.iterdir()) - before))
    return Outcome(
        harness.name,
        time.monotonic() - started,
        _stat(text, "number_of_executed_units"),
        sum(1 for _ in work.iterdir()) + sum(1 for _ in harness.corpus.iterdir()),
        findings,
        status,
        log,
    )


def _run(command: list[str], env: dict[str, str], log: Path, timeout: float | None) -> int:
    """Run a worker with its output in `log`; its exit status (-9: killed, out of time)."""
    with log.open("wb") as out:
        try:
            return subprocess.run(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            return -9


def reproduce(harness: Harness, path: Path) -> int:
    """Run one input through the harness, as the fuzzer did; 1 and the traceback if it fails."""
    try:
        harness.one_input(path.read_bytes())
    except Exception:
        traceback.print_exc()
        return 1
    print(f"{harness.name}: {path} runs cleanly")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        for harness in HARNESSES.values():
            print(f"{harness.name:12} {harness.about}")
        return 0
    names = args.target or list(HARNESSES)
    if args.reproduce:
        if len(names) != 1:
            parser().error("--reproduce needs exactly one --target")
        return reproduce(HARNESSES[names[0]], args.reproduce)
    if args.budget <= 0 or args.timeout < 1 or args.rss_limit_mb < 64:
        parser().error("--budget must be positive, --timeout at least 1, --rss-limit-mb >= 64")
    try:
        import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        print("atheris is not installed: .venv/bin/pip install atheris", file=sys.stderr)
        return 2
    share = args.budget / len(names)
    failed = False
    for name in names:
        outcome = fuzz(HARNESSES[name], share, args)
        ok = outcome.status == 0 and not outcome.findings
        failed |= not ok
        print(
            f"{name:12} {'ok' if ok else 'FOUND'}: {outcome.executions:,} inputs in"
            f" {outcome.seconds:.0f}s, corpus {outcome.corpus:,}",
            flush=True,
        )
        for finding in outcome.findings:
            print(f"  {finding}   (python -m bench.fuzz --target {name} --reproduce FILE)")
        if not ok and not outcome.findings:
            print(f"  exit status {outcome.status}; log: {outcome.log}")
    return 1 if failed else 0
