"""The figures as a plain table (and as JSON), each with its growth per size step and goal."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bench.compare import CpuResult
from bench.fleetrun import SizeResult, SlowResult


@dataclass(frozen=True)
class Figure:
    """One row: how to read it from a size's result, how to print it, its goal."""

    label: str
    read: Callable[[SizeResult], float | None]
    digits: int = 0
    #: The most it may be at the largest size (10,000 targets), None for no goal.
    goal: float | None = None


FIGURES: Final = (
    Figure("/metrics as Prometheus asks, median (ms)", lambda r: r.scrape_ms, 1, 100.0),
    Figure("  first scrape after the round (ms)", lambda r: r.scrape_first_ms, 1),
    Figure("  body, uncompressed (MB)", lambda r: r.body_bytes / 1e6, 2),
    Figure("RSS after the first round (MB)", lambda r: r.rss_mb, 1, 120.0),
    Figure("  peak RSS during the round (MB)", lambda r: r.peak_rss_mb, 1),
    Figure("  RSS after the timed scrapes (MB)", lambda r: r.rss_scraped_mb, 1),
    Figure("first full round (s)", lambda r: r.first_round_s, 1, 30.0),
    Figure("  start until ready (s)", lambda r: r.startup_s, 1),
    Figure("exporter CPU, start to end of round (s)", lambda r: r.cpu_s_round, 1),
    Figure("responder CPU, whole run (s)", lambda r: r.responder_cpu_s, 1),
    Figure("probes at once (exporter's bound)", lambda r: r.concurrency),
    Figure("targets without success", lambda r: r.failed),
    Figure("targets with a wrong verdict", lambda r: r.wrong_verdicts),
)
GOAL_SIZE: Final = 10_000
CPU_GOAL: Final = 0.3
SLOW_ROUND_GOAL: Final = 60.0
SLOW_RSS_GOAL: Final = 150.0


@dataclass
class Report:
    machine: dict[str, str]
    sizes: list[SizeResult] = field(default_factory=list)
    slow: SlowResult | None = None
    cpu: CpuResult | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def number(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if digits == 0 or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def growth(values: Sequence[float | None]) -> list[float | None]:
    """The factor between each size and the next."""
    out: list[float | None] = []
    for low, high in itertools.pairwise(values):
        out.append(high / low if low and high is not None else None)
    return out


def _growth_text(factors: Sequence[float | None], steps: Sequence[float]) -> str:
    parts = []
    for factor, step in zip(factors, steps, strict=True):
        text = "-" if factor is None else f"x{factor:.2g}" if factor < 10 else f"x{factor:.0f}"
        parts.append(text if step == 10 else f"{text} (per x{step:g})")
    return ", ".join(parts)


def _met(value: float | None, goal: float) -> str:
    if value is None:
        return "missed (not reached)"
    return "met" if value <= goal else "missed"


def table(report: Report) -> str:
    """The plain table people read."""
    sizes = [r.targets for r in report.sizes]
    steps = [b / a for a, b in itertools.pairwise(sizes)]
    head = ["figure", *(f"{n:,}" for n in sizes), "growth per 10x", "goal at 10,000"]
    rows = [head]
    for figure in FIGURES:
        values = [figure.read(r) for r in report.sizes]
        goal = ""
        if figure.goal is not None:
            goal = f"<= {number(figure.goal)}"
            if GOAL_SIZE in sizes:
                goal += f" ({_met(values[sizes.index(GOAL_SIZE)], figure.goal)})"
        numbers = [number(v, figure.digits) for v in values]
        rows.append([figure.label, *numbers, _growth_text(growth(values), steps), goal])
    lines = [_header(report), ""]
    if sizes:
        lines += [*_aligned(rows), *_marginal_lines(report.sizes), ""]
    lines += _cpu_lines(report.cpu) + _slow_lines(report.slow)
    return "\n".join(lines) + "\n"


def _header(report: Report) -> str:
    m = report.machine
    commit = report.settings.get("commit")
    return (
        f"smtp-tls-exporter {commit or ''} at scale (python -m bench); machine: nproc "
        f"{m['nproc']}, {m['memory']} RAM, Linux {m['kernel']}, Python {m['python']}"
    ).replace("  ", " ")


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            cell.ljust(width) if i == 0 or i >= len(row) - 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out


def marginal_cpu(sizes: Sequence[SizeResult]) -> list[tuple[int, int, float]]:
    """CPU ms per extra target between each size and the next (start-up cost cancels)."""
    return [
        (a.targets, b.targets, (b.cpu_s_round - a.cpu_s_round) * 1000 / (b.targets - a.targets))
        for a, b in itertools.pairwise(sizes)
    ]


def _marginal_lines(sizes: Sequence[SizeResult]) -> list[str]:
    steps = marginal_cpu(sizes)
    if not steps:
        return []
    parts = [f"{a:,} to {b:,}: {ms:.2f} ms" for a, b, ms in steps]
    return ["exporter CPU per extra target in the first round: " + "; ".join(parts)]


def _cpu_lines(cpu: CpuResult | None) -> list[str]:
    if cpu is None:
        return []
    lines = [f"CPU per target-round on {len(cpu.listeners)} Postfix STARTTLS listeners:"]
    if cpu.ours_ms is not None:
        lines.append(
            f"  this exporter (5 versions + default client + default sender + certificate): "
            f"{cpu.ours_ms:.2f} ms ({cpu.ours_probes} probes, "
            f"{cpu.ours_succeeded}/{len(cpu.listeners)} listeners with probe_success 1)"
        )
    if cpu.blackbox_ms is not None:
        lines.append(
            f"  blackbox_exporter {cpu.blackbox_version} (4 modules, TLS 1.0-1.3): "
            f"{cpu.blackbox_ms:.2f} ms ({cpu.blackbox_target_rounds} target-rounds)"
        )
    if cpu.blackbox_successes:
        found = ", ".join(f"{m} {n}" for m, n in cpu.blackbox_successes.items())
        lines.append(f"  blackbox probes that succeeded in a round: {found}")
    ratio = cpu.ratio
    if ratio is not None:
        lines.append(f"  ratio: {ratio:.2f}x (goal <= {CPU_GOAL}x: {_met(ratio, CPU_GOAL)})")
    lines += [f"  {note}" for note in cpu.notes]
    return [*lines, ""]


def _slow_lines(slow: SlowResult | None) -> list[str]:
    if slow is None:
        return []
    round_goal = f"goal <= {SLOW_ROUND_GOAL:g} s: {_met(slow.round_s, SLOW_ROUND_GOAL)}"
    rss_goal = f"goal <= {SLOW_RSS_GOAL:g} MB: {_met(slow.peak_rss_mb, SLOW_RSS_GOAL)}"
    return [
        f"{slow.targets:,} targets whose greeting comes after {slow.greet_delay:g} s, "
        "default settings:",
        f"  full round: {number(slow.round_s, 1)} s ({round_goal})",
        f"  peak RSS meanwhile: {slow.peak_rss_mb:.1f} MB ({rss_goal})",
        f"  targets with a result: {slow.results:,}, without success: {slow.failed:,}; "
        f"probes at once: {number(slow.concurrency)}",
        "",
    ]


def as_json(report: Report) -> dict[str, Any]:
    sizes = [r.targets for r in report.sizes]
    return {
        "machine": report.machine,
        "settings": report.settings,
        "sizes": [dataclasses.asdict(r) for r in report.sizes],
        "growth": {f.label.strip(): growth([f.read(r) for r in report.sizes]) for f in FIGURES},
        "size_steps": [b / a for a, b in itertools.pairwise(sizes)],
        "marginal_cpu_ms_per_target": [
            {"from": a, "to": b, "ms": ms} for a, b, ms in marginal_cpu(report.sizes)
        ],
        "cpu": None
        if report.cpu is None
        else {**dataclasses.asdict(report.cpu), "ratio": report.cpu.ratio},
        "slow": None if report.slow is None else dataclasses.asdict(report.slow),
        "goals": {
            "scrape_ms": 100.0,
            "rss_mb": 120.0,
            "first_round_s": 30.0,
            "cpu_ratio": CPU_GOAL,
            "slow_round_s": SLOW_ROUND_GOAL,
            "slow_rss_mb": SLOW_RSS_GOAL,
        },
    }
