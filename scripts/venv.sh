#!/usr/bin/env bash
# Make .venv with the given Python (Debian needs python3-venv for that) and install the
# project into it: scripts/venv.sh python3 '.[test]'
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-python3}"
SPEC="${2:-.}"
if [[ ! -x .venv/bin/python ]]; then
    if ! "${PYTHON}" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if [[ ${EUID} -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q python3-venv
        fi
        "${PYTHON}" -m venv .venv
    fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e "${SPEC}"
