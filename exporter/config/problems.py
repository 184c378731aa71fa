"""Problems found in a config file, each with its key path and line, in the order of the file.

A problem reads `KEY.PATH: what is wrong (line N)`; list indexes count from 0, as in jq
and yq.
"""

from __future__ import annotations

from collections.abc import Hashable

from exporter.config.values import InvalidValue, describe
from exporter.config.yamlfile import Positions


def join(path: str, key: object, index: bool = False) -> str:
    """The key path of `key` under `path`: `a.b`, or `a[3]` for a list index."""
    if index:
        return f"{path}[{key}]"
    text = key if isinstance(key, str) else describe(key)
    return f"{path}.{text}" if path else text


class ProblemList:
    """Every problem found so far; `messages()` gives them sorted by line, stably."""

    def __init__(self, positions: Positions) -> None:
        self._positions = positions
        self._found: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._found)

    def add(self, path: str, message: str, line: int | None = None) -> None:
        """A problem at `path` (empty: the file as a whole), on `line` if known."""
        text = f"{path}: {message}" if path else message
        if line is not None:
            text += f" (line {line})"
        self._found.append((line or 0, text))

    def add_at(self, container: object, path: str, key: Hashable, message: str) -> None:
        """A problem with `container[key]`, where `container` lives at `path`."""
        self.add(
            join(path, key, isinstance(container, list)),
            message,
            self._positions.line(container, key),
        )

    def add_invalid(
        self, mapping: dict[object, object], path: str, key: str, exc: InvalidValue
    ) -> None:
        """Every problem of the value `mapping[key]`, at the value or at its items."""
        value = mapping[key]
        value_path = join(path, key)
        is_list = isinstance(value, list)
        for problem in exc.problems:
            if problem.item is None:
                self.add_at(mapping, path, key, problem.message)
                continue
            message = problem.message
            if problem.repeats is not None:
                message += f" (also at {join(value_path, problem.repeats, is_list)})"
            self.add_at(value, value_path, problem.item, message)

    def messages(self) -> list[str]:
        """Every problem, in the order of the file."""
        return [text for _, text in sorted(self._found, key=lambda found: found[0])]
