"""YAML with positions: the line of every mapping key and list item, and keys given twice,
so a problem can name its line; YAML errors as one line for a person."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from exporter.config.values import describe


class YamlProblem(Exception):
    """The text is not YAML the config reader can use; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Positions:
    """Where each key and item of a parsed document was written."""

    #: id(container) -> (container, {key or index: line}); holding the container keeps its
    #: id from being reused while the map is in use.
    lines: dict[int, tuple[object, dict[Hashable, int]]]
    #: (mapping, key, line) for every key given a second time, which YAML would let replace
    #: the first silently.
    duplicates: list[tuple[object, Hashable, int]]

    def line(self, container: object, key: Hashable) -> int | None:
        """The line of `container[key]`, if `container` is part of the document."""
        entry = self.lines.get(id(container))
        if entry is None or entry[0] is not container:
            return None
        return entry[1].get(key)


def load_yaml(text: str, *, libyaml: bool = True) -> tuple[object, Positions]:
    """The single document in `text` and where its parts are; `YamlProblem` if it is no YAML.

    LibYAML's parser reads a file of ten thousand targets in a third of the time and memory
    of the pure-Python one; a file it refuses is read again by the pure-Python parser, whose
    messages say more, so problems read the same on every machine."""
    # LibYAML takes tabs where the pure parser (and the YAML spec) refuses them.
    if libyaml and "\t" not in text and _FastLoader is not LineRecordingLoader:
        try:
            return _load(text, _FastLoader)
        except (yaml.YAMLError, YamlProblem):
            pass
    return _load(text, LineRecordingLoader)


def _load(text: str, kind: type[LineRecordingLoader]) -> tuple[object, Positions]:
    try:
        loader = kind(text)
    except yaml.YAMLError as exc:
        raise YamlProblem(yaml_problem(exc, text)) from None
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise YamlProblem(yaml_problem(exc, text)) from None
    except RecursionError:
        raise YamlProblem("invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return data, Positions(loader.lines, loader.duplicates)


class LineRecordingLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping key and list item."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[int, tuple[object, dict[Hashable, int]]] = {}
        self.duplicates: list[tuple[object, Hashable, int]] = []

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # Scalars such as `!!int x`, `!!bool ''` or the date 2001-13-45 fail with bare
        # ValueError, IndexError or KeyError; they are problems of the file all the same.
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            kind = str(node.tag).rsplit(":", 1)[-1]
            why = f": {exc}" if isinstance(exc, ValueError) and str(exc) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {describe(node.value)} as {kind}{why}", node.start_mark
            ) from None


def _construct_map(loader: LineRecordingLoader, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
    data: dict[Any, Any] = {}
    yield data
    lines: dict[Hashable, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            hash(key)
        except TypeError:
            continue
        line = key_node.start_mark.line + 1
        if key in lines:
            loader.duplicates.append((data, key, line))
        else:
            lines[key] = line
    data.update(loader.construct_mapping(node))
    loader.lines[id(data)] = (data, lines)


def _construct_seq(loader: LineRecordingLoader, node: yaml.SequenceNode) -> Iterator[list[Any]]:
    data: list[Any] = []
    yield data
    data.extend(loader.construct_sequence(node))
    lines: dict[Hashable, int] = {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}
    loader.lines[id(data)] = (data, lines)


LineRecordingLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
LineRecordingLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)

_FastLoader: type[LineRecordingLoader] = LineRecordingLoader
try:
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without LibYAML
    pass
else:

    class _LibYamlLoader(CParser, LineRecordingLoader):
        """The same constructors and records over LibYAML's parser (as yaml.CSafeLoader)."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self.lines = {}
            self.duplicates = []

    _FastLoader = _LibYamlLoader


def yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """A YAML error as one line: where (line and column, from 1) and what."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(part for part in (exc.context, exc.problem) if part)
        if mark is not None:
            return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
        return f"invalid YAML: {what}"
    if isinstance(exc, yaml.reader.ReaderError):
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        return f"invalid YAML at line {line}, column {column}: the character {char} is not allowed"
    return f"invalid YAML: {exc}"
