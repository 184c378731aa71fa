"""One fuzz target under atheris, in a process of its own (libFuzzer ends the process):

    python -m bench.fuzz.worker TARGET [libFuzzer flags and corpus directories]

The exporter, PyYAML's pure-Python parser, idna and dnspython are imported under atheris'
instrumentation, so coverage of their Python code guides the mutations. The run drives
this; use it directly only to pass libFuzzer flags the run does not.
"""

from __future__ import annotations

import random
import shlex
import sys
from collections.abc import Callable

import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

Mutator = Callable[[bytes, int, int], bytes]

#: The packages whose Python code is instrumented for coverage.
INSTRUMENTED = ["exporter", "yaml", "idna", "dns", "tests.support.flightcheck"]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m bench.fuzz.worker TARGET [libFuzzer flags] [DIR...]")
    with atheris.instrument_imports(include=INSTRUMENTED):
        from bench.fuzz.harnesses import HARNESSES

    harness = HARNESSES[argv[1]]
    # libFuzzer runs argv[0] through the shell for -merge (and -fork): this very command
    command = (sys.executable, "-m", "bench.fuzz.worker", argv[1])
    itself = " ".join(shlex.quote(part) for part in command)
    mutator = None if harness.edit is None else _mutator(harness.edit)
    atheris.Setup([itself, *argv[2:]], harness.one_input, custom_mutator=mutator)
    atheris.Fuzz()


def _mutator(edit: Callable[[bytes, random.Random], bytes | None]) -> Mutator:
    """Half the time the harness' own structured edit, else libFuzzer's byte mutations."""

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            edited = edit(data, rng)
            if edited is not None and len(edited) <= max_size:
                return edited
        mutated: bytes = atheris.Mutate(data, max_size)
        return mutated

    return mutate


if __name__ == "__main__":
    main(sys.argv)
