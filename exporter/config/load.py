"""Loading a config file: the entry points, what they return and what they raise."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.access import OnDemandSettings
from exporter.config.reader import ConfigDocumentReader
from exporter.config.values import ValueContext
from exporter.config.yamlfile import (
    FileProblem,
    YamlProblem,
    load_yaml,
    one_line,
    read_text_file,
)
from exporter.target import DnsSettings, MailDomain, Target


@dataclass(frozen=True, slots=True)
class Config:
    """A validated config file: the servers and mail domains to probe, the DNS to ask, and
    where they came from."""

    targets: tuple[Target, ...]
    source: str
    domains: tuple[MailDomain, ...] = ()
    dns: DnsSettings = field(default_factory=DnsSettings)
    #: Who /probe may probe; None: nobody.
    on_demand: OnDemandSettings | None = None

    @property
    def label_names(self) -> tuple[str, ...]:
        """Every extra label name used by any target or domain, sorted."""
        labels = [*(t.labels for t in self.targets), *(d.labels for d in self.domains)]
        return tuple(sorted({name for pairs in labels for name, _ in pairs}))


class ConfigError(Exception):
    """The config file is unusable; `problems` lists every reason, each with its key path."""

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        # one line each, whatever a key or file name holds: they go into logs, the reload's
        # HTTP answer and the status page
        self.problems: tuple[str, ...] = tuple(map(one_line, problems))
        super().__init__(source, self.problems)

    def __str__(self) -> str:
        return "\n".join(f"{one_line(self.source)}: {problem}" for problem in self.problems)


def load_config(path: str | os.PathLike[str], *, default_ehlo_name: str | None = None) -> Config:
    """Read and validate the config file at `path`; raise `ConfigError` if it has problems."""
    source = os.fspath(path)
    try:
        text = read_text_file(source)
    except FileProblem as exc:
        raise ConfigError(source, [str(exc)]) from None
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
        data, positions = load_yaml(text)
    except YamlProblem as exc:
        raise ConfigError(source, [str(exc)]) from None
    context = ValueContext(base_dir=None if base_dir is None else os.fspath(base_dir))
    reader = ConfigDocumentReader(positions, context, default_ehlo_name)
    document = reader.read(data)
    if reader.problems:
        raise ConfigError(source, reader.problems.messages())
    return Config(
        targets=document.targets,
        source=source,
        domains=document.domains,
        dns=document.dns,
        on_demand=document.on_demand,
    )
