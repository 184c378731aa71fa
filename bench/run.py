"""`python -m bench`: build the fleet, run the exporter on it at each size, the slow-greeting
round, and the CPU comparison with blackbox_exporter on Postfix; print the table.

    python -m bench                        # 100, 1,000 and 10,000 targets (several minutes)
    python -m bench --quick                # 100 and 1,000, a small slow round: a smoke test
    python -m bench --targets 500 --json   # JSON on stdout (the table goes to stderr)
    python -m bench --targets 10000 --profile DIR --no-slow --no-compare   # py-spy
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from bench import netns
from bench.compare import compare
from bench.fleetcerts import make_fleet_certs
from bench.fleetrun import Options, run_size, run_slow
from bench.processes import BenchError
from bench.procstat import machine
from bench.report import Report, as_json, table


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("sizes must be whole numbers of at least 1")
    return sorted(set(sizes))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--targets", type=_sizes, default=None, help="sizes (100,1000,10000)")
    p.add_argument("--quick", action="store_true", help="100 and 1,000; slow round of 500")
    p.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    p.add_argument("--slow-targets", type=int, default=None, help="slow round size (5000)")
    p.add_argument("--slow-greeting", type=float, default=3.0, help="its greeting delay (s)")
    p.add_argument("--no-fleet", action="store_true", help="skip the fleet sizes")
    p.add_argument("--no-slow", action="store_true", help="skip the slow-greeting round")
    p.add_argument("--no-compare", action="store_true", help="skip Postfix/blackbox CPU")
    p.add_argument("--no-install", action="store_true", help="never apt-get blackbox")
    p.add_argument("--no-netns", action="store_true", help="fleet on the host loopback")
    p.add_argument("--shared-cert", action="store_true", help="one certificate for all targets")
    p.add_argument("--compare-rounds", type=int, default=6, help="rounds measured (6)")
    p.add_argument("--concurrency", type=int, default=None, help="--probe.concurrency")
    p.add_argument("--rtt-ms", type=float, default=0.0, help="responder delay per answer")
    p.add_argument("--scrapes", type=int, default=7, help="timed scrapes per size (7)")
    p.add_argument("--profile", type=Path, help="py-spy the largest size's first round")
    p.add_argument("--tracemalloc", action="store_true", help="allocation sites (slow)")
    p.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    return p


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the finally blocks stop every process this run started


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.compare_rounds < 1 or args.scrapes < 1:
        parser().error("--compare-rounds and --scrapes must be at least 1")
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="smtp-tls-bench-"))
    try:
        report = measure(args, workdir)
    except BenchError as exc:
        say(f"bench failed: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if args.keep:
            say(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    text = table(report)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps(as_json(report), indent=2))
    else:
        print(text)
    return 0


def measure(args: Any, workdir: Path) -> Report:
    sizes: list[int] = args.targets or ([100, 1000] if args.quick else [100, 1000, 10000])
    if args.no_fleet:
        sizes = []
    slow_targets = args.slow_targets or (500 if args.quick else 5000)
    certs = workdir / "certs"
    leaves = 1 if args.shared_cert else max([*sizes, 0 if args.no_slow else slow_targets, 1])
    say(f"making {leaves:,} certificates")
    make_fleet_certs(certs, leaves)
    options = Options(
        workdir=workdir,
        certs=certs,
        concurrency=args.concurrency,
        reply_delay=args.rtt_ms / 1000,
        scrapes=args.scrapes,
        shared_cert=args.shared_cert,
        say=say,
    )
    report = Report(machine=machine(), settings=_settings(args, sizes, slow_targets))
    if sizes or not args.no_slow:
        with netns.entered(say) if not args.no_netns else _host(say) as namespace:
            options = dataclasses.replace(options, any_address=namespace is not None)
            report.settings["network_namespace"] = namespace is not None
            _fleet(args, options, sizes, slow_targets, report)
    if not args.no_compare:
        say("CPU per target-round on Postfix: this exporter and blackbox_exporter")
        report.cpu = compare(workdir, args.compare_rounds, say, install=not args.no_install)
    if args.profile or args.tracemalloc:
        _print_profile(report)
    return report


@contextmanager
def _host(say: Callable[[str], None]) -> Iterator[None]:
    say("  --no-netns: one listener per target on the host loopback")
    yield None


def _fleet(
    args: Any, options: Options, sizes: list[int], slow_targets: int, report: Report
) -> None:
    """The fleet sizes and the slow round (in the namespace, where there is one)."""
    for count in sizes:
        say(f"fleet of {count:,} targets")
        largest = count == sizes[-1]
        sized = dataclasses.replace(
            options,
            profile_dir=args.profile if largest else None,
            tracemalloc=args.tracemalloc and largest,
        )
        report.sizes.append(run_size(sized, count))
    if not args.no_slow:
        say(f"slow round: {slow_targets:,} targets, greeting after {args.slow_greeting:g} s")
        report.slow = run_slow(options, slow_targets, args.slow_greeting)


def _commit() -> str | None:
    """The checkout measured (`git describe`), None outside a git work tree."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def _settings(args: Any, sizes: list[int], slow_targets: int) -> dict[str, Any]:
    return {
        "commit": _commit(),
        "targets": sizes,
        "slow_targets": None if args.no_slow else slow_targets,
        "slow_greeting_s": args.slow_greeting,
        "concurrency": args.concurrency or "default",
        "rtt_ms": args.rtt_ms,
        "certificates": "shared" if args.shared_cert else "one per target",
        "scrapes": args.scrapes,
        "profiled": bool(args.profile),
        "tracemalloc": bool(args.tracemalloc),
    }


def _print_profile(report: Report) -> None:
    if not report.sizes:
        return
    largest = report.sizes[-1]
    if largest.hot_spots:
        say(f"py-spy, first round of {largest.targets:,} targets: hot spots (self, inclusive)")
    for spot in largest.hot_spots:
        say(f"  {spot['self']:6.1%} {spot['inclusive']:6.1%}  {spot['frame']}")
    for when, sites in (
        ("halfway through the first round", largest.memory_sites_mid),
        ("after the first round and the timed scrapes", largest.memory_sites),
    ):
        if sites:
            say(f"tracemalloc {when}: biggest allocation sites")
        for site in sites:
            say(f"  {site['mb']:8.1f} MB {site['share']:6.1%}  {site['site']}")


if __name__ == "__main__":
    raise SystemExit(main())
