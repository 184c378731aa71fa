"""The defaults and limits of the settings, in one place: the config file (and through its
schema the chart), the command line, the target model and the scheduler read them here.
Durations' own limit lives with them in `exporter.durations`."""

from __future__ import annotations

from typing import Final

DEFAULT_PORT: Final = 25
#: Port 465 speaks TLS from the first byte (RFC 8314); a target on it defaults to implicit TLS.
IMPLICIT_PORT: Final = 465
DEFAULT_INTERVAL: Final = 300.0
DEFAULT_TIMEOUT: Final = 30.0
MIN_INTERVAL: Final = 1.0
#: Connections at once to one host within one probe. A probe needs six (five versions and
#: the default client); all at once, long greeting delays (postscreen, greet_pause: 15-20 s)
#: are paid once, not twice, within the timeout.
DEFAULT_CONNECTIONS: Final = 6
#: Connections started per minute to one server address, shared by every target on it (mail
#: servers count per client address): two whole probes fit, of every version, the default
#: client and the default sender (seven connections each).
DEFAULT_MAX_CONNECTIONS_PER_MINUTE: Final = 14
MAX_CONNECTIONS_PER_MINUTE: Final = 100_000
#: Seconds one DNS look-up (MX, A/AAAA) may take, every server and retry included.
DEFAULT_DNS_TIMEOUT: Final = 5.0
MAX_CONNECTIONS: Final = 10
DEFAULT_LISTEN_ADDRESS: Final = ":9025"
DEFAULT_CONFIG_FILE: Final = "config.yaml"
#: A CA bundle larger than this is surely the wrong file.
MAX_CA_FILE_BYTES: Final = 10 * 1024 * 1024
#: Label values may be YAML integers of up to 64 bits, taken as their decimal text.
MAX_LABEL_INTEGER: Final = 2**64 - 1
#: Open files one probe may hold at once: its connections, and one to spare.
FILES_PER_PROBE: Final = MAX_CONNECTIONS + 1
#: Open files kept free for everything but probes: listeners, scrapes, logs, DNS, CA files.
RESERVED_FILES: Final = 256
#: Memory one running probe holds, measured (`python -m bench`, slow round): its six
#: connections' sockets, transports, buffers and tasks, the flights it has read and its
#: transcript so far.
MEMORY_PER_PROBE: Final = 96 * 1024
#: Memory the running probes may take together by default. Where the hard open files limit
#: is large (a million on systemd hosts), descriptors alone would let a slow fleet start
#: tens of thousands of probes at once; 682 probes of a few seconds each already keep a
#: core busy, so more only costs memory.
PROBE_MEMORY_BUDGET: Final = 64 * 1024 * 1024
#: /probe: a repeat request for the same target within this many seconds gets the last result.
DEFAULT_ON_DEMAND_MIN_INTERVAL: Final = 60.0
#: /probe: on-demand probes running at once; a request over it is refused (429).
DEFAULT_ON_DEMAND_MAX_CONCURRENT: Final = 10
MAX_ON_DEMAND_CONCURRENT: Final = 1000
#: /probe: the probe ends this long before Prometheus gives up on the scrape
#: (X-Prometheus-Scrape-Timeout-Seconds), so the answer arrives in time; blackbox_exporter's
#: --timeout-offset default.
SCRAPE_TIMEOUT_OFFSET: Final = 0.5
