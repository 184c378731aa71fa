"""One fuzz target under atheris, in a process of its own (libFuzzer ends the process):

    python -m bench.fuzz.worker TARGET [libFuzzer flags and corpus directories]

The exporter, PyYAML's pure-Python parser, idna and dnspython are imported under atheris'
instrumentation, so coverage of their Python code guides the mutations. The run drives
this; use it directly only to pass libFuzzer flags the run does not.
"""

from __future__ import annotations

import shlex
import sys

import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

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
    atheris.Setup([itself, *argv[2:]], harness.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
