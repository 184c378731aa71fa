"""The exporter at scale: a fleet of loopback SMTP servers, the exporter probing it, and the
figures (scrape time, memory, round time, CPU against blackbox_exporter). `python -m bench`."""
