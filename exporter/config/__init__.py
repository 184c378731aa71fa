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
- A `host` or `servername` in Unicode (`mx.bücher.example`) is stored as its A-labels
  (`mx.xn--bcher-kva.example`), the form DNS, SNI and certificates carry, under IDNA 2008;
  a name IDNA 2008 refuses is a problem. `ehlo_name` must be ASCII: it is this machine's
  own name, written once, and the problem names its A-label form.
- Mapping keys given twice are a problem (YAML itself would keep the last one silently).
- Top-level keys starting with `x-` are ignored, so they can hold YAML anchors to merge
  into targets (`<<: *common`), as in Docker Compose files.

Modules: `load` (the entry points), `yamlfile` (YAML with line numbers), `schema` (every
key: kind, default, meaning; the JSON Schema), `reader` (the walk that collects problems and
builds targets), `values` (one value at a time), `problems` (key paths and lines).
"""

from exporter.config.load import Config, ConfigError, load_config, parse_config

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]
