"""A probe result as bytes and back, for `--storage.path`: JSON of the result's dataclasses,
packed with zlib, in a format whose version is stored beside it.

Decoding follows the result types' own annotations, never names found in the data, so
nothing in a file can make the exporter build any other object; whatever does not fit them
exactly (a key missing without a default, one too many, a value of the wrong kind) is
`UnreadableRecord`, and the caller drops that record instead of crashing. A field added to
a result type with a default reads old records as they were; any other change of the types
needs `FORMAT` raised.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import types
import typing
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from exporter.results import ProbeResult

#: The version of what `encode` writes; a record of any other is unreadable.
FORMAT: Final = 1
#: Bigger than any real result unpacks to: more is no record of ours.
_MAX_UNPACKED: Final = 16 << 20


class UnreadableRecord(ValueError):
    """Bytes that are no result in this format: foreign, damaged, or of another version."""


def encode(result: ProbeResult) -> bytes:
    """The result as packed JSON (format `FORMAT`)."""
    text = json.dumps(_plain(result), separators=(",", ":"), ensure_ascii=False)
    return zlib.compress(text.encode(), 6)


def decode(data: bytes, version: int = FORMAT) -> ProbeResult:
    """The result `encode` made of it; `UnreadableRecord` for anything else."""
    if version != FORMAT:
        raise UnreadableRecord(f"format {version}, this exporter reads {FORMAT}")
    unpacker = zlib.decompressobj()
    try:
        text = unpacker.decompress(data, _MAX_UNPACKED)
    except zlib.error as exc:
        raise UnreadableRecord(f"not packed JSON: {exc}") from None
    if unpacker.unconsumed_tail or not unpacker.eof:
        raise UnreadableRecord("not packed JSON: not one whole zlib stream of at most 16 MiB")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UnreadableRecord(f"not packed JSON: {exc}") from None
    try:
        result = _reader(ProbeResult)(value)
    except _Wrong as exc:
        raise UnreadableRecord(f"result{''.join(exc.path)}: {exc.problem}") from None
    except TypeError as exc:  # a result type the codec cannot read: a test catches it first
        raise UnreadableRecord(f"no reading of results: {exc}") from None
    assert isinstance(result, ProbeResult)
    return result


def _plain(value: object) -> object:
    """JSON values for a result: dataclasses as objects of every field, enums as their
    values, datetimes in ISO 8601, bytes in base64, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"no JSON form for {type(value).__name__}")


class _Wrong(Exception):
    """A value that does not fit its type, and where it is, built up on the way out."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []


Reader = Callable[[object], object]
_READERS: dict[Any, Reader] = {}


def _reader(kind: Any) -> Reader:
    """The reader of an annotated type, made once: the walk of the annotations is paid
    once per type, not once per value (a restart reads every target's result)."""
    found = _READERS.get(kind)
    if found is None:
        found = _READERS[kind] = _make_reader(kind)
    return found


def _make_reader(kind: Any) -> Reader:
    origin = typing.get_origin(kind)
    if origin is types.UnionType or origin is typing.Union:
        options = typing.get_args(kind)
        inner = [option for option in options if option is not type(None)]
        if len(inner) != 1 or len(options) != 2:
            raise TypeError(f"no reading for {kind!r}: only `X | None` unions")
        read = _reader(inner[0])
        return lambda value: None if value is None else read(value)
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return _items_reader(_reader(args[0]))
    if isinstance(kind, type):
        if dataclasses.is_dataclass(kind):
            return _dataclass_reader(kind)
        if issubclass(kind, enum.Enum):
            return _enum_reader(kind)
        if kind in _LEAVES:
            return _LEAVES[kind]
    raise TypeError(f"no reading for {kind!r}")


def _items_reader(read: Reader) -> Reader:
    def items(value: object) -> tuple[object, ...]:
        if not isinstance(value, list):
            raise _Wrong("a list expected")
        found = []
        for index, item in enumerate(value):
            try:
                found.append(read(item))
            except _Wrong as exc:
                exc.path.insert(0, f"[{index}]")
                raise
        return tuple(found)

    return items


def _enum_reader(kind: type[enum.Enum]) -> Reader:
    members = {member.value: member for member in kind}

    def member(value: object) -> enum.Enum:
        try:
            return members[value]
        except (KeyError, TypeError):
            raise _Wrong(f"{value!r} is no {kind.__name__}") from None

    return member


def _dataclass_reader(kind: type) -> Reader:
    hints = typing.get_type_hints(kind)
    fields = [
        (
            field.name,
            _reader(hints[field.name]),
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING,
        )
        for field in dataclasses.fields(kind)
    ]
    names = frozenset(name for name, _, _ in fields)

    def instance(value: object) -> object:
        if not isinstance(value, dict):
            raise _Wrong("an object expected")
        if not value.keys() <= names:
            raise _Wrong(f"unknown keys {sorted(value.keys() - names)}")
        given: dict[str, object] = {}
        for name, read, required in fields:
            if name in value:
                try:
                    given[name] = read(value[name])
                except _Wrong as exc:
                    exc.path.insert(0, f".{name}")
                    raise
            elif required:
                raise _Wrong(f"{name} missing")
        try:
            return kind(**given)
        except (TypeError, ValueError) as exc:
            raise _Wrong(str(exc)) from None

    return instance


def _leaf(kind: type, convert: Callable[[Any], object], *accepted: type) -> Reader:
    """A reader of a plain value: exactly one of the `accepted` JSON types, converted."""

    def leaf(value: object) -> object:
        if type(value) not in accepted:
            raise _Wrong(f"{type(value).__name__} where {kind.__name__} belongs")
        try:
            return convert(value)
        except (ValueError, binascii.Error) as exc:
            raise _Wrong(str(exc)) from None

    return leaf


_LEAVES: Final[dict[type, Reader]] = {
    str: _leaf(str, str, str),
    int: _leaf(int, int, int),
    bool: _leaf(bool, bool, bool),
    float: _leaf(float, float, float, int),
    datetime: _leaf(datetime, datetime.fromisoformat, str),
    bytes: _leaf(bytes, lambda text: base64.b64decode(text, validate=True), str),
}
