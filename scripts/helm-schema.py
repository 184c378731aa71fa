#!/usr/bin/env python3
"""Write the config part of helm/values.schema.json from the exporter's own key table.

Generated: `definitions` duration, labels, settings and target, and `properties.config`
(from exporter/config/schema.py). Everything else in the file is the chart's own and is
kept as it is. Run it after changing a config key; `--check` changes nothing and exits 1
when the file is not what this script would write (the tests run that).

    scripts/helm-schema.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # works from a checkout, installed or not

from exporter.config.schema import HELM_NUMBERS, config_schema, definitions  # noqa: E402

SCHEMA_FILE = REPO / "helm" / "values.schema.json"
WIDTH = 100
CONFIG_DESCRIPTION = (
    "The exporter's config file (rendered into a ConfigMap). Generated from the exporter's"
    " key table by scripts/helm-schema.py. targets may be empty here, as in the chart's"
    " defaults, but the chart refuses to render without one. Write the version 1.0 as '1.0'"
    " (Helm would render the number 1.0 as 1), and quote integers of more than 53 bits (Helm"
    " keeps numbers as float64)."
)


def generated(current: dict[str, Any]) -> dict[str, Any]:
    """`current` with its config part replaced by the generated one, in the same key order."""
    schema = dict(current)
    schema["definitions"] = {**current.get("definitions", {}), **definitions(HELM_NUMBERS)}
    config = {"description": CONFIG_DESCRIPTION, **config_schema(targets_required=False)}
    schema["properties"] = {**current["properties"], "config": config}
    return schema


def render(value: object, indent: int = 0, prefix: int = 0) -> str:
    """JSON that puts what fits on one line on one line, so the file reads like a hand-kept one."""
    flat = json.dumps(value)
    fits = indent + prefix + len(flat) < WIDTH
    if fits or not isinstance(value, dict | list) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        lines = [
            f"{pad}{json.dumps(key)}: {render(item, indent + 2, len(json.dumps(key)) + 2)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(lines) + "\n" + " " * indent + "}"
    lines = [pad + render(item, indent + 2) for item in value]
    return "[\n" + ",\n".join(lines) + "\n" + " " * indent + "]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--file", type=Path, default=SCHEMA_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    text = args.file.read_text()
    new = render(generated(json.loads(text))) + "\n"
    if args.check:
        if new != text:
            print(f"{args.file} is stale: run scripts/helm-schema.py", file=sys.stderr)
            return 1
        return 0
    args.file.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
