"""`python -m bench.fuzz`: see bench/fuzz/run.py."""

from bench.fuzz.run import main

raise SystemExit(main())
