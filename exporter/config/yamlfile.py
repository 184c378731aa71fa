"""YAML with positions: the line of every mapping key and list item, and keys given twice,
so a problem can name its line; YAML errors as one line for a person.

Files are hostile input too: a file is read only up to `MAX_FILE_BYTES`, and a document
whose aliases and merge keys (`<<`) would expand it past `MAX_NODES` (a "billion laughs",
or a mapping merged into many others) is refused before anything is built from it."""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import yaml

from exporter.config.values import describe

#: The largest file read: ten thousand targets take about 1 MB.
MAX_FILE_BYTES: Final = 10 * 1024 * 1024
#: The most nodes a document may have with every alias and merge expanded: about what a
#: 10 MB file holds written out, far more than any real config, and bounded in time (a few
#: seconds) and memory (a few hundred MB) however the document is built.
MAX_NODES: Final = 2_000_000


class YamlProblem(Exception):
    """The text is not YAML the config reader can use; the message says where and why."""


class _TooLarge(YamlProblem):
    """The document expands past `MAX_NODES`: the same with either parser, so no retry."""


def one_line(text: str) -> str:
    """`text` fit for a one-line message any encoding takes: YAML escapes can put line
    breaks, terminal escapes and lone surrogates into keys (and a file name that is no
    UTF-8 has surrogates), so these are written as escapes (`\\n`, `\\x1b`, `\\ud800`)."""
    if text.isprintable():  # nearly every message
        return text
    return "".join(repr(char)[1:-1] if _unprintable(char) else char for char in text)


def _unprintable(char: str) -> bool:
    """Control characters, line and paragraph separators, surrogates."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs")


class FileProblem(Exception):
    """The file cannot be read as a config file; the message says why, in one line."""


def read_text_file(path: str) -> str:
    """The UTF-8 text of the file at `path` (a byte order mark dropped), at most
    `MAX_FILE_BYTES` of it; `FileProblem` says why not. Only a regular file's size is known
    before reading; a pipe or a device is read up to the limit and no further."""
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > MAX_FILE_BYTES:
                raise FileProblem(f"is {info.st_size:,} bytes, {_OVER_LIMIT}")
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise FileProblem("file not found") from None
    except IsADirectoryError:
        raise FileProblem("is a directory, not a file") from None
    except OSError as exc:
        raise FileProblem(f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise FileProblem(f"holds {_OVER_LIMIT}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = exc.start
        line, column = raw.count(b"\n", 0, at) + 1, at - raw.rfind(b"\n", 0, at)
        raise FileProblem(
            f"not UTF-8 text: byte 0x{raw[at]:02x} at line {line}, column {column}"
        ) from None


_OVER_LIMIT: Final = f"more than the {MAX_FILE_BYTES // (1024 * 1024)} MiB a config file may have"


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
        except _TooLarge:
            raise
        except (yaml.YAMLError, YamlProblem):
            pass
    return _load(text, LineRecordingLoader)


def _load(text: str, kind: type[LineRecordingLoader]) -> tuple[object, Positions]:
    try:
        loader = kind(text)
    except yaml.YAMLError as exc:
        raise YamlProblem(yaml_problem(exc, text)) from None
    try:
        node = loader.get_single_node()
        if node is not None and "*" in text:  # no alias, no node shared: nothing expands
            _check_expansion(node)
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlProblem(yaml_problem(exc, text)) from None
    except RecursionError:
        raise YamlProblem("invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return data, Positions(loader.lines, loader.duplicates)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document that would be too large with every alias and merge written out,
    or that contains itself; counted over the graph of shared nodes, never expanding it."""
    sizes: dict[int, int] = {}
    started: set[int] = set()
    stack = [root]
    while stack:
        node = stack[-1]
        key = id(node)
        if key in sizes:
            stack.pop()
            continue
        children = _collections(node)
        if key not in started:
            started.add(key)
            pending = [child for child in children if id(child) not in sizes]
            for child in pending:
                if id(child) in started:  # an ancestor: reached again from inside itself
                    raise _TooLarge(
                        f"invalid YAML at line {child.start_mark.line + 1}: an alias inside"
                        " this value refers to the value itself"
                    )
            if pending:
                stack.extend(pending)
                continue
        size = len(node.value) * (2 if isinstance(node, yaml.MappingNode) else 1) + 1
        size += sum(sizes[id(child)] - 1 for child in children)
        if size > MAX_NODES:
            raise _TooLarge(
                f"invalid YAML: its aliases and merge keys (<<) expand it to over {MAX_NODES:,}"
                " values"
            )
        sizes[key] = size
        stack.pop()


def _collections(node: yaml.Node) -> list[yaml.Node]:
    """The sequences and mappings right inside `node` (its scalars count one each)."""
    if isinstance(node, yaml.SequenceNode):
        return [item for item in node.value if not isinstance(item, yaml.ScalarNode)]
    if isinstance(node, yaml.MappingNode):
        return [
            part for pair in node.value for part in pair if not isinstance(part, yaml.ScalarNode)
        ]
    return []


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
