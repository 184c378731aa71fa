#!/usr/bin/env bash
# The static checks, run by scripts/test.sh before the tests (needs .venv with the test extras):
# ruff lint and format, mypy --strict on the package, the tests and the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "ruff check"
.venv/bin/ruff check exporter tests bench scripts
echo "ruff format --check"
.venv/bin/ruff format --check exporter tests bench scripts
echo "mypy --strict exporter tests bench"
.venv/bin/mypy --strict exporter tests bench
