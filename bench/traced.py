"""The exporter under tracemalloc, for a measurement run only: `python -m bench.traced FLAGS`.

Takes the exporter's own flags. On SIGUSR2 it writes a tracemalloc snapshot to the file named
by $BENCH_TRACEMALLOC_FILE. Tracing slows the exporter and adds to its memory: figures from
such a run are not the exporter's own.
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from types import FrameType


def _dump(_signum: int, _frame: FrameType | None) -> None:
    path = os.environ["BENCH_TRACEMALLOC_FILE"]
    tracemalloc.take_snapshot().dump(path + ".part")
    os.replace(path + ".part", path)


def main() -> int:
    tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "1")))
    signal.signal(signal.SIGUSR2, _dump)
    from exporter.cli import main as exporter_main  # after start: imports count too

    return exporter_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
