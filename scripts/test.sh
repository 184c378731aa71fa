#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian 12 machine with Python 3.11+.
#
# As root it first installs what the tests need (Postfix, Prometheus/promtool, helm, ...);
# then it makes a virtualenv in .venv, installs the project with its test extras, runs the
# static checks (ruff lint and format, mypy --strict on the package and the tests) and then
# pytest. Extra arguments go to pytest: scripts/test.sh -k hello -x
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [[ ${EUID} -eq 0 ]]; then
    scripts/install-test-deps.sh
    if ! command -v npm >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q npm
    fi
    scripts/install-helm.sh
fi
scripts/venv.sh "${PYTHON}" '.[test]'
scripts/check.sh
exec .venv/bin/python -m pytest "$@"
