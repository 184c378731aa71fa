"""A parsed config document read against the schema: every problem with its key path and
line, and the `Target`s once there are none."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

from exporter.access import AccessPolicy, OnDemandSettings
from exporter.config.problems import ProblemList, join
from exporter.config.schema import (
    ALLOW,
    CA_FILE,
    CONNECTIONS,
    CONNECTIONS_PER_MINUTE,
    DEFAULTS,
    DNS,
    DNS_KEY_NAMES,
    DNS_KEYS,
    DNS_SERVERS,
    DNS_TIMEOUT,
    DOMAIN,
    EHLO_NAME,
    EXTENSION_PREFIX,
    HOST,
    HOST_ONLY,
    IMPORTANT_SENDERS,
    INTERVAL,
    LABELS,
    LEGACY_INTERVAL,
    MAX_CONCURRENT,
    NAME,
    ON_DEMAND,
    ON_DEMAND_KEY_NAMES,
    ON_DEMAND_KEYS,
    ON_DEMAND_MIN_INTERVAL,
    PORT,
    PROFILES,
    SENDERS,
    SERVERNAME,
    SETTING_KEYS,
    SETTINGS,
    TARGET,
    TARGET_KEYS,
    TARGETS,
    TIMEOUT,
    TLS,
    TOP_KEYS,
    VERSIONS,
    Key,
)
from exporter.config.values import InvalidValue, ValueContext, describe, read_sender_names
from exporter.config.yamlfile import Positions
from exporter.defaults import IMPLICIT_PORT
from exporter.durations import format_duration
from exporter.names import format_address, machine_ehlo_name
from exporter.senders import (
    BUILTIN_PROFILES,
    DEFAULT_IMPORTANT_SENDERS,
    ProfileError,
    SenderProfile,
    read_profiles,
)
from exporter.target import DnsSettings, MailDomain, Target, TLSMode

T = TypeVar("T")

_TIMING = frozenset({INTERVAL.name, TIMEOUT.name})


@dataclass(frozen=True, slots=True)
class Settings:
    """What one `defaults` block or one target sets: the valid values by key name, and the
    keys whose values are invalid (and already reported)."""

    values: Mapping[str, object]
    invalid: frozenset[str] = frozenset()

    def __contains__(self, key: Key[Any]) -> bool:
        return key.name in self.values

    def get(self, key: Key[T]) -> T | None:
        """The value set for `key`, or None when it is not set (or not valid)."""
        return cast("T | None", self.values.get(key.name))


NO_SETTINGS = Settings({})


@dataclass(frozen=True, slots=True)
class Document:
    """What a config document asks for: hosts, mail domains, and the DNS to use."""

    targets: tuple[Target, ...] = ()
    domains: tuple[MailDomain, ...] = ()
    dns: DnsSettings = field(default_factory=DnsSettings)
    on_demand: OnDemandSettings | None = None


def pick(key: Key[T], *layers: Settings) -> T:
    """The value of the first layer that sets `key`, else the key's default."""
    for layer in layers:
        if key in layer:
            return cast("T", layer.values[key.name])
    return key.default


class ConfigDocumentReader:
    """Reads a parsed config document into targets, collecting every problem on the way
    instead of stopping at the first."""

    def __init__(
        self, positions: Positions, context: ValueContext, default_ehlo_name: str | None
    ) -> None:
        self.problems = ProblemList(positions)
        self._positions = positions
        self._context = context
        self._ehlo_name = default_ehlo_name
        #: Sender profiles by name: the built-in ones and the config's own.
        self._profiles: dict[str, SenderProfile] = dict(BUILTIN_PROFILES)
        self._important: tuple[str, ...] = DEFAULT_IMPORTANT_SENDERS

    def read(self, data: object) -> Document:
        """What the document asks for; check `problems` before using it."""
        root = self._root(data)
        if root is None:
            return Document()
        self._report_duplicate_keys(root)
        self._check_keys(root, "", TOP_KEYS, extensions=True)
        self._read_profiles(root)
        self._read_important(root)
        defaults = self._read_defaults(root)
        dns = self._read_dns(root)
        on_demand = self._read_on_demand(root, defaults)
        items = self._target_list(root)
        if items is None:
            return Document(dns=dns, on_demand=on_demand)
        targets, domains = self._read_targets(items, defaults)
        return Document(targets, domains, dns, on_demand)

    def _read_profiles(self, root: dict[Any, Any]) -> None:
        """The config's own sender profiles, every problem with its key path."""
        try:
            self._profiles.update(read_profiles(root.get(PROFILES.name)))
        except ProfileError as error:
            for problem in error.problems:
                path = PROFILES.name
                for part in problem.path:
                    path = join(path, part, index=isinstance(part, int))
                self.problems.add(path, problem.message, self._positions.line(root, PROFILES.name))

    def _read_important(self, root: dict[Any, Any]) -> None:
        raw = root.get(IMPORTANT_SENDERS.name)
        if raw is None:
            return
        try:
            names = read_sender_names(raw)
        except InvalidValue as exc:
            self.problems.add_invalid(root, "", IMPORTANT_SENDERS.name, exc)
            return
        self._check_profile_names(root, "", IMPORTANT_SENDERS.name, names)
        self._important = names

    def _check_senders(self, mapping: dict[Any, Any], path: str, settings: Settings) -> None:
        names = settings.get(SENDERS)
        if names is not None:
            self._check_profile_names(mapping, path, SENDERS.name, names)

    def _check_profile_names(
        self, mapping: dict[Any, Any], path: str, key: str, names: tuple[str, ...]
    ) -> None:
        for name in names:
            if name not in self._profiles:
                known = ", ".join(self._profiles)
                message = f"{name!r} is no sender profile (built-in or under profiles: {known})"
                self.problems.add_at(mapping, path, key, message)

    def _read_dns(self, root: dict[Any, Any]) -> DnsSettings:
        raw = root.get(DNS.name)
        if raw is None:
            return DnsSettings()
        if not isinstance(raw, dict):
            self.problems.add_at(root, "", DNS.name, f"must be a mapping, got {describe(raw)}")
            return DnsSettings()
        self._check_keys(raw, DNS.name, DNS_KEY_NAMES)
        settings = self._read_keys(raw, DNS.name, DNS_KEYS)
        return DnsSettings(servers=pick(DNS_SERVERS, settings), timeout=pick(DNS_TIMEOUT, settings))

    def _read_on_demand(self, root: dict[Any, Any], defaults: Settings) -> OnDemandSettings | None:
        """`on_demand`, or None when it is missing (no on-demand probe at all)."""
        raw = root.get(ON_DEMAND.name)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.problems.add_at(
                root, "", ON_DEMAND.name, f"must be a mapping, got {describe(raw)}"
            )
            return None
        self._check_keys(raw, ON_DEMAND.name, ON_DEMAND_KEY_NAMES)
        settings = self._read_keys(raw, ON_DEMAND.name, ON_DEMAND_KEYS)
        return OnDemandSettings(
            policy=AccessPolicy(pick(ALLOW, settings)),
            min_interval=pick(ON_DEMAND_MIN_INTERVAL, settings),
            max_concurrent=pick(MAX_CONCURRENT, settings),
            template=self._target(NO_SETTINGS, defaults, host="localhost"),
        )

    # The top level

    def _root(self, data: object) -> dict[Any, Any] | None:
        if data is None:
            self.problems.add("", "the file is empty; it needs at least a `targets` list")
            return None
        if not isinstance(data, dict):
            self.problems.add(
                "", f"the top level must be a mapping with a `targets` list, got {describe(data)}"
            )
            return None
        return data

    def _report_duplicate_keys(self, root: dict[Any, Any]) -> None:
        places = list(_checked_mappings(root))
        for container, key, line in self._positions.duplicates:
            path = next((path for mapping, path in places if mapping is container), None)
            if path is not None:
                self.problems.add(join(path, key), "is given more than once", line)

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
            if extensions and isinstance(key, str) and key.startswith(EXTENSION_PREFIX):
                continue
            if not isinstance(key, str):
                self.problems.add_at(mapping, path, key, f"a key must be text, got {describe(key)}")
            elif key not in allowed:
                hint = _unknown_key_hint(key, allowed, elsewhere)
                self.problems.add_at(mapping, path, key, f"unknown key ({hint})")

    def _read_defaults(self, root: dict[Any, Any]) -> Settings:
        raw = root.get(DEFAULTS.name)
        if raw is not None and not isinstance(raw, dict):
            self.problems.add_at(root, "", DEFAULTS.name, f"must be a mapping, got {describe(raw)}")
            return NO_SETTINGS
        if not raw:
            return NO_SETTINGS
        self._check_keys(raw, DEFAULTS.name, SETTING_KEYS, TARGET_KEYS)
        defaults = self._read_keys(raw, DEFAULTS.name, SETTINGS)
        self._check_defaults_timing(raw, defaults)
        self._check_senders(raw, DEFAULTS.name, defaults)
        return defaults

    def _target_list(self, root: dict[Any, Any]) -> list[Any] | None:
        if TARGETS.name not in root:
            self.problems.add(TARGETS.name, "is required: a list of the SMTP servers to probe")
            return None
        items = root[TARGETS.name]
        if not isinstance(items, list):
            self.problems.add_at(root, "", TARGETS.name, f"must be a list, got {describe(items)}")
            return None
        if not items:
            self.problems.add_at(root, "", TARGETS.name, "must list at least one target")
            return None
        return items

    def _read_targets(
        self, items: list[Any], defaults: Settings
    ) -> tuple[tuple[Target, ...], tuple[MailDomain, ...]]:
        targets: list[Target] = []
        domains: list[MailDomain] = []
        first_path: dict[str, str] = {}
        first_domain: dict[str, str] = {}
        for index, item in enumerate(items):
            path = f"{TARGETS.name}[{index}]"
            line = self._positions.line(items, index)
            target = self._read_target(item, path, defaults, line)
            if isinstance(target, MailDomain):
                if target.domain in first_domain:
                    self.problems.add_at(
                        item,
                        path,
                        DOMAIN.name,
                        f"{target.domain!r} is already the domain of {first_domain[target.domain]}",
                    )
                    continue
                first_domain[target.domain] = path
                domains.append(target)
                continue
            if target is None:
                continue
            if target.name in first_path:
                self._report_name_taken(item, path, target.name, first_path[target.name], line)
                continue
            first_path[target.name] = path
            targets.append(target)
        return tuple(targets), tuple(domains)

    def _report_name_taken(
        self, item: dict[Any, Any], path: str, name: str, first: str, line: int | None
    ) -> None:
        if NAME.name in item:
            self.problems.add_at(item, path, NAME.name, f"{name!r} is already the name of {first}")
        else:
            self.problems.add(
                path,
                f"its name {name!r} (host:port, the default) is already the name of {first};"
                " set `name` to tell them apart",
                line,
            )

    # One target

    def _read_target(
        self, item: object, path: str, defaults: Settings, line: int | None
    ) -> Target | MailDomain | None:
        if not isinstance(item, dict):
            self.problems.add(
                path,
                f"must be a mapping with `host` (a server) or `domain` (a mail domain),"
                f" got {describe(item)}",
                line,
            )
            return None
        before = len(self.problems)
        self._check_keys(item, path, TARGET_KEYS)
        own = self._read_keys(item, path, TARGET, line)
        self._check_senders(item, path, own)
        self._check_host_or_domain(item, path, line)
        self._check_target_timing(item, path, own, defaults)
        if len(self.problems) > before:
            return None
        if DOMAIN in own:
            return self._domain(own, defaults)
        return self._target(own, defaults)

    def _check_host_or_domain(self, item: dict[Any, Any], path: str, line: int | None) -> None:
        """Exactly one of `host` and `domain`; a domain's hosts come from its MX records."""
        if HOST.name in item and DOMAIN.name in item:
            self.problems.add_at(
                item,
                path,
                DOMAIN.name,
                "give either `host` (one server) or `domain` (a mail domain's MX hosts), not both",
            )
        elif HOST.name not in item and DOMAIN.name not in item:
            self.problems.add(
                path, "`host` (a server) or `domain` (a mail domain) is required", line
            )
        elif DOMAIN.name in item:
            for key in HOST_ONLY:
                if key.name in item:
                    self.problems.add_at(
                        item,
                        path,
                        key.name,
                        "cannot be set for a `domain`: each MX host is its own target, named"
                        " host:port, with the MX host's name as servername",
                    )

    def _read_keys(
        self,
        mapping: dict[Any, Any],
        path: str,
        keys: Sequence[Key[Any]],
        line: int | None = None,
    ) -> Settings:
        """The values of `keys` in `mapping`; a missing required key is reported at `line`."""
        values: dict[str, object] = {}
        invalid: set[str] = set()
        for key in keys:
            if key.name not in mapping:
                if key.required:
                    self.problems.add(path, f"`{key.name}` is required", line)
                continue
            try:
                values[key.name] = key.kind.read(mapping[key.name], self._context)
            except InvalidValue as exc:
                self.problems.add_invalid(mapping, path, key.name, exc)
                invalid.add(key.name)
        return Settings(values, frozenset(invalid))

    def _domain(self, own: Settings, defaults: Settings) -> MailDomain:
        domain = own.get(DOMAIN)
        assert domain is not None  # checked: a domain entry has it
        inherited, own_labels = pick(LABELS, defaults), pick(LABELS, own)
        template = self._target(own, defaults, host=domain)
        labels = tuple(sorted({**inherited, **own_labels}.items()))
        return MailDomain(domain=domain, template=replace(template, labels=()), labels=labels)

    def _target(self, own: Settings, defaults: Settings, host: str | None = None) -> Target:
        host = host or own.get(HOST)
        assert host is not None  # required: its absence is a problem
        port = pick(PORT, own)
        tls = own.get(TLS)
        name = own.get(NAME)
        servername = own.get(SERVERNAME)
        ehlo_name = pick(EHLO_NAME, own, defaults)
        inherited, own_labels = pick(LABELS, defaults), pick(LABELS, own)
        labels = {**inherited, **own_labels}
        return Target(
            host=host,
            port=port,
            tls=tls or (TLSMode.IMPLICIT if port == IMPLICIT_PORT else TLSMode.STARTTLS),
            name=name or "",
            servername=servername or host.rstrip("."),
            ehlo_name=ehlo_name or self._machine_ehlo_name(),
            timeout=pick(TIMEOUT, own, defaults),
            interval=pick(INTERVAL, own, defaults),
            legacy_interval=pick(LEGACY_INTERVAL, own, defaults),
            max_connections_per_minute=pick(CONNECTIONS_PER_MINUTE, own, defaults),
            versions=pick(VERSIONS, own, defaults),
            ca_file=pick(CA_FILE, own, defaults),
            labels=tuple(sorted(labels.items())),
            connections=pick(CONNECTIONS, own, defaults),
            senders=tuple(
                self._profiles[name]
                for name in pick(SENDERS, own, defaults)
                if name in self._profiles
            ),
            important_senders=self._important,
        )

    def _machine_ehlo_name(self) -> str:
        """This machine's name, looked up once and only if some target needs it."""
        if self._ehlo_name is None:
            self._ehlo_name = machine_ehlo_name()
        return self._ehlo_name

    # A probe must end before the next one starts

    def _check_defaults_timing(self, raw: dict[Any, Any], defaults: Settings) -> None:
        if _TIMING & defaults.invalid:
            return
        interval, timeout = pick(INTERVAL, defaults), pick(TIMEOUT, defaults)
        if timeout <= interval:
            return
        key = TIMEOUT if TIMEOUT in defaults else INTERVAL
        self.problems.add_at(raw, DEFAULTS.name, key.name, _too_long(timeout, interval))

    def _check_target_timing(
        self, item: dict[Any, Any], path: str, own: Settings, defaults: Settings
    ) -> None:
        if INTERVAL not in own and TIMEOUT not in own:
            return  # the defaults' own check covers them
        if _TIMING & (own.invalid | defaults.invalid):
            return
        interval, timeout = pick(INTERVAL, own, defaults), pick(TIMEOUT, own, defaults)
        if timeout <= interval:
            return
        key = TIMEOUT if TIMEOUT in own else INTERVAL
        message = f"target {_display_name(own, path)!r}: {_too_long(timeout, interval)}"
        self.problems.add_at(item, path, key.name, message)


def _too_long(timeout: float, interval: float) -> str:
    return (
        f"the timeout {format_duration(timeout)} is longer than the interval"
        f" {format_duration(interval)}; a probe must end before the next one starts"
    )


def _display_name(own: Settings, path: str) -> str:
    """The target's name as far as it is known: its name, its address, or its key path."""
    name, host = own.get(NAME), own.get(HOST) or own.get(DOMAIN)
    if name or host is None:
        return name or path
    if PORT.name in own.invalid:
        return host
    return format_address(host, pick(PORT, own))


def _unknown_key_hint(key: str, allowed: Sequence[str], elsewhere: Sequence[str]) -> str:
    if key in elsewhere:
        return f"`{key}` can only be set per target"
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"did you mean {close[0]!r}?" if close else "valid keys: " + ", ".join(allowed)


def _checked_mappings(root: dict[Any, Any]) -> Iterator[tuple[object, str]]:
    """The mappings whose keys are checked, with their key paths, in the order of the file."""
    yield root, ""
    if isinstance(root.get(DNS.name), dict):
        yield root[DNS.name], DNS.name
    if isinstance(root.get(ON_DEMAND.name), dict):
        yield root[ON_DEMAND.name], ON_DEMAND.name
    defaults = root.get(DEFAULTS.name)
    if isinstance(defaults, dict):
        yield defaults, DEFAULTS.name
        yield defaults.get(LABELS.name), join(DEFAULTS.name, LABELS.name)
    targets = root.get(TARGETS.name)
    if isinstance(targets, list):
        for index, item in enumerate(targets):
            if isinstance(item, dict):
                path = f"{TARGETS.name}[{index}]"
                yield item, path
                yield item.get(LABELS.name), join(path, LABELS.name)
