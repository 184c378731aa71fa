#!/usr/bin/env bash
# Install the exporter into .venv and run it on config.example.yaml (or the file given):
# scripts/run.sh [CONFIG] [more flags...]   then open http://localhost:9025/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh "${PYTHON:-python3}" .
config="${1:-config.example.yaml}"
shift || true
exec .venv/bin/smtp-tls-exporter --config.file="${config}" "$@"
