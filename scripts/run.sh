#!/usr/bin/env bash
# Install the exporter into .venv (once; again when pyproject.toml changes) and run it on
# config.example.yaml or the file given: scripts/run.sh [CONFIG] [more flags...]
# then open http://localhost:9025/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh "${PYTHON:-python3}" .
config=config.example.yaml
if [[ $# -gt 0 && $1 != -* ]]; then
    config=$1
    shift
fi
exec .venv/bin/smtp-tls-exporter --config.file="${config}" "$@"
