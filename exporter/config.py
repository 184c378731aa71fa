"""The config file: YAML in, frozen `Config` out, every problem reported at once.

A problem reads `KEY.PATH: what is wrong (line N)`; `ConfigError` prefixes each one with the
file name, so a person sees `config.yaml: targets[3].port: must be an integer from 1 to 65535,
got 70000 (line 14)`. List indexes count from 0, as in jq and yq.

Decisions where the file format leaves room:

- Every key of `defaults` may be set per target; a target's value replaces the default,
  except `labels`, which are merged key by key (the target wins).
- Durations are Prometheus durations (`500ms`, `30s`, `5m`, `1h30m`, `1d`, `1w`, `1y`) or a
  bare YAML number of seconds; at most one year.
- `versions` are stored in protocol order, whatever order the file lists them in.
- Label values are text; YAML integers are taken as their decimal text, anything else
  (floats, booleans, null) must be quoted.
- `ca_file: null` means the system trust store (so a target can opt out of a default).
  A relative `ca_file` is relative to the config file's directory, as in Prometheus.
- Mapping keys given twice are a problem (YAML itself would keep the last one silently).
- Top-level keys starting with `x-` are ignored, so they can hold YAML anchors to merge
  into targets (`<<: *common`), as in Docker Compose files.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import yaml
from cryptography import x509

from exporter.defaults import (
    DEFAULT_CONNECTIONS,
    DEFAULT_INTERVAL,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    IMPLICIT_PORT,
    MAX_CA_FILE_BYTES,
    MAX_CONNECTIONS,
    MIN_INTERVAL,
)
from exporter.durations import MAX_DURATION, format_duration, parse_duration
from exporter.names import (
    RESERVED_LABELS,
    ehlo_name_problem,
    label_name_problem,
    machine_ehlo_name,
    parse_host,
)
from exporter.target import DEFAULT_VERSIONS, Target, TLSMode, TLSVersion

__all__ = [
    "RESERVED_LABELS",
    "Config",
    "ConfigError",
    "format_duration",
    "load_config",
    "machine_ehlo_name",
    "parse_config",
    "parse_duration",
]

_T = TypeVar("_T")

TOP_KEYS = ("defaults", "targets")
SETTING_KEYS = ("interval", "timeout", "ehlo_name", "ca_file", "versions", "connections", "labels")
TARGET_KEYS = ("host", "port", "tls", "name", "servername", *SETTING_KEYS)


@dataclass(frozen=True, slots=True)
class Config:
    """A validated config file: the targets to probe, and where they came from."""

    targets: tuple[Target, ...]
    source: str

    @property
    def label_names(self) -> tuple[str, ...]:
        """Every extra label name used by any target, sorted."""
        return tuple(sorted({name for target in self.targets for name, _ in target.labels}))


class ConfigError(Exception):
    """The config file is unusable; `problems` lists every reason, each with its key path."""

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(source, self.problems)

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {problem}" for problem in self.problems)


def load_config(path: str | os.PathLike[str], *, default_ehlo_name: str | None = None) -> Config:
    """Read and validate the config file at `path`; raise `ConfigError` if it has problems."""
    source = os.fspath(path)
    try:
        raw = Path(source).read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(source, ["is a directory, not a file"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        raise ConfigError(source, [message]) from None
    return parse_config(
        text,
        source,
        base_dir=os.path.dirname(os.path.abspath(source)),
        default_ehlo_name=default_ehlo_name,
    )


def parse_config(
    text: str,
    source: str,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    default_ehlo_name: str | None = None,
) -> Config:
    """Validate config `text` (named `source` in messages) into a `Config`, or raise `ConfigError`.

    A relative `ca_file` is taken relative to `base_dir` (the working directory when None).
    `default_ehlo_name` is the EHLO name for targets that set none; when None it is
    `machine_ehlo_name()`, looked up at most once per call and only if some target needs it.
    """
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_yaml_problem(exc, text)]) from None
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_yaml_problem(exc, text)]) from None
    except RecursionError:
        raise ConfigError(source, ["invalid YAML: nested too deeply"]) from None
    finally:
        loader.dispose()
    reader = _Reader(loader.lines, loader.duplicates, base_dir, default_ehlo_name)
    targets = reader.read(data)
    if reader.problems:
        raise ConfigError(source, reader.problems)
    return Config(targets=targets, source=source)


# --- YAML with line numbers ------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping key and list item."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # id(container) -> (container, {key or index: line}); the container is kept alive
        # so that its id cannot be reused while the map is in use.
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
                None, None, f"cannot read {_describe(node.value)} as {kind}{why}", node.start_mark
            ) from None


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
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


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Iterator[list[Any]]:
    data: list[Any] = []
    yield data
    data.extend(loader.construct_sequence(node))
    lines: dict[Hashable, int] = {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}
    loader.lines[id(data)] = (data, lines)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
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


# --- Reading the structure ---------------------------------------------------------------


@dataclass
class _Settings:
    """The settings one `defaults` block or one target gives, valid ones only."""

    interval: float | None = None
    timeout: float | None = None
    ehlo_name: str | None = None
    ca_file: str | None = None
    ca_file_given: bool = False
    versions: tuple[TLSVersion, ...] | None = None
    connections: int | None = None
    labels: dict[str, str] | None = None
    #: Keys that were given but are invalid (already reported).
    bad: set[str] = field(default_factory=set)


class _Reader:
    """Walks the parsed YAML, collecting problems instead of stopping at the first."""

    def __init__(
        self,
        lines: dict[int, tuple[object, dict[Hashable, int]]],
        duplicates: list[tuple[object, Hashable, int]],
        base_dir: str | os.PathLike[str] | None,
        default_ehlo_name: str | None,
    ) -> None:
        self._problems: list[tuple[int, str]] = []
        self._lines = lines
        self._duplicates = duplicates
        self._base_dir = base_dir
        self._ehlo_name = default_ehlo_name
        self._ca_files: dict[str, str | None] = {}

    # Reporting

    def _line(self, container: object, key: Hashable) -> int | None:
        entry = self._lines.get(id(container))
        if entry is None or entry[0] is not container:
            return None
        return entry[1].get(key)

    def report(self, path: str, message: str, line: int | None = None) -> None:
        text = f"{path}: {message}" if path else message
        if line is not None:
            text += f" (line {line})"
        self._problems.append((line or 0, text))

    @property
    def problems(self) -> list[str]:
        """Every problem, in the order of the file."""
        return [text for _, text in sorted(self._problems, key=lambda problem: problem[0])]

    def report_key(self, container: object, path: str, key: Hashable, message: str) -> None:
        """Report a problem with `container[key]`, which lives at `path`."""
        self.report(
            _join(path, key, isinstance(container, list)), message, self._line(container, key)
        )

    # The file

    def read(self, data: object) -> tuple[Target, ...]:
        if data is None:
            self.report("", "the file is empty; it needs at least a `targets` list")
            return ()
        if not isinstance(data, dict):
            self.report(
                "", f"the top level must be a mapping with a `targets` list, got {_describe(data)}"
            )
            return ()
        for container, key, line in self._duplicates:
            path = self._path_of(data, container)
            if path is not None:
                self.report(_join(path, key), "is given more than once", line)
        self._check_keys(data, "", TOP_KEYS, extensions=True)

        defaults = _Settings()
        raw_defaults = data.get("defaults")
        if raw_defaults is not None and not isinstance(raw_defaults, dict):
            self.report_key(
                data, "", "defaults", f"must be a mapping, got {_describe(raw_defaults)}"
            )
        elif raw_defaults:
            self._check_keys(raw_defaults, "defaults", SETTING_KEYS, TARGET_KEYS)
            defaults = self._read_settings(raw_defaults, "defaults")
            self._check_defaults_timing(raw_defaults, defaults)

        raw_targets = data.get("targets")
        if "targets" not in data:
            self.report("targets", "is required: a list of the SMTP servers to probe")
            return ()
        if not isinstance(raw_targets, list):
            self.report_key(data, "", "targets", f"must be a list, got {_describe(raw_targets)}")
            return ()
        if not raw_targets:
            self.report_key(data, "", "targets", "must list at least one target")
            return ()

        targets: list[Target] = []
        first_path: dict[str, str] = {}
        for index, item in enumerate(raw_targets):
            path = f"targets[{index}]"
            target = self._read_target(item, path, defaults, self._line(raw_targets, index))
            if target is None:
                continue
            if target.name in first_path:
                assert isinstance(item, dict)
                if "name" in item:
                    self.report_key(
                        item,
                        path,
                        "name",
                        f"{target.name!r} is already the name of {first_path[target.name]}",
                    )
                else:
                    self.report(
                        path,
                        f"its name {target.name!r} (host:port, the default) is already the name"
                        f" of {first_path[target.name]}; set `name` to tell them apart",
                        self._line(raw_targets, index),
                    )
                continue
            first_path[target.name] = path
            targets.append(target)
        return tuple(targets)

    def _path_of(self, root: object, wanted: object) -> str | None:
        """The key path of container `wanted` under `root`, for the few places keys live."""
        if wanted is root:
            return ""
        if not isinstance(root, dict):
            return None
        defaults = root.get("defaults")
        if wanted is defaults:
            return "defaults"
        if isinstance(defaults, dict) and wanted is defaults.get("labels"):
            return "defaults.labels"
        targets = root.get("targets")
        if isinstance(targets, list):
            for index, item in enumerate(targets):
                if wanted is item:
                    return f"targets[{index}]"
                if isinstance(item, dict) and wanted is item.get("labels"):
                    return f"targets[{index}].labels"
        return None

    def _check_keys(
        self,
        mapping: dict[Any, Any],
        path: str,
        allowed: Sequence[str],
        elsewhere: Sequence[str] = (),
        *,
        extensions: bool = False,
    ) -> None:
        for key in mapping:
            if extensions and isinstance(key, str) and key.startswith("x-"):
                continue
            if not isinstance(key, str):
                self.report_key(mapping, path, key, f"a key must be text, got {_describe(key)}")
            elif key not in allowed:
                if key in elsewhere:
                    hint = f"`{key}` can only be set per target"
                else:
                    close = difflib.get_close_matches(key, allowed, n=1)
                    hint = (
                        f"did you mean {close[0]!r}?"
                        if close
                        else "valid keys: " + ", ".join(allowed)
                    )
                self.report_key(mapping, path, key, f"unknown key ({hint})")

    # Settings shared by `defaults` and targets

    def _read_settings(self, mapping: dict[Any, Any], path: str) -> _Settings:
        settings = _Settings()
        if "interval" in mapping:
            settings.interval = self._duration(mapping, path, "interval", minimum=MIN_INTERVAL)
        if "timeout" in mapping:
            settings.timeout = self._duration(mapping, path, "timeout", minimum=None)
        if "ehlo_name" in mapping:
            settings.ehlo_name = self._ehlo_name_value(mapping, path)
        if "ca_file" in mapping:
            settings.ca_file_given = True
            ok, settings.ca_file = self._ca_file(mapping, path)
            if not ok:
                settings.bad.add("ca_file")
        if "versions" in mapping:
            settings.versions = self._versions(mapping, path)
        if "connections" in mapping:
            settings.connections = self._integer(mapping, path, "connections", 1, MAX_CONNECTIONS)
        if "labels" in mapping:
            settings.labels = self._labels(mapping, path)
        for key in ("interval", "timeout", "ehlo_name", "versions", "connections", "labels"):
            if key in mapping and getattr(settings, key) is None:
                settings.bad.add(key)
        return settings

    def _check_defaults_timing(self, mapping: dict[Any, Any], defaults: _Settings) -> None:
        if "interval" in defaults.bad or "timeout" in defaults.bad:
            return
        interval = defaults.interval if defaults.interval is not None else DEFAULT_INTERVAL
        timeout = defaults.timeout if defaults.timeout is not None else DEFAULT_TIMEOUT
        if timeout <= interval:
            return
        key = "timeout" if defaults.timeout is not None else "interval"
        self.report_key(
            mapping,
            "defaults",
            key,
            f"the timeout {format_duration(timeout)} is longer than the interval"
            f" {format_duration(interval)}; a probe must end before the next one starts",
        )

    def _duration(
        self, mapping: dict[Any, Any], path: str, key: str, *, minimum: float | None
    ) -> float | None:
        value = mapping[key]
        expected = "a duration like 30s, 5m or 1h30m, or a number of seconds"
        seconds: float | None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            self.report_key(mapping, path, key, f"must be {expected}, got {_describe(value)}")
            return None
        if isinstance(value, str):
            seconds = parse_duration(value.strip())
            if seconds is None:
                hint = ""
                if re.fullmatch(r"[0-9]+(\.[0-9]+)?", value.strip()):
                    hint = " (a quoted number needs a unit: write 30s, or 30 without quotes)"
                self.report_key(
                    mapping, path, key, f"must be {expected}, got {_describe(value)}{hint}"
                )
                return None
        else:
            try:
                seconds = float(value)
            except OverflowError:
                seconds = math.inf
            if math.isnan(seconds) or seconds < 0:
                self.report_key(mapping, path, key, f"must be {expected}, got {value}")
                return None
        if minimum is not None and seconds < minimum:
            self.report_key(
                mapping,
                path,
                key,
                f"must be at least {format_duration(minimum)}, got {_describe(value)}",
            )
            return None
        if seconds <= 0:
            self.report_key(mapping, path, key, f"must be more than 0, got {_describe(value)}")
            return None
        if seconds > MAX_DURATION:
            self.report_key(mapping, path, key, f"must be at most 1y, got {_describe(value)}")
            return None
        return seconds

    def _integer(
        self, mapping: dict[Any, Any], path: str, key: str, low: int, high: int
    ) -> int | None:
        value = mapping[key]
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        extra = ""
        if isinstance(value, bool):
            extra = " (YAML reads yes/no/on/off as booleans)"
        self.report_key(
            mapping,
            path,
            key,
            f"must be an integer from {low} to {high}, got {_describe(value)}{extra}",
        )
        return None

    def _text(self, mapping: dict[Any, Any], path: str, key: str) -> str | None:
        """A non-empty string value, or None after reporting what is wrong."""
        value = mapping[key]
        if not isinstance(value, str):
            self.report_key(mapping, path, key, f"must be text, got {_describe(value)}")
            return None
        if not value.strip():
            self.report_key(mapping, path, key, "must not be empty")
            return None
        return value

    def _ehlo_name_value(self, mapping: dict[Any, Any], path: str) -> str | None:
        value = self._text(mapping, path, "ehlo_name")
        if value is None:
            return None
        problem = ehlo_name_problem(value)
        if problem is not None:
            self.report_key(mapping, path, "ehlo_name", f"{_describe(value)} {problem}")
            return None
        return value

    def _ca_file(self, mapping: dict[Any, Any], path: str) -> tuple[bool, str | None]:
        """(valid, path); a null `ca_file` is valid and means the system trust store."""
        value = mapping["ca_file"]
        if value is None:
            return True, None
        text = self._text(mapping, path, "ca_file")
        if text is None:
            return False, None
        file = text
        if self._base_dir is not None and not os.path.isabs(file):
            file = os.path.join(self._base_dir, file)
        if file not in self._ca_files:
            self._ca_files[file] = _ca_file_problem(file)
        problem = self._ca_files[file]
        if problem is not None:
            self.report_key(mapping, path, "ca_file", problem)
            return False, None
        return True, file

    def _versions(self, mapping: dict[Any, Any], path: str) -> tuple[TLSVersion, ...] | None:
        value = mapping["versions"]
        valid = ", ".join(v.value for v in TLSVersion)
        if not isinstance(value, list):
            self.report_key(
                mapping,
                path,
                "versions",
                f"must be a list like ['1.2', '1.3'], got {_describe(value)}",
            )
            return None
        if not value:
            self.report_key(
                mapping, path, "versions", f"must list at least one version (valid: {valid})"
            )
            return None
        found: dict[TLSVersion, int] = {}
        ok = True
        vpath = _join(path, "versions")
        for index, item in enumerate(value):
            version = _version(item)
            if version is None:
                self.report_key(
                    value, vpath, index, f"unknown version {_describe(item)} (valid: {valid})"
                )
                ok = False
            elif version in found:
                self.report_key(
                    value,
                    vpath,
                    index,
                    f"{version.value} is listed twice (also at {vpath}[{found[version]}])",
                )
                ok = False
            else:
                found[version] = index
        if not ok:
            return None
        return tuple(v for v in TLSVersion if v in found)

    def _labels(self, mapping: dict[Any, Any], path: str) -> dict[str, str] | None:
        value = mapping["labels"]
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.report_key(
                mapping,
                path,
                "labels",
                f"must be a mapping of label names to values, got {_describe(value)}",
            )
            return None
        labels: dict[str, str] = {}
        ok = True
        lpath = _join(path, "labels")
        for name, text in value.items():
            problem = (
                label_name_problem(name)
                if isinstance(name, str)
                else f"a label name must be text, got {_describe(name)}"
            )
            if problem is not None:
                self.report_key(value, lpath, name, problem)
                ok = False
                continue
            if isinstance(text, int) and not isinstance(text, bool) and text.bit_length() <= 64:
                text = str(text)
            if not isinstance(text, str):
                self.report_key(
                    value,
                    lpath,
                    name,
                    f"a label value must be text (quote it), got {_describe(text)}",
                )
                ok = False
            elif not text:
                self.report_key(
                    value, lpath, name, "must not be empty (an empty label is no label)"
                )
                ok = False
            else:
                labels[name] = text
        return labels if ok else None

    # Targets

    def _read_target(
        self, item: object, path: str, defaults: _Settings, line: int | None
    ) -> Target | None:
        if not isinstance(item, dict):
            self.report(
                path, f"must be a mapping with at least `host`, got {_describe(item)}", line
            )
            return None
        before = len(self._problems)
        self._check_keys(item, path, TARGET_KEYS)

        host: str | None = None
        if "host" not in item:
            self.report(path, "`host` is required", line)
        else:
            host = self._text(item, path, "host")
            if host is not None:
                host, problem = parse_host(host)
                if problem is not None:
                    self.report_key(item, path, "host", f"{_describe(item['host'])} {problem}")

        port: int | None = DEFAULT_PORT
        if "port" in item:
            port = self._integer(item, path, "port", 1, 65535)

        tls = TLSMode.IMPLICIT if port == IMPLICIT_PORT else TLSMode.STARTTLS
        if "tls" in item:
            tls = self._tls(item, path) or tls

        name = ""
        if "name" in item:
            name = self._label_value(item, path, "name") or ""

        servername = ""
        if "servername" in item:
            servername = self._text(item, path, "servername") or ""
            if servername:
                servername, problem = parse_host(servername.rstrip("."))
                if problem is not None:
                    self.report_key(
                        item, path, "servername", f"{_describe(item['servername'])} {problem}"
                    )
        elif host is not None:
            servername = host.rstrip(".")

        own = self._read_settings(item, path)
        interval = _pick(own.interval, defaults.interval, DEFAULT_INTERVAL)
        timeout = _pick(own.timeout, defaults.timeout, DEFAULT_TIMEOUT)
        if own.interval is not None or own.timeout is not None:
            timing_known = not (own.bad | defaults.bad) & {"interval", "timeout"}
            if timing_known and timeout > interval:
                key = "timeout" if own.timeout is not None else "interval"
                if name or host is None:
                    display = name or path
                else:
                    display = Target(host, port).address if port else host
                self.report_key(
                    item,
                    path,
                    key,
                    f"target {display!r}: the timeout {format_duration(timeout)} is longer than"
                    f" the interval {format_duration(interval)}; a probe must end before the"
                    " next one starts",
                )

        ehlo_name = own.ehlo_name or defaults.ehlo_name
        if ehlo_name is None and not (own.bad | defaults.bad) & {"ehlo_name"}:
            ehlo_name = self._machine_ehlo_name()
        ca_file = own.ca_file if own.ca_file_given else defaults.ca_file
        labels = dict(defaults.labels or {})
        labels.update(own.labels or {})

        if len(self._problems) > before or host is None:
            return None
        return Target(
            host=host,
            port=port or DEFAULT_PORT,
            tls=tls,
            name=name,
            servername=servername,
            ehlo_name=ehlo_name or "localhost",
            timeout=timeout,
            interval=interval,
            versions=_pick(own.versions, defaults.versions, DEFAULT_VERSIONS),
            ca_file=ca_file,
            labels=tuple(sorted(labels.items())),
            connections=_pick(own.connections, defaults.connections, DEFAULT_CONNECTIONS),
        )

    def _tls(self, mapping: dict[Any, Any], path: str) -> TLSMode | None:
        value = mapping["tls"]
        if isinstance(value, str):
            try:
                return TLSMode(value.strip().lower())
            except ValueError:
                pass
        hint = ""
        if isinstance(value, str) and value.strip().lower() in {"ssl", "tls", "smtps"}:
            hint = " (did you mean 'implicit'? TLS from the first byte, as on port 465)"
        self.report_key(
            mapping,
            path,
            "tls",
            f"must be 'starttls' or 'implicit', got {_describe(value)}{hint}",
        )
        return None

    def _label_value(self, mapping: dict[Any, Any], path: str, key: str) -> str | None:
        value = mapping[key]
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 64:
            return str(value)
        return self._text(mapping, path, key)

    def _machine_ehlo_name(self) -> str:
        if self._ehlo_name is None:
            self._ehlo_name = machine_ehlo_name()
        return self._ehlo_name


def _pick(own: _T | None, default: _T | None, builtin: _T) -> _T:
    if own is not None:
        return own
    if default is not None:
        return default
    return builtin


def _join(path: str, key: object, index: bool = False) -> str:
    if index:
        return f"{path}[{key}]"
    text = key if isinstance(key, str) else _describe(key)
    return f"{path}.{text}" if path else text


def _describe(value: object) -> str:
    """How a YAML value reads in a message."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large number"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, bytes):
        return "binary data"
    return f"a {type(value).__name__}"


# --- Values --------------------------------------------------------------------------------

_VERSION_SPELLINGS: dict[str, TLSVersion] = {}
for _v in TLSVersion:
    _VERSION_SPELLINGS[_v.value] = _v
    _VERSION_SPELLINGS[_v.display.lower()] = _v
    _VERSION_SPELLINGS[_v.display.lower().replace("v", "")] = _v


def _version(item: object) -> TLSVersion | None:
    """A version from its label (`1.2`), a YAML float (1.2) or its name (`TLSv1.2`)."""
    if isinstance(item, float):
        return _VERSION_SPELLINGS.get(repr(item))
    if isinstance(item, str):
        return _VERSION_SPELLINGS.get(item.strip().lower())
    return None


def _ca_file_problem(file: str) -> str | None:
    """Why `file` is no usable PEM bundle of CA certificates, or None."""
    try:
        info = os.stat(file)
    except FileNotFoundError:
        return f"file not found: {file}"
    except OSError as exc:
        return f"cannot read {file}: {exc.strerror or exc}"
    if stat.S_ISDIR(info.st_mode):
        return f"{file} is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return f"{file} is not a regular file"
    if info.st_size > MAX_CA_FILE_BYTES:
        return f"{file} is larger than 10 MiB, too large for a CA bundle"
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_CA_FILE_BYTES + 1)
    except OSError as exc:
        return f"cannot read {file}: {exc.strerror or exc}"
    if b"-----BEGIN CERTIFICATE-----" not in data:
        if data[:1] == b"\x30":
            return (
                f"{file} holds no PEM certificate (DER? convert it with"
                " `openssl x509 -inform der -in FILE -out FILE.pem`)"
            )
        return f"{file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        return f"{file} holds a broken PEM certificate: {exc}"
    return None
